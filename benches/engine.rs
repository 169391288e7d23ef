//! Benchmarks of the `mgmt` agent: the real release binary as a whole process (drift, cold,
//! recheck, shutdown, idle) and the engine in-process through the library (swap).
//!
//! ```text
//! cargo bench --bench engine              # everything
//! cargo bench --bench engine -- drift     # one (or several) of: drift cold recheck swap shutdown idle
//! ```
//!
//! Every benchmark works in its own temporary directory (removed at the end) and sets
//! `TMPDIR` for the agents it starts, so even the `--tmp-prefix` directories of an agent that
//! had to be killed end up inside it. Agents are stopped (SIGINT, then SIGKILL) when a
//! benchmark ends or fails. Methodology and results: BENCHMARKS.md.

#[path = "support/mod.rs"]
mod support;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use inotify::{Inotify, WatchMask};

use support::process::Proc;
use support::procfs::{clk_tck, proc_times, status_kb, thread_delta, thread_stats};
use support::report::{Row, info, ms, print_table, row, stats};
use support::wait::{Waiter, until_all};
use support::{Bench, bin, exit_if_failed, machine::print_machine, run_each, selected};

const BENCHES: &[(&str, Bench<Ctx>)] = &[
    ("drift", drift),
    ("cold", cold),
    ("recheck", recheck),
    ("swap", swap),
    ("shutdown", shutdown),
    ("idle", idle),
];

fn main() {
    let benches = selected(BENCHES);
    let ctx = Ctx::new().expect("creating the benchmark directory");
    print_machine(&ctx.root);
    if benches.iter().any(|(n, _)| *n == "cold" || *n == "drift") {
        settle_fs(&ctx);
    }
    let (rows, failed) = run_each(&benches, |_, f| f(&ctx));
    print_table(&rows);
    // Delete everything now and flush, so the freed inodes stop slowing down file creation
    // (see `retire`) after 60 s rather than 6 minutes.
    let t = Instant::now();
    drop(ctx);
    unsafe { libc::sync() };
    println!("\n(cleanup took {:.1} s)", t.elapsed().as_secs_f64());
    exit_if_failed(&failed);
}

// ---------------------------------------------------------------------------------------------
// Environment

struct Ctx {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Where `retire` moves finished file trees; removed with `root` at the very end.
    trash: PathBuf,
    trashed: std::sync::atomic::AtomicUsize,
}

impl Ctx {
    fn new() -> Result<Ctx> {
        let dir = tempfile::Builder::new().prefix("mgmt-bench-").tempdir()?;
        let root = dir.path().to_path_buf();
        let trash = root.join("trash");
        fs::create_dir(&trash)?;
        Ok(Ctx { _dir: dir, root, trash, trashed: Default::default() })
    }

    /// A fresh directory for one benchmark, with a `prefix/` that agents use as TMPDIR.
    fn dir(&self, name: &str) -> Result<BenchDir> {
        let d = tempfile::Builder::new().prefix(&format!("{name}-")).tempdir_in(&self.root)?;
        fs::create_dir(d.path().join("prefix"))?;
        Ok(BenchDir { path: d.path().to_path_buf(), _dir: d })
    }
}

