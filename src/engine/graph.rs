//! The resource graph: vertices, edges (explicit and automatic), and the checks that make it
//! runnable (no duplicates, no dangling edges, no cycles). Pure: no I/O.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::contract::ResId;
use crate::frontend::EdgeSpec;
use crate::resources::Resource;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub notify: bool,
    pub send_recv: Option<(String, String)>,
    /// Added by the engine (file -> parent directory, ...), not written by the user.
    pub auto: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Graph {
    pub vertices: Vec<Arc<dyn Resource>>,
    pub edges: Vec<Edge>,
    pub index: HashMap<ResId, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("duplicate resource {0}")]
    Duplicate(ResId),
    #[error("edge `{edge}` refers to {missing}, which is not in the graph")]
    MissingVertex { edge: String, missing: ResId },
    /// The cycle's vertices in order, the first repeated at the end.
    #[error("the graph has a cycle: {}", cycle_text(.0))]
    Cycle(Vec<ResId>),
    #[error("{id} is exported, but its params take {bytes} bytes; the limit for an export is {limit} bytes")]
    ExportTooLarge { id: ResId, bytes: usize, limit: usize },
}

/// How many vertices of a long cycle are named at each end.
const CYCLE_ENDS: usize = 4;

/// A cycle as `a -> b -> c -> a`; a long one names its first and last few vertices and
/// says how many it has, so the message stays short.
fn cycle_text(cycle: &[ResId]) -> String {
    let join = |ids: &[ResId]| ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> ");
    let len = cycle.len().saturating_sub(1).max(1);
    if cycle.len() <= 2 * CYCLE_ENDS + 1 {
        return join(cycle);
    }
    let (head, tail) = (&cycle[..CYCLE_ENDS], &cycle[cycle.len() - CYCLE_ENDS..]);
    let left_out = cycle.len() - 2 * CYCLE_ENDS;
    format!("{} -> ({left_out} more) -> {} ({len} resources)", join(head), join(tail))
}

impl Graph {
    /// Build a graph from resources and user edges, add autoedges, and reject cycles.
    pub fn build(resources: Vec<Arc<dyn Resource>>, edges: &[EdgeSpec]) -> Result<Graph, GraphError> {
        let mut g = Graph { vertices: Vec::with_capacity(resources.len()), ..Graph::default() };
        for r in resources {
            let id = r.id();
            if g.index.insert(id.clone(), g.vertices.len()).is_some() {
                return Err(GraphError::Duplicate(id));
            }
            g.vertices.push(r);
        }
        for e in edges {
            let find = |id: &ResId| {
                g.index
                    .get(id)
                    .copied()
                    .ok_or_else(|| GraphError::MissingVertex { edge: e.name.clone(), missing: id.clone() })
            };
            let (from, to) = (find(&e.from)?, find(&e.to)?);
            g.edges.push(Edge { from, to, notify: e.notify, send_recv: e.send_recv.clone(), auto: false });
        }
        g.add_autoedges();
        if let Some(cycle) = g.find_cycle() {
            return Err(GraphError::Cycle(cycle));
        }
        Ok(g)
    }

    /// A file needs its nearest managed ancestor directory; an exec its `cwd`; a user the
    /// groups it names.
    fn add_autoedges(&mut self) {
        let mut providers: HashMap<PathBuf, usize> = HashMap::new();
        let mut named: HashMap<String, usize> = HashMap::new();
        // A hidden resource is never applied here: waiting for it would wait for nothing.
        for (i, v) in self.vertices.iter().enumerate().filter(|(_, v)| !v.meta().hidden) {
            for p in v.autoedges().provides {
                providers.entry(p).or_insert(i);
            }
            for n in v.named_edges().provides {
                named.entry(n).or_insert(i);
            }
        }
        if providers.is_empty() && named.is_empty() {
            return;
        }
        let mut existing: std::collections::HashSet<(usize, usize)> =
            self.edges.iter().map(|e| (e.from, e.to)).collect();
        // (from, to, whether an edge the other way already decides the order).
        let mut wanted = Vec::new();
        // `meta.autoedge: false`: this vertex gets only the edges written for it.
        for (i, v) in self.vertices.iter().enumerate().filter(|(_, v)| v.meta().autoedge) {
            for req in v.autoedges().requires {
                wanted.extend(nearest_provider(&providers, &req).map(|from| (from, i, false)));
            }
            let names = v.named_edges();
            wanted.extend(names.after.iter().filter_map(|n| named.get(n)).map(|&from| (from, i, true)));
            wanted.extend(names.before.iter().filter_map(|n| named.get(n)).map(|&to| (i, to, true)));
        }
        for (from, to, yield_to_reverse) in wanted {
            if from == to || (yield_to_reverse && existing.contains(&(to, from))) {
                continue;
            }
            if existing.insert((from, to)) {
                self.edges.push(Edge { from, to, notify: false, send_recv: None, auto: true });
            }
        }
    }

