//! mcl's `map` module. Keys come in the map's order (sorted).

use super::super::value::{CallError, Val};
use super::args::{arity, fixed, map_at};
use super::{Builtin, CallCtx};

const M: &str = "map";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "keys", "func(map{?1: ?2}) []?1", keys, "the map's keys, sorted"),
    fixed(M, "lookup", "func(map{?1: ?2}, ?1) ?2", lookup, "the value of key; an error when absent"),
    fixed(M, "values", "func(map{?1: ?2}) []?2", values, "the map's values, in the order of their keys"),
];

fn keys(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    Ok(Val::List(map_at(&args, 0)?.iter().map(|(k, _)| k.clone()).collect()))
}

fn values(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    Ok(Val::List(map_at(&args, 0)?.iter().map(|(_, v)| v.clone()).collect()))
}

fn lookup(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 2)?;
    map_at(&args, 0)?;
    args[0].map_get(&args[1]).cloned().ok_or_else(|| CallError(format!("map key not present: {}", args[1])))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, ints, s, strs};
    use super::*;

    #[test]
    fn keys_values_lookup() {
        let m = Val::map_of([(s("b"), Val::Int(2)), (s("a"), Val::Int(1))]);
        assert_eq!(call(f(M, "keys"), vec![m.clone()]), Ok(strs(&["a", "b"])));
        assert_eq!(call(f(M, "values"), vec![m.clone()]), Ok(ints(&[1, 2])));
        assert_eq!(call(f(M, "lookup"), vec![m.clone(), s("b")]), Ok(Val::Int(2)));
        assert!(call(f(M, "lookup"), vec![m, s("z")]).is_err());
        assert!(call(f(M, "keys"), vec![ints(&[1])]).is_err());
    }
}
