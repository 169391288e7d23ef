//! The type errors, worded for the user: both types named, the offending expression marked,
//! and where the other type came from, when known.

use super::super::diagnostic::{Diagnostic, Stage};
use super::super::span::Span;
use super::super::types::Type;
use super::unify::{Conflict, show};

/// Where an expected type came from: a place and what to say there.
pub type Origin = Option<(Span, String)>;

/// `found` at `at` does not fit `expected`.
pub fn mismatch(conflict: Conflict, expected: &Type, found: &Type, at: Span, origin: Origin) -> Diagnostic {
    let (expected, found) = (show(expected), show(found));
    let diagnostic = match conflict {
        Conflict::Mismatch => Diagnostic::new(
            Stage::Type,
            at,
            format!("mismatched types: expected `{expected}`, found `{found}`"),
        )
        .with_label(format!("expected `{expected}`, found `{found}`")),
        Conflict::Occurs => Diagnostic::new(
            Stage::Type,
            at,
            format!("infinite type: `{found}` would have to contain itself as `{expected}`"),
        )
        .with_label("this would have an infinite type"),
    };
    with_origin(diagnostic, origin)
}

pub fn with_origin(diagnostic: Diagnostic, origin: Origin) -> Diagnostic {
    match origin {
        Some((span, text)) => diagnostic.with_secondary(span, text),
        None => diagnostic,
    }
}

pub fn arity(what: &str, expected: usize, found: usize, at: Span, origin: Origin) -> Diagnostic {
    let d = Diagnostic::new(
        Stage::Type,
        at,
        format!("{what} takes {} but {} {} given", count(expected, "argument"), found, was(found)),
    )
    .with_label(format!("expected {}", count(expected, "argument")));
    with_origin(d, origin)
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn was(n: usize) -> &'static str {
    if n == 1 { "was" } else { "were" }
}

/// A type still unknown when everything has been solved.
pub fn undetermined(ty: &Type, at: Span, bind: Option<&str>) -> Diagnostic {
    let shown = show(ty);
    let message = match bind {
        Some(name) => format!("cannot determine the type of `{name}`"),
        None => "cannot determine the type of this expression".to_string(),
    };
    let example = bind.unwrap_or("$name");
    Diagnostic::new(Stage::Type, at, message)
        .with_label(format!("its type is `{shown}`, and nothing decides the `_`"))
        .with_note(format!("give it a type where it is bound, as in `{example} []str = ...`"))
}

pub fn not_a(what: &str, ty: &Type, at: Span) -> Diagnostic {
    Diagnostic::new(Stage::Type, at, format!("expected {what}, found `{}`", show(ty)))
        .with_label(format!("this is `{}`", show(ty)))
}

pub fn plain(at: Span, message: impl Into<String>) -> Diagnostic {
    Diagnostic::new(Stage::Type, at, message)
}
