//! `exit`: ends the agent's run with an exit code once it is applied (after the resources
//! before it in the graph). Nothing to watch: it acts on its first check, and again on a
//! refresh. In noop mode it only says that it would end the run.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, Changes, ResResult, Resource, ValidationError, WatchCtx};
use crate::contract::Meta;

/// The highest code: 126 and above mean "could not run" and "killed by a signal" to shells.
pub const MAX_CODE: u8 = 125;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exit {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// The exit code the run ends with, 0 to 125.
    #[serde(default)]
    pub code: u8,
}

#[async_trait]
impl Resource for Exit {
    crate::resource_common!("exit");

    fn validate(&self) -> Result<(), ValidationError> {
        if self.code > MAX_CODE {
            return Err(ValidationError::new(
                "code",
                format!("{} is out of range: 0 to {MAX_CODE} (126 and above mean other things to shells)", self.code),
            ));
        }
        Ok(())
    }

    /// Nothing outside changes an exit: it is checked once, when it starts.
    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        if apply {
            ctx.local.request_exit(self.code);
        }
        Ok(vec![format!("end the run with exit code {}", self.code).into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_above_125_are_refused() {
        let exit = |code: u8| Exit { name: "e".into(), meta: Meta::default(), code };
        assert!(exit(0).validate().is_ok());
        assert!(exit(125).validate().is_ok());
        let e = exit(126).validate().unwrap_err();
        assert_eq!(e.field, "code");
        assert!(e.message.contains("0 to 125"), "{}", e.message);
    }
}
