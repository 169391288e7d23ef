//! `exec`: run a command when first checked, on refresh, and on each line its `watchcmd`
//! prints; guarded by `ifcmd` and `creates`. Sends `stdout`, `stderr` and `exitcode`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

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
use crate::contract::Meta;
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
    /// Run `cmd` (and `ifcmd`, `watchcmd`, `donecmd`) as `<shell> -c <cmd>`.
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Run `cmd` only if this exits 0.
    #[serde(default)]
    pub ifcmd: Option<String>,
    /// Skip `cmd` when this path exists.
    #[serde(default)]
    pub creates: Option<String>,
    /// Long-running command; each line it prints is an event that re-runs `cmd`.
    #[serde(default)]
    pub watchcmd: Option<String>,
    /// Run after `cmd` succeeded.
    #[serde(default)]
    pub donecmd: Option<String>,
    /// Seconds before `cmd` is killed and counted as failed.
    #[serde(default)]
    pub timeout: Option<u64>,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A command ready to start, and the program it starts (for error messages).
struct Prog {
    cmd: Command,
    program: String,
    /// The program is the shell.
    shell: bool,
}

/// A started command's process group (every command starts in a group of its own). The
/// whole group is killed when this is dropped (timeout, removal of the resource, agent
/// stop, end of a watch) unless it was released.
struct Group(Option<Pid>);

