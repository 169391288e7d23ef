//! Definitions that depend on themselves: a bind whose value needs its own value, a function
//! that calls itself, a class that includes itself, directly or through others.

use std::collections::HashMap;

use petgraph::algo::kosaraju_scc;
use petgraph::graphmap::DiGraphMap;

use crate::frontend::lang::diagnostic::{Diagnostic, Stage};
use crate::frontend::lang::span::Span;

/// Who uses whom, between definitions (each known by the span of its name).
#[derive(Default)]
pub(super) struct Deps {
    ids: HashMap<Span, usize>,
    defs: Vec<(Span, String)>,
    /// `(from, to) -> the first place from uses to`.
    uses: HashMap<(usize, usize), Span>,
}

impl Deps {
    fn id(&mut self, def: Span) -> usize {
        let next = self.defs.len();
        *self.ids.entry(def).or_insert_with(|| {
            self.defs.push((def, String::new()));
            next
        })
    }

    /// How the definition at `def` is shown in messages: `$x`, `f()`, `class c`.
    pub(super) fn name(&mut self, def: Span, shown: &str) {
        let id = self.id(def);
        self.defs[id].1 = shown.to_string();
    }

    pub(super) fn edge(&mut self, from: Span, to: Span, at: Span) {
        let (from, to) = (self.id(from), self.id(to));
        self.uses.entry((from, to)).or_insert(at);
    }

    /// One error per circle of definitions, at its first definition in the source.
    pub(super) fn cycles(&self) -> Vec<Diagnostic> {
        let mut graph = DiGraphMap::<usize, (), std::hash::RandomState>::new();
        for &(from, to) in self.uses.keys() {
            graph.add_edge(from, to, ());
        }
        // Kosaraju walks iteratively; a recursive walk would overflow the stack on a long chain.
        kosaraju_scc(&graph)
            .into_iter()
            .filter(|scc| scc.len() > 1 || self.uses.contains_key(&(scc[0], scc[0])))
            .map(|scc| self.report(&scc))
            .collect()
    }

    fn report(&self, scc: &[usize]) -> Diagnostic {
        let first =
            *scc.iter().min_by_key(|&&id| (self.defs[id].0.file, self.defs[id].0.start)).expect("not empty");
        let path = self.path_back(first, scc);
        let names: Vec<&str> = path.iter().map(|&id| self.defs[id].1.as_str()).collect();
        let (span, shown) = &self.defs[first];
        let mut diagnostic = Diagnostic::new(Stage::Scope, *span, format!("`{shown}` depends on itself"))
            .with_label("defined here")
            .with_note(format!("{} -> {shown}", names.join(" -> ")))
            .with_note("a definition cannot use itself; there is no recursion in mcl");
        for pair in path.windows(2).chain(std::iter::once(&[path[path.len() - 1], first][..])) {
            if let Some(&at) = self.uses.get(&(pair[0], pair[1])) {
                diagnostic = diagnostic.with_secondary(at, format!("uses `{}`", self.defs[pair[1]].1));
            }
        }
        diagnostic
    }

    /// The shortest path from `start` through the circle to a definition that uses `start`.
    fn path_back(&self, start: usize, scc: &[usize]) -> Vec<usize> {
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            if self.uses.contains_key(&(at, start)) {
                let mut path = vec![at];
                while let Some(&p) = parent.get(path.last().expect("not empty")) {
                    path.push(p);
                }
                path.reverse();
                return path;
            }
            for &next in scc {
                if next != start && !parent.contains_key(&next) && self.uses.contains_key(&(at, next)) {
                    parent.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
        vec![start]
    }
}
