//! Test helpers for the library's modules: call a function or ask its `infer` without an
//! evaluator or a type checker.

use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::{Builtin, CallCtx, CallSite, HostInfo};

pub fn s(text: &str) -> Val {
    Val::Str(text.to_string())
}

pub fn ints(items: &[i64]) -> Val {
    Val::List(items.iter().map(|n| Val::Int(*n)).collect())
}

pub fn strs(items: &[&str]) -> Val {
    Val::List(items.iter().map(|t| s(t)).collect())
}

pub fn host() -> HostInfo {
    HostInfo { hostname: "h1".into(), ..HostInfo::default() }
}

pub fn call(b: &Builtin, args: Vec<Val>) -> Result<Val, CallError> {
    call_on(b, &host(), args)
}

pub fn call_on(b: &Builtin, host: &HostInfo, args: Vec<Val>) -> Result<Val, CallError> {
    let sig = Type::parse(b.sig).unwrap_or(Type::Variant);
    (b.call)(&CallCtx { sig: &sig, host }, args)
}

pub fn infer(b: &Builtin, args: &[Type], ret: &Type) -> Result<Option<Type>, String> {
    let consts = vec![None; args.len()];
    infer_with(b, args, &consts, ret)
}

pub fn infer_with(
    b: &Builtin,
    args: &[Type],
    consts: &[Option<Val>],
    ret: &Type,
) -> Result<Option<Type>, String> {
    let infer = b.infer.expect("the function has an infer");
    infer(&CallSite { args, consts, ret })
}

pub fn ty(text: &str) -> Type {
    Type::parse(text).unwrap()
}

/// The function `name` of `module`, registered.
pub fn f(module: &str, name: &str) -> &'static Builtin {
    super::lookup(module, name).unwrap_or_else(|| panic!("{module}.{name} is not registered"))
}

/// A function value for the iterators' tests.
pub fn func_val(body: fn(Vec<Val>) -> Result<Val, CallError>) -> Val {
    struct Native(fn(Vec<Val>) -> Result<Val, CallError>);
    impl super::super::value::Callable for Native {
        fn call(&self, args: Vec<Val>) -> Result<Val, CallError> {
            (self.0)(args)
        }
        fn describe(&self) -> String {
            "test function".into()
        }
    }
    Val::Func(super::super::value::FuncVal(std::sync::Arc::new(Native(body))))
}
