//! From a program's output to a checked [`GraphSpec`]: each resource's params become a JSON
//! object that the kind's own serde struct decodes (there is no decoder for mcl alone),
//! duplicates merge as upstream merges them, and what [`check`] refuses is located at the
//! resource, param or edge that wrote it.
#![allow(clippy::result_large_err)] // errors are the cold path; flat ones keep the code plain

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::super::diagnostic::{Diagnostic, Stage};
use super::super::span::{SourceMap, Span};
use super::super::value::Val;
use super::data::{CollectOut, EdgeOut, Entry, Output, ResOut};
use crate::contract::ResId;
use crate::frontend::check::{self, Place, SpecError};
use crate::frontend::{CollectSpec, EdgeSpec, GraphSpec};
use crate::resources::{self, Resource};

/// What the last spec was made from, kept to make the next one: a running program whose
/// evaluation changed one resource decodes that one again, and reuses the others.
#[derive(Default)]
pub struct Decoded {
    /// Every resource of the last spec, by the address of the output it was decoded from.
    /// An entry holds its output, so the address is not reused while it is there.
    by_out: HashMap<usize, (Arc<ResOut>, Arc<dyn Resource>)>,
    /// The last spec and what it was made from, when it has one resource per output (no
    /// duplicate merged): a program whose next output differs only in some resources' params
    /// gets that spec with those resources replaced, without checking the whole spec again.
    last: Option<Last>,
}

struct Last {
    outs: imbl::Vector<Arc<ResOut>>,
    edges: Vec<EdgeOut>,
    collects: Vec<Arc<CollectOut>>,
    spec: GraphSpec,
}

impl Decoded {
    /// The resource of `res`, taken from the last spec's or decoded now.
    fn get(&self, res: &Arc<ResOut>) -> Result<Arc<dyn Resource>, Diagnostic> {
        match self.by_out.get(&key(res)) {
            Some((_, decoded)) => Ok(decoded.clone()),
            None => decode(res).map(Arc::from),
        }
    }

    /// The last spec with the resources whose output changed replaced, when nothing else
    /// changed: the same outputs in the same order but for those, each changed one of the
    /// same kind and name, managing the same paths, exported as before and valid. Then the
    /// spec is as valid as the last one was. `None`: the whole spec is made again.
    fn patched(&mut self, output: &Output) -> Option<GraphSpec> {
        let last = self.last.as_ref()?;
        if output.resources.len() != last.outs.len()
            || output.edges != last.edges
            || output.collects.len() != last.collects.len()
            || output.collects.iter().zip(&last.collects).any(|(a, b)| !Arc::ptr_eq(a, b) && a != b)
        {
            return None;
        }
        let mut replaced = Vec::new();
        // The same vector: no resource changed (an edge or a collect entry did).
        let to_look_at = if output.resources.ptr_eq(&last.outs) { 0 } else { last.outs.len() };
        for (i, (new, old)) in output.resources.iter().zip(&last.outs).enumerate().take(to_look_at) {
            if Arc::ptr_eq(new, old) {
                continue;
            }
            let was = &last.spec.resources[i];
            let made: Arc<dyn Resource> = decode(new).ok()?.into();
            let same_place = made.kind() == was.kind()
                && made.name() == was.name()
                && made.autoedges().provides == was.autoedges().provides
                && exported(new) == exported(old);
            if !same_place || crate::resources::validate_resource(made.as_ref()).is_err() {
                return None;
            }
            replaced.push((i, made));
        }
        let last = self.last.as_mut().expect("checked above");
        for (i, made) in replaced {
            self.by_out.remove(&key(&last.outs[i]));
            let out = output.resources[i].clone();
            self.by_out.insert(key(&out), (out.clone(), made.clone()));
            last.outs[i] = out;
            last.spec.resources[i] = made;
        }
        Some(last.spec.clone())
    }
}

fn key(res: &Arc<ResOut>) -> usize {
    Arc::as_ptr(res) as usize
}

