//! Shared helpers for the integration tests: a per-test directory, the real `mgmt` binary run
//! as a child process (stdout and stderr captured to files so logs can be read while it
//! runs), bounded waiting, and small file helpers.
//!
//! Every child is killed with SIGKILL when its [`Agent`] is dropped, so a failing test never
//! leaves an agent running.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long any condition may take before a test gives up.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Run `f` every `every` until it returns `Some` or `timeout` passes: what it returned.
pub fn poll_some<T>(every: Duration, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        sleep(every);
    }
}

/// Poll `cond` every ~10 ms until it holds or `timeout` passes; returns whether it held.
pub fn poll_until(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    poll_some(Duration::from_millis(10), timeout, || cond().then_some(())).is_some()
}

/// Poll `cond` every ~10 ms until it holds; panic (naming the caller) if it does not within
/// `timeout`.
#[track_caller]
pub fn wait_until(cond: impl FnMut() -> bool, timeout: Duration) {
    if !poll_until(cond, timeout) {
        panic!("condition not met within {timeout:?} (waiting at {})", std::panic::Location::caller());
    }
}

/// `N` distinct loopback ports that were free a moment ago (every listener is held until all
/// are chosen, so the kernel cannot hand out the same port twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [_; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port"));
    listeners.map(|l| l.local_addr().expect("local address").port())
}

/// The stdout of a command that must have succeeded; otherwise panic with `what`, its exit
/// status, stdout and stderr.
#[track_caller]
pub fn succeeded(what: &str, out: &Output) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n--- stdout:\n{}--- stderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The content of a file, or `None` if it cannot be read (absent).
pub fn read(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Number of lines in a file (0 if absent).
pub fn line_count(path: impl AsRef<Path>) -> usize {
    read(path).map(|s| s.lines().count()).unwrap_or(0)
}

/// (inode, mtime in ns) of a file: changes when the file is replaced or rewritten.
pub fn identity(path: impl AsRef<Path>) -> (u64, i128) {
    let md = fs::metadata(path.as_ref()).unwrap_or_else(|e| panic!("stat {}: {e}", path.as_ref().display()));
    (md.ino(), i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()))
}

/// Permission bits of a path.
pub fn mode(path: impl AsRef<Path>) -> u32 {
    fs::metadata(path.as_ref()).unwrap_or_else(|e| panic!("stat {}: {e}", path.as_ref().display())).mode()
        & 0o7777
}

/// Names (sorted) of the entries of a directory whose name contains `needle`.
pub fn entries_containing(dir: impl AsRef<Path>, needle: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.as_ref())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(needle))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `rm -rf path`. An agent may recreate files while the tree is being removed (then removing
/// the directory itself fails with "not empty"), so retry until one removal went through.
#[track_caller]
pub fn rm_rf(path: impl AsRef<Path>) {
    let path = path.as_ref();
    wait_until(
        || match fs::remove_dir_all(path) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        },
        TIMEOUT,
    );
}

/// YAML for an exec resource (a list item under `exec:`) that keeps the agent busy until
/// `go` exists (bounded: it fails after ~15 s). With `--converged-timeout 1` a test can make
/// changes, create `go`, and know the agent exits only once everything has settled.
pub fn gate_exec(name: &str, go: &Path) -> String {
    format!(
        "  - name: {name}\n    shell: /bin/sh\n    cmd: \"i=0; while [ ! -e {go} ]; do i=$((i+1)); if [ $i -gt 1500 ]; then exit 9; fi; sleep 0.01; done\"\n",
        go = go.display()
    )
}

/// Run `git` in `dir` as a fixed author; panics with git's stderr on failure. Returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .expect("running git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test's own directory. Everything a test manages lives below it; agents get
/// `TMPDIR=<root>/tmp` so even their `--tmp-prefix` state stays inside.
pub struct TestDir {
    tmp: TempDir,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    pub fn new() -> TestDir {
        let tmp = tempfile::Builder::new().prefix("mgmt-it-").tempdir().expect("creating a temp dir");
        fs::create_dir(tmp.path().join("tmp")).expect("creating TMPDIR");
        TestDir { tmp }
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// An absolute path below the test directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// The same path as a string, for YAML.
    pub fn p(&self, rel: &str) -> String {
        self.path(rel).to_string_lossy().into_owned()
    }

    /// Write (in place: truncate and write) a graph file below the test directory.
    pub fn write_yaml(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, text).expect("writing graph file");
        path
    }

    /// Replace a graph file the way editors do: write a temp file, rename it over the old.
    pub fn replace_yaml(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        // Beside the file, in its own directory, so the rename is atomic there.
        let file_name = path.file_name().expect("a file name").to_string_lossy();
        let tmp = path.with_file_name(format!(".{file_name}.swp"));
        fs::write(&tmp, text).expect("writing temp graph file");
        fs::rename(&tmp, &path).expect("renaming temp graph file");
        path
    }

    /// Start `mgmt run --tmp-prefix <args> yaml <yaml>`.
    pub fn agent(&self, args: &[&str], yaml: &Path) -> Agent {
        let mut argv = vec!["run", "--tmp-prefix"];
        argv.extend_from_slice(args);
        let yaml = yaml.to_str().expect("utf-8 path");
        argv.extend_from_slice(&["yaml", yaml]);
        Agent::spawn(self, &argv)
    }

