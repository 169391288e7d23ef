//! Cluster benchmark of the `mgmt` agent: export -> collect propagation through a real etcd.
//!
//! ```text
//! cargo bench --bench cluster
//! ```
//!
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
//! Methodology and results: BENCHMARKS.md, section "Cluster: export -> collect propagation".

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

const BIN: &str = env!("CARGO_BIN_EXE_mgmt");
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

fn main() {
    // `cargo bench` passes `--bench`; there is one benchmark, so other words are errors.
    let extra: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if extra.iter().any(|a| a != "propagation") {
        eprintln!("unknown benchmark `{}` (known: propagation)", extra.join(" "));
        std::process::exit(2);
    }
    let dir =
        tempfile::Builder::new().prefix("mgmt-cluster-bench-").tempdir().expect("creating the bench dir");
    print_machine(dir.path());
    println!("\n== propagation ==");
    let t = Instant::now();
    let result = propagation(dir.path());
    println!("(propagation took {:.1} s)", t.elapsed().as_secs_f64());
    let failed = match result {
        Ok(rows) => {
            print_table(&rows);
            false
        }
        Err(e) => {
            println!("propagation: FAILED: {e:#}");
            true
        }
    };
    drop(dir);
    if failed {
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
    println!("binary: {BIN}");
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
        let bin = std::env::var("MGMT_ETCD_BINARY").unwrap_or_else(|_| "/usr/bin/etcd".into());
        let ports = free_ports(2)?;
        let client_addr: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse()?;
        let url = format!("http://{client_addr}");
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
        let mut cmd = Command::new(BIN);
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
