//! The function graph: nodes that each compute one value from their inputs' values, and the
//! dirty-set propagation that recomputes only what a change reaches.
//!
//! A node's inputs are always older than the node (their ids are smaller), so the ids are a
//! topological order: recomputing the dirty nodes smallest id first computes every node
//! after all of its inputs, once per round. A node whose new value equals its old one stops
//! the propagation there.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::data::{Data, Fail, Outcome};

/// One node of a [`Graph`].
pub type NodeId = usize;

/// How a node computes its value from its inputs' values, in the order they were given.
/// Ops own what they need: a graph (and a [`Template`] holding one) outlives the syntax tree.
pub trait Op: Send + Sync {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome;

    /// Whether the value can change with nothing of the graph changing (the content of a
    /// file, the time): such a node is never computed ahead in a [`Template`], and is
    /// recomputed when [`Graph::touch`]ed.
    fn volatile(&self) -> bool {
        false
    }
}

thread_local! {
    /// The node of the live graph being computed, on this thread: what a volatile value
    /// read anywhere below it (in a loop's body, a function called) is recorded against.
    static COMPUTING: std::cell::Cell<Option<NodeId>> = const { std::cell::Cell::new(None) };
}

/// The node of the live (outermost) graph whose computation is under way on this thread.
pub fn computing() -> Option<NodeId> {
    COMPUTING.with(|c| c.get())
}

#[derive(Clone)]
enum Kind {
    /// A value set from outside: a constant, a function's argument, or (later) a value that
    /// changes over time.
    Source,
    Computed(Arc<dyn Op>),
}

#[derive(Clone)]
struct Node {
    kind: Kind,
    inputs: Vec<NodeId>,
    dependents: Vec<NodeId>,
    /// `None` until every input has a value (a template's argument is unset until called).
    value: Option<Outcome>,
}

#[derive(Clone, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    /// A template's own graph: its volatile nodes wait for an instance (`deferred`).
    prototype: bool,
    deferred: Vec<NodeId>,
    /// The nodes the last [`Graph::run`] computed.
    computed_last: Vec<NodeId>,
    /// The nodes to recompute, smallest id first, each once: `queued` says which are in.
    dirty: BinaryHeap<Reverse<NodeId>>,
    queued: Vec<bool>,
    /// How many computations [`Graph::run`] has done, in all.
    computed: usize,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// A source node, unset until [`Graph::set`].
    pub fn source(&mut self) -> NodeId {
        self.push(Kind::Source, Vec::new())
    }

    /// A source node with a value that never changes.
    pub fn constant(&mut self, value: Data) -> NodeId {
        let id = self.source();
        self.nodes[id].value = Some(Ok(value));
        id
    }

    /// A node computing `op` over `inputs`, which must already be in the graph.
    pub fn add(&mut self, op: Arc<dyn Op>, inputs: Vec<NodeId>) -> NodeId {
        let id = self.push(Kind::Computed(op), inputs);
        self.mark(id);
        id
    }

    fn push(&mut self, kind: Kind, inputs: Vec<NodeId>) -> NodeId {
        let id = self.nodes.len();
        for &input in &inputs {
            assert!(input < id, "an input must be in the graph before its dependents");
            self.nodes[input].dependents.push(id);
        }
        self.nodes.push(Node { kind, inputs, dependents: Vec::new(), value: None });
        self.queued.push(false);
        id
    }

    fn mark(&mut self, id: NodeId) {
        if !self.queued[id] {
            self.queued[id] = true;
            self.dirty.push(Reverse(id));
        }
    }

    fn mark_dependents(&mut self, id: NodeId) {
        for k in 0..self.nodes[id].dependents.len() {
            self.mark(self.nodes[id].dependents[k]);
        }
    }

    /// Gives a source node a new value; its dependents recompute at the next [`Graph::run`].
    pub fn set(&mut self, id: NodeId, value: Outcome) {
        let node = &mut self.nodes[id];
        assert!(matches!(node.kind, Kind::Source), "only a source node is set from outside");
        if node.value.as_ref() != Some(&value) {
            node.value = Some(value);
            self.mark_dependents(id);
        }
    }

    /// Marks a node to be recomputed at the next [`Graph::run`], its inputs unchanged: a
    /// volatile value it read changed.
    pub fn touch(&mut self, id: NodeId) {
        if id < self.nodes.len() {
            self.mark(id);
        }
    }

    /// The nodes the last [`Graph::run`] computed.
    pub fn computed_last(&self) -> &[NodeId] {
        &self.computed_last
    }

    /// Recomputes every dirty node, in topological order, and what their changes reach.
    pub fn run(&mut self) {
        self.computed_last.clear();
        let outermost = computing().is_none() && !self.prototype;
        while let Some(Reverse(id)) = self.dirty.pop() {
            self.queued[id] = false;
            let Kind::Computed(op) = &self.nodes[id].kind else { continue };
            if self.prototype && op.volatile() {
                self.deferred.push(id);
                continue;
            }
            let inputs: Option<Vec<&Outcome>> =
                self.nodes[id].inputs.iter().map(|&i| self.nodes[i].value.as_ref()).collect();
            let Some(inputs) = inputs else { continue };
            if outermost {
                COMPUTING.with(|c| c.set(Some(id)));
            }
            let value = op.compute(&inputs);
            if outermost {
                COMPUTING.with(|c| c.set(None));
                self.computed_last.push(id);
            }
            self.computed += 1;
            let node = &mut self.nodes[id];
            if node.value.as_ref() != Some(&value) {
                node.value = Some(value);
                self.mark_dependents(id);
            }
        }
    }

    /// The node's value, `None` while an input is unset.
    pub fn value(&self, id: NodeId) -> Option<&Outcome> {
        self.nodes[id].value.as_ref()
    }

    #[cfg(test)]
    pub fn computed(&self) -> usize {
        self.computed
    }
}

