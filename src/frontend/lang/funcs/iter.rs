//! mcl's `iter` module: functions over lists that call function values.

use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::args::{arity, call_func, check_items, fixed, int_at, list_at, poly};
use super::{Builtin, CallCtx, CallSite};

const M: &str = "iter";

pub const FUNCS: &[Builtin] = &[
    fixed(
        M,
        "filter",
        "func([]?1, func(?1) bool) []?1",
        filter,
        "the elements for which the function is true",
    ),
    fixed(M, "flatten", "func([][]?1) []?1", flatten, "the lists, one after the other"),
    fixed(M, "map", "func([]?1, func(?1) ?2) []?2", map, "the function applied to each element"),
    poly(
        M,
        "range",
        "func(int, int, int) []int",
        infer_range,
        range,
        "the ints from start (0) up to stop, by step (1): one to three args as Python's",
    ),
    poly(
        M,
        "reduce",
        "func(?1, []?1, func(?1, ?1) ?1) ?1",
        infer_reduce,
        reduce,
        "the function folded over the list, from initval if given; an empty list without it is an error",
    ),
    fixed(
        M,
        "zip",
        "func([]?1, []?2, func(?1, ?2) ?3) []?3",
        zip,
        "the function applied to pairs of elements, as long as the shorter list",
    ),
];

fn filter(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    let mut out = Vec::new();
    for item in list_at(&args, 0)? {
        match call_func(&args, 1, vec![item.clone()])? {
            Val::Bool(true) => out.push(item.clone()),
            Val::Bool(false) => {}
            other => {
                return Err(CallError(format!("the filter function gave {}, not a bool", other.type_of())));
            }
        }
    }
    Ok(Val::List(out))
}

fn flatten(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    let lists = list_at(&args, 0)?;
    let mut out = Vec::new();
    for (i, list) in lists.iter().enumerate() {
        let Val::List(items) = list else {
            return Err(CallError(format!("element {i} is a {}, not a list", list.type_of())));
        };
        check_items(out.len() + items.len())?;
        out.extend(items.iter().cloned());
    }
    Ok(Val::List(out))
}

fn map(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    list_at(&args, 0)?
        .iter()
        .map(|item| call_func(&args, 1, vec![item.clone()]))
        .collect::<Result<_, _>>()
        .map(Val::List)
}

fn zip(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 3)?;
    let pairs = list_at(&args, 0)?.iter().zip(list_at(&args, 1)?);
    pairs
        .map(|(x, y)| call_func(&args, 2, vec![x.clone(), y.clone()]))
        .collect::<Result<_, _>>()
        .map(Val::List)
}

fn infer_range(site: &CallSite) -> Result<Option<Type>, String> {
    match site.args.len() {
        n @ 1..=3 => Ok(Some(Type::func(vec![Type::Int; n], Type::list(Type::Int)))),
        n => Err(format!("iter.range takes one to three ints, not {n} arguments")),
    }
}

fn range(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    let (start, stop, step) = match args.len() {
        1 => (0, int_at(&args, 0)?, 1),
        2 => (int_at(&args, 0)?, int_at(&args, 1)?, 1),
        3 => (int_at(&args, 0)?, int_at(&args, 1)?, int_at(&args, 2)?),
        n => return Err(CallError(format!("iter.range takes one to three ints, not {n}"))),
    };
    if step == 0 {
        return Err(CallError::new("step value cannot be 0"));
    }
    let span = if step > 0 { stop as i128 - start as i128 } else { start as i128 - stop as i128 };
    let count = if span <= 0 { 0 } else { (span - 1) / (step as i128).abs() + 1 };
    check_items(usize::try_from(count).unwrap_or(usize::MAX))?;
    Ok(Val::List((0..count).map(|i| Val::Int((start as i128 + i * step as i128) as i64)).collect()))
}

/// The element type is the result's; two args (no initval) or three.
fn infer_reduce(site: &CallSite) -> Result<Option<Type>, String> {
    let t = site.ret.clone();
    let folder = Type::func(vec![t.clone(), t.clone()], t.clone());
    match site.args.len() {
        2 => Ok(Some(Type::func(vec![Type::list(t.clone()), folder], t))),
        3 => Ok(Some(Type::func(vec![t.clone(), Type::list(t.clone()), folder], t))),
        n => Err(format!(
            "iter.reduce takes a list and a function, and an initial value before them, not {n} arguments"
        )),
    }
}

