//! The checks every frontend's graph goes through, whatever its syntax: names, duplicates,
//! each kind's params, paths managed twice, edge ends, send/recv fields and collect entries.
//! Pure: a function of the spec. Errors name a place in the spec (which resource, edge or
//! collect entry, by position) that each frontend turns into a location in its own source.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::{EdgeSpec, GraphSpec};
use crate::contract::ResId;
use crate::contract::path::normalize_path;
use crate::resources::{self, Resource, managed_key};

/// Where in a [`GraphSpec`] a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `spec.resources[index]`, and the field at fault when one is.
    Resource { index: usize, field: Option<&'static str> },
    /// `spec.edges[index]`.
    Edge(usize),
    /// `spec.collect[index]`; `pattern` when its pattern is at fault.
    Collect { index: usize, pattern: bool },
    /// The graph as a whole.
    Graph,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    pub place: Place,
    pub message: String,
}

/// The first rule `spec` breaks, in the order resources, edges, collect entries.
pub fn check(spec: &GraphSpec) -> Result<(), SpecError> {
    check_resources(&spec.resources)?;
    let by_id: HashMap<ResId, &dyn Resource> = spec.resources.iter().map(|r| (r.id(), r.as_ref())).collect();
    check_exports(spec, &by_id)?;
    check_edges(spec, &by_id)?;
    check_collect(spec)
}

fn check_resources(list: &imbl::Vector<Arc<dyn Resource>>) -> Result<(), SpecError> {
    let mut seen = HashSet::new();
    let mut managed: HashMap<PathBuf, ResId> = HashMap::new();
    for (index, res) in list.iter().enumerate() {
        let at = |field: &'static str, message: String| SpecError {
            place: Place::Resource { index, field: Some(field) },
            message,
        };
        if res.name().is_empty() {
            return Err(at("name", "must not be empty".into()));
        }
        if res.name().starts_with('$') && !res.meta().dollar {
            return Err(at(
                "name",
                "starts with `$`, as a variable that was not interpolated would; set meta `dollar: true` if the name is meant".into(),
            ));
        }
        if !seen.insert(res.id()) {
            return Err(at("name", format!("duplicate resource {}", res.id())));
        }
        if let Err(e) = crate::resources::validate_resource(res.as_ref()) {
            return Err(at(e.field, e.message));
        }
        // Two resources managing one path could never both be satisfied.
        // A hidden resource manages nothing on this host.
        for p in res.autoedges().provides.into_iter().filter(|_| !res.meta().hidden) {
            if let Some(other) = managed.insert(managed_key(&p), res.id()) {
                return Err(at("path", format!("{} is already managed by {other}", p.display())));
            }
        }
    }
    Ok(())
}

fn check_exports(spec: &GraphSpec, by_id: &HashMap<ResId, &dyn Resource>) -> Result<(), SpecError> {
    match spec.exports.iter().find(|id| !by_id.contains_key(id)) {
        Some(id) => Err(SpecError {
            place: Place::Graph,
            message: format!("exports {id}, which is not in the graph"),
        }),
        None => Ok(()),
    }
}

/// How an edge is named in messages: by its name, or by its position.
pub fn edge_label(index: usize, edge: &EdgeSpec) -> String {
    if edge.name.is_empty() { format!("edge #{}", index + 1) } else { format!("edge `{}`", edge.name) }
}

