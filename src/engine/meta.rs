//! Meta params: engine behaviour that any resource can carry (`meta: {...}`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::resources::ValidationError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Meta {
    /// How many times to retry a failing check/apply or watch; -1 retries forever.
    pub retry: i32,
    /// Milliseconds to wait between retries.
    pub delay: u64,
    /// Seconds between checks instead of watching; 0 watches.
    pub poll: u64,
    /// Most checks per second (token bucket); unset means unlimited.
    pub limit: Option<f64>,
    /// Checks allowed at once above `limit`.
    pub burst: u32,
    /// Check and report only; never change anything.
    pub noop: bool,
}

impl Default for Meta {
    fn default() -> Self {
        Meta { retry: 0, delay: 0, poll: 0, limit: None, burst: 1, noop: false }
    }
}

impl Meta {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.retry < -1 {
            return Err(ValidationError::new("meta.retry", "must be -1 (forever) or at least 0"));
        }
        if let Some(limit) = self.limit
            && !(limit.is_finite() && limit > 0.0)
        {
            return Err(ValidationError::new("meta.limit", "must be a positive number of events per second"));
        }
        if self.burst == 0 {
            return Err(ValidationError::new("meta.burst", "must be at least 1"));
        }
        if self.delay > 24 * 3600 * 1000 {
            return Err(ValidationError::new("meta.delay", "is in milliseconds and must be at most one day"));
        }
        Ok(())
    }
}

/// Token bucket for `limit` and `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter { per_second, burst, tokens: burst, last: Instant::now() }
    }

    /// How long to wait before the next check may run, taking a token if none is needed.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_burst_then_spaces_checks() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(10.0, 2);
        assert_eq!(l.reserve(t0), Duration::ZERO);
        assert_eq!(l.reserve(t0), Duration::ZERO);
        let wait = l.reserve(t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // After a full second the bucket is full again (capped at burst).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.reserve(t1), Duration::ZERO);
        assert_eq!(l.reserve(t1), Duration::ZERO);
        assert!(l.reserve(t1) > Duration::ZERO);
    }

    #[test]
    fn meta_validation_names_the_field() {
        let m = Meta { limit: Some(-1.0), ..Meta::default() };
        assert_eq!(m.validate().unwrap_err().field, "meta.limit");
        let m = Meta { retry: -2, ..Meta::default() };
        assert_eq!(m.validate().unwrap_err().field, "meta.retry");
        assert!(Meta::default().validate().is_ok());
    }
}
