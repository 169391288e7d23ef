//! Atomic writes: a temp file in the target's directory, fsynced and renamed into place, so a
//! reader or a crash sees the old content or the new. Writes under way are registered so that
//! a clean stop removes their temp files (`refuse_writes`, `stop_writes`).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::contract::path::NAME_MAX;

/// Write `data` to `path` atomically: temp file in the same directory, mode and owner set,
/// fsync, rename over the target, then fsync the directory. A reader (or a crash) sees the
/// old content or the new, never a mix.
pub fn write_atomic(
    path: &Path,
    data: &[u8],
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> io::Result<()> {
    write_atomic_from(path, &mut &data[..], mode, uid, gid)
}

/// [`write_atomic`] with the content streamed from a reader.
pub fn write_atomic_from(
    path: &Path,
    data: &mut dyn Read,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let base = path.file_name().unwrap_or_default();
    // Counted from before the temp file exists, so a clean stop can wait for it.
    let mut writing = Writing::start()?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(base))
        .rand_bytes(TEMP_RANDOM_LEN)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    writing.track(tmp.path())?;
    io::copy(data, &mut tmp)?;
    // A stop while the content was copied: give up before the slow part (the temp file is
    // removed when `tmp` is dropped).
    if stopping() {
        return Err(stopping_error());
    }
    let f = tmp.as_file();
    // chown before chmod: chown clears the setuid and setgid bits.
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(f, uid, gid)?;
    }
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(Some(dir));
    Ok(())
}

/// Writes under way and their temp files, so that a clean stop leaves no temp file behind
/// (a write cut short would otherwise leave one until that file is managed again).
#[derive(Default)]
struct Temps {
    live: HashSet<PathBuf>,
    writers: usize,
    stopping: bool,
}

static TEMPS: std::sync::Mutex<Option<Temps>> = std::sync::Mutex::new(None);

fn with_temps<T>(f: impl FnOnce(&mut Temps) -> T) -> T {
    let mut guard = TEMPS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Temps::default))
}

/// Woken when the last write under way ends.
fn writers_done() -> &'static tokio::sync::Notify {
    static DONE: std::sync::OnceLock<tokio::sync::Notify> = std::sync::OnceLock::new();
    DONE.get_or_init(tokio::sync::Notify::new)
}

fn stopping_error() -> io::Error {
    io::Error::other("the agent is stopping")
}

/// One write, from before its temp file is created until it is renamed or removed.
struct Writing(Option<PathBuf>);

impl Writing {
    fn start() -> io::Result<Writing> {
        with_temps(|t| {
            if t.stopping {
                return Err(stopping_error());
            }
            t.writers += 1;
            Ok(Writing(None))
        })
    }

    fn track(&mut self, tmp: &Path) -> io::Result<()> {
        self.0 = Some(tmp.to_path_buf());
        if with_temps(|t| {
            t.live.insert(tmp.to_path_buf());
            t.stopping
        }) {
            return Err(stopping_error());
        }
        Ok(())
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let last = with_temps(|t| {
            if let Some(p) = &self.0 {
                t.live.remove(p);
            }
            t.writers -= 1;
            t.writers == 0
        });
        if last {
            writers_done().notify_waiters();
        }
    }
}

pub fn stopping() -> bool {
    with_temps(|t| t.stopping)
}

/// For a clean stop, first step: refuse any further write (checks still queued do nothing,
/// writes under way give up at their next step).
pub fn refuse_writes() {
    with_temps(|t| t.stopping = true);
}

/// For a clean stop, last step: refuse any further write, wait up to `grace` for the writes
/// under way to end (they give up early), then remove the temp files of any still running
/// (their targets keep their old content).
pub async fn stop_writes(grace: std::time::Duration) {
    let all_done = async {
        loop {
            let done = writers_done().notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if with_temps(|t| {
                t.stopping = true;
                t.writers == 0
            }) {
                return;
            }
            done.await;
        }
    };
    let _ = tokio::time::timeout(grace, all_done).await;
    let live = with_temps(|t| std::mem::take(&mut t.live));
    for p in live {
        let _ = fs::remove_file(p);
    }
}

/// Remove the temp files a killed agent left behind for `path`
/// (see [`temp_prefix`]), once per path per process,
/// before the first write. Only this path's: other temp files in the directory belong to
/// other resources, which may be writing right now. Each directory is listed once (before
/// this process writes anything there), not once per file in it.
pub fn clean_stale_temps_once(path: &Path) {
    #[derive(Default)]
    struct Stale {
        /// Directory -> temp files found when it was first listed, not yet removed.
        by_dir: HashMap<PathBuf, Vec<OsString>>,
        cleaned: HashSet<PathBuf>,
    }
    static STALE: std::sync::Mutex<Option<Stale>> = std::sync::Mutex::new(None);
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else { return };
    let mine: Vec<OsString> = {
        let mut guard = STALE.lock().unwrap_or_else(|e| e.into_inner());
        let stale = guard.get_or_insert_with(Stale::default);
        if !stale.cleaned.insert(path.to_path_buf()) {
            return;
        }
        let found = stale.by_dir.entry(dir.to_path_buf()).or_insert_with(|| {
            fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name())
                .filter(|n| n.as_bytes().starts_with(b".") && n.as_bytes().ends_with(TEMP_SUFFIX.as_bytes()))
                .collect()
        });
        let (mine, rest): (Vec<OsString>, Vec<OsString>) =
            std::mem::take(found).into_iter().partition(|n| is_temp_of(n, base));
        *found = rest;
        mine
    };
    for name in mine {
        let _ = fs::remove_file(dir.join(name));
    }
}

