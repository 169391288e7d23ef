//! mcl's `regexp` module. Patterns are RE2's syntax, as Go's are (the `regex` crate reads
//! the same syntax and also runs in linear time).

use super::super::value::CallError;
use super::Builtin;
use super::args::{fixed, native};

const M: &str = "regexp";

/// The longest pattern compiled, so a program cannot ask for an unbounded automaton.
const MAX_PATTERN: usize = 64 * 1024;

pub const FUNCS: &[Builtin] =
    &[fixed(M, "match", "func(str, str) bool", is_match, "whether the text contains a match of the pattern")];

native!(
    fn is_match(pattern: str, text: str) -> bool {
        if pattern.len() > MAX_PATTERN {
            return Err(CallError(format!("the pattern is longer than {MAX_PATTERN} bytes")));
        }
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 22)
            .build()
            .map_err(|e| CallError(format!("invalid pattern: {e}")))?;
        re.is_match(text)
    }
);

#[cfg(test)]
mod tests {
    use super::super::super::value::Val;
    use super::super::testing::{call, f, s};
    use super::*;

    #[test]
    fn matches_anywhere_and_refuses_bad_patterns() {
        assert_eq!(call(f(M, "match"), vec![s("^h.*o$"), s("hello")]), Ok(Val::Bool(true)));
        assert_eq!(call(f(M, "match"), vec![s("ell"), s("hello")]), Ok(Val::Bool(true)));
        assert_eq!(call(f(M, "match"), vec![s("^x"), s("hello")]), Ok(Val::Bool(false)));
        assert!(call(f(M, "match"), vec![s("("), s("x")]).is_err());
        assert!(call(f(M, "match"), vec![s("a{1000}{1000}"), s("x")]).is_err());
    }
}
