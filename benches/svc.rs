//! svc benchmark: time from an outside stop of a service to the service being active again,
//! with `mgmt run` repairing it, in a real systemd booted in a sandbox (see BENCHMARKS.md).
//!
//! `cargo bench --bench svc` (as root; otherwise it says why and does nothing).

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use zbus_systemd::systemd1::{ManagerProxy, UnitProxy};
use zbus_systemd::zbus;

use support::report::stats;

const WARMUP: usize = 10;
const ROUNDS: usize = 100;
const UNIT: &str = "mgmt-bench.service";

fn sandbox_script() -> PathBuf {
    std::env::var_os("MGMT_SANDBOX").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/systemd-sandbox"))
    })
}

struct Sandbox {
    dir: PathBuf,
    pid: String,
}

impl Sandbox {
    fn start() -> Result<Sandbox, String> {
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // The script refuses scratch dirs in system directories (a checkout under /tmp, say).
        let base = if ["/tmp", "/run", "/var", "/etc", "/usr"].iter().any(|r| target.starts_with(r)) {
            PathBuf::from("/srv/mgmt-test-sandboxes")
        } else {
            target
        };
        let dir = base.join(format!("svc-bench-{}", std::process::id()));
        let out =
            Command::new(sandbox_script()).arg("start").arg(&dir).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Sandbox { dir, pid })
    }
    fn exec(&self) -> Command {
        let mut c = Command::new(sandbox_script());
        c.arg("exec").arg(&self.dir).arg("--");
        c
    }
    fn bus(&self) -> String {
        format!("unix:path=/proc/{}/root/run/dbus/system_bus_socket", self.pid)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(sandbox_script()).arg("stop").arg(&self.dir).status();
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("svc bench SKIPPED: it boots systemd in a sandbox, which needs root");
        return;
    }
    let sb = match Sandbox::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("svc bench SKIPPED: the systemd sandbox did not start: {e}");
            return;
        }
    };
    let graph = format!(
        "graph: bench\nresources:\n  file:\n  - name: unit\n    path: /etc/systemd/system/{UNIT}\n    content: |\n      [Service]\n      ExecStart=/bin/sleep 86400\n  svc:\n  - name: mgmt-bench\n    state: running\n"
    );
    let mut w = sb.exec().args(["sh", "-c", "cat > /root/bench.yaml"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(w.stdin.as_mut().unwrap(), graph.as_bytes()).unwrap();
    drop(w.stdin.take());
    w.wait().unwrap();
    let mut agent = sb
        .exec()
        .args([
            env!("CARGO_BIN_EXE_mgmt"),
            "--log-level",
            "warn",
            "run",
            "--tmp-prefix",
            "yaml",
            "/root/bench.yaml",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let samples = rt.block_on(async {
        let conn = zbus::connection::Builder::address(sb.bus().as_str()).build().await.unwrap();
        let m = ManagerProxy::new(&conn).await.unwrap();
        // Wait for the agent to have started it.
        let start = Instant::now();
        loop {
            let path = m.load_unit(UNIT.into()).await.unwrap();
            let u = UnitProxy::builder(&conn).path(path).build().await.unwrap();
            if u.active_state().await.unwrap_or_default() == "active" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the agent never started {UNIT}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let path = m.load_unit(UNIT.into()).await.unwrap();
        let u = UnitProxy::builder(&conn)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap();
        let props = zbus::fdo::PropertiesProxy::builder(&conn)
            .destination("org.freedesktop.systemd1")
            .path(u.inner().path().to_owned())
            .build()
            .await
            .unwrap();
        let mut changes = props.receive_properties_changed().await.unwrap();
        let mut samples = Vec::new();
        for round in 0..WARMUP + ROUNDS {
            let t0 = Instant::now();
            m.stop_unit(UNIT.into(), "replace".into()).await.unwrap();
            // Down, then up again.
            let mut was_down = false;
            loop {
                let ev = tokio::time::timeout(Duration::from_secs(10), changes.next())
                    .await
                    .expect("no state change within 10 s")
                    .expect("stream ended");
                let Ok(args) = ev.args() else { continue };
                if let Some(v) = args.changed_properties().get("ActiveState") {
                    let s = format!("{v:?}");
                    if s.contains("inactive") || s.contains("deactivating") || s.contains("failed") {
                        was_down = true;
                    } else if was_down && s.contains("\"active\"") {
                        break;
                    }
                }
            }
            if round >= WARMUP {
                samples.push(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        samples
    });
    let _ = agent.kill();
    let _ = agent.wait();
    let s = stats(&samples);
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!("svc: outside stop -> active again, n={}", s.n);
    println!("  min {} p50 {} p90 {} p99 {} max {}", ms(s.min), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max));
    println!("  target p99 < 100 ms: {}", if s.p99 < Duration::from_millis(100) { "ok" } else { "MISSED" });
}
