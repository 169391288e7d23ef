//! One inotify watcher (through `notify`) shared by every resource in the process.
//!
//! Thousands of file resources cannot each own an inotify instance (the kernel allows 128 per
//! user by default), so resources subscribe here. The hub watches directories (refcounted),
//! dispatches each event to the subscribers of exactly that path with hash lookups, and
//! re-arms a subscription on the nearest existing ancestor when its directory is missing or
//! removed, so `rm -rf` of a managed tree is noticed and repaired.
//!
//! `notify`'s `watch()` waits on its event thread, so it is only ever called from the arm
//! thread, never while holding the state lock or from inside the event handler.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher};
use tokio::sync::oneshot;

pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// What a subscriber cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One file (or any non-directory): the path itself and its parent directory.
    File(PathBuf),
    /// A directory and its direct children.
    Dir(PathBuf),
    /// A directory and everything below it.
    Tree(PathBuf),
}

impl Scope {
    fn path(&self) -> &Path {
        match self {
            Scope::File(p) | Scope::Dir(p) | Scope::Tree(p) => p,
        }
    }
    /// The directory that must be watched to see this scope.
    fn wanted_dir(&self) -> PathBuf {
        match self {
            Scope::File(p) => p.parent().unwrap_or(Path::new("/")).to_path_buf(),
            Scope::Dir(p) | Scope::Tree(p) => p.clone(),
        }
    }
    fn recursive(&self) -> bool {
        matches!(self, Scope::Tree(_))
    }
}

struct Sub {
    scope: Scope,
    wake: Waker,
    /// Directory currently watched for this subscriber (the wanted one or an ancestor).
    armed: Option<(PathBuf, bool)>,
}

#[derive(Default)]
struct HubState {
    next_id: u64,
    subs: HashMap<u64, Sub>,
    /// File scopes by their path.
    files: HashMap<PathBuf, Vec<u64>>,
    /// File scopes by their parent directory (to see the directory itself go or come).
    parents: HashMap<PathBuf, Vec<u64>>,
    /// Dir scopes by their path.
    dirs: HashMap<PathBuf, Vec<u64>>,
    /// Tree scopes (few; matched by prefix).
    trees: Vec<u64>,
    /// Subscribers armed on an ancestor because their directory is missing.
    pending: HashSet<u64>,
    /// Refcounts of watched directories, by (path, recursive).
    watched: HashMap<(PathBuf, bool), usize>,
}

enum ArmRequest {
    Arm(u64, Option<oneshot::Sender<()>>),
    Disarm(u64),
}

pub struct FsWatcher {
    state: Arc<Mutex<HubState>>,
    arm_tx: Mutex<std_mpsc::Sender<ArmRequest>>,
}

/// Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    hub: Arc<FsWatcher>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.send(ArmRequest::Disarm(self.id));
    }
}

fn push(map: &mut HashMap<PathBuf, Vec<u64>>, key: PathBuf, id: u64) {
    map.entry(key).or_default().push(id);
}

fn remove(map: &mut HashMap<PathBuf, Vec<u64>>, key: &Path, id: u64) {
    if let Some(v) = map.get_mut(key) {
        v.retain(|x| *x != id);
        if v.is_empty() {
            map.remove(key);
        }
    }
}

impl FsWatcher {
    pub fn new() -> std::io::Result<Arc<Self>> {
        let state: Arc<Mutex<HubState>> = Arc::default();
        let (arm_tx, arm_rx) = std_mpsc::channel::<ArmRequest>();
        let handler_state = state.clone();
        let handler_tx = arm_tx.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res
                && changes_state(&ev.kind)
            {
                dispatch(&handler_state, &handler_tx, &ev.paths);
            }
        })
        .map_err(std::io::Error::other)?;
        let arm_state = state.clone();
        std::thread::Builder::new()
            .name("fswatch-arm".into())
            .spawn(move || arm_loop(arm_state, watcher, arm_rx))?;
        Ok(Arc::new(FsWatcher { state, arm_tx: Mutex::new(arm_tx) }))
    }

    fn send(&self, req: ArmRequest) {
        let _ = self.arm_tx.lock().unwrap().send(req);
    }

    /// Subscribe to changes in `scope`; resolves once the watch is in place. `wake` is called
    /// from the watcher's thread on every relevant event and must be cheap.
    pub async fn subscribe(self: &Arc<Self>, scope: Scope, wake: Waker) -> Subscription {
        let id = {
            let mut st = self.state.lock().unwrap();
            st.next_id += 1;
            let id = st.next_id;
            match &scope {
                Scope::File(p) => {
                    push(&mut st.files, p.clone(), id);
                    push(&mut st.parents, scope.wanted_dir(), id);
                }
                Scope::Dir(p) => push(&mut st.dirs, p.clone(), id),
                Scope::Tree(_) => st.trees.push(id),
            }
            st.subs.insert(id, Sub { scope, wake, armed: None });
            id
        };
        let (tx, rx) = oneshot::channel();
        self.send(ArmRequest::Arm(id, Some(tx)));
        let _ = rx.await;
        Subscription { id, hub: self.clone() }
    }
}

/// Reads (open, access, close without writing) change nothing; reacting to them would make
/// every check trigger the next one.
fn changes_state(kind: &notify::EventKind) -> bool {
    use notify::EventKind::Access;
    use notify::event::{AccessKind, AccessMode};
    match kind {
        Access(AccessKind::Close(AccessMode::Write)) => true,
        Access(_) => false,
        _ => true,
    }
}

