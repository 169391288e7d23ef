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
    pub value: String,
}

impl Kv {
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.name)
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
        if let Some(why) = value_too_large(&self.value) {
            return Err(ValidationError::new("value", why));
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
        let want: &str = received.as_deref().unwrap_or(&self.value);
        // A received value is not validated with the graph.
        if let Some(why) = value_too_large(want) {
            return Err(ResourceError::msg(format!("the received value {why}")));
        }
        let have = ctx.world.kv_get(self.key()).await.map_err(|e| ResourceError::msg(e.to_string()))?;
        // Values may be secrets: the change logged names the key only, values go to debug.
        let change = match have {
            Some(v) if v.value == *want => return Ok(vec![]),
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
}
