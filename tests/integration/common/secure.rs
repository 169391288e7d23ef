//! A locked-down etcd, set up the way docs/security.md tells users to: certificates from
//! `mgmt certs`, etcd started by `mgmt etcd --tls-dir` (TLS, client certificates required),
//! users and roles from `scripts/etcd-roles`, authentication on.
//!
//! Every user is a client certificate of the directory (`<pki>/<user>.crt`), whose common
//! name etcd takes as the user. The etcd process is killed when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{TestDir, free_ports};

/// The roles script as shipped.
pub const ROLES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/etcd-roles");

/// `mgmt <args>` run to its end.
pub fn mgmt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(args)
        .env_remove("MGMT_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running mgmt")
}

/// `mgmt certs <pki> --client C...`; panics if it fails.
#[track_caller]
pub fn certs(pki: &Path, clients: &[&str]) -> Output {
    let mut args = vec!["certs", pki.to_str().unwrap()];
    for c in clients {
        args.extend(["--client", c]);
    }
    let out = mgmt(&args);
    assert!(out.status.success(), "mgmt {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub struct SecureEtcd {
    child: Option<Child>,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The `mgmt certs` directory.
    pub pki: PathBuf,
    log: PathBuf,
}

impl SecureEtcd {
    /// Certificates for `hosts` (and root and deployer), etcd with TLS and client
    /// certificates, then `etcd-roles --host H...`: authentication is on when it returns.
    pub fn start(t: &TestDir, hosts: &[&str]) -> SecureEtcd {
        let pki = t.path("pki");
        certs(&pki, hosts);
        let e = SecureEtcd::start_tls(t, &pki);
        let mut args = vec![];
        for h in hosts {
            args.extend(["--host", h]);
        }
        let out = e.roles(&args);
        assert!(out.status.success(), "etcd-roles failed: {}", String::from_utf8_lossy(&out.stderr));
        e
    }

    /// etcd by `mgmt etcd --tls-dir <pki>`, authentication still off.
    pub fn start_tls(t: &TestDir, pki: &Path) -> SecureEtcd {
        let log = t.path("etcd-tls.log");
        // A port found free may be taken before etcd binds it: then etcd exits, and it is
        // tried again on other ports, with a fresh prefix.
        for n in 0..5 {
            let [client, peer] = free_ports();
            let url = format!("https://127.0.0.1:{client}");
            let prefix = t.path(&format!("etcd-tls-{n}"));
            let logf = fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_mgmt"))
                .args(["etcd", "--prefix", prefix.to_str().unwrap(), "--tls-dir", pki.to_str().unwrap()])
                .arg(format!("--listen-client-urls={url}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .stdin(Stdio::null())
                .stdout(logf.try_clone().unwrap())
                .stderr(logf)
                .spawn()
                .expect("starting mgmt etcd");
            let mut e = SecureEtcd { child: Some(child), url, pki: pki.to_path_buf(), log: log.clone() };
            if e.wait_healthy() {
                return e;
            }
            e.kill();
        }
        panic!("etcd with TLS did not start; its log:\n{}", fs::read_to_string(&log).unwrap_or_default());
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn wait_healthy(&mut self) -> bool {
        let deadline = std::time::Instant::now() + super::etcd::START_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if !self.running() {
                return false;
            }
            let health = self
                .ctl_as("root", &["--dial-timeout", "1s", "--command-timeout", "2s", "endpoint", "health"]);
            if health.status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Everything etcd (and `mgmt etcd` before it) logged.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `<pki>/<name>`, as a string.
    pub fn file(&self, name: &str) -> String {
        self.pki.join(name).to_str().unwrap().to_string()
    }

    /// `etcdctl <args>` as `user` (its client certificate), whatever its outcome.
    pub fn ctl_as(&self, user: &str, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_ENDPOINTS")
            .args(["--endpoints", &self.url, "--cacert", &self.file("ca.crt")])
            .args(["--cert", &self.file(&format!("{user}.crt")), "--key", &self.file(&format!("{user}.key"))])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running etcdctl (Debian package etcd-client)")
    }

    /// `etcdctl <args>` as `user`: its stdout; panics with its stderr if it fails.
    #[track_caller]
    pub fn etcdctl_as(&self, user: &str, args: &[&str]) -> String {
        let out = self.ctl_as(user, args);
        assert!(
            out.status.success(),
            "etcdctl as {user} {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `etcdctl put KEY VALUE` as `user`: Ok, or etcdctl's error.
    pub fn put_as(&self, user: &str, key: &str, value: &str) -> Result<(), String> {
        let out = self.ctl_as(user, &["put", key, value]);
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    /// Every key under `prefix`, read as root.
    #[track_caller]
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.etcdctl_as("root", &["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `etcd-roles --tls-dir <pki> <args>` against this etcd.
    pub fn roles(&self, args: &[&str]) -> Output {
        Command::new(ROLES_SCRIPT)
            .args(["--tls-dir", self.pki.to_str().unwrap()])
            .args(args)
            .env("ETCDCTL_ENDPOINTS", &self.url)
            .stdin(Stdio::null())
            .output()
            .expect("running scripts/etcd-roles")
    }

    /// The connection flags of mgmt for `user`: `--seeds URL --etcd-ca ... --etcd-cert ...
    /// --etcd-key ...`.
    pub fn flags(&self, user: &str) -> Vec<String> {
        vec![
            "--seeds".into(),
            self.url.clone(),
            "--etcd-ca".into(),
            self.file("ca.crt"),
            "--etcd-cert".into(),
            self.file(&format!("{user}.crt")),
            "--etcd-key".into(),
            self.file(&format!("{user}.key")),
        ]
    }
}

impl Drop for SecureEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}
