//! A real systemd for tests: [`Sandbox`] boots systemd as PID 1 in namespaces of its own with
//! `tests/support/systemd-sandbox` (an overlay over the host's root, private `/run` and `/tmp`,
//! its own cgroup, a network namespace with only `lo`), runs commands inside it, and stops it
//! (killing everything in it and deleting its scratch dir) when dropped.
//!
//! It needs root. Where it cannot run (not root, tools or cgroup v2 missing, namespaces
//! refused) [`Sandbox::start`] prints a loud `SKIPPED` line and returns `None`; set
//! `MGMT_TEST_REQUIRE_SANDBOX=1` to make that a failure instead. A sandbox that could be set
//! up but whose systemd does not come up is a test failure, not a skip.
//!
//! Host files are seen inside as they were when first looked at, so everything a test runs
//! inside (the test binary, `mgmt`) must be built before [`Sandbox::start`]; cargo does that.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long one command inside the sandbox may take before the test fails.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a condition on the sandbox (a unit state, a log line) may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The project's sandbox script.
pub fn script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/systemd-sandbox"))
}

/// The parent of every sandbox's scratch dir: below cargo's target dir, or `/srv` when that is in a system directory; never below `/tmp`
/// (the script refuses that: systemd would be booted over it).
pub fn scratch_root() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // The script refuses scratch dirs in system directories (a checkout under /tmp, say).
    let refused = ["/tmp", "/run", "/var", "/etc", "/usr", "/proc", "/sys", "/dev", "/boot"];
    if refused.iter().any(|r| target.starts_with(r)) {
        return PathBuf::from("/srv/mgmt-test-sandboxes");
    }
    target.join("systemd-sandbox")
}

/// `bash tests/support/systemd-sandbox` (so a checkout without the executable bit works).
fn script_cmd() -> Command {
    let mut c = Command::new("bash");
    c.arg(script());
    c
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}{}-{}-{nanos:08x}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst))
}

/// Print why a sandbox test does not run (loudly: a skipped test is not a passed one), or
/// panic if `MGMT_TEST_REQUIRE_SANDBOX` is set.
pub fn skip(reason: &str) {
    let msg = format!("SKIPPED: needs root and systemd-sandbox: {reason}");
    if std::env::var_os("MGMT_TEST_REQUIRE_SANDBOX").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{msg} (and MGMT_TEST_REQUIRE_SANDBOX is set)");
    }
    // Straight to fd 2: libtest captures eprintln! of passing tests, and a skip must show.
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!!!! {msg}\n");
}

/// Stop the sandboxes of test processes that died without stopping theirs (killed by a
/// timeout, say): their scratch dirs are named `sb-<pid of the test process>-...`.
fn reap_orphans(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.strip_prefix("sb-").and_then(|r| r.split('-').next()) else { continue };
        if owner.parse::<u32>().is_err() || Path::new("/proc").join(owner).exists() {
            continue;
        }
        if name.ends_with(".logs") {
            let _ = fs::remove_dir_all(e.path());
        } else {
            eprintln!("stopping the sandbox {} left by test process {owner}, which is gone", name);
            let _ = script_cmd().arg("stop").arg(e.path()).stdin(Stdio::null()).status();
        }
    }
}

/// The sandbox's root is an overlay over the host's root file system only: a binary on another
/// file system (a target dir on its own mount) must be bound in. Its dir, if so.
fn outside_root_fs(bin: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
    let dir = bin.parent()?;
    (dev(dir)? != dev(Path::new("/"))?).then(|| dir.to_path_buf())
}

/// A booted systemd in its own namespaces. Stopped (and its scratch dir deleted) on drop.
pub struct Sandbox {
    dir: PathBuf,
    logs: PathBuf,
    pid: u32,
    cgroup: String,
}

