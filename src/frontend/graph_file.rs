//! A graph file: reading it safely and following its edits, for the frontends that read
//! their graph from a file.
//!
//! Reading never blocks the agent's main loop: it runs on the blocking pool, opens with
//! `O_NONBLOCK`, and refuses anything that is not a regular file (a FIFO would block a
//! reader forever, a device has no end). Edits are seen only once finished (the writer
//! closed the file, or renamed it into place), so a file is never read half-written. A
//! symlinked graph file follows its target: every link on the way and the final target are
//! watched, and the chain is resolved again after each change.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::os::fswatch::{FsWatcher, Subscription};

/// Graph files above this size are refused (the YAML frontend's node budget is reached far
/// below it).
pub const MAX_GRAPH_FILE: u64 = 64 << 20;

/// How many symlinks are followed before giving up (the kernel's own limit).
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum GraphFileError {
    // The OS error is part of the message, not a cause: shown once.
    #[error("reading graph file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("graph file {path} is {what}, not a regular file")]
    NotRegular { path: String, what: &'static str },
    #[error("graph file {path} is larger than {} MiB", MAX_GRAPH_FILE >> 20)]
    TooBig { path: String },
}

/// What a file type is, in words.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a file"
    }
}

/// Read the graph file (following symlinks). Blocking, but never on a FIFO or a device:
/// the type is checked before opening and again on the open descriptor.
pub fn read(path: &Path) -> Result<Vec<u8>, GraphFileError> {
    let shown = || path.display().to_string();
    let io = |error| GraphFileError::Io { path: shown(), error };
    let not_regular = |t: std::fs::FileType| GraphFileError::NotRegular { path: shown(), what: kind_of(t) };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    // It may have been replaced between the check and the open.
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    if meta.len() > MAX_GRAPH_FILE {
        return Err(GraphFileError::TooBig { path: shown() });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_GRAPH_FILE + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_GRAPH_FILE {
        return Err(GraphFileError::TooBig { path: shown() });
    }
    Ok(bytes)
}

/// One step of a path being resolved.
enum Step {
    Root,
    Up,
    Name(std::ffi::OsString),
}

/// `path`'s steps, last first (so the next one is popped).
fn steps_rev(path: &Path) -> impl Iterator<Item = Step> + '_ {
    path.components().rev().filter_map(|c| match c {
        Component::RootDir | Component::Prefix(_) => Some(Step::Root),
        Component::CurDir => None,
        Component::ParentDir => Some(Step::Up),
        Component::Normal(n) => Some(Step::Name(n.to_os_string())),
    })
}

/// The paths whose change can change what `path` reads: `path` itself, every symlink met
/// while resolving it, and the file it resolves to. `path` must be absolute.
pub fn watched_paths(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    let mut todo: Vec<Step> = steps_rev(path).collect();
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    while let Some(step) = todo.pop() {
        match step {
            Step::Root => cur = PathBuf::from("/"),
            Step::Up => {
                cur.pop();
            }
            Step::Name(name) => {
                let next = cur.join(name);
                match std::fs::read_link(&next) {
                    Ok(target) if links < MAX_LINKS => {
                        links += 1;
                        out.push(next);
                        // The target's steps come next, relative to the link's directory.
                        todo.extend(steps_rev(&target));
                    }
                    _ => cur = next,
                }
            }
        }
    }
    out.push(cur);
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// Follows a graph file: wakes `changed` when a finished edit may have changed what it
/// reads.
pub struct WatchedFile {
    path: PathBuf,
    fs: Arc<FsWatcher>,
    changed: Arc<Notify>,
    watched: Vec<PathBuf>,
    _subs: Vec<Subscription>,
}

/// One read of the graph file, done off the main loop.
pub struct Loaded {
    pub bytes: Result<Vec<u8>, GraphFileError>,
    /// The paths to watch, resolved at the time of the read.
    pub watched: Vec<PathBuf>,
}

impl WatchedFile {
    pub async fn watch(
        fs: Arc<FsWatcher>,
        path: &Path,
        changed: Arc<Notify>,
    ) -> std::io::Result<WatchedFile> {
        let path = std::path::absolute(path)?;
        let mut g = WatchedFile { path, fs, changed, watched: Vec::new(), _subs: Vec::new() };
        let p = g.path.clone();
        let watched = tokio::task::spawn_blocking(move || watched_paths(&p)).await.unwrap_or_default();
        g.follow(watched).await;
        Ok(g)
    }

    /// Read the file on the blocking pool (resolving its links again on the way).
    pub fn load(&self) -> tokio::task::JoinHandle<Loaded> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || Loaded { watched: watched_paths(&path), bytes: read(&path) })
    }

    /// Watch `watched` (from the last read) if the link chain changed.
    pub async fn follow(&mut self, watched: Vec<PathBuf>) {
        if watched.is_empty() || watched == self.watched {
            return;
        }
        let mut subs = Vec::with_capacity(watched.len());
        for p in &watched {
            let n = self.changed.clone();
            subs.push(self.fs.subscribe_settled(p.clone(), Arc::new(move || n.notify_one())).await);
        }
        self._subs = subs;
        self.watched = watched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_plain_file_is_watched_as_itself() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("g.yaml");
        assert_eq!(watched_paths(&f), vec![f.clone()]);
    }

    #[test]
    fn every_link_on_the_way_and_the_target_are_watched() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("v1")).unwrap();
        std::fs::write(root.join("v1/g.yaml"), "x").unwrap();
        // The ConfigMap layout: g.yaml -> ..data/g.yaml, ..data -> v1.
        symlink("v1", root.join("..data")).unwrap();
        symlink("..data/g.yaml", root.join("g.yaml")).unwrap();
        assert_eq!(
            watched_paths(&root.join("g.yaml")),
            vec![root.join("g.yaml"), root.join("..data"), root.join("v1/g.yaml")]
        );
        // An absolute link with `..` in it.
        symlink(root.join("v1/../v1/g.yaml"), root.join("abs.yaml")).unwrap();
        assert_eq!(
            watched_paths(&root.join("abs.yaml")),
            vec![root.join("abs.yaml"), root.join("v1/g.yaml")]
        );
    }

    #[test]
    fn a_link_loop_ends() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        let w = watched_paths(&root.join("a"));
        assert!(w.contains(&root.join("a")) && w.contains(&root.join("b")));
    }

    #[test]
    fn non_regular_files_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read(&fifo).unwrap_err().to_string();
        assert!(e.ends_with("is a FIFO, not a regular file"), "{e}");
        let e = read(t.path()).unwrap_err().to_string();
        assert!(e.ends_with("is a directory, not a regular file"), "{e}");
        let e = read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.ends_with("is a character device, not a regular file"), "{e}");
    }
}
