//! `propagation_lang`: the `propagation` demo run twice side by side on one etcd, once with
//! the YAML graphs and once with the same graphs written in mcl, plus a third mcl trio whose
//! exported content is read from a file (`os.readfile`). Each trio has its own temp dir and
//! its own etcd namespace (`--etcd-namespace`); the rounds alternate between the trios
//! (YAML, mcl edit, mcl readfile, YAML, ...), so that all three see the same machine state.
//!
//! - `yaml`: as `propagation`: a round renames a new version of A's `a.yaml` over it.
//! - `mcl-edit`: `mgmt run ... lang <T>/hostA/a.mcl`; a round renames a new version of A's
//!   program over it, so A loads and compiles its program again (after its files are quiet
//!   for 100 ms).
//! - `mcl-readfile`: A's exported content is `os.readfile("<T>/motd")`; a round renames a new
//!   `<T>/motd` over it and the program is not compiled again (the reactive path).
//!
//! Every round is timed from the rename until `<T>/mgmtA/fA`, `<T>/mgmtB/fA` and
//! `<T>/mgmtC/fA` all have the new content, with the same inotify wait as `propagation`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};

use crate::etcd::Etcd;
use crate::logs::{Log, unix_us};
use crate::propagation::{AtomicSave, HOSTS, PAUSE, ROUND_LIMIT, content, host_yaml, wait_first_files};
use crate::support::bin;
use crate::support::process::Proc;
use crate::support::report::{Row, Stats, ms, stats};
use crate::support::wait::{Waiter, until_all};

const WARMUP: usize = 10;
const ITERS: usize = 100;
/// Pause between writing the temp file and the rename for the mcl edit: the temp file is
/// created in the program's directory, which A watches, so its creation makes A load the
/// program again (100 ms quiet period, then a compile that finds the same sources). That
/// load must be over before the timed rename.
const LANG_PAUSE: Duration = Duration::from_millis(400);
const TARGET: Duration = Duration::from_millis(20);

fn row(metric: impl Into<String>, value: impl Into<String>, target: &'static str, pass: Option<bool>) -> Row {
    crate::support::report::row("cluster", metric, value, target, pass)
}

fn info_row(metric: impl Into<String>, value: impl Into<String>) -> Row {
    crate::support::report::info("cluster", metric, value)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Yaml,
    LangEdit,
    LangReadfile,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Yaml => "yaml",
            Kind::LangEdit => "mcl-edit",
            Kind::LangReadfile => "mcl-readfile",
        }
    }

    fn program(self, t: &Path, h: char) -> PathBuf {
        let ext = if self == Kind::Yaml { "yaml" } else { "mcl" };
        t.join(format!("host{h}")).join(format!("{}.{ext}", h.to_ascii_lowercase()))
    }

    /// The file a round rewrites, and its next text.
    fn edit(self, t: &Path, version: usize) -> (PathBuf, String) {
        match self {
            Kind::Yaml => (self.program(t, 'A'), host_yaml(t, 'A', version)),
            Kind::LangEdit => (self.program(t, 'A'), host_mcl(t, 'A', Some(version))),
            Kind::LangReadfile => (motd(t), String::from_utf8_lossy(&content('A', version)).into_owned()),
        }
    }

    fn pause(self) -> Duration {
        if self == Kind::LangEdit { LANG_PAUSE } else { PAUSE }
    }
}

fn motd(t: &Path) -> PathBuf {
    t.join("motd")
}

/// Host `h`'s program in mcl, the YAML graph's equivalent: export `f<h>` with `version` in
/// its content (or, with `None`, with the content of `<t>/motd`), collect every exported
/// file into `<t>/mgmt<h>/`.
pub fn host_mcl(t: &Path, h: char, version: Option<usize>) -> String {
    let t = t.display();
    let (import, content) = match version {
        Some(v) => ("", format!("\"i am f{h}, exported from host {h}, version {v}\\n\"")),
        None => ("import \"os\"\n", format!("os.readfile(\"{t}/motd\")")),
    };
    format!(
        "import \"world/collect\"\n{import}\nfile \"{t}/mgmt{h}/f{h}\" {{\n\tstate => \"exists\",\n\t\
         content => {content},\n\n\tMeta:export => [\"*\"],\n}}\n\n\
         collect file collect.res(\"file\") {{\n\tpath => \"{t}/mgmt{h}/\",\n}}\n"
    )
}

