//! Byte spans into source files, and the map from file ids to names and text.

use codespan_reporting::files::{Files, SimpleFiles};

/// Identifies one file of a [`SourceMap`].
pub type FileId = usize;

/// A byte range `start..end` of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Span { file, start, end }
    }

    /// The smallest span covering both (of the same file).
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// The empty span just after this one, where a missing token belongs.
    pub fn after(self) -> Span {
        Span { file: self.file, start: self.end, end: self.end }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// A place in a file as users read it: 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Every source file of a program, by [`FileId`].
#[derive(Default)]
pub struct SourceMap {
    files: SimpleFiles<String, String>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.add(name.into(), text.into())
    }

    pub fn name(&self, file: FileId) -> &str {
        self.files.get(file).map(|f| f.name().as_str()).unwrap_or("<unknown>")
    }

    pub fn text(&self, file: FileId) -> &str {
        self.files.get(file).map(|f| f.source().as_str()).unwrap_or("")
    }

    /// Where a span starts, as file:line:column.
    pub fn locate(&self, span: Span) -> Location {
        let (line, column) = match self.files.location(span.file, span.start) {
            Ok(loc) => (loc.line_number, loc.column_number),
            Err(_) => (0, 0),
        };
        Location { file: self.name(span.file).to_string(), line, column }
    }

    pub(super) fn files(&self) -> &SimpleFiles<String, String> {
        &self.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_characters() {
        let mut map = SourceMap::new();
        let id = map.add("main.mcl", "a\nbé c\n");
        assert_eq!(map.locate(Span::new(id, 0, 1)).to_string(), "main.mcl:1:1");
        assert_eq!(map.locate(Span::new(id, 6, 7)).to_string(), "main.mcl:2:4");
    }

    #[test]
    fn to_covers_both() {
        let a = Span::new(0, 3, 5);
        assert_eq!(a.to(Span::new(0, 8, 9)), Span::new(0, 3, 9));
        assert_eq!(a.after(), Span::new(0, 5, 5));
    }
}
