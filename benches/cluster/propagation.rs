//! `propagation`: starts an etcd member on free loopback ports with its data dir in the run's
//! temporary directory, and three agents (the release binary, `mgmt run --seeds URL --hostname
//! A|B|C --tmp-prefix yaml X.yaml`). Each agent exports one file and collects every exported
//! file into its own directory. Each round rewrites A's graph file the way editors save (temp
//! file in the same directory, renamed over it) with a new content for A's exported file, and
//! times how long it takes until that file has the new content in all three hosts' directories.
//! Baselines: a bare etcd round trip (put -> watch event on another client) measured
//! in-process, interleaved with the agent rounds.
//!
//! With h2's frames in the logs (`MGMT_BENCH_LOG=debug`, or `info,h2=debug`) the bench adds a
//! per-step breakdown of the export: range read, transaction, watch event, apply;
//! `MGMT_BENCH_KEEP_LOGS=DIR` also keeps the round start times.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};

use crate::etcd::Etcd;
use crate::logs::{Log, unix_us};
use crate::support::bin;
use crate::support::process::Proc;
use crate::support::procfs::{cpu_ns, rss_hwm_kb, status_kb};
use crate::support::report::{Row, ms, stats};
use crate::support::wait::{FALLBACK, Waiter, until_all};

pub const HOSTS: [char; 3] = ['A', 'B', 'C'];
const WARMUP: usize = 20;
const ITERS: usize = 200;
/// Pause before each timed step, so the previous step's tail (status writes, convergence
/// reports, etcd's background commit) is over.
pub const PAUSE: Duration = Duration::from_millis(100);
/// How long one round may take before the bench gives up.
pub const ROUND_LIMIT: Duration = Duration::from_secs(10);

/// A row of this benchmark (its rows say `cluster`).
fn row(metric: impl Into<String>, value: impl Into<String>, target: &'static str, pass: Option<bool>) -> Row {
    crate::support::report::row("cluster", metric, value, target, pass)
}

fn info_row(metric: impl Into<String>, value: impl Into<String>) -> Row {
    crate::support::report::info("cluster", metric, value)
}

// ---------------------------------------------------------------------------------------------
// The agents' graphs

/// Host `h`'s graph: export `f<h>` with `version` in its content, collect every exported
/// file into `<t>/mgmt<h>/`.
pub fn host_yaml(t: &Path, h: char, version: usize) -> String {
    let t = t.display();
    let l = h.to_ascii_lowercase();
    format!(
        "graph: mygraph\nresources:\n  file:\n  - name: \"@@file{l}\"\n    path: \"{t}/mgmt{h}/f{h}\"\n    \
         content: \"i am f{h}, exported from host {h}, version {version}\\n\"\ncollect:\n- kind: file\n  \
         pattern: \"{t}/mgmt{h}/\"\n"
    )
}

pub fn content(h: char, version: usize) -> Vec<u8> {
    format!("i am f{h}, exported from host {h}, version {version}\n").into_bytes()
}

pub fn graph_path(t: &Path, h: char) -> PathBuf {
    t.join(format!("host{h}")).join(format!("{}.yaml", h.to_ascii_lowercase()))
}

/// Replace a file the way editors save: a temp file in the same directory (written before,
/// by `prepare`), renamed over the target (by `commit`).
pub struct AtomicSave {
    tmp: PathBuf,
    target: PathBuf,
}

impl AtomicSave {
    pub fn prepare(target: &Path, text: &str) -> Result<AtomicSave> {
        let name = target.file_name().context("no file name")?.to_string_lossy();
        let tmp = target.with_file_name(format!(".{name}.swp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        Ok(AtomicSave { tmp, target: target.to_path_buf() })
    }
    pub fn commit(self) -> Result<()> {
        fs::rename(&self.tmp, &self.target)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Agent logs

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

/// Wait (at most 30 s after `t0`) until each host's directory under `t` holds every host's
/// first file, the agents staying alive; `what` names the run in the error.
pub fn wait_first_files(t: &Path, agents: &mut [Proc], t0: Instant, what: &str) -> Result<()> {
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
            return Ok(());
        }
        for a in agents.iter_mut() {
            a.ensure_alive()?;
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "{what}: not propagated within 30 s: {}",
            missing.join(", ")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn propagation(t: &Path) -> Result<Vec<Row>> {
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
    wait_first_files(t, &mut agents, t0, "yaml")?;
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
    let rss: Vec<(u64, u64)> = agents.iter().map(|a| rss_hwm_kb(a.pid())).collect();
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
