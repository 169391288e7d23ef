//! The operators, as functions: the type checker asks their `infer` for the type of each use
//! and the evaluator calls them. `a in l` is [`contains`](super::core), as upstream has it:
//! an element in a list. Integer overflow and division by zero are errors, not wrap-arounds.

use super::super::ast::BinOp;
use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::args::{arity, bool_at, first_known, fixed, infer_arity, list_at, poly};
use super::{Builtin, CallCtx, CallSite};

/// The function behind a binary operator.
pub fn binary(op: BinOp) -> &'static Builtin {
    match op {
        BinOp::Or => &OR,
        BinOp::And => &AND,
        BinOp::Eq => &EQ,
        BinOp::Ne => &NE,
        BinOp::Lt => &LT,
        BinOp::Gt => &GT,
        BinOp::Le => &LE,
        BinOp::Ge => &GE,
        BinOp::In => &CONTAINS,
        BinOp::Add => &ADD,
        BinOp::Sub => &SUB,
        BinOp::Mul => &MUL,
        BinOp::Div => &DIV,
    }
}

/// The function behind `not`.
pub fn not() -> &'static Builtin {
    &NOT
}

/// Every operator's function (`in` is `contains`, listed with the top-level functions).
pub const ALL: &[&Builtin] = &[&OR, &AND, &EQ, &NE, &LT, &GT, &LE, &GE, &ADD, &SUB, &MUL, &DIV, &NOT];

/// `contains(x, list)`, also `x in list`: registered among the functions without a module.
pub const CONTAINS: Builtin = fixed(
    "",
    "contains",
    "func(?1, []?1) bool",
    contains,
    "whether the list holds the value (also `x in list`)",
);

static OR: Builtin = fixed("", "or", "func(bool, bool) bool", or, "either is true");
static AND: Builtin = fixed("", "and", "func(bool, bool) bool", and, "both are true");
static NOT: Builtin = fixed("", "not", "func(bool) bool", not_call, "the opposite");
static EQ: Builtin =
    poly("", "==", "func(?1, ?1) bool", infer_equal, eq, "equal values, of any type but a function");
static NE: Builtin =
    poly("", "!=", "func(?1, ?1) bool", infer_equal, ne, "unequal values, of any type but a function");
static LT: Builtin = poly("", "<", "func(?1, ?1) bool", infer_order, lt, "less than, for int or float");
static GT: Builtin = poly("", ">", "func(?1, ?1) bool", infer_order, gt, "greater than, for int or float");
static LE: Builtin = poly("", "<=", "func(?1, ?1) bool", infer_order, le, "less or equal, for int or float");
static GE: Builtin =
    poly("", ">=", "func(?1, ?1) bool", infer_order, ge, "greater or equal, for int or float");
static ADD: Builtin =
    poly("", "+", "func(?1, ?1) ?1", infer_add, add, "sum of int or float; concatenation of str");
static SUB: Builtin = poly("", "-", "func(?1, ?1) ?1", infer_arith, sub, "difference of int or float");
static MUL: Builtin = poly("", "*", "func(?1, ?1) ?1", infer_arith, mul, "product of int or float");
static DIV: Builtin =
    poly("", "/", "func(?1, ?1) float", infer_div, div, "quotient of int or float, always a float");

fn or(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    Ok(Val::Bool(bool_at(&args, 0)? || bool_at(&args, 1)?))
}

fn and(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    Ok(Val::Bool(bool_at(&args, 0)? && bool_at(&args, 1)?))
}

fn not_call(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    Ok(Val::Bool(!bool_at(&args, 0)?))
}

