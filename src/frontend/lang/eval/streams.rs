//! The values of functions that change over time (a file's content, the time, a command's
//! output), shared between the evaluator and the tasks that watch them.
//!
//! A call of such a function reads its value here, by function and arguments (a
//! [`StreamKey`]), and is recorded against the node of the live graph computing it
//! ([`graph::computing`]). A watcher (outside the core: it does the I/O) sets each new value
//! with [`Streams::set`]; the program's driver then takes the nodes that read a changed
//! value ([`Streams::take_changed`]), touches them, and runs the graph again, so only what
//! depends on the change recomputes. After each run, [`Streams::settle`] forgets the uses
//! of the nodes that computed again, and [`Streams::wanted`] says which values are still
//! read, so watchers of values no longer read stop.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::super::funcs::{Builtin, CallCtx, Changes};
use super::super::types::Type;
use super::super::value::Val;
use super::graph::{self, NodeId};

/// A changing function and its arguments: one value, one watcher.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(String);

impl StreamKey {
    fn of(builtin: &Builtin, args: &[Val]) -> StreamKey {
        StreamKey(format!("{builtin:?}{args:?}"))
    }
}

/// What a watcher needs to follow one value.
#[derive(Clone, Debug)]
pub struct Watched {
    pub key: StreamKey,
    pub builtin: &'static Builtin,
    pub changes: Changes,
    pub args: Vec<Val>,
    /// The call's type, as the function is called with it.
    pub sig: Type,
}

/// A value: known (or failed, with the error's text), or not known yet (a command that has
/// printed nothing).
pub type Current = Option<Result<Val, String>>;

struct Entry {
    watched: Watched,
    value: Current,
    users: BTreeSet<NodeId>,
}

#[derive(Default)]
struct State {
    entries: HashMap<StreamKey, Entry>,
    /// The keys each node read in its last computation.
    by_node: HashMap<NodeId, Vec<StreamKey>>,
    /// The keys read during the run under way, by node.
    fresh: HashMap<NodeId, Vec<StreamKey>>,
    changed: BTreeSet<StreamKey>,
}

/// The changing values of one running program.
#[derive(Default)]
pub struct Streams {
    state: Mutex<State>,
    /// Woken when a value changed.
    pub changed: tokio::sync::Notify,
}

impl Streams {
    pub fn new() -> Arc<Streams> {
        Arc::new(Streams::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `builtin` at `args`, read by the node being computed. The first read
    /// computes it now (a file read, the time), or leaves it unknown until its watcher
    /// says (a command's first line).
    pub fn read(
        &self,
        builtin: &'static Builtin,
        changes: Changes,
        args: Vec<Val>,
        ctx: &CallCtx,
    ) -> Current {
        let key = StreamKey::of(builtin, &args);
        let node = graph::computing();
        let mut state = self.state();
        if let Some(node) = node {
            state.fresh.entry(node).or_default().push(key.clone());
        }
        if let Some(entry) = state.entries.get_mut(&key) {
            if let Some(node) = node {
                entry.users.insert(node);
            }
            return entry.value.clone();
        }
        drop(state);
        let value = match changes {
            Changes::Lines | Changes::Kv(_) | Changes::Exports(_) => None,
            Changes::File(_) | Changes::Tick(_) => Some((builtin.call)(ctx, args.clone()).map_err(|e| e.0)),
        };
        let watched = Watched { key: key.clone(), builtin, changes, args, sig: ctx.sig.clone() };
        let users = node.into_iter().collect();
        self.state().entries.entry(key).or_insert(Entry { watched, value: value.clone(), users });
        value
    }

    /// A watcher's new value for `key`; a change wakes the driver.
    pub fn set(&self, key: &StreamKey, value: Result<Val, String>) {
        let mut state = self.state();
        let Some(entry) = state.entries.get_mut(key) else { return };
        if entry.value.as_ref() == Some(&value) {
            return;
        }
        entry.value = Some(value);
        state.changed.insert(key.clone());
        drop(state);
        self.changed.notify_one();
    }

    /// The nodes that read a value changed since the last call.
    pub fn take_changed(&self) -> BTreeSet<NodeId> {
        let mut state = self.state();
        let changed = std::mem::take(&mut state.changed);
        changed.iter().filter_map(|k| state.entries.get(k)).flat_map(|e| e.users.iter().copied()).collect()
    }

    /// After a run: the nodes in `computed` read what they read this time, and nothing else.
    pub fn settle(&self, computed: &[NodeId]) {
        let mut state = self.state();
        let state = &mut *state;
        for node in computed {
            let now = state.fresh.remove(node).unwrap_or_default();
            let before = state.by_node.remove(node).unwrap_or_default();
            for key in before.iter().filter(|k| !now.contains(k)) {
                if let Some(entry) = state.entries.get_mut(key) {
                    entry.users.remove(node);
                }
            }
            if !now.is_empty() {
                state.by_node.insert(*node, now);
            }
        }
        state.fresh.clear();
        state.entries.retain(|_, e| !e.users.is_empty());
    }

    /// Every value read by the program now, to be watched.
    pub fn wanted(&self) -> Vec<Watched> {
        self.state().entries.values().map(|e| e.watched.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lang::funcs::{HostInfo, testing};

    #[test]
    fn a_value_set_by_a_watcher_names_its_readers_and_unread_values_are_forgotten() {
        let streams = Streams::new();
        let now = testing::f("datetime", "now");
        let host = HostInfo::default();
        let sig = Type::Int;
        let ctx = CallCtx { sig: &sig, host: &host };
        // Read outside any live node (a template's own run): no reader is recorded.
        assert!(matches!(streams.read(now, Changes::Tick(1), vec![], &ctx), Some(Ok(Val::Int(_)))));
        let key = streams.wanted()[0].key.clone();
        streams.set(&key, Ok(Val::Int(7)));
        assert!(streams.take_changed().is_empty());
        streams.settle(&[]);
        assert!(streams.wanted().is_empty(), "a value no node reads is not watched");
    }
}
