//! String literals: escapes, and `${name}` interpolation, read as upstream reads them. A `$`
//! that does not start a well-formed `${name}` is a plain `$`.

use super::super::ast::{ExprKind, Ident, InterpPart};
use super::super::diagnostic::Diagnostic;
use super::super::span::Span;
use super::{PResult, Parser};

const ESCAPES: &str = "\\a \\b \\f \\n \\r \\t \\v \\\\ \\\" \\$";

impl Parser {
    /// The value of a string token (`span` includes the quotes): a plain string, or the parts
    /// of an interpolated one.
    pub(super) fn string(&mut self, raw: &str, span: Span) -> ExprKind {
        let parts = self.string_parts(raw, span);
        if parts.iter().all(|p| matches!(p, InterpPart::Lit(_))) {
            let text = parts
                .into_iter()
                .map(|p| if let InterpPart::Lit(s) = p { s } else { String::new() })
                .collect();
            return ExprKind::Str(text);
        }
        ExprKind::Interp(parts)
    }

    /// A string that may not interpolate, such as an import path.
    pub(super) fn plain_string(&mut self, raw: &str, span: Span) -> PResult<String> {
        match self.string(raw, span) {
            ExprKind::Str(text) => Ok(text),
            _ => Err(Box::new(
                Diagnostic::parse(span, "this string cannot interpolate `${...}`")
                    .with_label("a constant string"),
            )),
        }
    }

    fn string_parts(&mut self, raw: &str, span: Span) -> Vec<InterpPart> {
        let base = span.start + 1; // after the opening quote
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = raw;
        while let Some(c) = rest.chars().next() {
            let offset = base + (raw.len() - rest.len());
            if c == '\\' {
                let next = rest[1..].chars().next().unwrap_or('\\');
                match unescape(next) {
                    Some(value) => lit.push(value),
                    None => self.report(
                        Diagnostic::parse(
                            Span::new(span.file, offset, offset + 1 + next.len_utf8()),
                            format!("unknown escape `\\{next}`"),
                        )
                        .with_label("not an escape")
                        .with_note(format!("the escapes are {ESCAPES}")),
                    ),
                }
                rest = &rest[1 + next.len_utf8()..];
            } else if let Some(len) = interpolation(rest) {
                if !lit.is_empty() {
                    parts.push(InterpPart::Lit(std::mem::take(&mut lit)));
                }
                let name = rest[2..len - 1].to_string();
                parts.push(InterpPart::Var(Ident { name, span: Span::new(span.file, offset, offset + len) }));
                rest = &rest[len..];
            } else {
                lit.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !lit.is_empty() || parts.is_empty() {
            parts.push(InterpPart::Lit(lit));
        }
        parts
    }
}

fn unescape(c: char) -> Option<char> {
    Some(match c {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        '\\' => '\\',
        '"' => '"',
        '$' => '$',
        _ => return None,
    })
}

/// The length of a `${name}` at the start of `text`, if one is there. A name starts with a
/// lower-case letter, then lower-case letters, digits, `_` and single `.`s, and does not end
/// with `.` or `_`.
fn interpolation(text: &str) -> Option<usize> {
    let inner = text.strip_prefix("${")?;
    let end = inner.find('}')?;
    let name = &inner[..end];
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        && !name.contains("..")
        && !name.ends_with(['.', '_']);
    valid.then_some(end + 3)
}
