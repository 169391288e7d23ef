//! Autogrouping: resources of one kind that can be applied together (equal
//! [`Resource::group_key`], equal meta params, `meta.autogroup` on both) become one vertex.
//! Pure.
//!
//! Invariant: two vertices are grouped only when no path joins them, either way, in the
//! graph as grouped so far. Merging them then adds no cycle, so an acyclic graph stays
//! acyclic. The group keeps the first member's place and id; every edge of a member moves to
//! the group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::graph::{Edge, Graph};
use crate::resources::Resource;

/// The graph with its groupable vertices grouped (see the module's invariant). A graph with
/// nothing to group is returned as it is.
pub fn autogroup(graph: Graph) -> Graph {
    let leader = leaders(&graph);
    if leader.iter().enumerate().all(|(i, l)| *l == i) {
        return graph;
    }
    rebuild(graph, &leader)
}

/// How many groups a search for the groups around a vertex (those it reaches, or those
/// reaching it) visits before it gives up: such a vertex then stays alone. Only groupable
/// vertices search, so grouping costs at most their number times this, on any graph.
const SEARCH_BUDGET: usize = 16 * 1024;

/// Each vertex's group leader (itself when it is not grouped): vertices are taken in order,
/// each joining the first group of its bucket that no path joins to it, either way.
fn leaders(graph: &Graph) -> Vec<usize> {
    let n = graph.vertices.len();
    let mut leader: Vec<usize> = (0..n).collect();
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let (mut out, mut inn) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    for e in &graph.edges {
        out[e.from].push(e.to);
        inn[e.to].push(e.from);
    }
    // Groups so far, by bucket: (kind, key, meta) -> their leaders.
    let mut buckets: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
    for (i, v) in graph.vertices.iter().enumerate() {
        let Some(bucket) = bucket(v.as_ref()) else { continue };
        let groups = buckets.entry(bucket).or_default();
        // `i` is still alone: the groups joined to it are those it reaches and those
        // reaching it, in the graph as grouped so far.
        let reach = Reach { leader: &leader, members: &members };
        let (Some(after), Some(before)) = (reach.from(i, &out), reach.from(i, &inn)) else {
            groups.push(i);
            continue;
        };
        match groups.iter().copied().find(|l| !after.contains(l) && !before.contains(l)) {
            Some(l) => {
                leader[i] = l;
                let moved = std::mem::take(&mut members[i]);
                members[l].extend(moved);
            }
            None => groups.push(i),
        }
    }
    leader
}

/// What must be equal for two resources to be grouped; `None`: this one is never grouped.
fn bucket(r: &dyn Resource) -> Option<(String, String, String)> {
    if !r.meta().autogroup {
        return None;
    }
    let key = r.group_key()?;
    let meta = serde_json::to_string(r.meta()).ok()?;
    Some((r.kind().to_string(), key, meta))
}

/// Reachability in the graph with each group taken as one vertex.
struct Reach<'a> {
    leader: &'a [usize],
    members: &'a [Vec<usize>],
}

impl Reach<'_> {
    /// The groups a path along `next` (edges out, or edges in) leads to from group `from`
    /// (a leader), `from` left out; `None` past [`SEARCH_BUDGET`] of them.
    fn from(&self, from: usize, next: &[Vec<usize>]) -> Option<HashSet<usize>> {
        let mut seen: HashSet<usize> = HashSet::new();
        let mut stack = vec![from];
        while let Some(group) = stack.pop() {
            for &m in &self.members[group] {
                for &n in &next[m] {
                    let g = self.leader[n];
                    if g != from && seen.insert(g) {
                        stack.push(g);
                    }
                }
            }
            if seen.len() > SEARCH_BUDGET {
                return None;
            }
        }
        Some(seen)
    }
}

