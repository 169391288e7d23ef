//! A real etcd (Debian package `etcd-server`, `/usr/bin/etcd`) per test, read and written
//! with the real `etcdctl` (package `etcd-client`, v3 API).
//!
//! Each [`Etcd`] has a unique member name, free loopback ports (client and peer) and its own
//! data dir inside the directory it is started in. It can be killed (SIGKILL, as a crash
//! would) and started again on the same ports and data (outage tests), and it is killed when
//! dropped, so a failing test never leaves an etcd running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::certs::{Certs, Pair};
use super::{TestDir, free_ports};

/// How long etcd may take to answer after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct Etcd {
    child: Option<Child>,
    /// The client URL, `http://127.0.0.1:PORT` (also [`Etcd::url`]).
    pub url: String,
    name: String,
    data_dir: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    /// With TLS: the CA and the client certificate `etcdctl` uses.
    ctl_tls: Option<(PathBuf, Pair)>,
}

impl Etcd {
    /// Start an etcd with its data dir inside the test directory.
    pub fn start(t: &TestDir) -> Etcd {
        Etcd::start_in(t.root())
    }

    /// Start an etcd with extra flags (e.g. `--quota-backend-bytes=...`) after the usual ones.
    pub fn start_with(t: &TestDir, extra: &[&str]) -> Etcd {
        Etcd::start_in_with(t.root(), extra)
    }

    /// Start an etcd with its data dir (and its log) inside `dir`, and wait until it answers.
    pub fn start_in(dir: &Path) -> Etcd {
        Etcd::start_in_with(dir, &[])
    }

    /// Start an etcd that serves clients over TLS only (`https://127.0.0.1:PORT`) with the
    /// server certificate of `certs`, and requires client certificates signed by its CA
    /// (`--client-cert-auth`); `extra` flags go after the usual ones. [`Etcd::ctl`] then
    /// uses a client certificate with common name `root`.
    pub fn start_tls(t: &TestDir, certs: &Certs, extra: &[&str]) -> Etcd {
        let tls = TlsServer { certs, ctl: certs.ca.client("root") };
        Etcd::start_any(t.root(), extra, Some(tls))
    }

    fn start_in_with(dir: &Path, extra: &[&str]) -> Etcd {
        Etcd::start_any(dir, extra, None)
    }

