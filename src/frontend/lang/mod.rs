//! mcl, upstream mgmt's language: its syntax. [`lexer`] turns text into tokens, [`parser`]
//! tokens into the [`ast`], every node with its [`Span`]; [`diagnostic`] renders errors, of this
//! stage and of those to come (scope, type, runtime), as file:line:col with an excerpt and a
//! caret. [`module`] loads a program's files and resolves its imports; [`compile`] runs
//! scope resolution, type inference and evaluation to a graph. [`funcs`] is the core library,
//! [`types`] and [`value`] what the stages speak of.

pub mod ast;
pub mod compile;
pub mod diagnostic;
pub mod eval;
pub mod funcs;
pub mod infer;
pub mod lexer;
pub mod module;
pub mod parser;
mod printer;
pub mod scope;
pub mod span;
pub mod types;
pub mod value;

#[cfg(test)]
mod corpus;
#[cfg(test)]
mod corpus_tests;

pub use ast::Program;
pub use compile::compile;
pub use diagnostic::{Diagnostic, Stage, render_all};
pub use funcs::HostInfo;
pub use module::{LoadError, Module, load};
pub use span::{FileId, Location, SourceMap, Span};

/// Parses one file of `map`: the program and every parse error found (an error anywhere
/// means the program must not be used).
pub fn parse_file(map: &SourceMap, file: FileId) -> (Program, Vec<Diagnostic>) {
    parser::parse(file, map.text(file))
}
