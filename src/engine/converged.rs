//! Convergence tracking: how many vertices are busy and how many are not in their desired
//! state. Vertices report transitions; readers wait on a watch channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

/// What one vertex is doing, as far as convergence is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// Checking, applying, or waiting to.
    Busy,
    /// Idle in its desired state.
    Ok,
    /// Idle but not in its desired state: failed (retries used up) or blocked behind a
    /// failed upstream vertex.
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub vertices: usize,
    pub busy: usize,
    pub bad: usize,
}

impl Summary {
    pub fn idle(&self) -> bool {
        self.busy == 0
    }
    pub fn converged(&self) -> bool {
        self.busy == 0 && self.bad == 0
    }
}

#[derive(Debug)]
pub struct Convergence {
    vertices: AtomicUsize,
    busy: AtomicUsize,
    bad: AtomicUsize,
    tx: watch::Sender<Summary>,
}

impl Convergence {
    pub fn new() -> Arc<Self> {
        let (tx, _) = watch::channel(Summary::default());
        Arc::new(Convergence {
            vertices: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            bad: AtomicUsize::new(0),
            tx,
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<Summary> {
        self.tx.subscribe()
    }

    pub fn summary(&self) -> Summary {
        Summary {
            vertices: self.vertices.load(Ordering::SeqCst),
            busy: self.busy.load(Ordering::SeqCst),
            bad: self.bad.load(Ordering::SeqCst),
        }
    }

    fn counter(&self, c: Cond) -> Option<&AtomicUsize> {
        match c {
            Cond::Busy => Some(&self.busy),
            Cond::Bad => Some(&self.bad),
            Cond::Ok => None,
        }
    }

    fn publish(&self) {
        let s = self.summary();
        self.tx.send_if_modified(|old| {
            let changed = *old != s;
            *old = s;
            changed
        });
    }

    /// Register a vertex; it starts busy. The handle reports its transitions and
    /// unregisters on drop.
    pub fn register(self: &Arc<Self>) -> CondHandle {
        self.vertices.fetch_add(1, Ordering::SeqCst);
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.publish();
        CondHandle { tracker: self.clone(), cond: Cond::Busy }
    }
}

#[derive(Debug)]
pub struct CondHandle {
    tracker: Arc<Convergence>,
    cond: Cond,
}

impl CondHandle {
    pub fn set(&mut self, cond: Cond) {
        if cond == self.cond {
            return;
        }
        if let Some(c) = self.tracker.counter(self.cond) {
            c.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some(c) = self.tracker.counter(cond) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        self.cond = cond;
        self.tracker.publish();
    }
    pub fn get(&self) -> Cond {
        self.cond
    }
}

impl Drop for CondHandle {
    fn drop(&mut self) {
        if let Some(c) = self.tracker.counter(self.cond) {
            c.fetch_sub(1, Ordering::SeqCst);
        }
        self.tracker.vertices.fetch_sub(1, Ordering::SeqCst);
        self.tracker.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_transitions_and_drops() {
        let c = Convergence::new();
        let mut a = c.register();
        let mut b = c.register();
        assert_eq!(c.summary(), Summary { vertices: 2, busy: 2, bad: 0 });
        a.set(Cond::Ok);
        b.set(Cond::Bad);
        assert!(c.summary().idle() && !c.summary().converged());
        drop(b);
        assert!(c.summary().converged());
        a.set(Cond::Busy);
        assert!(!c.summary().idle());
        drop(a);
        assert_eq!(c.summary(), Summary::default());
    }
}
