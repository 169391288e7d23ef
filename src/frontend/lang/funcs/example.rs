//! mcl's `example` and `util` modules: small functions upstream's examples and docs use.

use super::super::value::{CallError, Val};
use super::args::{arity, fixed, map_at, native};
use super::{Builtin, CallCtx};

pub const FUNCS: &[Builtin] = &[
    fixed("example", "answer", "func() int", answer, "42"),
    fixed("example", "errorbool", "func(bool) str", errorbool, "an error when given true, `set` otherwise"),
    fixed("example", "int2str", "func(int) str", int2str, "the int in decimal"),
    fixed("example", "plus", "func(str, str) str", plus, "the two strings joined by a `+`"),
    fixed(
        "example",
        "str2int",
        "func(str) int",
        str2int,
        "the decimal int in the text, 0 when there is none",
    ),
    fixed("example/nested", "hello", "func() str", hello, "`hello`"),
    fixed(
        "util",
        "hostname_mapper",
        "func(map{str: str}) str",
        hostname_mapper,
        "the value of the host's name in the map, empty when absent",
    ),
];

fn answer(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Int(42))
}

fn hello(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Str("hello".into()))
}

native!(
    fn errorbool(fail: bool) -> str {
        if fail {
            return Err(CallError::new("we errored on request"));
        }
        "set".to_string()
    }
);
native!(
    fn int2str(n: int) -> str {
        n.to_string()
    }
);
native!(
    fn plus(a: str, b: str) -> str {
        format!("{a}+{b}")
    }
);
native!(
    fn str2int(s: str) -> int {
        s.parse().unwrap_or(0)
    }
);

fn hostname_mapper(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    map_at(&args, 0)?;
    Ok(args[0].map_get(&Val::Str(ctx.host.hostname.clone())).cloned().unwrap_or(Val::Str(String::new())))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, s};
    use super::*;

    #[test]
    fn examples() {
        assert_eq!(call(f("example", "answer"), vec![]), Ok(Val::Int(42)));
        assert_eq!(call(f("example", "plus"), vec![s("a"), s("b")]), Ok(s("a+b")));
        assert_eq!(call(f("example", "str2int"), vec![s("x")]), Ok(Val::Int(0)));
        assert!(call(f("example", "errorbool"), vec![Val::Bool(true)]).is_err());
        assert_eq!(call(f("example/nested", "hello"), vec![]), Ok(s("hello")));
        let m = Val::map_of([(s("h1"), s("web")), (s("h2"), s("db"))]);
        assert_eq!(call(f("util", "hostname_mapper"), vec![m]), Ok(s("web")));
    }
}
