//! Cluster benchmarks of the `mgmt` agent, with a real etcd and real agents: export -> collect
//! propagation, and deploys.
//!
//! ```text
//! cargo bench --bench cluster                 # all of them
//! cargo bench --bench cluster -- propagation  # one (or several) of: propagation deploy deploy50 bigtree bigtree10k
//! ```
//!
//! `propagation`:
//! Starts an etcd member (`/usr/bin/etcd`, or `$MGMT_ETCD_BINARY`) on free loopback ports with
//! its data dir in the run's temporary directory, and three agents (the release binary,
//! `mgmt run --seeds URL --hostname A|B|C --tmp-prefix yaml X.yaml`). Each agent exports one
//! file and collects every exported file into its own directory. Each round rewrites A's
//! graph file the way editors save (temp file in the same directory, renamed over it) with a
//! new content for A's exported file, and times how long it takes until that file has the new
//! content in all three hosts' directories. Baselines: a bare etcd round trip (put -> watch
//! event on another client) measured in-process, interleaved with the agent rounds.
//!
//! Environment: `MGMT_BENCH_LOG=LEVEL` runs the agents with `--log-level LEVEL` (a tracing
//! filter, e.g. `debug` or `info,h2=debug`; with h2's frames in the logs the bench adds a
//! per-step breakdown of the export: range read, transaction, watch event, apply);
//! `MGMT_BENCH_KEEP_LOGS=DIR` copies the agents' and etcd's logs (and the round start times)
//! into DIR at the end. etcd and the agents are stopped and the temp dir removed when the
//! bench ends or fails; a killed bench takes its children with it (`PR_SET_PDEATHSIG`).
//!
//! `deploy` and `deploy50`: 3 (50) agents `mgmt run --seeds URL --hostname hN --tmp-prefix
//! empty` follow the deploys of a git repository whose graph manages one file; each round
//! commits a new version and times `mgmt deploy --seeds URL yaml graph.yaml` from its spawn
//! until every agent's status (`hosts/<h>` in etcd, followed by a watch in the bench) says it
//! runs the new deploy and is converged. `bigtree`: `mgmt deploy` of a tree of 1,000 files,
//! cold (every blob new) and after a change of one file (the rest deduplicated), with one agent;
//! `bigtree10k`: the same with 10,000 files.
//!
//! `MGMT_BENCH_BIN=PATH` runs another `mgmt` binary (e.g. one built from an older commit)
//! instead of the one cargo built with the bench.
//!
//! Methodology and results: BENCHMARKS.md, sections "Cluster: export -> collect propagation"
//! and "Deploys".

use std::ffi::OsString;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use inotify::{Inotify, WatchDescriptor, WatchMask};

/// The binary under test: the one cargo built, or `$MGMT_BENCH_BIN` (to measure another
/// build, e.g. an older commit, with this bench).
fn bin() -> String {
    std::env::var("MGMT_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mgmt").to_string())
}
const HOSTS: [char; 3] = ['A', 'B', 'C'];
const WARMUP: usize = 20;
const ITERS: usize = 200;
/// Pause before each timed step, so the previous step's tail (status writes, convergence
/// reports, etcd's background commit) is over.
const PAUSE: Duration = Duration::from_millis(100);
/// Poll interval of the fallback: re-read the files even without an event this often.
const FALLBACK: Duration = Duration::from_millis(1);
/// How long one round may take before the bench gives up.
const ROUND_LIMIT: Duration = Duration::from_secs(10);

type Bench = fn(&Path) -> Result<Vec<Row>>;
/// Every benchmark, in the order `cargo bench --bench cluster` runs them.
const BENCHES: &[(&str, Bench)] = &[
    ("propagation", propagation),
    ("deploy", deploy3),
    ("deploy50", deploy50),
    ("bigtree", bigtree),
    ("bigtree10k", bigtree10k),
    ("transport", transport::transport),
];

#[path = "cluster/transport.rs"]
mod transport;

fn main() {
    // `cargo bench` passes `--bench`; every other non-flag argument names a benchmark.
    let names: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for n in &names {
        if !BENCHES.iter().any(|(b, _)| b == n) {
            let known: Vec<&str> = BENCHES.iter().map(|(b, _)| *b).collect();
            eprintln!("unknown benchmark `{n}` (known: {})", known.join(", "));
            std::process::exit(2);
        }
    }
    let dir =
        tempfile::Builder::new().prefix("mgmt-cluster-bench-").tempdir().expect("creating the bench dir");
    print_machine(dir.path());
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (name, f) in BENCHES {
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        // propagation works in the run directory itself (as it always did), the others in a
        // directory of their own inside it.
        let t = if *name == "propagation" { dir.path().to_path_buf() } else { dir.path().join(name) };
        println!("\n== {name} ==");
        let t0 = Instant::now();
        let result = fs::create_dir_all(&t).map_err(anyhow::Error::from).and_then(|()| f(&t));
        println!("({name} took {:.1} s)", t0.elapsed().as_secs_f64());
        match result {
            Ok(r) => rows.extend(r),
            Err(e) => {
                println!("{name}: FAILED: {e:#}");
                failed.push(*name);
            }
        }
    }
    print_table(&rows);
    drop(dir);
    if !failed.is_empty() {
        println!("\nfailed: {}", failed.join(", "));
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Results (as in benches/engine.rs)

struct Row {
    bench: &'static str,
    metric: String,
    value: String,
    target: &'static str,
    /// None: informational, no target.
    pass: Option<bool>,
}

fn row(metric: impl Into<String>, value: impl Into<String>, target: &'static str, pass: Option<bool>) -> Row {
    Row { bench: "cluster", metric: metric.into(), value: value.into(), target, pass }
}

fn info_row(metric: impl Into<String>, value: impl Into<String>) -> Row {
    row(metric, value, "", None)
}

/// A row of another benchmark than `propagation` (whose rows say `cluster`).
fn bench_row(
    bench: &'static str,
    metric: impl Into<String>,
    value: impl Into<String>,
    target: &'static str,
    pass: Option<bool>,
) -> Row {
    Row { bench, metric: metric.into(), value: value.into(), target, pass }
}

fn print_table(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let w = |f: &dyn Fn(&Row) -> usize, h: &str| rows.iter().map(f).max().unwrap_or(0).max(h.len());
    let (wb, wm, wv, wt) = (
        w(&|r| r.bench.len(), "bench"),
        w(&|r| r.metric.len(), "metric"),
        w(&|r| r.value.len(), "result"),
        w(&|r| r.target.len(), "target"),
    );
    println!("\n== results ==");
    println!("| {:wb$} | {:wm$} | {:wv$} | {:wt$} | status |", "bench", "metric", "result", "target");
    println!(
        "|{}|{}|{}|{}|--------|",
        "-".repeat(wb + 2),
        "-".repeat(wm + 2),
        "-".repeat(wv + 2),
        "-".repeat(wt + 2)
    );
    for r in rows {
        let status = match r.pass {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "",
        };
        println!("| {:wb$} | {:wm$} | {:wv$} | {:wt$} | {status:6} |", r.bench, r.metric, r.value, r.target);
    }
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1e3;
    if m < 10.0 {
        format!("{m:.3} ms")
    } else if m < 1000.0 {
        format!("{m:.1} ms")
    } else {
        format!("{:.2} s", m / 1e3)
    }
}

struct Stats {
    n: usize,
    min: Duration,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

/// Nearest-rank percentiles.
fn stats(samples: &[Duration]) -> Stats {
    let mut s = samples.to_vec();
    s.sort();
    let n = s.len();
    let pct = |p: f64| s[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    Stats {
        n,
        min: s[0],
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: s[n - 1],
        mean: s.iter().sum::<Duration>() / n as u32,
    }
}

impl Stats {
    fn line(&self) -> String {
        format!(
            "n={} min {} p50 {} p90 {} p99 {} max {} mean {}",
            self.n,
            ms(self.min),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            ms(self.mean)
        )
    }
    fn p50_p90_p99_max(&self) -> String {
        format!("{} / {} / {} / {}", ms(self.p50), ms(self.p90), ms(self.p99), ms(self.max))
    }
    fn p50_p90_max(&self) -> String {
        format!("{} / {} / {}", ms(self.p50), ms(self.p90), ms(self.max))
    }
}

// ---------------------------------------------------------------------------------------------
// Environment

fn print_machine(tmp: &Path) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel =
        fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    // The mount holding the temp dir: longest mount point that is a prefix of it.
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let fs_type = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && tmp.starts_with(f[1])).then(|| {
                // An ext4 journal shows up as /proc/fs/jbd2/<device>-<n>.
                let dev =
                    Path::new(f[0]).file_name().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
                let journal = fs::read_dir("/proc/fs/jbd2")
                    .map(|rd| {
                        rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&format!("{dev}-")))
                    })
                    .unwrap_or(false);
                let journal = if f[2] != "ext4" {
                    ""
                } else if journal {
                    ", journal"
                } else {
                    ", NO journal"
                };
                (f[1].len(), format!("{} on {} ({}{journal}; {})", f[2], f[1], f[0], f[3]))
            })
        })
        .max()
        .map(|(_, s)| s)
        .unwrap_or_else(|| "?".into());
    println!("machine: {cpus} CPUs, {model}, Linux {kernel}; load average {}", load.join(" "));
    println!("temp dir: {} on {fs_type}", tmp.display());
    println!("binary: {}", bin());
}

/// A `VmXxx:` line of /proc/PID/status, in kB.
fn status_kb(pid: i32, key: &str) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let l = s.lines().find(|l| l.starts_with(key)).with_context(|| format!("no {key} in status"))?;
    Ok(l.split_whitespace().nth(1).context("bad status line")?.parse()?)
}

