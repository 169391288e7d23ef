//! Errors of every stage of the language, located in the source and rendered as rustc does:
//! the stage and message, file:line:col, the excerpt and a caret under the place.

use codespan_reporting::diagnostic::{Diagnostic as Rendered, Label};
use codespan_reporting::term::{self, Chars, Config, DisplayStyle};

use super::span::{SourceMap, Span};

/// The stage that found an error, named in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Parse,
    Scope,
    Type,
    Runtime,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Parse => "parse",
            Stage::Scope => "scope",
            Stage::Type => "type",
            Stage::Runtime => "runtime",
        })
    }
}

/// One error: where, what, and optionally a label under the excerpt and notes after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stage} error: {message}")]
pub struct Diagnostic {
    pub stage: Stage,
    pub span: Span,
    pub message: String,
    /// Text next to the caret; the message is repeated there when it is empty.
    pub label: String,
    /// Other places that explain the error (where a bracket opened, where a type came from).
    pub secondary: Vec<(Span, String)>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(stage: Stage, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            stage,
            span,
            message: message.into(),
            label: String::new(),
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn parse(span: Span, message: impl Into<String>) -> Self {
        Self::new(Stage::Parse, span, message)
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// One line: `file:line:col: stage error: message`.
    pub fn short(&self, map: &SourceMap) -> String {
        format!("{}: {self}", map.locate(self.span))
    }

    /// The full report: header, location, excerpt with a caret, notes.
    pub fn render(&self, map: &SourceMap) -> String {
        let label = if self.label.is_empty() { &self.message } else { &self.label };
        let mut labels = vec![Label::primary(self.span.file, self.span.range()).with_message(label)];
        labels.extend(
            self.secondary
                .iter()
                .map(|(span, text)| Label::secondary(span.file, span.range()).with_message(text)),
        );
        let rendered = Rendered::error()
            .with_message(self.to_string())
            .with_labels(labels)
            .with_notes(self.notes.clone());
        // ASCII, as rustc draws it: `-->`, `|` and `^`.
        let config = Config { display_style: DisplayStyle::Rich, chars: Chars::ascii(), ..Config::default() };
        term::emit_into_string(&config, map.files(), &rendered).unwrap_or_else(|_| self.short(map))
    }
}

/// At most this many errors are rendered: a program with thousands shows the first ones and
/// how many more there are, not a wall of text.
pub const MAX_RENDERED: usize = 50;

/// The diagnostics rendered, in source order, separated as rustc separates them: the first
/// [`MAX_RENDERED`], and a line saying how many more there are.
pub fn render_all(diagnostics: &[Diagnostic], map: &SourceMap) -> String {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by_key(|d| (d.span.file, d.span.start));
    let mut text: String = sorted.iter().take(MAX_RENDERED).map(|d| d.render(map)).collect();
    if sorted.len() > MAX_RENDERED {
        text.push_str(&format!("... and {} more errors\n", sorted.len() - MAX_RENDERED));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_all_sorts_by_place_and_shows_each() {
        let mut map = SourceMap::new();
        let file = map.add("m.mcl", "$a = 1\n$b = @\n");
        let second = Diagnostic::new(Stage::Type, Span::new(file, 12, 13), "late").with_note("a note");
        let first = Diagnostic::parse(Span::new(file, 0, 2), "early")
            .with_label("here")
            .with_secondary(Span::new(file, 5, 6), "and there");
        let text = render_all(&[second, first], &map);
        let early = text.find("parse error: early").unwrap();
        let late = text.find("type error: late").unwrap();
        assert!(early < late, "{text}");
        assert!(text.contains("m.mcl:1:1") && text.contains("m.mcl:2:6"), "{text}");
        assert!(text.contains("^^") && text.contains("here") && text.contains("= a note"), "{text}");
        assert!(text.contains("- and there"), "{text}");
    }

    #[test]
    fn many_errors_are_cut_short_with_a_count() {
        let mut map = SourceMap::new();
        let file = map.add("m.mcl", "x".repeat(200));
        let all: Vec<Diagnostic> =
            (0..120).map(|i| Diagnostic::parse(Span::new(file, i, i + 1), format!("e{i}"))).collect();
        let text = render_all(&all, &map);
        assert_eq!(text.matches("parse error").count(), MAX_RENDERED);
        assert!(text.contains("parse error: e0\n") && !text.contains("e50\n"), "{text}");
        assert!(text.ends_with("... and 70 more errors\n"), "{text}");
    }
}
