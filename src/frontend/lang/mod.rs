//! mcl, upstream mgmt's language: its syntax. [`lexer`] turns text into tokens, [`parser`]
//! tokens into the [`ast`], every node with its [`Span`]; [`diagnostic`] renders errors, of this
//! stage and of those to come (scope, type, runtime), as file:line:col with an excerpt and a
//! caret. Scope resolution, types and evaluation build on the AST and are not here yet.

pub mod ast;
pub mod diagnostic;
pub mod lexer;
pub mod parser;
mod printer;
pub mod span;

#[cfg(test)]
mod corpus_tests;

pub use ast::Program;
pub use diagnostic::{Diagnostic, Stage, render_all};
pub use span::{FileId, Location, SourceMap, Span};

/// Parses one file of `map`: the program and every parse error found (an error anywhere
/// means the program must not be used).
pub fn parse_file(map: &SourceMap, file: FileId) -> (Program, Vec<Diagnostic>) {
    parser::parse(file, map.text(file))
}
