//! Child processes of a benchmark (agents, etcd, sshd), stopped when dropped.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// A running child, its stderr in `log`. Waits for its exit without polling: a pidfd becomes
/// readable the moment it exits, which also gives exact exit times. Dropping it stops the
/// process (`drop_signal`, then SIGKILL after 5 s) and reaps it.
pub struct Proc {
    child: Option<Child>,
    pidfd: i32,
    pub log: PathBuf,
    pub what: String,
    /// The signal that stops it when it is dropped.
    pub drop_signal: libc::c_int,
}

impl Proc {
    /// Start `cmd`. If the bench itself is killed (Ctrl-C), the child gets SIGTERM instead of
    /// living on.
    pub fn spawn(mut cmd: Command, log: PathBuf, what: String) -> Result<Proc> {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        Proc::spawn_untied(cmd, log, what)
    }

    /// [`Proc::spawn`] without the tie to the bench's life: with no `pre_exec`, std starts the
    /// child with posix_spawn instead of fork, which matters where the start is timed.
    pub fn spawn_untied(mut cmd: Command, log: PathBuf, what: String) -> Result<Proc> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) } as i32;
        let mut p = Proc { child: Some(child), pidfd, log, what, drop_signal: libc::SIGTERM };
        if p.pidfd < 0 {
            let e = std::io::Error::last_os_error();
            p.kill();
            bail!("pidfd_open: {e}");
        }
        Ok(p)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// The last 10 lines of its log.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn ensure_alive(&mut self) -> Result<()> {
        ensure!(self.alive(), "{} exited; log:\n{}", self.what, self.log_tail());
        Ok(())
    }

    /// Wait for the process to exit; returns its status and the instant the exit was seen.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(ExitStatus, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd { fd: self.pidfd, events: libc::POLLIN, revents: 0 };
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            let seen = Instant::now();
            if r > 0 {
                let status = self.child.take().context("already reaped")?.wait()?;
                return Ok((status, seen));
            }
            if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if left.is_zero() || r == 0 {
                bail!(
                    "{} (pid {}) did not exit within {timeout:?}; log:\n{}",
                    self.what,
                    self.pid(),
                    self.log_tail()
                );
            }
        }
    }

    /// Wait for a successful exit; returns the instant it was seen.
    pub fn wait_ok(&mut self, timeout: Duration) -> Result<Instant> {
        let (status, at) = self.wait_exit(timeout)?;
        ensure!(status.success(), "{} exited with {status}; log:\n{}", self.what, self.log_tail());
        Ok(at)
    }

    pub fn signal(&self, sig: libc::c_int) {
        if self.child.is_some() {
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// Stop with `sig`, falling back to SIGKILL after 5 s.
    pub fn stop(&mut self, sig: libc::c_int) -> Option<ExitStatus> {
        self.child.as_ref()?;
        self.signal(sig);
        match self.wait_exit(Duration::from_secs(5)) {
            Ok((s, _)) => Some(s),
            Err(_) => {
                self.kill();
                None
            }
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(self.drop_signal);
        self.kill();
        if self.pidfd >= 0 {
            unsafe { libc::close(self.pidfd) };
        }
    }
}
