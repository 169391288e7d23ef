//! From a frontend's graph spec plus what the world holds to a runnable [`Graph`]: exports
//! are split off, collected resources merged in, purge lists filled. Pure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::graph::{Graph, GraphError};
use crate::contract::ResId;
use crate::contract::limits::MAX_EXPORT_BYTES;
use crate::frontend::{CollectSpec, GraphSpec};
use crate::resources::{self, Resource, managed_key};
use crate::world::Exported;

pub struct Assembled {
    pub graph: Graph,
    /// What this host exports (`GraphSpec::exports`).
    pub exports: Vec<Exported>,
    /// Collected resources that were skipped, and why.
    pub warnings: Vec<String>,
}

pub fn assemble(spec: &GraphSpec, host: &str, collected: &[Exported]) -> Result<Assembled, GraphError> {
    let mut list: Vec<Arc<dyn Resource>> = spec.resources.iter().cloned().collect();
    let mut exports = Vec::new();
    let mut warnings = Vec::new();
    for r in list.iter().filter(|_| !spec.exports.is_empty()) {
        if spec.exports.contains(&r.id()) {
            let e = Exported {
                host: host.to_string(),
                kind: r.kind().to_string(),
                name: r.name().to_string(),
                params: r.to_json(),
                to: spec.export_to.get(&r.id()).cloned(),
            };
            let bytes = serde_json::to_vec(&e).map(|v| v.len()).unwrap_or(usize::MAX);
            if bytes > MAX_EXPORT_BYTES {
                return Err(GraphError::ExportTooLarge { id: r.id(), bytes, limit: MAX_EXPORT_BYTES });
            }
            exports.push(e);
        }
    }
    if !spec.collect.is_empty() {
        collect_into(&mut list, &mut warnings, spec, host, collected);
    }
    fill_purge_keep(&mut list);
    let graph = super::group::autogroup(Graph::build(list, &spec.edges)?);
    Ok(Assembled { graph, exports, warnings })
}

/// The vertices of `running` (assembled from `old`) to replace to run `new`, when `new`
/// differs from `old` only in the params of some resources: the same resources in the same
/// order, the same edges, exports and collect entries, and each changed resource keeping its
/// place in the graph (kind, name, the paths it manages and needs) and not exported or a
/// purging directory, nor grouped or groupable (autogrouping could change with it). Then the
/// graph's shape and what this host exports stay as they are, and only those vertices
/// change, found in `running` by id. `None`: `new` is assembled in full.
pub fn changed_in_place(
    old: &GraphSpec,
    new: &GraphSpec,
    running: &Graph,
) -> Option<Vec<(usize, Arc<dyn Resource>)>> {
    if new.resources.len() != old.resources.len()
        || new.edges != old.edges
        || new.exports != old.exports
        || new.export_to != old.export_to
        || new.collect != old.collect
        || !old.resources.iter().all(|r| running.index.contains_key(&r.id()))
    {
        return None;
    }
    let mut changed = Vec::new();
    for (now, was) in new.resources.iter().zip(&old.resources) {
        if Arc::ptr_eq(now, was) || now.cmp(was.as_ref()) {
            continue;
        }
        let (id, edges) = (now.id(), now.autoedges());
        let at = running.index.get(&id).copied().filter(|&v| v < running.vertices.len())?;
        let (was_edges, vertex) = (was.autoedges(), &running.vertices[at]);
        if id != was.id()
            || vertex.id() != id
            || groups(now.as_ref())
            || groups(was.as_ref())
            || !vertex.grouped().is_empty()
            || edges.provides != was_edges.provides
            || edges.requires != was_edges.requires
            || now.named_edges() != was.named_edges()
            || now.meta().autoedge != was.meta().autoedge
            || new.exports.contains(&id)
            || purging(now.as_ref())
            || purging(vertex.as_ref())
        {
            return None;
        }
        changed.push((at, now.clone()));
    }
    Some(changed)
}

/// Whether autogrouping may put `r` in a group.
fn groups(r: &dyn Resource) -> bool {
    r.meta().autogroup && r.group_key().is_some()
}

