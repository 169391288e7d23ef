//! What every function of the core library shares: reading its arguments (a value of the
//! wrong shape is a `CallError`, never a panic), building its registry entry, and the
//! bounds on what a call may allocate.

use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::{Builtin, CallCtx, Infer};

/// The most elements a function builds into one list (`iter.range`, `strings.split`...).
pub const MAX_ITEMS: usize = 1 << 20;
/// The longest text a function builds (`strings.left_pad`, `golang/strings.repeat`...).
pub const MAX_TEXT: usize = 16 << 20;
/// The largest file `os.readfile` and `deploy.readfile` read.
pub const MAX_FILE: u64 = 16 << 20;

pub type CallFn = fn(&CallCtx, Vec<Val>) -> Result<Val, CallError>;

/// A function with a fixed signature.
pub const fn fixed(
    module: &'static str,
    name: &'static str,
    sig: &'static str,
    call: CallFn,
    doc: &'static str,
) -> Builtin {
    Builtin { module, name, sig, infer: None, call, doc, changes: None }
}

/// A function whose type is decided at each call by `infer`.
pub const fn poly(
    module: &'static str,
    name: &'static str,
    sig: &'static str,
    infer: Infer,
    call: CallFn,
    doc: &'static str,
) -> Builtin {
    Builtin { module, name, sig, infer: Some(infer), call, doc, changes: None }
}

/// Fails unless exactly `n` arguments were given.
pub fn arity(args: &[Val], n: usize) -> Result<(), CallError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(CallError(format!("expected {n} argument{}, got {}", if n == 1 { "" } else { "s" }, args.len())))
    }
}

fn wrong(args: &[Val], i: usize, want: &str) -> CallError {
    match args.get(i) {
        Some(v) => CallError(format!("argument {} must be {want}, not {}", i + 1, v.type_of())),
        None => CallError(format!("argument {} ({want}) is missing", i + 1)),
    }
}

pub fn str_at(args: &[Val], i: usize) -> Result<&str, CallError> {
    match args.get(i) {
        Some(Val::Str(s)) => Ok(s),
        _ => Err(wrong(args, i, "a str")),
    }
}

pub fn int_at(args: &[Val], i: usize) -> Result<i64, CallError> {
    match args.get(i) {
        Some(Val::Int(n)) => Ok(*n),
        _ => Err(wrong(args, i, "an int")),
    }
}

pub fn float_at(args: &[Val], i: usize) -> Result<f64, CallError> {
    match args.get(i) {
        Some(Val::Float(x)) => Ok(*x),
        _ => Err(wrong(args, i, "a float")),
    }
}

pub fn bool_at(args: &[Val], i: usize) -> Result<bool, CallError> {
    match args.get(i) {
        Some(Val::Bool(b)) => Ok(*b),
        _ => Err(wrong(args, i, "a bool")),
    }
}

pub fn list_at(args: &[Val], i: usize) -> Result<&[Val], CallError> {
    match args.get(i) {
        Some(Val::List(items)) => Ok(items),
        _ => Err(wrong(args, i, "a list")),
    }
}

pub fn map_at(args: &[Val], i: usize) -> Result<&[(Val, Val)], CallError> {
    match args.get(i) {
        Some(Val::Map(pairs)) => Ok(pairs),
        _ => Err(wrong(args, i, "a map")),
    }
}

/// A list of strings, as `[]str`.
pub fn strs_at(args: &[Val], i: usize) -> Result<Vec<&str>, CallError> {
    list_at(args, i)?
        .iter()
        .map(|v| match v {
            Val::Str(s) => Ok(s.as_str()),
            other => {
                Err(CallError(format!("argument {} must be a list of str, found {}", i + 1, other.type_of())))
            }
        })
        .collect()
}

pub fn str_list(items: impl IntoIterator<Item = impl Into<String>>) -> Val {
    Val::List(items.into_iter().map(|s| Val::Str(s.into())).collect())
}

