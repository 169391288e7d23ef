//! A program, from loaded files to a graph: scope, types, then evaluation. Each stage stops
//! the program at its first failing stage with every error that stage found; nothing of a
//! program with an error is applied.

use super::diagnostic::Diagnostic;
use super::eval;
use super::funcs::HostInfo;
use super::module::Module;
use super::scope;
use crate::frontend::GraphSpec;

/// Compiles a loaded program into the graph it describes for this host.
pub fn compile(module: &Module, host: &HostInfo) -> Result<GraphSpec, Vec<Diagnostic>> {
    let resolution = scope::resolve(module)?;
    // Type inference goes here, between scope and evaluation: `infer::check`.
    eval::evaluate(module, &resolution, &eval::Untyped, host)
}