/// The type of `a OP b` where both sides have the same type, one of `allowed`, and the
/// result is `ret` (or that same type when `ret` is `None`).
fn same_of(
    site: &CallSite,
    symbol: &str,
    allowed: &[Type],
    ret: Option<Type>,
) -> Result<Option<Type>, String> {
    infer_arity(site.args, 2, &format!("`{symbol}`"))?;
    let mut candidates: Vec<&Type> = site.args.iter().collect();
    if ret.is_none() {
        candidates.push(site.ret);
    }
    let Some(ty) = candidates.into_iter().find(|t| !matches!(t, Type::Var(_))) else {
        return Ok(None);
    };
    if !allowed.contains(ty) {
        let names: Vec<String> = allowed.iter().map(Type::to_string).collect();
        return Err(format!("`{symbol}` applies to {}, not to {ty}", names.join(" or ")));
    }
    let out = ret.unwrap_or_else(|| ty.clone());
    Ok(Some(Type::func(vec![ty.clone(), ty.clone()], out)))
}

fn infer_add(site: &CallSite) -> Result<Option<Type>, String> {
    same_of(site, "+", &[Type::Int, Type::Float, Type::Str], None)
}

fn infer_arith(site: &CallSite) -> Result<Option<Type>, String> {
    // `-` and `*` share this: the message names the pair.
    same_of(site, "-` or `*", &[Type::Int, Type::Float], None)
}

fn infer_div(site: &CallSite) -> Result<Option<Type>, String> {
    if !matches!(site.ret, Type::Var(_) | Type::Float) {
        return Err(format!("`/` gives a float, not {}", site.ret));
    }
    same_of(site, "/", &[Type::Int, Type::Float], Some(Type::Float))
}

fn infer_order(site: &CallSite) -> Result<Option<Type>, String> {
    same_of(site, "<", &[Type::Int, Type::Float], Some(Type::Bool))
}

/// Both sides have one type, whatever it is, as long as it holds no function: the answer
/// names the first side's type, so the checker unifies the second with it.
fn infer_equal(site: &CallSite) -> Result<Option<Type>, String> {
    infer_arity(site.args, 2, "`==`")?;
    let ty = first_known(site.args).unwrap_or(&site.args[0]);
    if holds_func(ty) {
        return Err(format!("values of type {ty} cannot be compared: functions have no equality"));
    }
    Ok(Some(Type::func(vec![ty.clone(), ty.clone()], Type::Bool)))
}

fn holds_func(ty: &Type) -> bool {
    match ty {
        Type::Func(..) => true,
        Type::List(t) => holds_func(t),
        Type::Map(k, v) => holds_func(k) || holds_func(v),
        Type::Struct(fields) => fields.iter().any(|(_, t)| holds_func(t)),
        _ => false,
    }
}

fn pair(args: Vec<Val>) -> Result<(Val, Val), CallError> {
    arity(&args, 2)?;
    let mut it = args.into_iter();
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(CallError::new("expected 2 arguments")),
    }
}

/// Structural equality; a function anywhere inside is an error.
pub fn equal(a: &Val, b: &Val) -> Result<bool, CallError> {
    match (a, b) {
        (Val::Func(_), _) | (_, Val::Func(_)) => Err(CallError::new("functions cannot be compared")),
        (Val::List(x), Val::List(y)) => {
            all_equal(x.len() == y.len(), x.iter().zip(y).map(|(p, q)| equal(p, q)))
        }
        (Val::Map(x), Val::Map(y)) => all_equal(
            x.len() == y.len(),
            x.iter().zip(y).map(|(p, q)| Ok(equal(&p.0, &q.0)? && equal(&p.1, &q.1)?)),
        ),
        (Val::Struct(x), Val::Struct(y)) => {
            all_equal(x.len() == y.len(), x.iter().zip(y).map(|(p, q)| Ok(p.0 == q.0 && equal(&p.1, &q.1)?)))
        }
        _ => Ok(a == b),
    }
}

fn all_equal(
    same_len: bool,
    parts: impl Iterator<Item = Result<bool, CallError>>,
) -> Result<bool, CallError> {
    let mut result = same_len;
    for part in parts {
        result &= part?;
    }
    Ok(result)
}

fn contains(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    for item in list_at(&args, 1)? {
        if equal(&args[0], item)? {
            return Ok(Val::Bool(true));
        }
    }
    Ok(Val::Bool(false))
}

fn eq(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    let (a, b) = pair(args)?;
    Ok(Val::Bool(equal(&a, &b)?))
}

fn ne(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    let (a, b) = pair(args)?;
    Ok(Val::Bool(!equal(&a, &b)?))
}

