//! Cutting text to a bound, on a character boundary and with a visible marker: for every
//! text that comes from outside or grows with what runs (errors, command output, statuses,
//! what `mgmt status` and `mgmt deploy list` print), and content diffs (`diff`). Below every
//! module but `contract`.

pub mod diff;

use std::borrow::Cow;

/// `n` and the noun, in the singular for one: `1 resource`, `2 resources`, `0 resources`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// `s` cut to at most `max` bytes, keeping its start and ending with `… [N more bytes]`.
/// With `max` smaller than the marker, the marker alone is kept.
pub fn head(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    // The marker's length depends on the count it shows; this count is an upper bound.
    let marker = |n: usize| format!("… [{n} more bytes]");
    let keep = floor_boundary(s, max.saturating_sub(marker(s.len()).len()));
    Cow::Owned(format!("{}{}", &s[..keep], marker(s.len() - keep)))
}

/// `s` cut to at most `max` bytes, keeping its end and starting with `[N bytes before] …`.
/// With `max` smaller than the marker, the marker alone is kept.
pub fn tail(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let marker = |n: usize| format!("[{n} bytes before] …");
    let room = max.saturating_sub(marker(s.len()).len());
    let mut start = s.len() - room;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    Cow::Owned(format!("{}{}", marker(start), &s[start..]))
}

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

/// Whether `host` is a host name or an IPv4 address as URLs carry them: dot-separated
/// labels of letters, digits, `-` and `_`, none empty or starting with `-`. Pure.
pub fn is_host_name(host: &str) -> bool {
    host.split('.').all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_singular_for_one_only() {
        assert_eq!(super::count(0, "file"), "0 files");
        assert_eq!(super::count(1, "file"), "1 file");
        assert_eq!(super::count(2, "resource"), "2 resources");
    }

    use super::*;

    #[test]
    fn short_texts_are_kept_whole() {
        for s in ["", "abc", "exactly10!"] {
            assert_eq!(head(s, 10), s);
            assert_eq!(tail(s, 10), s);
        }
    }

    #[test]
    fn head_keeps_the_start_within_the_bound_on_a_char_boundary() {
        let s = "é".repeat(10_000);
        for max in [100, 101, 4096] {
            let h = head(&s, max);
            assert!(h.len() <= max, "{max}: {} bytes", h.len());
            let (kept, marker) = h.split_once("… [").unwrap();
            assert!(s.starts_with(kept));
            assert_eq!(marker, format!("{} more bytes]", s.len() - kept.len()));
        }
    }

    #[test]
    fn tail_keeps_the_end_within_the_bound_on_a_char_boundary() {
        let s = format!("{}the end", "€".repeat(3000));
        for max in [100, 1024] {
            let t = tail(&s, max);
            assert!(t.len() <= max, "{max}: {} bytes", t.len());
            assert!(t.starts_with('['), "{t}");
            assert!(t.ends_with("€the end"));
        }
    }

    #[test]
    fn bounds_of_any_length_and_any_text_never_panic() {
        let s = "a€b𝄞".repeat(50);
        for max in 0..s.len() + 2 {
            let _ = head(&s, max);
            let _ = tail(&s, max);
        }
        assert!(head(&"x".repeat(100), 3).starts_with('…'));
    }
}
