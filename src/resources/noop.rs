//! `noop`: does nothing; useful as a join point for edges.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, Changes, ResResult, Resource, ValidationError, WatchCtx};
use crate::contract::Meta;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noop {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// Words for whoever reads the graph; changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[async_trait]
impl Resource for Noop {
    crate::resource_common!("noop");

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, _ctx: &ApplyCtx, _apply: bool) -> ResResult<Changes> {
        Ok(vec![])
    }
}
