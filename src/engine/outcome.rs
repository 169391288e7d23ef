//! What a run did: the changes the vertices made (or, in noop mode, would make) and the checks
//! that failed, counted as they happen, for `--detailed-exitcodes`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::world::{RecentChange, STATUS_CHANGES_MAX};

/// Changes and failures counted since the engine started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Changes made, or in noop mode found and not made.
    pub changes: u64,
    /// Checks that failed with their retries used up.
    pub failures: u64,
}

impl Outcome {
    /// The exit code of `--detailed-exitcodes`, as Puppet has it: 0 nothing to do, 2 changes
    /// (made, or in noop mode that would be made), 4 failures, 6 both.
    pub fn detailed_exit_code(&self) -> u8 {
        let changed = if self.changes > 0 { 2 } else { 0 };
        let failed = if self.failures > 0 { 4 } else { 0 };
        changed | failed
    }
}

/// The counters behind [`Outcome`], shared by the vertex tasks.
#[derive(Debug, Default)]
pub struct Tally {
    changes: AtomicU64,
    failures: AtomicU64,
    /// The last [`STATUS_CHANGES_MAX`] changes, oldest first, for `mgmt status`.
    recent: Mutex<VecDeque<RecentChange>>,
}

impl Tally {
    /// A check found (and, unless in noop mode, made) `n` changes.
    pub fn changed(&self, n: usize) {
        self.changes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Remember a change for `mgmt status`; the oldest is forgotten past
    /// [`STATUS_CHANGES_MAX`].
    pub fn remember(&self, change: RecentChange) {
        let mut recent = self.recent.lock().unwrap();
        if recent.len() == STATUS_CHANGES_MAX {
            recent.pop_front();
        }
        recent.push_back(change);
    }

    /// The last changes, oldest first.
    pub fn recent(&self) -> Vec<RecentChange> {
        self.recent.lock().unwrap().iter().cloned().collect()
    }

    /// A check failed, its retries used up.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn outcome(&self) -> Outcome {
        Outcome {
            changes: self.changes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detailed_exit_codes_are_0_2_4_and_6() {
        let code = |changes, failures| Outcome { changes, failures }.detailed_exit_code();
        assert_eq!(code(0, 0), 0);
        assert_eq!(code(3, 0), 2);
        assert_eq!(code(0, 1), 4);
        assert_eq!(code(1, 2), 6);
    }

    #[test]
    fn the_tally_adds_up_changes_and_failures() {
        let t = Tally::default();
        assert_eq!(t.outcome(), Outcome::default());
        t.changed(0);
        assert_eq!(t.outcome().detailed_exit_code(), 0);
        t.changed(2);
        t.changed(1);
        t.failed();
        assert_eq!(t.outcome(), Outcome { changes: 3, failures: 1 });
        assert_eq!(t.outcome().detailed_exit_code(), 6);
    }

    #[test]
    fn the_tally_keeps_only_the_most_recent_changes_oldest_first() {
        let t = Tally::default();
        for i in 0..STATUS_CHANGES_MAX + 3 {
            t.remember(RecentChange { change: i.to_string(), ..Default::default() });
        }
        let kept: Vec<String> = t.recent().into_iter().map(|c| c.change).collect();
        let want: Vec<String> = (3..STATUS_CHANGES_MAX + 3).map(|i| i.to_string()).collect();
        assert_eq!(kept, want);
    }
}
