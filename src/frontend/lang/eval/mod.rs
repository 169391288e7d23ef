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
//! How a value that changes would flow: a changing function (the time, a file's content)
//! is a source node, and a task of its own calls [`graph::Graph::set`] with each new value;
//! [`graph::Graph::run`] then recomputes the nodes that the change reaches, smallest id
//! (a topological order) first, and stops wherever a node's value comes out unchanged.
//! A resource statement recomputes its resources, a `for` re-expands its body for the new
//! list, an `if` statement switches branch, a lambda whose captures changed is a new
//! function value for the calls that use it. The root's output then becomes a new
//! [`GraphSpec`], which the engine swaps in as it swaps a new version of a YAML file.
//! Today every source is a constant, so one run computes each node once.

mod build;
mod data;
mod graph;
mod ops;
mod spec;
mod stmts;

#[cfg(test)]
mod corpus_tests;

use std::sync::Arc;

use super::diagnostic::{Diagnostic, Stage};
use super::funcs::HostInfo;
use super::module::Module;
use super::scope::Resolution;
use crate::frontend::GraphSpec;
pub use build::{Typing, Untyped};

/// Builds and runs the program's function graph, and makes a spec of its output.
pub fn evaluate(
    module: &Module,
    resolution: &Resolution<'_>,
    typing: &dyn Typing,
    host: &HostInfo,
) -> Result<GraphSpec, Vec<Diagnostic>> {
    let cx = build::Ctx { module, resolution, typing, host: Arc::new(host.clone()) };
    let mut builder = build::Builder::program(&cx);
    let root = builder.entry().map_err(|d| vec![*d])?;
    let mut graph = std::mem::take(&mut builder.graph);
    graph.run();
    let output = match graph.value(root) {
        Some(Ok(data)) => data.out().map_err(|f| vec![runtime(module, f)])?.clone(),
        Some(Err(fail)) => {
            let mut fail = fail.clone();
            let others = std::mem::take(&mut fail.others);
            return Err(std::iter::once(fail).chain(others).map(|f| runtime(module, f)).collect());
        }
        None => {
            return Err(vec![runtime(module, data::Fail::internal("the program was left without output"))]);
        }
    };
    spec::to_spec(&output, &module.map, &graph_name(module))
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
fn graph_name(module: &Module) -> String {
    module.units[0].path.file_stem().map_or_else(|| "mcl".into(), |s| s.to_string_lossy().into_owned())
}
