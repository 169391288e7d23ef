//! Reactive mcl benchmarks: the real release `mgmt run lang` as a process, following the
//! values its program reads. How long a write of a file read by `os.readfile` takes to reach
//! the file resource that depends on it (beside a YAML graph file rewritten the same way, as
//! the baseline); the same in a program of 10,000 resources, where the change touches one
//! of them and where it touches all of them; and what an agent driven by `datetime.now()`
//! costs while it ticks.
//!
//! `cargo bench --bench lang_live [idle] [reactive] [incremental-10k]`
//!
//! Every benchmark works in its own temporary directory (removed at the end), which is also
//! the `TMPDIR` of the agents it starts. The output files are watched with inotify on their
//! directory and read again on each event (no polling). Agents are stopped with SIGTERM, and
//! their exit is waited for.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use inotify::{EventMask, Inotify, WatchMask};

use support::machine::print_machine;
use support::process::Proc;
use support::procfs::{cpu_ns, status_kb, thread_delta, thread_stats};
use support::report::{Row, info, ms, print_table, row, stats};
use support::wait::Waiter;
use support::{Bench, bin, exit_if_failed, run_each, selected};

/// `idle` first: on ext4 without a journal, every file created scans past the inodes freed
/// in the last minute, and the 10k benchmark frees tens of thousands (each atomic rewrite
/// frees the file's old inode); the idle agent creates one file a second.
const BENCHES: &[(&str, Bench<Path>)] =
    &[("idle", idle), ("reactive", reactive), ("incremental-10k", incremental_10k)];

/// The pause after a change has arrived before the next one: longer than the default
/// `--coalesce-ms` (10), so each change is evaluated on its own, not held for the interval.
const GAP: Duration = Duration::from_millis(20);

fn main() {
    let benches = selected(BENCHES);
    let dir =
        tempfile::Builder::new().prefix("mgmt-bench-lang-live-").tempdir().expect("a temporary directory");
    print_machine(dir.path());
    let (rows, failed) = run_each(&benches, |name, f| {
        let d = dir.path().join(name);
        fs::create_dir_all(&d)?;
        f(&d)
    });
    print_table(&rows);
    exit_if_failed(&failed);
}

// ---------------------------------------------------------------------------------------------
// Agents, files and waiting

/// Start `mgmt run --tmp-prefix ARGS`, its stderr in `dir/log`, with `dir/prefix` as TMPDIR.
fn spawn_agent(dir: &Path, log: &str, a: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<Proc> {
    let prefix = dir.join("prefix");
    fs::create_dir_all(&prefix)?;
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--tmp-prefix"])
        .args(a.iter().map(|s| s.as_ref().to_os_string()).collect::<Vec<OsString>>())
        .env("TMPDIR", &prefix)
        .env_remove("MGMT_LOG");
    Proc::spawn(cmd, dir.join(log), "mgmt".into())
}

/// Stop an agent with SIGTERM and wait for it: it must exit with status 0.
fn stop_agent(mut agent: Proc) -> Result<()> {
    agent.signal(libc::SIGTERM);
    let (status, _) = agent.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "mgmt exited with {status} on SIGTERM; log:\n{}", agent.log_tail());
    Ok(())
}