fn reduce(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    let (init, list_index) = match args.len() {
        2 => (None, 0),
        3 => (Some(args[0].clone()), 1),
        n => return Err(CallError(format!("iter.reduce takes two or three arguments, not {n}"))),
    };
    let list = list_at(&args, list_index)?;
    let mut items = list.iter().cloned();
    let Some(mut acc) = init.or_else(|| items.next()) else {
        return Err(CallError::new("iter.reduce of an empty list without an initial value"));
    };
    for item in items {
        acc = call_func(&args, list_index + 1, vec![acc, item])?;
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, func_val, infer, ints, ty};
    use super::*;

    fn double(args: Vec<Val>) -> Result<Val, CallError> {
        match args.as_slice() {
            [Val::Int(n)] => Ok(Val::Int(n * 2)),
            _ => Err(CallError::new("bad")),
        }
    }

    fn even(args: Vec<Val>) -> Result<Val, CallError> {
        match args.as_slice() {
            [Val::Int(n)] => Ok(Val::Bool(n % 2 == 0)),
            _ => Err(CallError::new("bad")),
        }
    }

    fn add(args: Vec<Val>) -> Result<Val, CallError> {
        match args.as_slice() {
            [Val::Int(a), Val::Int(b)] => Ok(Val::Int(a + b)),
            _ => Err(CallError::new("bad")),
        }
    }

    #[test]
    fn map_filter_zip_flatten() {
        assert_eq!(call(f(M, "map"), vec![ints(&[1, 2]), func_val(double)]), Ok(ints(&[2, 4])));
        assert_eq!(call(f(M, "filter"), vec![ints(&[1, 2, 3, 4]), func_val(even)]), Ok(ints(&[2, 4])));
        assert_eq!(
            call(f(M, "zip"), vec![ints(&[1, 2, 3]), ints(&[10, 20]), func_val(add)]),
            Ok(ints(&[11, 22]))
        );
        assert_eq!(
            call(f(M, "flatten"), vec![Val::List(vec![ints(&[1]), ints(&[]), ints(&[2])])]),
            Ok(ints(&[1, 2]))
        );
        assert!(call(f(M, "map"), vec![ints(&[1]), Val::Int(1)]).is_err());
        assert!(call(f(M, "filter"), vec![ints(&[1]), func_val(double)]).is_err());
    }

    #[test]
    fn range_is_pythons_and_bounded() {
        assert_eq!(call(f(M, "range"), vec![Val::Int(3)]), Ok(ints(&[0, 1, 2])));
        assert_eq!(call(f(M, "range"), vec![Val::Int(2), Val::Int(5)]), Ok(ints(&[2, 3, 4])));
        assert_eq!(call(f(M, "range"), vec![Val::Int(5), Val::Int(0), Val::Int(-2)]), Ok(ints(&[5, 3, 1])));
        assert_eq!(call(f(M, "range"), vec![Val::Int(5), Val::Int(0)]), Ok(ints(&[])));
        assert!(call(f(M, "range"), vec![Val::Int(1), Val::Int(2), Val::Int(0)]).is_err());
        assert!(call(f(M, "range"), vec![Val::Int(1_000_000_000_000)]).is_err());
        assert!(call(f(M, "range"), vec![Val::Int(i64::MIN), Val::Int(i64::MAX)]).is_err());
        assert_eq!(
            call(f(M, "range"), vec![Val::Int(i64::MAX - 1), Val::Int(i64::MAX), Val::Int(i64::MAX)]),
            Ok(ints(&[i64::MAX - 1]))
        );
    }

    #[test]
    fn reduce_folds_from_the_left() {
        assert_eq!(call(f(M, "reduce"), vec![ints(&[1, 2, 3]), func_val(add)]), Ok(Val::Int(6)));
        assert_eq!(call(f(M, "reduce"), vec![Val::Int(10), ints(&[]), func_val(add)]), Ok(Val::Int(10)));
        assert!(call(f(M, "reduce"), vec![ints(&[]), func_val(add)]).is_err());
    }

    #[test]
    fn infer_by_arity() {
        let v = Type::Var(4);
        assert_eq!(infer(f(M, "range"), &[v.clone(), v.clone()], &v), Ok(Some(ty("func(int, int) []int"))));
        assert!(infer(f(M, "range"), &[], &v).is_err());
        assert_eq!(
            infer(f(M, "reduce"), &[v.clone(), v.clone()], &v),
            Ok(Some(ty("func([]?4, func(?4, ?4) ?4) ?4")))
        );
        assert!(infer(f(M, "reduce"), std::slice::from_ref(&v), &v).is_err());
    }
}