fn check_edges(spec: &GraphSpec, by_id: &HashMap<ResId, &dyn Resource>) -> Result<(), SpecError> {
    // (receiver, field) -> the edge that fills it: a field takes one value.
    let mut filled: HashMap<(&ResId, &str), String> = HashMap::new();
    for (index, edge) in spec.edges.iter().enumerate() {
        let label = edge_label(index, edge);
        let at = |message: String| SpecError { place: Place::Edge(index), message };
        let end = |id: &ResId, end: &str| {
            by_id
                .get(id)
                .copied()
                .ok_or_else(|| at(format!("{label}: `{end}` names {id}, which is not in the graph")))
        };
        let src = end(&edge.from, "from")?;
        let dst = end(&edge.to, "to")?;
        let Some((send, recv)) = &edge.send_recv else { continue };
        let (from, to) = (&edge.from, &edge.to);
        if !src.send_fields().contains(&send.as_str()) {
            return Err(at(format!(
                "{label}: {from} does not send `{send}` (it sends: {})",
                list(src.send_fields())
            )));
        }
        if !dst.recv_fields().contains(&recv.as_str()) {
            return Err(at(format!(
                "{label}: {to} cannot receive `{recv}` (it receives: {})",
                list(dst.recv_fields())
            )));
        }
        if let Some(other) = filled.insert((to, recv), label.clone()) {
            return Err(at(format!(
                "{label}: {to} already receives `{recv}` from {other}; a field takes one value"
            )));
        }
    }
    Ok(())
}

fn check_collect(spec: &GraphSpec) -> Result<(), SpecError> {
    for (index, c) in spec.collect.iter().enumerate() {
        if !resources::KINDS.contains(&c.kind.as_str()) {
            return Err(SpecError {
                place: Place::Collect { index, pattern: false },
                message: format!("collect: unknown resource kind `{}`", c.kind),
            });
        }
        if let Some(p) = &c.pattern {
            check_pattern(p).map_err(|why| SpecError {
                place: Place::Collect { index, pattern: true },
                message: format!("collect: field `pattern`: {why}"),
            })?;
        }
    }
    Ok(())
}

/// A collect `pattern` is the directory collected files land in: an absolute path in
/// normal form (see [`normalize_path`]) other than `/` itself.
fn check_pattern(p: &str) -> Result<(), String> {
    let shown = crate::text::head(&p.replace('\0', "\\0"), 120).into_owned();
    match normalize_path(p) {
        Err(e) => Err(format!("`{shown}` {e}")),
        Ok(n) if n == "/" => {
            Err(format!("`{shown}` is the root directory; collect into a directory of its own"))
        }
        Ok(_) => Ok(()),
    }
}

