//! `golang/strconv`: Go's `strconv` functions over mcl scalars, in snake case. A function
//! Go gives an error is an error here too.

use super::super::value::CallError;
use super::Builtin;
use super::args::{fixed, native};
use super::convert::go_parse_bool;
use super::fmt::go_quote;

const M: &str = "golang/strconv";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "atoi", "func(str) int", atoi, "the decimal int in the text"),
    fixed(
        M,
        "can_backquote",
        "func(str) bool",
        can_backquote,
        "whether the text can be a raw string without change",
    ),
    fixed(M, "format_bool", "func(bool) str", format_bool, "`true` or `false`"),
    fixed(M, "format_int", "func(int, int) str", format_int, "the int in the base (2 to 36), in lower case"),
    fixed(M, "itoa", "func(int) str", itoa, "the int in decimal"),
    fixed(
        M,
        "parse_bool",
        "func(str) bool",
        parse_bool,
        "the bool written as 1, t, T, TRUE, true, True or their false forms",
    ),
    fixed(M, "parse_float", "func(str, int) float", parse_float, "the float in the text (bit size 32 or 64)"),
    fixed(
        M,
        "parse_int",
        "func(str, int, int) int",
        parse_int,
        "the int in the text in the base (0 reads a 0x, 0o or 0b prefix) that fits the bit size",
    ),
    fixed(M, "quote", "func(str) str", quote, "the text as a double-quoted Go string"),
    fixed(
        M,
        "quote_to_ascii",
        "func(str) str",
        quote_to_ascii,
        "the text quoted, with non-ASCII characters escaped",
    ),
    fixed(M, "quote_to_graphic", "func(str) str", quote, "the text quoted, printable characters kept"),
    fixed(
        M,
        "quoted_prefix",
        "func(str) str",
        quoted_prefix,
        "the quoted Go string at the start of the text",
    ),
    fixed(M, "unquote", "func(str) str", unquote, "the text of a quoted Go string"),
];

native!(
    fn quoted_prefix(s: str) -> str {
        quoted_prefix_of(s)?.to_string()
    }
);

/// The quoted string (`"..."` or `` `...` ``) the text starts with, as written.
fn quoted_prefix_of(s: &str) -> Result<&str, CallError> {
    let bad = || CallError(format!("{s:?} does not start with a quoted string"));
    let quote = s.chars().next().filter(|c| *c == '"' || *c == '`').ok_or_else(bad)?;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quote == '"' => escaped = true,
            c if c == quote => {
                let prefix = &s[..i + 1];
                return go_unquote(prefix).map(|_| prefix);
            }
            _ => {}
        }
    }
    Err(bad())
}

native!(
    fn atoi(s: str) -> int {
        parse_in(s, 10, 64)?
    }
);
native!(
    fn can_backquote(s: str) -> bool {
        !s.chars().any(|c| c == '`' || c == '\u{FEFF}' || (c.is_control() && c != '\t'))
    }
);
native!(
    fn format_bool(b: bool) -> str {
        b.to_string()
    }
);
native!(
    fn format_int(n: int, base: int) -> str {
        radix(n, base)?
    }
);
native!(
    fn itoa(n: int) -> str {
        n.to_string()
    }
);
native!(
    fn parse_bool(s: str) -> bool {
        go_parse_bool(s)?
    }
);
native!(
    fn parse_float(s: str, bits: int) -> float {
        let x: f64 =
            s.replace('_', "").parse().map_err(|_| CallError(format!("parsing {s:?}: invalid syntax")))?;
        if bits == 32 { f64::from(x as f32) } else { x }
    }
);
native!(
    fn parse_int(s: str, base: int, bits: int) -> int {
        parse_in(s, base, bits)?
    }
);
native!(
    fn quote(s: str) -> str {
        go_quote(s)
    }
);
native!(
    fn quote_to_ascii(s: str) -> str {
        go_quote(s)
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else if (c as u32) <= 0xffff {
                    format!("\\u{:04x}", c as u32)
                } else {
                    format!("\\U{:08x}", c as u32)
                }
            })
            .collect()
    }
);
native!(
    fn unquote(s: str) -> str {
        go_unquote(s)?
    }
);

fn radix(n: i64, base: i64) -> Result<String, CallError> {
    if !(2..=36).contains(&base) {
        return Err(CallError(format!("illegal base {base}")));
    }
    let mut abs = n.unsigned_abs();
    let mut digits = Vec::new();
    loop {
        digits.push(std::char::from_digit((abs % base as u64) as u32, base as u32).unwrap_or('?'));
        abs /= base as u64;
        if abs == 0 {
            break;
        }
    }
    if n < 0 {
        digits.push('-');
    }
    Ok(digits.into_iter().rev().collect())
}

