//! mcl's `list` module.

use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::args::{check_items, fixed, int_at, list_at, poly};
use super::core::list_index;
use super::{Builtin, CallCtx, CallSite};

const M: &str = "list";

pub const FUNCS: &[Builtin] = &[
    poly(
        M,
        "concat",
        "func([]?1, []?1, ...) []?1",
        infer_concat,
        concat,
        "the lists, one after the other (one or more)",
    ),
    fixed(M, "lookup", "func([]?1, int) ?1", lookup, "the element at index; an error when absent"),
];

/// Every argument and the result are one list type: the first one known.
fn infer_concat(site: &CallSite) -> Result<Option<Type>, String> {
    if site.args.is_empty() {
        return Err("list.concat needs at least one list".into());
    }
    let known = site.args.iter().chain([site.ret]).find(|t| !matches!(t, Type::Var(_)));
    match known {
        None => Ok(None),
        Some(t @ Type::List(_)) => Ok(Some(Type::func(vec![t.clone(); site.args.len()], t.clone()))),
        Some(other) => Err(format!("list.concat takes lists, not {other}")),
    }
}

fn concat(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    let mut total = 0;
    for i in 0..args.len() {
        total += list_at(&args, i)?.len();
    }
    check_items(total)?;
    let mut out = Vec::with_capacity(total);
    for arg in args {
        if let Val::List(items) = arg {
            out.extend(items);
        }
    }
    Ok(Val::List(out))
}

fn lookup(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    super::args::arity(&args, 2)?;
    list_index(list_at(&args, 0)?, int_at(&args, 1)?)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, infer, ints, ty};
    use super::*;

    #[test]
    fn concat_and_lookup() {
        assert_eq!(call(f(M, "concat"), vec![ints(&[1]), ints(&[]), ints(&[2, 3])]), Ok(ints(&[1, 2, 3])));
        assert!(call(f(M, "concat"), vec![ints(&[1]), Val::Int(2)]).is_err());
        assert_eq!(call(f(M, "lookup"), vec![ints(&[4, 5]), Val::Int(0)]), Ok(Val::Int(4)));
        assert!(call(f(M, "lookup"), vec![ints(&[4, 5]), Val::Int(9)]).is_err());
    }

    #[test]
    fn infer_concat_from_any_list() {
        let v = Type::Var(2);
        assert_eq!(
            infer(f(M, "concat"), &[v.clone(), ty("[]str"), v.clone()], &v),
            Ok(Some(ty("func([]str, []str, []str) []str")))
        );
        assert_eq!(infer(f(M, "concat"), std::slice::from_ref(&v), &v), Ok(None));
        assert!(infer(f(M, "concat"), &[Type::Int], &v).is_err());
        assert!(infer(f(M, "concat"), &[], &v).is_err());
    }
}
