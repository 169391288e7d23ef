//! `exec`: run a command when first checked, on refresh, and on each event (a line its
//! `watchcmd` prints, a change of `watchfiles`, `mtimes` or `creates`); guarded by `ifcmd`
//! (and `ifequals`), `nifcmd` and `creates`, forced by `mtimes`. Sends `stdout`, `stderr`
//! and `exitcode`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tracing::warn;

use super::{
    ApplyCtx, AutoEdgeInfo, Change, Changes, Detail, ResResult, Resource, ResourceError, Sends, Value,
    ValidationError, WatchCtx,
};
use crate::contract::upstream::{unset_if_empty, unset_if_zero};
use crate::contract::Meta;
use crate::os::fswatch::{Scope, Subscription};
use crate::contract::limits::{CAPTURE_MAX, MAX_INTERVAL_SECS, OUTPUT_TAIL_MAX};
use crate::text::tail;

/// How long output is still read after a command exited, when something it left in the
/// background keeps its stdout or stderr open.
const READ_AFTER_EXIT: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// The command. Without `shell` and `args` it is split like a shell would split words.
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Run `cmd` as `<shell> -c <cmd>`; also the shell of the other commands that have no
    /// shell of their own.
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub shell: Option<String>,
    /// Working directory of `cmd`, and of the other commands that have none of their own.
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Signal sent to a command's process group to stop it (at `timeout`); SIGTERM by
    /// default, so a command can clean up before the SIGKILL that follows.
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub sig: Option<String>,
    /// Run `cmd` only if this exits 0.
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub ifcmd: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub ifcwd: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub ifshell: Option<String>,
    /// Skip `cmd` when `ifcmd` exits 0 and its stdout and stderr together equal this.
    #[serde(default)]
    pub ifequals: Option<String>,
    /// Skip `cmd` when `ifcmd` exits 0 and its stdout alone equals this (so that warnings
    /// on stderr do not matter).
    #[serde(default)]
    pub ifequals_stdout: Option<String>,
    /// Run `cmd` only if this exits non-zero (the opposite of `ifcmd`).
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub nifcmd: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub nifcwd: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub nifshell: Option<String>,
    /// Skip `cmd` when this path exists; a change of it is an event.
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub creates: Option<String>,
    /// Files whose modification time, when newer than the last successful run, forces a
    /// run whatever the guards say; a change of one is an event.
    #[serde(default)]
    pub mtimes: Vec<String>,
    /// Long-running command; each line it prints is an event that re-runs `cmd`.
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub watchcmd: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub watchcwd: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub watchshell: Option<String>,
    /// Paths (a directory ends with `/` and is watched recursively) whose change is an event.
    #[serde(default)]
    pub watchfiles: Vec<String>,
    /// Run after `cmd` succeeded.
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub donecmd: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub donecwd: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub doneshell: Option<String>,
    /// User (name or id) every command runs as; needs the agent to run as root.
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub user: Option<String>,
    /// Group (name or id) every command runs as; needs the agent to run as root.
    #[serde(default, deserialize_with = "unset_if_empty")]
    pub group: Option<String>,
    /// Refused: there is no combined `output` send field (stdout and stderr are sent apart).
    #[serde(default)]
    pub send_output: Option<String>,
    /// Sent as `stdout` when `cmd` is skipped and has not run yet, so that receivers get a
    /// value before the first run.
    #[serde(default)]
    pub send_stdout: Option<String>,
    /// Like `send_stdout`, for `stderr`.
    #[serde(default)]
    pub send_stderr: Option<String>,
    /// Seconds before `cmd` is killed and counted as failed.
    #[serde(default, deserialize_with = "unset_if_zero")]
    pub timeout: Option<u64>,
    /// Upstream's old polling interval, still in its example graphs: only `0` (watch, do not
    /// poll) is accepted; `meta.poll` polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pollint: Option<u64>,
    /// Upstream's old exec state, still in its example graphs: only `present` is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Remembered between checks; not a param.
    #[serde(skip)]
    pub run: RunState,
}

/// What an exec remembers while the agent runs. It takes no part in equality (two
/// resources with the same params are equal whatever they remember), so `cmp` compares
/// params only.
#[derive(Clone, Debug, Default)]
pub struct RunState(Arc<Mutex<Memory>>);

#[derive(Debug, Default)]
struct Memory {
    /// When the last successful run of `cmd` started (for `mtimes`).
    last_run: Option<SystemTime>,
    /// `cmd` has run and sent its output.
    sent: bool,
}