fn order(args: Vec<Val>, symbol: &str) -> Result<Option<std::cmp::Ordering>, CallError> {
    match pair(args)? {
        (Val::Int(a), Val::Int(b)) => Ok(Some(a.cmp(&b))),
        (Val::Float(a), Val::Float(b)) => Ok(a.partial_cmp(&b)),
        (a, b) => Err(mismatch(symbol, &a, &b)),
    }
}

fn mismatch(symbol: &str, a: &Val, b: &Val) -> CallError {
    CallError(format!("`{symbol}` does not apply to {} and {}", a.type_of(), b.type_of()))
}

fn lt(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    Ok(Val::Bool(order(args, "<")?.is_some_and(|o| o.is_lt())))
}

fn gt(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    Ok(Val::Bool(order(args, ">")?.is_some_and(|o| o.is_gt())))
}

fn le(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    Ok(Val::Bool(order(args, "<=")?.is_some_and(|o| o.is_le())))
}

fn ge(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    Ok(Val::Bool(order(args, ">=")?.is_some_and(|o| o.is_ge())))
}

fn overflow(a: i64, symbol: &str, b: i64) -> CallError {
    CallError(format!("integer overflow: {a} {symbol} {b}"))
}

fn add(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    match pair(args)? {
        (Val::Int(a), Val::Int(b)) => a.checked_add(b).map(Val::Int).ok_or_else(|| overflow(a, "+", b)),
        (Val::Float(a), Val::Float(b)) => Ok(Val::Float(a + b)),
        (Val::Str(mut a), Val::Str(b)) => {
            a.push_str(&b);
            Ok(Val::Str(a))
        }
        (a, b) => Err(mismatch("+", &a, &b)),
    }
}

fn sub(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    match pair(args)? {
        (Val::Int(a), Val::Int(b)) => a.checked_sub(b).map(Val::Int).ok_or_else(|| overflow(a, "-", b)),
        (Val::Float(a), Val::Float(b)) => Ok(Val::Float(a - b)),
        (a, b) => Err(mismatch("-", &a, &b)),
    }
}

fn mul(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    match pair(args)? {
        (Val::Int(a), Val::Int(b)) => a.checked_mul(b).map(Val::Int).ok_or_else(|| overflow(a, "*", b)),
        (Val::Float(a), Val::Float(b)) => Ok(Val::Float(a * b)),
        (a, b) => Err(mismatch("*", &a, &b)),
    }
}