/// Runs on notify's event thread: wake subscribers, queue re-arms. Never calls the watcher.
fn dispatch(state: &Mutex<HubState>, arm_tx: &std_mpsc::Sender<ArmRequest>, paths: &[PathBuf]) {
    let st = state.lock().unwrap();
    for ev in paths {
        let parent = ev.parent();
        if let Some(ids) = st.files.get(ev) {
            for id in ids {
                (st.subs[id].wake)();
            }
        }
        if let Some(ids) = st.dirs.get(ev.as_path()) {
            for id in ids {
                (st.subs[id].wake)();
                let _ = arm_tx.send(ArmRequest::Arm(*id, None));
            }
        }
        if let Some(ids) = parent.and_then(|p| st.dirs.get(p)) {
            for id in ids {
                (st.subs[id].wake)();
            }
        }
        if let Some(ids) = st.parents.get(ev.as_path()) {
            // The directory holding watched files itself changed (removed, moved, created).
            for id in ids {
                (st.subs[id].wake)();
                let _ = arm_tx.send(ArmRequest::Arm(*id, None));
            }
        }
        for id in &st.trees {
            let sub = &st.subs[id];
            if ev.starts_with(sub.scope.path()) {
                (sub.wake)();
                if ev == sub.scope.path() {
                    let _ = arm_tx.send(ArmRequest::Arm(*id, None));
                }
            }
        }
        for id in &st.pending {
            let sub = &st.subs[id];
            if sub.scope.wanted_dir().starts_with(ev) {
                (sub.wake)();
                let _ = arm_tx.send(ArmRequest::Arm(*id, None));
            }
        }
    }
}

fn nearest_existing(dir: &Path) -> PathBuf {
    let mut d = dir;
    loop {
        if d.is_dir() {
            return d.to_path_buf();
        }
        match d.parent() {
            Some(p) => d = p,
            None => return PathBuf::from("/"),
        }
    }
}

fn arm_loop(
    state: Arc<Mutex<HubState>>,
    mut watcher: notify::RecommendedWatcher,
    rx: std_mpsc::Receiver<ArmRequest>,
) {
    while let Ok(req) = rx.recv() {
        let (id, done) = match req {
            ArmRequest::Arm(id, done) => (id, done),
            ArmRequest::Disarm(id) => {
                let unwatch = {
                    let mut st = state.lock().unwrap();
                    let Some(sub) = st.subs.remove(&id) else { continue };
                    match &sub.scope {
                        Scope::File(p) => {
                            remove(&mut st.files, p, id);
                            remove(&mut st.parents, &sub.scope.wanted_dir(), id);
                        }
                        Scope::Dir(p) => remove(&mut st.dirs, p, id),
                        Scope::Tree(_) => st.trees.retain(|x| *x != id),
                    }
                    st.pending.remove(&id);
                    sub.armed.and_then(|key| release(&mut st, key))
                };
                if let Some(dir) = unwatch {
                    let _ = watcher.unwatch(&dir);
                }
                continue;
            }
        };
        // Decide where this subscriber should be armed, then do the watcher calls unlocked.
        let plan = {
            let st = state.lock().unwrap();
            st.subs.get(&id).map(|sub| {
                let wanted = sub.scope.wanted_dir();
                let target = nearest_existing(&wanted);
                let recursive = target == wanted && sub.scope.recursive();
                (wanted, target, recursive, sub.armed.clone())
            })
        };
        let Some((wanted, target, recursive, old)) = plan else {
            continue;
        };
        let key = (target.clone(), recursive);
        let need_watch = {
            let st = state.lock().unwrap();
            // Re-arming the same directory (it may have been deleted and recreated) needs a
            // fresh kernel watch.
            old.as_ref() == Some(&key) || !st.watched.contains_key(&key)
        };
        let mut ok = true;
        if need_watch {
            let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
            if old.as_ref() == Some(&key) {
                let _ = watcher.unwatch(&target);
            }
            ok = watcher.watch(&target, mode).is_ok();
        }
        let (unwatch, wake) = {
            let mut st = state.lock().unwrap();
            let mut unwatch = None;
            if old.as_ref() != Some(&key) {
                if ok {
                    *st.watched.entry(key.clone()).or_insert(0) += 1;
                }
                if let Some(old) = old {
                    unwatch = release(&mut st, old);
                }
            }
            let wake = st.subs.get_mut(&id).map(|sub| {
                sub.armed = ok.then(|| key.clone());
                sub.wake.clone()
            });
            if target == wanted && ok {
                st.pending.remove(&id);
            } else if wake.is_some() {
                st.pending.insert(id);
            }
            (unwatch, wake)
        };
        if let Some(dir) = unwatch {
            let _ = watcher.unwatch(&dir);
        }
        if let Some(done) = done {
            let _ = done.send(());
        } else if let Some(wake) = wake {
            // Something may have changed while unwatched: let the resource look.
            wake();
        }
    }
}

/// Drop one reference to a watched directory; returns it if nothing watches it any more.
fn release(st: &mut HubState, key: (PathBuf, bool)) -> Option<PathBuf> {
    let count = st.watched.get_mut(&key)?;
    *count -= 1;
    if *count == 0 {
        st.watched.remove(&key);
        if !st.watched.contains_key(&(key.0.clone(), !key.1)) {
            return Some(key.0);
        }
    }
    None
}
