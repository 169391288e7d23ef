//! What scope resolution tells evaluation: the definition each name use refers to.
//! A stand-in with the shape of `scope::Resolution` until scope resolution is in place.

use std::collections::HashMap;

use super::super::ast::{Expr, Func, Ident, Param, Stmt, Type};
use super::super::funcs::Builtin;
use super::super::span::Span;
use super::super::value::Val;

#[derive(Default)]
pub struct Resolution<'m> {
    pub uses: HashMap<Span, Def<'m>>,
}

impl Resolution<'_> {
    pub fn get(&self, use_span: Span) -> Option<&Def<'_>> {
        self.uses.get(&use_span)
    }
}

#[allow(dead_code)]
pub enum Def<'m> {
    Bind { name: &'m Ident, ty: Option<&'m Type>, value: &'m Expr },
    Param { owner: Span, index: usize, param: &'m Param },
    LoopVar { stmt: &'m Stmt, index: usize },
    Func { name: &'m Ident, func: &'m Func },
    Class { stmt: &'m Stmt },
    IncludeBind { include: &'m Stmt, name: &'m Ident, value: &'m Expr },
    Builtin(&'static Builtin),
    Hostname,
    Const(Val),
}
