//! A real OpenSSH server (Debian package `openssh-server`, `/usr/sbin/sshd`) per test, on a
//! free loopback port, with its own host key, configuration and `authorized_keys` inside the
//! test directory (nothing of the host's `/etc/ssh` is used). It logs in root by key only and
//! allows TCP forwarding, which is all a tunnel needs. It can be killed and started again on
//! the same port and keys, and it is killed when dropped.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::TestDir;

/// How long sshd may take to answer after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A new passphrase-less ed25519 key pair `<path>` and `<path>.pub` (`ssh-keygen`); the
/// public key line (`ssh-ed25519 AAAA...`, without comment).
pub fn keygen(path: &Path) -> String {
    keygen_typed(path, "ed25519")
}

/// [`keygen`] of another type (`ed25519`, `ecdsa`, `rsa`).
pub fn keygen_typed(path: &Path, kind: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("running ssh-keygen (Debian package openssh-client)");
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
    public_key(path)
}

/// The public key line of the key pair `<path>` (from `<path>.pub`, without comment).
pub fn public_key(path: &Path) -> String {
    let text = fs::read_to_string(path.with_extension("pub")).expect("reading a .pub file");
    text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// `ssh-keygen -lf <path>.pub`: the key's `SHA256:` fingerprint.
pub fn fingerprint(path: &Path) -> String {
    let out = Command::new("ssh-keygen").arg("-lf").arg(path.with_extension("pub")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().nth(1).expect("a fingerprint").to_string()
}

pub struct Sshd {
    child: Option<Child>,
    pub port: u16,
    /// The server's host key pair (`.pub` beside it).
    pub host_key: PathBuf,
    /// A client key pair in `authorized_keys`.
    pub client_key: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Sshd {
    /// Start an sshd with its files in `<test dir>/sshd<N>/`, and wait until it answers.
    pub fn start(t: &TestDir) -> Sshd {
        Sshd::start_typed(t, "ed25519")
    }

    /// [`Sshd::start`] with a host key of type `kind` (`ed25519`, `ecdsa`, `rsa`).
    pub fn start_typed(t: &TestDir, kind: &str) -> Sshd {
        let dir = t.path(&format!("sshd{}", SEQ.fetch_add(1, Ordering::SeqCst)));
        fs::create_dir_all(&dir).unwrap();
        // Privilege separation needs its directory (made by the service unit, not by sshd).
        fs::create_dir_all("/run/sshd").expect("creating /run/sshd (tests run as root)");
        let host_key = dir.join(format!("host_{kind}"));
        keygen_typed(&host_key, kind);
        let client_key = dir.join("id_ed25519");
        let authorized = keygen(&client_key);
        fs::write(dir.join("authorized_keys"), format!("{authorized}\n")).unwrap();
        let log = dir.join("sshd.log");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let config = dir.join("sshd_config");
            fs::write(&config, config_text(&dir, port, &host_key)).unwrap();
            let mut s = Sshd {
                child: None,
                port,
                host_key: host_key.clone(),
                client_key: client_key.clone(),
                config,
                log: log.clone(),
            };
            if s.try_start() {
                return s;
            }
            s.kill();
            last_log = s.log();
        }
        panic!("sshd did not start (5 tries); its log:\n{last_log}");
    }

    /// `root@127.0.0.1:PORT`, for `--ssh-url`.
    pub fn url(&self) -> String {
        format!("root@127.0.0.1:{}", self.port)
    }

    /// Its host key as `--ssh-hostkey` takes it (`ssh-ed25519 AAAA...`).
    pub fn hostkey(&self) -> String {
        public_key(&self.host_key)
    }

    /// The flags that reach etcd through it: `--ssh-url`, `--ssh-id` (the authorized key)
    /// and `--ssh-hostkey`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--ssh-url".into(),
            self.url(),
            "--ssh-id".into(),
            self.client_key.display().to_string(),
            "--ssh-hostkey".into(),
            self.hostkey(),
        ]
    }

    /// What it logged (at DEBUG1: each forwarding request is there).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "sshd is running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting /usr/sbin/sshd (Debian package openssh-server)");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.running() {
                return false;
            }
            if self.log().contains(&format!("Server listening on 127.0.0.1 port {}", self.port)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL (the listener and every session: sessions are its children, in its process
    /// group), and reap. A no-op if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            // Each session is a child sshd: kill them too, as a crashed or rebooted server
            // would lose them.
            for child in children_of(pid.as_raw()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again after [`Sshd::kill`]: same port, keys and configuration.
    #[track_caller]
    pub fn restart(&mut self) {
        if !self.try_start() {
            self.kill();
            panic!("sshd did not start again on port {}; its log:\n{}", self.port, self.log());
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The pids of `pid`'s children and their descendants (from /proc).
fn children_of(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(entries) = fs::read_dir("/proc") else { break };
        for e in entries.flatten() {
            let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // Field 4 (after the parenthesised command) is the parent pid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            if ppid == Some(p) {
                all.push(child);
                todo.push(child);
            }
        }
    }
    all
}

fn config_text(dir: &Path, port: u16, host_key: &Path) -> String {
    format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {authorized}
PidFile none
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
LogLevel DEBUG1
",
        host_key = host_key.display(),
        authorized = dir.join("authorized_keys").display(),
    )
}
