//! What a file's content change looks like in the log: a bounded unified diff, or one line
//! saying why there is none (sensitive, binary, too large). Pure: the caller reads the
//! content, within [`DIFF_INPUT_MAX`].

use std::fmt::Write as _;
use std::time::Duration;

use similar::TextDiff;

use crate::contract::limits::{BINARY_SNIFF, DIFF_INPUT_MAX, DIFF_LINE_MAX, DIFF_LINES_MAX};
use crate::text::head;

/// The longest a diff may take to compute; past it, `similar` gives a correct but coarser
/// diff (pathological inputs are quadratic).
const DIFF_DEADLINE: Duration = Duration::from_millis(500);

/// One side of a content change: its size, and its bytes when they were read (a content
/// over [`DIFF_INPUT_MAX`] need not be).
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub len: u64,
    pub bytes: Option<&'a [u8]>,
}

impl<'a> Side<'a> {
    /// A content read whole.
    pub fn read(bytes: &'a [u8]) -> Self {
        Side { len: bytes.len() as u64, bytes: Some(bytes) }
    }

    /// A content of `len` bytes that was not read.
    pub fn unread(len: u64) -> Self {
        Side { len, bytes: None }
    }

    /// The bytes, if they were read and are small enough to diff.
    fn diffable(&self) -> Option<&'a [u8]> {
        self.bytes.filter(|b| self.len <= DIFF_INPUT_MAX && b.len() as u64 <= DIFF_INPUT_MAX)
    }
}

/// The lines that show how the content of `path` changes from `current` (`None`: the file
/// does not exist yet) to `desired`: a unified diff with 3 lines of context, headed
/// `--- PATH (current)` / `+++ PATH (desired)`, of at most [`DIFF_LINES_MAX`] lines of at
/// most [`DIFF_LINE_MAX`] bytes each (control characters escaped). Instead of a diff:
/// `content changed` for sensitive content (nothing of it is shown, not even its size),
/// `binary content changed (N -> M bytes)`, and
/// `content changed (N -> M bytes, too large to diff)`.
pub fn content_diff(path: &str, current: Option<Side<'_>>, desired: Side<'_>, sensitive: bool) -> String {
    if sensitive {
        return "content changed".to_string();
    }
    let before = current.map_or(0, |c| c.len);
    let sizes = format!("{before} -> {} bytes", desired.len);
    let old = match current {
        Some(c) => c.diffable(),
        None => Some(&b""[..]),
    };
    let (Some(old), Some(new)) = (old, desired.diffable()) else {
        return format!("content changed ({sizes}, too large to diff)");
    };
    if is_binary(old) || is_binary(new) {
        return format!("binary content changed ({sizes})");
    }
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    let diff = TextDiff::configure().timeout(DIFF_DEADLINE).diff_lines(&old, &new);
    let from = if current.is_some() { format!("{path} (current)") } else { "/dev/null".to_string() };
    let text = diff.unified_diff().context_radius(3).header(&from, &format!("{path} (desired)")).to_string();
    bounded_lines(&text)
}

/// Whether a content is binary: a NUL byte, or bytes that are not UTF-8, in its first
/// [`BINARY_SNIFF`] bytes (a character cut by that bound does not count).
pub fn is_binary(b: &[u8]) -> bool {
    let start = &b[..b.len().min(BINARY_SNIFF)];
    if start.contains(&0) {
        return true;
    }
    match std::str::from_utf8(start) {
        Ok(_) => false,
        // `error_len` is `None` for a sequence cut short at the end of `start`.
        Err(e) => e.error_len().is_some() || start.len() == b.len(),
    }
}

/// `text`'s first [`DIFF_LINES_MAX`] lines, each cut to [`DIFF_LINE_MAX`] bytes with control
/// characters escaped, then `... N more lines` for the rest. No trailing newline.
fn bounded_lines(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    for line in lines.by_ref().take(DIFF_LINES_MAX) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&head(&escape_controls(line), DIFF_LINE_MAX));
    }
    let more = lines.count();
    if more > 0 {
        let _ = write!(out, "\n... {more} more lines");
    }
    out
}

