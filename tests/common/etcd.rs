//! A real etcd (Debian package `etcd-server`) per test: loopback ports picked free, its own
//! data dir in the test directory, killed on drop. It can be killed and started again on the
//! same ports and data (outage tests).

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use super::{TIMEOUT, TestDir, poll_until};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Etcd {
    child: Option<Child>,
    pub url: String,
    args: Vec<String>,
    log: PathBuf,
}

impl Etcd {
    pub fn start(t: &TestDir) -> Etcd {
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args = vec![
            "--name".to_string(),
            "t".into(),
            "--data-dir".into(),
            t.p("etcd-data"),
            "--listen-client-urls".into(),
            url.clone(),
            "--advertise-client-urls".into(),
            url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("t={peer_url}"),
        ];
        let mut e = Etcd { child: None, url, args, log: t.path("tmp/etcd.log") };
        e.restart();
        e
    }

    /// Start it (again, after [`Etcd::kill`]) and wait until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new("etcd")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd (Debian package etcd-server)");
        self.child = Some(child);
        assert!(
            poll_until(|| self.ctl(&["endpoint", "health"]).status.success(), TIMEOUT * 2),
            "etcd did not start; its log:\n{}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.url)
            .args(args)
            .output()
            .expect("running etcdctl (Debian package etcd-client)")
    }

    /// `etcdctl get --prefix`: (key, value) pairs, values as text.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.ctl(&["get", "--prefix", prefix]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].to_string(), c[1].to_string())).collect()
    }

    /// The value at `key` parsed as JSON, if present.
    pub fn get_json(&self, key: &str) -> Option<serde_json::Value> {
        let out = self.ctl(&["get", key, "--print-value-only"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let text = text.trim();
        (!text.is_empty())
            .then(|| serde_json::from_str(text).unwrap_or_else(|e| panic!("{key}: {e}: {text}")))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
