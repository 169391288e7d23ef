//! `exec`: run a command when first checked, on refresh, and on each line its `watchcmd`
//! prints; guarded by `ifcmd` and `creates`. Sends `stdout`, `stderr` and `exitcode`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{
    ApplyCtx, AutoEdgeInfo, Changes, ResResult, Resource, ResourceError, Sends, ValidationError, WatchCtx,
};
use crate::engine::meta::Meta;

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

    fn main_command(&self) -> Result<Command, String> {
        let mut c = if self.shell.is_some() {
            let mut c = Command::new(self.shell());
            c.arg("-c").arg(&self.cmd);
            c
        } else if !self.args.is_empty() {
            let mut c = Command::new(&self.cmd);
            c.args(&self.args);
            c
        } else {
            let words =
                shlex::split(&self.cmd).ok_or_else(|| format!("cannot split `{}` into words", self.cmd))?;
            let (prog, rest) = words.split_first().ok_or("empty command")?;
            let mut c = Command::new(prog);
            c.args(rest);
            c
        };
        self.prepare(&mut c);
        Ok(c)
    }

    fn shell_command(&self, script: &str) -> Command {
        let mut c = Command::new(self.shell());
        c.arg("-c").arg(script);
        self.prepare(&mut c);
        c
    }

    fn prepare(&self, c: &mut Command) {
        if let Some(cwd) = &self.cwd {
            c.current_dir(cwd);
        }
        c.envs(&self.env).stdin(Stdio::null()).kill_on_drop(true);
    }

    async fn run(&self, mut c: Command, what: &str, timeout: Option<u64>) -> ResResult<Output> {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().map_err(|e| ResourceError::io(format!("starting {what}"), e))?;
        let wait = child.wait_with_output();
        let out = match timeout {
            Some(t) => tokio::time::timeout(Duration::from_secs(t), wait)
                .await
                .map_err(|_| ResourceError::msg(format!("{what} timed out after {t}s and was killed")))?,
            None => wait.await,
        }
        .map_err(|e| ResourceError::io(format!("running {what}"), e))?;
        Ok(Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn tail(s: &str) -> String {
    let t = s.trim_end();
    let lines: Vec<&str> = t.lines().collect();
    let start = lines.len().saturating_sub(5);
    lines[start..].join(" | ")
}

#[async_trait]
impl Resource for Exec {
    crate::resource_common!("exec");

    fn validate(&self) -> Result<(), ValidationError> {
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
        let mut c = self.shell_command(watchcmd);
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = c.spawn().map_err(|e| ResourceError::io("starting watchcmd", e))?;
        let stdout = child.stdout.take().expect("piped");
        ctx.event();
        let mut lines = BufReader::new(stdout).lines();
        while let Some(_line) =
            lines.next_line().await.map_err(|e| ResourceError::io("reading watchcmd", e))?
        {
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
            let out = self.run(self.shell_command(ifcmd), "ifcmd", self.timeout).await?;
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
            return Ok(vec![format!("run `{}` ({why})", self.display())]);
        }
        let cmd = self.main_command().map_err(ResourceError::msg)?;
        let out = self.run(cmd, "cmd", self.timeout).await?;
        let mut sends = Sends::new();
        sends.insert("stdout".into(), out.stdout.clone());
        sends.insert("stderr".into(), out.stderr.clone());
        sends.insert("exitcode".into(), out.code.to_string());
        ctx.send(sends);
        if out.code != 0 {
            return Err(ResourceError::msg(format!(
                "`{}` exited with code {}: {}",
                self.cmd,
                out.code,
                tail(if out.stderr.trim().is_empty() { &out.stdout } else { &out.stderr })
            )));
        }
        if let Some(done) = &self.donecmd {
            let d = self.run(self.shell_command(done), "donecmd", self.timeout).await?;
            if d.code != 0 {
                return Err(ResourceError::msg(format!(
                    "donecmd exited with code {}: {}",
                    d.code,
                    tail(&d.stderr)
                )));
            }
        }
        Ok(vec![format!("ran `{}` ({why}, exit 0)", self.display())])
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
