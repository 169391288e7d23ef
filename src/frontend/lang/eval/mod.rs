//! Evaluation: a resolved program becomes a function graph ([`graph`]), whose values are
//! computed, and whose statements' output becomes a [`GraphSpec`] ([`spec`]).
//!
//! Every expression is a node computing one value from its inputs' values ([`ops`]); every
//! statement a node computing its output, resources and edges, from the values it uses
//! ([`stmts`]). A bind is one node, shared by all its uses. Run-time errors are values too
//! ([`data::Fail`]), so `<|>` catches an error wherever it came from, and an `if` ignores
//! the branch it does not take. Function bodies and loop bodies are [`graph::Template`]s:
//! graphs with a source node per argument (and per value captured from outside), cloned
//! and filled in for each call or element; what they capture is an input of the node that
//! uses them.
//!
//! How a value that changes flows: a call of a function whose value changes over time (the
//! time, a file's content) is a volatile node ([`ops::CallChanging`]) that reads its value
//! in the program's [`streams::Streams`], recorded against the node of the live graph
//! computing it (itself, or the loop, call or include whose template it runs in). A
//! watcher outside the core sets each new value there; [`Evaluation::run`] touches the
//! nodes that read a changed value, and [`graph::Graph::run`] recomputes them and what
//! their changes reach, smallest id (a topological order) first, stopping wherever a
//! node's value comes out unchanged. A resource statement recomputes its resources, a
//! `for` re-expands its body for the new list, an `if` statement switches branch, a lambda
//! whose captures changed is a new function value for the calls that use it. The root's
//! output then becomes a new [`GraphSpec`], which the engine swaps in as it swaps a new
//! version of a YAML file. Evaluated once ([`evaluate`]), each changing function is called
//! once, as any other.

mod build;
mod data;
mod graph;
mod ops;
mod spec;
mod stmts;
pub mod streams;

#[cfg(test)]
mod corpus_tests;

use std::sync::Arc;

use super::diagnostic::{Diagnostic, Stage};
use super::funcs::HostInfo;
use super::module::Module;
use super::scope::Resolution;
use crate::frontend::GraphSpec;
pub use build::{Typing, Untyped};
use graph::{Graph, NodeId};
use streams::Streams;

/// Builds and runs the program's function graph once, and makes a spec of its output. Each
/// function whose value changes over time is called once.
pub fn evaluate(
    module: &Module,
    resolution: &Resolution<'_>,
    typing: &dyn Typing,
    host: &HostInfo,
) -> Result<GraphSpec, Vec<Diagnostic>> {
    let mut evaluation = Evaluation::build(module, resolution, typing, host, None)?;
    evaluation.run();
    match evaluation.spec(module)? {
        Some(spec) => Ok(spec),
        None => Err(vec![runtime(module, data::Fail::internal("the program was left without output"))]),
    }
}

/// A program's function graph, kept to be run again as its changing values change.
pub struct Evaluation {
    graph: Graph,
    root: NodeId,
    streams: Option<Arc<Streams>>,
    decoded: spec::Decoded,
}

impl Evaluation {
    /// The function graph of a resolved, typed program, not run yet. With `streams`, the
    /// functions that change read their values there ([`streams`]).
    pub fn build(
        module: &Module,
        resolution: &Resolution<'_>,
        typing: &dyn Typing,
        host: &HostInfo,
        streams: Option<Arc<Streams>>,
    ) -> Result<Evaluation, Vec<Diagnostic>> {
        let cx =
            build::Ctx { module, resolution, typing, host: Arc::new(host.clone()), streams: streams.clone() };
        let mut builder = build::Builder::program(&cx);
        let root = builder.entry().map_err(|d| vec![*d])?;
        let graph = std::mem::take(&mut builder.graph);
        Ok(Evaluation { graph, root, streams, decoded: spec::Decoded::default() })
    }

    /// Computes what changed: every node the first time, then the nodes that read a
    /// changing value that changed, and what their new values reach. Whether the program's
    /// output changed.
    pub fn run(&mut self) -> bool {
        if let Some(streams) = &self.streams {
            for node in streams.take_changed() {
                self.graph.touch(node);
            }
        }
        self.graph.run();
        if let Some(streams) = &self.streams {
            streams.settle(self.graph.computed_last());
        }
        self.graph.computed_last().contains(&self.root)
    }

    /// The spec of the output; `None` while a changing value is not known yet.
    pub fn spec(&mut self, module: &Module) -> Result<Option<GraphSpec>, Vec<Diagnostic>> {
        let output = match self.graph.value(self.root) {
            Some(Ok(data)) => data.out().map_err(|f| vec![runtime(module, f)])?,
            Some(Err(fail)) => {
                let mut fail = fail.clone();
                let others = std::mem::take(&mut fail.others);
                let failed: Vec<_> = std::iter::once(fail).chain(others).filter(|f| !f.pending).collect();
                if failed.is_empty() {
                    return Ok(None);
                }
                return Err(failed.into_iter().map(|f| runtime(module, f)).collect());
            }
            None => return Ok(None),
        };
        spec::to_spec_with(output, &module.map, &graph_name(module), &mut self.decoded).map(Some)
    }
}

fn runtime(module: &Module, fail: data::Fail) -> Diagnostic {
    let span = if fail.span == Default::default() { module.units[0].program.span } else { fail.span };
    let mut diagnostic = Diagnostic::new(Stage::Runtime, span, fail.message);
    for call in fail.calls {
        diagnostic = diagnostic.with_secondary(call, "in this call");
    }
    diagnostic
}

/// The graph is named after the program's entry file.
pub fn graph_name(module: &Module) -> String {
    module.units[0].path.file_stem().map_or_else(|| "mcl".into(), |s| s.to_string_lossy().into_owned())
}
