//! `golang/path` and `golang/path/filepath` (the same on this platform): Go's lexical path
//! functions, in snake case.

use super::super::value::CallError;
use super::Builtin;
use super::args::{fixed, native};

macro_rules! both {
    ($($name:literal, $sig:literal, $call:ident, $doc:literal;)*) => {
        pub const FUNCS: &[Builtin] = &[
            $(fixed("golang/path", $name, $sig, $call, $doc),)*
            $(fixed("golang/path/filepath", $name, $sig, $call, $doc),)*
            fixed("golang/path/filepath", "abs", "func(str) str", abs, "the path made absolute from the agent's working directory, cleaned"),
            fixed("golang/path/filepath", "is_local", "func(str) bool", is_local, "whether the path is relative and stays below its directory"),
            fixed("golang/path/filepath", "to_slash", "func(str) str", same, "the path with `/` separators (unchanged here)"),
            fixed("golang/path/filepath", "from_slash", "func(str) str", same, "the path with the platform's separators (unchanged here)"),
            fixed("golang/path/filepath", "volume_name", "func(str) str", volume_name, "the path's volume (always empty here)"),
        ];
    };
}

both! {
    "base", "func(str) str", base, "the last element of the path";
    "clean", "func(str) str", clean_fn, "the shortest path naming the same file, lexically";
    "dir", "func(str) str", dir, "all but the last element, cleaned";
    "ext", "func(str) str", ext, "the extension of the last element, with its dot";
    "is_abs", "func(str) bool", is_abs, "whether the path starts with `/`";
    "join", "func([]str) str", join, "the non-empty elements joined with `/`, cleaned";
    "match", "func(str, str) bool", matches, "whether the name matches the shell pattern (`*`, `?`, `[a-z]`)";
}

native!(
    fn abs(p: str) -> str {
        if p.starts_with('/') {
            clean(p)
        } else {
            let dir = std::env::current_dir().map_err(|e| CallError(format!("getwd: {e}")))?;
            clean(&format!("{}/{p}", dir.to_string_lossy()))
        }
    }
);
native!(
    fn is_local(p: str) -> bool {
        let c = clean(p);
        !p.is_empty() && !p.starts_with('/') && c != ".." && !c.starts_with("../")
    }
);
native!(
    fn same(p: str) -> str {
        p.to_string()
    }
);
native!(
    fn volume_name(_p: str) -> str {
        String::new()
    }
);
native!(
    fn base(p: str) -> str {
        let trimmed = p.trim_end_matches('/');
        if p.is_empty() {
            ".".into()
        } else if trimmed.is_empty() {
            "/".into()
        } else {
            trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
        }
    }
);
native!(
    fn clean_fn(p: str) -> str {
        clean(p)
    }
);
native!(
    fn dir(p: str) -> str {
        clean(&p[..p.rfind('/').map_or(0, |i| i + 1)])
    }
);
native!(
    fn ext(p: str) -> str {
        let last = p.rsplit('/').next().unwrap_or(p);
        last.rfind('.').map_or(String::new(), |i| last[i..].to_string())
    }
);
native!(
    fn is_abs(p: str) -> bool {
        p.starts_with('/')
    }
);
native!(
    fn join(parts: strs) -> str {
        let kept: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        if kept.is_empty() { String::new() } else { clean(&kept.join("/")) }
    }
);
native!(
    fn matches(pattern: str, name: str) -> bool {
        glob(pattern.as_bytes(), name.as_bytes(), 0)?
    }
);

/// Go's `path.Clean`.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            other => parts.push(other),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Shell pattern matching, as Go's `path.Match` (no `/` matched by a wildcard).
fn glob(pattern: &[u8], name: &[u8], depth: usize) -> Result<bool, CallError> {
    if depth > 64 {
        return Err(CallError::new("the pattern has too many wildcards"));
    }
    match pattern.first() {
        None => Ok(name.is_empty()),
        Some(b'*') => {
            let rest = &pattern[1..];
            for i in 0..=name.len() {
                if glob(rest, &name[i..], depth + 1)? {
                    return Ok(true);
                }
                if name.get(i) == Some(&b'/') {
                    break;
                }
            }
            Ok(false)
        }
        Some(b'?') => Ok(name.first().is_some_and(|c| *c != b'/') && glob(&pattern[1..], &name[1..], depth)?),
        Some(b'[') => {
            let close = pattern
                .iter()
                .skip(2)
                .position(|c| *c == b']')
                .map(|i| i + 2)
                .ok_or_else(|| CallError::new("syntax error in pattern"))?;
            let Some(&c) = name.first() else { return Ok(false) };
            let class = &pattern[1..close];
            let (negate, class) = match class.first() {
                Some(b'^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            Ok(hit != negate && c != b'/' && glob(&pattern[close + 1..], &name[1..], depth)?)
        }
        Some(b'\\') => {
            let literal = pattern.get(1).ok_or_else(|| CallError::new("syntax error in pattern"))?;
            Ok(name.first() == Some(literal) && glob(&pattern[2..], &name[1..], depth)?)
        }
        Some(c) => Ok(name.first() == Some(c) && glob(&pattern[1..], &name[1..], depth)?),
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::value::Val;
    use super::super::testing::{call, f, s, strs};
    use super::*;

    fn run(name: &str, args: Vec<Val>) -> Result<Val, CallError> {
        call(f("golang/path/filepath", name), args)
    }

    #[test]
    fn lexical_paths_as_go() {
        for (input, want) in
            [("", "."), ("a//b/./c/..", "a/b"), ("/../x", "/x"), ("../../a", "../../a"), ("/", "/")]
        {
            assert_eq!(clean(input), want, "{input}");
        }
        assert_eq!(run("base", vec![s("/a/b.txt/")]), Ok(s("b.txt")));
        assert_eq!(run("base", vec![s("///")]), Ok(s("/")));
        assert_eq!(run("dir", vec![s("/a/b/c")]), Ok(s("/a/b")));
        assert_eq!(run("dir", vec![s("c")]), Ok(s(".")));
        assert_eq!(run("ext", vec![s("a/b.tar.gz")]), Ok(s(".gz")));
        assert_eq!(run("join", vec![strs(&["a", "", "../b", "c"])]), Ok(s("b/c")));
        assert_eq!(run("match", vec![s("*.txt"), s("a.txt")]), Ok(Val::Bool(true)));
        assert_eq!(run("match", vec![s("*.txt"), s("d/a.txt")]), Ok(Val::Bool(false)));
        assert_eq!(run("match", vec![s("[a-c]?"), s("bz")]), Ok(Val::Bool(true)));
        assert!(run("match", vec![s("[a"), s("a")]).is_err());
        assert!(call(f("golang/path", "is_abs"), vec![s("/x")]).is_ok());
        assert_eq!(run("is_local", vec![s("a/../b")]), Ok(Val::Bool(true)));
        assert_eq!(run("is_local", vec![s("a/../../b")]), Ok(Val::Bool(false)));
        assert_eq!(run("abs", vec![s("/a/./b/")]), Ok(s("/a/b")));
    }
}
