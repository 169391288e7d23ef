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
    /// Add the edges this resource's kind implies (a file after its directory); `false`:
    /// only the edges written.
    #[serde(skip_serializing_if = "is_true")]
    pub autoedge: bool,
    /// Let resources of a kind that can be applied together be grouped into one vertex
    /// (`pkg`s: one apt transaction); `false`: never grouped.
    #[serde(skip_serializing_if = "is_true")]
    pub autogroup: bool,
    /// Semaphores, `id` or `id:count` (count 1 when not given), each shared by every
    /// resource naming the same text: at most `count` of them are checked at once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sema: Vec<String>,
    /// Allow a name that starts with `$`, which is otherwise refused as a likely variable
    /// that was not interpolated.
    #[serde(skip_serializing_if = "is_false")]
    pub dollar: bool,
    /// Not applied on this host, and managing nothing here; still exported (`@@name`), so
    /// that another host collects it.
    #[serde(skip_serializing_if = "is_false")]
    pub hidden: bool,
    /// A watch that failed for good (its retries used up) starts again when a new graph
    /// keeps this resource.
    #[serde(skip_serializing_if = "is_false")]
    pub rewatch: bool,
    /// Converge at least once before a graph swap removes or changes it: the old vertex
    /// runs on until it has (or cannot), and what replaces it waits for it.
    #[serde(skip_serializing_if = "is_false")]
    pub realize: bool,
    /// Once this resource leaves the graph, undo it: the state it found before it first
    /// applied is recorded under the agent's prefix and put back (kinds that can: `file`).
    #[serde(skip_serializing_if = "is_false")]
    pub reverse: bool,
    /// Start the retries afresh after a check that succeeds. This agent always does: each
    /// new reason to check starts with the full `retry` count.
    #[serde(skip_serializing_if = "is_false")]
    pub retryreset: bool,
    /// Forget the retry state when the resource's params change. This agent always does: a
    /// changed resource is a new vertex with the full `retry` count.
    #[serde(skip_serializing_if = "is_false")]
    pub reset: bool,
    /// Upstream's limit on a check's time: accepted as 0 only (see [`NOT_SUPPORTED`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub timeout: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            retry: 0,
            delay: 0,
            poll: 0,
            limit: None,
            burst: 1,
            noop: false,
            sensitive: false,
            autoedge: true,
            autogroup: true,
            sema: Vec::new(),
            dollar: false,
            hidden: false,
            rewatch: false,
            realize: false,
            reverse: false,
            retryreset: false,
            reset: false,
            timeout: 0,
        }
    }
}

// The params added for upstream's graphs are left out of the JSON when they have their
// usual value, so that a graph's JSON (and an export) shows only what was set.
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The meta params accepted only with their usual value, and why.
const NOT_SUPPORTED: [(&str, &str); 1] =
    [("meta.timeout", "a check has no time limit here; `exec` has its own `timeout`")];

/// The longest semaphore count: more would be no limit.
pub const MAX_SEMA_COUNT: usize = 1 << 20;

/// The count of a semaphore id: the number after its last `:`, or 1.
pub fn sema_count(id: &str) -> Result<usize, String> {
    let Some((name, count)) = id.rsplit_once(':') else {
        return if id.is_empty() { Err("an id must not be empty".into()) } else { Ok(1) };
    };
    if name.is_empty() {
        return Err(format!("`{id}` has no id before its count"));
    }
    match count.parse::<usize>() {
        Ok(n @ 1..=MAX_SEMA_COUNT) => Ok(n),
        _ => Err(format!("`{id}`: the count after `:` must be a whole number from 1 to {MAX_SEMA_COUNT}")),
    }
}