fn list(items: &[&str]) -> String {
    if items.is_empty() { "nothing".into() } else { items.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::CollectSpec;
    use serde_json::json;

    fn noop(name: &str) -> Box<dyn Resource> {
        resources::from_json("noop", json!({"name": name})).unwrap()
    }
    fn file(name: &str, path: &str) -> Box<dyn Resource> {
        resources::from_json("file", json!({"name": name, "path": path})).unwrap()
    }
    fn exec(name: &str) -> Box<dyn Resource> {
        resources::from_json("exec", json!({"name": name, "cmd": "true"})).unwrap()
    }
    fn edge(from: ResId, to: ResId, send_recv: Option<(&str, &str)>) -> EdgeSpec {
        let send_recv = send_recv.map(|(s, r)| (s.to_string(), r.to_string()));
        EdgeSpec { name: String::new(), from, to, notify: false, send_recv }
    }
    fn spec(resources: Vec<Box<dyn Resource>>) -> GraphSpec {
        GraphSpec {
            name: "g".into(),
            resources: resources.into_iter().map(Arc::from).collect(),
            ..GraphSpec::default()
        }
    }
    fn place(e: Result<(), SpecError>) -> Place {
        e.expect_err("refused").place
    }

    #[test]
    fn a_name_that_starts_with_a_dollar_needs_meta_dollar() {
        let named = |meta: serde_json::Value| {
            resources::from_json("exec", json!({"name": "$x", "cmd": "true", "meta": meta})).unwrap()
        };
        let e = check(&spec(vec![named(json!({}))])).unwrap_err();
        assert_eq!(e.place, Place::Resource { index: 0, field: Some("name") });
        assert!(e.message.contains("meta `dollar: true`"), "{}", e.message);
        assert!(check(&spec(vec![named(json!({"dollar": true}))])).is_ok());
    }

    #[test]
    fn a_valid_graph_passes() {
        let mut s = spec(vec![exec("e"), file("f", "/tmp/f")]);
        s.edges.push(edge(ResId::new("exec", "e"), ResId::new("file", "f"), Some(("stdout", "content"))));
        s.collect.push(CollectSpec {
            kind: "file".into(),
            pattern: Some("/tmp/in/".into()),
            ..Default::default()
        });
        s.exports.insert(ResId::new("file", "f"));
        assert_eq!(check(&s), Ok(()));
    }

    #[test]
    fn resources_are_refused_by_position_and_field() {
        let e = check(&spec(vec![noop("a"), noop("")])).unwrap_err();
        assert_eq!(
            (e.place, e.message.as_str()),
            (Place::Resource { index: 1, field: Some("name") }, "must not be empty")
        );
        let e = check(&spec(vec![noop("a"), noop("b"), noop("a")])).unwrap_err();
        assert_eq!(e.place, Place::Resource { index: 2, field: Some("name") });
        assert_eq!(e.message, "duplicate resource noop[a]");
        assert_eq!(
            place(check(&spec(vec![file("f", "relative")]))),
            Place::Resource { index: 0, field: Some("path") }
        );
        let e = check(&spec(vec![file("a", "/tmp/x"), file("b", "/tmp//x")])).unwrap_err();
        assert_eq!(e.place, Place::Resource { index: 1, field: Some("path") });
        assert_eq!(e.message, "/tmp/x is already managed by file[a]");
    }

    #[test]
    fn one_name_may_serve_two_kinds() {
        assert_eq!(check(&spec(vec![noop("a"), exec("a")])), Ok(()));
    }

    #[test]
    fn edges_must_join_resources_of_the_graph_with_fields_they_have() {
        let (e, f) = (ResId::new("exec", "e"), ResId::new("file", "f"));
        let with = |edges: Vec<EdgeSpec>| GraphSpec { edges, ..spec(vec![exec("e"), file("f", "/tmp/f")]) };
        let err = check(&with(vec![
            edge(e.clone(), f.clone(), None),
            edge(e.clone(), ResId::new("file", "g"), None),
        ]))
        .unwrap_err();
        assert_eq!(err.place, Place::Edge(1));
        assert_eq!(err.message, "edge #2: `to` names file[g], which is not in the graph");
        let err = check(&with(vec![edge(e.clone(), f.clone(), Some(("nope", "content")))])).unwrap_err();
        assert_eq!(err.message, "edge #1: exec[e] does not send `nope` (it sends: stdout, stderr, exitcode)");
        let err = check(&with(vec![edge(f.clone(), e.clone(), Some(("x", "y")))])).unwrap_err();
        assert_eq!(err.message, "edge #1: file[f] does not send `x` (it sends: nothing)");
        let twice = vec![
            edge(e.clone(), f.clone(), Some(("stdout", "content"))),
            edge(e, f, Some(("stderr", "content"))),
        ];
        let err = check(&with(twice)).unwrap_err();
        assert_eq!(
            err.message,
            "edge #2: file[f] already receives `content` from edge #1; a field takes one value"
        );
    }

    #[test]
    fn collect_entries_need_a_known_kind_and_a_directory_of_their_own() {
        let with = |kind: &str, pattern: Option<&str>| GraphSpec {
            collect: vec![CollectSpec {
                kind: kind.into(),
                pattern: pattern.map(str::to_string),
                ..Default::default()
            }],
            ..spec(vec![])
        };
        assert_eq!(place(check(&with("nope", None))), Place::Collect { index: 0, pattern: false });
        for bad in ["", "rel/", "/", "/a/../b/"] {
            assert_eq!(
                place(check(&with("file", Some(bad)))),
                Place::Collect { index: 0, pattern: true },
                "{bad}"
            );
        }
        assert_eq!(check(&with("file", Some("/srv/in/"))), Ok(()));
    }

    #[test]
    fn exports_name_resources_of_the_graph() {
        let mut s = spec(vec![noop("a")]);
        s.exports.insert(ResId::new("noop", "b"));
        assert_eq!(place(check(&s)), Place::Graph);
    }
}
