//! What one deploy changes against another: the files of the bundle (by manifest) and the
//! resources, edges and collects of the graph. Pure: the callers fetch and parse.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::bundle::{FileEntry, Manifest};
use crate::contract::ResId;
use crate::frontend::{EdgeSpec, GraphSpec};

/// A file of the bundle that is not the same in both manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    Added(FileEntry),
    Removed(FileEntry),
    /// Same path; another mode or content.
    Changed {
        old: FileEntry,
        new: FileEntry,
    },
}

impl FileChange {
    pub fn path(&self) -> &str {
        match self {
            FileChange::Added(f) | FileChange::Removed(f) | FileChange::Changed { new: f, .. } => &f.path,
        }
    }
}

/// The files added, removed and changed from `old` to `new`, by path (sorted).
pub fn manifest_diff(old: &Manifest, new: &Manifest) -> Vec<FileChange> {
    let before: BTreeMap<&str, &FileEntry> = old.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let after: BTreeMap<&str, &FileEntry> = new.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let paths: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    paths
        .into_iter()
        .filter_map(|p| match (before.get(p), after.get(p)) {
            (None, Some(n)) => Some(FileChange::Added((*n).clone())),
            (Some(o), None) => Some(FileChange::Removed((*o).clone())),
            (Some(o), Some(n)) if o.mode != n.mode || o.sha256 != n.sha256 => {
                Some(FileChange::Changed { old: (*o).clone(), new: (*n).clone() })
            }
            _ => None,
        })
        .collect()
}

/// One param of a resource that differs: its path (`content`, `meta.retry`) and its value
/// on each side (`None`: not set there, or hidden).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamChange {
    pub param: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    /// The values are left out: the content of a file that is not world-readable (its
    /// `mode`) or marked `meta.sensitive`.
    pub hidden: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResourceChange {
    Added(ResId),
    Removed(ResId),
    Changed(ResId, Vec<ParamChange>),
}

impl ResourceChange {
    pub fn id(&self) -> &ResId {
        match self {
            ResourceChange::Added(id) | ResourceChange::Removed(id) | ResourceChange::Changed(id, _) => id,
        }
    }
}

/// What differs between two graphs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphDiff {
    /// The graph's name, when it changed: (old, new).
    pub name: Option<(String, String)>,
    /// By kind, then name.
    pub resources: Vec<ResourceChange>,
    /// Edges as `kind[a] -> kind[b]` (with `notify`, or `send -> recv`).
    pub edges_added: Vec<String>,
    pub edges_removed: Vec<String>,
    /// Collect requests as `kind` or `kind pattern`.
    pub collect_added: Vec<String>,
    pub collect_removed: Vec<String>,
}

impl GraphDiff {
    pub fn is_empty(&self) -> bool {
        *self == GraphDiff::default()
    }
}

/// The resources (by kind and name), edges and collects added, removed and changed from
/// `old` to `new`.
pub fn graph_diff(old: &GraphSpec, new: &GraphSpec) -> GraphDiff {
    let by_id = |g: &GraphSpec| -> BTreeMap<(String, String), Value> {
        g.resources.iter().map(|r| ((r.kind().to_string(), r.name().to_string()), r.to_json())).collect()
    };
    let (before, after) = (by_id(old), by_id(new));
    let ids: BTreeSet<&(String, String)> = before.keys().chain(after.keys()).collect();
    let mut resources = Vec::new();
    for key in ids {
        let id = ResId::new(key.0.clone(), key.1.clone());
        match (before.get(key), after.get(key)) {
            (None, Some(_)) => resources.push(ResourceChange::Added(id)),
            (Some(_), None) => resources.push(ResourceChange::Removed(id)),
            (Some(o), Some(n)) => {
                let mut params = Vec::new();
                param_diff("", o, n, &mut params);
                if key.0 == "file" && (sensitive(o) || sensitive(n)) {
                    params.iter_mut().filter(|p| p.param == "content").for_each(hide);
                }
                if !params.is_empty() {
                    resources.push(ResourceChange::Changed(id, params));
                }
            }
            (None, None) => {}
        }
    }
    let (edges_added, edges_removed) = added_removed(&edge_set(old), &edge_set(new));
    let (collect_added, collect_removed) = added_removed(&collect_set(old), &collect_set(new));
    GraphDiff {
        name: (old.name != new.name).then(|| (old.name.clone(), new.name.clone())),
        resources,
        edges_added,
        edges_removed,
        collect_added,
        collect_removed,
    }
}

