//! Fixed signatures, read once: the type checker asks for a function's type at every call.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::super::types::Type;
use super::{Builtin, all, operators};

static TYPES: LazyLock<HashMap<(&'static str, &'static str), Type>> = LazyLock::new(|| {
    all()
        .chain(operators::ALL.iter().copied())
        .filter(|b| b.infer.is_none())
        .filter_map(|b| Type::parse(b.sig).ok().map(|t| ((b.module, b.name), t)))
        .collect()
});

/// The type of a function without an `infer`, its `?N` the same for every call (a checker
/// gives each call fresh variables); `None` for a function with an `infer`.
pub fn fixed_type(builtin: &Builtin) -> Option<&'static Type> {
    if builtin.infer.is_some() {
        return None;
    }
    TYPES.get(&(builtin.module, builtin.name))
}

#[cfg(test)]
mod tests {
    use super::super::testing::f;
    use super::*;

    #[test]
    fn fixed_functions_have_their_type_and_polymorphic_ones_none() {
        assert_eq!(
            fixed_type(f("strings", "split")).map(Type::to_string).as_deref(),
            Some("func(str, str) []str")
        );
        assert_eq!(fixed_type(operators::not()).map(Type::to_string).as_deref(), Some("func(bool) bool"));
        assert!(fixed_type(f("fmt", "printf")).is_none());
    }
}
