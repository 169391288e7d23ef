//! `mgmt etcd` against the real etcd (and a stand-in script where only the arguments matter).
//!
//! Every etcd listens on loopback ports picked free for the test, so tests run in parallel
//! and next to a real etcd on 2379/2380.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{self, TestDir, free_ports, poll_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// etcd may take a while to start on a loaded machine (fsyncs, leader election).
const DEADLINE: Duration = Duration::from_secs(30);

fn hostname() -> String {
    nix::unistd::gethostname().expect("hostname").to_string_lossy().into_owned()
}

/// The etcd `mgmt etcd` runs in these tests: `etcd` in PATH.
fn etcd_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .expect("etcd in PATH (Debian/Ubuntu: apt install etcd-server)")
}

/// `etcdctl <args>` against `endpoint`: its stdout if it succeeded.
fn etcdctl(endpoint: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running etcdctl (Debian/Ubuntu: apt install etcd-client)");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `mgmt etcd` (after exec: the etcd). SIGKILLed and reaped on drop, so a failing
/// test leaves no etcd behind.
struct Mgmt {
    child: Child,
    exited: Option<ExitStatus>,
    stderr: PathBuf,
}

impl Mgmt {
    /// `mgmt <args>` with `env` set, stderr captured in the test directory, and no etcd
    /// configuration inherited from the environment.
    fn spawn(dir: &TestDir, args: &[&str], env: &[(&str, &Path)]) -> Mgmt {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let stderr = dir.path(&format!("tmp/mgmt-{}.stderr", SEQ.fetch_add(1, Ordering::SeqCst)));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mgmt"));
        cmd.args(args)
            .current_dir(dir.root())
            .env("TMPDIR", dir.path("tmp"))
            .env_remove("MGMT_LOG")
            .env_remove("MGMT_ETCD_BINARY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("creating stderr capture"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Mgmt { child: cmd.spawn().expect("starting mgmt"), exited: None, stderr }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("waiting for mgmt");
        }
        self.exited
    }

    /// Wait (bounded) for the process to end.
    #[track_caller]
    fn wait_exit(&mut self) -> ExitStatus {
        if !poll_until(|| self.try_exit().is_some(), DEADLINE) {
            panic!("mgmt etcd did not exit within {DEADLINE:?}\n--- stderr:\n{}", self.stderr());
        }
        self.exited.expect("exited")
    }

    /// Wait until `etcdctl put` works on `endpoint`.
    #[track_caller]
    fn wait_serving(&mut self, endpoint: &str) {
        let up = poll_until(
            || {
                self.try_exit().is_some() || etcdctl(endpoint, &["put", "/probe", "1"]).is_some() || {
                    std::thread::sleep(Duration::from_millis(100));
                    false
                }
            },
            DEADLINE,
        );
        if !up || self.exited.is_some() {
            panic!(
                "etcd not serving on {endpoint} within {DEADLINE:?} (exit: {:?})\n--- stderr:\n{}",
                self.exited,
                self.stderr()
            );
        }
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signalling mgmt etcd");
    }
}

impl Drop for Mgmt {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn guide_long_form_serves_clients_as_etcd_itself_and_stops_on_sigterm() {
    let dir = TestDir::new();
    let prefix = dir.path("state");
    let ports: [u16; 2] = free_ports();
    let client = format!("http://127.0.0.1:{}", ports[0]);
    let peer = format!("http://127.0.0.1:{}", ports[1]);
    let listen_client = format!("--listen-client-urls={client}");
    let advertise_client = format!("--advertise-client-urls={client}");
    let listen_peer = format!("--listen-peer-urls={peer}");
    let advertise_peer = format!("--initial-advertise-peer-urls={peer}");
    let mut mgmt = Mgmt::spawn(
        &dir,
        &[
            "etcd",
            "--prefix",
            prefix.to_str().unwrap(),
            // The guide's long form, on loopback and free ports.
            &listen_client,
            &advertise_client,
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=10h",
            "--quota-backend-bytes=8589934592",
            // Free peer ports, so parallel tests do not collide on 2380.
            &listen_peer,
            &advertise_peer,
        ],
        &[],
    );
    mgmt.wait_serving(&client);

    assert!(etcdctl(&client, &["put", "greeting", "hello"]).is_some());
    assert_eq!(etcdctl(&client, &["get", "greeting"]).as_deref(), Some("greeting\nhello\n"));

    // One member, named after the host, with the URLs given.
    let members = etcdctl(&client, &["member", "list"]).expect("etcdctl member list");
    let fields: Vec<&str> = members.trim().split(", ").collect();
    let host = hostname();
    assert_eq!(fields[1..5], ["started", &host, &peer, &client], "member list: {members}");

    // The data lives under the prefix, which only its owner can read.
    assert!(prefix.join("etcd/member").is_dir(), "no etcd data under {}", prefix.display());
    assert_eq!(common::mode(&prefix), 0o700);

    // mgmt logged what it ran, then became that etcd: same pid, etcd's executable.
    let etcd = etcd_binary();
    let logged = mgmt.stderr();
    let expected = format!(
        "starting etcd: {etcd} --name={host} --data-dir={data} --initial-cluster={host}={peer} \
         {listen_client} {advertise_client} --auto-compaction-mode=periodic \
         --auto-compaction-retention=10h --quota-backend-bytes=8589934592 {listen_peer} {advertise_peer}\n",
        etcd = etcd.display(),
        host = hostname(),
        data = prefix.join("etcd").display(),
    );
    assert!(logged.contains(&expected), "expected log line {expected:?}\n--- stderr:\n{logged}");
    let exe = fs::read_link(format!("/proc/{}/exe", mgmt.pid())).expect("reading /proc/PID/exe");
    assert_eq!(exe, fs::canonicalize(&etcd).unwrap());

    // etcd shuts down cleanly on SIGTERM, then dies of the signal it re-raises.
    mgmt.signal(Signal::SIGTERM);
    let status = mgmt.wait_exit();
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "status {status:?}\n{}", mgmt.stderr());
    assert!(mgmt.stderr().contains("received terminated signal, shutting down"), "{}", mgmt.stderr());
}

#[test]
fn ctrl_c_stops_it_and_a_restart_keeps_the_data() {
    let dir = TestDir::new();
    let prefix = dir.path("state");
    let ports: [u16; 2] = free_ports();
    let client = format!("http://127.0.0.1:{}", ports[0]);
    let listen_client = format!("--listen-client-urls={client}");
    let listen_peer = format!("--listen-peer-urls=http://127.0.0.1:{}", ports[1]);
    // Only the listen URLs: the advertised ones default to them (etcd itself refuses to start
    // without --advertise-client-urls here).
    let args = ["etcd", "--prefix", prefix.to_str().unwrap(), &listen_client, &listen_peer];

    let mut mgmt = Mgmt::spawn(&dir, &args, &[]);
    mgmt.wait_serving(&client);
    assert!(etcdctl(&client, &["put", "kept", "yes"]).is_some());
    mgmt.signal(Signal::SIGINT);
    let status = mgmt.wait_exit();
    assert_eq!(status.signal(), Some(Signal::SIGINT as i32), "status {status:?}\n{}", mgmt.stderr());
    assert!(mgmt.stderr().contains("received interrupt signal, shutting down"), "{}", mgmt.stderr());

    // The same command again finds the data dir and the key in it.
    let mut again = Mgmt::spawn(&dir, &args, &[]);
    again.wait_serving(&client);
    assert_eq!(etcdctl(&client, &["get", "kept"]).as_deref(), Some("kept\nyes\n"));
}

#[test]
fn without_etcd_it_says_how_to_install_it() {
    let dir = TestDir::new();
    let empty = dir.path("empty-bin");
    fs::create_dir(&empty).unwrap();
    let prefix = dir.path("state");
    let mut mgmt = Mgmt::spawn(&dir, &["etcd", "--prefix", prefix.to_str().unwrap()], &[("PATH", &empty)]);
    let status = mgmt.wait_exit();
    let stderr = mgmt.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("mgmt: error: no etcd binary found in PATH; install one (Debian/Ubuntu: apt install etcd-server) or set MGMT_ETCD_BINARY to its path"),
        "{stderr}"
    );
    assert!(!prefix.exists(), "the prefix was created although nothing ran");

    // A MGMT_ETCD_BINARY that is not there is named.
    let missing = dir.path("no-such-etcd");
    let mut mgmt = Mgmt::spawn(&dir, &["etcd"], &[("MGMT_ETCD_BINARY", &missing)]);
    assert_eq!(mgmt.wait_exit().code(), Some(1));
    assert!(
        mgmt.stderr().contains(&format!("MGMT_ETCD_BINARY={}: not an executable file", missing.display()))
    );
}

