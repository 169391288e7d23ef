//! The types resources take: the `test` kind's params, as upstream's test resource has them
//! (Go's sized integers are `int`, floats `float`, pointers their target), and the `Meta:`
//! params. Other kinds take any type here; their own params decoder checks the values.

use super::super::types::Type;

/// What a param of `kind` takes: `Ok(None)` for any type, `Err` when the kind has no such
/// param (with the params it has).
pub fn param_type(kind: &str, param: &str) -> Result<Option<Type>, Vec<&'static str>> {
    if kind != "test" {
        return Ok(None);
    }
    match TEST_PARAMS.iter().find(|(name, _)| *name == param) {
        Some((_, "variant")) => Ok(None),
        Some((_, sig)) => Ok(Some(parse(sig))),
        None => Err(TEST_PARAMS.iter().map(|(name, _)| *name).collect()),
    }
}

const TEST_PARAMS: &[(&str, &str)] = &[
    ("bool", "bool"),
    ("str", "str"),
    ("int", "int"),
    ("int8", "int"),
    ("int16", "int"),
    ("int32", "int"),
    ("int64", "int"),
    ("uint", "int"),
    ("uint8", "int"),
    ("uint16", "int"),
    ("uint32", "int"),
    ("uint64", "int"),
    ("byte", "int"),
    ("rune", "int"),
    ("float32", "float"),
    ("float64", "float"),
    ("boolptr", "bool"),
    ("stringptr", "str"),
    ("int64ptr", "int"),
    ("int8ptr", "int"),
    ("uint8ptr", "int"),
    ("int8ptrptrptr", "int"),
    ("slicestring", "[]str"),
    ("mapintfloat", "map{int: float}"),
    ("mixedstruct", "struct{somebool bool; somestr str; someint int; somefloat float}"),
    ("interface", "variant"),
    ("anotherstr", "str"),
    ("func1", "func(int) str"),
    ("validatebool", "bool"),
    ("validateerror", "str"),
    ("alwaysgroup", "bool"),
    ("comparefail", "bool"),
    ("sendvalue", "str"),
    ("expectrecv", "[]str"),
    ("onlyshow", "[]str"),
    ("waitforerror", "int"),
    ("comment", "str"),
];

/// The `Meta:` params, in the order of the `Meta => struct{...}` form.
const META_PARAMS: &[(&str, &str)] = &[
    ("noop", "bool"),
    ("retry", "int"),
    ("retryreset", "bool"),
    ("delay", "int"),
    ("timeout", "int"),
    ("poll", "int"),
    ("limit", "float"),
    ("burst", "int"),
    ("reset", "bool"),
    ("sema", "[]str"),
    ("rewatch", "bool"),
    ("realize", "bool"),
    ("dollar", "bool"),
    ("hidden", "bool"),
    ("export", "[]str"),
    ("reverse", "bool"),
    ("autoedge", "bool"),
    ("autogroup", "bool"),
];

/// This agent's own `Meta:` params, set one by one only: the `Meta => struct{...}` form
/// stays upstream's, so its programs keep their type.
const OWN_META_PARAMS: &[(&str, &str)] = &[
    // Never log the resource's content.
    ("sensitive", "bool"),
];

/// The type of `Meta:name` (in any case, as upstream), or the names there are.
pub fn meta_type(name: &str) -> Result<Type, Vec<&'static str>> {
    let name = name.to_ascii_lowercase();
    let all = META_PARAMS.iter().chain(OWN_META_PARAMS);
    all.clone()
        .find(|(n, _)| *n == name)
        .map(|(_, sig)| parse(sig))
        .ok_or_else(|| all.map(|(n, _)| *n).collect())
}

/// The type of `Meta => ...`: every meta param at once.
pub fn meta_struct() -> Type {
    Type::Struct(META_PARAMS.iter().map(|(n, sig)| (n.to_string(), parse(sig))).collect())
}

fn parse(sig: &str) -> Type {
    Type::parse(sig).expect("the tables hold valid types")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_type_reads() {
        for (kind, name) in TEST_PARAMS.iter().map(|(n, _)| ("test", *n)) {
            assert!(param_type(kind, name).is_ok(), "{name}");
        }
        assert_eq!(meta_struct().to_string().matches(';').count(), META_PARAMS.len() - 1);
    }

    #[test]
    fn other_kinds_take_anything_and_test_names_its_params() {
        assert_eq!(param_type("file", "content"), Ok(None));
        assert_eq!(param_type("test", "int8"), Ok(Some(Type::Int)));
        assert!(param_type("test", "nope").unwrap_err().contains(&"anotherstr"));
        assert_eq!(meta_type("limit"), Ok(Type::Float));
        assert_eq!(meta_type("autoEdge"), Ok(Type::Bool));
        assert!(meta_type("colour").is_err());
        assert_eq!(meta_type("Sensitive"), Ok(Type::Bool));
        assert!(!meta_struct().to_string().contains("sensitive"));
    }
}
