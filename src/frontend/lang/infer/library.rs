//! The functions the checker calls operators through: the core library's, so the checker and
//! the evaluator share one definition of each.

use super::super::ast::BinOp;
use super::super::funcs::{Builtin, CallCtx, CallSite};
use super::super::types::Type;
use super::super::value::{CallError, Val};

/// Where operators come from; a test can give its own.
pub trait Library {
    fn binary(&self, op: BinOp) -> Option<&'static Builtin>;
    fn not(&self) -> Option<&'static Builtin>;
}

/// The core library.
pub struct Core;

impl Library for Core {
    fn binary(&self, op: BinOp) -> Option<&'static Builtin> {
        OPERATORS.iter().find(|b| b.name == op.symbol())
    }

    fn not(&self) -> Option<&'static Builtin> {
        OPERATORS.iter().find(|b| b.name == "not")
    }
}

fn typing_only(_: &CallCtx, _: Vec<Val>) -> Result<Val, CallError> {
    Err(CallError::new("an operator's type, not its implementation"))
}

const fn op(name: &'static str, sig: &'static str, infer: Option<super::super::funcs::Infer>) -> Builtin {
    Builtin { module: "", name, sig, infer, call: typing_only, doc: "" }
}

/// The operators' types, as upstream's operators have them.
static OPERATORS: &[Builtin] = &[
    op("and", "func(bool, bool) bool", None),
    op("or", "func(bool, bool) bool", None),
    op("not", "func(bool) bool", None),
    op("==", "func(?1, ?1) bool", None),
    op("!=", "func(?1, ?1) bool", None),
    op("in", "func(?1, []?1) bool", None),
    op("+", "func(?1, ?1) ?1", Some(sum)),
    op("-", "func(?1, ?1) ?1", Some(arithmetic)),
    op("*", "func(?1, ?1) ?1", Some(arithmetic)),
    op("/", "func(?1, ?1) float", Some(division)),
    op("<", "func(?1, ?1) bool", Some(ordering)),
    op(">", "func(?1, ?1) bool", Some(ordering)),
    op("<=", "func(?1, ?1) bool", Some(ordering)),
    op(">=", "func(?1, ?1) bool", Some(ordering)),
];

/// The operand type of a two-operand call once either side is known, if it is one of `allowed`.
fn operand(site: &CallSite, allowed: &[Type], what: &str) -> Result<Option<Type>, String> {
    let known = site.args.iter().find(|t| !matches!(t, Type::Var(_)));
    match known {
        None => Ok(None),
        Some(t) if allowed.contains(t) => Ok(Some(t.clone())),
        Some(t) => {
            let names: Vec<String> = allowed.iter().map(|t| format!("`{t}`")).collect();
            Err(format!("{what} takes {}, not `{t}`", names.join(" or ")))
        }
    }
}

fn sum(site: &CallSite) -> Result<Option<Type>, String> {
    let t = operand(site, &[Type::Str, Type::Int, Type::Float], "`+`")?;
    Ok(t.map(|t| Type::func(vec![t.clone(), t.clone()], t)))
}

fn arithmetic(site: &CallSite) -> Result<Option<Type>, String> {
    let t = operand(site, &[Type::Int, Type::Float], "arithmetic")?;
    Ok(t.map(|t| Type::func(vec![t.clone(), t.clone()], t)))
}

fn division(site: &CallSite) -> Result<Option<Type>, String> {
    let t = operand(site, &[Type::Int, Type::Float], "`/`")?;
    Ok(t.map(|t| Type::func(vec![t.clone(), t], Type::Float)))
}

fn ordering(site: &CallSite) -> Result<Option<Type>, String> {
    let t = operand(site, &[Type::Int, Type::Float], "a comparison")?;
    Ok(t.map(|t| Type::func(vec![t.clone(), t], Type::Bool)))
}