    fn start_any(dir: &Path, extra: &[&str], tls: Option<TlsServer>) -> Etcd {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tls_flags: Vec<String> = match &tls {
            None => Vec::new(),
            Some(t) => vec![
                format!("--cert-file={}", t.certs.server.cert()),
                format!("--key-file={}", t.certs.server.key()),
                format!("--trusted-ca-file={}", t.certs.ca.ca()),
                "--client-cert-auth".to_string(),
            ],
        };
        let name = format!("mgmt-it-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let data_dir = dir.join(format!("{name}.etcd"));
        let log = dir.join(format!("{name}.log"));
        // A port found free may be taken by someone else before etcd binds it: then etcd
        // exits at once, and it is tried again on other ports (with a fresh data dir).
        let mut last_log = String::new();
        for _ in 0..5 {
            let [client, peer] = free_ports();
            let url = format!("{scheme}://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let args: Vec<String> = [
                "--name",
                &name,
                "--data-dir",
                data_dir.to_str().expect("utf-8 path"),
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("{name}={peer_url}"),
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &name,
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(tls_flags.iter().cloned())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
            let mut e = Etcd {
                child: None,
                url,
                name: name.clone(),
                data_dir: data_dir.clone(),
                args,
                log: log.clone(),
                ctl_tls: tls.as_ref().map(|t| (t.certs.ca.cert.clone(), t.ctl.clone())),
            };
            if e.try_start() {
                return e;
            }
            e.kill();
            last_log = fs::read_to_string(&log).unwrap_or_default();
            let _ = fs::remove_dir_all(&data_dir);
        }
        panic!("etcd did not start (5 tries); its log:\n{last_log}");
    }

    /// Start the process and wait (at most [`START_TIMEOUT`]) until it answers; false if it
    /// exited or did not answer in time.
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "etcd is running");
        let log =
            fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("opening the etcd log");
        let child = Command::new("/usr/bin/etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the etcd log handle"))
            .stderr(log)
            .spawn()
            .expect("starting /usr/bin/etcd (Debian package etcd-server)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if !self.running() {
                return false;
            }
            if self.healthy() {
                // Another test's etcd may have bound the port first and answered for ours.
                return self.answers_as_itself();
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the etcd answering at the URL is this one: its member name is unique.
    fn answers_as_itself(&mut self) -> bool {
        let out = self.ctl(&["--dial-timeout", "1s", "--command-timeout", "2s", "member", "list"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&self.name) && self.running()
    }

    /// Whether it answers a read (`etcdctl endpoint health` needs a leader).
    pub fn healthy(&self) -> bool {
        self.ctl(&["--dial-timeout", "1s", "--command-timeout", "2s", "endpoint", "health"]).status.success()
    }

    /// The client URL (what agents get as `--seeds`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its unique member name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its data dir (kept across [`Etcd::kill`] and [`Etcd::restart`]).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything etcd logged so far (every start appends to one file).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is running (started and not killed or exited).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Start it again after [`Etcd::kill`]: same name, ports and data dir. Waits until it
    /// answers.
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        if !self.try_start() {
            self.kill();
            panic!("etcd did not start again on {}; its log:\n{}", self.url, self.log());
        }
    }

    /// SIGSTOP: etcd stops answering but keeps its connections (a hung or paused server).
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`Etcd::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let c = self.child.as_ref().expect("etcd is running");
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signalling etcd");
    }

    /// SIGKILL, as a crash would, and reap. A no-op if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `ETCDCTL_API=3 etcdctl --endpoints URL <args>`, whatever its outcome (with TLS, also
    /// `--cacert`, `--cert` and `--key`).
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3").env_remove("ETCDCTL_ENDPOINTS").arg("--endpoints").arg(&self.url);
        if let Some((ca, client)) = &self.ctl_tls {
            cmd.arg("--cacert").arg(ca).arg("--cert").arg(&client.cert).arg("--key").arg(&client.key);
        }
        cmd.args(args).stdin(Stdio::null()).output().expect("running etcdctl (Debian package etcd-client)")
    }

    /// `etcdctl <args>`: its stdout; panics with its stderr if it fails.
    #[track_caller]
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("etcdctl printed UTF-8")
    }

    /// `etcdctl get --prefix -w json`: every key under `prefix` (sorted by key) with its
    /// value and the id of its lease (0: none). Keys and values are decoded from base64, so
    /// values may hold anything, newlines included.
    #[track_caller]
    pub fn get_prefix_raw(&self, prefix: &str) -> Vec<(String, String, i64)> {
        let text = self.etcdctl(&["get", "--prefix", "-w", "json", prefix]);
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("etcdctl get -w json: {e}: {text}"));
        let Some(kvs) = v.get("kvs").and_then(|k| k.as_array()) else {
            return Vec::new();
        };
        kvs.iter()
            .map(|kv| {
                let field = |f: &str| {
                    let b64 = kv.get(f).and_then(|x| x.as_str()).unwrap_or("");
                    String::from_utf8(base64_decode(b64)).unwrap_or_else(|e| panic!("{f} is not UTF-8: {e}"))
                };
                (field("key"), field("value"), kv.get("lease").and_then(|l| l.as_i64()).unwrap_or(0))
            })
            .collect()
    }

    /// Every key under `prefix` (sorted) with its value as text.
    #[track_caller]
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.get_prefix_raw(prefix).into_iter().map(|(k, v, _)| (k, v)).collect()
    }

    /// Every key under `prefix` (sorted) with its value parsed as JSON (panics, naming the
    /// key, if a value is not JSON).
    #[track_caller]
    pub fn get_prefix_json(&self, prefix: &str) -> Vec<(String, serde_json::Value)> {
        self.get_prefix(prefix)
            .into_iter()
            .map(|(k, v)| {
                let j = serde_json::from_str(&v).unwrap_or_else(|e| panic!("{k} is not JSON ({e}): {v:?}"));
                (k, j)
            })
            .collect()
    }

    /// The keys under `prefix`, sorted.
    #[track_caller]
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.get_prefix(prefix).into_iter().map(|(k, _)| k).collect()
    }

    /// The value at exactly `key` parsed as JSON, if present.
    #[track_caller]
    pub fn get_json(&self, key: &str) -> Option<serde_json::Value> {
        self.get_prefix_raw(key).into_iter().find(|(k, _, _)| k == key).map(|(k, v, _)| {
            serde_json::from_str(&v).unwrap_or_else(|e| panic!("{k} is not JSON ({e}): {v:?}"))
        })
    }

    /// The granted TTL in seconds of the lease `key` is attached to (None: no such key, or
    /// not on a lease).
    #[track_caller]
    pub fn lease_ttl_of(&self, key: &str) -> Option<u64> {
        let (_, _, lease) = self.get_prefix_raw(key).into_iter().find(|(k, _, _)| k == key)?;
        if lease == 0 {
            return None;
        }
        let text = self.etcdctl(&["lease", "timetolive", "-w", "json", &format!("{lease:x}")]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        v["granted-ttl"].as_u64()
    }
}

/// What a TLS etcd is started with.
struct TlsServer<'a> {
    certs: &'a Certs,
    /// The client certificate of `etcdctl`.
    ctl: Pair,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Standard base64 (with or without `=` padding), as etcdctl's JSON output uses it.
pub fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let produced = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => panic!("truncated base64: {s:?}"),
        };
        out.extend_from_slice(&n.to_be_bytes()[1..=produced]);
    }
    out
}