/// The start of `write_atomic`'s temp names for a file called `base`: `.<base>.`, or for a
/// name too long to fit beside the random part and the suffix in `NAME_MAX` bytes, its first
/// bytes and a hash of the whole name: `.<first 160 bytes>~<16 hex digits>.`.
fn temp_prefix(base: &OsStr) -> OsString {
    let b = base.as_bytes();
    let room = NAME_MAX - 2 - TEMP_RANDOM_LEN - TEMP_SUFFIX.len();
    let mut out = vec![b'.'];
    if b.len() <= room {
        out.extend_from_slice(b);
    } else {
        use sha2::{Digest, Sha256};
        out.extend_from_slice(&b[..160]);
        out.push(b'~');
        out.extend_from_slice(hex::encode(&Sha256::digest(b)[..8]).as_bytes());
    }
    out.push(b'.');
    OsString::from_vec(out)
}

/// Whether `name` is one of `write_atomic`'s temp files for a file called `base`.
fn is_temp_of(name: &OsStr, base: &OsStr) -> bool {
    let prefix = temp_prefix(base);
    name.as_bytes()
        .strip_prefix(prefix.as_bytes())
        .and_then(|n| n.strip_suffix(TEMP_SUFFIX.as_bytes()))
        .is_some_and(|r| !r.is_empty() && r.iter().all(|b| b.is_ascii_alphanumeric()))
}

const TEMP_RANDOM_LEN: usize = 6;
const TEMP_SUFFIX: &str = ".mgmt-tmp";

/// Make a rename or unlink in `dir` durable. Best effort: some filesystems refuse fsync on
/// directories.
///
/// Group commit: concurrent writers in one directory share an fsync, as long as it started
/// after their own change (an fsync already under way may have missed it). A thousand files
/// in one directory then cost a handful of directory fsyncs instead of a thousand.
pub fn sync_dir(dir: Option<&Path>) {
    let Some(dir) = dir else { return };
    let group = {
        static GROUPS: std::sync::Mutex<Option<HashMap<PathBuf, Arc<DirSync>>>> = std::sync::Mutex::new(None);
        let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        groups.get_or_insert_with(HashMap::new).entry(dir.to_path_buf()).or_default().clone()
    };
    group.sync(dir);
}

#[derive(Default)]
struct DirSync {
    state: std::sync::Mutex<DirSyncState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct DirSyncState {
    /// Number of fsyncs started / finished.
    started: u64,
    finished: u64,
    running: bool,
}

impl DirSync {
    fn sync(&self, dir: &Path) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The first fsync to start from now on covers our change.
        let needed = st.started + 1;
        loop {
            if st.finished >= needed {
                return;
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.running = true;
            st.started += 1;
            let this = st.started;
            drop(st);
            if let Ok(f) = fs::File::open(dir) {
                let _ = f.sync_all();
            }
            st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.finished = this;
            st.running = false;
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_match_only_their_own_file() {
        let t = |n: &str, b: &str| is_temp_of(OsStr::new(n), OsStr::new(b));
        assert!(t(".a.Xy12Z9.mgmt-tmp", "a"));
        assert!(!t(".a.b.Xy12Z9.mgmt-tmp", "a"));
        assert!(!t(".a..mgmt-tmp", "a"));
        assert!(!t(".ab.Xy12Z9.mgmt-tmp", "a"));
        assert!(t(".a.b.Xy12Z9.mgmt-tmp", "a.b"));
    }

    #[test]
    fn temp_names_of_the_longest_file_names_fit_and_stay_apart() {
        let long = "b".repeat(NAME_MAX);
        let other = format!("{}c", "b".repeat(NAME_MAX - 1));
        for base in [long.as_str(), other.as_str(), &"x".repeat(238), &"x".repeat(239)] {
            let mut name = temp_prefix(OsStr::new(base));
            name.push("Ab12Z9");
            name.push(TEMP_SUFFIX);
            assert!(name.len() <= NAME_MAX, "{} bytes for a {}-byte name", name.len(), base.len());
            assert!(is_temp_of(&name, OsStr::new(base)));
        }
        let mut name = temp_prefix(OsStr::new(&long));
        name.push("Ab12Z9.mgmt-tmp");
        assert!(!is_temp_of(&name, OsStr::new(&other)));
    }
}
