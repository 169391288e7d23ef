//! `print`: writes its message to standard output when started and on every refresh.

use std::io::Write;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, Changes, ResResult, Resource, ValidationError, WatchCtx};
use crate::contract::Meta;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Print {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// Defaults to the name.
    #[serde(default)]
    pub msg: Option<String>,
    /// Print only when refreshed by a `notify` edge, not when the graph starts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_only: bool,
}

#[async_trait]
impl Resource for Print {
    crate::resource_common!("print");

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let t = ctx.trigger;
        let asked = if self.refresh_only { t.refresh } else { t.first || t.event || t.refresh };
        if !asked {
            return Ok(vec![]);
        }
        let received = ctx.recv.get("msg").map(|v| v.as_text());
        let msg: &str = received.as_deref().or(self.msg.as_deref()).unwrap_or(&self.name);
        if apply {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{msg}");
            let _ = out.flush();
        }
        Ok(vec![format!("print {msg:?}").into()])
    }

    fn recv_fields(&self) -> &'static [&'static str] {
        &["msg"]
    }
}