/// The grouped graph: each leader absorbs its members in order; edges move to the groups,
/// one per pair of ends (notify if any notifies) but for send/recv edges, which stay apart.
fn rebuild(graph: Graph, leader: &[usize]) -> Graph {
    let mut new_index: Vec<usize> = vec![usize::MAX; leader.len()];
    let mut vertices: Vec<Arc<dyn Resource>> = Vec::new();
    for (i, v) in graph.vertices.iter().enumerate().filter(|(i, _)| leader[*i] == *i) {
        new_index[i] = vertices.len();
        let members: Vec<&Arc<dyn Resource>> =
            (i + 1..leader.len()).filter(|m| leader[*m] == i).map(|m| &graph.vertices[m]).collect();
        if members.is_empty() {
            vertices.push(v.clone());
            continue;
        }
        let mut group = v.boxed_clone();
        for m in members {
            let taken = group.absorb(m.as_ref());
            debug_assert!(taken, "{} refused a member of its own bucket", v.id());
        }
        vertices.push(Arc::from(group));
    }
    let at = |i: usize| new_index[leader[i]];
    let index = graph.vertices.iter().enumerate().map(|(i, v)| (v.id(), at(i))).collect();
    Graph { vertices, edges: moved_edges(&graph.edges, at), index }
}

