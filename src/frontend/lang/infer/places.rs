//! Which class each definition is written in: a definition inside a class body is typed once
//! per include of the class.

use std::collections::HashMap;

use super::super::ast::{Stmt, StmtKind};
use super::super::span::Span;

/// Records, for every statement (and bind and function name) inside a class, the class
/// statement's span; `class` is the class `stmts` are in.
/// An `outer:inner` class is inside the class `outer` of its block.
pub fn enclosing_classes(stmts: &[Stmt], class: Option<Span>, out: &mut HashMap<Span, Span>) {
    let named: HashMap<&str, Span> = stmts
        .iter()
        .filter_map(|s| match &s.kind {
            StmtKind::Class { name, .. } => Some((name.name.as_str(), s.span)),
            _ => None,
        })
        .collect();
    for stmt in stmts {
        if let Some(class) = class {
            out.insert(stmt.span, class);
        }
        match &stmt.kind {
            StmtKind::Bind { name, .. } | StmtKind::Func { name, .. } => {
                if let Some(class) = class {
                    out.insert(name.span, class);
                }
            }
            StmtKind::Class { name, body, .. } => {
                if let Some(outer) = name.name.rsplit_once(':').and_then(|(o, _)| named.get(o)) {
                    out.insert(stmt.span, *outer);
                }
                enclosing_classes(&body.stmts, Some(stmt.span), out)
            }
            StmtKind::If { then, otherwise, .. } => {
                enclosing_classes(&then.stmts, class, out);
                if let Some(otherwise) = otherwise {
                    enclosing_classes(&otherwise.stmts, class, out);
                }
            }
            StmtKind::For { body, .. } | StmtKind::ForKv { body, .. } => {
                enclosing_classes(&body.stmts, class, out)
            }
            _ => {}
        }
    }
}