impl PartialEq for RunState {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl RunState {
    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// User and group ids to run commands as, when they differ from the agent's.
type Creds = Option<(u32, u32)>;

/// The commands beside `cmd` that may have a shell and a cwd of their own.
#[derive(Clone, Copy)]
enum Side {
    If,
    Nif,
    Watch,
    Done,
}

/// Where and how one of the shell commands (`ifcmd`, `nifcmd`, `watchcmd`, `donecmd`)
/// runs: its own shell and cwd, else the resource's.
struct Step<'a> {
    script: &'a str,
    shell: Option<&'a str>,
    cwd: Option<&'a str>,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
    /// Stdout and stderr together, in the order their chunks arrived.
    both: String,
}

/// A command ready to start, and the program it starts (for error messages).
struct Prog {
    cmd: Command,
    program: String,
    /// The program is the shell.
    shell: bool,
    cwd: Option<String>,
}

/// A started command's process group (every command starts in a group of its own). The
/// whole group is sent `sig` and then SIGKILL when this is dropped (removal of the
/// resource, agent stop, end of a watch) unless it was released.
struct Group {
    pgid: Option<Pid>,
    sig: Signal,
}

/// How long a command has to exit after `sig` at its timeout, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Group {
    fn of(child: &Child, sig: Signal) -> Group {
        Group { pgid: child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw), sig }
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            if self.sig != Signal::SIGKILL {
                let _ = killpg(pgid, self.sig);
            }
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// Send `sig`, give the command [`STOP_GRACE`] to exit, then kill what is left.
    async fn stop(&mut self, child: &mut Child) {
        if let Some(pgid) = self.pgid
            && self.sig != Signal::SIGKILL
        {
            let _ = killpg(pgid, self.sig);
            let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
        }
        self.kill();
    }

