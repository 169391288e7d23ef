//! The functions every program has without an import.

use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::args::{arity, bool_at, fixed, infer_arity, int_at, list_at, map_at, poly, str_at};
use super::{Builtin, CallCtx, CallSite};

pub const FUNCS: &[Builtin] = &[
    poly("", "len", "func(?1) int", infer_len, len, "the length of a str (in bytes), list or map"),
    super::operators::CONTAINS,
    fixed("", "concat", "func(str, str) str", concat, "the two strings, one after the other"),
    fixed(
        "",
        "list_lookup",
        "func([]?1, int) ?1",
        list_lookup,
        "the list's element at index; an error when absent",
    ),
    fixed(
        "",
        "map_lookup",
        "func(map{?1: ?2}, ?1) ?2",
        map_lookup,
        "the map's value for key; an error when absent",
    ),
    poly(
        "",
        "panic",
        "func(?1) bool",
        infer_panic,
        panic,
        "fails the program when x is true or a non-empty str; false otherwise",
    ),
    fixed("", "panic_debug", "func(bool, str) bool", panic, "fails the program with err when x is true"),
];

fn infer_len(site: &CallSite) -> Result<Option<Type>, String> {
    infer_arity(site.args, 1, "len")?;
    match &site.args[0] {
        Type::Var(_) => Ok(None),
        t @ (Type::Str | Type::List(_) | Type::Map(..)) => Ok(Some(Type::func(vec![t.clone()], Type::Int))),
        other => Err(format!("len takes a str, a list or a map, not {other}")),
    }
}

fn len(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    let n = match &args[0] {
        Val::Str(s) => s.len(),
        Val::List(items) => items.len(),
        Val::Map(pairs) => pairs.len(),
        other => return Err(CallError(format!("len takes a str, a list or a map, not {}", other.type_of()))),
    };
    Ok(Val::Int(n as i64))
}

fn concat(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    Ok(Val::Str(format!("{}{}", str_at(&args, 0)?, str_at(&args, 1)?)))
}

/// The element at `index`, or an error naming what was there.
pub fn list_index(list: &[Val], index: i64) -> Result<Val, CallError> {
    if index < 0 {
        return Err(CallError(format!("list index negative, got: {index}")));
    }
    usize::try_from(index)
        .ok()
        .and_then(|i| list.get(i))
        .cloned()
        .ok_or_else(|| CallError(format!("list index not present, got: {index}, len is: {}", list.len())))
}

fn list_lookup(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    list_index(list_at(&args, 0)?, int_at(&args, 1)?)
}

fn map_lookup(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    map_at(&args, 0)?;
    args[0].map_get(&args[1]).cloned().ok_or_else(|| CallError(format!("map key not present: {}", args[1])))
}

fn infer_panic(site: &CallSite) -> Result<Option<Type>, String> {
    infer_arity(site.args, 1, "panic")?;
    match &site.args[0] {
        Type::Var(_) => Ok(None),
        t @ (Type::Bool | Type::Str) => Ok(Some(Type::func(vec![t.clone()], Type::Bool))),
        other => Err(format!("panic takes a bool or a str, not {other}")),
    }
}

fn panic(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    match args.first() {
        Some(Val::Bool(true)) if args.len() == 2 => Err(CallError(format!("panic: {}", str_at(&args, 1)?))),
        Some(Val::Bool(true)) => Err(CallError::new("panic")),
        Some(Val::Str(s)) if !s.is_empty() => Err(CallError(format!("panic: {s}"))),
        Some(Val::Str(_)) => Ok(Val::Bool(false)),
        _ => bool_at(&args, 0).map(|_| Val::Bool(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, infer, ints, s, strs, ty};
    use super::*;

    #[test]
    fn len_counts_bytes_elements_and_pairs() {
        assert_eq!(call(f("", "len"), vec![s("héllo")]), Ok(Val::Int(6)));
        assert_eq!(call(f("", "len"), vec![ints(&[1, 2, 3])]), Ok(Val::Int(3)));
        assert_eq!(call(f("", "len"), vec![Val::map_of([(s("a"), Val::Int(1))])]), Ok(Val::Int(1)));
        assert!(call(f("", "len"), vec![Val::Int(1)]).is_err());
        assert!(call(f("", "len"), vec![]).is_err());
    }

    #[test]
    fn len_infers_from_its_argument() {
        let v = Type::Var(3);
        assert_eq!(infer(f("", "len"), &[ty("[]str")], &v), Ok(Some(ty("func([]str) int"))));
        assert_eq!(infer(f("", "len"), std::slice::from_ref(&v), &v), Ok(None));
        assert!(infer(f("", "len"), &[Type::Int], &v).unwrap_err().contains("not int"));
        assert!(infer(f("", "panic"), &[Type::Float], &v).is_err());
        assert_eq!(infer(f("", "panic"), &[Type::Str], &v), Ok(Some(ty("func(str) bool"))));
    }

    #[test]
    fn contains_concat_and_lookups() {
        assert_eq!(call(f("", "contains"), vec![s("b"), strs(&["a", "b"])]), Ok(Val::Bool(true)));
        assert_eq!(call(f("", "contains"), vec![s("c"), strs(&["a", "b"])]), Ok(Val::Bool(false)));
        assert_eq!(call(f("", "concat"), vec![s("a"), s("b")]), Ok(s("ab")));
        assert_eq!(call(f("", "list_lookup"), vec![ints(&[5, 6]), Val::Int(1)]), Ok(Val::Int(6)));
        assert!(call(f("", "list_lookup"), vec![ints(&[5, 6]), Val::Int(2)]).is_err());
        assert!(call(f("", "list_lookup"), vec![ints(&[5, 6]), Val::Int(-1)]).is_err());
        let m = Val::map_of([(s("k"), Val::Int(1))]);
        assert_eq!(call(f("", "map_lookup"), vec![m.clone(), s("k")]), Ok(Val::Int(1)));
        assert!(call(f("", "map_lookup"), vec![m, s("x")]).is_err());
    }

    #[test]
    fn panic_fails_only_on_true_or_text() {
        assert_eq!(call(f("", "panic"), vec![Val::Bool(false)]), Ok(Val::Bool(false)));
        assert_eq!(call(f("", "panic"), vec![s("")]), Ok(Val::Bool(false)));
        assert!(call(f("", "panic"), vec![s("boom")]).unwrap_err().0.contains("boom"));
        assert!(call(f("", "panic_debug"), vec![Val::Bool(true), s("why")]).unwrap_err().0.contains("why"));
        assert!(call(f("", "panic"), vec![Val::Int(1)]).is_err());
    }
}