/// The params that differ between two JSON values, by path; objects are compared key by
/// key, anything else as a whole. A resource's `name` is its identity, not a param.
fn param_diff(at: &str, old: &Value, new: &Value, out: &mut Vec<ParamChange>) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                if at.is_empty() && k == "name" {
                    continue;
                }
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match (o.get(k), n.get(k)) {
                    (Some(a), Some(b)) => param_diff(&path, a, b, out),
                    (a, b) => {
                        out.push(ParamChange { param: path, old: a.cloned(), new: b.cloned(), hidden: false })
                    }
                }
            }
        }
        _ if old != new => out.push(ParamChange {
            param: at.to_string(),
            old: Some(old.clone()),
            new: Some(new.clone()),
            hidden: false,
        }),
        _ => {}
    }
}

/// Whether a file's params make its content a secret: a `mode` without the world-read bit,
/// or `meta.sensitive: true`.
fn sensitive(params: &Value) -> bool {
    let private_mode = params
        .get("mode")
        .and_then(Value::as_str)
        .and_then(|m| crate::resources::file::parse_mode(m).ok())
        .is_some_and(|m| m & 0o004 == 0);
    private_mode || params.pointer("/meta/sensitive") == Some(&Value::Bool(true))
}

fn hide(p: &mut ParamChange) {
    p.old = None;
    p.new = None;
    p.hidden = true;
}

fn edge_text(e: &EdgeSpec) -> String {
    let mut s = format!("{} -> {}", e.from, e.to);
    if e.notify {
        s.push_str(" (notify)");
    }
    if let Some((send, recv)) = &e.send_recv {
        s.push_str(&format!(" ({send} -> {recv})"));
    }
    s
}

fn edge_set(g: &GraphSpec) -> BTreeSet<String> {
    g.edges.iter().map(edge_text).collect()
}

fn collect_set(g: &GraphSpec) -> BTreeSet<String> {
    g.collect
        .iter()
        .map(|c| match &c.pattern {
            Some(p) => format!("{} {p}", c.kind),
            None => c.kind.clone(),
        })
        .collect()
}

