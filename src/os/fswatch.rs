//! One inotify instance shared by every resource in the process.
//!
//! Thousands of file resources cannot each own an inotify instance (the kernel allows 128 per
//! user by default), so resources subscribe here. The hub owns its watch descriptors: it
//! watches directories (shared by every subscriber that needs them), dispatches each event to
//! the subscribers of exactly that path with hash lookups, and re-arms a subscriber on the
//! nearest existing ancestor when its directory is missing, removed or moved away, so
//! `rm -rf` of a managed tree is noticed and repaired.
//!
//! Invariants:
//! - A watch is identified by its descriptor, never by path alone: a directory removed and
//!   recreated is a new inode with a new descriptor, and events of the old one are dropped.
//! - Every (re-)arm wakes its subscriber, because events may have been missed while no
//!   watch was in place; subscribers re-check the real state, so a spurious wake is harmless.
//! - Reads are not subscribed to (no OPEN/ACCESS/CLOSE_NOWRITE), so checking a file does not
//!   trigger the next check.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// What a subscriber cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One file (or any non-directory): the path itself, seen through its parent directory.
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
}

const MASK: WatchMask = WatchMask::ATTRIB
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// The watched directory is no longer at its path (or no longer watched at all).
const GONE: EventMask =
    EventMask::DELETE_SELF.union(EventMask::MOVE_SELF).union(EventMask::IGNORED).union(EventMask::UNMOUNT);

struct Sub {
    scope: Scope,
    wake: Waker,
    /// Woken only by finished changes (see `FsWatcher::subscribe_settled`).
    settled: bool,
    /// Directories this subscriber holds a watch on: the wanted one (plus, for a tree,
    /// every directory below it) or the nearest existing ancestor.
    held: Vec<PathBuf>,
}

/// A watched directory, shared by its holders.
struct Watch {
    /// Kernel watch descriptor id; `None` once the directory went away.
    wd: Option<i32>,
    /// (device, inode) the watch is on, to notice a directory replaced behind our back.
    inode: (u64, u64),
    holders: HashSet<u64>,
}

struct Hub {
    watches: Watches,
    next_id: u64,
    subs: HashMap<u64, Sub>,
    /// File scopes by their path.
    files: HashMap<PathBuf, Vec<u64>>,
    /// Dir scopes by their path.
    dirs: HashMap<PathBuf, Vec<u64>>,
    /// Tree scopes (few; matched by prefix).
    trees: Vec<u64>,
    /// Subscribers armed on an ancestor because their directory is missing.
    pending: HashSet<u64>,
    by_path: HashMap<PathBuf, Watch>,
    /// Descriptor id -> (descriptor, the paths it was added for; usually one).
    by_wd: HashMap<i32, (WatchDescriptor, Vec<PathBuf>)>,
}

pub struct FsWatcher {
    hub: Arc<Mutex<Hub>>,
}

/// Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    hub: Arc<Mutex<Hub>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.lock().unwrap_or_else(|e| e.into_inner()).unsubscribe(self.id);
    }
}

