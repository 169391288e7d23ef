//! mcl's `encoding` module: base64, and JSON read into a value of a given mcl type.

use data_encoding::BASE64;

use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::args::{arity, check_items, fixed, infer_arity, native, poly, str_at};
use super::{Builtin, CallCtx, CallSite};

const M: &str = "encoding";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "base64_decode", "func(str) str", base64_decode, "the text the standard base64 encodes"),
    fixed(M, "base64_encode", "func(str) str", base64_encode, "the text in standard base64"),
    poly(
        M,
        "decode_json",
        "func(str, str) ?1",
        infer_json,
        decode_json,
        "the JSON data as a value of the type named in the second arg (or the one the use needs); every struct field must be present",
    ),
    poly(
        M,
        "decode_json_flexible",
        "func(str, str) ?1",
        infer_json,
        decode_json_flexible,
        "decode_json, with a missing struct field given its zero value",
    ),
];

native!(
    fn base64_encode(data: str) -> str {
        BASE64.encode(data.as_bytes())
    }
);
native!(
    fn base64_decode(data: str) -> str {
        let bytes = BASE64.decode(data.as_bytes()).map_err(|e| CallError(format!("invalid base64: {e}")))?;
        String::from_utf8(bytes).map_err(|_| CallError::new("the decoded data is not UTF-8 text"))?
    }
);

/// The result type is the one named by a literal second argument, or the one the use needs.
fn infer_json(site: &CallSite) -> Result<Option<Type>, String> {
    let ret = match (site.args.len(), site.consts.get(1)) {
        (1, _) => site.ret.clone(),
        (2, Some(Some(Val::Str(text)))) => {
            Type::parse(text).map_err(|e| format!("the type given to decode_json: {e}"))?
        }
        (2, _) => {
            return Err(
                "the type given to decode_json must be a literal str such as \"map{str: int}\"".into()
            );
        }
        (n, _) => {
            infer_arity(site.args, 2, "encoding.decode_json")?;
            return Err(format!("{n} arguments"));
        }
    };
    if !ret.is_known() {
        return Ok(None);
    }
    Ok(Some(Type::func(vec![Type::Str; site.args.len()], ret)))
}

fn decode_json(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    decode(ctx, args, false)
}

fn decode_json_flexible(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    decode(ctx, args, true)
}

fn decode(ctx: &CallCtx, args: Vec<Val>, flexible: bool) -> Result<Val, CallError> {
    if args.len() != 1 {
        arity(&args, 2)?;
    }
    let ty = match ctx.sig {
        Type::Func(_, ret) if ret.is_known() => (**ret).clone(),
        _ => Type::parse(str_at(&args, 1)?).map_err(CallError)?,
    };
    let json: serde_json::Value =
        serde_json::from_str(str_at(&args, 0)?).map_err(|e| CallError(format!("invalid JSON: {e}")))?;
    from_json(&json, &ty, flexible, "$")
}

fn from_json(json: &serde_json::Value, ty: &Type, flexible: bool, at: &str) -> Result<Val, CallError> {
    use serde_json::Value as J;
    let wrong = || CallError(format!("at {at}: expected {ty}, found {json}"));
    Ok(match (ty, json) {
        (Type::Bool, J::Bool(b)) => Val::Bool(*b),
        (Type::Str, J::String(s)) => Val::Str(s.clone()),
        (Type::Int, J::Number(n)) => Val::Int(n.as_i64().ok_or_else(wrong)?),
        (Type::Float, J::Number(n)) => Val::Float(n.as_f64().ok_or_else(wrong)?),
        (Type::List(t), J::Array(items)) => {
            check_items(items.len())?;
            let vals =
                items.iter().enumerate().map(|(i, v)| from_json(v, t, flexible, &format!("{at}[{i}]")));
            Val::List(vals.collect::<Result<_, _>>()?)
        }
        (Type::Map(k, v), J::Object(pairs)) => {
            let mut out = Vec::with_capacity(pairs.len());
            for (key, value) in pairs {
                out.push((map_key(key, k, at)?, from_json(value, v, flexible, &format!("{at}.{key}"))?));
            }
            Val::map_of(out)
        }
        (Type::Struct(fields), J::Object(pairs)) => {
            let mut out = Vec::with_capacity(fields.len());
            for (name, t) in fields {
                let value = match pairs.get(name) {
                    Some(v) => from_json(v, t, flexible, &format!("{at}.{name}"))?,
                    None if flexible => zero(t)?,
                    None => return Err(CallError(format!("at {at}: missing field {name:?}"))),
                };
                out.push((name.clone(), value));
            }
            Val::Struct(out)
        }
        _ => return Err(wrong()),
    })
}

