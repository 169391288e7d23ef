//! mcl's `value` module: the values `value` resources hold on this host (stored under the
//! agent's prefix, see `resources::value`), as they change. `value.get_str("x")` is
//! `struct{value str; ready bool}`: `ready` is false, and `value` the type's zero, until the
//! resource `value[x]` has stored a value. A running program follows the store with inotify;
//! evaluated once (`mgmt graph`), where no agent runs, nothing is ready.

use std::path::PathBuf;

use super::super::value::{CallError, Val};
use super::args::{arity, fixed, str_at};
use super::{Builtin, CallCtx, Changes, HostInfo};
use crate::contract::Value;
use crate::resources::value::{stored, stored_path};

const M: &str = "value";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "get_bool", "func(str) struct{value bool; ready bool}", get_bool, GET_BOOL)
        .changing(Changes::File(store_of)),
    fixed(M, "get_float", "func(str) struct{value float; ready bool}", get_float, GET_FLOAT)
        .changing(Changes::File(store_of)),
    fixed(M, "get_int", "func(str) struct{value int; ready bool}", get_int, GET_INT)
        .changing(Changes::File(store_of)),
    fixed(M, "get_str", "func(str) struct{value str; ready bool}", get_str, GET_STR)
        .changing(Changes::File(store_of)),
];

const GET_BOOL: &str = "the bool the value resource holds, and whether it holds one yet; followed";
const GET_FLOAT: &str = "the float the value resource holds, and whether it holds one yet; followed";
const GET_INT: &str = "the int the value resource holds, and whether it holds one yet; followed";
const GET_STR: &str = "the str the value resource holds, and whether it holds one yet; followed";

/// The file the value resource named by the first argument stores its value in.
fn store_of(host: &HostInfo, args: &[Val]) -> Option<PathBuf> {
    Some(stored_path(host.state_dir.as_ref()?, str_at(args, 0).ok()?))
}

/// The stored value of the resource named by the only argument, as `want` reads it.
fn get(
    ctx: &CallCtx,
    args: Vec<Val>,
    want: fn(&Value) -> Option<Val>,
    (zero, ty): (Val, &str),
) -> Result<Val, CallError> {
    arity(&args, 1)?;
    let name = str_at(&args, 0)?;
    let found = match &ctx.host.state_dir {
        Some(dir) => stored(dir, name).map_err(|e| CallError(e.to_string()))?,
        None => None,
    };
    let (value, ready) = match found {
        None => (zero, false),
        Some(v) => match want(&v) {
            Some(val) => (val, true),
            None => return Err(CallError(format!("value `{name}` holds `{}`, not a {ty}", v.as_text()))),
        },
    };
    Ok(Val::Struct(vec![("value".into(), value), ("ready".into(), Val::Bool(ready))]))
}

fn get_bool(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    get(
        ctx,
        args,
        |v| if let Value::Bool(b) = v { Some(Val::Bool(*b)) } else { None },
        (Val::Bool(false), "bool"),
    )
}

fn get_int(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    get(ctx, args, |v| if let Value::Int(n) = v { Some(Val::Int(*n)) } else { None }, (Val::Int(0), "int"))
}

/// An int is a float too, as the value was written (`any => 3`).
fn get_float(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    let float = |v: &Value| match v {
        Value::Float(f) => Some(Val::Float(*f)),
        Value::Int(n) => Some(Val::Float(*n as f64)),
        _ => None,
    };
    get(ctx, args, float, (Val::Float(0.0), "float"))
}

fn get_str(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    get(
        ctx,
        args,
        |v| if let Value::Str(s) = v { Some(Val::Str(s.clone())) } else { None },
        (Val::Str(String::new()), "str"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lang::funcs::testing::{call, call_on, f, host, s};

    fn with_store(dir: &std::path::Path) -> HostInfo {
        HostInfo { state_dir: Some(dir.to_path_buf()), ..host() }
    }

    #[test]
    fn a_stored_value_is_ready_and_a_missing_one_is_the_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = stored_path(dir.path(), "greeting");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"name": "greeting", "value": "hello"}"#).unwrap();
        let h = with_store(dir.path());
        let field = |v: &Val, n: &str| v.field(n).cloned().unwrap();
        let got = call_with(&h, "get_str", "greeting").unwrap();
        assert_eq!((field(&got, "value"), field(&got, "ready")), (s("hello"), Val::Bool(true)));
        let missing = call_with(&h, "get_int", "nothing").unwrap();
        assert_eq!((field(&missing, "value"), field(&missing, "ready")), (Val::Int(0), Val::Bool(false)));
        let e = call_with(&h, "get_int", "greeting").unwrap_err();
        assert_eq!(e.0, "value `greeting` holds `hello`, not a int");
        // Without an agent, nothing is stored.
        let none = call(f(M, "get_str"), vec![s("greeting")]).unwrap();
        assert_eq!(field(&none, "ready"), Val::Bool(false));
        assert_eq!(store_of(&h, &[s("greeting")]), Some(path));
    }

    fn call_with(h: &HostInfo, name: &str, arg: &str) -> Result<Val, CallError> {
        call_on(f(M, name), h, vec![s(arg)])
    }
}