impl FsWatcher {
    pub fn new() -> io::Result<Arc<Self>> {
        let mut inotify = Inotify::init()?;
        let hub = Arc::new(Mutex::new(Hub {
            watches: inotify.watches(),
            next_id: 0,
            subs: HashMap::new(),
            files: HashMap::new(),
            dirs: HashMap::new(),
            trees: Vec::new(),
            pending: HashSet::new(),
            by_path: HashMap::new(),
            by_wd: HashMap::new(),
        }));
        let weak: Weak<Mutex<Hub>> = Arc::downgrade(&hub);
        let rescan = rescan_thread(Arc::downgrade(&hub))?;
        std::thread::Builder::new().name("fswatch".into()).spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let events = match inotify.read_events_blocking(&mut buf) {
                    Ok(ev) => ev,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let Some(hub) = weak.upgrade() else { return };
                let mut hub = hub.lock().unwrap_or_else(|e| e.into_inner());
                for ev in events {
                    if ev.mask.contains(EventMask::Q_OVERFLOW) {
                        let _ = rescan.send(());
                        continue;
                    }
                    hub.dispatch(ev.wd.get_watch_descriptor_id(), ev.mask, ev.name.map(Path::new));
                }
            }
        })?;
        Ok(Arc::new(FsWatcher { hub }))
    }

    /// Subscribe to changes in `scope`; the watch is in place when this returns. `wake` is
    /// called from the watcher's thread on every relevant event and must be cheap.
    pub async fn subscribe(self: &Arc<Self>, scope: Scope, wake: Waker) -> Subscription {
        self.subscribe_with(scope, wake, false).await
    }

    async fn subscribe_with(self: &Arc<Self>, scope: Scope, wake: Waker, settled: bool) -> Subscription {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        hub.next_id += 1;
        let id = hub.next_id;
        match &scope {
            Scope::File(p) => hub.files.entry(p.clone()).or_default().push(id),
            Scope::Dir(p) => hub.dirs.entry(p.clone()).or_default().push(id),
            Scope::Tree(_) => hub.trees.push(id),
        }
        hub.subs.insert(id, Sub { scope, wake, settled, held: Vec::new() });
        hub.arm(id);
        Subscription { id, hub: self.hub.clone() }
    }

    /// Like `subscribe` for a `Scope::File`, but woken only when a change to the file is
    /// finished: a writer closed it, it was renamed into place or removed, or something
    /// other than a regular file (a symlink, a FIFO) was created there. A file being
    /// written is reported once, when its writer closes it, never half-written. Re-arms
    /// still wake, as for every subscriber.
    pub async fn subscribe_settled(self: &Arc<Self>, path: PathBuf, wake: Waker) -> Subscription {
        self.subscribe_with(Scope::File(path), wake, true).await
    }

    /// How many directories are watched (for tests and benchmarks).
    pub fn watched_dirs(&self) -> usize {
        self.hub.lock().unwrap_or_else(|e| e.into_inner()).by_path.values().filter(|w| w.wd.is_some()).count()
    }
}

/// After the kernel's event queue overflowed (a burst of more than
/// `fs.inotify.max_queued_events` events, e.g. while thousands of files are written), every
/// subscriber must look again. Once the burst is over, not at each overflow: a rescan makes
/// every resource re-check, and doing that per overflow in a long burst is quadratic.
fn rescan_thread(hub: Weak<Mutex<Hub>>) -> io::Result<std::sync::mpsc::Sender<()>> {
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};
    const QUIET: Duration = Duration::from_millis(100);
    const AT_MOST: Duration = Duration::from_secs(1);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new().name("fswatch-rescan".into()).spawn(move || {
        while rx.recv().is_ok() {
            let first = Instant::now();
            loop {
                match rx.recv_timeout(QUIET) {
                    Ok(()) if first.elapsed() < AT_MOST => continue,
                    Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            let Some(hub) = hub.upgrade() else { return };
            hub.lock().unwrap_or_else(|e| e.into_inner()).overflowed();
        }
    })?;
    Ok(tx)
}

fn remove_id(map: &mut HashMap<PathBuf, Vec<u64>>, key: &Path, id: u64) {
    if let Some(v) = map.get_mut(key) {
        v.retain(|x| *x != id);
        if v.is_empty() {
            map.remove(key);
        }
    }
}

/// Whether an event on `path` ends a change: a close after writing, a rename into place, a
/// removal, or the creation of something that is not written afterwards (a symlink, a FIFO;
/// a new regular file is reported when its writer closes it).
fn is_finished(path: &Path, mask: EventMask) -> bool {
    if mask.intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO | EventMask::DELETE) {
        return true;
    }
    mask.contains(EventMask::CREATE) && std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file())
}

fn inode_of(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()))
}

impl Hub {
    fn unsubscribe(&mut self, id: u64) {
        let Some(sub) = self.subs.remove(&id) else { return };
        match &sub.scope {
            Scope::File(p) => remove_id(&mut self.files, p, id),
            Scope::Dir(p) => remove_id(&mut self.dirs, p, id),
            Scope::Tree(_) => self.trees.retain(|x| *x != id),
        }
        self.pending.remove(&id);
        for d in sub.held {
            self.release(id, &d);
        }
    }