/// A line with its control characters (other than tab) escaped, so that a file's content
/// cannot move the cursor or recolour an operator's terminal.
fn escape_controls(line: &str) -> String {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return line.to_string();
    }
    line.chars()
        .map(|c| if c.is_control() && c != '\t' { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(old: &str, new: &str) -> String {
        content_diff("/etc/app.conf", Some(Side::read(old.as_bytes())), Side::read(new.as_bytes()), false)
    }

    #[test]
    fn a_text_change_is_a_unified_diff_with_three_lines_of_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nold\nh\n";
        let new = "a\nb\nc\nd\ne\nf\ng\nnew\nh\n";
        assert_eq!(
            diff(old, new),
            "--- /etc/app.conf (current)\n+++ /etc/app.conf (desired)\n@@ -5,5 +5,5 @@\n e\n f\n g\n-old\n+new\n h"
        );
    }

    #[test]
    fn a_missing_newline_at_the_end_is_marked() {
        let d = diff("x\n", "x");
        assert!(d.contains("-x\n+x\n\\ No newline at end of file"), "{d}");
    }

    #[test]
    fn a_new_file_is_diffed_against_nothing() {
        let d = content_diff("/f", None, Side::read(b"one\ntwo\n"), false);
        assert_eq!(d, "--- /dev/null\n+++ /f (desired)\n@@ -0,0 +1,2 @@\n+one\n+two");
    }

    #[test]
    fn a_long_diff_is_cut_to_its_first_lines_and_counts_the_rest() {
        let new: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let d = diff("", &new);
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), DIFF_LINES_MAX + 1);
        // 2 header lines, 1 hunk line and 1000 added lines: 203 lines were not shown.
        assert_eq!(lines[DIFF_LINES_MAX], "... 803 more lines");
    }

    #[test]
    fn a_long_line_is_cut() {
        let d = diff("short\n", &format!("{}\n", "x".repeat(100_000)));
        assert!(d.lines().all(|l| l.len() <= DIFF_LINE_MAX), "{d}");
        assert!(d.contains("more bytes]"), "{d}");
    }

    #[test]
    fn control_characters_are_escaped() {
        let d = diff("a\n", "\u{1b}[2J\n");
        assert!(d.contains("+\\u{1b}[2J"), "{d}");
        assert!(!d.contains('\u{1b}'));
    }

    #[test]
    fn binary_content_shows_only_its_sizes() {
        let d = content_diff("/f", Some(Side::read(b"text\n")), Side::read(b"\x7fELF\0\0\x01"), false);
        assert_eq!(d, "binary content changed (5 -> 7 bytes)");
        let d = content_diff("/f", Some(Side::read(b"\xff\xfe")), Side::read(b"text"), false);
        assert_eq!(d, "binary content changed (2 -> 4 bytes)");
    }

    #[test]
    fn only_the_start_decides_whether_content_is_binary() {
        // A multi-byte character cut by the sniffing bound is still text.
        let mut b = "a".repeat(BINARY_SNIFF - 1).into_bytes();
        b.extend_from_slice("é and more".as_bytes());
        assert!(!is_binary(&b));
        // A NUL after the sniffed part does not make it binary.
        let mut b = "a".repeat(BINARY_SNIFF).into_bytes();
        b.push(0);
        assert!(!is_binary(&b));
        // Content ending in a cut character is not UTF-8.
        assert!(is_binary(&"é".as_bytes()[..1]));
    }

    #[test]
    fn content_over_the_input_bound_is_not_diffed() {
        let big = vec![b'a'; DIFF_INPUT_MAX as usize + 1];
        let d = content_diff("/f", Some(Side::read(b"a\n")), Side::read(&big), false);
        assert_eq!(d, format!("content changed (2 -> {} bytes, too large to diff)", big.len()));
        let d = content_diff("/f", Some(Side::unread(5_000_000)), Side::read(b"a\n"), false);
        assert_eq!(d, "content changed (5000000 -> 2 bytes, too large to diff)");
    }

    #[test]
    fn sensitive_content_shows_nothing_of_itself() {
        let d = content_diff("/f", Some(Side::read(b"hunter2\n")), Side::read(b"s3cret!!\n"), true);
        assert_eq!(d, "content changed");
    }
}