/// Fails when a result would hold more than [`MAX_ITEMS`] elements.
pub fn check_items(count: usize) -> Result<(), CallError> {
    if count > MAX_ITEMS {
        Err(CallError(format!("the result would have {count} elements, more than the limit of {MAX_ITEMS}")))
    } else {
        Ok(())
    }
}

/// Fails when a text result would be longer than [`MAX_TEXT`] bytes.
pub fn check_text(len: u128) -> Result<(), CallError> {
    if len > MAX_TEXT as u128 {
        Err(CallError(format!("the result would be {len} bytes long, more than the limit of {MAX_TEXT}")))
    } else {
        Ok(())
    }
}

/// Calls a function value given as argument `i`.
pub fn call_func(args: &[Val], i: usize, with: Vec<Val>) -> Result<Val, CallError> {
    match args.get(i) {
        Some(Val::Func(f)) => f.call(with),
        _ => Err(wrong(args, i, "a function")),
    }
}

/// For an `infer`: the first of `types` that is not a bare type variable.
pub fn first_known(types: &[Type]) -> Option<&Type> {
    types.iter().find(|t| !matches!(t, Type::Var(_)))
}

/// For an `infer`: fails unless the call has `n` arguments.
pub fn infer_arity(args: &[Type], n: usize, name: &str) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("{name} takes {n} argument{}, not {}", if n == 1 { "" } else { "s" }, args.len()))
    }
}

/// Defines a library function from a body over typed arguments:
/// `native!(fn name(a: str, n: int) -> str { ... })`. The argument kinds are `str`, `int`,
/// `float`, `bool` and `strs` (`[]str`); the result kinds `str` (a `String`), `int`, `float`,
/// `bool` and `val` (a `Val`). The body may use `?` with `CallError`.
macro_rules! native {
    ($vis:vis fn $name:ident($($arg:ident: $kind:ident),*) -> $ret:ident $body:block) => {
        $vis fn $name(
            _: &$crate::frontend::lang::funcs::CallCtx,
            args: Vec<$crate::frontend::lang::value::Val>,
        ) -> Result<$crate::frontend::lang::value::Val, $crate::frontend::lang::value::CallError> {
            let names: &[&str] = &[$(stringify!($arg)),*];
            $crate::frontend::lang::funcs::args::arity(&args, names.len())?;
            let mut _index = 0;
            $(
                let $arg = native!(@get $kind, &args, _index)?;
                _index += 1;
            )*
            let out = $body;
            native!(@wrap $ret, out)
        }
    };
    (@get str, $args:expr, $i:expr) => { $crate::frontend::lang::funcs::args::str_at($args, $i) };
    (@get int, $args:expr, $i:expr) => { $crate::frontend::lang::funcs::args::int_at($args, $i) };
    (@get float, $args:expr, $i:expr) => { $crate::frontend::lang::funcs::args::float_at($args, $i) };
    (@get bool, $args:expr, $i:expr) => { $crate::frontend::lang::funcs::args::bool_at($args, $i) };
    (@get strs, $args:expr, $i:expr) => { $crate::frontend::lang::funcs::args::strs_at($args, $i) };
    (@wrap str, $out:expr) => { Ok($crate::frontend::lang::value::Val::Str($out)) };
    (@wrap int, $out:expr) => { Ok($crate::frontend::lang::value::Val::Int($out)) };
    (@wrap float, $out:expr) => { Ok($crate::frontend::lang::value::Val::Float($out)) };
    (@wrap bool, $out:expr) => { Ok($crate::frontend::lang::value::Val::Bool($out)) };
    (@wrap val, $out:expr) => { Ok($out) };
}
pub(crate) use native;

/// A byte index or count as an mcl int.
pub fn int_of(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Go's `strings.Split`: an empty separator splits into characters, bounded by [`MAX_ITEMS`].
pub fn go_split(s: &str, sep: &str) -> Result<Val, CallError> {
    let parts: Vec<&str> = if sep.is_empty() {
        s.char_indices().map(|(i, c)| &s[i..i + c.len_utf8()]).collect()
    } else {
        s.split(sep).collect()
    };
    check_items(parts.len())?;
    Ok(str_list(parts))
}
