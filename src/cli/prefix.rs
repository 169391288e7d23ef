//! The agent's prefix: its private state directory (lease, unpacked deploys), created 0700
//! and locked for the agent's life, so that two agents never share one.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tracing::info;

/// The mode of the prefix: only its owner (root, for a system agent) may read it.
pub const PREFIX_MODE: u32 = 0o700;
/// The lock file inside the prefix.
pub const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    #[error(
        "another mgmt agent{} is running with prefix {}; each agent needs its own --prefix (or --tmp-prefix)",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        prefix.display()
    )]
    InUse { prefix: PathBuf, pid: Option<u32> },
    // The cause is the source only: `{:#}` prints the chain, so naming it here too would
    // print it twice.
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PrefixError + 'a {
    move |source| PrefixError::Io { what, path: path.to_path_buf(), source }
}

/// Held while the agent runs: the prefix is locked (`flock`) until it is dropped, or until
/// the process ends, however it ends.
#[derive(Debug)]
pub struct PrefixLock {
    _lock: Flock<File>,
}

/// Create the prefix (and missing parents) with mode 0700 from the start, so it is never
/// readable by others, not even for a moment. An existing prefix that others can read is
/// made 0700 as well: it holds agent state.
pub fn create(prefix: &Path) -> Result<(), PrefixError> {
    DirBuilder::new()
        .recursive(true)
        .mode(PREFIX_MODE)
        .create(prefix)
        .map_err(io("creating prefix", prefix))?;
    // Through a descriptor of the directory itself: what is checked is what is changed.
    let dir = File::open(prefix).map_err(io("opening prefix", prefix))?;
    let mode = dir.metadata().map_err(io("reading prefix", prefix))?.mode() & 0o7777;
    // Also when the umask took bits the agent needs.
    if mode != PREFIX_MODE {
        dir.set_permissions(std::fs::Permissions::from_mode(PREFIX_MODE))
            .map_err(io("setting the mode of prefix", prefix))?;
        info!("prefix {} was mode {mode:04o}; made it {PREFIX_MODE:04o}", prefix.display());
    }
    Ok(())
}

/// Lock the prefix for this agent, or say which agent holds it.
pub fn lock(prefix: &Path) -> Result<PrefixLock, PrefixError> {
    let path = prefix.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io("opening lock file", &path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // The pid is only for the message a second agent prints.
            let pid = format!("{}\n", std::process::id());
            lock.set_len(0)
                .and_then(|()| lock.rewind())
                .and_then(|()| lock.write_all(pid.as_bytes()))
                .map_err(io("writing lock file", &path))?;
            Ok(PrefixLock { _lock: lock })
        }
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            Err(PrefixError::InUse { prefix: prefix.to_path_buf(), pid })
        }
        Err((_, e)) => Err(io("locking", &path)(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_prefix_is_refused_until_the_first_is_dropped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("p");
        create(&p).unwrap();
        let first = lock(&p).unwrap();
        match lock(&p) {
            Err(PrefixError::InUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(first);
        lock(&p).unwrap();
    }

    #[test]
    fn an_io_error_names_its_cause_once_in_the_chain() {
        let e = io("opening prefix", Path::new("/p"))(std::io::Error::from_raw_os_error(libc::EACCES));
        let shown = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(shown, "opening prefix /p: Permission denied (os error 13)");
    }
}