fn purging(r: &dyn Resource) -> bool {
    r.as_any().downcast_ref::<crate::resources::file::File>().is_some_and(|f| f.purge)
}

/// Merge into `list` the exports of the other hosts that `spec`'s collect entries take.
fn collect_into(
    list: &mut Vec<Arc<dyn Resource>>,
    warnings: &mut Vec<String>,
    spec: &GraphSpec,
    host: &str,
    collected: &[Exported],
) {
    let mut by_id: HashMap<ResId, usize> = list.iter().enumerate().map(|(i, r)| (r.id(), i)).collect();
    // A hidden resource is not applied here: it manages nothing on this host.
    let mut managed: HashMap<PathBuf, ResId> = list
        .iter()
        .filter(|r| !r.meta().hidden)
        .flat_map(|r| r.autoedges().provides.into_iter().map(move |p| (managed_key(&p), r.id())))
        .collect();
    let mut sorted: Vec<&Exported> = collected.iter().collect();
    sorted.sort_by(|a, b| (&a.host, &a.kind, &a.name).cmp(&(&b.host, &b.kind, &b.name)));
    for c in &spec.collect {
        // This host's own exports are in its graph already (and newer than the world's copy
        // while a change is on its way).
        for e in
            sorted.iter().filter(|e| e.kind == c.kind && e.host != host && e.for_host(host) && named(c, e))
        {
            let mut r = match resources::from_json(&e.kind, e.params.clone()) {
                Ok(r) => r,
                Err(err) => {
                    warnings.push(format!("collected {}[{}] from {}: {err}", e.kind, e.name, e.host));
                    continue;
                }
            };
            r.set_name(e.name.clone());
            // Hidden is the exporter's: the collector applies what it takes.
            r.meta_mut().hidden = false;
            // Restricted before anything else looks at it: what a peer exported is checked
            // as exported, then only what a collector takes from a peer is kept.
            if let Err(err) = r.collected(c.pattern.as_deref()) {
                warnings.push(format!("collected {}[{}] from {}: refused: {err}", e.kind, e.name, e.host));
                continue;
            }
            if !c.overrides.is_empty() {
                r = match overridden(r.as_ref(), &c.overrides) {
                    Ok(r) => r,
                    Err(err) => {
                        warnings.push(format!("collected {}[{}] from {}: {err}", e.kind, e.name, e.host));
                        continue;
                    }
                };
            }
            if let Err(err) = r.meta().validate().and_then(|_| r.validate()) {
                warnings.push(format!("collected {}[{}] from {}: {err}", e.kind, e.name, e.host));
                continue;
            }
            match by_id.get(&r.id()) {
                Some(&i) if list[i].cmp(r.as_ref()) => {}
                Some(_) => warnings.push(format!(
                    "collected {}[{}] from {} conflicts with a resource of the same name here; keeping the local one",
                    e.kind, e.name, e.host
                )),
                None => {
                    let paths: Vec<PathBuf> = r.autoedges().provides.iter().map(|p| managed_key(p)).collect();
                    if let Some((p, other)) = paths.iter().find_map(|p| managed.get(p).map(|o| (p, o))) {
                        warnings.push(format!(
                            "collected {}[{}] from {}: {} is already managed by {other}; skipped",
                            e.kind,
                            e.name,
                            e.host,
                            p.display()
                        ));
                        continue;
                    }
                    managed.extend(paths.into_iter().map(|p| (p, r.id())));
                    by_id.insert(r.id(), list.len());
                    list.push(r.into());
                }
            }
        }
    }
}

/// Whether the collect entry takes this export: every one of its kind, or those it names
/// (from any host, or from the host named with it).
fn named(c: &CollectSpec, e: &Exported) -> bool {
    c.names.as_ref().is_none_or(|names| {
        names.iter().any(|(name, from)| *name == e.name && from.as_ref().is_none_or(|h| *h == e.host))
    })
}