/// A JSON object's key as a key of the map type.
fn map_key(key: &str, ty: &Type, at: &str) -> Result<Val, CallError> {
    let bad = || CallError(format!("at {at}: the key {key:?} is not a {ty}"));
    Ok(match ty {
        Type::Str => Val::Str(key.to_string()),
        Type::Int => Val::Int(key.parse().map_err(|_| bad())?),
        Type::Float => Val::Float(key.parse().map_err(|_| bad())?),
        Type::Bool => Val::Bool(key.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    })
}

/// The zero value of a type: false, "", 0, empty, a struct of zeros.
pub fn zero(ty: &Type) -> Result<Val, CallError> {
    Ok(match ty {
        Type::Bool => Val::Bool(false),
        Type::Str => Val::Str(String::new()),
        Type::Int => Val::Int(0),
        Type::Float => Val::Float(0.0),
        Type::List(_) => Val::List(Vec::new()),
        Type::Map(..) => Val::Map(Vec::new()),
        Type::Struct(fields) => Val::Struct(
            fields.iter().map(|(n, t)| Ok((n.clone(), zero(t)?))).collect::<Result<_, CallError>>()?,
        ),
        other => return Err(CallError(format!("{other} has no zero value"))),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, infer_with, s, ty};
    use super::*;

    #[test]
    fn base64_both_ways() {
        assert_eq!(call(f(M, "base64_encode"), vec![s("hello")]), Ok(s("aGVsbG8=")));
        assert_eq!(call(f(M, "base64_decode"), vec![s("aGVsbG8=")]), Ok(s("hello")));
        assert!(call(f(M, "base64_decode"), vec![s("!!")]).is_err());
        assert!(call(f(M, "base64_decode"), vec![s("/w==")]).is_err());
    }

    #[test]
    fn json_into_the_named_type() {
        let data = r#"{"4": {"hello": 13, "goodbye": "abc"}, "7": {"hello": 42}}"#;
        let t = "map{str: struct{hello int; goodbye str;}}";
        let flexible = call(f(M, "decode_json_flexible"), vec![s(data), s(t)]).unwrap();
        assert_eq!(
            flexible.to_string(),
            r#"{"4" => struct{hello => 13, goodbye => "abc"}, "7" => struct{hello => 42, goodbye => ""}}"#
        );
        let strict = call(f(M, "decode_json"), vec![s(data), s(t)]).unwrap_err();
        assert!(strict.0.contains("goodbye"), "{strict}");
        assert_eq!(
            call(f(M, "decode_json"), vec![s("[1, 2]"), s("[]int")]),
            Ok(super::super::testing::ints(&[1, 2]))
        );
        assert!(call(f(M, "decode_json"), vec![s("[1.5]"), s("[]int")]).is_err());
        assert!(call(f(M, "decode_json"), vec![s("{"), s("[]int")]).is_err());
    }

    #[test]
    fn infer_reads_the_literal_type() {
        let v = Type::Var(1);
        let got = infer_with(f(M, "decode_json"), &[Type::Str, Type::Str], &[None, Some(s("[]str"))], &v);
        assert_eq!(got, Ok(Some(ty("func(str, str) []str"))));
        assert!(infer_with(f(M, "decode_json"), &[Type::Str, Type::Str], &[None, None], &v).is_err());
        assert!(
            infer_with(f(M, "decode_json"), &[Type::Str, Type::Str], &[None, Some(s("lst"))], &v).is_err()
        );
        assert_eq!(
            infer_with(f(M, "decode_json"), &[Type::Str], &[None], &ty("[]int")),
            Ok(Some(ty("func(str) []int")))
        );
        assert_eq!(infer_with(f(M, "decode_json"), &[Type::Str], &[None], &v), Ok(None));
    }
}
