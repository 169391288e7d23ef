//! Meta params: engine behaviour that any resource can carry (`meta: {...}`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ValidationError;
use super::limits::MAX_INTERVAL_SECS;

/// The shortest wait between retries when they go on forever (`retry: -1`), so that a
/// resource that keeps failing does not spin.
pub const MIN_FOREVER_DELAY_MS: u64 = 100;

/// The longest wait between retries: one day, in milliseconds.
pub const MAX_DELAY_MS: u64 = 24 * 3600 * 1000;

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
    /// Never log what the resource's content is or becomes (no content diff, no command
    /// output), only that it changed.
    pub sensitive: bool,
}

impl Default for Meta {
    fn default() -> Self {
        Meta { retry: 0, delay: 0, poll: 0, limit: None, burst: 1, noop: false, sensitive: false }
    }
}

impl Meta {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.retry < -1 {
            return Err(ValidationError::new("meta.retry", "must be -1 (forever) or at least 0"));
        }
        // One check per `1/limit` seconds must be a wait the clock can hold.
        if let Some(limit) = self.limit
            && !(limit.is_finite() && limit * MAX_INTERVAL_SECS as f64 >= 1.0)
        {
            return Err(ValidationError::new(
                "meta.limit",
                format!(
                    "must be a positive number of events per second, at least one per ten years (1/{MAX_INTERVAL_SECS})"
                ),
            ));
        }
        if self.poll > MAX_INTERVAL_SECS {
            return Err(ValidationError::new(
                "meta.poll",
                format!("is in seconds and must be at most ten years ({MAX_INTERVAL_SECS})"),
            ));
        }
        if self.burst == 0 {
            return Err(ValidationError::new("meta.burst", "must be at least 1"));
        }
        if self.delay > MAX_DELAY_MS {
            return Err(ValidationError::new("meta.delay", "is in milliseconds and must be at most one day"));
        }
        Ok(())
    }

    /// What a numeric meta param (`meta.burst`) accepts, in words: a value of the wrong type
    /// or out of the type's range is reported with the range [`Meta::validate`] allows, not
    /// the range of the Rust type that holds it.
    pub fn accepted_values(field: &str) -> Option<String> {
        Some(match field {
            "meta.retry" => format!("-1 (forever) or a whole number from 0 to {}", i32::MAX),
            "meta.delay" => format!("a whole number of milliseconds from 0 to {MAX_DELAY_MS} (one day)"),
            "meta.poll" => format!("a whole number of seconds from 0 to {MAX_INTERVAL_SECS} (ten years)"),
            "meta.burst" => format!("a whole number from 1 to {}", u32::MAX),
            "meta.limit" => "a positive number of events per second".into(),
            _ => return None,
        })
    }

    /// The wait between retries of a failed check: `delay`, but at least
    /// [`MIN_FOREVER_DELAY_MS`] when retries go on forever.
    pub fn retry_delay(&self) -> Duration {
        let ms = if self.retry < 0 { self.delay.max(MIN_FOREVER_DELAY_MS) } else { self.delay };
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_validation_names_the_field() {
        let m = Meta { limit: Some(-1.0), ..Meta::default() };
        assert_eq!(m.validate().unwrap_err().field, "meta.limit");
        let m = Meta { retry: -2, ..Meta::default() };
        assert_eq!(m.validate().unwrap_err().field, "meta.retry");
        assert!(Meta::default().validate().is_ok());
    }

    #[test]
    fn limit_must_allow_one_check_within_ten_years() {
        for bad in [1e-300, 1e-9, 0.0, -0.0, f64::INFINITY, f64::NAN, f64::MIN_POSITIVE] {
            let m = Meta { limit: Some(bad), ..Meta::default() };
            assert_eq!(m.validate().unwrap_err().field, "meta.limit", "{bad}");
        }
        for good in [1.0 / MAX_INTERVAL_SECS as f64, 0.001, 5.0, 1e300, f64::MAX] {
            let m = Meta { limit: Some(good), ..Meta::default() };
            assert!(m.validate().is_ok(), "{good}");
        }
    }

    #[test]
    fn accepted_values_match_validation() {
        let burst = Meta::accepted_values("meta.burst").unwrap();
        assert_eq!(burst, "a whole number from 1 to 4294967295");
        assert!(Meta { burst: 0, ..Meta::default() }.validate().is_err());
        assert!(Meta { burst: u32::MAX, ..Meta::default() }.validate().is_ok());
        let delay = Meta::accepted_values("meta.delay").unwrap();
        assert!(delay.contains(&format!("to {MAX_DELAY_MS} ")), "{delay}");
        assert!(Meta { delay: MAX_DELAY_MS + 1, ..Meta::default() }.validate().is_err());
        assert!(Meta { delay: MAX_DELAY_MS, ..Meta::default() }.validate().is_ok());
        assert!(Meta::accepted_values("meta.retry").unwrap().starts_with("-1 (forever)"));
        assert!(Meta::accepted_values("meta.noop").is_none());
    }

    #[test]
    fn poll_is_at_most_ten_years() {
        let m = Meta { poll: MAX_INTERVAL_SECS + 1, ..Meta::default() };
        assert_eq!(m.validate().unwrap_err().field, "meta.poll");
        let m = Meta { poll: MAX_INTERVAL_SECS, ..Meta::default() };
        assert!(m.validate().is_ok());
        assert!(std::time::Instant::now().checked_add(Duration::from_secs(m.poll)).is_some());
    }

    #[test]
    fn forever_retries_wait_at_least_the_minimum() {
        let m = Meta { retry: -1, delay: 0, ..Meta::default() };
        assert_eq!(m.retry_delay(), Duration::from_millis(MIN_FOREVER_DELAY_MS));
        let m = Meta { retry: -1, delay: 5000, ..Meta::default() };
        assert_eq!(m.retry_delay(), Duration::from_millis(5000));
        let m = Meta { retry: 3, delay: 0, ..Meta::default() };
        assert_eq!(m.retry_delay(), Duration::ZERO);
    }
}