/// The spec of a program's output, or every resource that could not be made; reusing what
/// `decoded` holds, and leaving there this spec's resources.
pub fn to_spec_with(
    output: &Output,
    map: &SourceMap,
    name: &str,
    decoded: &mut Decoded,
) -> Result<GraphSpec, Vec<Diagnostic>> {
    if let Some(mut spec) = decoded.patched(output) {
        spec.name = name.to_string();
        return Ok(spec);
    }
    decoded.last = None;
    let mut spec = GraphSpec { name: name.to_string(), ..GraphSpec::default() };
    let mut places: Vec<&ResOut> = Vec::new();
    let mut index: HashMap<ResId, usize> = HashMap::new();
    let mut errors = Vec::new();
    let mut now = HashMap::new();
    for res in &output.resources {
        let made = match decoded.get(res) {
            Ok(made) => made,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        now.insert(key(res), (res.clone(), made.clone()));
        let id = made.id();
        match index.get(&id) {
            Some(&first) if spec.resources[first].cmp(made.as_ref()) => {}
            Some(&first) => errors.push(duplicate(res, places[first], map)),
            None => {
                if let Some(to) = exported(res) {
                    if let Some(hosts) = to {
                        spec.export_to.insert(id.clone(), hosts);
                    }
                    spec.exports.insert(id.clone());
                }
                index.insert(id, spec.resources.len());
                spec.resources.push_back(made);
                places.push(res);
            }
        }
    }
    decoded.by_out = now;
    if !errors.is_empty() {
        return Err(errors);
    }
    for collect in &output.collects {
        spec.collect.push(collect_spec(collect)?);
    }
    let edge_places = merge_edges(&output.edges, &mut spec.edges);
    check::check(&spec).map_err(|e| vec![locate(e, &spec, &places, &edge_places)])?;
    if spec.resources.len() == output.resources.len() {
        decoded.last = Some(Last {
            outs: output.resources.clone(),
            edges: output.edges.clone(),
            collects: output.collects.clone(),
            spec: spec.clone(),
        });
    }
    Ok(spec)
}

/// The collect entry of a `collect` statement. A collected file lands in the directory its
/// body's `path` names (YAML's `pattern`), which a file collect must give: another host
/// never chooses where a collector writes. Only what the collector's policy takes from a
/// peer is kept, and the body's other params are set over it.
fn collect_spec(c: &CollectOut) -> Result<CollectSpec, Vec<Diagnostic>> {
    let mut overrides = Map::new();
    let mut dir = None;
    for entry in &c.params {
        match (&*c.kind, &*entry.name, &entry.value) {
            ("file", "path", Val::Str(path)) => dir = Some(path.clone()),
            _ => {
                overrides.insert(entry.name.clone(), json_of(entry).map_err(|e| vec![e])?);
            }
        }
    }
    let mut meta = Map::new();
    for entry in &c.meta {
        meta.insert(entry.name.clone(), json_of(entry).map_err(|e| vec![e])?);
    }
    if !meta.is_empty() {
        overrides.insert("meta".into(), Json::Object(meta));
    }
    if c.kind == "file" && dir.is_none() {
        let message = "collect file: give `path`, the directory the collected files are written into";
        return Err(vec![Diagnostic::new(Stage::Runtime, c.span, message)
            .with_note("another host does not choose where this host writes: its file lands in `path` under the last part of its name")]);
    }
    Ok(CollectSpec { kind: c.kind.clone(), pattern: dir, names: Some(c.names.clone()), overrides })
}

fn duplicate(res: &ResOut, first: &ResOut, map: &SourceMap) -> Diagnostic {
    let id = format!("{}[{}]", res.kind, res.name);
    Diagnostic::new(Stage::Runtime, res.span, format!("incompatible duplicate resource {id}"))
        .with_label(format!("{id} again, with other params"))
        .with_secondary(first.span, format!("{id} first defined here"))
        .with_note(format!(
            "a resource may be defined twice only with the same params; the first is at {}",
            map.locate(first.span)
        ))
}

type EdgeKey = (ResId, ResId, Option<(String, String)>);

/// One edge per (from, to, send/recv); a duplicate notifies if either does.
fn merge_edges<'o>(edges: &'o [EdgeOut], out: &mut Vec<EdgeSpec>) -> Vec<&'o EdgeOut> {
    let mut places = Vec::new();
    let mut seen: HashMap<EdgeKey, usize> = HashMap::new();
    for edge in edges {
        let from = ResId::new(&edge.from.0, &edge.from.1);
        let to = ResId::new(&edge.to.0, &edge.to.1);
        let key = (from.clone(), to.clone(), edge.send_recv.clone());
        if let Some(&i) = seen.get(&key) {
            out[i].notify |= edge.notify;
            continue;
        }
        seen.insert(key, out.len());
        out.push(EdgeSpec {
            name: format!("{from} -> {to}"),
            from,
            to,
            notify: edge.notify,
            send_recv: edge.send_recv.clone(),
        });
        places.push(edge);
    }
    places
}

