//! The functions the checker calls operators through: the core library's, so the checker and
//! the evaluator share one definition of each.

use super::super::ast::BinOp;
use super::super::funcs::{Builtin, operators};

/// Where operators come from; a test can give its own.
pub trait Library {
    fn binary(&self, op: BinOp) -> Option<&'static Builtin>;
    fn not(&self) -> Option<&'static Builtin>;
}

/// The core library.
pub struct Core;

impl Library for Core {
    fn binary(&self, op: BinOp) -> Option<&'static Builtin> {
        Some(operators::binary(op))
    }

    fn not(&self) -> Option<&'static Builtin> {
        Some(operators::not())
    }
}