/// One trio of agents with its own directory and etcd namespace.
struct Trio {
    kind: Kind,
    t: PathBuf,
    agents: Vec<Proc>,
    waiter: Waiter,
    paths: Vec<PathBuf>,
    /// Per host, the measured rounds' arrivals.
    samples: Vec<Vec<Duration>>,
    all: Vec<Duration>,
    starts_us: Vec<i64>,
}

impl Trio {
    fn start(base: &Path, kind: Kind, etcd: &Etcd) -> Result<Trio> {
        let t = base.join(kind.name());
        let prefix = t.join("prefix");
        fs::create_dir_all(&prefix)?;
        for h in HOSTS {
            fs::create_dir(t.join(format!("mgmt{h}")))?;
            fs::create_dir(t.join(format!("host{h}")))?;
            let text = match kind {
                Kind::Yaml => host_yaml(&t, h, 0),
                Kind::LangEdit => host_mcl(&t, h, Some(0)),
                Kind::LangReadfile if h == 'A' => host_mcl(&t, h, None),
                Kind::LangReadfile => host_mcl(&t, h, Some(0)),
            };
            fs::write(kind.program(&t, h), text)?;
        }
        fs::write(motd(&t), content('A', 0))?;
        let log_level = std::env::var("MGMT_BENCH_LOG").ok();
        let t0 = Instant::now();
        let mut agents = Vec::new();
        for h in HOSTS {
            let mut cmd = Command::new(bin());
            if let Some(l) = &log_level {
                cmd.args(["--log-level", l]);
            }
            let ns = format!("/bench-{}", kind.name());
            let front = if kind == Kind::Yaml { "yaml" } else { "lang" };
            cmd.args(["run", "--seeds", &etcd.url, "--etcd-namespace", &ns, "--hostname", &h.to_string()])
                .args(["--tmp-prefix", front])
                .arg(kind.program(&t, h))
                .env("TMPDIR", &prefix)
                .env_remove("MGMT_LOG")
                .env_remove("MGMT_SEEDS")
                .env_remove("MGMT_ETCD_NAMESPACE");
            let name = format!("{}-agent{h}.log", kind.name());
            agents.push(Proc::spawn(cmd, t.join(name), format!("mgmt --hostname {h} ({})", kind.name()))?);
        }
        wait_first_files(&t, &mut agents, t0, kind.name())?;
        println!("{}: 3 agents started, every host has all 3 files after {}", kind.name(), ms(t0.elapsed()));
        let dirs: Vec<PathBuf> = HOSTS.iter().map(|h| t.join(format!("mgmt{h}"))).collect();
        let paths = dirs.iter().map(|d| d.join("fA")).collect();
        let waiter = Waiter::new(&dirs, "fA")?;
        Ok(Trio {
            kind,
            t,
            agents,
            waiter,
            paths,
            samples: vec![Vec::new(); HOSTS.len()],
            all: Vec::new(),
            starts_us: Vec::new(),
        })
    }

    fn round(&mut self, i: usize, record: bool) -> Result<()> {
        if i.is_multiple_of(20) {
            for a in &mut self.agents {
                a.ensure_alive()?;
            }
        }
        let (target, text) = self.kind.edit(&self.t, i);
        let save = AtomicSave::prepare(&target, &text)?;
        let want = content('A', i);
        std::thread::sleep(self.kind.pause());
        self.waiter.drain();
        let wall = SystemTime::now();
        let t0 = Instant::now();
        save.commit()?;
        let arr = until_all(&mut self.waiter, &self.paths, &want, t0, ROUND_LIMIT)
            .with_context(|| format!("{} round {i}", self.kind.name()))?;
        if record {
            self.starts_us.push(unix_us(wall));
            self.all.push(arr.at.iter().copied().max().unwrap_or_default());
            for (k, d) in arr.at.iter().enumerate() {
                self.samples[k].push(*d);
            }
        }
        std::thread::sleep(PAUSE);
        Ok(())
    }

