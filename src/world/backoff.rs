//! Exponential backoff with jitter, for every task that retries etcd: the agent's
//! connection, registration, exports, the mirrors and the deploy follower.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff between retries: from 100 ms doubling to 2 s, each wait drawn at
/// random from its upper half, so that agents which lost etcd together do not all come back
/// at the same instant.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(2);

    pub fn new() -> Backoff {
        Backoff(Self::FIRST)
    }

    /// The next wait: somewhere in [d/2, d] for the current step d.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        jittered(step, fastrand::f64())
    }

    /// Wait for the next delay, or until `cancel`.
    pub async fn wait(&mut self, cancel: &CancellationToken) {
        let d = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = cancel.cancelled() => {}
        }
    }

    /// Start again from the first step (after a success).
    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// The wait of step `step` for a draw `unit` in [0, 1): from `step / 2` (at 0) up to `step`.
fn jittered(step: Duration, unit: f64) -> Duration {
    step / 2 + step.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_spans_the_upper_half_of_the_step() {
        let step = Duration::from_millis(800);
        assert_eq!(jittered(step, 0.0), Duration::from_millis(400));
        assert_eq!(jittered(step, 0.5), Duration::from_millis(600));
        assert_eq!(jittered(step, 1.0), step);
        // A draw out of range (never made by fastrand) still gives a wait in the range.
        assert_eq!(jittered(step, -3.0), Duration::from_millis(400));
        assert_eq!(jittered(step, 7.0), step);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new();
        let mut steps = Vec::new();
        for _ in 0..8 {
            steps.push(b.next_delay());
        }
        let caps = [100, 200, 400, 800, 1600, 2000, 2000, 2000].map(Duration::from_millis);
        for (d, cap) in steps.iter().zip(caps) {
            assert!(*d >= cap / 2 && *d <= cap, "{d:?} not in [{:?}, {cap:?}]", cap / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Backoff::FIRST);
        // Jitter: many draws at one step are not all equal.
        let draws: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| Backoff::new().next_delay()).collect();
        assert!(draws.len() > 1, "{draws:?}");
    }

    #[test]
    fn draws_spread_over_both_halves_of_the_range() {
        // 500 draws all in one half of [50 ms, 100 ms] would happen with probability 2^-499.
        let draws: Vec<Duration> = (0..500).map(|_| Backoff::new().next_delay()).collect();
        let middle = Duration::from_millis(75);
        assert!(draws.iter().all(|d| *d >= Backoff::FIRST / 2 && *d <= Backoff::FIRST), "{draws:?}");
        assert!(draws.iter().any(|d| *d < middle) && draws.iter().any(|d| *d > middle), "{draws:?}");
    }
}