    /// One cycle, named in order, if there is any.
    pub fn find_cycle(&self) -> Option<Vec<ResId>> {
        let mut pg: DiGraph<(), ()> = DiGraph::with_capacity(self.vertices.len(), self.edges.len());
        for _ in &self.vertices {
            pg.add_node(());
        }
        for e in &self.edges {
            pg.add_edge(NodeIndex::new(e.from), NodeIndex::new(e.to), ());
        }
        let start = petgraph::algo::toposort(&pg, None).err()?.node_id();
        // Walk back from `start` to itself with a BFS over successors to name the cycle.
        let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            for m in pg.neighbors(n) {
                if m == start {
                    let mut path = vec![start];
                    let mut cur = n;
                    while cur != start {
                        path.push(cur);
                        cur = prev[&cur];
                    }
                    path.push(start);
                    let n = path.len();
                    path[1..n - 1].reverse();
                    return Some(path.into_iter().map(|ix| self.vertices[ix.index()].id()).collect());
                }
                if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(m) {
                    e.insert(n);
                    queue.push_back(m);
                }
            }
        }
        Some(vec![self.vertices[start.index()].id()])
    }

    /// Vertex indices in an order where every edge goes forward (the graph is acyclic).
    pub fn topological_order(&self) -> Vec<usize> {
        let mut indegree = vec![0usize; self.vertices.len()];
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); self.vertices.len()];
        for e in &self.edges {
            indegree[e.to] += 1;
            out[e.from].push(e.to);
        }
        let mut ready: Vec<usize> = (0..self.vertices.len()).filter(|i| indegree[*i] == 0).collect();
        let mut order = Vec::with_capacity(self.vertices.len());
        while let Some(n) = ready.pop() {
            order.push(n);
            for &m in &out[n] {
                indegree[m] -= 1;
                if indegree[m] == 0 {
                    ready.push(m);
                }
            }
        }
        order
    }
}

fn nearest_provider(providers: &HashMap<PathBuf, usize>, req: &Path) -> Option<usize> {
    if let Some(i) = providers.get(req) {
        return Some(*i);
    }
    // `/a/b/` is the directory form; try the file form too (a source path may be either).
    let s = req.to_string_lossy();
    if let Some(i) = providers.get(Path::new(s.trim_end_matches('/'))) {
        return Some(*i);
    }
    let mut cur = Path::new(s.trim_end_matches('/')).parent();
    while let Some(dir) = cur {
        let mut d = dir.to_path_buf();
        d.push("");
        if let Some(i) = providers.get(&d) {
            return Some(*i);
        }
        cur = dir.parent();
    }
    None
}

/// How a new graph relates to the running one, by vertex identity (kind + name) and params.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SwapPlan {
    /// (old index, new index) of vertices whose params did not change: they keep running.
    pub keep: Vec<(usize, usize)>,
    /// Old vertices to stop (removed, or replaced because their params changed).
    pub stop: Vec<usize>,
    /// New vertices to start.
    pub start: Vec<usize>,
}

