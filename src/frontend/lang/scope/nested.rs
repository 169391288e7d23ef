//! Classes inside classes. A class written in another class's body, or named `outer:inner`
//! beside `outer` (the same class, written outside), is included through an instance of its
//! enclosing class (`include o.inner` after `include outer as o`), and its body sees that
//! instance's names.

use std::collections::HashMap;

use crate::frontend::lang::ast::{Block, Stmt, StmtKind};
use crate::frontend::lang::diagnostic::{Diagnostic, Stage};
use crate::frontend::lang::span::Span;

/// The nested classes of every class, and the enclosing class of each `outer:inner` class.
#[derive(Default)]
pub(super) struct Nesting<'m> {
    /// By the enclosing class statement's span: its classes by their short name.
    pub children: HashMap<Span, HashMap<String, &'m Stmt>>,
    /// By an `outer:inner` class statement's span: the `outer` class statement.
    pub parents: HashMap<Span, &'m Stmt>,
    /// By a class statement's span: the `outer:inner` classes written beside it, which its
    /// body sees as `inner` as if they were written there.
    pub beside: HashMap<Span, Vec<&'m Stmt>>,
}

impl<'m> Nesting<'m> {
    /// The nesting of the classes of `stmts` and every block inside them.
    pub fn add(&mut self, stmts: &'m [Stmt], errors: &mut Vec<Diagnostic>) {
        let here: HashMap<&str, &'m Stmt> = stmts
            .iter()
            .filter_map(|s| match &s.kind {
                StmtKind::Class { name, .. } => Some((name.name.as_str(), s)),
                _ => None,
            })
            .collect();
        for stmt in stmts {
            match &stmt.kind {
                StmtKind::Class { name, body, .. } => {
                    self.add_colon_class(stmt, &name.name, &here, errors);
                    self.add_body(stmt, body, errors);
                    self.add(&body.stmts, errors);
                }
                StmtKind::If { then, otherwise, .. } => {
                    self.add(&then.stmts, errors);
                    if let Some(otherwise) = otherwise {
                        self.add(&otherwise.stmts, errors);
                    }
                }
                StmtKind::For { body, .. } | StmtKind::ForKv { body, .. } => self.add(&body.stmts, errors),
                _ => {}
            }
        }
    }

    /// The classes written in `class`'s body are its children, by their own names.
    fn add_body(&mut self, class: &'m Stmt, body: &'m Block, errors: &mut Vec<Diagnostic>) {
        for stmt in &body.stmts {
            if let StmtKind::Class { name, .. } = &stmt.kind
                && !name.name.contains(':')
            {
                self.add_child(class.span, &name.name, stmt, errors);
            }
        }
    }

    /// One nested class; the same name twice (in the body and beside it) is an error.
    fn add_child(&mut self, parent: Span, short: &str, stmt: &'m Stmt, errors: &mut Vec<Diagnostic>) {
        let Some(first) = self.children.entry(parent).or_default().insert(short.to_string(), stmt) else {
            return;
        };
        let (StmtKind::Class { name, .. }, StmtKind::Class { name: first_name, .. }) =
            (&stmt.kind, &first.kind)
        else {
            return;
        };
        let message = format!("the class `{short}` is defined twice in the same class");
        errors.push(
            Diagnostic::new(Stage::Scope, name.span, message)
                .with_label("defined again here")
                .with_secondary(first_name.span, "first defined here"),
        );
    }

    /// `class outer:inner` is a child of the class `outer` of the same block.
    fn add_colon_class(
        &mut self,
        stmt: &'m Stmt,
        full: &str,
        here: &HashMap<&str, &'m Stmt>,
        errors: &mut Vec<Diagnostic>,
    ) {
        let Some((outer, inner)) = full.rsplit_once(':') else { return };
        match here.get(outer) {
            Some(parent) => {
                self.add_child(parent.span, inner, stmt, errors);
                self.parents.insert(stmt.span, parent);
                self.beside.entry(parent.span).or_default().push(stmt);
            }
            None => {
                let StmtKind::Class { name, .. } = &stmt.kind else { return };
                let message =
                    format!("the class `{full}` is inside a class `{outer}`, which is not defined here");
                errors.push(
                    Diagnostic::new(Stage::Scope, name.span, message)
                        .with_label("no enclosing class")
                        .with_note(format!("define `class {outer}` in the same scope")),
                );
            }
        }
    }

    /// The `outer:inner` classes enclosing `class`, outermost first (empty for others).
    pub fn ancestors(&self, class: Span) -> Vec<&'m Stmt> {
        let mut out = Vec::new();
        let mut at = class;
        while let Some(parent) = self.parents.get(&at) {
            out.push(*parent);
            at = parent.span;
        }
        out.reverse();
        out
    }
}