/// Write `data` as an editor saves: a temp file in the same directory, renamed over `path`.
/// Returns the instant just before the rename, where the clock starts.
fn write_renamed(path: &Path, data: &[u8]) -> Result<Instant> {
    let dir = path.parent().context("no parent")?;
    let tmp = dir.join(format!(".{}.bench-tmp", path.file_name().context("no name")?.to_string_lossy()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    drop(f);
    let t0 = Instant::now();
    fs::rename(&tmp, path)?;
    Ok(t0)
}

/// Wait until `path` holds `want`: read it, then again after each inotify event for its name
/// in its directory. Returns the time since `t0` of the read that found it right.
fn until_content(w: &mut Waiter, path: &Path, want: &[u8], t0: Instant, limit: Duration) -> Result<Duration> {
    loop {
        if fs::read(path).ok().as_deref() == Some(want) {
            return Ok(t0.elapsed());
        }
        let left = limit.saturating_sub(t0.elapsed());
        if left.is_zero() {
            bail!(
                "{} did not get {:?} within {limit:?} (it holds {:?})",
                path.display(),
                String::from_utf8_lossy(want),
                fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
            );
        }
        w.wait(left);
    }
}

/// Watches one directory for files finished there (closed after writing, or renamed in),
/// for waiting on many files at once.
struct DirWatch {
    ino: Inotify,
    buf: Vec<u8>,
}

impl DirWatch {
    fn new(dir: &Path) -> Result<DirWatch> {
        let ino = Inotify::init()?;
        ino.watches().add(dir, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO)?;
        Ok(DirWatch { ino, buf: vec![0; 256 * 1024] })
    }

    /// Block until events arrive or `timeout` passes; the names they are about, or `None`
    /// when the kernel's queue overflowed (then every file must be read again).
    fn next(&mut self, timeout: Duration) -> Option<Vec<OsString>> {
        let mut pfd = libc::pollfd { fd: self.ino.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        let mut names = Vec::new();
        if r <= 0 {
            return Some(names);
        }
        while let Ok(events) = self.ino.read_events(&mut self.buf) {
            let mut any = false;
            for e in events {
                any = true;
                if e.mask.contains(EventMask::Q_OVERFLOW) {
                    return None;
                }
                if let Some(n) = e.name {
                    names.push(n.to_os_string());
                }
            }
            if !any {
                break;
            }
        }
        Some(names)
    }

    fn drain(&mut self) {
        while self.ino.read_events(&mut self.buf).is_ok_and(|mut e| e.next().is_some()) {}
    }
}

/// Wait until every file `dir/{names[i]}` holds `want(i)`: each is read once, then again when
/// an event names it (every one still wrong after a queue overflow). Returns the time since
/// `t0` when the last one was found right.
fn until_all_right(
    w: &mut DirWatch,
    dir: &Path,
    names: &[String],
    want: &dyn Fn(usize) -> String,
    t0: Instant,
    limit: Duration,
) -> Result<Duration> {
    let index: std::collections::HashMap<&str, usize> =
        names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut wrong: HashSet<usize> = (0..names.len()).collect();
    let right = |i: usize| fs::read(dir.join(&names[i])).ok().as_deref() == Some(want(i).as_bytes());
    wrong.retain(|&i| !right(i));
    while !wrong.is_empty() {
        let left = limit.saturating_sub(t0.elapsed());
        if left.is_zero() {
            let mut some: Vec<&str> = wrong.iter().take(5).map(|&i| names[i].as_str()).collect();
            some.sort();
            bail!(
                "{} of {} files not right within {limit:?} (e.g. {})",
                wrong.len(),
                names.len(),
                some.join(", ")
            );
        }
        match w.next(left) {
            None => wrong.retain(|&i| !right(i)),
            Some(seen) => {
                for n in seen {
                    if let Some(&i) = n.to_str().and_then(|n| index.get(n))
                        && wrong.contains(&i)
                        && right(i)
                    {
                        wrong.remove(&i);
                    }
                }
            }
        }
    }
    Ok(t0.elapsed())
}

/// How many samples took longer than `millis`.
fn over(samples: &[Duration], millis: u64) -> usize {
    samples.iter().filter(|d| **d > Duration::from_millis(millis)).count()
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("a UTF-8 path")
}

/// A nonce, so no content of one run is mistaken for one of an earlier run.
fn nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// 1. reactive

/// The one-file program: `OUT`'s content is `IN`'s.
fn readfile_program(input: &Path, output: &Path) -> String {
    format!(
        "import \"os\"\n\nfile \"{}\" {{\n\tcontent => os.readfile(\"{}\"),\n}}\n",
        output.display(),
        input.display()
    )
}

/// The baseline: a YAML graph of one file resource with `content`.
fn yaml_one_file(output: &Path, content: &str) -> String {
    format!("graph: g\nresources:\n  file:\n    - name: {}\n      content: {content:?}\n", output.display())
}

fn reactive(dir: &Path) -> Result<Vec<Row>> {
    const CHANGES: usize = 1_000;
    let bench = "reactive";
    let (in_dir, lang_dir, yaml_dir, out_lang, out_yaml) =
        (dir.join("in"), dir.join("lang"), dir.join("yaml"), dir.join("out-lang"), dir.join("out-yaml"));
    for d in [&in_dir, &lang_dir, &yaml_dir, &out_lang, &out_yaml] {
        fs::create_dir_all(d)?;
    }
    let input = in_dir.join("IN");
    let (lang_out, yaml_out) = (out_lang.join("OUT"), out_yaml.join("OUT"));
    let main = lang_dir.join("main.mcl");
    let graph = yaml_dir.join("graph.yaml");
    let n = nonce();
    fs::write(&input, format!("lang start {n}\n"))?;
    fs::write(&main, readfile_program(&input, &lang_out))?;
    fs::write(&graph, yaml_one_file(&yaml_out, &format!("yaml start {n}\n")))?;

    let (mut wl, mut wy) = (Waiter::file(&lang_out)?, Waiter::file(&yaml_out)?);
    let mut lang = spawn_agent(dir, "lang.log", &[&"lang", &main])?;
    let mut yaml = spawn_agent(dir, "yaml.log", &[&"yaml", &graph])?;
    let t0 = Instant::now();
    until_content(&mut wl, &lang_out, format!("lang start {n}\n").as_bytes(), t0, Duration::from_secs(30))?;
    until_content(&mut wy, &yaml_out, format!("yaml start {n}\n").as_bytes(), t0, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(500));

    // Both agents run all along; the changes alternate: one to IN, one to the graph file.
    let (mut l, mut y) = (Vec::with_capacity(CHANGES), Vec::with_capacity(CHANGES));
    let limit = Duration::from_secs(10);
    let (lang_cpu0, yaml_cpu0) = (cpu_ns(lang.pid()), cpu_ns(yaml.pid()));
    for i in 0..CHANGES {
        let want = format!("lang {i} {n}\n");
        wl.drain();
        let t = write_renamed(&input, want.as_bytes())?;
        l.push(until_content(&mut wl, &lang_out, want.as_bytes(), t, limit)?);
        std::thread::sleep(GAP);

        let want = format!("yaml {i} {n}\n");
        wy.drain();
        let t = write_renamed(&graph, yaml_one_file(&yaml_out, &want).as_bytes())?;
        y.push(until_content(&mut wy, &yaml_out, want.as_bytes(), t, limit)?);
        std::thread::sleep(GAP);
    }
    let per_change = |cpu0: u64, pid: i32| ms(Duration::from_nanos((cpu_ns(pid) - cpu0) / CHANGES as u64));
    let (lang_cpu, yaml_cpu) = (per_change(lang_cpu0, lang.pid()), per_change(yaml_cpu0, yaml.pid()));
    println!("lang: {}", stats(&l).line());
    println!("yaml: {}", stats(&y).line());

    // Back to back: the next change as soon as the last one arrived, inside --coalesce-ms.
    let mut b = Vec::with_capacity(CHANGES / 5);
    for i in 0..CHANGES / 5 {
        let want = format!("burst {i} {n}\n");
        wl.drain();
        let t = write_renamed(&input, want.as_bytes())?;
        b.push(until_content(&mut wl, &lang_out, want.as_bytes(), t, limit)?);
    }
    println!("lang, back to back: {}", stats(&b).line());
    let (lang_hwm, yaml_hwm) = (status_kb(lang.pid(), "VmHWM:")?, status_kb(yaml.pid(), "VmHWM:")?);
    lang.ensure_alive()?;
    yaml.ensure_alive()?;
    stop_agent(lang)?;
    stop_agent(yaml)?;

    let s = stats(&l);
    Ok(vec![
        row(
            bench,
            format!(
                "mcl: write of IN -> OUT right, {CHANGES} changes {} ms apart (p50 / p99 / max)",
                GAP.as_millis()
            ),
            s.p50_p99_max(),
            "p99 < 5 ms",
            Some(s.p99 < Duration::from_millis(5)),
        ),
        info(
            bench,
            "YAML: rewrite of the graph file -> OUT right, alternating (p50 / p99 / max; baseline)",
            stats(&y).p50_p99_max(),
        ),
        info(
            bench,
            format!("mcl: back to back, {} changes, each as the last arrived (p50 / p99 / max)", CHANGES / 5),
            stats(&b).p50_p99_max(),
        ),
        info(
            bench,
            "changes slower than 5 ms: mcl; YAML",
            format!("{} of {CHANGES}; {} of {CHANGES}", over(&l, 5), over(&y, 5)),
        ),
        info(bench, "CPU per change: mcl agent; YAML agent", format!("{lang_cpu}; {yaml_cpu}")),
        info(bench, "peak RSS (VmHWM): mcl agent; YAML agent", format!("{}; {}", mb(lang_hwm), mb(yaml_hwm))),
    ])
}

// ---------------------------------------------------------------------------------------------
// 2. incremental-10k

/// `n` file resources under `base` made by a `for` (as `benches/lang.rs`'s), and one file
/// `output` whose content is `input`'s. With `all`, every resource's content is the value
/// read, then its index.
fn many_program(n: usize, base: &Path, input: &Path, output: &Path, all: bool) -> String {
    let names: Vec<String> = (0..n).map(|i| format!("\"f{i}\"")).collect();
    let mut text = format!(
        "import \"fmt\"\nimport \"os\"\n\n$base = \"{}\"\n$v = os.readfile(\"{}\")\n$names = [{}]\n",
        base.display(),
        input.display(),
        names.join(", ")
    );
    let content =
        if all { "fmt.printf(\"%s %d\\n\", $v, $i)" } else { "fmt.printf(\"value %d of %s\\n\", $i, $base)" };
    let _ = write!(
        text,
        "for $i, $name in $names {{\n\tfile \"${{base}}/${{name}}\" {{\n\t\tcontent => {content},\n\t\tmode => \"0644\",\n\t}}\n}}\n\nfile \"{}\" {{\n\tcontent => $v,\n}}\n",
        output.display()
    );
    text
}

fn incremental_10k(dir: &Path) -> Result<Vec<Row>> {
    const N: usize = 10_000;
    const ONE_CHANGES: usize = 200;
    const ALL_CHANGES: usize = 5;
    let bench = "incremental-10k";
    let mut rows = Vec::new();
    let in_dir = dir.join("in");
    let out_dir = dir.join("out");
    fs::create_dir_all(&in_dir)?;
    fs::create_dir_all(&out_dir)?;
    let input = in_dir.join("IN");
    let output = out_dir.join("OUT");
    let names: Vec<String> = (0..N).map(|i| format!("f{i}")).collect();
    let n = nonce();

    // One resource of 10,001 reads IN.
    {
        let (base, module) = (dir.join("many-one"), dir.join("lang-one"));
        fs::create_dir_all(&base)?;
        fs::create_dir_all(&module)?;
        let main = module.join("main.mcl");
        fs::write(&input, format!("start {n}\n"))?;
        fs::write(&main, many_program(N, &base, &input, &output, false))?;
        let mut wd = DirWatch::new(&base)?;
        let mut w = Waiter::file(&output)?;
        let t0 = Instant::now();
        let agent = spawn_agent(dir, "one.log", &[&"lang", &main])?;
        let base_s = path_str(&base)?.to_string();
        let want = |i: usize| format!("value {i} of {base_s}\n");
        let first = until_all_right(&mut wd, &base, &names, &want, t0, Duration::from_secs(300))?;
        until_content(&mut w, &output, format!("start {n}\n").as_bytes(), t0, Duration::from_secs(300))?;
        println!("first graph of {} resources applied in {}", N + 1, ms(first));
        std::thread::sleep(Duration::from_secs(1));
        let mut l = Vec::with_capacity(ONE_CHANGES);
        let cpu0 = cpu_ns(agent.pid());
        for i in 0..ONE_CHANGES {
            let want = format!("one {i} {n}\n");
            w.drain();
            let t = write_renamed(&input, want.as_bytes())?;
            l.push(until_content(&mut w, &output, want.as_bytes(), t, Duration::from_secs(30))?);
            std::thread::sleep(Duration::from_millis(100));
        }
        let cpu = Duration::from_nanos((cpu_ns(agent.pid()) - cpu0) / ONE_CHANGES as u64);
        println!("one of {}: {}", N + 1, stats(&l).line());
        let (rss, hwm) = (status_kb(agent.pid(), "VmRSS:")?, status_kb(agent.pid(), "VmHWM:")?);
        stop_agent(agent)?;
        let s = stats(&l);
        rows.push(info(
            bench,
            format!("first graph, {} resources: start -> all files right", N + 1),
            ms(first),
        ));
        rows.push(row(
            bench,
            format!("write of IN -> the one file reading it right, {ONE_CHANGES} changes (p50 / p99)"),
            format!("{} / {}", ms(s.p50), ms(s.p99)),
            "p99 < 20 ms",
            Some(s.p99 < Duration::from_millis(20)),
        ));
        rows.push(info(bench, "CPU of the agent per change", ms(cpu)));
        rows.push(info(bench, "the agent's VmHWM (VmRSS at the end)", format!("{} ({})", mb(hwm), mb(rss))));
    }

    // Every one of 10,000 resources reads IN.
    {
        let (base, module) = (dir.join("many-all"), dir.join("lang-all"));
        fs::create_dir_all(&base)?;
        fs::create_dir_all(&module)?;
        let main = module.join("main.mcl");
        let v0 = format!("start {n}");
        fs::write(&input, &v0)?;
        fs::write(&main, many_program(N, &base, &input, &output, true))?;
        let mut wd = DirWatch::new(&base)?;
        let t0 = Instant::now();
        let agent = spawn_agent(dir, "all.log", &[&"lang", &main])?;
        let first = until_all_right(
            &mut wd,
            &base,
            &names,
            &|i| format!("{v0} {i}\n"),
            t0,
            Duration::from_secs(300),
        )?;
        println!("first graph (every file reads IN) applied in {}", ms(first));
        std::thread::sleep(Duration::from_secs(1));
        let mut l = Vec::with_capacity(ALL_CHANGES);
        let mut cpu = Vec::with_capacity(ALL_CHANGES);
        for i in 0..ALL_CHANGES {
            let v = format!("all {i} {n}");
            wd.drain();
            let cpu0 = cpu_ns(agent.pid());
            let t = write_renamed(&input, v.as_bytes())?;
            let took = until_all_right(
                &mut wd,
                &base,
                &names,
                &|j| format!("{v} {j}\n"),
                t,
                Duration::from_secs(300),
            )?;
            println!("change {i}: all {N} files right after {}", ms(took));
            l.push(took);
            cpu.push(Duration::from_nanos(cpu_ns(agent.pid()) - cpu0));
            std::thread::sleep(Duration::from_secs(1));
        }
        let (rss, hwm) = (status_kb(agent.pid(), "VmRSS:")?, status_kb(agent.pid(), "VmHWM:")?);
        stop_agent(agent)?;
        let s = stats(&l);
        rows.push(info(
            bench,
            format!("first graph, every file reads IN: start -> all {N} right"),
            ms(first),
        ));
        rows.push(info(
            bench,
            format!(
                "write of IN -> the last of {N} files reading it right, {ALL_CHANGES} changes (p50 / max)"
            ),
            format!("{} / {}", ms(s.p50), ms(s.max)),
        ));
        rows.push(info(bench, "CPU of the agent per change (p50)", ms(stats(&cpu).p50)));
        rows.push(info(bench, "the agent's VmHWM (VmRSS at the end)", format!("{} ({})", mb(hwm), mb(rss))));
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// 3. idle

fn idle(dir: &Path) -> Result<Vec<Row>> {
    let mut rows = idle_in(dir, dir, true)?;
    // The same with OUT on tmpfs: the agent's own cost, without ext4's inode allocation.
    let shm = tempfile::Builder::new().prefix("mgmt-bench-lang-live-").tempdir_in("/dev/shm");
    match shm {
        Ok(shm) => rows.extend(idle_in(&dir.join("shm"), shm.path(), false)?),
        Err(e) => println!("no tmpfs at /dev/shm ({e}): the tmpfs rows are left out"),
    }
    Ok(rows)
}

/// The idle agent, its program in `dir`, writing `out_parent/out/OUT`; with `target`, the
/// rows carry the targets.
fn idle_in(dir: &Path, out_parent: &Path, target: bool) -> Result<Vec<Row>> {
    const MEASURE: Duration = Duration::from_secs(20);
    let bench = "idle";
    let (module, out_dir) = (dir.join("lang"), out_parent.join("out"));
    fs::create_dir_all(&module)?;
    fs::create_dir_all(&out_dir)?;
    let output = out_dir.join("OUT");
    let main = module.join("main.mcl");
    fs::write(
        &main,
        format!(
            "import \"datetime\"\nimport \"fmt\"\n\nfile \"{}\" {{\n\tcontent => fmt.printf(\"%d\\n\", datetime.now()),\n}}\n",
            output.display()
        ),
    )?;
    let mut w = Waiter::file(&output)?;
    let mut agent = spawn_agent(dir, "idle.log", &[&"lang", &main])?;
    let t0 = Instant::now();
    while !output.exists() {
        ensure!(t0.elapsed() < Duration::from_secs(30), "no {} after 30 s", output.display());
        w.wait(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(3));
    agent.ensure_alive()?;

    let pid = agent.pid();
    let mut last = fs::read(&output)?;
    let mut changes = 0;
    let cpu0 = cpu_ns(pid);
    let threads0 = thread_stats(pid);
    let t0 = Instant::now();
    while t0.elapsed() < MEASURE {
        w.wait(MEASURE.saturating_sub(t0.elapsed()));
        let now = fs::read(&output)?;
        if now != last {
            changes += 1;
            last = now;
        }
    }
    let used = cpu_ns(pid) - cpu0;
    let took = t0.elapsed().as_nanos() as f64;
    let cpu = used as f64 / took * 100.0;
    // The scheduler's exact on-CPU time of each thread: ticks charge a whole 10 ms to whoever
    // runs at the tick, coarse for 20 bursts of a few ms.
    let (on_cpu, _) = thread_delta(&threads0, &thread_stats(pid));
    let exact = on_cpu as f64 / took * 100.0;
    let (rss, hwm) = (status_kb(pid, "VmRSS:")?, status_kb(pid, "VmHWM:")?);
    agent.ensure_alive()?;
    stop_agent(agent)?;
    let on = if target { String::new() } else { "OUT on tmpfs: ".to_string() };
    println!(
        "{on}cpu {cpu:.2} % of one core (on-CPU {exact:.2} %), VmRSS {rss} kB, VmHWM {hwm} kB, {changes} changes of OUT"
    );
    let per_change = ms(Duration::from_nanos(used / changes.max(1) as u64));
    let exact_per_change = ms(Duration::from_nanos(on_cpu / changes.max(1) as u64));
    if !target {
        return Ok(vec![info(
            bench,
            "OUT on tmpfs: CPU, ticks and on-CPU (per change); changes seen",
            format!("{cpu:.2} % and {exact:.2} % ({per_change} and {exact_per_change}); {changes}"),
        )]);
    }
    Ok(vec![
        row(bench, "CPU over 20 s, % of one core", format!("{cpu:.2} %"), "< 1 %", Some(cpu < 1.0)),
        row(
            bench,
            "VmRSS; VmHWM",
            format!("{}; {}", mb(rss), mb(hwm)),
            "< 20 MB",
            Some(rss < 20 * 1024 && hwm < 20 * 1024),
        ),
        info(bench, "changes of OUT seen in the 20 s (one a second expected)", changes.to_string()),
        info(bench, "CPU per change of OUT (clock ticks)", per_change),
        info(
            bench,
            "on-CPU time of its threads (schedstat): % of one core; per change",
            format!("{exact:.2} %; {exact_per_change}"),
        ),
    ])
}