struct BenchDir {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl BenchDir {
    fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

/// A graph of `n` file resources in `dir`, file `i` holding `content i\n` (or `changed i\n`
/// for the `changed` one).
fn graph_yaml(dir: &Path, n: usize, changed: Option<usize>) -> String {
    let mut s = String::with_capacity(n * 70 + 64);
    s.push_str("graph: bench\nresources:\n  file:\n");
    for i in 0..n {
        let word = if changed == Some(i) { "changed" } else { "content" };
        let _ = write!(
            s,
            "  - name: f{i}\n    path: \"{}/f{i}\"\n    content: \"{word} {i}\\n\"\n",
            dir.display()
        );
    }
    s
}

fn expected(i: usize) -> String {
    format!("content {i}\n")
}

/// Every file of a `graph_yaml(dir, n, None)` graph is there with its content.
fn verify_files(dir: &Path, n: usize) -> Result<()> {
    for i in 0..n {
        let p = dir.join(format!("f{i}"));
        let got = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        ensure!(got == expected(i), "{} has {got:?}, want {:?}", p.display(), expected(i));
    }
    let count = fs::read_dir(dir)?.count();
    ensure!(count == n, "{} holds {count} entries, want {n} (temp files left behind?)", dir.display());
    Ok(())
}

/// Microseconds per creation of an empty file in a fresh directory (the new directory and
/// its 200 files are retired, not deleted).
fn create_probe(ctx: &Ctx) -> Result<f64> {
    let n = ctx.trashed.fetch_add(1, Ordering::SeqCst);
    let d = ctx.trash.join(format!("probe{n}"));
    fs::create_dir(&d)?;
    let t = Instant::now();
    for i in 0..200 {
        fs::File::create(d.join(i.to_string()))?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / 200.0)
}

/// On ext4 without a journal, creating files is slow for up to 6 minutes after many files
/// were deleted nearby (see `retire`), e.g. by the previous run of this suite. Wait (at most
/// 60 s) until creating a file takes under 100 us again, and say what was found.
fn settle_fs(ctx: &Ctx) {
    unsafe { libc::sync() };
    let t = Instant::now();
    loop {
        match create_probe(ctx) {
            Ok(us) if us < 100.0 => {
                println!(
                    "file creation probe: {us:.0} us per empty file (waited {:.0} s)",
                    t.elapsed().as_secs_f64()
                );
                return;
            }
            Ok(us) if t.elapsed() > Duration::from_secs(60) => {
                println!(
                    "WARNING: file creation still takes {us:.0} us per empty file (recently freed inodes on a \
                     journal-less ext4?); cold and drift results are inflated"
                );
                return;
            }
            Ok(_) => std::thread::sleep(Duration::from_secs(5)),
            Err(e) => {
                println!("file creation probe failed: {e}");
                return;
            }
        }
    }
}

/// Move a directory tree out of the way (into the run's trash, deleted when the whole run
/// ends) and flush everything, so runs do not inherit each other's dirty pages.
///
/// Not deleted here: ext4 without a journal (as on the reference machine) skips inodes freed
/// in the last 60 s (6 minutes while their inode table block is still dirty) when allocating
/// new ones (`recently_deleted()` in fs/ext4/ialloc.c), scanning past them one by one; after
/// a `rm -rf` of 1,000 files that made every file creation up to 0.4 ms slower: an artifact
/// of the benchmark, not a cost of the agent.
fn retire(ctx: &Ctx, dir: &Path) -> Result<()> {
    if dir.exists() {
        let n = ctx.trashed.fetch_add(1, Ordering::SeqCst);
        fs::rename(dir, ctx.trash.join(n.to_string()))?;
    }
    unsafe { libc::sync() };
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Agent processes

/// Start `mgmt ARGS` in `dir`, its stderr in `dir/log_name`, with `dir/prefix` as TMPDIR. It
/// is stopped with SIGINT, as a user would, when dropped.
fn spawn_agent(dir: &BenchDir, log_name: &str, args: &[OsString]) -> Result<Proc> {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("TMPDIR", dir.join("prefix")).env_remove("MGMT_LOG");
    let mut agent = Proc::spawn_untied(cmd, dir.join(log_name), "mgmt".into())?;
    agent.drop_signal = libc::SIGINT;
    Ok(agent)
}

fn args(a: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    a.iter().map(|s| s.as_ref().to_os_string()).collect()
}

/// Run `mgmt` to completion; returns the wall time from just before spawn to the exit.
fn run_to_exit(dir: &BenchDir, log: &str, a: &[OsString], timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let mut agent = spawn_agent(dir, log, a)?;
    let t1 = agent.wait_ok(timeout)?;
    Ok(t1 - t0)
}

/// Wait until the process has used less than 1 ms of CPU during each of 3 consecutive
/// 100 ms intervals (it has converged and is idle).
fn wait_quiet(agent: &mut Proc, max: Duration) -> Result<()> {
    let deadline = Instant::now() + max;
    let mut last = thread_stats(agent.pid());
    let mut quiet = 0;
    while quiet < 3 {
        ensure!(Instant::now() < deadline, "mgmt did not become idle within {max:?}");
        ensure!(agent.alive(), "mgmt exited early; log:\n{}", agent.log_tail());
        std::thread::sleep(Duration::from_millis(100));
        let now = thread_stats(agent.pid());
        let (ns, _) = thread_delta(&last, &now);
        quiet = if ns < 1_000_000 { quiet + 1 } else { 0 };
        last = now;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Waiting for file content

/// Wait until `path` holds `want`. Returns the time since `t0` at which the right content was
/// read, and whether that read came from the fallback timer rather than an event.
fn until_content(
    w: &mut Waiter,
    path: &Path,
    want: &[u8],
    t0: Instant,
    limit: Duration,
) -> Result<(Duration, bool)> {
    let a = until_all(w, &[path], want, t0, limit)?;
    Ok((a.at[0], a.by_fallback[0]))
}

// ---------------------------------------------------------------------------------------------
// Writing files

/// The outside write: like `echo x > f` (open with O_TRUNC, write, close).
fn outside_write(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new().write(true).truncate(true).create(true).open(path)?;
    f.write_all(data)?;
    Ok(())
}

/// temp file + fdatasync + rename (+ fsync of the directory), as the engine writes.
fn write_atomic_plain(path: &Path, data: &[u8], fsync: bool, dir_fsync: bool) -> Result<()> {
    let dir = path.parent().context("no parent")?;
    let tmp = dir.join(format!(".{}.bench-tmp", path.file_name().context("no name")?.to_string_lossy()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    if fsync {
        f.sync_data()?;
    }
    drop(f);
    fs::rename(&tmp, path)?;
    if dir_fsync {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. drift

/// One file kept in shape by a restorer (the agent, or the baseline thread).
struct DriftTarget {
    path: PathBuf,
    waiter: Waiter,
    samples: Vec<Duration>,
    by_fallback: usize,
}

impl DriftTarget {
    fn new(path: PathBuf) -> Result<Self> {
        Ok(DriftTarget { waiter: Waiter::file(&path)?, path, samples: Vec::new(), by_fallback: 0 })
    }

    /// Outside write of wrong content, then wait for the right content.
    fn round(&mut self, i: usize, want: &[u8], record: bool) -> Result<()> {
        self.waiter.drain();
        let wrong = format!("drift {i}\n");
        let t0 = Instant::now();
        outside_write(&self.path, wrong.as_bytes())?;
        let (d, fb) = until_content(&mut self.waiter, &self.path, want, t0, Duration::from_secs(5))?;
        if record {
            self.samples.push(d);
            self.by_fallback += usize::from(fb);
        }
        Ok(())
    }
}

/// The baseline restorer: a bare inotify loop on one thread that rewrites the file (temp +
/// fdatasync + rename + fsync of the directory) whenever it changes, as the engine does.
fn spawn_restorer(
    path: PathBuf,
    want: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Result<u64>>> {
    let mut ino = Inotify::init()?;
    let dir = path.parent().context("no parent")?.to_path_buf();
    ino.watches().add(
        &dir,
        WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ATTRIB,
    )?;
    let name = path.file_name().context("no name")?.to_os_string();
    let restore = move |path: &Path| -> Result<bool> {
        if fs::read(path).ok().as_deref() == Some(&want[..]) {
            return Ok(false);
        }
        write_atomic_plain(path, &want, true, true)?;
        Ok(true)
    };
    restore(&path)?;
    Ok(std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut repairs = 0;
        while !stop.load(Ordering::SeqCst) {
            let mut pfd = libc::pollfd { fd: ino.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                continue;
            }
            let mut hit = false;
            while let Ok(events) = ino.read_events(&mut buf) {
                let mut any = false;
                for e in events {
                    any = true;
                    hit |= e.name == Some(name.as_os_str());
                }
                if !any {
                    break;
                }
            }
            if hit && restore(&path)? {
                repairs += 1;
            }
        }
        Ok(repairs)
    }))
}

fn drift(ctx: &Ctx) -> Result<Vec<Row>> {
    const WARMUP: usize = 50;
    const ITERS: usize = 1000;
    let want = b"i am the managed content\n".to_vec();
    let dir = ctx.dir("drift")?;

    // The agent, managing one file.
    let adir = dir.join("agent");
    fs::create_dir(&adir)?;
    let path = adir.join("f");
    let g = dir.join("g.yaml");
    fs::write(
        &g,
        format!(
            "graph: drift\nresources:\n  file:\n  - name: f\n    path: \"{}\"\n    content: \"i am the managed content\\n\"\n",
            path.display()
        ),
    )?;
    let mut agent = spawn_agent(&dir, "agent.log", &args(&[&"run", &"--tmp-prefix", &"yaml", &g]))?;
    {
        let mut w = Waiter::file(&path)?;
        until_content(&mut w, &path, &want, Instant::now(), Duration::from_secs(10))?;
    }
    wait_quiet(&mut agent, Duration::from_secs(10))?;
    let agent_log = agent.log.clone();

    // The baseline: a bare inotify restorer thread in this process, on its own directory.
    let bdir = dir.join("baseline");
    fs::create_dir(&bdir)?;
    let bpath = bdir.join("f");
    let stop = Arc::new(AtomicBool::new(false));
    let h = spawn_restorer(bpath.clone(), want.clone(), stop.clone())?;

    // Rounds alternate between the two, so slow phases of the disk hit both alike.
    let mut rounds = || -> Result<(DriftTarget, DriftTarget)> {
        let mut eng = DriftTarget::new(path.clone())?;
        let mut base = DriftTarget::new(bpath.clone())?;
        for i in 0..WARMUP + ITERS {
            if i % 100 == 0 {
                ensure!(agent.alive(), "mgmt exited; log:\n{}", agent.log_tail());
                ensure!(!h.is_finished(), "the baseline restorer stopped");
            }
            for t in [&mut eng, &mut base] {
                // Let the restorer finish the check its own rename triggers.
                std::thread::sleep(Duration::from_millis(3));
                t.round(i, &want, i >= WARMUP)?;
            }
        }
        Ok((eng, base))
    };
    let result = rounds();
    stop.store(true, Ordering::SeqCst);
    let brepairs = h.join().map_err(|_| anyhow::anyhow!("restorer panicked"))??;
    let (eng, base) = result?;
    agent.stop(libc::SIGINT);
    let repairs = fs::read_to_string(&agent_log).unwrap_or_default().matches("replace content").count();

    let es = stats(&eng.samples);
    let bs = stats(&base.samples);
    println!(
        "engine:   {} ({repairs} repairs logged, {} samples ended by the fallback timer)",
        es.line(),
        eng.by_fallback
    );
    println!(
        "baseline: {} ({brepairs} repairs, {} samples ended by the fallback timer)",
        bs.line(),
        base.by_fallback
    );
    let over = |a: Duration, b: Duration| format!("{:+.3} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1e3);
    println!("engine overhead: p50 {} p99 {}", over(es.p50, bs.p50), over(es.p99, bs.p99));

    Ok(vec![
        row(
            "drift",
            format!("engine repair latency p50/p99/max (n={ITERS})"),
            es.p50_p99_max(),
            "p99 < 2 ms",
            Some(es.p99 < Duration::from_millis(2)),
        ),
        info("drift", "baseline: bare inotify thread p50/p99/max", bs.p50_p99_max()),
        info(
            "drift",
            "engine minus baseline, p50 / p99",
            format!("{} / {}", over(es.p50, bs.p50), over(es.p99, bs.p99)),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// 2. cold

fn cold(ctx: &Ctx) -> Result<Vec<Row>> {
    const RUNS: usize = 5;
    let dir = ctx.dir("cold")?;
    println!("file creation probe: {:.0} us per empty file", create_probe(ctx)?);
    let mut rows = Vec::new();
    for n in [1000usize, 10_000] {
        let files = dir.join(&format!("files{n}"));
        let g = dir.join(&format!("g{n}.yaml"));
        fs::write(&g, graph_yaml(&files, n, None))?;
        let modes: [(&str, Vec<OsString>); 2] = [
            ("--no-watch", args(&[&"run", &"--tmp-prefix", &"--no-watch", &"yaml", &g])),
            (
                "--converged-timeout 0",
                args(&[&"run", &"--tmp-prefix", &"--converged-timeout", &"0", &"yaml", &g]),
            ),
        ];
        // One untimed run first: page cache, binary, dentries.
        retire(ctx, &files)?;
        run_to_exit(&dir, "warmup.log", &modes[0].1, Duration::from_secs(60))?;
        for (mode, a) in &modes {
            let mut samples = Vec::new();
            for _ in 0..RUNS {
                retire(ctx, &files)?;
                samples.push(run_to_exit(&dir, "cold.log", a, Duration::from_secs(60))?);
                verify_files(&files, n)?;
            }
            let s = stats(&samples);
            println!("mgmt run {mode}, {n} files: {}", s.line());
            let (target, pass) =
                if n == 1000 { ("<= 0.2 s", Some(s.p50 <= Duration::from_millis(200))) } else { ("", None) };
            rows.push(row(
                "cold",
                format!("{n} files, {mode}: median (min..max)"),
                s.median_range(),
                target,
                pass,
            ));
        }
    }

    // Baselines: the same 1,000 files written sequentially by this process.
    let n = 1000;
    let files = dir.join("baseline");
    for (what, fsync, dir_fsync) in [
        ("temp+fdatasync+rename", true, false),
        ("temp+fdatasync+rename+dir fsync", true, true),
        ("temp+rename, no fsync", false, false),
    ] {
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            retire(ctx, &files)?;
            let t0 = Instant::now();
            fs::create_dir_all(&files)?;
            for i in 0..n {
                write_atomic_plain(&files.join(format!("f{i}")), expected(i).as_bytes(), fsync, dir_fsync)?;
            }
            samples.push(t0.elapsed());
            verify_files(&files, n)?;
        }
        let s = stats(&samples);
        println!("baseline {what}, {n} files: {}", s.line());
        rows.push(info("cold", format!("baseline {n} files, sequential {what}"), s.median_range()));
    }
    retire(ctx, &files)?;
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// 3. recheck

fn recheck(ctx: &Ctx) -> Result<Vec<Row>> {
    const RUNS: usize = 10;
    let dir = ctx.dir("recheck")?;
    let mut rows = Vec::new();
    for n in [1000usize, 1] {
        let files = dir.join(&format!("files{n}"));
        let g = dir.join(&format!("g{n}.yaml"));
        fs::write(&g, graph_yaml(&files, n, None))?;
        let a = args(&[&"run", &"--tmp-prefix", &"--no-watch", &"yaml", &g]);
        // Create the files (untimed); every run after this finds them correct.
        run_to_exit(&dir, "create.log", &a, Duration::from_secs(60))?;
        verify_files(&files, n)?;
        unsafe { libc::sync() };
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            samples.push(run_to_exit(&dir, "recheck.log", &a, Duration::from_secs(60))?);
            let log = fs::read_to_string(dir.join("recheck.log"))?;
            ensure!(
                !log.contains("create file") && !log.contains("replace content"),
                "a recheck changed something:\n{log}"
            );
        }
        verify_files(&files, n)?;
        let s = stats(&samples);
        println!("mgmt run --no-watch, {n} correct file(s): {}", s.line());
        rows.push(if n == 1000 {
            row(
                "recheck",
                "1000 correct files, --no-watch: median (min..max)",
                s.median_range(),
                "< 50 ms",
                Some(s.p50 < Duration::from_millis(50)),
            )
        } else {
            info("recheck", "1 correct file (process floor): median (min..max)", s.median_range())
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// 4. swap (in-process)

fn swap(ctx: &Ctx) -> Result<Vec<Row>> {
    use mgmt::engine::assemble::assemble;
    use mgmt::engine::{Engine, EngineOptions, Graph};
    use mgmt::frontend::yaml;
    use mgmt::world::local::LocalWorld;

    const N: usize = 10_000;
    const SWAPS: usize = 40;
    let dir = ctx.dir("swap")?;
    let files = dir.join("files");
    let text_a = graph_yaml(&files, N, None);
    let text_b = graph_yaml(&files, N, Some(N / 2));

    // Parse + assemble, timed separately.
    let mut parse_t = Vec::new();
    let mut assemble_t = Vec::new();
    let mut graphs: Vec<Graph> = Vec::new();
    for i in 0..6 {
        let text = if i % 2 == 0 { &text_a } else { &text_b };
        let t0 = Instant::now();
        let spec = yaml::parse(text, "g.yaml")?;
        let t1 = Instant::now();
        let a = assemble(&spec, "bench", &[])?;
        let t2 = Instant::now();
        parse_t.push(t1 - t0);
        assemble_t.push(t2 - t1);
        if i < 2 {
            graphs.push(a.graph);
        }
    }
    let total: Vec<Duration> = parse_t.iter().zip(&assemble_t).map(|(a, b)| *a + *b).collect();
    let (ps, as_, ts) = (stats(&parse_t), stats(&assemble_t), stats(&total));
    println!("parse {N}: {}\nassemble {N}: {}\nparse+assemble {N}: {}", ps.line(), as_.line(), ts.line());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (swap_s, conv_s) = rt.block_on(async {
        let fs = mgmt::os::FsWatcher::new()?;
        let mut engine = Engine::new(EngineOptions::default(), Arc::new(LocalWorld::new("localhost")), fs);
        let conv = engine.convergence();
        let mut rx = conv.subscribe();
        let converged = async |rx: &mut tokio::sync::watch::Receiver<mgmt::engine::Summary>| -> Result<()> {
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                rx.wait_for(|s| s.vertices == N && s.converged()),
            )
            .await;
            ensure!(matches!(r, Ok(Ok(_))), "the engine did not converge within 60 s: {:?}", conv.summary());
            Ok(())
        };
        let t0 = Instant::now();
        engine.swap(graphs[0].clone());
        converged(&mut rx).await?;
        println!("initial apply of {N} files (in-process): {}", ms(t0.elapsed()));
        verify_files(&files, N)?;
        let mut swap_s = Vec::new();
        let mut conv_s = Vec::new();
        for i in 0..SWAPS {
            let next = graphs[(i + 1) % 2].clone();
            let t0 = Instant::now();
            let plan = engine.swap(next);
            let t1 = Instant::now();
            converged(&mut rx).await?;
            let t2 = Instant::now();
            ensure!(
                plan.keep.len() == N - 1 && plan.start.len() == 1 && plan.stop.len() == 1,
                "unexpected plan {:?}",
                (plan.keep.len(), plan.start.len(), plan.stop.len())
            );
            let want = if i % 2 == 0 { format!("changed {}\n", N / 2) } else { expected(N / 2) };
            let got = fs::read_to_string(files.join(format!("f{}", N / 2)))?;
            ensure!(got == want, "after swap {i}: f{} is {got:?}, want {want:?}", N / 2);
            swap_s.push(t1 - t0);
            conv_s.push(t2 - t1);
        }
        let t0 = Instant::now();
        engine.shutdown().await;
        println!("engine.shutdown() with {N} vertices: {}", ms(t0.elapsed()));
        Ok::<_, anyhow::Error>((swap_s, conv_s))
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    let (ss, cs) = (stats(&swap_s), stats(&conv_s));
    println!("engine.swap, {N} vertices, 1 changed: {}", ss.line());
    println!("after swap() returned, until converged again: {}", cs.line());
    Ok(vec![
        row(
            "swap",
            format!("engine.swap(), {N} files, 1 changed: median (p99/max, n={SWAPS})"),
            format!("{} ({} / {})", ms(ss.p50), ms(ss.p99), ms(ss.max)),
            "< 16 ms",
            Some(ss.p50 < Duration::from_millis(16)),
        ),
        info("swap", "after swap() returned, until converged again: median", ms(cs.p50)),
        info(
            "swap",
            format!("parse + assemble {N}-resource YAML: median"),
            format!("{} (parse {}, assemble {})", ms(ts.p50), ms(ps.p50), ms(as_.p50)),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// 5. shutdown

fn shutdown(ctx: &Ctx) -> Result<Vec<Row>> {
    const RUNS: usize = 10;
    const N: usize = 1000;
    let dir = ctx.dir("shutdown")?;
    let files = dir.join("files");
    let g = dir.join("g.yaml");
    fs::write(&g, graph_yaml(&files, N, None))?;
    let a = args(&[&"run", &"--tmp-prefix", &"yaml", &g]);
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        retire(ctx, &files)?;
        let mut agent = spawn_agent(&dir, "agent.log", &a)?;
        wait_quiet(&mut agent, Duration::from_secs(30))?;
        verify_files(&files, N)?;
        let threads = status_kb(agent.pid(), "Threads:").unwrap_or(0);
        let t0 = Instant::now();
        agent.signal(libc::SIGINT);
        let t1 = agent.wait_ok(Duration::from_secs(10))?;
        samples.push(t1 - t0);
        println!("  SIGINT -> exit: {} ({threads} threads before)", ms(t1 - t0));
    }
    let s = stats(&samples);
    println!("shutdown, {N} files: {}", s.line());
    Ok(vec![row(
        "shutdown",
        format!("SIGINT -> exit, {N} files: median (min..max)"),
        s.median_range(),
        "< 100 ms",
        Some(s.p50 < Duration::from_millis(100)),
    )])
}

// ---------------------------------------------------------------------------------------------
// 6. idle

fn idle(ctx: &Ctx) -> Result<Vec<Row>> {
    const N: usize = 1000;
    const WINDOW: Duration = Duration::from_secs(10);
    let dir = ctx.dir("idle")?;
    let files = dir.join("files");
    let g = dir.join("g.yaml");
    fs::write(&g, graph_yaml(&files, N, None))?;
    let mut agent = spawn_agent(&dir, "agent.log", &args(&[&"run", &"--tmp-prefix", &"yaml", &g]))?;
    wait_quiet(&mut agent, Duration::from_secs(30))?;
    verify_files(&files, N)?;
    let pid = agent.pid();
    let mb = |kb: u64| kb as f64 / 1024.0;
    let mut rows = Vec::new();
    // Two consecutive windows: the first starts at convergence, the second is steady state.
    for (w, label) in [(1, "first 10 s after convergence"), (2, "next 10 s (steady state)")] {
        let rss0 = status_kb(pid, "VmRSS:")?;
        let thr0 = status_kb(pid, "Threads:")?;
        let (p0, s0, t0) = (proc_times(pid)?, thread_stats(pid), Instant::now());
        std::thread::sleep(WINDOW);
        let (p1, s1, t1) = (proc_times(pid)?, thread_stats(pid), Instant::now());
        let rss1 = status_kb(pid, "VmRSS:")?;
        let hwm = status_kb(pid, "VmHWM:")?;
        let thr1 = status_kb(pid, "Threads:")?;
        ensure!(agent.alive(), "mgmt exited; log:\n{}", agent.log_tail());
        let secs = (t1 - t0).as_secs_f64();
        let ticks = p1.ticks - p0.ticks;
        let cpu_pct = ticks as f64 / clk_tck() as f64 / secs * 100.0;
        let (ns, switches) = thread_delta(&s0, &s1);
        println!(
            "window {w} ({label}): utime+stime {ticks} ticks = {cpu_pct:.2} % of one CPU; threads alive at both ends: {:.3} ms on CPU, {switches} context switches",
            ns as f64 / 1e6
        );
        println!("  VmRSS {rss0} kB -> {rss1} kB; VmHWM {hwm} kB; threads {thr0} -> {thr1}");
        rows.push(row(
            "idle",
            format!("CPU, {label} (utime+stime)"),
            format!("{cpu_pct:.2} % ({ticks} ticks of 10 ms)"),
            "~0 % (< 0.1 %)",
            Some(cpu_pct < 0.1),
        ));
        rows.push(row(
            "idle",
            format!("VmRSS start -> end, {label}"),
            format!("{:.1} -> {:.1} MB (VmHWM {:.1} MB)", mb(rss0), mb(rss1), mb(hwm)),
            "< 20 MB",
            Some(rss0.max(rss1) < 20 * 1024),
        ));
        rows.push(info("idle", format!("threads start -> end, {label}"), format!("{thr0} -> {thr1}")));
    }

    // Shutdown of an agent that has been idle long enough for its blocking threads to retire.
    let t = Instant::now();
    agent.signal(libc::SIGINT);
    let exit = agent.wait_ok(Duration::from_secs(10))? - t;
    println!("SIGINT -> exit after the idle windows: {}", ms(exit));
    rows.push(info("idle", "SIGINT -> exit after the idle windows", ms(exit)));
    Ok(rows)
}
