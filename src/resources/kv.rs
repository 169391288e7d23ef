//! `kv`: a cluster-wide value (`kv/<key>` under the etcd namespace; in memory when the agent
//! runs standalone). Watched: a value changed or deleted by anything else is written back.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

use super::{ApplyCtx, Changes, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::contract::Meta;

/// The largest value, in bytes as stored (JSON-escaped): etcd refuses requests over 1.5 MiB
/// by default, and the stored record adds the key and the writer's hostname.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Why a value cannot be stored: too large once escaped as JSON. Pure.
fn value_too_large(value: &str) -> Option<String> {
    // Control characters grow sixfold as JSON, so the stored size is what is bounded.
    let stored = serde_json::to_string(value).map_or(usize::MAX, |j| j.len());
    (stored > MAX_VALUE_BYTES).then(|| {
        format!("is {stored} bytes as stored (JSON); at most {MAX_VALUE_BYTES} bytes (1 MiB) fit in etcd")
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kv {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// Defaults to the name.
    #[serde(default)]
    pub key: Option<String>,
    /// The value; unset, the key is removed.
    #[serde(default)]
    pub value: Option<String>,
    /// Upstream's one value per host under the key. Not supported: a key holds one value
    /// and the host that wrote it last, so only `false` is accepted (see `validate`).
    #[serde(default)]
    pub mapped: bool,
    /// Leave a stored value that is greater than ours (by `skipcmpstyle`) as it is, except
    /// on a refresh: a counter that only goes up.
    #[serde(default)]
    pub skiplessthan: bool,
    /// How `skiplessthan` compares: 0 as integers, 1 as text.
    #[serde(default)]
    pub skipcmpstyle: u8,
}

/// `skipcmpstyle`: compare as integers.
const CMP_INT: u8 = 0;
/// `skipcmpstyle`: compare as text.
const CMP_TEXT: u8 = 1;

impl Kv {
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.name)
    }
}

/// Whether `stored` is greater than `ours` as `style` compares them, so that `skiplessthan`
/// leaves it. A stored value that is not an integer (an old or foreign one) is never
/// greater: it is written over. Pure.
fn stored_is_greater(ours: &str, stored: &str, style: u8) -> bool {
    match style {
        CMP_INT => match (ours.trim().parse::<i64>(), stored.trim().parse::<i64>()) {
            (Ok(ours), Ok(stored)) => stored > ours,
            _ => false,
        },
        _ => stored > ours,
    }
}

#[async_trait]
impl Resource for Kv {
    crate::resource_common!("kv");

    fn validate(&self) -> Result<(), ValidationError> {
        let field = if self.key.is_some() { "key" } else { "name" };
        let k = self.key();
        if k.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if k.chars().any(|c| c.is_control()) {
            return Err(ValidationError::new(
                field,
                format!("`{}` contains control characters", k.escape_debug()),
            ));
        }
        if let Some(why) = self.value.as_deref().and_then(value_too_large) {
            return Err(ValidationError::new("value", why));
        }
        if self.mapped {
            return Err(ValidationError::new(
                "mapped",
                "is not supported: upstream keeps one value per host under a mapped key, and `world.kvlookup` reads them all, \
                 but here a key holds one value and the host that wrote it last, so hosts writing one mapped key would \
                 overwrite each other; give each host a key of its own (`key` with the host name in it) and leave `mapped` false",
            ));
        }
        if self.skipcmpstyle > CMP_TEXT {
            return Err(ValidationError::new("skipcmpstyle", "must be 0 (compare as integers) or 1 (as text)"));
        }
        if self.skiplessthan
            && self.skipcmpstyle == CMP_INT
            && let Some(v) = &self.value
            && v.trim().parse::<i64>().is_err()
        {
            return Err(ValidationError::new("value", format!("`{v}` is not an integer, as `skipcmpstyle: 0` compares")));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let mut changes = ctx.world.kv_changes();
        ctx.event();
        loop {
            match changes.recv().await {
                Ok(k) if k == self.key() => ctx.event(),
                Ok(_) => {}
                // Missed some: ours may be among them.
                Err(RecvError::Lagged(_)) => ctx.event(),
                Err(RecvError::Closed) => return Err(ResourceError::msg("the world stopped")),
            }
        }
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let received = ctx.recv.get("value").map(|v| v.as_text());
        let Some(want) = received.as_deref().or(self.value.as_deref()) else {
            return self.remove(ctx, apply).await;
        };
        // A received value is not validated with the graph.
        if let Some(why) = value_too_large(want) {
            return Err(ResourceError::msg(format!("the received value {why}")));
        }
        let have = ctx.world.kv_get(self.key()).await.map_err(|e| ResourceError::msg(e.to_string()))?;
        // Values may be secrets: the change logged names the key only, values go to debug.
        let change = match have {
            Some(v) if v.value == *want => return Ok(vec![]),
            Some(v)
                if self.skiplessthan
                    && !ctx.trigger.refresh
                    && stored_is_greater(want, &v.value, self.skipcmpstyle) =>
            {
                return Ok(vec![]);
            }
            Some(v) => {
                debug!("kv[{}]: {}: {want:?} (was {:?})", self.name, self.key(), v.value);
                format!("set {} (it had another value)", self.key())
            }
            None => {
                debug!("kv[{}]: {}: {want:?} (was unset)", self.name, self.key());
                format!("set {} (it was unset)", self.key())
            }
        };
        if apply {
            ctx.world.kv_put(self.key(), want).await.map_err(|e| ResourceError::msg(e.to_string()))?;
        }
        Ok(vec![change.into()])
    }

    fn recv_fields(&self) -> &'static [&'static str] {
        &["value"]
    }
}

impl Kv {
    /// No value: the key must not exist.
    async fn remove(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let world = |e: crate::world::WorldError| ResourceError::msg(e.to_string());
        if ctx.world.kv_get(self.key()).await.map_err(world)?.is_none() {
            return Ok(vec![]);
        }
        if apply {
            ctx.world.kv_delete(self.key()).await.map_err(world)?;
        }
        Ok(vec![format!("remove {}", self.key()).into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_bounded_by_its_stored_size() {
        assert!(value_too_large(&"a".repeat(MAX_VALUE_BYTES - 2)).is_none());
        assert!(value_too_large(&"a".repeat(MAX_VALUE_BYTES - 1)).is_some());
        // Sixfold once escaped.
        assert!(value_too_large(&"\u{1}".repeat(MAX_VALUE_BYTES / 5)).is_some());
    }

    #[test]
    fn skiplessthan_leaves_a_greater_stored_value() {
        assert!(stored_is_greater("5", "12", CMP_INT), "12 > 5 as integers");
        assert!(!stored_is_greater("12", "5", CMP_INT));
        assert!(!stored_is_greater("5", "junk", CMP_INT), "a stored non-integer is written over");
        assert!(stored_is_greater("12", "5", CMP_TEXT), "\"5\" > \"12\" as text");
        assert!(!stored_is_greater("b", "a", CMP_TEXT));
    }

    #[test]
    fn mapped_and_bad_compare_styles_are_refused() {
        let kv = |extra: serde_json::Value| {
            let mut j = serde_json::json!({"name": "k", "value": "1"});
            j.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<Kv>(j).unwrap().validate()
        };
        assert_eq!(kv(serde_json::json!({"mapped": true})).unwrap_err().field, "mapped");
        assert_eq!(kv(serde_json::json!({"skipcmpstyle": 2})).unwrap_err().field, "skipcmpstyle");
        let e = kv(serde_json::json!({"skiplessthan": true, "value": "x"})).unwrap_err();
        assert_eq!(e.field, "value");
        assert!(kv(serde_json::json!({"skiplessthan": true, "skipcmpstyle": 1, "value": "x"})).is_ok());
        let unset: Kv = serde_json::from_value(serde_json::json!({"name": "k"})).unwrap();
        assert!(unset.validate().is_ok() && unset.value.is_none(), "no value: the key is removed");
    }
}
