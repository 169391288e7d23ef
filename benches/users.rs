//! user benchmark: a watching `mgmt run` manages a user's shell; an outside `usermod` changes
//! it, again and again. Measured: from the end of that `usermod` to the user's line in
//! `/etc/passwd` being back (the agent's repair), and, as the baseline, how long the outside
//! `usermod` itself takes. All inside a systemd sandbox (its own overlay root: the host's
//! accounts never change), see BENCHMARKS.md.
//!
//! `cargo bench --bench users` (as root; otherwise it says why and does nothing).
//! `MGMT_BENCH_ROUNDS=N` sets the number of measured rounds (default 200).
//!
//! The timing runs inside the sandbox, in this same binary started there with `--inside N`:
//! it times `usermod` as a child process and waits for the repair with inotify on `/etc`
//! (plus a read every millisecond), so neither side pays for entering the sandbox.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::report::{Row, info, print_table, row, stats};
use support::wait::Waiter;

const WARMUP: usize = 10;
const USER: &str = "mgmtbench";
/// The shell the graph wants, and the one the outside `usermod` sets.
const WANT: &str = "/bin/sh";
const DRIFT: &str = "/bin/bash";
/// How long one repair may take before the bench fails.
const LIMIT: Duration = Duration::from_secs(10);

fn sandbox_script() -> PathBuf {
    std::env::var_os("MGMT_SANDBOX").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/systemd-sandbox"))
    })
}

/// A dir the sandbox cannot see through its overlay of the root file system (another mount).
fn outside_root_fs(file: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    let dir = file.parent()?;
    (dev(dir)? != dev(Path::new("/"))?).then(|| dir.to_path_buf())
}

struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn start(binaries: &[PathBuf]) -> Result<Sandbox, String> {
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // The script refuses scratch dirs in system directories (a checkout under /tmp, say).
        let base = if ["/tmp", "/run", "/var", "/etc", "/usr"].iter().any(|r| target.starts_with(r)) {
            PathBuf::from("/srv/mgmt-test-sandboxes")
        } else {
            target
        };
        let dir = base.join(format!("users-bench-{}", std::process::id()));
        let bind: Vec<String> =
            binaries.iter().filter_map(|b| outside_root_fs(b)).map(|d| d.display().to_string()).collect();
        let out = Command::new(sandbox_script())
            .arg("start")
            .arg(&dir)
            .env("SYSTEMD_SANDBOX_BIND", bind.join(" "))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Sandbox { dir })
    }
    fn exec(&self) -> Command {
        let mut c = Command::new(sandbox_script());
        c.arg("exec").arg(&self.dir).arg("--");
        c
    }
    fn sh(&self, script: &str) {
        let st = self.exec().args(["sh", "-c", script]).status().expect("running a command in the sandbox");
        assert!(st.success(), "`{script}` in the sandbox: {st}");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(sandbox_script()).arg("stop").arg(&self.dir).status();
    }
}

/// The user's `/etc/passwd` line has `shell`.
fn has_shell(shell: &str) -> bool {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd.lines().any(|l| l.starts_with(&format!("{USER}:")) && l.ends_with(&format!(":{shell}")))
}

/// Inside the sandbox: `rounds` times, run the outside `usermod` and wait for the repair.
/// Prints one line per round: `sample <usermod ns> <repair ns>`.
fn inside(rounds: usize) {
    let mut w = Waiter::file(Path::new("/etc/passwd")).expect("watching /etc/passwd");
    let start = Instant::now();
    while !has_shell(WANT) {
        assert!(start.elapsed() < LIMIT * 3, "the agent never gave {USER} the shell {WANT}");
        w.wait(Duration::from_millis(1));
    }
    for _ in 0..rounds {
        w.drain();
        let t0 = Instant::now();
        let st = Command::new("usermod").args(["-s", DRIFT, USER]).stdout(Stdio::null()).status();
        let t1 = Instant::now();
        assert!(st.is_ok_and(|s| s.success()), "usermod -s {DRIFT} {USER} failed");
        // The repair: the agent runs usermod itself once the outside one let go of the lock.
        while !has_shell(WANT) {
            assert!(t1.elapsed() < LIMIT, "no repair within {LIMIT:?}");
            w.wait(Duration::from_millis(1));
        }
        let t2 = Instant::now();
        println!("sample {} {}", (t1 - t0).as_nanos(), (t2 - t1).as_nanos());
        // Let the agent's own re-check (woken by its repair) pass before the next round.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn parse_samples(out: &str) -> (Vec<Duration>, Vec<Duration>) {
    let (mut usermod, mut repair) = (Vec::new(), Vec::new());
    for l in out.lines().filter_map(|l| l.strip_prefix("sample ")) {
        let mut it = l.split(' ').filter_map(|n| n.parse::<u64>().ok()).map(Duration::from_nanos);
        if let (Some(u), Some(r)) = (it.next(), it.next()) {
            usermod.push(u);
            repair.push(r);
        }
    }
    (usermod, repair)
}

fn run(rounds: usize) -> Result<Vec<Row>, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mgmt = PathBuf::from(support::bin());
    let sb = Sandbox::start(&[me.clone(), mgmt.clone()])?;
    let graph = format!("graph: bench\nresources:\n  user:\n  - name: {USER}\n    shell: {WANT}\n");
    sb.sh(&format!("mkdir -p /root/bench && printf '%s' '{graph}' > /root/bench/g.yaml"));
    let mut agent = sb
        .exec()
        .arg(&mgmt)
        .args(["--log-level", "warn", "run", "--tmp-prefix", "yaml", "/root/bench/g.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let out = sb.exec().arg(&me).args(["--inside", &(WARMUP + rounds).to_string()]).output();
    let _ = agent.kill();
    let _ = agent.wait();
    let out = out.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("the timing inside failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let (usermod, repair) = parse_samples(&String::from_utf8_lossy(&out.stdout));
    if repair.len() != WARMUP + rounds {
        return Err(format!("{} samples of {}", repair.len(), WARMUP + rounds));
    }
    let (u, r) = (stats(&usermod[WARMUP..]), stats(&repair[WARMUP..]));
    println!("outside usermod (baseline): {}", u.line());
    println!("usermod end -> repaired:    {}", r.line());
    Ok(vec![
        info("users", "outside usermod p50 / p99 / max (baseline)", u.p50_p99_max()),
        row(
            "users",
            format!("usermod end -> repaired p50 / p99 / max (n={})", r.n),
            r.p50_p99_max(),
            "",
            None,
        ),
    ])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--inside") {
        inside(args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(1));
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("users bench SKIPPED: it boots systemd in a sandbox, which needs root");
        return;
    }
    let rounds = std::env::var("MGMT_BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    match run(rounds) {
        Ok(rows) => print_table(&rows),
        Err(e) => {
            eprintln!("users bench FAILED: {e}");
            std::process::exit(1);
        }
    }
}
