//! Waiting for file content with inotify, with a fallback read every millisecond.

use std::ffi::OsString;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use inotify::{Inotify, WatchDescriptor, WatchMask};

/// Poll interval of the fallback: re-read the files even without an event this often.
pub const FALLBACK: Duration = Duration::from_millis(1);

/// Watches several directories for IN_CLOSE_WRITE and IN_MOVED_TO of one file name (the two
/// ways a file gets new content: written in place, or renamed over).
pub struct Waiter {
    ino: Inotify,
    wds: Vec<WatchDescriptor>,
    name: OsString,
    buf: Vec<u8>,
}

impl Waiter {
    pub fn new(dirs: &[PathBuf], name: &str) -> Result<Waiter> {
        let ino = Inotify::init()?;
        let wds = dirs
            .iter()
            .map(|d| ino.watches().add(d, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO))
            .collect::<Result<_, _>>()?;
        Ok(Waiter { ino, wds, name: name.into(), buf: vec![0; 64 * 1024] })
    }

    /// Watches one file.
    pub fn file(path: &Path) -> Result<Waiter> {
        let dir = path.parent().context("no parent")?.to_path_buf();
        let name = path.file_name().context("no name")?.to_string_lossy();
        Waiter::new(&[dir], &name)
    }

    /// Discard queued events.
    pub fn drain(&mut self) {
        while self.ino.read_events(&mut self.buf).is_ok_and(|mut e| e.next().is_some()) {}
    }

    /// Block until an event for our name arrives in any watched directory (true) or
    /// `timeout` passes (false).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            let mut pfd = libc::pollfd { fd: self.ino.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            if r <= 0 {
                continue;
            }
            let mut hit = false;
            while let Ok(events) = self.ino.read_events(&mut self.buf) {
                let mut any = false;
                for e in events {
                    any = true;
                    hit |= e.name == Some(self.name.as_os_str()) && self.wds.contains(&e.wd);
                }
                if !any {
                    break;
                }
            }
            if hit {
                return true;
            }
        }
    }
}

/// When each file of a round got its new content (time since `t0`), and whether that was
/// seen by a fallback read rather than after an event.
pub struct Arrival {
    pub at: Vec<Duration>,
    pub by_fallback: Vec<bool>,
}

/// Wait until every path holds `want`. On every wake-up (an event for the name in any of the
/// directories, or the fallback timer) every file not yet right is read again.
pub fn until_all<P: AsRef<Path>>(
    w: &mut Waiter,
    paths: &[P],
    want: &[u8],
    t0: Instant,
    limit: Duration,
) -> Result<Arrival> {
    let mut at: Vec<Option<Duration>> = vec![None; paths.len()];
    let mut by_fallback = vec![false; paths.len()];
    let mut fallback_wake = false;
    loop {
        for (i, p) in paths.iter().enumerate() {
            if at[i].is_none() && fs::read(p.as_ref()).ok().as_deref() == Some(want) {
                at[i] = Some(t0.elapsed());
                by_fallback[i] = fallback_wake;
            }
        }
        if at.iter().all(Option::is_some) {
            return Ok(Arrival { at: at.into_iter().flatten().collect(), by_fallback });
        }
        if t0.elapsed() > limit {
            let missing: Vec<String> = paths
                .iter()
                .zip(&at)
                .filter(|(_, a)| a.is_none())
                .map(|(p, _)| p.as_ref().display().to_string())
                .collect();
            bail!("no new content within {limit:?} in {}", missing.join(", "));
        }
        fallback_wake = !w.wait(FALLBACK);
    }
}
