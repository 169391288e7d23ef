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

/// Upstream's meta params this agent has no use for, with the value that means "as usual":
/// a program may give them that value, as a full `Meta => struct{...}` must.
const IGNORED_META: &[(&str, Option<bool>)] = &[
    ("retryreset", Some(false)),
    ("timeout", None),
    ("reset", Some(false)),
    ("sema", None),
    ("rewatch", Some(false)),
    ("realize", Some(false)),
    ("dollar", Some(false)),
    ("hidden", Some(false)),
    ("reverse", Some(false)),
    ("autoedge", Some(true)),
    ("autogroup", Some(true)),
];

/// The resources decoded for the last spec, by their output: a running program whose
/// evaluation changed one resource decodes that one again, and copies the others.
#[derive(Default)]
pub struct Decoded(HashMap<usize, (Arc<ResOut>, Box<dyn Resource>)>);

impl Decoded {
    /// The resource of `res`, taken from the last spec's or decoded now. An entry holds its
    /// `res`, so the address is not reused while it is there.
    fn take(&mut self, res: &Arc<ResOut>) -> Result<Box<dyn Resource>, Diagnostic> {
        match self.0.remove(&(Arc::as_ptr(res) as usize)) {
            Some((_, decoded)) => Ok(decoded),
            None => decode(res),
        }
    }
}

/// The spec of a program's output, or every resource that could not be made; reusing what
/// `decoded` holds, and leaving there this spec's resources.
pub fn to_spec_with(
    output: &Output,
    map: &SourceMap,
    name: &str,
    decoded: &mut Decoded,
) -> Result<GraphSpec, Vec<Diagnostic>> {
    let mut spec = GraphSpec { name: name.to_string(), ..GraphSpec::default() };
    let mut places: Vec<&ResOut> = Vec::new();
    let mut index: HashMap<ResId, usize> = HashMap::new();
    let mut errors = Vec::new();
    let mut now = Decoded::default();
    for res in &output.resources {
        let made = decoded.take(res);
        if let Ok(made) = &made {
            now.0.insert(Arc::as_ptr(res) as usize, (res.clone(), made.boxed_clone()));
        }
        let decoded = match made {
            Ok(decoded) => decoded,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match index.get(&decoded.id()) {
            Some(&first) if spec.resources[first].cmp(decoded.as_ref()) => {}
            Some(&first) => errors.push(duplicate(res, places[first], map)),
            None => {
                if let Some(to) = exported(res) {
                    if let Some(hosts) = to {
                        spec.export_to.insert(decoded.id(), hosts);
                    }
                    spec.exports.insert(decoded.id());
                }
                index.insert(decoded.id(), spec.resources.len());
                spec.resources.push(decoded);
                places.push(res);
            }
        }
    }
    *decoded = now;
    if !errors.is_empty() {
        return Err(errors);
    }
    for collect in &output.collects {
        spec.collect.push(collect_spec(collect)?);
    }
    let edge_places = merge_edges(&output.edges, &mut spec.edges);
    check::check(&spec).map_err(|e| vec![locate(e, &spec, &places, &edge_places)])?;
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
        if entry.name == "export" || ignored_meta(entry)? {
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

/// Whether a meta param is one of upstream's this agent ignores, given its usual value;
/// any other value of it is refused, since it would not do what the program asks.
fn ignored_meta(entry: &Entry) -> Result<bool, Diagnostic> {
    let Some((_, usual)) = IGNORED_META.iter().find(|(n, _)| *n == entry.name) else {
        return Ok(false);
    };
    let as_usual = match (&entry.value, usual) {
        (Val::Bool(b), Some(u)) => b == u,
        (Val::Int(0), None) => true,
        (Val::List(items), None) => items.is_empty(),
        _ => false,
    };
    if as_usual {
        return Ok(true);
    }
    Err(Diagnostic::new(
        Stage::Runtime,
        entry.span,
        format!("Meta:{} is not supported by this agent; it may only have its usual value", entry.name),
    ))
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
