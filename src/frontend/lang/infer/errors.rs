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
        .with_label(if expected.len() + found.len() > 60 {
            "this value has another type".to_string()
        } else {
            format!("expected `{expected}`, found `{found}`")
        }),
        Conflict::Occurs => Diagnostic::new(
            Stage::Type,
            at,
            format!("infinite type: `{found}` would have to contain itself as `{expected}`"),
        )
        .with_label("this would have an infinite type"),
    };
    let diagnostic = match struct_difference(expected.as_str(), found.as_str()) {
        Some(note) => diagnostic.with_note(note),
        None => diagnostic,
    };
    with_origin(diagnostic, origin)
}

/// For two struct types, which fields one has and the other lacks.
fn struct_difference(expected: &str, found: &str) -> Option<String> {
    let fields = |t: &str| -> Option<Vec<String>> {
        let inner = t.strip_prefix("struct{")?.strip_suffix('}')?;
        Some(inner.split("; ").filter_map(|f| f.split(' ').next()).map(str::to_string).collect())
    };
    let (want, have) = (fields(expected)?, fields(found)?);
    let missing: Vec<&str> = want.iter().filter(|f| !have.contains(f)).map(String::as_str).collect();
    let extra: Vec<&str> = have.iter().filter(|f| !want.contains(f)).map(String::as_str).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing fields: {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        parts.push(format!("unexpected fields: {}", extra.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
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
    let example = format!("{} {} = ...", bind.unwrap_or("$name"), shown.replace('_', "str"));
    Diagnostic::new(Stage::Type, at, message)
        .with_label(format!("its type is `{shown}`, and nothing decides the `_`"))
        .with_note(format!("give it a type where it is bound, as in `{example}`"))
}

pub fn not_a(what: &str, ty: &Type, at: Span) -> Diagnostic {
    Diagnostic::new(Stage::Type, at, format!("expected {what}, found `{}`", show(ty)))
        .with_label(format!("this is `{}`", show(ty)))
}

pub fn plain(at: Span, message: impl Into<String>) -> Diagnostic {
    Diagnostic::new(Stage::Type, at, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_mismatches_name_the_fields_that_differ() {
        let note = struct_difference("struct{a int; b str}", "struct{a int; c str}").unwrap();
        assert_eq!(note, "missing fields: b; unexpected fields: c");
        assert_eq!(struct_difference("struct{a int}", "struct{a str}"), None);
        assert_eq!(struct_difference("int", "str"), None);
    }

    #[test]
    fn arity_counts_in_words() {
        let d = arity("function `f`", 1, 2, Span::default(), None);
        assert_eq!(d.message, "function `f` takes 1 argument but 2 were given");
        assert_eq!(d.label, "expected 1 argument");
    }
}
