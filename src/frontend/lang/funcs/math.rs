//! mcl's `math` module. A result that is not a number (NaN or an infinity) is an error, as
//! upstream's is, so `<|>` can give a fallback.

use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::args::{arity, fixed, infer_arity, native, poly};
use super::{Builtin, CallCtx, CallSite};

const M: &str = "math";

pub const FUNCS: &[Builtin] = &[
    poly(M, "fortytwo", "func() ?1", infer_fortytwo, fortytwo, "42, as an int or a float as the use needs"),
    fixed(M, "minus1", "func(int) int", minus1, "x minus one"),
    poly(
        M,
        "mod",
        "func(?1, ?1) ?1",
        infer_mod,
        modulo,
        "the remainder of x / y, for int or float (its sign is x's)",
    ),
    fixed(M, "pow", "func(float, float) float", pow, "x to the power y"),
    fixed(M, "sqrt", "func(float) float", sqrt, "the square root of x"),
];

/// A float result, or an error when it is not a number.
pub fn finite(x: f64) -> Result<Val, CallError> {
    if x.is_nan() {
        Err(CallError::new("result is not a number"))
    } else if x.is_infinite() {
        Err(CallError(format!("result is {} infinity", if x > 0.0 { "positive" } else { "negative" })))
    } else {
        Ok(Val::Float(x))
    }
}

native!(
    fn minus1(x: int) -> val {
        Val::Int(x.checked_sub(1).ok_or_else(|| CallError::new("integer overflow"))?)
    }
);
native!(
    fn pow(x: float, y: float) -> val {
        finite(x.powf(y))?
    }
);
native!(
    fn sqrt(x: float) -> val {
        finite(x.sqrt())?
    }
);

fn infer_fortytwo(site: &CallSite) -> Result<Option<Type>, String> {
    infer_arity(site.args, 0, "math.fortytwo")?;
    match site.ret {
        Type::Var(_) => Ok(None),
        t @ (Type::Int | Type::Float) => Ok(Some(Type::func(vec![], t.clone()))),
        other => Err(format!("math.fortytwo gives an int or a float, not {other}")),
    }
}

fn fortytwo(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    match ctx.sig {
        Type::Func(_, ret) if **ret == Type::Float => Ok(Val::Float(42.0)),
        _ => Ok(Val::Int(42)),
    }
}

fn infer_mod(site: &CallSite) -> Result<Option<Type>, String> {
    infer_arity(site.args, 2, "math.mod")?;
    let known = site.args.iter().chain([site.ret]).find(|t| !matches!(t, Type::Var(_)));
    match known {
        None => Ok(None),
        Some(t @ (Type::Int | Type::Float)) => Ok(Some(Type::func(vec![t.clone(), t.clone()], t.clone()))),
        Some(other) => Err(format!("math.mod takes two ints or two floats, not {other}")),
    }
}

fn modulo(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    match (&args[0], &args[1]) {
        (Val::Int(_), Val::Int(0)) => Err(CallError::new("result is not a number: modulo by zero")),
        (Val::Int(x), Val::Int(y)) => Ok(Val::Int(x.checked_rem(*y).unwrap_or(0))),
        (Val::Float(x), Val::Float(y)) => finite(x % y),
        (a, b) => Err(CallError(format!(
            "math.mod takes two ints or two floats, not {} and {}",
            a.type_of(),
            b.type_of()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, infer, ty};
    use super::*;

    #[test]
    fn values() {
        assert_eq!(call(f(M, "mod"), vec![Val::Int(7), Val::Int(3)]), Ok(Val::Int(1)));
        assert_eq!(call(f(M, "mod"), vec![Val::Int(-7), Val::Int(3)]), Ok(Val::Int(-1)));
        assert_eq!(call(f(M, "mod"), vec![Val::Int(i64::MIN), Val::Int(-1)]), Ok(Val::Int(0)));
        assert_eq!(call(f(M, "mod"), vec![Val::Float(7.5), Val::Float(2.0)]), Ok(Val::Float(1.5)));
        assert!(call(f(M, "mod"), vec![Val::Int(1), Val::Int(0)]).is_err());
        assert!(call(f(M, "mod"), vec![Val::Float(1.0), Val::Float(0.0)]).is_err());
        assert_eq!(call(f(M, "pow"), vec![Val::Float(2.0), Val::Float(10.0)]), Ok(Val::Float(1024.0)));
        assert!(call(f(M, "pow"), vec![Val::Float(10.0), Val::Float(1000.0)]).is_err());
        assert_eq!(call(f(M, "sqrt"), vec![Val::Float(9.0)]), Ok(Val::Float(3.0)));
        assert!(call(f(M, "sqrt"), vec![Val::Float(-1.0)]).is_err());
        assert_eq!(call(f(M, "minus1"), vec![Val::Int(5)]), Ok(Val::Int(4)));
        assert_eq!(call(f(M, "fortytwo"), vec![]), Ok(Val::Int(42)));
    }

    #[test]
    fn infer_mod_and_fortytwo() {
        let v = Type::Var(1);
        assert_eq!(
            infer(f(M, "mod"), &[v.clone(), Type::Float], &v),
            Ok(Some(ty("func(float, float) float")))
        );
        assert_eq!(infer(f(M, "mod"), &[v.clone(), v.clone()], &v), Ok(None));
        assert!(infer(f(M, "mod"), &[Type::Str, v.clone()], &v).is_err());
        assert_eq!(infer(f(M, "fortytwo"), &[], &Type::Float), Ok(Some(ty("func() float"))));
        assert!(infer(f(M, "fortytwo"), &[], &Type::Str).is_err());
    }
}
