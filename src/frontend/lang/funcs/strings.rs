//! mcl's `strings` module.

use super::super::value::CallError;
use super::Builtin;
use super::args::{check_text, fixed, go_split, native};

const M: &str = "strings";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "contains", "func(str, str) bool", contains, "whether s holds substr"),
    fixed(M, "has_prefix", "func(str, str) bool", has_prefix, "whether s starts with prefix"),
    fixed(M, "has_suffix", "func(str, str) bool", has_suffix, "whether s ends with suffix"),
    fixed(
        M,
        "join_nonempty",
        "func([]str, str) str",
        join_nonempty,
        "the non-empty strings of the list, joined by sep",
    ),
    fixed(
        M,
        "left_pad",
        "func(str, str, int) str",
        left_pad,
        "s with pad prepended until it is at least len bytes long",
    ),
    fixed(
        M,
        "right_pad",
        "func(str, str, int) str",
        right_pad,
        "s with pad appended until it is at least len bytes long",
    ),
    fixed(M, "replace_all", "func(str, str, str) str", replace_all, "s with every old replaced by new"),
    fixed(
        M,
        "split",
        "func(str, str) []str",
        split,
        "the parts of a between each sep b (an empty b splits into characters)",
    ),
    fixed(
        M,
        "substr",
        "func(str, int, int) str",
        substr,
        "the bytes of s from low up to high; an error when out of range",
    ),
    fixed(M, "to_lower", "func(str) str", to_lower, "s in lower case"),
    fixed(M, "to_upper", "func(str) str", to_upper, "s in upper case"),
    fixed(M, "trim_space", "func(str) str", trim_space, "s without its leading and trailing white space"),
];

native!(
    pub(super) fn contains(s: str, substr: str) -> bool {
        s.contains(substr)
    }
);
native!(
    pub(super) fn has_prefix(s: str, prefix: str) -> bool {
        s.starts_with(prefix)
    }
);
native!(
    pub(super) fn has_suffix(s: str, suffix: str) -> bool {
        s.ends_with(suffix)
    }
);
native!(
    fn join_nonempty(list: strs, sep: str) -> str {
        list.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(sep)
    }
);
native!(
    fn left_pad(s: str, with: str, len: int) -> str {
        padded(s, with, len, true)?
    }
);
native!(
    fn right_pad(s: str, with: str, len: int) -> str {
        padded(s, with, len, false)?
    }
);
native!(
    pub(super) fn replace_all(s: str, old: str, new: str) -> str {
        replace(s, old, new)?
    }
);
native!(
    fn split(s: str, sep: str) -> val {
        go_split(s, sep)?
    }
);
native!(
    fn substr(s: str, low: int, high: int) -> str {
        byte_range(s, low, high)?
    }
);
native!(
    pub(super) fn to_lower(s: str) -> str {
        s.to_lowercase()
    }
);
native!(
    pub(super) fn to_upper(s: str) -> str {
        s.to_uppercase()
    }
);
native!(
    pub(super) fn trim_space(s: str) -> str {
        s.trim().to_string()
    }
);

fn padded(s: &str, with: &str, len: i64, left: bool) -> Result<String, CallError> {
    if with.is_empty() || len <= s.len() as i64 {
        return Ok(s.to_string());
    }
    check_text(len as u128 + with.len() as u128)?;
    let mut fill = String::new();
    while fill.len() + s.len() < len as usize {
        fill.push_str(with);
    }
    Ok(if left { fill + s } else { format!("{s}{fill}") })
}

/// Go's `strings.ReplaceAll`, bounded: an empty `old` matches between every character.
pub fn replace(s: &str, old: &str, new: &str) -> Result<String, CallError> {
    let matches = if old.is_empty() { s.chars().count() + 1 } else { s.matches(old).count() };
    check_text(s.len() as u128 + matches as u128 * new.len() as u128)?;
    if old.is_empty() {
        let mut out = String::from(new);
        for c in s.chars() {
            out.push(c);
            out.push_str(new);
        }
        return Ok(out);
    }
    Ok(s.replace(old, new))
}

fn byte_range(s: &str, low: i64, high: i64) -> Result<String, CallError> {
    let len = s.len() as i64;
    if low < 0 || high < low || high > len {
        return Err(CallError(format!("low/high out of range: {low}..{high} of a {len} byte str")));
    }
    s.get(low as usize..high as usize)
        .map(str::to_string)
        .ok_or_else(|| CallError(format!("{low}..{high} does not fall on character boundaries")))
}

#[cfg(test)]
mod tests {
    use super::super::super::value::Val;
    use super::super::testing::{call, f, s, strs};
    use super::*;

    fn run(name: &str, args: Vec<Val>) -> Result<Val, CallError> {
        call(f(M, name), args)
    }

    #[test]
    fn each_function_on_plain_input() {
        assert_eq!(run("contains", vec![s("hello"), s("ell")]), Ok(Val::Bool(true)));
        assert_eq!(run("has_prefix", vec![s("hello"), s("he")]), Ok(Val::Bool(true)));
        assert_eq!(run("has_suffix", vec![s("hello"), s("he")]), Ok(Val::Bool(false)));
        assert_eq!(run("join_nonempty", vec![strs(&["a", "", "b"]), s(",")]), Ok(s("a,b")));
        assert_eq!(run("left_pad", vec![s("7"), s("0"), Val::Int(3)]), Ok(s("007")));
        assert_eq!(run("right_pad", vec![s("ab"), s("-"), Val::Int(4)]), Ok(s("ab--")));
        assert_eq!(run("replace_all", vec![s("a.b.c"), s("."), s("/")]), Ok(s("a/b/c")));
        assert_eq!(run("split", vec![s("a,b,,c"), s(",")]), Ok(strs(&["a", "b", "", "c"])));
        assert_eq!(run("split", vec![s("hé"), s("")]), Ok(strs(&["h", "é"])));
        assert_eq!(run("substr", vec![s("hello"), Val::Int(1), Val::Int(3)]), Ok(s("el")));
        assert_eq!(run("to_upper", vec![s("aBc")]), Ok(s("ABC")));
        assert_eq!(run("to_lower", vec![s("aBc")]), Ok(s("abc")));
        assert_eq!(run("trim_space", vec![s("  x \n")]), Ok(s("x")));
    }

    #[test]
    fn bad_ranges_and_huge_results_are_errors() {
        assert!(run("substr", vec![s("hello"), Val::Int(3), Val::Int(1)]).is_err());
        assert!(run("substr", vec![s("hello"), Val::Int(-1), Val::Int(1)]).is_err());
        assert!(run("substr", vec![s("é"), Val::Int(0), Val::Int(1)]).is_err());
        assert!(run("left_pad", vec![s(""), s("x"), Val::Int(i64::MAX)]).is_err());
        assert!(run("to_upper", vec![Val::Int(1)]).is_err());
        assert!(run("split", vec![s("a")]).is_err());
    }
}
