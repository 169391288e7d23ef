//! pkg benchmark: a no-op check of 100 packages installed on this machine (all `installed`,
//! so autogrouped into one vertex: one read of dpkg's status file), against `apt-get install`
//! of the same packages, in the same run (see BENCHMARKS.md).
//!
//! Nothing on the host changes: the check runs without applying, and apt-get runs with
//! `--simulate --no-upgrade` (apt resolves the request against its cache and dpkg's status,
//! as a real install of installed packages does, and changes nothing).
//!
//! `cargo bench --bench pkg`; `PKG_BENCH_ROUNDS=N` sets the rounds (default 200 checks,
//! 20 of each command).

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mgmt::engine::assemble::assemble;
use mgmt::frontend::yaml;
use mgmt::resources::{ApplyCtx, Resource, Sends, Trigger};
use mgmt::world::local::LocalWorld;

use support::report::{Row, info, ms, print_table, row, stats};

const PACKAGES: usize = 100;
const TARGET: Duration = Duration::from_millis(20);

/// The first `PACKAGES` packages dpkg has installed, by name.
fn installed_packages() -> Result<Vec<String>, String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status} ${Package}\n"])
        .output()
        .map_err(|e| format!("dpkg-query: {e}"))?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("installed "))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names.truncate(PACKAGES);
    if names.len() < PACKAGES {
        return Err(format!("only {} packages are installed; {PACKAGES} are needed", names.len()));
    }
    Ok(names)
}

fn graph_yaml(names: &[String]) -> String {
    let mut y = String::from("graph: pkg-bench\nresources:\n  pkg:\n");
    for n in names {
        y.push_str(&format!("  - name: {n}\n    state: installed\n"));
    }
    y
}

/// Time `f` `rounds` times after a few warm-up calls.
fn sample(rounds: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..rounds.div_ceil(10).min(5) {
        f();
    }
    (0..rounds)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect()
}

fn summary(rows: &mut Vec<Row>, what: &'static str, samples: &[Duration], target: Option<Duration>) {
    let s = stats(samples);
    println!("{what}: n={} min {} p50 {} p99 {} max {}", s.n, ms(s.min), ms(s.p50), ms(s.p99), ms(s.max));
    match target {
        Some(t) => rows.push(row("pkg", format!("{what} p99"), ms(s.p99), "< 20 ms", Some(s.p99 < t))),
        None => rows.push(info("pkg", format!("{what} p99"), ms(s.p99))),
    }
    rows.push(info("pkg", format!("{what} p50"), ms(s.p50)));
}

/// The check path itself: the grouped vertex's `check_apply` without applying.
fn check_samples(yaml_text: &str, rounds: usize) -> Result<Vec<Duration>, String> {
    let spec = yaml::parse(yaml_text, "pkg-bench.yaml").map_err(|e| e.to_string())?;
    let graph = assemble(&spec, "bench", &[]).map_err(|e| e.to_string())?.graph;
    if graph.vertices.len() != 1 {
        return Err(format!("{PACKAGES} pkgs grouped into {} vertices, not 1", graph.vertices.len()));
    }
    let group: Arc<dyn Resource> = graph.vertices[0].clone();
    let world = Arc::new(LocalWorld::new("bench"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let mut failure = None;
    let samples = sample(rounds, || {
        let ctx = ApplyCtx::new(Trigger::default(), Sends::new(), world.clone());
        match rt.block_on(group.check_apply(&ctx, false)) {
            Ok(changes) if changes.is_empty() => {}
            Ok(changes) => failure = Some(format!("the check found changes: {:?}", changes[0].line)),
            Err(e) => failure = Some(e.to_string()),
        }
    });
    failure.map_or(Ok(samples), Err)
}

/// A command, to its end, successfully.
fn run_ok(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!("{cmd:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr))),
    }
}

fn main() {
    let rounds: usize = std::env::var("PKG_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(200);
    let names = match installed_packages() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("pkg bench SKIPPED: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("a temporary dir");
    let graph = dir.path().join("pkg-bench.yaml");
    let text = graph_yaml(&names);
    std::fs::write(&graph, &text).expect("writing the graph");
    let mut rows = Vec::new();
    let mut failed = false;
    println!("pkg: {PACKAGES} installed packages, state installed (one autogrouped vertex)");

    match check_samples(&text, rounds) {
        Ok(s) => summary(&mut rows, "no-op check (check_apply)", &s, Some(TARGET)),
        Err(e) => {
            println!("no-op check: FAILED: {e}");
            failed = true;
        }
    }
    let cmd_rounds = (rounds / 10).max(3);
    let mut errors = Vec::new();
    let mut run = |cmd: &mut Command| {
        if let Err(e) = run_ok(cmd) {
            errors.push(e);
        }
    };
    let bin = support::bin();
    let mgmt = sample(cmd_rounds, || {
        run(Command::new(&bin)
            .args(["--log-level", "warn", "run", "--tmp-prefix", "--noop", "--no-watch", "yaml"])
            .arg(&graph))
    });
    summary(&mut rows, "mgmt run --noop --no-watch (whole process)", &mgmt, None);
    println!(
        "baseline: apt-get install --simulate --no-upgrade of the same packages (the host is not changed)"
    );
    let apt = sample(cmd_rounds, || {
        run(Command::new("apt-get")
            .args(["install", "--simulate", "--no-upgrade", "-q"])
            .args(&names)
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive"))
    });
    summary(&mut rows, "apt-get install --simulate --no-upgrade", &apt, None);
    for e in errors.iter().take(3) {
        println!("command FAILED: {e}");
        failed = true;
    }
    print_table(&rows);
    if failed {
        std::process::exit(1);
    }
}