/// Go's `strconv.ParseInt`.
fn parse_in(s: &str, base: i64, bits: i64) -> Result<i64, CallError> {
    let bad = || CallError(format!("parsing {s:?}: invalid syntax"));
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (base, digits) = match base {
        0 => match body.get(..2).map(str::to_ascii_lowercase).as_deref() {
            Some("0x") => (16, body[2..].replace('_', "")),
            Some("0o") => (8, body[2..].replace('_', "")),
            Some("0b") => (2, body[2..].replace('_', "")),
            _ if body.len() > 1 && body.starts_with('0') => (8, body[1..].replace('_', "")),
            _ => (10, body.replace('_', "")),
        },
        2..=36 => (base as u32, body.to_string()),
        _ => return Err(CallError(format!("invalid base {base}"))),
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(bad());
    }
    let magnitude = u128::from_str_radix(&digits, base).map_err(|_| bad())?;
    let bits = if (1..=64).contains(&bits) {
        bits as u32
    } else if bits == 0 {
        64
    } else {
        return Err(CallError(format!("invalid bit size {bits}")));
    };
    let limit = 1u128 << (bits - 1);
    if (negative && magnitude > limit) || (!negative && magnitude >= limit) {
        return Err(CallError(format!("parsing {s:?}: value out of range")));
    }
    let value = magnitude as i128;
    Ok((if negative { -value } else { value }) as i64)
}

/// Go's `strconv.Unquote` for "..." and `...` strings.
fn go_unquote(s: &str) -> Result<String, CallError> {
    let bad = || CallError(format!("cannot unquote {s:?}: invalid syntax"));
    if let Some(raw) = s.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return if raw.contains('`') { Err(bad()) } else { Ok(raw.replace('\r', "")) };
    }
    let inner = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')).ok_or_else(bad)?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return Err(bad()),
            '\\' => {
                let e = chars.next().ok_or_else(bad)?;
                out.push(match e {
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    '\\' | '"' | '\'' => e,
                    'x' | 'u' | 'U' => {
                        let len = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars.by_ref().take(len).collect();
                        let code = u32::from_str_radix(&hex, 16).map_err(|_| bad())?;
                        if hex.len() != len {
                            return Err(bad());
                        }
                        char::from_u32(code).ok_or_else(bad)?
                    }
                    _ => return Err(bad()),
                });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::super::value::Val;
    use super::super::testing::{call, f, s};
    use super::*;

    fn run(name: &str, args: Vec<Val>) -> Result<Val, CallError> {
        call(f(M, name), args)
    }

    #[test]
    fn numbers_both_ways() {
        assert_eq!(run("format_int", vec![Val::Int(-255), Val::Int(16)]), Ok(s("-ff")));
        assert_eq!(
            run("format_int", vec![Val::Int(i64::MIN), Val::Int(2)]).map(|v| v.to_string().len()),
            Ok(67)
        );
        assert!(run("format_int", vec![Val::Int(1), Val::Int(1)]).is_err());
        assert_eq!(run("parse_int", vec![s("0x_1F"), Val::Int(0), Val::Int(64)]), Ok(Val::Int(31)));
        assert_eq!(run("parse_int", vec![s("-128"), Val::Int(10), Val::Int(8)]), Ok(Val::Int(-128)));
        assert!(run("parse_int", vec![s("128"), Val::Int(10), Val::Int(8)]).is_err());
        assert_eq!(
            run("parse_int", vec![s("-9223372036854775808"), Val::Int(10), Val::Int(64)]),
            Ok(Val::Int(i64::MIN))
        );
        assert!(run("parse_int", vec![s("9223372036854775808"), Val::Int(10), Val::Int(64)]).is_err());
        assert!(run("parse_int", vec![s("--1"), Val::Int(10), Val::Int(64)]).is_err());
        assert_eq!(run("atoi", vec![s("42")]), Ok(Val::Int(42)));
        assert_eq!(run("parse_float", vec![s("1e3"), Val::Int(64)]), Ok(Val::Float(1000.0)));
    }

    #[test]
    fn quoting_both_ways() {
        assert_eq!(run("quote", vec![s("a\"\n")]), Ok(s("\"a\\\"\\n\"")));
        assert_eq!(run("quote_to_ascii", vec![s("é")]), Ok(s("\"\\u00e9\"")));
        assert_eq!(run("unquote", vec![s("\"a\\tb\\u00e9\"")]), Ok(s("a\tbé")));
        assert_eq!(run("unquote", vec![s("`raw\\n`")]), Ok(s("raw\\n")));
        assert!(run("unquote", vec![s("\"open")]).is_err());
        assert!(run("unquote", vec![s("\"\\x4\"")]).is_err());
        assert_eq!(run("can_backquote", vec![s("a`b")]), Ok(Val::Bool(false)));
        assert_eq!(run("quoted_prefix", vec![s("\"a\\\"b\" rest")]), Ok(s("\"a\\\"b\"")));
        assert!(run("quoted_prefix", vec![s("x\"a\"")]).is_err());
        assert!(run("quoted_prefix", vec![s("\"open")]).is_err());
    }
}
