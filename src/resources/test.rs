//! `test`: changes nothing and is always right. Its params have every value type a program
//! can give (with upstream's names), so it exercises the frontends; a few params make it
//! refuse to validate, fail, or send values, for tests of the engine around it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, Changes, ResResult, Resource, ResourceError, Sends, ValidationError, WatchCtx};
use crate::contract::{Meta, Value};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Test {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,

    #[serde(default)]
    pub bool: bool,
    #[serde(default)]
    pub str: String,

    #[serde(default)]
    pub int: i64,
    #[serde(default)]
    pub int8: i8,
    #[serde(default)]
    pub int16: i16,
    #[serde(default)]
    pub int32: i32,
    #[serde(default)]
    pub int64: i64,

    #[serde(default)]
    pub uint: u64,
    #[serde(default)]
    pub uint8: u8,
    #[serde(default)]
    pub uint16: u16,
    #[serde(default)]
    pub uint32: u32,
    #[serde(default)]
    pub uint64: u64,

    #[serde(default)]
    pub byte: u8,
    /// A Unicode code point.
    #[serde(default)]
    pub rune: i32,

    #[serde(default)]
    pub float32: f32,
    #[serde(default)]
    pub float64: f64,

    #[serde(default, alias = "bool_ptr")]
    pub boolptr: Option<bool>,
    #[serde(default, alias = "string_ptr")]
    pub stringptr: Option<String>,
    #[serde(default)]
    pub int64ptr: Option<i64>,
    #[serde(default)]
    pub int8ptr: Option<i8>,
    #[serde(default)]
    pub uint8ptr: Option<u8>,
    #[serde(default)]
    pub int8ptrptrptr: Option<i8>,

    #[serde(default)]
    pub slicestring: Vec<String>,
    #[serde(default)]
    pub mapintfloat: BTreeMap<i64, f64>,
    #[serde(default)]
    pub mixedstruct: MixedStruct,
    /// Any value at all.
    #[serde(default)]
    pub interface: Option<Value>,

    #[serde(default)]
    pub anotherstr: String,

    /// Set to refuse validation.
    #[serde(default, alias = "validate_bool")]
    pub validatebool: bool,
    /// Set to refuse validation with this message.
    #[serde(default, alias = "validate_error")]
    pub validateerror: String,
    #[serde(default, alias = "always_group")]
    pub alwaysgroup: bool,
    #[serde(default, alias = "compare_fail")]
    pub comparefail: bool,
    /// Sent as `hello` after each check.
    #[serde(default, alias = "send_value")]
    pub sendvalue: String,
    /// The fields it must receive over send/recv edges, when set: a check fails otherwise.
    #[serde(default, alias = "expect_recv")]
    pub expectrecv: Option<Vec<String>>,
    #[serde(default, alias = "only_show")]
    pub onlyshow: Vec<String>,
    /// Milliseconds a check waits before it fails; 0 never fails.
    #[serde(default)]
    pub waitforerror: i64,

    #[serde(default)]
    pub comment: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixedStruct {
    #[serde(default)]
    pub somebool: bool,
    #[serde(default)]
    pub somestr: String,
    #[serde(default)]
    pub someint: i64,
    #[serde(default)]
    pub somefloat: f64,
}

#[async_trait]
impl Resource for Test {
    crate::resource_common!("test");

    fn validate(&self) -> Result<(), ValidationError> {
        if self.validatebool {
            return Err(ValidationError::new("validatebool", "the validate param was set to true"));
        }
        if !self.validateerror.is_empty() {
            return Err(ValidationError::new(
                "validateerror",
                format!("the validate error param was set to: {}", self.validateerror),
            ));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, _apply: bool) -> ResResult<Changes> {
        if let Some(expected) = &self.expectrecv
            && expected.len() != ctx.recv.len()
        {
            let got: Vec<&String> = ctx.recv.keys().collect();
            return Err(ResourceError::msg(format!("the received keys differ from expected, got: {got:?}")));
        }
        if let Ok(ms) = u64::try_from(self.waitforerror)
            && ms > 0
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Err(ResourceError::msg(format!("waitforerror {:.4} seconds", ms as f64 / 1000.0)));
        }
        let sends: Sends =
            [("hello".to_string(), Value::Str(self.sendvalue.clone())), ("answer".to_string(), Value::Int(42))]
                .into_iter()
                .collect();
        ctx.send(sends);
        Ok(vec![])
    }

    fn send_fields(&self) -> &'static [&'static str] {
        &["hello", "answer"]
    }

    fn recv_fields(&self) -> &'static [&'static str] {
        &["str", "anotherstr", "stringptr", "int", "int64", "bool", "slicestring", "comment", "interface"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(value: serde_json::Value) -> Result<Box<dyn Resource>, String> {
        crate::resources::from_json("test", value)
    }

    #[test]
    fn every_value_type_decodes_from_json() {
        let res = decode(json!({
            "name": "t", "bool": true, "str": "s", "int": -1, "int8": -8, "uint16": 16, "byte": 255,
            "float32": 0.5, "stringptr": "p", "slicestring": ["a"], "mapintfloat": {"1": 1.5},
            "mixedstruct": {"somebool": true, "somestr": "x", "someint": 3, "somefloat": 2.5},
            "interface": [1, 2],
        }))
        .unwrap();
        let test = res.as_any().downcast_ref::<Test>().unwrap();
        assert_eq!(test.mapintfloat.get(&1), Some(&1.5));
        assert_eq!(test.mixedstruct.someint, 3);
        assert_eq!(res.validate(), Ok(()));
    }

    #[test]
    fn out_of_range_values_and_unknown_params_are_refused() {
        assert!(decode(json!({"name": "t", "int8": 300})).is_err());
        assert!(decode(json!({"name": "t", "uint": -1})).is_err());
        assert!(decode(json!({"name": "t", "nope": 1})).is_err());
    }

    #[test]
    fn validate_refuses_what_it_is_asked_to() {
        let bad = decode(json!({"name": "t", "validatebool": true})).unwrap();
        assert_eq!(bad.validate().unwrap_err().field, "validatebool");
        let bad = decode(json!({"name": "t", "validate_error": "no"})).unwrap();
        assert_eq!(bad.validate().unwrap_err().message, "the validate error param was set to: no");
    }
}