fn locate(e: SpecError, spec: &GraphSpec, places: &[&ResOut], edges: &[&EdgeOut]) -> Diagnostic {
    let (span, message) = match e.place {
        Place::Resource { index, field } => {
            let res = places[index];
            let id = spec.resources[index].id();
            let span = field.map_or(res.span, |f| field_span(res, f));
            let message = match field {
                Some(f) => format!("{id}: field `{f}`: {}", e.message),
                None => format!("{id}: {}", e.message),
            };
            return Diagnostic::new(Stage::Runtime, span, message).with_label(e.message);
        }
        Place::Edge(index) => (edges[index].span, e.message),
        Place::Collect { .. } | Place::Graph => {
            (places.first().map(|r| r.span).unwrap_or_default(), e.message)
        }
    };
    Diagnostic::new(Stage::Runtime, span, message)
}

/// The span of the entry that set a field (`path`, `meta.retry`), or of the name.
fn field_span(res: &ResOut, field: &str) -> Span {
    if field == "name" {
        return res.name_span;
    }
    let (entries, name) = match field.strip_prefix("meta.") {
        Some(meta) => (&res.meta, meta),
        None => (&res.params, field),
    };
    let written = entries.iter().rev().find(|e| e.name == name).map(|e| e.span);
    // A kind's `path` defaults to its name.
    written.unwrap_or(if field == "path" { res.name_span } else { res.span })
}

/// The kind's own params struct, from the resource's params as JSON.
fn decode(res: &ResOut) -> Result<Box<dyn Resource>, Diagnostic> {
    let json = to_json(res, None)?;
    resources::from_json(&res.kind, json).map_err(|why| decode_error(res, why))
}

/// The params as a JSON object, leaving out the param at `skip`.
fn to_json(res: &ResOut, skip: Option<usize>) -> Result<Json, Diagnostic> {
    let mut object = Map::new();
    object.insert("name".into(), Json::String(res.name.clone()));
    for (i, entry) in res.params.iter().enumerate() {
        if Some(i) != skip {
            object.insert(entry.name.clone(), json_of(entry)?);
        }
    }
    let mut meta = Map::new();
    for entry in &res.meta {
        if entry.name == "export" {
            continue;
        }
        meta.insert(entry.name.clone(), json_of(entry)?);
    }
    if !meta.is_empty() {
        object.insert("meta".into(), Json::Object(meta));
    }
    Ok(Json::Object(object))
}

/// `Meta:export => [hosts...]`: whether the resource is exported, and to which hosts
/// (`None`: every one, as `"*"` says).
fn exported(res: &ResOut) -> Option<Option<Vec<String>>> {
    let last = res.meta.iter().rev().find(|e| e.name == "export")?;
    let Val::List(hosts) = &last.value else { return None };
    let hosts: Vec<String> =
        hosts.iter().filter_map(|h| if let Val::Str(h) = h { Some(h.clone()) } else { None }).collect();
    match hosts.is_empty() {
        true => None,
        false if hosts.iter().any(|h| h == "*") => Some(None),
        false => Some(Some(hosts)),
    }
}

fn json_of(entry: &Entry) -> Result<Json, Diagnostic> {
    let param = entry
        .value
        .to_param()
        .map_err(|e| Diagnostic::new(Stage::Runtime, entry.span, format!("param `{}`: {e}", entry.name)))?;
    serde_json::to_value(param)
        .map_err(|e| Diagnostic::new(Stage::Runtime, entry.span, format!("param `{}`: {e}", entry.name)))
}