    /// Stop the agents and read their logs.
    fn stop(&mut self) -> Result<Vec<Log>> {
        for d in HOSTS {
            for f in ['B', 'C'] {
                let p = self.t.join(format!("mgmt{d}/f{f}"));
                ensure!(fs::read(&p)? == content(f, 0), "{} lost its content", p.display());
            }
        }
        for (a, h) in self.agents.iter_mut().zip(HOSTS) {
            let s = a.stop(libc::SIGINT);
            if !s.is_some_and(|s| s.success()) {
                println!("WARNING: agent {h} did not stop cleanly ({s:?}); log:\n{}", a.log_tail());
            }
        }
        if let Ok(keep) = std::env::var("MGMT_BENCH_KEEP_LOGS") {
            let keep = PathBuf::from(keep);
            fs::create_dir_all(&keep)?;
            for a in &self.agents {
                fs::copy(&a.log, keep.join(a.log.file_name().context("no name")?))?;
            }
            let starts: String = self.starts_us.iter().map(|s| format!("{s}\n")).collect();
            fs::write(keep.join(format!("{}-round-starts-us.txt", self.kind.name())), starts)?;
        }
        Ok(self.agents.iter().map(|a| Log::read(&a.log)).collect())
    }

    /// The rows of this trio: the total, each host, and where the time goes from the logs.
    fn report(&self, logs: &[Log]) -> Vec<Row> {
        let n = self.kind.name();
        let mut rows = Vec::new();
        let s_all = stats(&self.all);
        println!("{n}: rename -> fA right on all 3 hosts: {}", s_all.line());
        rows.push(row(
            format!("{n}: rename -> fA right on A, B and C: p50/p90/p99/max (n={ITERS})"),
            s_all.p50_p90_p99_max(),
            "p99 < 20 ms",
            Some(s_all.p99 < TARGET),
        ));
        for (k, h) in HOSTS.iter().enumerate() {
            let s = stats(&self.samples[k]);
            rows.push(info_row(format!("{n}: rename -> {h}'s fA right"), s.p50_p90_p99_max()));
        }
        // From the logs: rename -> A's `graph swapped`, and A's swap -> the later of B's and
        // C's `collected resources changed`.
        let (mut swapped, mut collected) = (Vec::new(), Vec::new());
        let us = |d: i64| Duration::from_micros(d.max(0) as u64);
        for (k, &s) in self.starts_us.iter().enumerate() {
            let e = self.starts_us.get(k + 1).copied().unwrap_or(i64::MAX);
            let a = &logs[0];
            let Some((_, ts)) = a.find(a.at(s), e, &["graph swapped"]) else { continue };
            swapped.push(us(ts - s));
            let later = logs[1..]
                .iter()
                .map(|l| l.find(l.at(ts), e, &["collected resources changed"]).map(|(_, t)| t))
                .collect::<Option<Vec<i64>>>();
            if let Some(v) = later {
                collected.push(us(v.into_iter().max().unwrap_or(ts) - ts));
            }
        }
        let mut add = |what: String, v: &[Duration]| {
            if !v.is_empty() {
                let s = stats(v);
                println!("{what}: {}", s.line());
                rows.push(info_row(format!("{what} (n={})", s.n), s.p50_p90_p99_max()));
            }
        };
        add(format!("{n}: log: rename -> A logs `graph swapped`"), &swapped);
        add(
            format!("{n}: log: A's `graph swapped` -> B and C log `collected resources changed` (later)"),
            &collected,
        );
        rows
    }
}

fn ratio(a: &Stats, b: &Stats) -> String {
    let r = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64();
    format!("{:.1}x / {:.1}x / {:.1}x", r(a.p50, b.p50), r(a.p99, b.p99), r(a.max, b.max))
}

pub fn propagation_lang(t: &Path) -> Result<Vec<Row>> {
    let etcd = Etcd::start(t)?;
    let mut trios = Vec::new();
    for kind in [Kind::Yaml, Kind::LangEdit, Kind::LangReadfile] {
        trios.push(Trio::start(t, kind, &etcd)?);
    }
    // Let the start-up settle (status writes, blocking threads).
    std::thread::sleep(Duration::from_secs(1));
    for i in 1..=WARMUP + ITERS {
        for trio in &mut trios {
            trio.round(i, i > WARMUP)?;
        }
    }
    let mut logs = Vec::new();
    for trio in &mut trios {
        logs.push(trio.stop()?);
    }
    drop(etcd);

    let mut rows = Vec::new();
    for (trio, logs) in trios.iter().zip(&logs) {
        rows.extend(trio.report(logs));
    }
    let yaml = stats(&trios[0].all);
    for trio in &trios[1..] {
        let s = stats(&trio.all);
        let r = ratio(&s, &yaml);
        println!("{} / yaml, p50 / p99 / max: {r}", trio.kind.name());
        rows.push(info_row(format!("{} / yaml, p50 / p99 / max", trio.kind.name()), r));
    }
    Ok(rows)
}
