//! A one-member etcd for a benchmark, its metrics, and the loopback ports it listens on.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::support::process::Proc;
use crate::support::report::ms;

/// which on a test machine does not happen in practice).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let ls: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    Ok(ls.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?)
}

/// A plain HTTP/1.0 GET (etcd's /health and /metrics); returns the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    let (head, body) = r.split_once("\r\n\r\n").context("no HTTP header end")?;
    ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "GET {path}: {}",
        head.lines().next().unwrap_or("")
    );
    Ok(body.to_string())
}

pub struct Etcd {
    pub process: Proc,
    pub url: String,
    client_addr: SocketAddr,
}

impl Etcd {
    /// Start a one-member etcd on free loopback ports, data in `dir/etcd-data`, and wait
    /// until it reports itself healthy (it has a leader).
    pub fn start(dir: &Path) -> Result<Etcd> {
        Etcd::start_with(dir, None)
    }

    /// [`Etcd::start`] serving clients over TLS only, with client certificates required,
    /// from a `mgmt certs` directory; health and metrics over plain http on a port of their own.
    pub fn start_tls(dir: &Path, certs: &Path) -> Result<Etcd> {
        Etcd::start_with(dir, Some(certs))
    }

    fn start_with(dir: &Path, certs: Option<&Path>) -> Result<Etcd> {
        let bin = std::env::var("MGMT_ETCD_BINARY").unwrap_or_else(|_| "/usr/bin/etcd".into());
        let ports = free_ports(3)?;
        let (scheme, health) = if certs.is_some() { ("https", ports[2]) } else { ("http", ports[0]) };
        let client_addr: SocketAddr = format!("127.0.0.1:{health}").parse()?;
        let url = format!("{scheme}://127.0.0.1:{}", ports[0]);
        let peer = format!("http://127.0.0.1:{}", ports[1]);
        let mut cmd = Command::new(&bin);
        // etcd reads ETCD_* variables and refuses a flag that one of them also sets.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        cmd.args([
            "--name=bench".to_string(),
            format!("--data-dir={}", dir.join("etcd-data").display()),
            format!("--listen-client-urls={url}"),
            format!("--advertise-client-urls={url}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=bench={peer}"),
            "--initial-cluster-state=new".to_string(),
            "--logger=zap".to_string(),
            "--log-outputs=stderr".to_string(),
        ]);
        if let Some(c) = certs {
            cmd.args([
                format!("--cert-file={}", c.join("server.crt").display()),
                format!("--key-file={}", c.join("server.key").display()),
                format!("--trusted-ca-file={}", c.join("ca.crt").display()),
                "--client-cert-auth".to_string(),
                format!("--listen-metrics-urls=http://{client_addr}"),
            ]);
        }
        let t0 = Instant::now();
        let mut process = Proc::spawn(cmd, dir.join("etcd.log"), format!("etcd ({bin})"))?;
        let version = Command::new(&bin).arg("--version").output().ok();
        let version = version
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_default();
        loop {
            process.ensure_alive()?;
            if http_get(client_addr, "/health").is_ok_and(|b| b.contains("\"true\"")) {
                break;
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "etcd not healthy within 30 s; log:\n{}",
                process.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("etcd: {bin} ({version}) at {url}, healthy after {}", ms(t0.elapsed()));
        Ok(Etcd { process, url, client_addr })
    }

    pub fn metrics(&self) -> Metrics {
        Metrics(http_get(self.client_addr, "/metrics").unwrap_or_default())
    }
}

/// A snapshot of etcd's Prometheus metrics.
pub struct Metrics(String);

impl Metrics {
    /// The value of an unlabelled metric.
    pub fn get(&self, name: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }
    /// Count and mean (in ms) of a histogram's observations since `before`.
    pub fn hist_since(&self, before: &Metrics, name: &str) -> (f64, f64) {
        let count = self.get(&format!("{name}_count")) - before.get(&format!("{name}_count"));
        let sum = self.get(&format!("{name}_sum")) - before.get(&format!("{name}_sum"));
        (count, if count > 0.0 { sum / count * 1e3 } else { f64::NAN })
    }
}