    /// Take a hold on a watch of `dir` for subscriber `id`, adding (or renewing, if the
    /// directory was replaced) the kernel watch as needed.
    fn hold(&mut self, id: u64, dir: &Path) -> io::Result<()> {
        if let Some(w) = self.by_path.get_mut(dir)
            && w.wd.is_some()
            && inode_of(dir) == Some(w.inode)
        {
            w.holders.insert(id);
            return Ok(());
        }
        let wd = self.watches.add(dir, MASK)?;
        // Stat after adding: the watch is on whatever was there at that moment, and if the
        // directory is replaced after this, its events tell us.
        let Some(inode) = inode_of(dir) else {
            let _ = self.watches.remove(wd);
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        let key = wd.get_watch_descriptor_id();
        let old = match self.by_path.get_mut(dir) {
            Some(w) => {
                w.holders.insert(id);
                w.inode = inode;
                w.wd.replace(key).filter(|o| *o != key)
            }
            None => {
                self.by_path.insert(dir.to_path_buf(), Watch { wd: Some(key), inode, holders: [id].into() });
                None
            }
        };
        if let Some(o) = old {
            self.detach(o, dir);
            // The directory at this path was replaced, and the old one's events may never be
            // read now (they come on the old descriptor): whoever held it looks again.
            let holders = self.by_path.get(dir).map(|w| w.holders.clone()).unwrap_or_default();
            for sub in holders.iter().filter_map(|h| self.subs.get(h)) {
                (sub.wake)();
            }
        }
        let entry = self.by_wd.entry(key).or_insert_with(|| (wd, Vec::new()));
        if !entry.1.iter().any(|p| p == dir) {
            entry.1.push(dir.to_path_buf());
        }
        Ok(())
    }

    fn release(&mut self, id: u64, dir: &Path) {
        let Some(w) = self.by_path.get_mut(dir) else { return };
        w.holders.remove(&id);
        if w.holders.is_empty() {
            let wd = w.wd;
            self.by_path.remove(dir);
            if let Some(k) = wd {
                self.detach(k, dir);
            }
        }
    }

    /// `dir` no longer uses descriptor `key`; remove the kernel watch when nothing does.
    fn detach(&mut self, key: i32, dir: &Path) {
        if let Some((_, paths)) = self.by_wd.get_mut(&key) {
            paths.retain(|p| p != dir);
            if paths.is_empty()
                && let Some((wd, _)) = self.by_wd.remove(&key)
            {
                // Fails harmlessly when the kernel already dropped it (directory deleted).
                let _ = self.watches.remove(wd);
            }
        }
    }

    /// (Re-)arm a subscriber on its directory, or on the nearest existing ancestor while it
    /// is missing, then wake it.
    fn arm(&mut self, id: u64) {
        let Some(sub) = self.subs.get(&id) else { return };
        let wanted = sub.scope.wanted_dir();
        let tree = matches!(sub.scope, Scope::Tree(_));
        let old = std::mem::take(&mut self.subs.get_mut(&id).expect("present").held);
        let mut held = Vec::new();
        // A directory on the way down may appear between our failed attempt on it and the
        // watch on its parent; then nothing would report it, so look again.
        for _ in 0..100 {
            let mut dir = wanted.clone();
            let target = loop {
                if self.hold(id, &dir).is_ok() {
                    break Some(dir);
                }
                match dir.parent() {
                    Some(p) => dir = p.to_path_buf(),
                    None => break None,
                }
            };
            let Some(target) = target else { break };
            if target == wanted {
                held.push(target);
                break;
            }
            let next = wanted.ancestors().find(|a| a.parent() == Some(target.as_path()));
            if next.is_some_and(|n| n.is_dir()) {
                self.release(id, &target);
                continue;
            }
            held.push(target);
            break;
        }
        let armed_on_wanted = held.first() == Some(&wanted);
        if armed_on_wanted && tree {
            for e in walkdir::WalkDir::new(&wanted).min_depth(1).into_iter().flatten() {
                if e.file_type().is_dir() && self.hold(id, e.path()).is_ok() {
                    held.push(e.into_path());
                }
            }
        }
        let keep: HashSet<&PathBuf> = held.iter().collect();
        let drop: Vec<PathBuf> = old.into_iter().filter(|d| !keep.contains(d)).collect();
        for d in &drop {
            self.release(id, d);
        }
        if armed_on_wanted {
            self.pending.remove(&id);
        } else {
            self.pending.insert(id);
        }
        let sub = self.subs.get_mut(&id).expect("present");
        sub.held = held;
        (sub.wake)();
    }

    /// Events were lost: every subscriber looks again, and those whose directory was replaced
    /// or appeared meanwhile (and trees, which may have new subdirectories) are re-armed.
    fn overflowed(&mut self) {
        let mut rearm: Vec<u64> = self.pending.iter().chain(&self.trees).copied().collect();
        for (dir, w) in &self.by_path {
            if w.wd.is_none() || inode_of(dir) != Some(w.inode) {
                rearm.extend(w.holders.iter().copied());
            }
        }
        for sub in self.subs.values() {
            (sub.wake)();
        }
        rearm.sort_unstable();
        rearm.dedup();
        for id in rearm {
            self.arm(id);
        }
    }

    fn wake(&self, ids: Option<&Vec<u64>>) {
        for id in ids.into_iter().flatten() {
            (self.subs[id].wake)();
        }
    }

    /// Wake the file subscribers of `child`; settled ones only for a finished change.
    fn wake_files(&self, child: &Path, mask: EventMask) {
        let Some(ids) = self.files.get(child) else { return };
        let mut finished = None;
        for id in ids {
            let sub = &self.subs[id];
            if sub.settled && !*finished.get_or_insert_with(|| is_finished(child, mask)) {
                continue;
            }
            (sub.wake)();
        }
    }

    /// Runs on the watcher thread for every event.
    fn dispatch(&mut self, key: i32, mask: EventMask, name: Option<&Path>) {
        let Some((_, paths)) = self.by_wd.get(&key) else { return };
        let mut rearm = Vec::new();
        for dir in paths.clone() {
            match name {
                Some(n) => {
                    let child = dir.join(n);
                    self.wake_files(&child, mask);
                    self.wake(self.dirs.get(&dir));
                    let new_dir = mask.contains(EventMask::ISDIR)
                        && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO);
                    for id in &self.trees {
                        let sub = &self.subs[id];
                        if child.starts_with(sub.scope.path()) {
                            (sub.wake)();
                            if new_dir && !self.pending.contains(id) {
                                rearm.push(*id);
                            }
                        }
                    }
                    for id in &self.pending {
                        if self.subs[id].scope.wanted_dir().starts_with(&child) {
                            rearm.push(*id);
                        }
                    }
                }
                None => {
                    // The directory itself: its attributes, or it went away.
                    self.wake(self.dirs.get(&dir));
                    for id in &self.trees {
                        if self.subs[id].scope.path() == dir {
                            (self.subs[id].wake)();
                        }
                    }
                    if mask.intersects(GONE)
                        && let Some(w) = self.by_path.get_mut(&dir)
                        && w.wd == Some(key)
                    {
                        w.wd = None;
                        rearm.extend(w.holders.iter().copied());
                        self.detach(key, &dir);
                    }
                }
            }
        }
        rearm.sort_unstable();
        rearm.dedup();
        for id in rearm {
            self.arm(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn counter() -> (Arc<AtomicUsize>, Waker) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (
            n,
            Arc::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    fn wait_above(n: &AtomicUsize, v: usize) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if n.load(Ordering::SeqCst) > v {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[tokio::test]
    async fn a_recreated_directory_is_watched_again() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let w = FsWatcher::new().unwrap();
        let (n, wake) = counter();
        let _s = w.subscribe(Scope::File(dir.join("f")), wake).await;
        for _ in 0..20 {
            std::fs::remove_dir_all(&dir).unwrap();
            std::fs::create_dir(&dir).unwrap();
            // Wait until the hub has re-armed on the new directory, then write into it.
            let end = Instant::now() + Duration::from_secs(10);
            while {
                let hub = w.hub.lock().unwrap();
                hub.pending.contains(&1) || hub.by_path.get(&dir).map(|w| w.inode) != inode_of(&dir)
            } {
                assert!(Instant::now() < end, "never re-armed on the new directory");
                std::thread::sleep(Duration::from_millis(1));
            }
            let before = n.load(Ordering::SeqCst);
            std::fs::write(dir.join("f"), "x").unwrap();
            assert!(wait_above(&n, before), "a write in the recreated directory was not seen");
        }
    }

    /// A change whose event the kernel dropped (queue overflow) is still seen: everyone is
    /// woken once the burst is over.
    #[tokio::test]
    async fn events_lost_to_a_queue_overflow_still_wake_subscribers() {
        let t = tempfile::tempdir().unwrap();
        let w = FsWatcher::new().unwrap();
        let (n, wake) = counter();
        let _s = w.subscribe(Scope::File(t.path().join("watched")), wake).await;
        let before = {
            // Hold the hub so the watcher thread stops reading and the kernel queue fills.
            let _held = w.hub.lock().unwrap();
            let max: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(16384);
            let noise = t.path().join("noise");
            for _ in 0..max {
                std::fs::write(&noise, "x").unwrap();
            }
            let before = n.load(Ordering::SeqCst);
            std::fs::write(t.path().join("watched"), "x").unwrap();
            before
        };
        assert!(wait_above(&n, before), "the overflow did not lead to a rescan");
    }

    #[tokio::test]
    async fn shared_watches_are_refcounted() {
        let t = tempfile::tempdir().unwrap();
        let w = FsWatcher::new().unwrap();
        let (_, wake) = counter();
        let a = w.subscribe(Scope::File(t.path().join("a")), wake.clone()).await;
        let b = w.subscribe(Scope::File(t.path().join("b")), wake.clone()).await;
        assert_eq!(w.watched_dirs(), 1);
        drop(a);
        assert_eq!(w.watched_dirs(), 1);
        drop(b);
        assert_eq!(w.watched_dirs(), 0);
    }

    #[tokio::test]
    async fn a_missing_directory_is_armed_on_an_ancestor_until_it_appears() {
        let t = tempfile::tempdir().unwrap();
        let w = FsWatcher::new().unwrap();
        let (n, wake) = counter();
        let deep = t.path().join("x/y/z");
        let _s = w.subscribe(Scope::File(deep.join("f")), wake).await;
        assert!(w.hub.lock().unwrap().pending.contains(&1));
        std::fs::create_dir_all(&deep).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while w.hub.lock().unwrap().pending.contains(&1) {
            assert!(Instant::now() < end, "never armed on the created directory");
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = n.load(Ordering::SeqCst);
        std::fs::write(deep.join("f"), "x").unwrap();
        assert!(wait_above(&n, before));
    }

    /// A settled subscriber is not woken while a file is being written, only when its writer
    /// closes it or it is renamed into place.
    #[tokio::test]
    async fn settled_subscribers_see_finished_writes_only() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let w = FsWatcher::new().unwrap();
        let (n, wake) = counter();
        let (marks, mark_wake) = counter();
        let path = t.path().join("g.yaml");
        std::fs::write(&path, "old").unwrap();
        let _s = w.subscribe_settled(path.clone(), wake).await;
        let _m = w.subscribe(Scope::File(t.path().join("mark")), mark_wake).await;
        // Events are dispatched in order: once the mark's write is seen, so were the earlier ones.
        let settle = |before: usize| {
            std::fs::write(t.path().join("mark"), "x").unwrap();
            assert!(wait_above(&marks, before));
        };
        settle(marks.load(Ordering::SeqCst));
        let base = n.load(Ordering::SeqCst);
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
        f.write_all(b"half").unwrap();
        f.flush().unwrap();
        settle(marks.load(Ordering::SeqCst));
        assert_eq!(n.load(Ordering::SeqCst), base, "woken while the file was still open for writing");
        drop(f);
        assert!(wait_above(&n, base), "not woken when the writer closed the file");
        let base = n.load(Ordering::SeqCst);
        std::fs::write(t.path().join("tmp"), "new").unwrap();
        std::fs::rename(t.path().join("tmp"), &path).unwrap();
        assert!(wait_above(&n, base), "not woken by a rename into place");
    }
}
