//! `timer`: ticks every `interval` seconds; a tick counts as a change, so `notify` edges
//! from a timer refresh what is downstream periodically.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, Changes, ResResult, Resource, ValidationError, WatchCtx};
use crate::contract::Meta;
use crate::contract::limits::MAX_INTERVAL_SECS;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timer {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// Seconds between ticks.
    pub interval: u64,
}

#[async_trait]
impl Resource for Timer {
    crate::resource_common!("timer");

    fn validate(&self) -> Result<(), ValidationError> {
        if self.interval == 0 {
            return Err(ValidationError::new("interval", "must be at least 1 second"));
        }
        if self.interval > MAX_INTERVAL_SECS {
            return Err(ValidationError::new(
                "interval",
                format!("is in seconds and must be at most ten years ({MAX_INTERVAL_SECS})"),
            ));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let period = Duration::from_secs(self.interval);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ctx.event();
        loop {
            ticker.tick().await;
            ctx.event();
        }
    }

    async fn check_apply(&self, ctx: &ApplyCtx, _apply: bool) -> ResResult<Changes> {
        if ctx.trigger.event && !ctx.trigger.first {
            return Ok(vec!["tick".into()]);
        }
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(interval: u64) -> Timer {
        Timer { name: "t".into(), meta: Meta::default(), interval }
    }

    #[test]
    fn interval_is_between_one_second_and_ten_years() {
        for bad in [0, MAX_INTERVAL_SECS + 1, i64::MAX as u64, u64::MAX] {
            assert_eq!(timer(bad).validate().unwrap_err().field, "interval", "{bad}");
        }
        for good in [1, 60, MAX_INTERVAL_SECS] {
            assert!(timer(good).validate().is_ok(), "{good}");
            // What `watch` does with it must not overflow the clock.
            assert!(tokio::time::Instant::now().checked_add(Duration::from_secs(2 * good)).is_some());
        }
    }
}