    /// The command exited by itself: what it left running in the background is its own.
    fn release(&mut self) {
        self.pgid = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `max` bytes written to it, and how many came before them.
struct TailBuf {
    buf: Vec<u8>,
    max: usize,
    dropped: u64,
}

impl TailBuf {
    fn new(max: usize) -> Self {
        TailBuf { buf: Vec::new(), max, dropped: 0 }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Trim only once twice the bound is held, so trimming stays linear overall.
        if self.buf.len() > 2 * self.max {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.buf.len() > self.max {
            let cut = self.buf.len() - self.max;
            self.buf.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    /// The text kept, starting at a character boundary, and how many bytes were dropped.
    fn finish(mut self) -> (String, u64) {
        self.trim();
        let mut start = 0;
        if self.dropped > 0 {
            // Skip the rest of a character cut in two (UTF-8 continuation bytes).
            while start < self.buf.len().min(3) && self.buf[start] & 0xC0 == 0x80 {
                start += 1;
            }
        }
        (String::from_utf8_lossy(&self.buf[start..]).into_owned(), self.dropped + start as u64)
    }
}

/// Read `r` to its end into `into`, and into `both` (shared by stdout and stderr).
async fn read_into(r: Option<impl AsyncRead + Unpin>, into: &mut TailBuf, both: &Mutex<TailBuf>) {
    let Some(mut r) = r else { return };
    let mut chunk = [0u8; 8192];
    while let Ok(n @ 1..) = r.read(&mut chunk).await {
        into.push(&chunk[..n]);
        both.lock().unwrap_or_else(|e| e.into_inner()).push(&chunk[..n]);
    }
}

/// Wait for `child` while reading its output. It is done when it exits: its output is read
/// until its pipes close, or for [`READ_AFTER_EXIT`] more if a process it left in the
/// background holds them open.
async fn wait_reading(
    child: &mut Child,
    out: &mut TailBuf,
    err: &mut TailBuf,
    both: &Mutex<TailBuf>,
) -> std::io::Result<ExitStatus> {
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let reading = async {
        tokio::join!(read_into(stdout, out, both), read_into(stderr, err, both));
    };
    tokio::pin!(reading);
    tokio::select! {
        status = child.wait() => {
            let _ = tokio::time::timeout(READ_AFTER_EXIT, &mut reading).await;
            status
        }
        _ = &mut reading => child.wait().await,
    }
}

/// What a command that succeeded printed, for the debug log: the tails of its stdout and
/// stderr, each bounded; nothing if it printed nothing.
fn output_detail(stdout: &str, stderr: &str) -> Option<Detail> {
    let parts: Vec<String> = [("stdout", stdout), ("stderr", stderr)]
        .into_iter()
        .filter(|(_, s)| !s.trim().is_empty())
        .map(|(name, s)| format!("{name}: {}", tail(s.trim_end(), OUTPUT_TAIL_MAX)))
        .collect();
    (!parts.is_empty()).then(|| Detail::Output(parts.join("\n")))
}

/// The last lines of a command's output, on one line, bounded.
fn last_lines(s: &str) -> String {
    let t = s.trim_end();
    let lines: Vec<&str> = t.lines().collect();
    let start = lines.len().saturating_sub(5);
    tail(&lines[start..].join(" | "), OUTPUT_TAIL_MAX).into_owned()
}

/// A command failed: `message`, with `output` (from [`last_lines`]) kept apart.
fn failed(message: String, output: String) -> ResourceError {
    if output.is_empty() { ResourceError::msg(message) } else { ResourceError::Output { message, output } }
}

impl Exec {
    fn display(&self) -> String {
        if self.args.is_empty() {
            self.cmd.clone()
        } else {
            let args: Vec<String> = self
                .args
                .iter()
                .map(|a| shlex::try_quote(a).map(|q| q.into_owned()).unwrap_or_else(|_| a.clone()))
                .collect();
            format!("{} {}", self.cmd, args.join(" "))
        }
    }

    fn shell(&self) -> &str {
        self.shell.as_deref().unwrap_or("/bin/sh")
    }

    fn main_command(&self, creds: Creds) -> Result<Prog, String> {
        let (mut cmd, program, shell) = if self.shell.is_some() {
            let mut c = Command::new(self.shell());
            c.arg("-c").arg(&self.cmd);
            (c, self.shell().to_string(), true)
        } else if !self.args.is_empty() {
            let mut c = Command::new(&self.cmd);
            c.args(&self.args);
            (c, self.cmd.clone(), false)
        } else {
            let words =
                shlex::split(&self.cmd).ok_or_else(|| format!("cannot split `{}` into words", self.cmd))?;
            let (prog, rest) = words.split_first().ok_or("empty command")?;
            let mut c = Command::new(prog);
            c.args(rest);
            (c, prog.clone(), false)
        };
        self.prepare(&mut cmd, self.cwd.as_deref(), creds);
        Ok(Prog { cmd, program, shell, cwd: self.cwd.clone() })
    }

    /// `<shell> -c <script>` for one of the other commands, with its own shell and cwd or
    /// else the resource's.
    fn shell_command(&self, step: &Step, creds: Creds) -> Prog {
        let shell = step.shell.unwrap_or(self.shell());
        let cwd = step.cwd.or(self.cwd.as_deref());
        let mut cmd = Command::new(shell);
        cmd.arg("-c").arg(step.script);
        self.prepare(&mut cmd, cwd, creds);
        Prog { cmd, program: shell.to_string(), shell: true, cwd: cwd.map(str::to_string) }
    }

    /// The script of `side`, with the shell and cwd set for it.
    fn step<'a>(&'a self, side: Side, script: &'a str) -> Step<'a> {
        let (shell, cwd) = match side {
            Side::If => (&self.ifshell, &self.ifcwd),
            Side::Nif => (&self.nifshell, &self.nifcwd),
            Side::Watch => (&self.watchshell, &self.watchcwd),
            Side::Done => (&self.doneshell, &self.donecwd),
        };
        Step { script, shell: shell.as_deref(), cwd: cwd.as_deref() }
    }

    fn prepare(&self, c: &mut Command, cwd: Option<&str>, creds: Creds) {
        if let Some(cwd) = cwd {
            c.current_dir(cwd);
        }
        if let Some((uid, gid)) = creds {
            c.uid(uid).gid(gid);
        }
        c.envs(&self.env).stdin(Stdio::null()).kill_on_drop(true);
        crate::os::spawn::own_process_group(c.as_std_mut());
    }

    /// The signal that stops a command (validated already).
    fn signal(&self) -> Signal {
        self.sig.as_deref().and_then(|s| parse_signal(s).ok()).unwrap_or(Signal::SIGTERM)
    }

    /// The ids `user` and `group` name, if they differ from the agent's. An unknown name,
    /// or another user or group without root, is an error.
    fn credentials(&self) -> ResResult<Creds> {
        if self.user.is_none() && self.group.is_none() {
            return Ok(None);
        }
        let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
        let want_uid = self.user.as_deref().map(lookup_user).transpose()?.unwrap_or(uid.as_raw());
        let want_gid = self.group.as_deref().map(lookup_group).transpose()?.unwrap_or(gid.as_raw());
        if (want_uid, want_gid) == (uid.as_raw(), gid.as_raw()) {
            return Ok(None);
        }
        if !uid.is_root() {
            return Err(ResourceError::msg("running commands as another user or group needs the agent to run as root"));
        }
        Ok(Some((want_uid, want_gid)))
    }

    /// Why `program` could not be started: the cwd, the shell or the program.
    fn start_error(&self, what: &str, prog: (&str, bool, Option<&str>), e: std::io::Error) -> ResourceError {
        let (program, shell, cwd) = prog;
        if let Some(cwd) = cwd
            && !Path::new(cwd).is_dir()
        {
            return ResourceError::msg(format!("starting {what}: cwd `{cwd}` is not an existing directory"));
        }
        let who = if shell { "shell" } else { "program" };
        if e.kind() == std::io::ErrorKind::NotFound {
            let where_ = if shell || program.contains('/') { "" } else { " in PATH" };
            return ResourceError::msg(format!("starting {what}: {who} `{program}` not found{where_}"));
        }
        ResourceError::io(format!("starting {what}: {who} `{program}`"), e)
    }

    async fn run(&self, prog: Prog, what: &str) -> ResResult<Output> {
        let Prog { cmd: mut c, program, shell, cwd } = prog;
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| self.start_error(what, (&program, shell, cwd.as_deref()), e))?;
        let mut group = Group::of(&child, self.signal());
        let (mut out, mut err) = (TailBuf::new(CAPTURE_MAX), TailBuf::new(CAPTURE_MAX));
        let both = Mutex::new(TailBuf::new(CAPTURE_MAX));
        let waiting = wait_reading(&mut child, &mut out, &mut err, &both);
        let status = match self.timeout {
            Some(t) => match tokio::time::timeout(Duration::from_secs(t), waiting).await {
                Ok(status) => status,
                Err(_) => {
                    group.stop(&mut child).await;
                    return Err(ResourceError::msg(format!("{what} timed out after {t}s and was killed")));
                }
            },
            None => waiting.await,
        }
        .map_err(|e| ResourceError::io(format!("running {what}"), e))?;
        group.release();
        let (stdout, stdout_dropped) = out.finish();
        let (stderr, stderr_dropped) = err.finish();
        for (stream, dropped) in [("stdout", stdout_dropped), ("stderr", stderr_dropped)] {
            if dropped > 0 {
                warn!(
                    "exec[{}]: {what} printed more than {CAPTURE_MAX} bytes on {stream}; only the last {CAPTURE_MAX} are kept",
                    self.name
                );
            }
        }
        let both = both.into_inner().unwrap_or_else(|e| e.into_inner()).finish().0;
        Ok(Output { code: status.code().unwrap_or(-1), stdout, stderr, both })
    }

    /// Whether a file in `mtimes` changed after the last successful run; a missing one is
    /// an error.
    fn mtimes_newer(&self) -> ResResult<bool> {
        if self.mtimes.is_empty() {
            return Ok(false);
        }
        let mut times = Vec::with_capacity(self.mtimes.len());
        for p in &self.mtimes {
            let m = std::fs::metadata(p)
                .and_then(|m| m.modified())
                .map_err(|e| ResourceError::io(format!("mtimes: `{p}`"), e))?;
            times.push(m);
        }
        Ok(newer_than(&times, self.run.memory().last_run))
    }

    /// Whether `ifcmd`, `nifcmd` or `creates` say that `cmd` must not run.
    async fn blocked(&self, creds: Creds) -> ResResult<bool> {
        if let Some(ifcmd) = &self.ifcmd {
            let out = self.run(self.shell_command(&self.step(Side::If, ifcmd), creds), "ifcmd").await?;
            if if_blocks(&out, self.ifequals.as_deref(), self.ifequals_stdout.as_deref()) {
                return Ok(true);
            }
        }
        if let Some(nifcmd) = &self.nifcmd {
            let out = self.run(self.shell_command(&self.step(Side::Nif, nifcmd), creds), "nifcmd").await?;
            if out.code == 0 {
                return Ok(true);
            }
        }
        Ok(self.creates.as_deref().is_some_and(|c| Path::new(c).exists()))
    }

    /// `cmd` was skipped: before its first run, send `send_stdout` and `send_stderr`.
    fn send_fallback(&self, ctx: &ApplyCtx) {
        if self.run.memory().sent {
            return;
        }
        let mut sends = Sends::new();
        for (field, v) in [("stdout", &self.send_stdout), ("stderr", &self.send_stderr)] {
            if let Some(v) = v {
                sends.insert(field.into(), Value::Str(v.clone()));
            }
        }
        if !sends.is_empty() {
            ctx.send(sends);
        }
    }

    /// Subscribe to `creates`, `mtimes` and `watchfiles`: each change wakes the resource.
    async fn subscribe_paths(&self, ctx: &WatchCtx) -> Vec<Subscription> {
        let mut subs = Vec::new();
        let paths = self.creates.iter().chain(&self.mtimes).chain(&self.watchfiles);
        for p in paths {
            let scope = if p.ends_with('/') && p.len() > 1 {
                Scope::Tree(PathBuf::from(p.trim_end_matches('/')))
            } else {
                Scope::File(PathBuf::from(p))
            };
            subs.push(ctx.fs.subscribe(scope, ctx.waker.clone()).await);
        }
        subs
    }

    /// Run `watchcmd`: each line it prints is an event. Returns when it exits.
    async fn follow_watchcmd(&self, ctx: &WatchCtx, watchcmd: &str) -> ResResult<()> {
        let creds = self.credentials()?;
        let Prog { cmd: mut c, program, shell, cwd } = self.shell_command(&self.step(Side::Watch, watchcmd), creds);
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = c.spawn().map_err(|e| self.start_error("watchcmd", (&program, shell, cwd.as_deref()), e))?;
        // However the watch ends (the watchcmd exits, the resource is removed, the agent
        // stops), nothing the watchcmd started outlives it.
        let _group = Group::of(&child, self.signal());
        let mut stdout = child.stdout.take().expect("piped");
        ctx.event();
        // Chunks, not lines: a line without end must not grow a buffer without end.
        let mut chunk = [0u8; 8192];
        let mut partial = false;
        loop {
            let n = stdout.read(&mut chunk).await.map_err(|e| ResourceError::io("reading watchcmd", e))?;
            if n == 0 {
                break;
            }
            if chunk[..n].contains(&b'\n') {
                ctx.event();
            }
            partial = chunk[n - 1] != b'\n';
        }
        if partial {
            ctx.event();
        }
        let status = child.wait().await.map_err(|e| ResourceError::io("waiting for watchcmd", e))?;
        Err(ResourceError::msg(format!("watchcmd exited ({status})")))
    }
}

/// Whether any of `times` is newer than the last run; with no run yet, one is due.
fn newer_than(times: &[SystemTime], last_run: Option<SystemTime>) -> bool {
    match last_run {
        None => !times.is_empty(),
        Some(last) => times.iter().any(|t| *t > last),
    }
}

/// Whether an `ifcmd` that produced `out` blocks `cmd`: it failed, or it succeeded and
/// printed exactly `ifequals` (stdout and stderr) or `ifequals_stdout` (stdout).
fn if_blocks(out: &Output, ifequals: Option<&str>, ifequals_stdout: Option<&str>) -> bool {
    out.code != 0 || ifequals == Some(out.both.as_str()) || ifequals_stdout == Some(out.stdout.as_str())
}

/// A signal by name (`SIGTERM`, `TERM`) or number.
fn parse_signal(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("`{n}` is not a signal number"));
    }
    let named = |s: &str| {
        let full = if s.starts_with("SIG") { s.to_string() } else { format!("SIG{s}") };
        full.parse::<Signal>().ok()
    };
    if let Some(sig) = named(s) {
        return Ok(sig);
    }
    let upper = s.to_ascii_uppercase();
    if named(&upper).is_some() {
        return Err(format!("unknown signal `{s}`; did you mean `{upper}`?"));
    }
    Err(format!("unknown signal `{s}` (a name like `SIGTERM` or `TERM`, or a number)"))
}

/// A user's id, by name or else as a number.
fn lookup_user(name: &str) -> ResResult<u32> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => name.parse().map_err(|_| ResourceError::msg(format!("user `{name}` does not exist"))),
        Err(e) => Err(ResourceError::msg(format!("looking up user `{name}`: {e}"))),
    }
}

