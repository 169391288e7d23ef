//! `golang/strings`: Go's `strings` functions whose arguments and result are mcl scalars,
//! named in snake case as upstream generates them (`TrimSpace` is `trim_space`). Indexes and
//! lengths are in bytes, as Go's are.

use super::super::value::CallError;
use super::Builtin;
use super::args::{check_text, fixed, int_of, native};
// The functions both modules have are written once, in `strings`.
use super::strings::{
    contains, has_prefix, has_suffix, replace, replace_all, to_lower, to_upper, trim_space,
};

const M: &str = "golang/strings";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "clone", "func(str) str", clone, "a copy of s"),
    fixed(M, "compare", "func(str, str) int", compare, "-1, 0 or 1 as a sorts before, with or after b"),
    fixed(M, "contains", "func(str, str) bool", contains, "whether substr is within s"),
    fixed(
        M,
        "contains_any",
        "func(str, str) bool",
        contains_any,
        "whether any character of chars is within s",
    ),
    fixed(M, "count", "func(str, str) int", count, "the non-overlapping instances of substr in s"),
    fixed(M, "equal_fold", "func(str, str) bool", equal_fold, "whether s and t are equal ignoring case"),
    fixed(M, "has_prefix", "func(str, str) bool", has_prefix, "whether s begins with prefix"),
    fixed(M, "has_suffix", "func(str, str) bool", has_suffix, "whether s ends with suffix"),
    fixed(M, "index", "func(str, str) int", index, "the byte index of the first substr in s, or -1"),
    fixed(
        M,
        "index_any",
        "func(str, str) int",
        index_any,
        "the byte index of the first character of chars in s, or -1",
    ),
    fixed(M, "join", "func([]str, str) str", join, "the elements joined by sep"),
    fixed(M, "last_index", "func(str, str) int", last_index, "the byte index of the last substr in s, or -1"),
    fixed(
        M,
        "last_index_any",
        "func(str, str) int",
        last_index_any,
        "the byte index of the last character of chars in s, or -1",
    ),
    fixed(M, "repeat", "func(str, int) str", repeat, "count copies of s"),
    fixed(
        M,
        "replace",
        "func(str, str, str, int) str",
        replace_n,
        "s with the first n old replaced by new (all when n < 0)",
    ),
    fixed(M, "replace_all", "func(str, str, str) str", replace_all, "s with every old replaced by new"),
    fixed(M, "title", "func(str) str", title, "s with the first letter of each word in upper case"),
    fixed(M, "to_lower", "func(str) str", to_lower, "s in lower case"),
    fixed(M, "to_title", "func(str) str", to_title, "s in title case"),
    fixed(M, "to_upper", "func(str) str", to_upper, "s in upper case"),
    fixed(
        M,
        "to_valid_utf_8",
        "func(str, str) str",
        to_valid_utf8,
        "s with invalid UTF-8 replaced (mcl text is always valid)",
    ),
    fixed(M, "trim", "func(str, str) str", trim, "s without the leading and trailing characters in cutset"),
    fixed(M, "trim_left", "func(str, str) str", trim_left, "s without the leading characters in cutset"),
    fixed(M, "trim_prefix", "func(str, str) str", trim_prefix, "s without prefix, when it starts with it"),
    fixed(M, "trim_right", "func(str, str) str", trim_right, "s without the trailing characters in cutset"),
    fixed(M, "trim_space", "func(str) str", trim_space, "s without leading and trailing white space"),
    fixed(M, "trim_suffix", "func(str, str) str", trim_suffix, "s without suffix, when it ends with it"),
];

fn found(i: Option<usize>) -> i64 {
    i.map_or(-1, int_of)
}

native!(
    fn clone(s: str) -> str {
        s.to_string()
    }
);
native!(
    fn compare(a: str, b: str) -> int {
        a.cmp(b) as i64
    }
);
native!(
    fn contains_any(s: str, chars: str) -> bool {
        s.contains(|c| chars.contains(c))
    }
);
native!(
    fn count(s: str, substr: str) -> int {
        if substr.is_empty() { int_of(s.chars().count() + 1) } else { int_of(s.matches(substr).count()) }
    }
);
native!(
    fn equal_fold(s: str, t: str) -> bool {
        fold(s) == fold(t)
    }
);
native!(
    fn index(s: str, substr: str) -> int {
        found(s.find(substr))
    }
);
native!(
    fn index_any(s: str, chars: str) -> int {
        found(s.find(|c| chars.contains(c)))
    }
);
native!(
    fn join(elems: strs, sep: str) -> str {
        check_text(elems.iter().map(|e| e.len() as u128 + sep.len() as u128).sum())?;
        elems.join(sep)
    }
);
native!(
    fn last_index(s: str, substr: str) -> int {
        found(s.rfind(substr))
    }
);
native!(
    fn last_index_any(s: str, chars: str) -> int {
        found(s.rfind(|c| chars.contains(c)))
    }
);
native!(
    fn repeat(s: str, count: int) -> str {
        if count < 0 {
            return Err(CallError(format!("negative repeat count {count}")));
        }
        check_text(s.len() as u128 * count as u128)?;
        s.repeat(count as usize)
    }
);
native!(
    fn replace_n(s: str, old: str, new: str, n: int) -> str {
        if n < 0 { replace(s, old, new)? } else { replace_first(s, old, new, n)? }
    }
);
native!(
    fn title(s: str) -> str {
        title_case(s)
    }
);
native!(
    fn to_title(s: str) -> str {
        s.to_uppercase()
    }
);
native!(
    fn to_valid_utf8(s: str, _replacement: str) -> str {
        s.to_string()
    }
);
native!(
    fn trim(s: str, cutset: str) -> str {
        s.trim_matches(|c| cutset.contains(c)).to_string()
    }
);
native!(
    fn trim_left(s: str, cutset: str) -> str {
        s.trim_start_matches(|c| cutset.contains(c)).to_string()
    }
);
native!(
    fn trim_prefix(s: str, prefix: str) -> str {
        s.strip_prefix(prefix).unwrap_or(s).to_string()
    }
);
native!(
    fn trim_right(s: str, cutset: str) -> str {
        s.trim_end_matches(|c| cutset.contains(c)).to_string()
    }
);
native!(
    fn trim_suffix(s: str, suffix: str) -> str {
        s.strip_suffix(suffix).unwrap_or(s).to_string()
    }
);

fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn replace_first(s: &str, old: &str, new: &str, n: i64) -> Result<String, CallError> {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    check_text(s.len() as u128 + n.min(s.len() + 1) as u128 * new.len() as u128)?;
    if old.is_empty() {
        let mut out = String::new();
        let mut done = 0;
        for c in s.chars() {
            if done < n {
                out.push_str(new);
                done += 1;
            }
            out.push(c);
        }
        if done < n {
            out.push_str(new);
        }
        return Ok(out);
    }
    Ok(s.replacen(old, new, n))
}

/// Go's `strings.Title`: a letter after a separator (white space, ASCII punctuation) is
/// upper-cased.
pub fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after_separator = true;
    for c in s.chars() {
        if after_separator {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        after_separator =
            if c.is_ascii() { !(c.is_ascii_alphanumeric() || c == '_') } else { c.is_whitespace() };
    }
    out
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
    fn searching_counts_bytes_and_misses_are_minus_one() {
        assert_eq!(run("index", vec![s("héllo"), s("l")]), Ok(Val::Int(3)));
        assert_eq!(run("index", vec![s("abc"), s("z")]), Ok(Val::Int(-1)));
        assert_eq!(run("last_index", vec![s("go gopher"), s("go")]), Ok(Val::Int(3)));
        assert_eq!(run("index_any", vec![s("golang"), s("ny")]), Ok(Val::Int(4)));
        assert_eq!(run("last_index_any", vec![s("golang"), s("go")]), Ok(Val::Int(5)));
        assert_eq!(run("count", vec![s("cheese"), s("e")]), Ok(Val::Int(3)));
        assert_eq!(run("count", vec![s("five"), s("")]), Ok(Val::Int(5)));
        assert_eq!(run("compare", vec![s("a"), s("b")]), Ok(Val::Int(-1)));
        assert_eq!(run("equal_fold", vec![s("Go"), s("GO")]), Ok(Val::Bool(true)));
        assert_eq!(run("contains_any", vec![s("failure"), s("ui")]), Ok(Val::Bool(true)));
    }

    #[test]
    fn building_and_trimming() {
        assert_eq!(run("join", vec![strs(&["a", "b"]), s(", ")]), Ok(s("a, b")));
        assert_eq!(run("repeat", vec![s("na"), Val::Int(2)]), Ok(s("nana")));
        assert!(run("repeat", vec![s("na"), Val::Int(-1)]).is_err());
        assert!(run("repeat", vec![s("na"), Val::Int(1 << 40)]).is_err());
        assert_eq!(
            run("replace", vec![s("oink oink oink"), s("k"), s("ky"), Val::Int(2)]),
            Ok(s("oinky oinky oink"))
        );
        assert_eq!(run("replace", vec![s("ab"), s(""), s("-"), Val::Int(-1)]), Ok(s("-a-b-")));
        assert_eq!(run("replace", vec![s("ab"), s(""), s("-"), Val::Int(2)]), Ok(s("-a-b")));
        assert_eq!(run("title", vec![s("her royal-highness")]), Ok(s("Her Royal-Highness")));
        assert_eq!(run("trim", vec![s("¡¡Hello!!"), s("!¡")]), Ok(s("Hello")));
        assert_eq!(run("trim_left", vec![s("xxhix"), s("x")]), Ok(s("hix")));
        assert_eq!(run("trim_right", vec![s("xxhix"), s("x")]), Ok(s("xxhi")));
        assert_eq!(run("trim_prefix", vec![s("prefix-x"), s("prefix-")]), Ok(s("x")));
        assert_eq!(run("trim_suffix", vec![s("a.go"), s(".rs")]), Ok(s("a.go")));
        assert_eq!(run("trim_space", vec![s(" \t x\n")]), Ok(s("x")));
        assert_eq!(run("to_upper", vec![s("é")]), Ok(s("É")));
    }
}