/// Upstream's division: always a float, and dividing by zero (int or float) is an error.
fn div(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    let (a, b) = match pair(args)? {
        (Val::Int(a), Val::Int(b)) => (a as f64, b as f64),
        (Val::Float(a), Val::Float(b)) => (a, b),
        (a, b) => return Err(mismatch("/", &a, &b)),
    };
    if b == 0.0 {
        return Err(CallError::new("can't divide by zero"));
    }
    Ok(Val::Float(a / b))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, infer, s};
    use super::*;

    #[test]
    fn arithmetic_follows_the_operand_types() {
        assert_eq!(call(binary(BinOp::Add), vec![Val::Int(2), Val::Int(3)]), Ok(Val::Int(5)));
        assert_eq!(call(binary(BinOp::Add), vec![s("a"), s("b")]), Ok(s("ab")));
        assert_eq!(call(binary(BinOp::Sub), vec![Val::Float(1.5), Val::Float(0.5)]), Ok(Val::Float(1.0)));
        assert_eq!(call(binary(BinOp::Mul), vec![Val::Int(-4), Val::Int(3)]), Ok(Val::Int(-12)));
        assert_eq!(call(binary(BinOp::Div), vec![Val::Int(7), Val::Int(2)]), Ok(Val::Float(3.5)));
    }

    #[test]
    fn overflow_and_division_by_zero_are_errors() {
        for (op, a, b) in [(BinOp::Add, i64::MAX, 1), (BinOp::Sub, i64::MIN, 1), (BinOp::Mul, i64::MAX, 2)] {
            let err = call(binary(op), vec![Val::Int(a), Val::Int(b)]).unwrap_err();
            assert!(err.0.contains("overflow"), "{err}");
        }
        assert!(call(binary(BinOp::Div), vec![Val::Int(1), Val::Int(0)]).is_err());
        assert!(call(binary(BinOp::Div), vec![Val::Float(1.0), Val::Float(0.0)]).is_err());
    }

    #[test]
    fn comparisons_and_logic() {
        assert_eq!(call(binary(BinOp::Lt), vec![Val::Int(1), Val::Int(2)]), Ok(Val::Bool(true)));
        assert_eq!(call(binary(BinOp::Ge), vec![Val::Float(1.0), Val::Float(2.0)]), Ok(Val::Bool(false)));
        assert_eq!(
            call(binary(BinOp::Le), vec![Val::Float(f64::NAN), Val::Float(2.0)]),
            Ok(Val::Bool(false))
        );
        let list = |v: Vec<i64>| Val::List(v.into_iter().map(Val::Int).collect());
        assert_eq!(call(binary(BinOp::Eq), vec![list(vec![1, 2]), list(vec![1, 2])]), Ok(Val::Bool(true)));
        assert_eq!(call(binary(BinOp::Ne), vec![list(vec![1]), list(vec![1, 2])]), Ok(Val::Bool(true)));
        assert_eq!(call(binary(BinOp::And), vec![Val::Bool(true), Val::Bool(false)]), Ok(Val::Bool(false)));
        assert_eq!(call(binary(BinOp::Or), vec![Val::Bool(true), Val::Bool(false)]), Ok(Val::Bool(true)));
        assert_eq!(call(not(), vec![Val::Bool(true)]), Ok(Val::Bool(false)));
        assert_eq!(call(binary(BinOp::In), vec![Val::Int(2), list(vec![1, 2])]), Ok(Val::Bool(true)));
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        for op in [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div, BinOp::Lt, BinOp::Eq, BinOp::And] {
            assert!(call(binary(op), vec![Val::Int(1)]).is_err());
            assert!(call(binary(op), vec![s("a"), Val::Bool(true)]).is_err() || op == BinOp::Eq);
        }
    }

    #[test]
    fn infer_takes_the_type_from_any_known_side() {
        let v = Type::Var(7);
        assert_eq!(
            infer(binary(BinOp::Add), &[v.clone(), Type::Str], &v),
            Ok(Some(Type::parse("func(str, str) str").unwrap()))
        );
        assert_eq!(
            infer(binary(BinOp::Add), &[v.clone(), v.clone()], &Type::Int),
            Ok(Some(Type::parse("func(int, int) int").unwrap()))
        );
        assert_eq!(infer(binary(BinOp::Add), &[v.clone(), v.clone()], &v), Ok(None));
        assert_eq!(
            infer(binary(BinOp::Div), &[Type::Int, v.clone()], &v),
            Ok(Some(Type::parse("func(int, int) float").unwrap()))
        );
        assert_eq!(
            infer(binary(BinOp::Lt), &[Type::Float, v.clone()], &v),
            Ok(Some(Type::parse("func(float, float) bool").unwrap()))
        );
        assert_eq!(
            infer(binary(BinOp::Eq), &[v.clone(), Type::Var(8)], &v),
            Ok(Some(Type::parse("func(?7, ?7) bool").unwrap()))
        );
    }

    #[test]
    fn infer_refuses_types_an_operator_does_not_take() {
        let v = Type::Var(1);
        let err = infer(binary(BinOp::Sub), &[Type::Str, v.clone()], &v).unwrap_err();
        assert!(err.contains("not to str"), "{err}");
        assert!(infer(binary(BinOp::Add), &[Type::Bool, Type::Bool], &v).is_err());
        assert!(infer(binary(BinOp::Lt), &[Type::Str, Type::Str], &v).is_err());
        assert!(infer(binary(BinOp::Div), &[Type::Int, Type::Int], &Type::Int).is_err());
        assert!(infer(binary(BinOp::Eq), &[Type::parse("func() int").unwrap(), v.clone()], &v).is_err());
    }
}
