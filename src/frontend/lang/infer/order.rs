//! Binds and functions outside classes are typed in the order of their dependencies before
//! the program is walked: typing each on its first use instead would recurse once per link
//! of a chain of definitions written in reverse, and a long chain would exhaust the stack.

use std::collections::HashSet;

use super::super::ast::{self, Callee, Expr, ExprKind, Func, Ident, InterpPart, Stmt, StmtKind};
use super::super::span::Span;
use super::{Checker, Def};

/// A definition typed ahead.
#[derive(Clone, Copy)]
enum Node<'a> {
    Bind(&'a Ident, Option<&'a ast::Type>, &'a Expr),
    Func(&'a Ident, &'a Func),
}

impl Node<'_> {
    fn key(&self) -> Span {
        match self {
            Node::Bind(name, ..) | Node::Func(name, _) => name.span,
        }
    }
}

impl<'r> Checker<'r> {
    /// Types every bind and function outside classes, each after those it uses.
    pub(super) fn type_in_order(&mut self, stmts: &'r [Stmt]) {
        let mut roots = Vec::new();
        roots_of(stmts, &mut roots);
        let mut seen: HashSet<Span> = HashSet::new();
        for root in roots {
            if !seen.insert(root.key()) {
                continue;
            }
            let mut stack = vec![(root, self.deps(root), 0usize)];
            while let Some((node, deps, next)) = stack.last_mut() {
                if let Some(dep) = deps.get(*next).copied() {
                    *next += 1;
                    if seen.insert(dep.key()) {
                        let deps = self.deps(dep);
                        stack.push((dep, deps, 0));
                    }
                    continue;
                }
                let node = *node;
                stack.pop();
                self.type_node(node);
            }
        }
    }

    fn type_node(&mut self, node: Node<'r>) {
        match node {
            Node::Bind(name, ty, value) => {
                self.bind_type(name, ty, value);
            }
            Node::Func(name, func) => {
                self.func_scheme(name, func);
            }
        }
    }

    /// The binds and functions outside classes that `node`'s expression uses.
    fn deps(&self, node: Node<'r>) -> Vec<Node<'r>> {
        let mut uses = Vec::new();
        match node {
            Node::Bind(_, _, value) => uses_in(value, &mut uses),
            Node::Func(_, func) => uses_in(&func.body, &mut uses),
        }
        let res: &'r super::Resolution<'r> = self.res;
        uses.into_iter()
            .filter_map(|span| match res.get(span)? {
                Def::Bind { name, ty, value } => Some(Node::Bind(name, *ty, value)),
                Def::Func { name, func } => Some(Node::Func(name, func)),
                _ => None,
            })
            .filter(|n| !self.enclosing.contains_key(&n.key()))
            .collect()
    }
}

/// The binds and functions of `stmts` and of the blocks inside them, except class bodies.
fn roots_of<'a>(stmts: &'a [Stmt], out: &mut Vec<Node<'a>>) {
    for stmt in stmts {
        match &stmt.kind {
            StmtKind::Bind { name, ty, value } => out.push(Node::Bind(name, ty.as_ref(), value)),
            StmtKind::Func { name, func } => out.push(Node::Func(name, func)),
            StmtKind::If { then, otherwise, .. } => {
                roots_of(&then.stmts, out);
                if let Some(otherwise) = otherwise {
                    roots_of(&otherwise.stmts, out);
                }
            }
            StmtKind::For { body, .. } | StmtKind::ForKv { body, .. } => roots_of(&body.stmts, out),
            _ => {}
        }
    }
}

/// The span of every name used in `expr`, lambdas' bodies included.
fn uses_in(expr: &Expr, out: &mut Vec<Span>) {
    match &expr.kind {
        ExprKind::Var(ident) => out.push(ident.span),
        ExprKind::Interp(parts) => out.extend(parts.iter().filter_map(|p| match p {
            InterpPart::Var(ident) => Some(ident.span),
            InterpPart::Lit(_) => None,
        })),
        ExprKind::List(items) => items.iter().for_each(|e| uses_in(e, out)),
        ExprKind::Map(entries) => entries.iter().for_each(|e| {
            uses_in(&e.key, out);
            uses_in(&e.value, out);
        }),
        ExprKind::Struct(fields) => fields.iter().for_each(|f| uses_in(&f.value, out)),
        ExprKind::Call { callee, args } => {
            match callee {
                Callee::Name(ident) | Callee::Var(ident) => out.push(ident.span),
                Callee::Lambda(lambda) => uses_in(lambda, out),
            }
            args.iter().for_each(|a| uses_in(a, out));
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            uses_in(lhs, out);
            uses_in(rhs, out);
        }
        ExprKind::Not(inner) => uses_in(inner, out),
        ExprKind::Index { base, index } => {
            uses_in(base, out);
            uses_in(index, out);
        }
        ExprKind::Field { base, .. } => uses_in(base, out),
        ExprKind::Except { expr, fallback } => {
            uses_in(expr, out);
            uses_in(fallback, out);
        }
        ExprKind::If { cond, then, otherwise } => {
            uses_in(cond, out);
            uses_in(then, out);
            uses_in(otherwise, out);
        }
        ExprKind::Func(func) => uses_in(&func.body, out),
        ExprKind::Bool(_) | ExprKind::Str(_) | ExprKind::Int(_) | ExprKind::Float(_) => {}
    }
}
