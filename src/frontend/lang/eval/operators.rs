//! The operators evaluation calls, by their function in the core library.
//! A stand-in with the shape of `funcs::operators` until the core library has them.

use super::super::ast::BinOp;
use super::super::funcs::{Builtin, CallCtx};
use super::super::value::{CallError, Val};

macro_rules! op {
    ($name:ident, $sym:literal, $sig:literal, $f:expr) => {
        static $name: Builtin = Builtin { module: "", name: $sym, sig: $sig, infer: None, call: $f, doc: "" };
    };
}

fn two(args: Vec<Val>) -> (Val, Val) {
    let mut it = args.into_iter();
    (it.next().unwrap_or(Val::Bool(false)), it.next().unwrap_or(Val::Bool(false)))
}

fn arith(args: Vec<Val>, op: char) -> Result<Val, CallError> {
    match (two(args), op) {
        ((Val::Int(a), Val::Int(b)), _) => {
            let r = match op {
                '+' => a.checked_add(b),
                '-' => a.checked_sub(b),
                '*' => a.checked_mul(b),
                _ if b == 0 => return Err(CallError::new("division by zero")),
                _ => a.checked_div(b),
            };
            r.map(Val::Int).ok_or_else(|| CallError::new("integer overflow"))
        }
        ((Val::Float(a), Val::Float(b)), _) => {
            if op == '/' && b == 0.0 {
                return Err(CallError::new("division by zero"));
            }
            Ok(Val::Float(match op {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                _ => a / b,
            }))
        }
        ((Val::Str(a), Val::Str(b)), '+') => Ok(Val::Str(a + &b)),
        ((Val::List(mut a), Val::List(b)), '+') => {
            a.extend(b);
            Ok(Val::List(a))
        }
        ((a, b), _) => Err(CallError::new(format!("cannot apply {op} to {a} and {b}"))),
    }
}

fn cmp(args: Vec<Val>, f: fn(std::cmp::Ordering) -> bool) -> Result<Val, CallError> {
    let (a, b) = two(args);
    Ok(Val::Bool(f(a.total_cmp(&b))))
}

fn bools(args: Vec<Val>, f: fn(bool, bool) -> bool) -> Result<Val, CallError> {
    match two(args) {
        (Val::Bool(a), Val::Bool(b)) => Ok(Val::Bool(f(a, b))),
        (a, b) => Err(CallError::new(format!("not booleans: {a}, {b}"))),
    }
}

op!(ADD, "+", "func(?1, ?1) ?1", |_: &CallCtx, a| arith(a, '+'));
op!(SUB, "-", "func(?1, ?1) ?1", |_: &CallCtx, a| arith(a, '-'));
op!(MUL, "*", "func(?1, ?1) ?1", |_: &CallCtx, a| arith(a, '*'));
op!(DIV, "/", "func(?1, ?1) ?1", |_: &CallCtx, a| arith(a, '/'));
op!(EQ, "==", "func(?1, ?1) bool", |_: &CallCtx, a| {
    let (a, b) = two(a);
    Ok(Val::Bool(a == b))
});
op!(NE, "!=", "func(?1, ?1) bool", |_: &CallCtx, a| {
    let (a, b) = two(a);
    Ok(Val::Bool(a != b))
});
op!(LT, "<", "func(?1, ?1) bool", |_: &CallCtx, a| cmp(a, |o| o.is_lt()));
op!(GT, ">", "func(?1, ?1) bool", |_: &CallCtx, a| cmp(a, |o| o.is_gt()));
op!(LE, "<=", "func(?1, ?1) bool", |_: &CallCtx, a| cmp(a, |o| o.is_le()));
op!(GE, ">=", "func(?1, ?1) bool", |_: &CallCtx, a| cmp(a, |o| o.is_ge()));
op!(OR, "or", "func(bool, bool) bool", |_: &CallCtx, a| bools(a, |x, y| x || y));
op!(AND, "and", "func(bool, bool) bool", |_: &CallCtx, a| bools(a, |x, y| x && y));
op!(IN, "contains", "func(?1, []?1) bool", |_: &CallCtx, a| match two(a) {
    (x, Val::List(items)) => Ok(Val::Bool(items.contains(&x))),
    (x, map @ Val::Map(_)) => Ok(Val::Bool(map.map_get(&x).is_some())),
    (_, other) => Err(CallError::new(format!("not a list: {other}"))),
});
op!(NOT, "not", "func(bool) bool", |_: &CallCtx, a| match a.first() {
    Some(Val::Bool(b)) => Ok(Val::Bool(!b)),
    _ => Err(CallError::new("not a boolean")),
});

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
        BinOp::In => &IN,
        BinOp::Add => &ADD,
        BinOp::Sub => &SUB,
        BinOp::Mul => &MUL,
        BinOp::Div => &DIV,
    }
}

pub fn not() -> &'static Builtin {
    &NOT
}
