//! A library function passed as a value (`iter.map($names, strings.to_upper)`).

use std::sync::Arc;

use super::super::types::Type;
use super::super::value::{CallError, Callable, FuncVal, Val};
use super::{Builtin, CallCtx, HostInfo};

/// The function as a value, with its type solved at the place it is named.
pub fn func_value(builtin: &'static Builtin, sig: Type, host: HostInfo) -> FuncVal {
    FuncVal(Arc::new(BuiltinValue { builtin, sig, host }))
}

struct BuiltinValue {
    builtin: &'static Builtin,
    sig: Type,
    host: HostInfo,
}

impl Callable for BuiltinValue {
    fn call(&self, args: Vec<Val>) -> Result<Val, CallError> {
        (self.builtin.call)(&CallCtx { sig: &self.sig, host: &self.host }, args)
    }

    fn describe(&self) -> String {
        format!("{:?}", self.builtin)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, host, strs};
    use super::*;

    #[test]
    fn a_library_function_passed_to_another() {
        let upper = func_value(f("strings", "to_upper"), Type::parse("func(str) str").unwrap(), host());
        assert_eq!(upper.0.describe(), "strings.to_upper");
        let mapped = call(f("iter", "map"), vec![strs(&["a", "b"]), Val::Func(upper)]);
        assert_eq!(mapped, Ok(strs(&["A", "B"])));
    }
}