impl Group {
    fn of(child: &Child) -> Group {
        Group(child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw))
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// The command exited by itself: what it left running in the background is its own.
    fn release(&mut self) {
        self.0 = None;
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

/// Read `r` to its end into `into`.
async fn read_into(r: Option<impl AsyncRead + Unpin>, into: &mut TailBuf) {
    let Some(mut r) = r else { return };
    let mut chunk = [0u8; 8192];
    while let Ok(n @ 1..) = r.read(&mut chunk).await {
        into.push(&chunk[..n]);
    }
}

/// Wait for `child` while reading its output. It is done when it exits: its output is read
/// until its pipes close, or for [`READ_AFTER_EXIT`] more if a process it left in the
/// background holds them open.
async fn wait_reading(
    child: &mut Child,
    out: &mut TailBuf,
    err: &mut TailBuf,
) -> std::io::Result<ExitStatus> {
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let reading = async {
        tokio::join!(read_into(stdout, out), read_into(stderr, err));
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

    fn main_command(&self) -> Result<Prog, String> {
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
        self.prepare(&mut cmd);
        Ok(Prog { cmd, program, shell })
    }

    fn shell_command(&self, script: &str) -> Prog {
        let mut cmd = Command::new(self.shell());
        cmd.arg("-c").arg(script);
        self.prepare(&mut cmd);
        Prog { cmd, program: self.shell().to_string(), shell: true }
    }

    fn prepare(&self, c: &mut Command) {
        if let Some(cwd) = &self.cwd {
            c.current_dir(cwd);
        }
        c.envs(&self.env).stdin(Stdio::null()).kill_on_drop(true);
        crate::os::spawn::own_process_group(c.as_std_mut());
    }

    /// Why `program` could not be started: the cwd, the shell or the program.
    fn start_error(&self, what: &str, program: &str, shell: bool, e: std::io::Error) -> ResourceError {
        if let Some(cwd) = &self.cwd
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
        let Prog { cmd: mut c, program, shell } = prog;
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| self.start_error(what, &program, shell, e))?;
        let mut group = Group::of(&child);
        let (mut out, mut err) = (TailBuf::new(CAPTURE_MAX), TailBuf::new(CAPTURE_MAX));
        let waiting = wait_reading(&mut child, &mut out, &mut err);
        let status = match self.timeout {
            Some(t) => match tokio::time::timeout(Duration::from_secs(t), waiting).await {
                Ok(status) => status,
                Err(_) => {
                    group.kill();
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
        Ok(Output { code: status.code().unwrap_or(-1), stdout, stderr })
    }
}

/// Reject NUL bytes, which no command line, path or environment can hold.
fn no_nul(field: &'static str, s: &str) -> Result<(), ValidationError> {
    if s.contains('\0') {
        return Err(ValidationError::new(field, "must not contain a NUL byte"));
    }
    Ok(())
}

#[async_trait]
impl Resource for Exec {
    crate::resource_common!("exec");

    fn validate(&self) -> Result<(), ValidationError> {
        no_nul("cmd", &self.cmd)?;
        for a in &self.args {
            no_nul("args", a)?;
        }
        for (k, v) in &self.env {
            no_nul("env", k)?;
            no_nul("env", v)?;
        }
        for (field, v) in [
            ("shell", &self.shell),
            ("cwd", &self.cwd),
            ("creates", &self.creates),
            ("ifcmd", &self.ifcmd),
            ("watchcmd", &self.watchcmd),
            ("donecmd", &self.donecmd),
        ] {
            no_nul(field, v.as_deref().unwrap_or_default())?;
        }
        if self.cmd.trim().is_empty() {
            return Err(ValidationError::new("cmd", "must not be empty"));
        }
        if self.shell.is_some() && !self.args.is_empty() {
            return Err(ValidationError::new("args", "cannot be combined with `shell` (put them in `cmd`)"));
        }
        if self.shell.is_none() && self.args.is_empty() && shlex::split(&self.cmd).is_none() {
            return Err(ValidationError::new("cmd", "has unbalanced quotes"));
        }
        if let Some(s) = &self.shell
            && !Path::new(s).is_absolute()
        {
            return Err(ValidationError::new("shell", format!("`{s}` must be an absolute path")));
        }
        for (field, p) in [("cwd", &self.cwd), ("creates", &self.creates)] {
            if let Some(p) = p
                && !Path::new(p).is_absolute()
            {
                return Err(ValidationError::new(field, format!("`{p}` must be an absolute path")));
            }
        }
        for (field, c) in [("ifcmd", &self.ifcmd), ("watchcmd", &self.watchcmd), ("donecmd", &self.donecmd)] {
            if c.as_deref().is_some_and(|c| c.trim().is_empty()) {
                return Err(ValidationError::new(field, "must not be empty"));
            }
        }
        if self.timeout == Some(0) {
            return Err(ValidationError::new("timeout", "must be at least 1 second"));
        }
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
        let Some(watchcmd) = &self.watchcmd else {
            ctx.event();
            std::future::pending::<()>().await;
            return Ok(());
        };
        let Prog { cmd: mut c, program, shell } = self.shell_command(watchcmd);
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = c.spawn().map_err(|e| self.start_error("watchcmd", &program, shell, e))?;
        // However the watch ends (the watchcmd exits, the resource is removed, the agent
        // stops), nothing the watchcmd started outlives it.
        let _group = Group::of(&child);
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

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let t = ctx.trigger;
        // Nothing asks for a run: a command that succeeded stays done.
        if !(t.first || t.event || t.refresh || t.failed) {
            return Ok(vec![]);
        }
        if let Some(ifcmd) = &self.ifcmd {
            let out = self.run(self.shell_command(ifcmd), "ifcmd").await?;
            if out.code != 0 {
                return Ok(vec![]);
            }
        }
        if let Some(creates) = &self.creates
            && Path::new(creates).exists()
        {
            return Ok(vec![]);
        }
        let why = if t.refresh {
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
        let cmd = self.main_command().map_err(ResourceError::msg)?;
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
        if let Some(output) = failure {
            return Err(failed(format!("`{}` exited with code {code}", self.cmd), output));
        }
        if let Some(done) = &self.donecmd {
            let d = self.run(self.shell_command(done), "donecmd").await?;
            if d.code != 0 {
                return Err(failed(format!("donecmd exited with code {}", d.code), last_lines(&d.stderr)));
            }
        }
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