fn moved_edges(edges: &[Edge], at: impl Fn(usize) -> usize) -> Vec<Edge> {
    let mut plain: BTreeMap<(usize, usize), Edge> = BTreeMap::new();
    let mut out = Vec::new();
    for e in edges {
        let moved = Edge { from: at(e.from), to: at(e.to), ..e.clone() };
        if moved.send_recv.is_some() {
            out.push(moved);
            continue;
        }
        plain
            .entry((moved.from, moved.to))
            .and_modify(|have| {
                have.notify |= moved.notify;
                have.auto &= moved.auto;
            })
            .or_insert(moved);
    }
    out.extend(plain.into_values());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ResId;
    use crate::frontend::EdgeSpec;
    use crate::resources::noop::Noop;
    use crate::resources::pkg::Pkg;

    fn pkg(name: &str, state: &str) -> Arc<dyn Resource> {
        Arc::new(Pkg::new(name, state))
    }
    fn edge(from: &ResId, to: &ResId, notify: bool) -> EdgeSpec {
        EdgeSpec { name: format!("{from}-{to}"), from: from.clone(), to: to.clone(), notify, send_recv: None }
    }
    fn id(kind: &str, name: &str) -> ResId {
        ResId::new(kind, name)
    }
    fn grouped(vs: Vec<Arc<dyn Resource>>, es: &[EdgeSpec]) -> Graph {
        autogroup(Graph::build(vs, es).unwrap())
    }
    /// Each vertex as `kind[name]+member+member`.
    fn shape(g: &Graph) -> Vec<String> {
        g.vertices
            .iter()
            .map(|v| {
                let members: String = v.grouped().iter().map(|m| format!("+{}", m.name)).collect();
                format!("{}{members}", v.id())
            })
            .collect()
    }

    #[test]
    fn pkgs_of_one_state_become_one_vertex_that_takes_their_edges() {
        let n = Arc::new(Noop { name: "n".into(), meta: Default::default(), comment: None });
        let g = grouped(
            vec![pkg("a", "installed"), n, pkg("b", "installed"), pkg("c", "installed")],
            &[edge(&id("pkg", "b"), &id("noop", "n"), true), edge(&id("pkg", "c"), &id("noop", "n"), false)],
        );
        assert_eq!(shape(&g), ["pkg[a]+b+c", "noop[n]"]);
        let edges: Vec<(usize, usize, bool)> = g.edges.iter().map(|e| (e.from, e.to, e.notify)).collect();
        assert_eq!(edges, [(0, 1, true)], "one edge, notifying as one of them did");
        assert_eq!(g.index[&id("pkg", "c")], 0, "a member's id finds its group");
        assert!(g.find_cycle().is_none());
    }

    #[test]
    fn a_path_between_two_pkgs_keeps_them_apart() {
        let n = Arc::new(Noop { name: "n".into(), meta: Default::default(), comment: None });
        let (a, b, nid) = (id("pkg", "a"), id("pkg", "b"), id("noop", "n"));
        let g = grouped(
            vec![pkg("a", "installed"), n, pkg("b", "installed"), pkg("c", "installed")],
            &[edge(&a, &nid, false), edge(&nid, &b, false)],
        );
        assert_eq!(shape(&g), ["pkg[a]+c", "noop[n]", "pkg[b]"]);
        assert!(g.find_cycle().is_none());
        // A direct edge is a path too.
        let g = grouped(vec![pkg("a", "installed"), pkg("b", "installed")], &[edge(&a, &b, false)]);
        assert_eq!(shape(&g), ["pkg[a]", "pkg[b]"]);
    }

    #[test]
    fn a_path_through_a_group_formed_earlier_counts() {
        // a -> n -> c: a and b group first (no path), then c may not join them, since the
        // group reaches c through n.
        let n = Arc::new(Noop { name: "n".into(), meta: Default::default(), comment: None });
        let (a, c, nid) = (id("pkg", "a"), id("pkg", "c"), id("noop", "n"));
        let g = grouped(
            vec![pkg("b", "installed"), pkg("a", "installed"), n, pkg("c", "installed")],
            &[edge(&a, &nid, false), edge(&nid, &c, false)],
        );
        assert_eq!(shape(&g), ["pkg[b]+a", "noop[n]", "pkg[c]"]);
        assert!(g.find_cycle().is_none());
    }

    #[test]
    fn autogroup_off_different_params_or_meta_never_group() {
        let mut off = Pkg::new("b", "installed");
        off.meta.autogroup = false;
        let mut noop = Pkg::new("d", "installed");
        noop.meta.noop = true;
        let mut untrusted = Pkg::new("e", "installed");
        untrusted.allowuntrusted = true;
        let g = grouped(
            vec![
                pkg("a", "installed"),
                Arc::new(off),
                pkg("c", "uninstalled"),
                Arc::new(noop),
                Arc::new(untrusted),
                pkg("f", "1.0-1"),
                pkg("g", "1.0-1"),
                pkg("h", "uninstalled"),
            ],
            &[],
        );
        assert_eq!(shape(&g), ["pkg[a]", "pkg[b]", "pkg[c]+h", "pkg[d]", "pkg[e]", "pkg[f]", "pkg[g]"]);
    }

    #[test]
    fn other_kinds_are_left_as_they_are() {
        let n = |name: &str| -> Arc<dyn Resource> {
            Arc::new(Noop { name: name.into(), meta: Default::default(), comment: None })
        };
        let g = grouped(vec![n("a"), n("b")], &[]);
        assert_eq!(shape(&g), ["noop[a]", "noop[b]"]);
    }

    #[test]
    fn a_long_chain_of_pkgs_stays_apart_and_is_grouped_quickly() {
        let n = 1000;
        let vs = (0..n).map(|i| pkg(&format!("p{i}"), "installed")).collect();
        let es: Vec<EdgeSpec> = (1..n)
            .map(|i| edge(&id("pkg", &format!("p{}", i - 1)), &id("pkg", &format!("p{i}")), false))
            .collect();
        let g = grouped(vs, &es);
        assert_eq!(g.vertices.len(), n, "every pkg is on one path with every other");
    }

    #[test]
    fn grouping_a_thousand_pkgs_in_a_chain_of_pairs_stays_acyclic() {
        // p0 -> q0, p1 -> q1, ...: every p groups with every p, every q with every q.
        let mut vs = Vec::new();
        let mut es = Vec::new();
        for i in 0..500 {
            vs.push(pkg(&format!("p{i}"), "installed"));
            vs.push(pkg(&format!("q{i}"), "installed"));
            es.push(edge(&id("pkg", &format!("p{i}")), &id("pkg", &format!("q{i}")), false));
        }
        let g = grouped(vs, &es);
        assert_eq!(g.vertices.len(), 2);
        assert_eq!(g.vertices[0].grouped().len(), 499);
        assert_eq!(g.edges.len(), 1);
        assert!(g.find_cycle().is_none());
    }
}