    /// Run `mgmt run --tmp-prefix <args> yaml <yaml>` to its end (bounded).
    pub fn run_to_end(&self, args: &[&str], yaml: &Path) -> Finished {
        let a = self.agent(args, yaml);
        let status = a.wait_exit();
        Finished { status, stdout: a.stdout(), stderr: a.stderr() }
    }
}

/// The end of a one-shot run.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "unexpected exit status {:?}\n--- stderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }
    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) -> &Self {
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}\n--- stderr:\n{}", self.stderr);
        self
    }
}

/// A running `mgmt` child. SIGKILLed (and reaped) on drop if still running.
pub struct Agent {
    child: RefCell<Child>,
    exited: Cell<Option<ExitStatus>>,
    stdout: PathBuf,
    stderr: PathBuf,
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Agent {
    /// Start `mgmt <argv>` with its output captured to files in the test directory.
    pub fn spawn(dir: &TestDir, argv: &[&str]) -> Agent {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stdout = dir.path(&format!("tmp/agent{n}.stdout"));
        let stderr = dir.path(&format!("tmp/agent{n}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_mgmt"))
            .args(argv)
            .current_dir(dir.root())
            .env("TMPDIR", dir.path("tmp"))
            .env_remove("MGMT_LOG")
            .env_remove("MGMT_LOG_FORMAT")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("creating stdout capture"))
            .stderr(fs::File::create(&stderr).expect("creating stderr capture"))
            .spawn()
            .expect("starting mgmt");
        Agent { child: RefCell::new(child), exited: Cell::new(None), stdout, stderr }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.borrow().id() as i32)
    }

    /// Everything it logged so far.
    pub fn stderr(&self) -> String {
        read(&self.stderr).unwrap_or_default()
    }

    /// Everything it printed so far.
    pub fn stdout(&self) -> String {
        read(&self.stdout).unwrap_or_default()
    }

    /// How many log lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(needle)).count()
    }

    /// How many stdout lines equal `line`.
    pub fn stdout_count(&self, line: &str) -> usize {
        self.stdout().lines().filter(|l| *l == line).count()
    }

    /// Wait until `cond` holds; on timeout panic with `what` and the agent's log.
    #[track_caller]
    pub fn wait_for(&self, what: &str, cond: impl FnMut() -> bool) {
        if !poll_until(cond, TIMEOUT) {
            let exited = self.try_exit();
            panic!(
                "timed out after {TIMEOUT:?} waiting for: {what} (at {}; agent exit: {exited:?})\n--- stderr:\n{}--- stdout:\n{}",
                std::panic::Location::caller(),
                self.stderr(),
                self.stdout()
            );
        }
    }

    /// Wait until at least `n` log lines contain `needle`.
    #[track_caller]
    pub fn wait_log_count(&self, needle: &str, n: usize) {
        let what = format!("{n} log line(s) containing {needle:?}");
        self.wait_for(&what, || self.count(needle) >= n);
    }

    /// Wait until some log line contains `needle`.
    #[track_caller]
    pub fn wait_log(&self, needle: &str) {
        self.wait_log_count(needle, 1);
    }

    /// Wait until `path` holds exactly `content`.
    #[track_caller]
    pub fn wait_content(&self, path: &Path, content: &str) {
        let what = format!("{} to contain {content:?}", path.display());
        self.wait_for(&what, || read(path).as_deref() == Some(content));
    }

    /// Wait until `path` does not exist.
    #[track_caller]
    pub fn wait_absent(&self, path: &Path) {
        let what = format!("{} to be absent", path.display());
        self.wait_for(&what, || fs::symlink_metadata(path).is_err());
    }

    /// Its exit status, if it has exited.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        if self.exited.get().is_none() {
            self.exited.set(self.child.borrow_mut().try_wait().expect("waiting for mgmt"));
        }
        self.exited.get()
    }

    /// Wait (bounded) for it to exit on its own.
    #[track_caller]
    pub fn wait_exit(&self) -> ExitStatus {
        if !poll_until(|| self.try_exit().is_some(), TIMEOUT) {
            panic!(
                "mgmt did not exit within {TIMEOUT:?} (at {})\n--- stderr:\n{}",
                std::panic::Location::caller(),
                self.stderr()
            );
        }
        self.try_exit().expect("exited")
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("sending a signal to mgmt");
    }

    /// SIGINT, then wait (bounded) for the exit.
    #[track_caller]
    pub fn interrupt(&self) -> ExitStatus {
        self.signal(Signal::SIGINT);
        self.wait_exit()
    }

    /// SIGKILL and reap.
    pub fn kill9(&self) {
        if self.try_exit().is_none() {
            let _ = kill(self.pid(), Signal::SIGKILL);
            self.exited.set(self.child.borrow_mut().wait().ok());
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}
pub mod certs;
pub mod cluster;
pub mod etcd;
pub mod repo;
pub mod secure;
pub mod sshd;
pub mod systemd;