impl Meta {
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_unsupported()?;
        for id in &self.sema {
            sema_count(id).map_err(|why| ValidationError::new("meta.sema", why))?;
        }
        if self.retry < -1 {
            return Err(ValidationError::new("meta.retry", "must be -1 (forever) or at least 0"));
        }
        // One check per `1/limit` seconds must be a wait the clock can hold.
        if let Some(limit) = self.limit
            && limit != f64::INFINITY
            && !(limit.is_finite() && limit * MAX_INTERVAL_SECS as f64 >= 1.0)
        {
            return Err(ValidationError::new(
                "meta.limit",
                format!(
                    "must be a positive number of events per second, at least one per ten years (1/{MAX_INTERVAL_SECS}), or .inf (no limit)"
                ),
            ));
        }
        if self.poll > MAX_INTERVAL_SECS {
            return Err(ValidationError::new(
                "meta.poll",
                format!("is in seconds and must be at most ten years ({MAX_INTERVAL_SECS})"),
            ));
        }
        // Upstream writes `burst: 0` beside `limit: .inf`: no burst is needed without a limit.
        if self.burst == 0 && self.rate_limit().is_some() {
            return Err(ValidationError::new("meta.burst", "must be at least 1 when `limit` is set"));
        }
        if self.delay > MAX_DELAY_MS {
            return Err(ValidationError::new("meta.delay", "is in milliseconds and must be at most one day"));
        }
        Ok(())
    }

    fn validate_unsupported(&self) -> Result<(), ValidationError> {
        let set = [self.timeout != 0];
        match NOT_SUPPORTED.iter().zip(set).find(|(_, set)| *set) {
            Some(((field, why), _)) => Err(ValidationError::new(
                field,
                format!("is not supported by this agent: {why}; leave it unset"),
            )),
            None => Ok(()),
        }
    }

    /// The rate limit on checks, if there is one (`limit: .inf` is none).
    pub fn rate_limit(&self) -> Option<f64> {
        self.limit.filter(|l| l.is_finite())
    }

    /// What a numeric meta param (`meta.burst`) accepts, in words: a value of the wrong type
    /// or out of the type's range is reported with the range [`Meta::validate`] allows, not
    /// the range of the Rust type that holds it.
    pub fn accepted_values(field: &str) -> Option<String> {
        Some(match field {
            "meta.retry" => format!("-1 (forever) or a whole number from 0 to {}", i32::MAX),
            "meta.delay" => format!("a whole number of milliseconds from 0 to {MAX_DELAY_MS} (one day)"),
            "meta.poll" => format!("a whole number of seconds from 0 to {MAX_INTERVAL_SECS} (ten years)"),
            "meta.burst" => format!("a whole number from 0 to {} (at least 1 with a `limit`)", u32::MAX),
            "meta.limit" => "a positive number of events per second, or .inf".into(),
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
        for bad in [1e-300, 1e-9, 0.0, -0.0, f64::NEG_INFINITY, f64::NAN, f64::MIN_POSITIVE] {
            let m = Meta { limit: Some(bad), ..Meta::default() };
            assert_eq!(m.validate().unwrap_err().field, "meta.limit", "{bad}");
        }
        for good in [1.0 / MAX_INTERVAL_SECS as f64, 0.001, 5.0, 1e300, f64::MAX, f64::INFINITY] {
            let m = Meta { limit: Some(good), ..Meta::default() };
            assert!(m.validate().is_ok(), "{good}");
        }
        assert_eq!(
            Meta { limit: Some(f64::INFINITY), ..Meta::default() }.rate_limit(),
            None,
            ".inf: no limit"
        );
    }

    #[test]
    fn accepted_values_match_validation() {
        let burst = Meta::accepted_values("meta.burst").unwrap();
        assert_eq!(burst, "a whole number from 0 to 4294967295 (at least 1 with a `limit`)");
        assert!(Meta { burst: 0, limit: Some(2.0), ..Meta::default() }.validate().is_err());
        assert!(Meta { burst: 0, limit: Some(f64::INFINITY), ..Meta::default() }.validate().is_ok());
        assert!(Meta { burst: 0, ..Meta::default() }.validate().is_ok());
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

    #[test]
    fn sema_ids_take_a_count_after_their_last_colon() {
        assert_eq!(sema_count("db"), Ok(1));
        assert_eq!(sema_count("db:3"), Ok(3));
        assert_eq!(sema_count("a:b:2"), Ok(2));
        for bad in ["", ":2", "db:0", "db:x", "db:", "db:99999999999"] {
            assert!(sema_count(bad).is_err(), "{bad}");
            let m = Meta { sema: vec![bad.into()], ..Meta::default() };
            assert_eq!(m.validate().unwrap_err().field, "meta.sema", "{bad}");
        }
    }

    #[test]
    fn an_unsupported_meta_param_is_refused_with_its_reason_unless_usual() {
        assert!(Meta { timeout: 0, ..Meta::default() }.validate().is_ok());
        let implemented = Meta {
            hidden: true,
            rewatch: true,
            reverse: true,
            retryreset: true,
            reset: true,
            realize: true,
            ..Meta::default()
        };
        assert!(implemented.validate().is_ok());
        let e = Meta { timeout: 5, ..Meta::default() }.validate().unwrap_err();
        assert_eq!(e.field, "meta.timeout");
    }
}