/// What is only in `new`, and what is only in `old`.
fn added_removed(old: &BTreeSet<String>, new: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (new.difference(old).cloned().collect(), old.difference(new).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::bundle::{MODE_EXECUTABLE, MODE_FILE};
    use crate::frontend::yaml::parse;

    fn entry(path: &str, mode: u32, sha: char) -> FileEntry {
        FileEntry { path: path.into(), mode, size: 1, sha256: sha.to_string().repeat(64) }
    }

    fn manifest(files: Vec<FileEntry>) -> Manifest {
        Manifest { frontend: "yaml".into(), entry: "graph.yaml".into(), files }
    }

    #[test]
    fn files_are_added_removed_or_changed_in_content_or_mode() {
        let old = manifest(vec![
            entry("a.conf", MODE_FILE, 'a'),
            entry("graph.yaml", MODE_FILE, 'b'),
            entry("run.sh", MODE_FILE, 'c'),
            entry("same", MODE_FILE, 'd'),
        ]);
        let new = manifest(vec![
            entry("b.conf", MODE_FILE, 'a'),
            entry("graph.yaml", MODE_FILE, 'e'),
            entry("run.sh", MODE_EXECUTABLE, 'c'),
            entry("same", MODE_FILE, 'd'),
        ]);
        let d = manifest_diff(&old, &new);
        assert_eq!(
            d,
            vec![
                FileChange::Removed(entry("a.conf", MODE_FILE, 'a')),
                FileChange::Added(entry("b.conf", MODE_FILE, 'a')),
                FileChange::Changed {
                    old: entry("graph.yaml", MODE_FILE, 'b'),
                    new: entry("graph.yaml", MODE_FILE, 'e')
                },
                FileChange::Changed {
                    old: entry("run.sh", MODE_FILE, 'c'),
                    new: entry("run.sh", MODE_EXECUTABLE, 'c')
                },
            ]
        );
        assert!(manifest_diff(&old, &old).is_empty());
    }

    const OLD: &str = "graph: app
resources:
  file:
  - name: conf
    path: /tmp/x/app.conf
    content: \"one\\n\"
  - name: gone
    path: /tmp/x/gone
  exec:
  - name: run
    cmd: echo one
edges:
- from: {kind: file, name: conf}
  to: {kind: exec, name: run}
";

    const NEW: &str = "graph: app2
resources:
  file:
  - name: conf
    path: /tmp/x/app.conf
    content: \"two\\n\"
    meta:
      retry: 3
  - name: new
    path: /tmp/x/new
  exec:
  - name: run
    cmd: echo one
edges:
- from: {kind: file, name: conf}
  to: {kind: exec, name: run}
  notify: true
";

    #[test]
    fn resources_are_compared_by_kind_and_name_param_by_param() {
        let d = graph_diff(&parse(OLD, "old").unwrap(), &parse(NEW, "new").unwrap());
        assert_eq!(d.name, Some(("app".into(), "app2".into())));
        let ids: Vec<String> = d.resources.iter().map(|r| r.id().to_string()).collect();
        assert_eq!(ids, ["file[conf]", "file[gone]", "file[new]"]);
        assert!(matches!(d.resources[1], ResourceChange::Removed(_)));
        assert!(matches!(d.resources[2], ResourceChange::Added(_)));
        let ResourceChange::Changed(_, params) = &d.resources[0] else { panic!("{d:?}") };
        let content = params.iter().find(|p| p.param == "content").unwrap();
        assert_eq!(content.old, Some(Value::from("one\n")));
        assert_eq!(content.new, Some(Value::from("two\n")));
        assert!(params.iter().any(|p| p.param == "meta.retry"), "{params:?}");
        // exec[run] is the same: not listed.
        assert_eq!(d.edges_added, ["file[conf] -> exec[run] (notify)"]);
        assert_eq!(d.edges_removed, ["file[conf] -> exec[run]"]);
        let same = graph_diff(&parse(OLD, "a").unwrap(), &parse(OLD, "b").unwrap());
        assert!(same.is_empty(), "{same:?}");
    }

    #[test]
    fn the_content_of_a_file_that_is_not_world_readable_is_not_shown() {
        let g = |content: &str, mode: &str| {
            parse(&format!("graph: g\nresources:\n  file:\n  - name: key\n    path: /k\n    content: {content}\n    mode: \"{mode}\"\n"), "g")
                .unwrap()
        };
        let d = graph_diff(&g("a", "0644"), &g("b", "0600"));
        let ResourceChange::Changed(_, params) = &d.resources[0] else { panic!("{d:?}") };
        let content = params.iter().find(|p| p.param == "content").unwrap();
        assert_eq!((content.hidden, &content.old, &content.new), (true, &None, &None));
        let mode = params.iter().find(|p| p.param == "mode").unwrap();
        assert_eq!(mode.new, Some(Value::from("0600")));
        let d = graph_diff(&g("a", "0644"), &g("b", "0644"));
        let ResourceChange::Changed(_, params) = &d.resources[0] else { panic!("{d:?}") };
        assert_eq!(params[0].new, Some(Value::from("b")));
    }
}
