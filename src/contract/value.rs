//! Values carried over send/recv edges: typed, so a number stays a number from the resource
//! that sends it to the one that receives it, and a frontend with typed values (lists, maps,
//! structs) can hand them on without flattening them to text.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The value as a param that holds text receives it: a string as it is, anything else in
    /// its written form (`0`, `true`, `[1, 2]`).
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s) => Cow::Borrowed(s),
            other => Cow::Owned(other.to_string()),
        }
    }

    /// The name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// The written form: strings quoted inside lists and maps, bare at the top level of
/// [`Value::as_text`].
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(items) => {
                write!(f, "[")?;
                for (i, v) in items.iter().enumerate() {
                    write!(f, "{}{v}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "]")
            }
            Value::Map(map) => {
                write!(f, "{{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    write!(f, "{}{k:?}: {v}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "}}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_params_receive_strings_as_they_are_and_other_values_written_out() {
        assert_eq!(Value::from("a \"b\"\n").as_text(), "a \"b\"\n");
        assert_eq!(Value::Int(-3).as_text(), "-3");
        assert_eq!(Value::Bool(true).as_text(), "true");
        assert_eq!(Value::Float(1.0).as_text(), "1.0");
        let list = Value::List(vec![Value::Int(1), Value::from("x")]);
        assert_eq!(list.as_text(), "[1, \"x\"]");
        let map = Value::Map(BTreeMap::from([("k".to_string(), list)]));
        assert_eq!(map.as_text(), "{\"k\": [1, \"x\"]}");
    }

    #[test]
    fn values_keep_their_type_through_json() {
        for v in [Value::Int(7), Value::from("7"), Value::Bool(false), Value::Float(0.5)] {
            let back: Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(back, v);
            assert_eq!(back.type_name(), v.type_name());
        }
    }
}