/// A graph with holes: a function's body, or a loop's body, with a source node for each
/// argument (and each value it captures from outside). It is run once when built, so what
/// does not depend on an argument is computed once; each use clones it, sets the arguments
/// and recomputes only what depends on them.
pub struct Template {
    graph: Graph,
    params: Vec<NodeId>,
    output: NodeId,
}

impl Template {
    pub fn new(mut graph: Graph, params: Vec<NodeId>, output: NodeId) -> Self {
        graph.prototype = true;
        graph.run();
        Template { graph, params, output }
    }

    pub fn arity(&self) -> usize {
        self.params.len()
    }

    /// The output for these arguments (one per param, in order).
    pub fn instantiate(&self, args: Vec<Outcome>) -> Outcome {
        let mut graph = self.graph.clone();
        graph.prototype = false;
        for id in std::mem::take(&mut graph.deferred) {
            graph.mark(id);
        }
        for (&param, arg) in self.params.iter().zip(args) {
            graph.set(param, arg);
        }
        graph.run();
        match graph.value(self.output) {
            Some(value) => value.clone(),
            None => Err(Fail::internal("a function's body was left without a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lang::value::Val;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Adds its integer inputs, and counts its computations.
    struct Sum(Arc<AtomicUsize>);

    impl Op for Sum {
        fn compute(&self, inputs: &[&Outcome]) -> Outcome {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut total = 0;
            for input in inputs {
                match input {
                    Ok(Data::Val(Val::Int(n))) => total += n,
                    Ok(_) => return Err(Fail::internal("not an int")),
                    Err(e) => return Err(e.clone()),
                }
            }
            Ok(Data::Val(Val::Int(total)))
        }
    }

    fn int(n: i64) -> Outcome {
        Ok(Data::Val(Val::Int(n)))
    }

    #[test]
    fn a_change_recomputes_only_its_dependents_once_each() {
        let count = Arc::new(AtomicUsize::new(0));
        let sum = || Arc::new(Sum(count.clone())) as Arc<dyn Op>;
        let mut g = Graph::new();
        let a = g.source();
        let b = g.constant(Data::Val(Val::Int(10)));
        let left = g.add(sum(), vec![a, b]); // a + 10
        let right = g.add(sum(), vec![b, b]); // 20, never depends on a
        let top = g.add(sum(), vec![left, right, left]);
        g.set(a, int(1));
        g.run();
        assert_eq!(g.value(top), Some(&int(11 + 20 + 11)));
        assert_eq!(g.computed(), 3);
        g.set(a, int(2));
        g.run();
        assert_eq!(g.value(top), Some(&int(12 + 20 + 12)));
        assert_eq!(g.computed(), 5, "left and top recompute; right does not");
        g.set(a, int(2));
        g.run();
        assert_eq!(g.computed(), 5, "an unchanged value reaches nothing");
    }

    #[test]
    fn an_unchanged_result_stops_the_propagation() {
        let count = Arc::new(AtomicUsize::new(0));
        let mut g = Graph::new();
        let a = g.source();
        let zero = g.constant(Data::Val(Val::Int(0)));
        // `mid` ignores `a`'s value but depends on it.
        struct Zero;
        impl Op for Zero {
            fn compute(&self, _: &[&Outcome]) -> Outcome {
                int(0)
            }
        }
        let mid = g.add(Arc::new(Zero), vec![a]);
        let top = g.add(Arc::new(Sum(count.clone())), vec![mid, zero]);
        g.set(a, int(1));
        g.run();
        g.set(a, int(5));
        g.run();
        assert_eq!(g.value(top), Some(&int(0)));
        assert_eq!(count.load(Ordering::SeqCst), 1, "top computed once: mid did not change");
    }

    #[test]
    fn a_node_waits_for_unset_inputs_and_a_template_reuses_its_constant_part() {
        let count = Arc::new(AtomicUsize::new(0));
        let sum = || Arc::new(Sum(count.clone())) as Arc<dyn Op>;
        let mut g = Graph::new();
        let x = g.source();
        let c = g.constant(Data::Val(Val::Int(3)));
        let fixed = g.add(sum(), vec![c, c]);
        let out = g.add(sum(), vec![x, fixed]);
        let template = Template::new(g, vec![x], out);
        assert_eq!(count.load(Ordering::SeqCst), 1, "only the part without the argument ran");
        assert_eq!(template.instantiate(vec![int(1)]), int(7));
        assert_eq!(template.instantiate(vec![int(4)]), int(10));
        assert_eq!(count.load(Ordering::SeqCst), 3, "each call computes only what uses x");
    }

    #[test]
    fn errors_flow_as_values() {
        let count = Arc::new(AtomicUsize::new(0));
        let mut g = Graph::new();
        let a = g.source();
        let top = g.add(Arc::new(Sum(count)), vec![a]);
        g.set(a, Err(Fail::internal("boom")));
        g.run();
        assert_eq!(g.value(top).unwrap().as_ref().unwrap_err().message, "boom");
        g.set(a, int(2));
        g.run();
        assert_eq!(g.value(top), Some(&int(2)));
    }
}