#[test]
fn mgmt_etcd_binary_gets_the_flags_as_given_and_its_exit_status_is_ours() {
    let dir = TestDir::new();
    let argv_file = dir.path("argv");
    let fake = dir.path("fake-etcd");
    // Records its pid and arguments, one per line, then exits with a status of its own.
    fs::write(
        &fake,
        format!("#!/bin/sh\necho $$ > {0}\nprintf '%s\\n' \"$@\" >> {0}\nexit 7\n", argv_file.display()),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let prefix = dir.path("state");
    let user = [
        "--listen-client-urls=http://0.0.0.0:2379",
        "--advertise-client-urls=http://0.0.0.0:2379",
        "-name",
        "with space",
        "--auto-compaction-retention",
        "10h",
        "--",
        "--name=ignored",
    ];
    let mut args = vec!["etcd", "--prefix", prefix.to_str().unwrap()];
    args.extend(user);
    let mut mgmt = Mgmt::spawn(&dir, &args, &[("MGMT_ETCD_BINARY", &fake)]);
    let status = mgmt.wait_exit();
    assert_eq!(status.code(), Some(7), "{}", mgmt.stderr());

    let recorded = fs::read_to_string(&argv_file).unwrap();
    let mut lines = recorded.lines();
    assert_eq!(lines.next(), Some(mgmt.pid().to_string().as_str()), "not exec'd in place of mgmt");
    let mut want = vec![
        format!("--data-dir={}", prefix.join("etcd").display()),
        "--listen-peer-urls=http://127.0.0.1:2380".to_string(),
        "--initial-advertise-peer-urls=http://127.0.0.1:2380".to_string(),
        "--initial-cluster=with space=http://127.0.0.1:2380".to_string(),
    ];
    want.extend(user.iter().map(|s| s.to_string()));
    assert_eq!(lines.collect::<Vec<_>>(), want);
    assert!(prefix.is_dir());
}