impl Sandbox {
    /// Boot a sandbox (about a second). `None`, after a loud `SKIPPED` line, where this machine
    /// cannot host one; panics if it could be set up but systemd did not come up.
    pub fn start() -> Option<Sandbox> {
        if !nix::unistd::geteuid().is_root() {
            skip("not running as root");
            return None;
        }
        // Inside, /tmp and /run are the sandbox's own: a build below them cannot be run there.
        let bin = Path::new(env!("CARGO_BIN_EXE_mgmt"));
        if bin.starts_with("/tmp") || bin.starts_with("/run") {
            skip(&format!(
                "{} is below /tmp or /run, which the sandbox replaces; build elsewhere",
                bin.display()
            ));
            return None;
        }
        let root = scratch_root();
        if let Err(e) = fs::create_dir_all(&root) {
            skip(&format!("cannot create {}: {e}", root.display()));
            return None;
        }
        reap_orphans(&root);
        let name = unique("sb-");
        let dir = root.join(&name);
        let logs = root.join(format!("{name}.logs"));
        fs::create_dir_all(&logs).expect("creating the sandbox's log dir");
        let mut start = script_cmd();
        start.arg("start").arg(&dir).stdin(Stdio::null());
        if let Some(bind) = outside_root_fs(Path::new(env!("CARGO_BIN_EXE_mgmt"))) {
            start.env("SYSTEMD_SANDBOX_BIND", bind);
        }
        let out = match start.output() {
            Ok(out) => out,
            Err(e) => {
                let _ = fs::remove_dir_all(&logs);
                skip(&format!("cannot run {}: {e}", script().display()));
                return None;
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => {}
            Some(2) => {
                let _ = fs::remove_dir_all(&logs);
                skip(stderr.lines().rfind(|l| l.contains("unavailable")).unwrap_or(stderr.trim()));
                return None;
            }
            _ => {
                let _ = script_cmd().arg("stop").arg(&dir).status();
                let _ = fs::remove_dir_all(&logs);
                panic!("systemd-sandbox start {} failed ({}):\n{stderr}", dir.display(), out.status);
            }
        }
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("systemd-sandbox start printed no PID ({e}):\n{stderr}"));
        let cgroup = fs::read_to_string(dir.join("cgroup")).unwrap_or_default().trim().to_string();
        Some(Sandbox { dir, logs, pid, cgroup })
    }

    /// The host PID of its PID 1 (systemd).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its scratch dir on the host.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its cgroup on the host (`/sys/fs/cgroup[/unified]/systemd-sandbox-...`).
    pub fn cgroup(&self) -> &str {
        &self.cgroup
    }

    /// The address of its system bus, for a D-Bus client on the host.
    pub fn bus_address(&self) -> String {
        format!("unix:path=/proc/{}/root/run/dbus/system_bus_socket", self.pid)
    }

