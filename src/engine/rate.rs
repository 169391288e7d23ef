//! The token bucket behind `meta.limit` and `meta.burst`, and behind the vertex's rate limit
//! on retry warnings.

use std::time::{Duration, Instant};

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

    /// Take a token if one is there; never waits (and never goes into debt).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Meta;
    use crate::contract::limits::MAX_INTERVAL_SECS;

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
    fn every_valid_limit_and_burst_gives_a_wait_without_panicking() {
        let t0 = Instant::now();
        for limit in [1.0 / MAX_INTERVAL_SECS as f64, 1e-3, 1.0, 1e300, f64::MAX] {
            for burst in [1, 2, u32::MAX] {
                let m = Meta { limit: Some(limit), burst, ..Meta::default() };
                assert!(m.validate().is_ok());
                let mut l = RateLimiter::new(limit, burst);
                let mut now = t0;
                for _ in 0..4 {
                    // Like the vertex: take a token, sleep the wait, then check.
                    let wait = l.reserve(now);
                    assert!(wait <= Duration::from_secs(MAX_INTERVAL_SECS + 1), "{limit} {burst}: {wait:?}");
                    assert!(tokio::time::Instant::now().checked_add(wait).is_some());
                    now += wait;
                }
            }
        }
    }

    #[test]
    fn try_take_allows_a_burst_then_one_per_period() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(0.1, 3);
        assert!(l.try_take(t0) && l.try_take(t0) && l.try_take(t0));
        assert!(!l.try_take(t0));
        assert!(!l.try_take(t0 + Duration::from_secs(5)));
        assert!(l.try_take(t0 + Duration::from_secs(10)));
        assert!(!l.try_take(t0 + Duration::from_secs(11)));
    }
}