/// A group's id, by name or else as a number.
fn lookup_group(name: &str) -> ResResult<u32> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => name.parse().map_err(|_| ResourceError::msg(format!("group `{name}` does not exist"))),
        Err(e) => Err(ResourceError::msg(format!("looking up group `{name}`: {e}"))),
    }
}

/// Reject NUL bytes, which no command line, path or environment can hold.
fn no_nul(field: &'static str, s: &str) -> Result<(), ValidationError> {
    if s.contains('\0') {
        return Err(ValidationError::new(field, "must not contain a NUL byte"));
    }
    Ok(())
}

/// An optional text param that must not be blank when set.
fn not_blank(field: &'static str, v: &Option<String>) -> Result<(), ValidationError> {
    if v.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    Ok(())
}

fn absolute(field: &'static str, p: &str) -> Result<(), ValidationError> {
    if !Path::new(p).is_absolute() {
        return Err(ValidationError::new(field, format!("`{p}` must be an absolute path")));
    }
    Ok(())
}

impl Exec {
    /// The optional text params, by name.
    fn optional_texts(&self) -> [(&'static str, &Option<String>); 18] {
        [
            ("shell", &self.shell),
            ("cwd", &self.cwd),
            ("sig", &self.sig),
            ("creates", &self.creates),
            ("ifcmd", &self.ifcmd),
            ("ifcwd", &self.ifcwd),
            ("ifshell", &self.ifshell),
            ("nifcmd", &self.nifcmd),
            ("nifcwd", &self.nifcwd),
            ("nifshell", &self.nifshell),
            ("watchcmd", &self.watchcmd),
            ("watchcwd", &self.watchcwd),
            ("watchshell", &self.watchshell),
            ("donecmd", &self.donecmd),
            ("donecwd", &self.donecwd),
            ("doneshell", &self.doneshell),
            ("user", &self.user),
            ("group", &self.group),
        ]
    }

    fn validate_texts(&self) -> Result<(), ValidationError> {
        no_nul("cmd", &self.cmd)?;
        for a in &self.args {
            no_nul("args", a)?;
        }
        for (k, v) in &self.env {
            no_nul("env", k)?;
            no_nul("env", v)?;
        }
        for (field, list) in [("mtimes", &self.mtimes), ("watchfiles", &self.watchfiles)] {
            for p in list {
                no_nul(field, p)?;
            }
        }
        for (field, v) in self.optional_texts() {
            no_nul(field, v.as_deref().unwrap_or_default())?;
        }
        for (field, v) in self.optional_texts() {
            not_blank(field, v)?;
        }
        Ok(())
    }

    fn validate_paths(&self) -> Result<(), ValidationError> {
        let shells = [
            ("shell", &self.shell),
            ("ifshell", &self.ifshell),
            ("nifshell", &self.nifshell),
            ("watchshell", &self.watchshell),
            ("doneshell", &self.doneshell),
        ];
        let cwds = [
            ("cwd", &self.cwd),
            ("ifcwd", &self.ifcwd),
            ("nifcwd", &self.nifcwd),
            ("watchcwd", &self.watchcwd),
            ("donecwd", &self.donecwd),
            ("creates", &self.creates),
        ];
        for (field, p) in shells.into_iter().chain(cwds) {
            if let Some(p) = p {
                absolute(field, p)?;
            }
        }
        for (field, list) in [("mtimes", &self.mtimes), ("watchfiles", &self.watchfiles)] {
            for p in list {
                absolute(field, p)?;
            }
        }
        Ok(())
    }

    /// Params that only mean something with another one, and params refused.
    fn validate_combinations(&self) -> Result<(), ValidationError> {
        let lone = [
            ("ifcwd", self.ifcwd.is_some(), "ifcmd", self.ifcmd.is_some()),
            ("ifshell", self.ifshell.is_some(), "ifcmd", self.ifcmd.is_some()),
            ("ifequals", self.ifequals.is_some(), "ifcmd", self.ifcmd.is_some()),
            ("ifequals_stdout", self.ifequals_stdout.is_some(), "ifcmd", self.ifcmd.is_some()),
            ("nifcwd", self.nifcwd.is_some(), "nifcmd", self.nifcmd.is_some()),
            ("nifshell", self.nifshell.is_some(), "nifcmd", self.nifcmd.is_some()),
            ("watchcwd", self.watchcwd.is_some(), "watchcmd", self.watchcmd.is_some()),
            ("watchshell", self.watchshell.is_some(), "watchcmd", self.watchcmd.is_some()),
            ("donecwd", self.donecwd.is_some(), "donecmd", self.donecmd.is_some()),
            ("doneshell", self.doneshell.is_some(), "donecmd", self.donecmd.is_some()),
        ];
        for (field, set, needs, has) in lone {
            if set && !has {
                return Err(ValidationError::new(field, format!("has no effect without `{needs}`")));
            }
        }
        if self.send_output.is_some() {
            return Err(ValidationError::new(
                "send_output",
                "exec sends no combined `output` (stdout and stderr are sent apart): use `send_stdout` or `send_stderr`",
            ));
        }
        if self.pollint.is_some_and(|p| p != 0) {
            return Err(ValidationError::new(
                "pollint",
                "upstream's old polling interval: only `0` (no polling) is accepted; poll with `meta.poll`",
            ));
        }
        if self.state.as_deref().is_some_and(|s| s != "present") {
            return Err(ValidationError::new(
                "state",
                "upstream's old exec state: only `present` is accepted; an exec has no state to remove",
            ));
        }
        if let Some(sig) = &self.sig {
            parse_signal(sig).map_err(|m| ValidationError::new("sig", m))?;
        }
        for (field, id) in [("user", &self.user), ("group", &self.group)] {
            if id.as_deref().is_some_and(|s| s.contains(':') || s.trim() != s) {
                return Err(ValidationError::new(field, "must be a name or a number, without `:` or spaces around it"));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Resource for Exec {
    crate::resource_common!("exec");

    fn validate(&self) -> Result<(), ValidationError> {
        self.validate_texts()?;
        if self.cmd.trim().is_empty() {
            return Err(ValidationError::new("cmd", "must not be empty"));
        }
        if self.shell.is_some() && !self.args.is_empty() {
            return Err(ValidationError::new("args", "cannot be combined with `shell` (put them in `cmd`)"));
        }
        if self.shell.is_none() && self.args.is_empty() && shlex::split(&self.cmd).is_none() {
            return Err(ValidationError::new("cmd", "has unbalanced quotes"));
        }
        self.validate_paths()?;
        self.validate_combinations()?;
        if self.timeout.is_some_and(|t| t > MAX_INTERVAL_SECS) {
            return Err(ValidationError::new(
                "timeout",
                format!("is in seconds and must be at most ten years ({MAX_INTERVAL_SECS})"),
            ));
        }
        if self.env.keys().any(|k| k.is_empty() || k.contains('=')) {
            return Err(ValidationError::new("env", "variable names must be non-empty and contain no `=`"));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let _subs = self.subscribe_paths(&ctx).await;
        let Some(watchcmd) = &self.watchcmd else {
            return ctx.first_event_then_wait().await;
        };
        self.follow_watchcmd(&ctx, watchcmd).await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let t = ctx.trigger;
        // Nothing asks for a run: a command that succeeded stays done.
        if !(t.first || t.event || t.refresh || t.failed) {
            return Ok(vec![]);
        }
        let creds = self.credentials()?;
        // A newer file in `mtimes` forces a run: the guards are not even asked.
        let forced = self.mtimes_newer()?;
        if !forced && self.blocked(creds).await? {
            self.send_fallback(ctx);
            return Ok(vec![]);
        }
        let why = if forced {
            "mtimes"
        } else if t.refresh {
            "refresh"
        } else if t.first {
            "start"
        } else if t.event {
            "event"
        } else {
            "retry after failure"
        };
        if !apply {
            return Ok(vec![format!("run `{}` ({why})", self.display()).into()]);
        }
        let started = SystemTime::now();
        let cmd = self.main_command(creds).map_err(ResourceError::msg)?;
        let out = self.run(cmd, "cmd").await?;
        let code = out.code;
        let failure = (code != 0)
            .then(|| last_lines(if out.stderr.trim().is_empty() { &out.stdout } else { &out.stderr }));
        let detail =
            if ctx.detail && !self.meta.sensitive { output_detail(&out.stdout, &out.stderr) } else { None };
        let mut sends = Sends::new();
        sends.insert("stdout".into(), Value::Str(out.stdout));
        sends.insert("stderr".into(), Value::Str(out.stderr));
        sends.insert("exitcode".into(), Value::Int(i64::from(code)));
        ctx.send(sends);
        self.run.memory().sent = true;
        if let Some(output) = failure {
            return Err(failed(format!("`{}` exited with code {code}", self.cmd), output));
        }
        if let Some(done) = &self.donecmd {
            let d = self.run(self.shell_command(&self.step(Side::Done, done), creds), "donecmd").await?;
            if d.code != 0 {
                return Err(failed(format!("donecmd exited with code {}", d.code), last_lines(&d.stderr)));
            }
        }
        self.run.memory().last_run = Some(started);
        Ok(vec![Change::new(format!("ran `{}` ({why}, exit 0)", self.display())).with(detail)])
    }

    fn autoedges(&self) -> AutoEdgeInfo {
        let requires = self
            .cwd
            .iter()
            .map(|c| {
                let mut p = PathBuf::from(c.trim_end_matches('/'));
                p.push("");
                p
            })
            .collect();
        AutoEdgeInfo { provides: vec![], requires }
    }

    fn send_fields(&self) -> &'static [&'static str] {
        &["stdout", "stderr", "exitcode"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(cmd: &str) -> Exec {
        serde_json::from_value(serde_json::json!({"name": "e", "cmd": cmd})).unwrap()
    }

    #[test]
    fn tail_buffer_keeps_the_last_bytes_from_a_char_boundary() {
        let mut b = TailBuf::new(8);
        b.push("ééé".as_bytes());
        b.push(b"0123456789");
        b.push("€x".as_bytes());
        let (text, dropped) = b.finish();
        // The last 8 bytes: "6789" (4), "€" (3), "x" (1).
        assert_eq!(text, "6789€x");
        assert_eq!(dropped as usize + text.len(), "ééé0123456789€x".len());
        let mut b = TailBuf::new(4);
        b.push("a€".as_bytes());
        b.push("€".as_bytes());
        // "€" is 3 bytes: keeping 4 would start inside the first one.
        assert_eq!(b.finish().0, "€");
    }

    #[test]
    fn tail_buffer_stays_bounded_whatever_is_pushed() {
        let mut b = TailBuf::new(CAPTURE_MAX);
        for _ in 0..1000 {
            b.push(&[b'a'; 8192]);
            assert!(b.buf.len() <= 2 * CAPTURE_MAX + 8192);
        }
        let (text, dropped) = b.finish();
        assert_eq!(text.len(), CAPTURE_MAX);
        assert_eq!(dropped as usize, 1000 * 8192 - CAPTURE_MAX);
    }

    #[test]
    fn a_nul_byte_is_refused_naming_the_field() {
        let mut e = exec("a\0b");
        assert_eq!(e.validate().unwrap_err().field, "cmd");
        e = exec("echo");
        e.args = vec!["x\0".into()];
        assert_eq!(e.validate().unwrap_err().field, "args");
        e = exec("echo");
        e.env.insert("A".into(), "v\0".into());
        assert_eq!(e.validate().unwrap_err().field, "env");
        for field in ["shell", "cwd", "creates", "ifcmd", "watchcmd", "donecmd"] {
            let mut e = exec("echo");
            let v = Some("/a\0b".to_string());
            match field {
                "shell" => e.shell = v,
                "cwd" => e.cwd = v,
                "creates" => e.creates = v,
                "ifcmd" => e.ifcmd = v,
                "watchcmd" => e.watchcmd = v,
                _ => e.donecmd = v,
            }
            assert_eq!(e.validate().unwrap_err().field, field);
        }
        let mut e = exec("echo");
        e.nifcmd = Some("/a\0b".into());
        assert_eq!(e.validate().unwrap_err().field, "nifcmd");
        let mut e = exec("echo");
        e.watchfiles = vec!["/a\0b".into()];
        assert_eq!(e.validate().unwrap_err().field, "watchfiles");
        let mut e = exec("echo");
        e.user = Some("a\0".into());
        assert_eq!(e.validate().unwrap_err().field, "user");
    }

    fn with(json: serde_json::Value) -> Exec {
        let mut v = serde_json::json!({"name": "e", "cmd": "true"});
        v.as_object_mut().unwrap().extend(json.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn refused(json: serde_json::Value) -> String {
        let e = with(json.clone());
        match e.validate() {
            Err(err) => err.field.to_string(),
            Ok(()) => panic!("accepted: {json}"),
        }
    }

    #[test]
    fn per_command_params_need_their_command() {
        use serde_json::json;
        for (field, needs) in [
            ("ifcwd", "ifcmd"),
            ("ifshell", "ifcmd"),
            ("ifequals", "ifcmd"),
            ("ifequals_stdout", "ifcmd"),
            ("nifcwd", "nifcmd"),
            ("nifshell", "nifcmd"),
            ("watchcwd", "watchcmd"),
            ("watchshell", "watchcmd"),
            ("donecwd", "donecmd"),
            ("doneshell", "donecmd"),
        ] {
            let value = if field.starts_with("ifequals") { "x" } else { "/bin/sh" };
            assert_eq!(refused(json!({ field: value })), field);
            assert!(with(json!({ field: value, needs: "true" })).validate().is_ok(), "{field} with {needs}");
        }
        // `ifcmd` and `nifcmd` may be combined: both must let `cmd` run.
        assert!(with(json!({"ifcmd": "true", "nifcmd": "false"})).validate().is_ok());
        // An empty `ifequals` is a real value (the command printed nothing).
        assert!(with(json!({"ifcmd": "true", "ifequals": ""})).validate().is_ok());
    }

    #[test]
    fn new_paths_must_be_absolute_and_commands_not_blank() {
        use serde_json::json;
        assert_eq!(refused(json!({"watchfiles": ["rel/x"]})), "watchfiles");
        assert_eq!(refused(json!({"mtimes": ["x"]})), "mtimes");
        assert_eq!(refused(json!({"ifcmd": "true", "ifshell": "sh"})), "ifshell");
        assert_eq!(refused(json!({"donecmd": "true", "donecwd": "tmp"})), "donecwd");
        assert_eq!(refused(json!({"nifcmd": "  "})), "nifcmd");
        assert_eq!(refused(json!({"user": " "})), "user");
        assert_eq!(with(json!({"user": "", "shell": ""})).user, None, "empty is unset, as upstream writes it");
        assert_eq!(refused(json!({"group": "a:b"})), "group");
        assert!(with(json!({"watchfiles": ["/etc/", "/etc/hosts"], "mtimes": ["/etc/hosts"]})).validate().is_ok());
    }

    #[test]
    fn send_output_is_refused_and_send_stdout_accepted() {
        use serde_json::json;
        assert_eq!(refused(json!({"send_output": "x"})), "send_output");
        assert!(with(json!({"send_stdout": "x", "send_stderr": ""})).validate().is_ok());
    }

    #[test]
    fn the_old_pollint_and_state_are_accepted_only_at_their_harmless_values() {
        use serde_json::json;
        assert!(with(json!({"pollint": 0})).validate().is_ok());
        assert_eq!(refused(json!({"pollint": 10})), "pollint");
        assert!(with(json!({"state": "present"})).validate().is_ok());
        assert_eq!(refused(json!({"state": "absent"})), "state");
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("INT"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("term").unwrap_err().contains("did you mean `TERM`"));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("SIGNOPE").is_err());
        assert_eq!(refused(serde_json::json!({"sig": "hup"})), "sig");
        assert!(with(serde_json::json!({"sig": "HUP"})).validate().is_ok());
        assert_eq!(with(serde_json::json!({})).signal(), Signal::SIGTERM);
    }

    fn output(code: i32, stdout: &str, stderr: &str) -> Output {
        Output { code, stdout: stdout.into(), stderr: stderr.into(), both: format!("{stdout}{stderr}") }
    }

    #[test]
    fn ifcmd_blocks_on_failure_or_on_equal_output() {
        assert!(if_blocks(&output(1, "", ""), None, None));
        assert!(!if_blocks(&output(0, "", ""), None, None));
        assert!(if_blocks(&output(0, "yes\n", ""), Some("yes\n"), None));
        assert!(!if_blocks(&output(0, "yes", ""), Some("yes\n"), None));
        assert!(!if_blocks(&output(0, "yes\n", "warn\n"), Some("yes\n"), None));
        assert!(if_blocks(&output(0, "yes\n", "warn\n"), None, Some("yes\n")));
        assert!(if_blocks(&output(0, "", ""), Some(""), None));
    }

    #[test]
    fn mtimes_force_a_run_when_newer_or_never_ran() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let later = t0 + Duration::from_secs(1);
        assert!(newer_than(&[t0], None));
        assert!(!newer_than(&[], None));
        assert!(!newer_than(&[t0], Some(t0)));
        assert!(newer_than(&[t0, later], Some(t0)));
    }

    #[test]
    fn equality_ignores_what_is_remembered_but_not_new_params() {
        let a = with(serde_json::json!({"nifcmd": "true"}));
        let b = a.clone();
        b.run.memory().sent = true;
        let fresh = with(serde_json::json!({"nifcmd": "true"}));
        assert!(a.cmp(&fresh));
        assert!(!a.cmp(&with(serde_json::json!({"nifcmd": "false"}))));
        assert!(!a.cmp(&with(serde_json::json!({"nifcmd": "true", "sig": "INT"}))));
    }

    #[test]
    fn timeout_is_at_most_ten_years() {
        let mut e = exec("true");
        e.timeout = Some(MAX_INTERVAL_SECS + 1);
        assert_eq!(e.validate().unwrap_err().field, "timeout");
        e.timeout = Some(MAX_INTERVAL_SECS);
        assert!(e.validate().is_ok());
    }

    #[test]
    fn failure_output_is_the_bounded_tail_of_the_last_lines() {
        let out = format!("{}\nline2\nline3\nline4\nline5\n{}\n", "x".repeat(10), "y".repeat(3_000_000));
        let e = failed("`x` exited with code 1".into(), last_lines(&out));
        let tail = e.output().unwrap();
        assert!(tail.len() <= OUTPUT_TAIL_MAX, "{}", tail.len());
        assert!(tail.ends_with("yyy"));
        assert_eq!(e.summary(), "`x` exited with code 1");
        assert_eq!(failed("m".into(), last_lines(" \n")).output(), None);
    }
}
