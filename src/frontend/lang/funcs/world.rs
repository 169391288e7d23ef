//! mcl's `world` module: the cluster's key store, the values the `kv` resource writes
//! (`kv/<key>` in etcd). In a running program each call follows its key through the
//! world's watch; evaluated once (`mgmt graph`), which asks no cluster, a key is unset.
//!
//! Upstream keeps one value per host under a key (`kvlookup` gives them all); here a key
//! has one value and the host that wrote it last, so `kvlookup` gives at most one pair.
//!
//! And `world/collect`: `collect.res(kind)`, the resources of a kind the other hosts export
//! (this host's own are never collected back), for a `collect` statement to choose from.

use super::super::value::{CallError, Val};
use super::args::{arity, fixed, str_at};
use super::{Builtin, CallCtx, Changes};

const M: &str = "world";
const COLLECT: &str = "world/collect";

pub const FUNCS: &[Builtin] = &[
    fixed(
        M,
        "getval",
        "func(str) struct{value str; exists bool}",
        getval,
        "the value of a key of the cluster's key store, and whether it is set; followed",
    )
    .changing(Changes::Kv(getval_of)),
    fixed(
        M,
        "kvlookup",
        "func(str) map{str: str}",
        kvlookup,
        "the value of a key of the cluster's key store by the host that wrote it; followed",
    )
    .changing(Changes::Kv(kvlookup_of)),
    fixed(
        COLLECT,
        "res",
        "func(str) []struct{name str; host str}",
        res,
        "the resources of a kind the other hosts export, by name and host; followed",
    )
    .changing(Changes::Exports(exports_of)),
];

/// `collect.res`'s value for the exports of its kind, as (name, host), sorted.
fn exports_of(exports: &[(&str, &str)]) -> Val {
    let mut list: Vec<(&str, &str)> = exports.to_vec();
    list.sort();
    Val::List(
        list.into_iter()
            .map(|(name, host)| {
                Val::Struct(vec![
                    ("name".into(), Val::Str(name.into())),
                    ("host".into(), Val::Str(host.into())),
                ])
            })
            .collect(),
    )
}

fn res(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    str_at(&args, 0)?;
    Ok(exports_of(&[]))
}

/// `getval`'s value for a key's value and writer, `None` when it is unset.
fn getval_of(value: Option<(&str, &str)>) -> Val {
    Val::Struct(vec![
        ("value".into(), Val::Str(value.map(|(v, _)| v.to_string()).unwrap_or_default())),
        ("exists".into(), Val::Bool(value.is_some())),
    ])
}

fn kvlookup_of(value: Option<(&str, &str)>) -> Val {
    Val::map_of(value.map(|(v, host)| (Val::Str(host.to_string()), Val::Str(v.to_string()))))
}

fn getval(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    str_at(&args, 0)?;
    Ok(getval_of(None))
}

fn kvlookup(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    str_at(&args, 0)?;
    Ok(kvlookup_of(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_key_reads_as_its_value_and_writer_and_an_unset_one_as_absent() {
        let got = getval_of(Some(("hello", "h1")));
        assert_eq!(got.field("value"), Some(&Val::Str("hello".into())));
        assert_eq!(got.field("exists"), Some(&Val::Bool(true)));
        assert_eq!(getval_of(None).field("exists"), Some(&Val::Bool(false)));
        assert_eq!(
            kvlookup_of(Some(("v", "h1"))),
            Val::map_of([(Val::Str("h1".into()), Val::Str("v".into()))])
        );
        assert_eq!(kvlookup_of(None), Val::Map(vec![]));
    }
}