    /// A path inside the sandbox as seen from the host (`/proc/<pid>/root/<p>`); reads and
    /// writes through it are the sandbox's own (its overlay, its tmpfs).
    pub fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        let p = p.as_ref();
        PathBuf::from(format!("/proc/{}/root", self.pid)).join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Write a file inside the sandbox (parents created), in place.
    pub fn write(&self, p: &str, content: &str) {
        let host = self.path(p);
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", parent.display()));
        }
        fs::write(&host, content).unwrap_or_else(|e| panic!("writing {p} in the sandbox: {e}"));
    }

    /// Write a file through a command run inside (`cat > path`), as a process in the
    /// sandbox would.
    #[track_caller]
    pub fn write_inside(&self, p: &str, content: &str) {
        let mut c = self
            .command(&["sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"", "sh", p])
            .stdin(Stdio::piped())
            .spawn()
            .expect("starting cat in the sandbox");
        c.stdin.take().expect("stdin").write_all(content.as_bytes()).expect("writing to cat");
        assert!(c.wait().expect("waiting for cat").success(), "writing {p} in the sandbox");
    }

    /// Read a file inside the sandbox (`None` if absent).
    pub fn read(&self, p: &str) -> Option<String> {
        fs::read_to_string(self.path(p)).ok()
    }

    /// A command run inside: every namespace and the root of the sandbox, a clean
    /// environment (PATH, HOME=/root, LANG); killing it kills the command inside.
    pub fn command(&self, argv: &[&str]) -> Command {
        assert!(!argv.is_empty(), "an empty command");
        let mut c = script_cmd();
        c.arg("exec").arg(&self.dir).arg("--").args(argv).stdin(Stdio::null());
        c
    }

    /// Run a command inside to its end (bounded by [`EXEC_TIMEOUT`]) and return its output.
    #[track_caller]
    pub fn exec(&self, argv: &[&str]) -> Output {
        let child = self
            .command(argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {argv:?} in the sandbox: {e}"));
        let pid = Pid::from_raw(child.id() as i32);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(EXEC_TIMEOUT) {
            Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {argv:?} in the sandbox: {e}")),
            Err(_) => {
                let _ = kill(pid, Signal::SIGKILL); // nsenter; the command inside follows it
                panic!("{argv:?} in the sandbox did not end within {EXEC_TIMEOUT:?}");
            }
        }
    }

    /// Run `sh -c script` inside; panics unless it exits 0. Returns its stdout.
    #[track_caller]
    pub fn sh(&self, script: &str) -> String {
        super::succeeded(&format!("`{script}` in the sandbox"), &self.exec(&["sh", "-c", script]))
    }

    /// Run `systemctl args...` inside; its trimmed stdout (whatever its exit code).
    pub fn systemctl(&self, args: &[&str]) -> String {
        let mut argv = vec!["systemctl"];
        argv.extend_from_slice(args);
        String::from_utf8_lossy(&self.exec(&argv).stdout).trim().to_string()
    }

    /// One property of a unit, as `systemctl show -p PROP --value unit` prints it.
    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.systemctl(&["show", "-p", prop, "--value", unit])
    }

    /// The unit's last journal lines (for failure messages).
    pub fn journal(&self, unit: &str) -> String {
        let out = self.exec(&["journalctl", "--no-pager", "-n", "30", "-u", unit]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start a long-running command inside (an agent), its stdout and stderr captured to
    /// files on the host. Killed when the returned [`Spawned`] is dropped.
    pub fn spawn(&self, argv: &[&str]) -> Spawned {
        Spawned::new(self.command(argv), &self.logs, &format!("{argv:?}"))
    }

    /// Write `yaml` to `graph` inside and run `mgmt run --tmp-prefix --no-watch <flags> yaml
    /// graph` inside to its end: one pass over the graph.
    #[track_caller]
    pub fn mgmt_once(&self, graph: &str, yaml: &str, flags: &[&str]) -> Output {
        self.write(graph, yaml);
        let mut argv = vec![env!("CARGO_BIN_EXE_mgmt"), "run", "--tmp-prefix", "--no-watch"];
        argv.extend_from_slice(flags);
        argv.extend_from_slice(&["yaml", graph]);
        self.exec(&argv)
    }

    /// Write `yaml` to `graph` inside and start a watching `mgmt run --tmp-prefix <flags> yaml
    /// graph` there; rewrite `graph` (with [`Sandbox::write`]) to swap its graph live.
    pub fn mgmt_agent(&self, graph: &str, yaml: &str, flags: &[&str]) -> Spawned {
        self.write(graph, yaml);
        let mut argv = vec![env!("CARGO_BIN_EXE_mgmt"), "run", "--tmp-prefix"];
        argv.extend_from_slice(flags);
        argv.extend_from_slice(&["yaml", graph]);
        self.spawn(&argv)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let out = script_cmd().arg("stop").arg(&self.dir).stdin(Stdio::null()).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "systemd-sandbox stop {} failed ({}): {}",
                self.dir.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("systemd-sandbox stop {}: {e}", self.dir.display()),
        }
        let _ = fs::remove_dir_all(&self.logs);
    }
}

/// A long-running child with its output captured to files. SIGKILLed (and reaped) on drop.
pub struct Spawned {
    child: Child,
    exited: Option<ExitStatus>,
    what: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Spawned {
    /// Start `cmd` with stdout and stderr going to fresh files in `logs`.
    pub fn new(mut cmd: Command, logs: &Path, what: &str) -> Spawned {
        let name = unique("spawn-");
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("creating a stdout capture"))
            .stderr(fs::File::create(&stderr).expect("creating a stderr capture"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Spawned { child, exited: None, what: what.to_string(), stdout, stderr }
    }

    /// The child as started (for a sandboxed command: `nsenter`, whose death kills it).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// How many lines of its stderr (the agent's log) contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(needle)).count()
    }

    /// Its exit status, if it has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("waiting for a child");
        }
        self.exited
    }

    /// Wait until `cond` holds (every 20 ms, up to [`DEADLINE`]); on timeout panic with `what`
    /// and the child's output.
    #[track_caller]
    pub fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        if !eventually(|| cond(self), DEADLINE) {
            let exit = self.try_exit();
            panic!(
                "timed out after {DEADLINE:?} waiting for: {what} (at {}; {} exit: {exit:?})\n--- stderr:\n{}--- stdout:\n{}",
                std::panic::Location::caller(),
                self.what,
                self.stderr(),
                self.stdout()
            );
        }
    }

    /// Wait until at least `n` lines of its log contain `needle`.
    #[track_caller]
    pub fn wait_log_count(&mut self, needle: &str, n: usize) {
        self.wait_for(&format!("{n} log line(s) containing {needle:?}"), |s| s.count(needle) >= n);
    }

    /// Wait until a line of its log contains `needle`.
    #[track_caller]
    pub fn wait_log(&mut self, needle: &str) {
        self.wait_log_count(needle, 1);
    }

    /// Wait (up to [`DEADLINE`]) for it to end on its own.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        match super::poll_some(Duration::from_millis(20), DEADLINE, || self.try_exit()) {
            Some(status) => status,
            None => panic!(
                "{} did not exit within {DEADLINE:?} (at {})\n--- stderr:\n{}",
                self.what,
                std::panic::Location::caller(),
                self.stderr()
            ),
        }
    }

    /// SIGKILL and reap (a sandboxed command dies with its `nsenter`).
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `cond` holds within `timeout`, polling every 20 ms.
pub fn eventually(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    super::poll_some(Duration::from_millis(20), timeout, || cond().then_some(())).is_some()
}
