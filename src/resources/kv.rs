//! `kv`: a cluster-wide value (`kv/<key>` under the etcd namespace; in memory when the agent
//! runs standalone). Watched: a value changed or deleted by anything else is written back.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

use super::{ApplyCtx, Changes, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::engine::meta::Meta;

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
        let want = ctx.recv.get("value").unwrap_or(&self.value);
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
        Ok(vec![change])
    }

    fn recv_fields(&self) -> &'static [&'static str] {
        &["value"]
    }
}