/// Locates a decoding error at the param that causes it: the one without which the
/// error goes away or changes.
fn decode_error(res: &ResOut, why: String) -> Diagnostic {
    let id = format!("{}[{}]", res.kind, res.name);
    if !resources::KINDS.contains(&res.kind.as_str()) {
        return Diagnostic::new(Stage::Runtime, res.span, why);
    }
    let culprit = (0..res.params.len()).rev().find(|&i| match to_json(res, Some(i)) {
        Ok(json) => resources::from_json(&res.kind, json).err().is_none_or(|other| other != why),
        Err(_) => false,
    });
    let span = culprit.map_or(res.span, |i| res.params[i].span);
    let message = match culprit {
        Some(i) => format!("{id}: param `{}`: {}", res.params[i].name, why),
        None => format!("{id}: {why}"),
    };
    Diagnostic::new(Stage::Runtime, span, message).with_label(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> Arc<ResOut> {
        let entry = |name: &str, value: &str| Entry {
            name: name.into(),
            value: Val::Str(value.into()),
            span: Span::default(),
        };
        Arc::new(ResOut {
            kind: "file".into(),
            name: path.into(),
            span: Span::default(),
            name_span: Span::default(),
            params: vec![entry("path", path), entry("content", content)],
            meta: vec![],
        })
    }

    fn spec(output: &Output, decoded: &mut Decoded) -> Result<GraphSpec, Vec<Diagnostic>> {
        to_spec_with(output, &SourceMap::new(), "g", decoded)
    }

    fn content(spec: &GraphSpec, i: usize) -> serde_json::Value {
        spec.resources[i].to_json()["content"].clone()
    }

    #[test]
    fn a_changed_resource_is_decoded_again_and_the_others_are_reused() {
        let mut output =
            Output { resources: imbl::vector![file("/a", "1"), file("/b", "1")], ..Output::default() };
        let mut decoded = Decoded::default();
        let first = spec(&output, &mut decoded).unwrap();
        output.resources[1] = file("/b", "2");
        let second = spec(&output, &mut decoded).unwrap();
        assert!(Arc::ptr_eq(&first.resources[0], &second.resources[0]), "the unchanged one is reused");
        assert_eq!((content(&second, 0), content(&second, 1)), ("1".into(), "2".into()));
        // And again from that spec: the one changed last time is reused now.
        output.resources[0] = file("/a", "3");
        let third = spec(&output, &mut decoded).unwrap();
        assert!(Arc::ptr_eq(&second.resources[1], &third.resources[1]));
        assert_eq!((content(&third, 0), content(&third, 1)), ("3".into(), "2".into()));
    }

    #[test]
    fn a_changed_resource_is_checked_against_the_whole_spec() {
        let mut output =
            Output { resources: imbl::vector![file("/a", "1"), file("/b", "1")], ..Output::default() };
        let mut decoded = Decoded::default();
        spec(&output, &mut decoded).unwrap();
        // `/b`'s resource now manages `/a` too: two resources for one path.
        let mut moved = (*file("/b", "1")).clone();
        moved.params[0].value = Val::Str("/a".into());
        output.resources[1] = Arc::new(moved);
        let errors = spec(&output, &mut decoded).unwrap_err();
        assert!(errors[0].message.contains("/a is already managed by file[/a]"), "{:?}", errors[0].message);
        // An invalid param is refused too, and a valid spec after it is made in full.
        output.resources[1] = file("/b", "1");
        let mut bad = (*file("/a", "1")).clone();
        bad.params.push(Entry { name: "mode".into(), value: Val::Str("rwx".into()), span: Span::default() });
        output.resources[0] = Arc::new(bad);
        assert!(spec(&output, &mut decoded).is_err(), "an invalid mode is refused");
        output.resources[0] = file("/a", "4");
        assert_eq!(content(&spec(&output, &mut decoded).unwrap(), 0), "4");
    }
}