/// The collected resource with the collector's own params set over it (`meta` merged field
/// by field).
fn overridden(
    r: &dyn Resource,
    overrides: &serde_json::Map<String, serde_json::Value>,
) -> Result<Box<dyn Resource>, String> {
    let mut json = r.to_json();
    let Some(object) = json.as_object_mut() else { return Err("its params are not an object".into()) };
    for (key, value) in overrides {
        match (object.get_mut(key), value) {
            (Some(serde_json::Value::Object(have)), serde_json::Value::Object(set)) if key == "meta" => {
                have.extend(set.clone());
            }
            _ => {
                object.insert(key.clone(), value.clone());
            }
        }
    }
    let mut made = resources::from_json(r.kind(), json).map_err(|e| e.to_string())?;
    made.set_name(r.name().to_string());
    Ok(made)
}

/// A purging directory must keep what other file resources manage inside it.
fn fill_purge_keep(list: &mut [Arc<dyn Resource>]) {
    use crate::resources::file::File;
    let purging: Vec<usize> =
        list.iter().enumerate().filter(|(_, r)| purging(r.as_ref())).map(|(i, _)| i).collect();
    if purging.is_empty() {
        return;
    }
    let targets: Vec<std::path::PathBuf> =
        list.iter().filter_map(|r| r.as_any().downcast_ref::<File>()).map(|f| f.target()).collect();
    for i in purging {
        let f = list[i].as_any().downcast_ref::<File>().expect("file").clone();
        let dir = f.target();
        let mut f = f;
        f.keep = targets.iter().filter(|t| **t != dir && t.starts_with(&dir)).cloned().collect();
        list[i] = Arc::new(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::yaml;

    #[test]
    fn exports_are_split_and_collected_files_land_in_pattern_dir() {
        let text = r#"
graph: g
resources:
  file:
  - name: "@@filea"
    path: /tmp/mgmtA/fA
    content: "i am fA\n"
collect:
- kind: file
  pattern: /tmp/mgmtA/
"#;
        let spec = yaml::parse(text, "g.yaml").unwrap();
        let a = assemble(&spec, "A", &[]).unwrap();
        assert_eq!(a.exports.len(), 1);
        assert_eq!(a.exports[0].name, "filea");
        assert_eq!(a.graph.vertices[0].name(), "filea");

        // Host A's own export collected back is the same resource: merged, not duplicated.
        let mut collected = a.exports.clone();
        let mut b = a.exports[0].clone();
        b.host = "B".into();
        b.name = "fileb".into();
        b.params["name"] = "fileb".into();
        b.params["path"] = "/tmp/mgmtB/fB".into();
        collected.push(b);
        let a2 = assemble(&spec, "A", &collected).unwrap();
        assert!(a2.warnings.is_empty(), "{:?}", a2.warnings);
        assert_eq!(a2.graph.vertices.len(), 2);
        let fb = a2.graph.vertices[1].as_any().downcast_ref::<crate::resources::file::File>().unwrap();
        assert_eq!(fb.path.as_deref(), Some("/tmp/mgmtA/fB"));

        // An older copy of its own export (a change on its way to the world) is not a conflict.
        collected[0].params["content"] = "old\n".into();
        let a3 = assemble(&spec, "A", &collected).unwrap();
        assert!(a3.warnings.is_empty(), "{:?}", a3.warnings);
        assert_eq!(a3.graph.vertices.len(), 2);
    }

    #[test]
    fn a_hidden_resource_does_not_keep_a_collected_one_off_its_path() {
        let text = r#"
graph: g
resources:
  file:
  - name: "@@mine"
    path: /tmp/mgmtH/f
    content: "for the others\n"
    meta: {hidden: true}
collect:
- kind: file
  pattern: /tmp/mgmtH/
"#;
        let spec = yaml::parse(text, "g.yaml").unwrap();
        let mut theirs = assemble(&spec, "A", &[]).unwrap().exports[0].clone();
        theirs.host = "B".into();
        theirs.name = "f".into();
        theirs.params["name"] = "f".into();
        theirs.params["content"] = "from B\n".into();
        let a = assemble(&spec, "A", &[theirs]).unwrap();
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        let collected: Vec<String> = a.graph.vertices.iter().map(|v| v.id().to_string()).collect();
        assert_eq!(collected, ["file[mine]", "file[f]"]);
    }

    #[test]
    fn an_export_over_the_limit_is_refused_naming_it() {
        let text = format!(
            "graph: g\nresources:\n  file:\n  - name: \"@@big\"\n    path: /tmp/big\n    content: \"{}\"\n",
            "x".repeat(MAX_EXPORT_BYTES)
        );
        let spec = yaml::parse(&text, "g.yaml").unwrap();
        let err = assemble(&spec, "A", &[]).err().expect("refused");
        assert!(
            matches!(&err, GraphError::ExportTooLarge { id, .. } if id.to_string() == "file[big]"),
            "{err}"
        );
        // The same content, not exported, is fine.
        let spec = yaml::parse(&text.replace("@@big", "big"), "g.yaml").unwrap();
        assert!(assemble(&spec, "A", &[]).is_ok());
    }

    #[test]
    fn a_crafted_export_is_refused_with_a_warning_and_the_rest_is_collected() {
        let text = "graph: g\nresources: {}\ncollect:\n- kind: file\n  pattern: /in/\n";
        let spec = yaml::parse(text, "g.yaml").unwrap();
        let export = |name: &str, params: serde_json::Value| Exported {
            host: "EVIL".into(),
            kind: "file".into(),
            name: name.into(),
            params,
            to: None,
        };
        let collected = vec![
            export("pwn", serde_json::json!({"name": "pwn", "path": "/a/..", "purge": true, "force": true})),
            export("dot", serde_json::json!({"name": "dot", "path": "/a/./"})),
            export(
                "ok",
                serde_json::json!({"name": "ok", "path": "/x/ok", "source": "/etc/shadow", "mode": "4755"}),
            ),
        ];
        let a = assemble(&spec, "B", &collected).unwrap();
        assert_eq!(a.warnings.len(), 2, "{:?}", a.warnings);
        assert!(a.warnings.iter().any(|w| w.contains("file[pwn] from EVIL") && w.contains("field `path`")));
        assert_eq!(a.graph.vertices.len(), 1);
        let f = a.graph.vertices[0].as_any().downcast_ref::<crate::resources::file::File>().unwrap();
        assert_eq!(
            (f.path.as_deref(), f.source.as_deref(), f.mode.as_deref()),
            (Some("/in/ok"), None, Some("0755"))
        );
    }

    #[test]
    fn an_export_to_named_hosts_is_collected_by_them_only_and_names_and_overrides_apply() {
        let c = CollectSpec {
            kind: "file".into(),
            pattern: Some("/in/".into()),
            names: Some(vec![("/x/a".into(), None), ("/x/b".into(), Some("P".into()))]),
            overrides: serde_json::json!({"mode": "0600"}).as_object().unwrap().clone(),
        };
        let spec = GraphSpec { collect: vec![c], ..GraphSpec::default() };
        let file = |name: &str, host: &str, to: Option<Vec<String>>| Exported {
            host: host.into(),
            kind: "file".into(),
            name: name.into(),
            params: serde_json::json!({"name": name, "content": "x\n"}),
            to,
        };
        let collected = vec![
            file("/x/a", "P", Some(vec!["B".into()])),
            file("/x/b", "Q", None),
            file("/x/b", "P", Some(vec!["C".into()])),
            file("/x/c", "P", None),
        ];
        // B: `/x/a` is addressed to it; `/x/b` is named from P, which exports it to C only;
        // `/x/c` is not named.
        let b = assemble(&spec, "B", &collected).unwrap();
        let names: Vec<String> = b.graph.vertices.iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["/x/a"]);
        let f = b.graph.vertices[0].as_any().downcast_ref::<crate::resources::file::File>().unwrap();
        assert_eq!((f.path.as_deref(), f.mode.as_deref()), (Some("/in/a"), Some("0600")));
        let c = assemble(&spec, "C", &collected).unwrap();
        let names: Vec<String> = c.graph.vertices.iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["/x/b"], "C takes P's `/x/b`, addressed to it, and not `/x/a`");
    }

    /// The YAML of a graph of files under /srv/d and an exec, with `extra` files.
    fn text(extra: &str) -> String {
        format!(
            r#"
graph: g
resources:
  file:
  - name: dir
    path: /srv/d/
  - name: a
    path: /srv/d/a
    content: "a\n"
  - name: b
    path: /srv/d/b
    content: "b\n"
{extra}  exec:
  - name: run
    cmd: "true"
edges:
- name: a-run
  from: {{kind: file, name: a}}
  to: {{kind: exec, name: run}}
  notify: true
"#
        )
    }

    fn parse(text: &str) -> GraphSpec {
        yaml::parse(text, "g.yaml").unwrap()
    }

    #[test]
    fn a_change_of_params_alone_replaces_only_the_changed_vertices() {
        let old = parse(&text(""));
        let running = assemble(&old, "h", &[]).unwrap().graph;
        // Parsed again: every resource is a new value, equal to the old but for `a`'s content.
        let new = parse(&text("").replace("\"a\\n\"", "\"A\\n\""));
        let changes = changed_in_place(&old, &new, &running).expect("in place");
        let ids: Vec<String> =
            changes.iter().map(|(i, r)| format!("{} by {}", running.vertices[*i].id(), r.id())).collect();
        assert_eq!(ids, ["file[a] by file[a]"]);
        assert_eq!(changes[0].1.to_json()["content"], "A\n");
        assert!(changed_in_place(&old, &parse(&text("")), &running).unwrap().is_empty(), "nothing changed");
    }

    #[test]
    fn a_change_of_shape_exports_or_paths_is_assembled_in_full() {
        let in_full = |old: &str, new: &str| {
            let old = parse(old);
            let running = assemble(&old, "h", &[]).unwrap().graph;
            changed_in_place(&old, &parse(new), &running).is_none()
        };
        let base = text("");
        assert!(in_full(&base, &text("  - name: c\n    path: /srv/d/c\n")), "a resource added");
        assert!(in_full(&base, &base.replace("/srv/d/b", "/srv/e/b")), "a path moved");
        assert!(in_full(&base, &base.replace("notify: true", "notify: false")), "an edge changed");
        let exported = base.replace("name: b\n", "name: \"@@b\"\n");
        assert!(in_full(&exported, &exported.replace("\"b\\n\"", "\"B\\n\"")), "an export changed");
        let purging = base.replace("path: /srv/d/\n", "path: /srv/d/\n    purge: true\n");
        let mode = purging.replace("purge: true\n", "purge: true\n    mode: \"0700\"\n");
        assert!(in_full(&purging, &mode), "a purging directory changed");
        let old = parse(&base);
        assert!(changed_in_place(&old, &parse(&base), &Graph::default()).is_none(), "nothing running yet");
    }
    #[test]
    fn a_change_beside_grouped_pkgs_is_found_by_id_and_a_change_of_a_pkg_is_assembled_in_full() {
        let text = |content: &str, state: &str| {
            format!(
                "graph: g\nresources:\n  pkg:\n  - name: aa\n  - name: bb\n    state: {state}\n  - name: cc\n  file:\n  - name: f\n    path: /srv/f\n    content: \"{content}\"\n"
            )
        };
        let old = parse(&text("1", "installed"));
        let running = assemble(&old, "h", &[]).unwrap().graph;
        assert_eq!(running.vertices.len(), 2, "the pkgs are one vertex");
        let changes = changed_in_place(&old, &parse(&text("2", "installed")), &running).expect("in place");
        assert_eq!(changes.len(), 1);
        assert_eq!(running.vertices[changes[0].0].id().to_string(), "file[f]");
        assert!(changed_in_place(&old, &parse(&text("1", "uninstalled")), &running).is_none());
    }
}
