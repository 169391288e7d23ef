//! Bounds, in one place: the longest interval a param may ask for, and how much of an error
//! text or of a command's output is logged, kept and published.

use std::borrow::Cow;

/// The longest interval any param may ask for (timer `interval`, `meta.poll`, exec `timeout`,
/// one check at `meta.limit`): ten years. Far beyond any real use, and far from the point
/// where adding it to the clock overflows.
pub const MAX_INTERVAL_SECS: u64 = 10 * 365 * 24 * 3600;

/// Bytes of an error text that are logged and kept as a resource's last error (and so
/// published in its host's status).
pub const ERROR_TEXT_MAX: usize = 4096;

/// Bytes of a failed command's output kept with its error: the end of its last lines.
pub const OUTPUT_TAIL_MAX: usize = 1024;

/// Bytes kept of each of a command's stdout and stderr: the last ones.
pub const CAPTURE_MAX: usize = 64 * 1024;

/// Room left for the marker within `max`.
const MARKER_ROOM: usize = 32;

/// The largest char boundary of `s` at or below `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `s` cut to at most `max` bytes (`max` at least 64), keeping its start and ending with a
/// marker that says how much was cut.
pub fn head(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let keep = floor_boundary(s, max.saturating_sub(MARKER_ROOM));
    Cow::Owned(format!("{}… [{} more bytes]", &s[..keep], s.len() - keep))
}

/// `s` cut to at most `max` bytes (`max` at least 64), keeping its end and starting with a
/// marker that says how much was cut.
pub fn tail(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let cut = s.len() - max.saturating_sub(MARKER_ROOM);
    let mut start = cut;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    Cow::Owned(format!("[{start} bytes before] …{}", &s[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_kept_whole() {
        assert_eq!(head("abc", 64), "abc");
        assert_eq!(tail("abc", 64), "abc");
    }

    #[test]
    fn head_keeps_the_start_within_the_bound_on_a_char_boundary() {
        let s = "é".repeat(5000);
        let h = head(&s, ERROR_TEXT_MAX);
        assert!(h.len() <= ERROR_TEXT_MAX, "{}", h.len());
        assert!(h.starts_with("éé"));
        let (kept, marker) = h.split_once("… [").unwrap();
        assert!(s.starts_with(kept));
        assert_eq!(marker, format!("{} more bytes]", s.len() - kept.len()));
    }

    #[test]
    fn tail_keeps_the_end_within_the_bound_on_a_char_boundary() {
        let s = format!("{}the end", "€".repeat(3000));
        let t = tail(&s, OUTPUT_TAIL_MAX);
        assert!(t.len() <= OUTPUT_TAIL_MAX, "{}", t.len());
        assert!(t.starts_with('['), "{t}");
        assert!(t.ends_with("€the end"));
    }

    #[test]
    fn bounds_of_any_length_and_any_text_never_panic() {
        let s = "a€b𝄞".repeat(50);
        for max in 0..s.len() + 2 {
            let _ = head(&s, max);
            let _ = tail(&s, max);
        }
    }
}
