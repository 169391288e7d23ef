//! A program, from loaded files to a graph: scope, types, then evaluation. Each stage stops
//! the program at its first failing stage with every error that stage found; nothing of a
//! program with an error is applied.

use super::diagnostic::Diagnostic;
use super::eval::{self, Typing};
use super::funcs::HostInfo;
use super::infer::{self, Types};
use super::module::Module;
use super::scope;
use super::span::Span;
use super::types::Type;
use crate::frontend::GraphSpec;

/// Compiles a loaded program into the graph it describes for this host.
pub fn compile(module: &Module, host: &HostInfo) -> Result<GraphSpec, Vec<Diagnostic>> {
    let resolution = scope::resolve(module)?;
    let types = infer::check(module, &resolution)?;
    eval::evaluate(module, &resolution, &types, host)
}

/// Evaluation asks inference for the types of calls, per instance of a class body.
impl Typing for Types {
    fn call_type(&self, instance: u32, span: Span) -> Option<Type> {
        self.call_type_in(instance, span).or_else(|| Types::call_type(self, span)).cloned()
    }

    fn expr_type(&self, instance: u32, span: Span) -> Option<Type> {
        self.expr_type_in(instance, span).or_else(|| Types::expr_type(self, span)).cloned()
    }

    fn included(&self, instance: u32, include: Span) -> Option<u32> {
        Types::included(self, instance, include)
    }
}