/// CPU time of a process in nanoseconds: utime + stime of /proc/PID/stat (all threads, dead
/// ones included; 10 ms ticks).
fn cpu_ns(pid: i32) -> u64 {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0;
    };
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    let tck = (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as u64;
    f.iter().sum::<u64>() * (1_000_000_000 / tck)
}

/// A free loopback port (bound, read, released: another process could take it in between,
/// which on a test machine does not happen in practice).
fn free_ports(n: usize) -> Result<Vec<u16>> {
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

/// Waits for a child's exit without polling: a pidfd becomes readable when it exits.
struct Proc {
    child: Option<Child>,
    pidfd: i32,
    log: PathBuf,
    what: String,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf, what: String) -> Result<Proc> {
        // If the bench itself is killed (Ctrl-C), its children get SIGTERM instead of living on.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) } as i32;
        let mut p = Proc { child: Some(child), pidfd, log, what };
        if p.pidfd < 0 {
            let e = std::io::Error::last_os_error();
            p.kill();
            bail!("pidfd_open: {e}");
        }
        Ok(p)
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn ensure_alive(&mut self) -> Result<()> {
        ensure!(self.alive(), "{} exited; log:\n{}", self.what, self.log_tail());
        Ok(())
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd { fd: self.pidfd, events: libc::POLLIN, revents: 0 };
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if r > 0 {
                return Ok(self.child.take().context("already reaped")?.wait()?);
            }
            if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if left.is_zero() || r == 0 {
                bail!("{} (pid {}) did not exit within {timeout:?}", self.what, self.pid());
            }
        }
    }

    /// Stop with `sig`, falling back to SIGKILL after 5 s.
    fn stop(&mut self, sig: libc::c_int) -> Option<ExitStatus> {
        self.child.as_ref()?;
        unsafe { libc::kill(self.pid(), sig) };
        match self.wait_exit(Duration::from_secs(5)) {
            Ok(s) => Some(s),
            Err(_) => {
                self.kill();
                None
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM);
        self.kill();
        if self.pidfd >= 0 {
            unsafe { libc::close(self.pidfd) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// etcd

struct Etcd {
    process: Proc,
    url: String,
    client_addr: SocketAddr,
}

impl Etcd {
    /// Start a one-member etcd on free loopback ports, data in `dir/etcd-data`, and wait
    /// until it reports itself healthy (it has a leader).
    fn start(dir: &Path) -> Result<Etcd> {
        Etcd::start_with(dir, None)
    }

    /// [`Etcd::start`] serving clients over TLS only, with client certificates required,
    /// from a `mgmt certs` directory; health and metrics over plain http on a port of their own.
    fn start_tls(dir: &Path, certs: &Path) -> Result<Etcd> {
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

    fn metrics(&self) -> Metrics {
        Metrics(http_get(self.client_addr, "/metrics").unwrap_or_default())
    }
}

/// A snapshot of etcd's Prometheus metrics.
struct Metrics(String);

impl Metrics {
    /// The value of an unlabelled metric.
    fn get(&self, name: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }
    /// Count and mean (in ms) of a histogram's observations since `before`.
    fn hist_since(&self, before: &Metrics, name: &str) -> (f64, f64) {
        let count = self.get(&format!("{name}_count")) - before.get(&format!("{name}_count"));
        let sum = self.get(&format!("{name}_sum")) - before.get(&format!("{name}_sum"));
        (count, if count > 0.0 { sum / count * 1e3 } else { f64::NAN })
    }
}

// ---------------------------------------------------------------------------------------------
// The agents' graphs

/// Host `h`'s graph: export `f<h>` with `version` in its content, collect every exported
/// file into `<t>/mgmt<h>/`.
fn host_yaml(t: &Path, h: char, version: usize) -> String {
    let t = t.display();
    let l = h.to_ascii_lowercase();
    format!(
        "graph: mygraph\nresources:\n  file:\n  - name: \"@@file{l}\"\n    path: \"{t}/mgmt{h}/f{h}\"\n    \
         content: \"i am f{h}, exported from host {h}, version {version}\\n\"\ncollect:\n- kind: file\n  \
         pattern: \"{t}/mgmt{h}/\"\n"
    )
}

fn content(h: char, version: usize) -> Vec<u8> {
    format!("i am f{h}, exported from host {h}, version {version}\n").into_bytes()
}

fn graph_path(t: &Path, h: char) -> PathBuf {
    t.join(format!("host{h}")).join(format!("{}.yaml", h.to_ascii_lowercase()))
}

/// Replace a file the way editors save: a temp file in the same directory (written before,
/// by `prepare`), renamed over the target (by `commit`).
struct AtomicSave {
    tmp: PathBuf,
    target: PathBuf,
}

impl AtomicSave {
    fn prepare(target: &Path, text: &str) -> Result<AtomicSave> {
        let name = target.file_name().context("no file name")?.to_string_lossy();
        let tmp = target.with_file_name(format!(".{name}.swp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        Ok(AtomicSave { tmp, target: target.to_path_buf() })
    }
    fn commit(self) -> Result<()> {
        fs::rename(&self.tmp, &self.target)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting for file content with inotify

/// Watches several directories for IN_CLOSE_WRITE and IN_MOVED_TO of one file name (the two
/// ways a file gets new content: written in place, or renamed over).
struct Waiter {
    ino: Inotify,
    wds: Vec<WatchDescriptor>,
    name: OsString,
    buf: Vec<u8>,
}

impl Waiter {
    fn new(dirs: &[PathBuf], name: &str) -> Result<Waiter> {
        let ino = Inotify::init()?;
        let wds = dirs
            .iter()
            .map(|d| ino.watches().add(d, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO))
            .collect::<Result<_, _>>()?;
        Ok(Waiter { ino, wds, name: name.into(), buf: vec![0; 64 * 1024] })
    }

    /// Discard queued events.
    fn drain(&mut self) {
        while self.ino.read_events(&mut self.buf).is_ok_and(|mut e| e.next().is_some()) {}
    }

    /// Block until an event for our name arrives in any watched directory (true) or
    /// `timeout` passes (false).
    fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            let mut pfd = libc::pollfd { fd: self.ino.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            if r <= 0 {
                continue;
            }
            let mut hit = false;
            while let Ok(events) = self.ino.read_events(&mut self.buf) {
                let mut any = false;
                for e in events {
                    any = true;
                    hit |= e.name == Some(self.name.as_os_str()) && self.wds.contains(&e.wd);
                }
                if !any {
                    break;
                }
            }
            if hit {
                return true;
            }
        }
    }
}

/// When each file of a round got its new content (time since `t0`), and whether that was
/// seen by a fallback read rather than after an event.
struct Arrival {
    at: Vec<Duration>,
    by_fallback: Vec<bool>,
}

/// Wait until every path holds `want`. On every wake-up (an event for the name in any of the
/// directories, or the fallback timer) every file not yet right is read again.
fn until_all(
    w: &mut Waiter,
    paths: &[PathBuf],
    want: &[u8],
    t0: Instant,
    limit: Duration,
) -> Result<Arrival> {
    let mut at: Vec<Option<Duration>> = vec![None; paths.len()];
    let mut by_fallback = vec![false; paths.len()];
    let mut fallback_wake = false;
    loop {
        for (i, p) in paths.iter().enumerate() {
            if at[i].is_none() && fs::read(p).ok().as_deref() == Some(want) {
                at[i] = Some(t0.elapsed());
                by_fallback[i] = fallback_wake;
            }
        }
        if at.iter().all(Option::is_some) {
            return Ok(Arrival { at: at.into_iter().flatten().collect(), by_fallback });
        }
        if t0.elapsed() > limit {
            let missing: Vec<String> = paths
                .iter()
                .zip(&at)
                .filter(|(_, a)| a.is_none())
                .map(|(p, _)| p.display().to_string())
                .collect();
            bail!("no new content within {limit:?} in {}", missing.join(", "));
        }
        fallback_wake = !w.wait(FALLBACK);
    }
}

// ---------------------------------------------------------------------------------------------
// Agent logs

/// Microseconds since the Unix epoch of an RFC 3339 UTC timestamp as tracing-subscriber
/// writes it (`2025-01-02T03:04:05.678901Z`).
fn parse_ts(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let frac6: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    let us: i64 = frac6.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + us)
}

fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// An agent's log: (us since the epoch, line), in order.
struct Log(Vec<(i64, String)>);

impl Log {
    fn read(path: &Path) -> Log {
        let text = fs::read_to_string(path).unwrap_or_default();
        let mut v: Vec<(i64, String)> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next().and_then(parse_ts).map(|t| (t, l.to_string())))
            .collect();
        v.sort_by_key(|(t, _)| *t);
        Log(v)
    }

    /// Index of the first line at or after time `t`.
    fn at(&self, t: i64) -> usize {
        self.0.partition_point(|(x, _)| *x < t)
    }

    /// The first line from index `from` on, before time `until`, that contains every needle:
    /// its index and time.
    fn find(&self, from: usize, until: i64, needles: &[&str]) -> Option<(usize, i64)> {
        self.0
            .iter()
            .enumerate()
            .skip(from)
            .take_while(|(_, (t, _))| *t < until)
            .find(|(_, (_, l))| needles.iter().all(|n| l.contains(n)))
            .map(|(i, (t, _))| (i, *t))
    }
}

/// Where the time goes, from the agents' log timestamps. At the default level (info) there
/// is one usable line on the way, A's `graph swapped`. With `MGMT_BENCH_LOG=debug` the h2
/// frames give the etcd requests: the first request A sends in a round is its export's
/// range read, the next one the transaction; B's and C's first data frame after that is the
/// watch event (their own status writes come 10 ms after their swap).
fn breakdown(starts: &[i64], arrivals: &[Vec<Duration>], logs: &[Log]) -> Vec<Row> {
    let us = |d: i64| Duration::from_micros(d.max(0) as u64);
    let (mut swapped, mut sent, mut range, mut gap, mut txn, mut watch, mut apply) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let frames = logs[0].0.iter().any(|(_, l)| l.contains("send frame=Headers"));
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(i64::MAX);
        let a = &logs[0];
        if let Some((_, t)) = a.find(a.at(s), e, &["graph swapped"]) {
            swapped.push(us(t - s));
        }
        if !frames {
            continue;
        }
        let steps = (|| {
            let (i1, t1) = a.find(a.at(s), e, &["send frame=Headers"])?;
            let (i2, t2) = a.find(i1 + 1, e, &["received frame=Headers", "END_STREAM"])?;
            let (i3, t3) = a.find(i2 + 1, e, &["send frame=Headers"])?;
            let (_, t4) = a.find(i3 + 1, e, &["received frame=Headers", "END_STREAM"])?;
            let mut w = Vec::new();
            for h in 1..logs.len() {
                let (_, tw) = logs[h].find(logs[h].at(t3), e, &["received frame=Data"])?;
                w.push((tw, s + arrivals[h][k].as_micros() as i64));
            }
            Some((t1, t2, t3, t4, w))
        })();
        let Some((t1, t2, t3, t4, w)) = steps else { continue };
        sent.push(us(t1 - s));
        range.push(us(t2 - t1));
        gap.push(us(t3 - t2));
        txn.push(us(t4 - t3));
        watch.push(us(w.iter().map(|(tw, _)| *tw).max().unwrap_or(t3) - t3));
        apply.extend(w.iter().map(|(tw, right)| us(right - tw)));
    }
    let mut rows = Vec::new();
    let mut add = |what: &str, v: &[Duration]| {
        if !v.is_empty() {
            let s = stats(v);
            println!("{what}: {}", s.line());
            rows.push(info_row(format!("{what} (n={})", s.n), s.p50_p90_p99_max()));
        }
    };
    add("log: rename -> A logs `graph swapped` (settle, read, parse, assemble, swap)", &swapped);
    add("debug log: rename -> A sends the export's range read", &sent);
    add("debug log: A's range read round trip", &range);
    add("debug log: range reply -> A sends the txn", &gap);
    add("debug log: A's txn round trip", &txn);
    add("debug log: txn sent -> watch event received by B and C (later of the two)", &watch);
    add("debug log: watch event -> that host's fA right (B and C)", &apply);
    rows
}

// ---------------------------------------------------------------------------------------------
// The baseline: a bare etcd round trip, in-process

/// Two clients of their own (as two agents are), one watching the other's key.
struct Baseline {
    rt: tokio::runtime::Runtime,
    writer: etcd_client::Client,
    watch: etcd_client::WatchStream,
    put_samples: Vec<Duration>,
    put_reply: Vec<Duration>,
    txn_samples: Vec<Duration>,
    /// `tokio::time::sleep(5 ms)`, the agent's settle delay after a graph file event.
    sleep_samples: Vec<Duration>,
}

const BASE_PREFIX: &str = "/bench-baseline/";

impl Baseline {
    fn new(url: &str) -> Result<Baseline> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (writer, watch) = rt.block_on(async {
            let writer = etcd_client::Client::connect([url], None).await?;
            let mut reader = etcd_client::Client::connect([url], None).await?;
            let opts = etcd_client::WatchOptions::new().with_prefix();
            let watch = reader.watch(BASE_PREFIX, Some(opts)).await?;
            Ok::<_, etcd_client::Error>((writer, watch))
        })?;
        Ok(Baseline {
            rt,
            writer,
            watch,
            put_samples: Vec::new(),
            put_reply: Vec::new(),
            txn_samples: Vec::new(),
            sleep_samples: Vec::new(),
        })
    }

    /// The JSON an agent stores for an exported file resource like A's (about 350 bytes).
    fn value(t: &Path, i: usize) -> Vec<u8> {
        serde_json::json!({"host": "A", "kind": "file", "name": "filea", "params": {
            "content": format!("i am fA, exported from host A, version {i}\n"),
            "force": false, "group": null,
            "meta": {"burst": 1, "delay": 0, "limit": null, "noop": false, "poll": 0, "retry": 0},
            "mode": null, "name": "filea", "owner": null, "path": format!("{}/mgmtA/fA", t.display()),
            "purge": false, "recurse": false, "source": null, "state": "exists"}})
        .to_string()
        .into_bytes()
    }

    /// One put, timed until the watch of the other client delivers it; and one "export"
    /// the way the agent does it (a range read of its prefix, then a transaction), timed the
    /// same way.
    fn round(&mut self, t: &Path, i: usize, record: bool) -> Result<()> {
        let (writer, watch) = (&mut self.writer, &mut self.watch);
        let (put, reply, txn, sleep) = self.rt.block_on(async {
            let until_seen =
                async |watch: &mut etcd_client::WatchStream, key: &str, value: &[u8]| {
                    loop {
                        let Some(resp) = watch.message().await? else { bail!("the watch stream ended") };
                        if resp.events().iter().any(|e| {
                            e.kv().is_some_and(|kv| kv.key() == key.as_bytes() && kv.value() == value)
                        }) {
                            return Ok::<Instant, anyhow::Error>(Instant::now());
                        }
                    }
                };
            let limit = Duration::from_secs(5);
            // Put -> watch.
            let key = format!("{BASE_PREFIX}put");
            let value = Baseline::value(t, i);
            let t0 = Instant::now();
            let (r, seen) = tokio::join!(
                async {
                    let r = writer.put(key.clone(), value.clone(), None).await;
                    (r, Instant::now())
                },
                tokio::time::timeout(limit, until_seen(watch, &key, &value))
            );
            r.0?;
            let put = seen.context("put: no watch event within 5 s")?? - t0;
            let reply = r.1 - t0;
            // Range read + transaction -> watch (the agent's `reconcile_exports`).
            tokio::time::sleep(Duration::from_millis(20)).await;
            let key = format!("{BASE_PREFIX}txn/filea");
            let value = Baseline::value(t, i + 1_000_000);
            let t0 = Instant::now();
            let (r, seen) = tokio::join!(
                async {
                    let opts = etcd_client::GetOptions::new().with_prefix();
                    writer.get(format!("{BASE_PREFIX}txn/"), Some(opts)).await?;
                    let op = etcd_client::TxnOp::put(key.clone(), value.clone(), None);
                    writer.txn(etcd_client::Txn::new().and_then([op])).await
                },
                tokio::time::timeout(limit, until_seen(watch, &key, &value))
            );
            r?;
            let txn = seen.context("txn: no watch event within 5 s")?? - t0;
            // The settle delay.
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, anyhow::Error>((put, reply, txn, t0.elapsed()))
        })?;
        if record {
            self.put_samples.push(put);
            self.put_reply.push(reply);
            self.txn_samples.push(txn);
            self.sleep_samples.push(sleep);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmark

fn propagation(t: &Path) -> Result<Vec<Row>> {
    let prefix = t.join("prefix");
    fs::create_dir(&prefix)?;
    for h in HOSTS {
        fs::create_dir(t.join(format!("mgmt{h}")))?;
        fs::create_dir(t.join(format!("host{h}")))?;
        fs::write(graph_path(t, h), host_yaml(t, h, 0))?;
    }
    let log_level = std::env::var("MGMT_BENCH_LOG").ok();
    let etcd = Etcd::start(t)?;

    // The agents, started together.
    let t0 = Instant::now();
    let mut agents: Vec<Proc> = Vec::new();
    for h in HOSTS {
        let mut cmd = Command::new(bin());
        if let Some(l) = &log_level {
            cmd.args(["--log-level", l]);
        }
        cmd.args(["run", "--seeds", &etcd.url, "--hostname", &h.to_string(), "--tmp-prefix", "yaml"])
            .arg(graph_path(t, h))
            .env("TMPDIR", &prefix)
            .env_remove("MGMT_LOG")
            .env_remove("MGMT_SEEDS");
        agents.push(Proc::spawn(cmd, t.join(format!("agent{h}.log")), format!("mgmt --hostname {h}"))?);
    }
    // Every host has every host's file.
    loop {
        let missing: Vec<String> = HOSTS
            .iter()
            .flat_map(|d| HOSTS.iter().map(move |f| (*d, *f)))
            .filter(|(d, f)| {
                fs::read(t.join(format!("mgmt{d}/f{f}"))).ok().as_deref() != Some(&content(*f, 0)[..])
            })
            .map(|(d, f)| format!("mgmt{d}/f{f}"))
            .collect();
        if missing.is_empty() {
            break;
        }
        for a in &mut agents {
            a.ensure_alive()?;
        }
        ensure!(t0.elapsed() < Duration::from_secs(30), "not propagated within 30 s: {}", missing.join(", "));
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("3 agents started, every host has all 3 files after {}", ms(t0.elapsed()));
    // Let the start-up settle (status writes, blocking threads).
    std::thread::sleep(Duration::from_secs(1));
    let rss_ready: Vec<u64> = agents.iter().map(|a| status_kb(a.pid(), "VmRSS:").unwrap_or(0)).collect();

    let mut base = Baseline::new(&etcd.url)?;
    println!("baseline: values of {} bytes, like A's export", Baseline::value(t, WARMUP + ITERS).len());
    let dirs: Vec<PathBuf> = HOSTS.iter().map(|h| t.join(format!("mgmt{h}"))).collect();
    let paths: Vec<PathBuf> = dirs.iter().map(|d| d.join("fA")).collect();
    let mut w = Waiter::new(&dirs, "fA")?;
    let ga = graph_path(t, 'A');

    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); HOSTS.len()];
    let mut all = Vec::new();
    let mut fallbacks = 0usize;
    let mut fallbacks_last = 0usize;
    let mut starts_us = Vec::new();
    let mut m0 = None;
    let (mut cpu0, mut cpu_etcd0) = (Vec::new(), 0);
    for i in 1..=WARMUP + ITERS {
        let record = i > WARMUP;
        if i == WARMUP + 1 {
            m0 = Some(etcd.metrics());
            cpu0 = agents.iter().map(|a| cpu_ns(a.pid())).collect();
            cpu_etcd0 = cpu_ns(etcd.process.pid());
        }
        if i % 20 == 0 {
            for a in &mut agents {
                a.ensure_alive()?;
            }
        }
        // The new version is written to the temp file first, then left alone for a while:
        // the agent's watch must not see the temp file's events inside the timed window.
        let save = AtomicSave::prepare(&ga, &host_yaml(t, 'A', i))?;
        let want = content('A', i);
        std::thread::sleep(PAUSE);
        w.drain();
        let wall = SystemTime::now();
        let t0 = Instant::now();
        save.commit()?;
        let arr = until_all(&mut w, &paths, &want, t0, ROUND_LIMIT)?;
        if record {
            starts_us.push(unix_us(wall));
            let last = (0..HOSTS.len()).max_by_key(|&k| arr.at[k]).unwrap_or(0);
            all.push(arr.at[last]);
            fallbacks += arr.by_fallback.iter().filter(|b| **b).count();
            fallbacks_last += usize::from(arr.by_fallback[last]);
            for (k, d) in arr.at.iter().enumerate() {
                samples[k].push(*d);
            }
        }
        std::thread::sleep(PAUSE);
        base.round(t, i, record)?;
    }
    let m1 = etcd.metrics();
    let cpu1: Vec<u64> = agents.iter().map(|a| cpu_ns(a.pid())).collect();
    let cpu_etcd1 = cpu_ns(etcd.process.pid());
    let m0 = m0.context("no metrics")?;

    // B's and C's own exports are still everywhere.
    for d in HOSTS {
        for f in ['B', 'C'] {
            let p = t.join(format!("mgmt{d}/f{f}"));
            ensure!(fs::read(&p)? == content(f, 0), "{} lost its content", p.display());
        }
    }
    let rss: Vec<(u64, u64)> = agents
        .iter()
        .map(|a| (status_kb(a.pid(), "VmRSS:").unwrap_or(0), status_kb(a.pid(), "VmHWM:").unwrap_or(0)))
        .collect();
    let etcd_rss = status_kb(etcd.process.pid(), "VmRSS:").unwrap_or(0);

    // Stop the agents (SIGINT, as a user would), then etcd.
    for (a, h) in agents.iter_mut().zip(HOSTS) {
        let s = a.stop(libc::SIGINT);
        if !s.is_some_and(|s| s.success()) {
            println!("WARNING: agent {h} did not stop cleanly ({s:?}); log:\n{}", a.log_tail());
        }
    }
    let logs: Vec<PathBuf> = agents.iter().map(|a| a.log.clone()).collect();
    if let Ok(keep) = std::env::var("MGMT_BENCH_KEEP_LOGS") {
        let keep = PathBuf::from(keep);
        fs::create_dir_all(&keep)?;
        for p in logs.iter().chain([&etcd.process.log]) {
            fs::copy(p, keep.join(p.file_name().context("no name")?))?;
        }
        let starts: String = starts_us.iter().map(|s| format!("{s}\n")).collect();
        fs::write(keep.join("round-starts-us.txt"), starts)?;
        println!("logs kept in {}", keep.display());
    }
    drop(etcd);

    // Report.
    let mut rows = Vec::new();
    let s_all = stats(&all);
    println!("rename -> fA right on all 3 hosts: {}", s_all.line());
    println!(
        "  ({fallbacks} of {} per-host arrivals and {fallbacks_last} of {ITERS} round ends seen by the {} fallback read)",
        ITERS * HOSTS.len(),
        ms(FALLBACK)
    );
    rows.push(row(
        format!("rename of A's graph -> fA right on A, B and C: p50/p90/p99/max (n={ITERS})"),
        s_all.p50_p90_p99_max(),
        "p99 < 20 ms",
        Some(s_all.p99 < Duration::from_millis(20)),
    ));
    for (k, h) in HOSTS.iter().enumerate() {
        let s = stats(&samples[k]);
        println!("rename -> {h}'s copy right: {}", s.line());
        let what = if *h == 'A' {
            "local apply: rename -> A's own fA right".to_string()
        } else {
            format!("rename -> {h}'s copy of fA right")
        };
        rows.push(info_row(what, s.p50_p90_p99_max()));
    }
    rows.push(info_row(
        "arrivals seen by the 1 ms fallback read (hosts, round ends)",
        format!("{fallbacks} of {}, {fallbacks_last} of {ITERS}", ITERS * HOSTS.len()),
    ));

    // The agent's settle delay, as a tokio timer makes it, and its share of the total.
    let settle = stats(&base.sleep_samples);
    println!("tokio sleep(5 ms) in the bench's runtime: {}", settle.line());
    rows.push(info_row(
        "settle: tokio sleep(5 ms) as after a graph file event; share of the p50 above",
        format!(
            "{} / {} / {} / {}; {:.0} %",
            ms(settle.p50),
            ms(settle.p90),
            ms(settle.p99),
            ms(settle.max),
            settle.p50.as_secs_f64() / s_all.p50.as_secs_f64() * 100.0
        ),
    ));

    // Where the time goes, from the agents' log timestamps.
    let logs: Vec<Log> = logs.iter().map(|p| Log::read(p)).collect();
    rows.extend(breakdown(&starts_us, &samples, &logs));

    // The baseline.
    let (bp, br, bt) = (stats(&base.put_samples), stats(&base.put_reply), stats(&base.txn_samples));
    println!("baseline put -> other client's watch: {}", bp.line());
    println!("baseline put -> put reply: {}", br.line());
    println!("baseline range + txn -> other client's watch: {}", bt.line());
    rows.push(info_row("baseline: etcd put -> watch event on another client", bp.p50_p90_p99_max()));
    rows.push(info_row(
        "baseline: etcd range read + txn put -> watch event (the agent's export)",
        bt.p50_p90_p99_max(),
    ));
    let over = |a: Duration, b: Duration| format!("{:+.1} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1e3);
    rows.push(info_row(
        "all 3 hosts minus baseline put -> watch, p50 / p99",
        format!("{} / {}", over(s_all.p50, bp.p50), over(s_all.p99, bp.p99)),
    ));

    // etcd during the measured rounds.
    let (fsyncs, fsync_ms) = m1.hist_since(&m0, "etcd_disk_wal_fsync_duration_seconds");
    let (commits, commit_ms) = m1.hist_since(&m0, "etcd_disk_backend_commit_duration_seconds");
    let proposals =
        m1.get("etcd_server_proposals_committed_total") - m0.get("etcd_server_proposals_committed_total");
    println!(
        "etcd during the measured rounds: {proposals:.0} proposals committed ({:.1} per round, 2 of them the baseline's), \
         {fsyncs:.0} WAL fsyncs (mean {fsync_ms:.2} ms), {commits:.0} backend commits (mean {commit_ms:.2} ms)",
        proposals / ITERS as f64
    );
    rows.push(info_row(
        "etcd: writes per round (agents + 2 baseline), WAL fsync mean",
        format!(
            "{:.1} ({:.1} by the agents), {fsync_ms:.2} ms",
            proposals / ITERS as f64,
            proposals / ITERS as f64 - 2.0
        ),
    ));

    // CPU and memory.
    let cpu: Vec<String> = HOSTS
        .iter()
        .enumerate()
        .map(|(k, h)| format!("{h} {:.2}", (cpu1[k].saturating_sub(cpu0[k])) as f64 / 1e6 / ITERS as f64))
        .collect();
    let cpu_etcd = cpu_etcd1.saturating_sub(cpu_etcd0) as f64 / 1e6 / ITERS as f64;
    println!(
        "CPU per round (ms, utime + stime; etcd's includes the baseline's requests): {}, etcd {cpu_etcd:.2}",
        cpu.join(", ")
    );
    rows.push(info_row(
        "CPU per round, ms (agents; etcd incl. baseline)",
        format!("{}, etcd {cpu_etcd:.2}", cpu.join(", ")),
    ));
    let mb = |kb: u64| kb as f64 / 1024.0;
    let rss_s: Vec<String> = HOSTS
        .iter()
        .enumerate()
        .map(|(k, h)| format!("{h} {:.1} ({:.1})", mb(rss[k].0), mb(rss[k].1)))
        .collect();
    println!(
        "agents' VmRSS 1 s after start-up {:?} kB; after the run (VmHWM) MB: {}; etcd {:.1} MB",
        rss_ready,
        rss_s.join(", "),
        mb(etcd_rss)
    );
    rows.push(info_row(
        "VmRSS after the run, MB (VmHWM)",
        format!("{}; etcd {:.1}", rss_s.join(", "), mb(etcd_rss)),
    ));
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Deploys: `mgmt deploy` -> every agent runs the new deploy

/// The agents' etcd namespace (the default).
const NS: &str = "/_mgmt";
/// Pause after each commit (and so before each timed deploy), so the previous round's tail
/// (status writes, etcd's background commit, git's own writes) is over.
const DEPLOY_PAUSE: Duration = Duration::from_millis(300);
/// The 3-agent deploy's latency (p50, p90), for `deploy50` to compare with when both run.
static DEPLOY3: std::sync::Mutex<Option<(Duration, Duration)>> = std::sync::Mutex::new(None);

fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(["-c", "user.name=Bench", "-c", "user.email=bench@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(repo)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null())
        .output()
        .context("running git")?;
    ensure!(out.status.success(), "git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The deployed graph: one file whose content is the version. Every agent runs this same
/// graph, as the hosts of a cluster do; here they share one file system, so the path is
/// `/proc/self/cwd/app.conf`, which each agent resolves in its own working directory
/// (`<T>/hosts/<h>/`): every agent writes a file of its own, as on separate hosts.
fn app_yaml(version: usize) -> String {
    format!(
        "graph: app\nresources:\n  file:\n  - name: conf\n    path: /proc/self/cwd/app.conf\n    \
         content: \"version {version}\\n\"\n"
    )
}

fn app_content(version: usize) -> Vec<u8> {
    format!("version {version}\n").into_bytes()
}

/// A git repository with the graph at version 0, committed on `main`.
fn init_repo(repo: &Path) -> Result<()> {
    fs::create_dir_all(repo)?;
    git(repo, &["init", "-q", "-b", "main"])?;
    fs::write(repo.join("graph.yaml"), app_yaml(0))?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "version 0"])?;
    Ok(())
}

/// `n` agents `h1`..`hn` following the cluster's deploys (`mgmt run ... empty`), each in its
/// own working directory `<t>/hosts/<h>/`.
fn spawn_deploy_agents(t: &Path, url: &str, names: &[String]) -> Result<Vec<Proc>> {
    let prefix = t.join("prefix");
    fs::create_dir_all(&prefix)?;
    let log_level = std::env::var("MGMT_BENCH_LOG").ok();
    names
        .iter()
        .map(|h| {
            let cwd = t.join("hosts").join(h);
            fs::create_dir_all(&cwd)?;
            let mut cmd = Command::new(bin());
            if let Some(l) = &log_level {
                cmd.args(["--log-level", l]);
            }
            cmd.args(["run", "--seeds", url, "--hostname", h, "--tmp-prefix", "empty"])
                .current_dir(&cwd)
                .env("TMPDIR", &prefix)
                .env_remove("MGMT_LOG")
                .env_remove("MGMT_SEEDS");
            Proc::spawn(cmd, t.join(format!("agent-{h}.log")), format!("mgmt --hostname {h}"))
        })
        .collect()
}

fn host_file(t: &Path, h: &str) -> PathBuf {
    t.join("hosts").join(h).join("app.conf")
}

/// What the bench last saw of a host's `hosts/<h>` key.
#[derive(Clone, Copy, Default, Debug)]
struct HostSeen {
    deploy: Option<u64>,
    converged: bool,
}

/// The bench's own view of the cluster: one etcd client (in a current-thread runtime) that
/// watches `hosts/` (every agent's status JSON: `"deploy": N`, `"converged": true`) and
/// `deploy/latest`. Watch events are pushed by etcd: nothing polls.
struct ClusterWatch {
    rt: tokio::runtime::Runtime,
    _client: etcd_client::Client,
    stream: etcd_client::WatchStream,
    hosts: std::collections::HashMap<String, HostSeen>,
    latest: Option<u64>,
}

impl ClusterWatch {
    fn new(url: &str) -> Result<ClusterWatch> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (client, stream) = rt.block_on(async {
            let mut c = etcd_client::Client::connect([url], None).await?;
            let opts = etcd_client::WatchOptions::new().with_prefix();
            let mut s = c.watch(format!("{NS}/hosts/"), Some(opts)).await?;
            s.watch(format!("{NS}/deploy/latest"), None).await?;
            // Both watches exist before anything is started.
            let mut created = 0;
            while created < 2 {
                let m = tokio::time::timeout(Duration::from_secs(5), s.message())
                    .await
                    .context("no watch created within 5 s")??
                    .context("the watch stream ended")?;
                created += usize::from(m.created());
            }
            anyhow::Ok((c, s))
        })?;
        Ok(ClusterWatch { rt, _client: client, stream, hosts: Default::default(), latest: None })
    }

    /// Follow the watch until `done` holds.
    fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&std::collections::HashMap<String, HostSeen>) -> bool,
    ) -> Result<()> {
        let ClusterWatch { rt, stream, hosts, latest, .. } = self;
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + limit;
            while !done(hosts) {
                let m = tokio::time::timeout_at(deadline, stream.message())
                    .await
                    .map_err(|_| anyhow::anyhow!("{what}: not within {limit:?}"))??
                    .context("the watch stream ended")?;
                apply_events(&m, hosts, latest);
            }
            Ok(())
        })
    }
}

fn apply_events(
    resp: &etcd_client::WatchResponse,
    hosts: &mut std::collections::HashMap<String, HostSeen>,
    latest: &mut Option<u64>,
) {
    let host_prefix = format!("{NS}/hosts/");
    let latest_key = format!("{NS}/deploy/latest");
    for e in resp.events() {
        let Some(kv) = e.kv() else { continue };
        let key = String::from_utf8_lossy(kv.key());
        let put = e.event_type() == etcd_client::EventType::Put;
        if key == latest_key {
            if put {
                *latest = String::from_utf8_lossy(kv.value()).trim().parse().ok();
            }
        } else if let Some(h) = key.strip_prefix(&host_prefix) {
            if !put {
                hosts.remove(h);
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
            let seen =
                HostSeen { deploy: v["deploy"].as_u64(), converged: v["converged"].as_bool() == Some(true) };
            hosts.insert(h.to_string(), seen);
        }
    }
}

/// One timed deploy.
struct DeployRound {
    /// Wall clock just before the spawn of `mgmt deploy` (to match the agents' log lines).
    wall: SystemTime,
    /// Spawn of `mgmt deploy` -> its exit.
    command: Duration,
    stdout: String,
    stderr: String,
    /// Spawn -> the bench's watch sees `deploy/latest` = the new ID.
    published: Duration,
    /// Per host: spawn -> the first status naming the new deploy (converged or not).
    named: Vec<Duration>,
    /// Per host: spawn -> a status naming the new deploy with `"converged": true`; `None` for
    /// a host that got stuck (see `STUCK_GRACE`).
    converged: Vec<Option<Duration>>,
    /// Hosts whose file did not have the new content yet when their status said converged.
    early: usize,
    /// Hosts (indices) whose status named the new deploy, and whose file had the new content,
    /// but whose status still said `"converged": false` `STUCK_GRACE` after the command exited.
    stuck: Vec<usize>,
}

/// How long a host may stay at "deploy N, not converged" while its file is right and nothing
/// else is pending, before the round counts it as stuck (a status that never became true)
/// instead of waiting for it.
const STUCK_GRACE: Duration = Duration::from_secs(3);

impl DeployRound {
    /// Spawn -> the last host converged; `None` if a host got stuck.
    fn all(&self) -> Option<Duration> {
        self.converged.iter().copied().collect::<Option<Vec<_>>>()?.into_iter().max()
    }
    fn first(&self) -> Duration {
        self.converged.iter().flatten().min().copied().unwrap_or_default()
    }
}

/// Run `mgmt deploy --seeds URL yaml graph.yaml` in `repo` and follow the cluster until every
/// host in `names` reports deploy `id` converged, and the command has exited.
#[allow(clippy::too_many_arguments)]
fn deploy_round(
    w: &mut ClusterWatch,
    url: &str,
    repo: &Path,
    names: &[String],
    files: &[PathBuf],
    want: &[u8],
    id: u64,
    limit: Duration,
) -> Result<DeployRound> {
    let ClusterWatch { rt, stream, hosts, latest, .. } = w;
    let r = rt.block_on(async {
        let wall = SystemTime::now();
        let t0 = Instant::now();
        let child = tokio::process::Command::new(bin())
            .args(["deploy", "--seeds", url, "yaml", "graph.yaml"])
            .current_dir(repo)
            .env_remove("MGMT_LOG")
            .env_remove("MGMT_SEEDS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting mgmt deploy")?;
        let mut cmd = std::pin::pin!(async move {
            let out = child.wait_with_output().await;
            (out, t0.elapsed())
        });
        let mut done: Option<(std::process::Output, Duration)> = None;
        let mut published = None;
        let mut named: Vec<Option<Duration>> = vec![None; names.len()];
        let mut converged: Vec<Option<Duration>> = vec![None; names.len()];
        let mut early = 0;
        let deadline = tokio::time::Instant::now() + limit;
        let mut stuck_since: Option<tokio::time::Instant> = None;
        let mut stuck = Vec::new();
        while done.is_none() || converged.iter().any(Option::is_none) {
            // Everything that is still missing is a status flag whose file is right already?
            let quiet = done.is_some()
                && names.iter().enumerate().filter(|(k, _)| converged[*k].is_none()).all(|(k, _)| {
                    named[k].is_some() && fs::read(&files[k]).ok().as_deref() == Some(want)
                });
            if !quiet {
                stuck_since = None;
            } else if stuck_since.is_none() {
                stuck_since = Some(tokio::time::Instant::now());
            }
            let stuck_at = stuck_since.map(|s| s + STUCK_GRACE);
            tokio::select! {
                r = &mut cmd, if done.is_none() => {
                    let (out, took) = r;
                    let out = out.context("waiting for mgmt deploy")?;
                    ensure!(
                        out.status.success(),
                        "mgmt deploy failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    done = Some((out, took));
                }
                m = stream.message() => {
                    let now = t0.elapsed();
                    let m = m?.context("the watch stream ended")?;
                    apply_events(&m, hosts, latest);
                    if published.is_none() && *latest == Some(id) {
                        published = Some(now);
                    }
                    for (k, h) in names.iter().enumerate() {
                        let s = hosts.get(h).copied().unwrap_or_default();
                        if s.deploy != Some(id) {
                            continue;
                        }
                        named[k].get_or_insert(now);
                        if s.converged && converged[k].is_none() {
                            converged[k] = Some(now);
                            if fs::read(&files[k]).ok().as_deref() != Some(want) {
                                early += 1;
                            }
                        }
                    }
                }
                _ = async { tokio::time::sleep_until(stuck_at.unwrap_or(deadline)).await }, if stuck_at.is_some() => {
                    stuck = (0..names.len()).filter(|k| converged[*k].is_none()).collect();
                    break;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let missing: Vec<String> = names
                        .iter()
                        .zip(&converged)
                        .filter(|(_, c)| c.is_none())
                        .map(|(h, _)| format!("{h} ({:?})", hosts.get(h)))
                        .collect();
                    bail!(
                        "deploy {id}: within {limit:?}, mgmt deploy {}; not converged on it: {}",
                        if done.is_some() { "exited" } else { "did not exit" },
                        missing.join(", ")
                    );
                }
            }
        }
        let (out, command) = done.context("no exit")?;
        Ok(DeployRound {
            wall,
            command,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            published: published.context("deploy/latest was not seen")?,
            named: named.into_iter().map(Option::unwrap_or_default).collect(),
            converged,
            early,
            stuck,
        })
    })?;
    let said = r.stdout.lines().next().unwrap_or("");
    ensure!(said == format!("deploy {id}"), "expected deploy {id}, mgmt deploy said `{said}`");
    Ok(r)
}

fn ms_or_stuck(d: Option<Duration>) -> String {
    d.map(ms).unwrap_or_else(|| "never (a host stuck)".into())
}

/// Say which hosts got stuck, with their log lines about this deploy.
fn report_stuck(r: &DeployRound, id: u64, agents: &[Proc], names: &[String]) {
    for &k in r.stuck.iter().take(3) {
        let log = fs::read_to_string(&agents[k].log).unwrap_or_default();
        let from = log.find(&format!("deploy {id}: fetching")).unwrap_or(log.len());
        let lines: Vec<&str> = log[from..].lines().take(6).collect();
        println!(
            "WARNING: {} ran deploy {id} and its file is right, but its status still says \
             `converged: false` {STUCK_GRACE:?} later; its log from the deploy on:\n  {}",
            names[k],
            lines.join("\n  ")
        );
    }
}

/// `mgmt: deployed N files (X new blobs, Y already stored) as deploy I` -> (N, X, Y).
fn deployed_counts(stderr: &str) -> Option<(u64, u64, u64)> {
    let l = stderr.lines().find_map(|l| l.strip_prefix("mgmt: deployed "))?;
    let nums: Vec<u64> = l
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (nums.len() >= 3).then(|| (nums[0], nums[1], nums[2]))
}

/// Milestones of each agent in each round, from its log (info level): the lines
/// `deploy N: fetching bundle` (after the watch event and the record read),
/// `running deploy N (` (bundle fetched, verified, unpacked, parsed, swapped in) and
/// `file[conf]: ...` (the file written), as offsets from the round's start.
#[derive(Default)]
struct Milestones {
    fetching: Vec<Duration>,
    running: Vec<Duration>,
    file: Vec<Duration>,
    /// Step durations, per agent and round.
    published_to_fetching: Vec<Duration>,
    fetching_to_running: Vec<Duration>,
    running_to_file: Vec<Duration>,
    file_to_status: Vec<Duration>,
}

fn milestones(rounds: &[(u64, DeployRound)], logs: &[Log]) -> Milestones {
    let mut m = Milestones::default();
    let us = |d: i64| Duration::from_micros(d.max(0) as u64);
    for (k, (id, r)) in rounds.iter().enumerate() {
        let s = unix_us(r.wall);
        let e = rounds.get(k + 1).map(|(_, n)| unix_us(n.wall)).unwrap_or(i64::MAX);
        for (h, log) in logs.iter().enumerate() {
            let Some((i1, t1)) = log.find(log.at(s), e, &[&format!("deploy {id}: fetching bundle")]) else {
                continue;
            };
            let Some((_, t2)) = log.find(i1, e, &[&format!("running deploy {id} (")]) else { continue };
            let file = log.find(i1, e, &["file[conf]: "]).map(|(_, t)| t);
            m.fetching.push(us(t1 - s));
            m.running.push(us(t2 - s));
            m.published_to_fetching.push(us(t1 - s - r.published.as_micros() as i64));
            m.fetching_to_running.push(us(t2 - t1));
            if let Some(t3) = file {
                m.file.push(us(t3 - s));
                m.running_to_file.push(us(t3 - t2));
                if let Some(c) = r.converged[h] {
                    m.file_to_status.push(us(s + c.as_micros() as i64 - t3));
                }
            }
        }
    }
    m
}

/// Wall time of `mgmt ARGS` in `cwd`, `n` times (50 ms apart); `check` judges each run.
fn time_mgmt(
    cwd: &Path,
    args: &[&str],
    n: usize,
    check: impl Fn(&std::process::Output) -> Result<()>,
) -> Result<Vec<Duration>> {
    let mut v = Vec::new();
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        let out = Command::new(bin())
            .args(args)
            .current_dir(cwd)
            .env_remove("MGMT_LOG")
            .env_remove("MGMT_SEEDS")
            .stdin(Stdio::null())
            .output()?;
        v.push(t0.elapsed());
        check(&out).with_context(|| format!("mgmt {}", args.join(" ")))?;
    }
    Ok(v)
}

/// Sum of the CPU time of processes, in ns.
fn cpu_all(ps: &[Proc]) -> u64 {
    ps.iter().map(|p| cpu_ns(p.pid())).sum()
}

/// Stop the agents (SIGINT, as a user would); keep their logs if asked.
fn stop_agents(agents: &mut [Proc], etcd: &Etcd, bench: &str) -> Result<()> {
    for a in agents.iter_mut() {
        let s = a.stop(libc::SIGINT);
        if !s.is_some_and(|s| s.success()) {
            println!("WARNING: {} did not stop cleanly ({s:?}); log:\n{}", a.what, a.log_tail());
        }
    }
    if let Ok(keep) = std::env::var("MGMT_BENCH_KEEP_LOGS") {
        let keep = PathBuf::from(keep).join(bench);
        fs::create_dir_all(&keep)?;
        for p in agents.iter().map(|a| &a.log).chain([&etcd.process.log]) {
            fs::copy(p, keep.join(p.file_name().context("no name")?))?;
        }
        println!("logs kept in {}", keep.display());
    }
    Ok(())
}

/// A round failed: say why as well as possible (a dead agent, or the logs of the agents that
/// did not converge) and keep the logs if asked.
fn round_failed(
    e: anyhow::Error,
    agents: &mut [Proc],
    names: &[String],
    etcd: &Etcd,
    bench: &str,
) -> anyhow::Error {
    for a in agents.iter_mut() {
        if let Err(dead) = a.ensure_alive() {
            return dead.context(e);
        }
    }
    let msg = format!("{e:#}");
    for (a, h) in agents.iter().zip(names).filter(|(_, h)| msg.contains(&format!(" {h} ("))).take(3) {
        println!("log of {h} (last lines):\n{}", a.log_tail());
    }
    if let Ok(keep) = std::env::var("MGMT_BENCH_KEEP_LOGS") {
        let keep = PathBuf::from(keep).join(bench);
        let _ = fs::create_dir_all(&keep);
        for p in agents.iter().map(|a| &a.log).chain([&etcd.process.log]) {
            if let Some(name) = p.file_name() {
                let _ = fs::copy(p, keep.join(name));
            }
        }
        println!("logs kept in {}", keep.display());
    }
    e
}

fn deploy3(t: &Path) -> Result<Vec<Row>> {
    deploy_cluster(t, "deploy", 3, 5, 30)
}

fn deploy50(t: &Path) -> Result<Vec<Row>> {
    deploy_cluster(t, "deploy50", 50, 3, 10)
}

/// `n` agents follow the deploys of a one-file graph; each round commits a new version and
/// times `mgmt deploy` until every agent reports it converged.
fn deploy_cluster(t: &Path, bench: &'static str, n: usize, warmup: usize, iters: usize) -> Result<Vec<Row>> {
    let names: Vec<String> = (1..=n).map(|i| format!("h{i}")).collect();
    let files: Vec<PathBuf> = names.iter().map(|h| host_file(t, h)).collect();
    let repo = t.join("repo");
    init_repo(&repo)?;
    let etcd = Etcd::start(t)?;
    let mut w = ClusterWatch::new(&etcd.url)?;
    let limit = Duration::from_secs(if n > 10 { 60 } else { 30 });

    let t0 = Instant::now();
    let mut agents = spawn_deploy_agents(t, &etcd.url, &names)?;
    let registered =
        w.wait("agents registered", Duration::from_secs(60), |s| names.iter().all(|h| s.contains_key(h)));
    if let Err(e) = registered {
        for a in &mut agents {
            a.ensure_alive()?;
        }
        return Err(e);
    }
    println!("{n} agents started, all registered in etcd after {}", ms(t0.elapsed()));
    let first = deploy_round(&mut w, &etcd.url, &repo, &names, &files, &app_content(0), 1, limit)
        .map_err(|e| round_failed(e, &mut agents, &names, &etcd, bench))?;
    println!(
        "deploy 1 (version 0, every agent's first): mgmt deploy {}, all {n} converged on it after {}",
        ms(first.command),
        ms_or_stuck(first.all())
    );
    std::thread::sleep(Duration::from_secs(1));

    let mut rounds: Vec<(u64, DeployRound)> = Vec::new();
    let (mut cpu0, mut cpu_etcd0, mut m0) = (0, 0, None);
    for i in 1..=warmup + iters {
        let record = i > warmup;
        fs::write(repo.join("graph.yaml"), app_yaml(i))?;
        git(&repo, &["commit", "-q", "-a", "-m", &format!("version {i}")])?;
        std::thread::sleep(DEPLOY_PAUSE);
        if i == warmup + 1 {
            cpu0 = cpu_all(&agents);
            cpu_etcd0 = cpu_ns(etcd.process.pid());
            m0 = Some(etcd.metrics());
        }
        let id = i as u64 + 1;
        let r = deploy_round(&mut w, &etcd.url, &repo, &names, &files, &app_content(i), id, limit)
            .map_err(|e| round_failed(e, &mut agents, &names, &etcd, bench))?;
        println!(
            "{} deploy {id}: mgmt deploy {}, published {}, first host converged {}, all {n} {}",
            if record { "round" } else { "warm-up" },
            ms(r.command),
            ms(r.published),
            ms(r.first()),
            ms_or_stuck(r.all()),
        );
        if !r.stuck.is_empty() {
            report_stuck(&r, id, &agents, &names);
        }
        if record {
            rounds.push((id, r));
        }
    }
    let cpu1 = cpu_all(&agents);
    let cpu_etcd1 = cpu_ns(etcd.process.pid());
    let m1 = etcd.metrics();
    let m0 = m0.context("no metrics")?;
    let rss: Vec<(u64, u64)> = agents
        .iter()
        .map(|a| (status_kb(a.pid(), "VmRSS:").unwrap_or(0), status_kb(a.pid(), "VmHWM:").unwrap_or(0)))
        .collect();
    let threads: Vec<u64> = agents.iter().map(|a| status_kb(a.pid(), "Threads:").unwrap_or(0)).collect();
    let etcd_rss = status_kb(etcd.process.pid(), "VmRSS:").unwrap_or(0);
    let deploys_dirs = fs::read_dir(t.join("prefix"))
        .map(|rd| {
            rd.flatten().filter_map(|e| fs::read_dir(e.path().join("deploys")).ok()).map(|d| d.count()).max()
        })
        .ok()
        .flatten()
        .unwrap_or(0);

    // Baselines of the command alone (3 agents only): the process, and the process with
    // etcd round trips but nothing written.
    let mut base: Vec<(String, Stats)> = Vec::new();
    if n <= 3 {
        for (what, args) in [
            ("`mgmt --version` (process start and exit)", vec!["--version"]),
            (
                "`mgmt deploy list` (+ connect, status, one range read)",
                vec!["deploy", "--seeds", &etcd.url, "list"],
            ),
            (
                "`mgmt deploy yaml graph.yaml`, nothing new (+ git, blob checks, no write)",
                vec!["deploy", "--seeds", &etcd.url, "yaml", "graph.yaml"],
            ),
        ] {
            let s = stats(&time_mgmt(&repo, &args, 10, |out| {
                ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                Ok(())
            })?);
            println!("{what}: {}", s.line());
            base.push((what.to_string(), s));
        }
    }

    // Nothing went wrong on the way?
    for a in &mut agents {
        a.ensure_alive()?;
    }
    for (f, h) in files.iter().zip(&names) {
        ensure!(fs::read(f)? == app_content(warmup + iters), "{h}'s file does not have the last version");
    }
    stop_agents(&mut agents, &etcd, bench)?;
    let logs: Vec<Log> = agents.iter().map(|a| Log::read(&a.log)).collect();
    drop(etcd);

    // Report.
    let all: Vec<Duration> = rounds.iter().filter_map(|(_, r)| r.all()).collect();
    ensure!(!all.is_empty(), "a host got stuck in every round");
    let s_all = stats(&all);
    let stuck_rounds = rounds.iter().filter(|(_, r)| !r.stuck.is_empty()).count();
    let names_ref = &names;
    let stuck_hosts: Vec<String> = rounds
        .iter()
        .flat_map(|(id, r)| r.stuck.iter().map(move |k| format!("{} in deploy {id}", names_ref[*k])))
        .collect();
    let s_cmd = stats(&rounds.iter().map(|(_, r)| r.command).collect::<Vec<_>>());
    let s_pub = stats(&rounds.iter().map(|(_, r)| r.published).collect::<Vec<_>>());
    let s_first = stats(&rounds.iter().map(|(_, r)| r.first()).collect::<Vec<_>>());
    let per_host: Vec<Duration> =
        rounds.iter().flat_map(|(_, r)| r.converged.iter().flatten().copied()).collect();
    let s_host = stats(&per_host);
    let early: usize = rounds.iter().map(|(_, r)| r.early).sum();
    let two_writes: usize = rounds
        .iter()
        .map(|(_, r)| r.named.iter().zip(&r.converged).filter(|(a, b)| b.is_some_and(|b| **a < b)).count())
        .sum();
    println!("mgmt deploy start -> all {n} hosts converged on it: {}", s_all.line());
    println!("mgmt deploy start -> its exit: {}", s_cmd.line());
    let mut rows = Vec::new();
    let target = Duration::from_millis(250);
    rows.push(bench_row(
        bench,
        format!("`mgmt deploy` start -> all {n} hosts report it converged: p50/p90/max (n={})", all.len()),
        s_all.p50_p90_max(),
        "< 0.25 s",
        Some(s_all.max < target),
    ));
    rows.push(bench_row(
        bench,
        format!("rounds with a host stuck at `converged: false` (file right, {STUCK_GRACE:?} after)"),
        if stuck_hosts.is_empty() {
            format!("0 of {iters}")
        } else {
            format!("{stuck_rounds} of {iters} ({})", stuck_hosts.join(", "))
        },
        "0",
        Some(stuck_rounds == 0),
    ));
    if n > 3
        && let Some((p50, p90)) = *DEPLOY3.lock().unwrap_or_else(|e| e.into_inner())
    {
        rows.push(bench_row(
            bench,
            "the same with 3 agents (this run): p50 / p90; growth of the p50",
            format!("{} / {}; x{:.1}", ms(p50), ms(p90), s_all.p50.as_secs_f64() / p50.as_secs_f64()),
            "",
            None,
        ));
    }
    if n <= 3 {
        *DEPLOY3.lock().unwrap_or_else(|e| e.into_inner()) = Some((s_all.p50, s_all.p90));
    }
    rows.push(bench_row(bench, "`mgmt deploy` start -> its exit (wall time)", s_cmd.p50_p90_max(), "", None));
    rows.push(bench_row(
        bench,
        "`mgmt deploy` start -> bench's watch sees deploy/latest",
        s_pub.p50_p90_max(),
        "",
        None,
    ));
    rows.push(bench_row(bench, "start -> first host converged", s_first.p50_p90_max(), "", None));
    rows.push(bench_row(
        bench,
        format!("start -> a host converged (each of {n} hosts, n={})", per_host.len()),
        s_host.p50_p90_max(),
        "",
        None,
    ));
    // Where the time goes, from the agents' logs.
    let m = milestones(&rounds, &logs);
    let mut add = |what: &str, v: &[Duration]| {
        if !v.is_empty() {
            let s = stats(v);
            println!("{what}: {}", s.line());
            rows.push(bench_row(bench, format!("{what} (n={})", s.n), s.p50_p90_max(), "", None));
        }
    };
    add("log: start -> agent logs `deploy N: fetching bundle`", &m.fetching);
    add("log: start -> agent logs `running deploy N`", &m.running);
    add("log: start -> agent logs its file written", &m.file);
    add(
        "step: deploy/latest published -> `fetching bundle` (watch event, record read)",
        &m.published_to_fetching,
    );
    add(
        "step: `fetching bundle` -> `running deploy` (fetch, verify, unpack, parse, swap)",
        &m.fetching_to_running,
    );
    add("step: `running deploy` -> file written", &m.running_to_file);
    add("step: file written -> its converged status seen by the bench", &m.file_to_status);
    for (what, s) in &base {
        rows.push(bench_row(bench, format!("baseline: {what}"), s.p50_p90_max(), "", None));
    }
    rows.push(bench_row(
        bench,
        "statuses naming the new deploy before its converged one; converged before the file was right",
        format!("{two_writes} of {}; {early}", per_host.len()),
        "",
        None,
    ));
    let proposals =
        m1.get("etcd_server_proposals_committed_total") - m0.get("etcd_server_proposals_committed_total");
    let (_, fsync_ms) = m1.hist_since(&m0, "etcd_disk_wal_fsync_duration_seconds");
    rows.push(bench_row(
        bench,
        "etcd: writes per deploy, WAL fsync mean",
        format!("{:.1}, {fsync_ms:.2} ms", proposals / iters as f64),
        "",
        None,
    ));
    let cpu_agents = cpu1.saturating_sub(cpu0) as f64 / 1e6 / iters as f64;
    let cpu_etcd = cpu_etcd1.saturating_sub(cpu_etcd0) as f64 / 1e6 / iters as f64;
    rows.push(bench_row(
        bench,
        "CPU per deploy, ms (all agents together; etcd)",
        format!("{cpu_agents:.1} ({:.2} per agent); etcd {cpu_etcd:.1}", cpu_agents / n as f64),
        "",
        None,
    ));
    let mb = |kb: u64| kb as f64 / 1024.0;
    let mut r_sorted: Vec<u64> = rss.iter().map(|r| r.0).collect();
    r_sorted.sort();
    let hwm_max = rss.iter().map(|r| r.1).max().unwrap_or(0);
    rows.push(bench_row(
        bench,
        "VmRSS after the run, MB: h1 (VmHWM); median, max of all agents; etcd",
        format!(
            "{:.1} ({:.1}); {:.1}, {:.1} (VmHWM max {:.1}); etcd {:.1}",
            mb(rss[0].0),
            mb(rss[0].1),
            mb(r_sorted[r_sorted.len() / 2]),
            mb(*r_sorted.last().unwrap_or(&0)),
            mb(hwm_max),
            mb(etcd_rss)
        ),
        "",
        None,
    ));
    println!(
        "threads per agent: {:?}; unpacked bundles kept in one agent's prefix: {deploys_dirs}",
        threads.iter().take(5).collect::<Vec<_>>()
    );
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// bigtree: a deploy of 1,000 (10,000) files, cold and deduplicated

/// A big-tree benchmark: `dirs` directories of 100 files, `cold` deploys with every blob new,
/// then `dedup` deploys with one file changed; the targets apply to `bigtree` (1,000 files).
struct BigTree {
    bench: &'static str,
    dirs: usize,
    cold: usize,
    dedup: usize,
    targets: bool,
}

const BIG_FILES_PER_DIR: usize = 100;
/// Targets of `bigtree`: the command's wall time cold and with one file changed, and
/// `deploy/latest` published -> the agent converged, with one file changed.
const BIG_COLD_TARGET: Duration = Duration::from_millis(200);
const BIG_DEDUP_TARGET: Duration = Duration::from_millis(50);
const BIG_CONVERGED_TARGET: Duration = Duration::from_millis(100);

fn big_file(d: usize, f: usize, tree: usize, edit: usize) -> String {
    let mut s = format!("# d{d}/f{f:03}.txt, tree {tree}, edit {edit}\n");
    for k in 0..5 {
        s.push_str(&format!("setting_{k} = some value of a typical configuration line {k}\n"));
    }
    s
}

/// Write every file of the big tree (`tree` makes every content new) and the graph.
fn write_big_tree(repo: &Path, dirs: usize, tree: usize) -> Result<()> {
    for d in 0..dirs {
        let dir = repo.join(format!("d{d}"));
        fs::create_dir_all(&dir)?;
        for f in 0..BIG_FILES_PER_DIR {
            fs::write(dir.join(format!("f{f:03}.txt")), big_file(d, f, tree, 0))?;
        }
    }
    fs::write(repo.join("graph.yaml"), app_yaml(tree))?;
    Ok(())
}

fn bigtree(t: &Path) -> Result<Vec<Row>> {
    big_tree(t, &BigTree { bench: "bigtree", dirs: 10, cold: 3, dedup: 5, targets: true })
}

fn bigtree10k(t: &Path) -> Result<Vec<Row>> {
    big_tree(t, &BigTree { bench: "bigtree10k", dirs: 100, cold: 2, dedup: 3, targets: false })
}

fn big_tree(t: &Path, b: &BigTree) -> Result<Vec<Row>> {
    let (bench, big_cold, big_dedup) = (b.bench, b.cold, b.dedup);
    let repo = t.join("repo");
    fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    let names = vec!["h1".to_string()];
    let files = vec![host_file(t, "h1")];
    let etcd = Etcd::start(t)?;
    let mut w = ClusterWatch::new(&etcd.url)?;
    let mut agents = spawn_deploy_agents(t, &etcd.url, &names)?;
    let registered = w.wait("agent registered", Duration::from_secs(30), |s| s.contains_key("h1"));
    if let Err(e) = registered {
        agents[0].ensure_alive()?;
        return Err(e);
    }
    let limit = Duration::from_secs(300);
    let n_files = b.dirs * BIG_FILES_PER_DIR;
    let mut cold: Vec<(u64, DeployRound)> = Vec::new();
    let mut dedup: Vec<(u64, DeployRound)> = Vec::new();
    let mut counts: Vec<(u64, u64, u64)> = Vec::new();
    for r in 0..big_cold + big_dedup {
        let id = r as u64 + 1;
        let is_cold = r < big_cold;
        let version = if is_cold { r } else { big_cold - 1 };
        if is_cold {
            write_big_tree(&repo, b.dirs, r)?;
            git(&repo, &["add", "-A"])?;
            git(&repo, &["commit", "-q", "-m", &format!("tree {r}")])?;
        } else {
            let p = repo.join("d3/f042.txt");
            fs::write(&p, big_file(3, 42, big_cold - 1, r))?;
            git(&repo, &["commit", "-q", "-a", "-m", &format!("edit {r}")])?;
        }
        std::thread::sleep(Duration::from_secs(1));
        let round = deploy_round(&mut w, &etcd.url, &repo, &names, &files, &app_content(version), id, limit)
            .map_err(|e| round_failed(e, &mut agents, &names, &etcd, bench))?;
        let c = deployed_counts(&round.stderr).with_context(|| format!("no summary in: {}", round.stderr))?;
        println!(
            "{} deploy {id}: mgmt deploy {} ({} files, {} new blobs, {} already stored), published {}, agent converged {}",
            if is_cold { "cold" } else { "1 file changed:" },
            ms(round.command),
            c.0,
            c.1,
            c.2,
            ms(round.published),
            ms_or_stuck(round.all())
        );
        if !round.stuck.is_empty() {
            report_stuck(&round, id, &agents, &names);
        }
        counts.push(c);
        if is_cold {
            cold.push((id, round));
        } else {
            dedup.push((id, round));
        }
    }
    // The same commit again: git, every blob checked, nothing written.
    let again = time_mgmt(&repo, &["deploy", "--seeds", &etcd.url, "yaml", "graph.yaml"], 3, |out| {
        let said = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success() && said.starts_with("nothing new"), "{said}");
        Ok(())
    })?;
    // The bundle built from git alone: the command stops at the first etcd request, on a port
    // nothing listens on (connection refused at once).
    let dead = format!("http://127.0.0.1:{}", free_ports(1)?[0]);
    let build = time_mgmt(&repo, &["deploy", "--seeds", &dead, "yaml", "graph.yaml"], 3, |out| {
        let said = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success() && said.contains("cannot reach etcd"), "{said}");
        Ok(())
    })?;
    let rss = status_kb(agents[0].pid(), "VmRSS:").unwrap_or(0);
    let hwm = status_kb(agents[0].pid(), "VmHWM:").unwrap_or(0);
    stop_agents(&mut agents, &etcd, bench)?;
    let logs: Vec<Log> = agents.iter().map(|a| Log::read(&a.log)).collect();
    drop(etcd);

    let mut rows = Vec::new();
    let range = |v: &[Duration]| {
        let s = stats(v);
        format!("{} ({}..{})", ms(s.p50), ms(s.min), ms(s.max))
    };
    let blobs = |c: &[(u64, u64, u64)]| {
        let mut v: Vec<String> = c.iter().map(|(_, n, _)| n.to_string()).collect();
        v.dedup();
        let stored: Vec<String> = c.iter().map(|(_, _, s)| s.to_string()).collect::<Vec<_>>();
        format!("{} new, {} already stored", v.join("/"), stored.first().cloned().unwrap_or_default())
    };
    let targets = |cmd: Duration, conv: Option<Duration>| b.targets.then_some((cmd, conv));
    for (what, set, c, target) in [
        (
            format!("cold: {} files, every blob new", n_files + 1),
            &cold,
            &counts[..big_cold],
            targets(BIG_COLD_TARGET, None),
        ),
        (
            "1 file changed: the rest deduplicated".to_string(),
            &dedup,
            &counts[big_cold..],
            targets(BIG_DEDUP_TARGET, Some(BIG_CONVERGED_TARGET)),
        ),
    ] {
        let cmd: Vec<Duration> = set.iter().map(|(_, r)| r.command).collect();
        let pubd: Vec<Duration> = set.iter().map(|(_, r)| r.published).collect();
        let conv: Vec<Duration> = set.iter().filter_map(|(_, r)| r.all()).collect();
        let stuck = set.iter().filter(|(_, r)| !r.stuck.is_empty()).count();
        if stuck > 0 {
            rows.push(bench_row(
                bench,
                format!("{what}: rounds where the agent's status stuck at `converged: false`"),
                format!("{stuck} of {}", set.len()),
                "0",
                Some(false),
            ));
        }
        let m = milestones(set, &logs);
        let (cmd_target, cmd_ok) = match target {
            Some((t, _)) => {
                (if t == BIG_COLD_TARGET { "< 0.2 s" } else { "< 50 ms" }, Some(stats(&cmd).p50 < t))
            }
            None => ("", None),
        };
        rows.push(bench_row(
            bench,
            format!("{what}: `mgmt deploy` wall time, median (min..max of {})", set.len()),
            range(&cmd),
            cmd_target,
            cmd_ok,
        ));
        rows.push(bench_row(bench, format!("{what}: blobs the command reported"), blobs(c), "", None));
        let after: Vec<Duration> = set.iter().map(|(_, r)| r.command.saturating_sub(r.published)).collect();
        rows.push(bench_row(
            bench,
            format!("{what}: start -> deploy/latest published"),
            range(&pubd),
            "",
            None,
        ));
        rows.push(bench_row(
            bench,
            format!("{what}: published -> command exit (retention when over --keep)"),
            range(&after),
            "",
            None,
        ));
        rows.push(bench_row(
            bench,
            format!("{what}: start -> 1 agent converged on it"),
            range(&conv),
            "",
            None,
        ));
        let pub_conv: Vec<Duration> =
            set.iter().filter_map(|(_, r)| Some(r.all()?.saturating_sub(r.published))).collect();
        let (conv_target, conv_ok) = match target.and_then(|t| t.1) {
            Some(t) if !pub_conv.is_empty() => ("< 100 ms", Some(stats(&pub_conv).p50 < t)),
            _ => ("", None),
        };
        if !pub_conv.is_empty() {
            rows.push(bench_row(
                bench,
                format!("{what}: deploy/latest published -> 1 agent converged on it"),
                range(&pub_conv),
                conv_target,
                conv_ok,
            ));
        }
        if !m.fetching_to_running.is_empty() {
            rows.push(bench_row(
                bench,
                format!("{what}: agent `fetching bundle` -> `running deploy` (fetch, verify, unpack)"),
                range(&m.fetching_to_running),
                "",
                None,
            ));
        }
    }
    rows.push(bench_row(
        bench,
        "baseline: the same commit again (`nothing new`: git, every blob checked, no write)",
        range(&again),
        "",
        None,
    ));
    rows.push(bench_row(
        bench,
        "baseline: process + bundle built from git (etcd refuses the connection)",
        range(&build),
        "",
        None,
    ));
    let mb = |kb: u64| kb as f64 / 1024.0;
    rows.push(bench_row(
        bench,
        "agent VmRSS after the run, MB (VmHWM)",
        format!("{:.1} ({:.1})", mb(rss), mb(hwm)),
        "",
        None,
    ));
    Ok(rows)
}