pub fn plan_swap(old: &Graph, new: &Graph) -> SwapPlan {
    let mut plan = SwapPlan::default();
    let mut matched = vec![false; old.vertices.len()];
    for (ni, v) in new.vertices.iter().enumerate() {
        match old.index.get(&v.id()) {
            Some(&oi) if Arc::ptr_eq(&old.vertices[oi], v) || old.vertices[oi].cmp(v.as_ref()) => {
                matched[oi] = true;
                plan.keep.push((oi, ni));
            }
            _ => plan.start.push(ni),
        }
    }
    plan.stop = (0..old.vertices.len()).filter(|i| !matched[*i]).collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Meta;
    use crate::resources::file::{File, FileState};
    use crate::resources::noop::Noop;

    fn noop(name: &str) -> Arc<dyn Resource> {
        Arc::new(Noop { name: name.into(), meta: Meta::default(), comment: None })
    }
    fn file(name: &str, path: &str, content: &str) -> Arc<dyn Resource> {
        Arc::new(File {
            name: name.into(),
            meta: Meta::default(),
            path: Some(path.into()),
            content: Some(content.into()),
            source: None,
            state: FileState::Exists,
            mode: None,
            owner: None,
            group: None,
            recurse: false,
            purge: false,
            force: false,
            keep: vec![],
            ..File::default()
        })
    }
    fn edge(from: &str, to: &str) -> EdgeSpec {
        EdgeSpec {
            name: format!("{from}-{to}"),
            from: ResId::new("noop", from),
            to: ResId::new("noop", to),
            notify: false,
            send_recv: None,
        }
    }

    #[test]
    fn toposort_puts_every_edge_forward() {
        let g =
            Graph::build(vec![noop("c"), noop("b"), noop("a")], &[edge("a", "b"), edge("b", "c")]).unwrap();
        let order = g.topological_order();
        let pos = |name: &str| order.iter().position(|i| g.vertices[*i].name() == name).unwrap();
        assert!(pos("a") < pos("b") && pos("b") < pos("c"));
    }

    #[test]
    fn a_user_comes_after_its_groups_and_before_them_when_removed() {
        let res = |kind: &str, j: serde_json::Value| -> Arc<dyn Resource> {
            crate::resources::from_json(kind, j).unwrap().into()
        };
        let g = Graph::build(
            vec![
                res(
                    "user",
                    serde_json::json!({"name": "alice", "group": "staff", "groups": ["ops", "absent"]}),
                ),
                res("user", serde_json::json!({"name": "old", "state": "absent", "gid": 700})),
                res("group", serde_json::json!({"name": "staff"})),
                res("group", serde_json::json!({"name": "ops"})),
                res("group", serde_json::json!({"name": "legacy", "gid": 700})),
            ],
            &[],
        )
        .unwrap();
        let mut edges: Vec<(String, String)> = g
            .edges
            .iter()
            .map(|e| (g.vertices[e.from].id().to_string(), g.vertices[e.to].id().to_string()))
            .collect();
        edges.sort();
        let want =
            [("group[ops]", "user[alice]"), ("group[staff]", "user[alice]"), ("user[old]", "group[legacy]")];
        assert_eq!(edges, want.map(|(a, b)| (a.to_string(), b.to_string())));
    }

    #[test]
    fn a_hidden_resource_provides_no_path_so_the_real_one_is_waited_for() {
        let res = |j: serde_json::Value| -> Arc<dyn Resource> {
            crate::resources::from_json("file", j).unwrap().into()
        };
        let g = Graph::build(
            vec![
                res(serde_json::json!({"name": "hidden", "path": "/d/", "meta": {"hidden": true}})),
                res(serde_json::json!({"name": "real", "path": "/d/"})),
                res(serde_json::json!({"name": "inside", "path": "/d/f", "content": "x"})),
            ],
            &[],
        )
        .unwrap();
        let edges: Vec<(String, String)> = g
            .edges
            .iter()
            .map(|e| (g.vertices[e.from].id().to_string(), g.vertices[e.to].id().to_string()))
            .collect();
        assert_eq!(edges, [("file[real]".to_string(), "file[inside]".to_string())]);
    }

    #[test]
    fn a_written_edge_between_a_user_and_its_group_takes_the_autoedges_place() {
        let res = |kind: &str, j: serde_json::Value| -> Arc<dyn Resource> {
            crate::resources::from_json(kind, j).unwrap().into()
        };
        let written = EdgeSpec {
            name: "user first".into(),
            from: ResId::new("user", "alice"),
            to: ResId::new("group", "staff"),
            notify: false,
            send_recv: None,
        };
        let g = Graph::build(
            vec![
                res("user", serde_json::json!({"name": "alice", "group": "staff"})),
                res("group", serde_json::json!({"name": "staff"})),
            ],
            &[written],
        )
        .expect("no cycle: the autoedge yields");
        assert_eq!(g.edges.len(), 1);
        assert!(!g.edges[0].auto);
    }

    #[test]
    fn cycle_is_named_in_order() {
        let err = Graph::build(
            vec![noop("a"), noop("b"), noop("c")],
            &[edge("a", "b"), edge("b", "c"), edge("c", "a")],
        )
        .unwrap_err();
        let GraphError::Cycle(c) = &err else { panic!("{err}") };
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);
        let msg = err.to_string();
        assert!(msg.contains("noop[a]") && msg.contains("noop[b]") && msg.contains("noop[c]"), "{msg}");
        // Every consecutive pair in the named cycle is a real edge.
        for w in c.windows(2) {
            let (f, t) = (g_name(&w[0]), g_name(&w[1]));
            assert!(matches!((f, t), ("a", "b") | ("b", "c") | ("c", "a")), "{f}->{t}");
        }
    }
    fn g_name(id: &ResId) -> &str {
        &id.name
    }

    #[test]
    fn a_long_cycle_is_named_by_its_ends_and_length() {
        let n = 15_000;
        let vs = (0..n).map(|i| noop(&format!("n{i}"))).collect();
        let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        let es: Vec<_> = (0..n).map(|i| edge(&names[i], &names[(i + 1) % n])).collect();
        let msg = Graph::build(vs, &es).unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(msg.ends_with("(15000 resources)"), "{msg}");
        assert!(msg.contains("(14993 more)"), "{msg}");
        assert_eq!(msg.matches("noop[").count(), 8, "{msg}");
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let err = Graph::build(vec![noop("a")], &[edge("a", "a")]).unwrap_err();
        assert!(matches!(err, GraphError::Cycle(_)));
    }

    #[test]
    fn duplicates_and_dangling_edges_are_errors() {
        assert_eq!(
            Graph::build(vec![noop("a"), noop("a")], &[]).unwrap_err(),
            GraphError::Duplicate(ResId::new("noop", "a"))
        );
        assert!(matches!(
            Graph::build(vec![noop("a")], &[edge("a", "zz")]).unwrap_err(),
            GraphError::MissingVertex { .. }
        ));
    }

    #[test]
    fn meta_autoedge_off_leaves_a_vertex_only_its_written_edges() {
        let mut off = File::clone(file("f", "/tmp/x/f", "hi").as_any().downcast_ref::<File>().unwrap());
        off.meta.autoedge = false;
        let inside = file("g", "/tmp/x/g", "hi");
        let g = Graph::build(vec![Arc::new(off), file("d", "/tmp/x/", ""), inside], &[]).unwrap();
        let edges: Vec<(usize, usize)> = g.edges.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(edges, [(1, 2)], "only `g` follows its directory");
    }

    #[test]
    fn file_gets_autoedge_from_nearest_managed_directory() {
        let g = Graph::build(
            vec![file("f", "/tmp/x/y/f", "hi"), file("d", "/tmp/x/", ""), file("other", "/srv/o", "")],
            &[],
        );
        // A directory with content is invalid for validate(), but build() does not validate.
        let g = g.unwrap();
        assert_eq!(g.edges.len(), 1);
        assert_eq!((g.edges[0].from, g.edges[0].to, g.edges[0].auto), (1, 0, true));
    }

    #[test]
    fn swap_plan_keeps_unchanged_and_replaces_changed() {
        let old =
            Graph::build(vec![file("a", "/t/a", "1"), file("b", "/t/b", "1"), noop("gone")], &[]).unwrap();
        let new =
            Graph::build(vec![file("b", "/t/b", "2"), file("a", "/t/a", "1"), noop("new")], &[]).unwrap();
        let plan = plan_swap(&old, &new);
        assert_eq!(plan.keep, vec![(0, 1)]);
        assert_eq!(plan.start, vec![0, 2]);
        assert_eq!(plan.stop, vec![1, 2]);
    }
}
