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
}

#[async_trait]
impl Resource for Print {
    crate::resource_common!("print");

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        ctx.event();
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let t = ctx.trigger;
        if !(t.first || t.event || t.refresh) {
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
