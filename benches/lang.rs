//! mcl benchmarks: how long `mgmt graph lang` takes, and its peak memory, for programs of
//! 1,000 and 10,000 resources made by a `for` loop and by class includes (beside
//! `mgmt graph yaml` for the same graph, as the baseline); where the time goes (load and
//! parse, scope, the rest of compiling); and how type inference time grows with the depth of
//! generic function composition.
//!
//! `cargo bench --bench lang [graph-1k] [graph-10k] [depth]`

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use mgmt::frontend::lang::{self, HostInfo};
use support::machine::print_machine;
use support::report::{Row, info, ms, print_table, row, stats};
use support::{Bench, bin, exit_if_failed, run_each, selected};

const BENCHES: &[(&str, Bench<Path>)] = &[("graph-1k", graph_1k), ("graph-10k", graph_10k), ("depth", depth)];

fn main() {
    let benches = selected(BENCHES);
    let dir = tempfile::Builder::new().prefix("mgmt-bench-lang-").tempdir().expect("a temporary directory");
    print_machine(dir.path());
    let (rows, failed) = run_each(&benches, |_, f| f(dir.path()));
    print_table(&rows);
    exit_if_failed(&failed);
}

fn graph_1k(dir: &Path) -> Result<Vec<Row>> {
    graph_of("graph-1k", dir, 1_000, 11, "< 50 ms")
}

fn graph_10k(dir: &Path) -> Result<Vec<Row>> {
    graph_of("graph-10k", dir, 10_000, 5, "< 300 ms")
}

/// A program of `n` file resources made by a `for` over a list of names: each with an
/// interpolated path, content made by `fmt.printf` and a mode.
fn for_program(n: usize) -> String {
    let names: Vec<String> = (0..n).map(|i| format!("\"f{i}\"")).collect();
    format!(
        "import \"fmt\"\n\n$base = \"/tmp/mgmt-bench\"\n$names = [{}]\nfor $i, $name in $names {{\n\tfile \"${{base}}/${{name}}\" {{\n\t\tcontent => fmt.printf(\"value %d of %s\\n\", $i, $base),\n\t\tmode => \"0644\",\n\t}}\n}}\n",
        names.join(", ")
    )
}

/// The same `n` resources made by `n` includes of a class with two params.
fn class_program(n: usize) -> String {
    let mut text = String::from(
        "import \"fmt\"\n\n$base = \"/tmp/mgmt-bench\"\nclass entry($name, $i) {\n\tfile \"${base}/${name}\" {\n\t\tcontent => fmt.printf(\"value %d of %s\\n\", $i, $base),\n\t\tmode => \"0644\",\n\t}\n}\n",
    );
    for i in 0..n {
        let _ = writeln!(text, "include entry(\"f{i}\", {i})");
    }
    text
}

/// The same graph in YAML: the baseline.
fn yaml_graph(n: usize) -> String {
    let mut text = String::from("graph: bench\nresources:\n  file:\n");
    for i in 0..n {
        let _ = writeln!(
            text,
            "    - name: /tmp/mgmt-bench/f{i}\n      content: \"value {i} of /tmp/mgmt-bench\\n\"\n      mode: \"0644\""
        );
    }
    text
}

/// One run of `mgmt graph --format text ...`: its wall time, its peak memory (max RSS, from
/// `wait4`) and its output.
struct GraphRun {
    took: Duration,
    peak_kb: i64,
    output: String,
}

fn time_graph(dir: &Path, args: &[&str]) -> Result<GraphRun> {
    let out_path = dir.join("graph-output.txt");
    let out = std::fs::File::create(&out_path)?;
    let t0 = Instant::now();
    let child = Command::new(bin())
        .args(["graph", "--format", "text"])
        .args(args)
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by the kernel for this child only.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = t0.elapsed();
    if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut stderr);
        }
        bail!("mgmt graph {args:?} failed: {stderr}");
    }
    Ok(GraphRun { took, peak_kb: usage.ru_maxrss, output: std::fs::read_to_string(&out_path)? })
}

fn graph_of(
    bench: &'static str,
    dir: &Path,
    n: usize,
    runs: usize,
    target: &'static str,
) -> Result<Vec<Row>> {
    let yaml = dir.join(format!("graph-{n}.yaml"));
    std::fs::write(&yaml, yaml_graph(n))?;
    let yaml_arg = yaml.to_str().context("a UTF-8 path")?;
    let mut rows = Vec::new();
    for (shape, text) in [("for", for_program(n)), ("class", class_program(n))] {
        let module = dir.join(format!("lang-{shape}-{n}"));
        std::fs::create_dir_all(&module)?;
        std::fs::write(module.join("main.mcl"), text)?;
        let module_arg = module.to_str().context("a UTF-8 path")?;
        let (mut lang, mut base) = (Vec::new(), Vec::new());
        let (mut lang_peak, mut base_peak) = (0, 0);
        for _ in 0..runs {
            // Alternate, so both see the same machine.
            let l = time_graph(dir, &["lang", module_arg])?;
            let y = time_graph(dir, &["yaml", yaml_arg])?;
            if l.output != y.output {
                bail!("the {shape} program's graph differs from the YAML graph");
            }
            lang.push(l.took);
            base.push(y.took);
            lang_peak = lang_peak.max(l.peak_kb);
            base_peak = base_peak.max(y.peak_kb);
        }
        let p50 = stats(&lang).p50;
        rows.push(row(
            bench,
            format!("mgmt graph lang, {shape} (p50, min..max; peak RSS)"),
            format!("{}; {:.1} MB", stats(&lang).median_range(), lang_peak as f64 / 1024.0),
            target,
            Some(p50 < limit(target)),
        ));
        rows.push(info(
            bench,
            format!("mgmt graph yaml, same graph, beside {shape} (baseline)"),
            format!("{}; {:.1} MB", stats(&base).median_range(), base_peak as f64 / 1024.0),
        ));
        rows.extend(
            phases(&module, runs)?
                .into_iter()
                .map(|(name, value)| info(bench, format!("{shape}: {name}"), value)),
        );
    }
    Ok(rows)
}

fn limit(target: &str) -> Duration {
    let n: u64 = target.trim_start_matches("< ").trim_end_matches(" ms").parse().unwrap_or(0);
    Duration::from_millis(n)
}

/// In-process times of the stages, medians of `runs`: loading (reading and parsing), scope
/// resolution, and the whole compile (scope, types, evaluation and the graph check).
fn phases(module: &Path, runs: usize) -> Result<Vec<(&'static str, String)>> {
    let host =
        HostInfo { hostname: "bench".into(), deploy_root: module.to_path_buf(), ..HostInfo::default() };
    let (mut load, mut scope, mut compile) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t0 = Instant::now();
        let loaded =
            lang::load(module).map_err(|e| anyhow::anyhow!(lang::render_all(&e.diagnostics, &e.map)))?;
        load.push(t0.elapsed());
        let t0 = Instant::now();
        lang::scope::resolve(&loaded).map_err(|e| anyhow::anyhow!(lang::render_all(&e, &loaded.map)))?;
        scope.push(t0.elapsed());
        let t0 = Instant::now();
        lang::compile(&loaded, &host).map_err(|e| anyhow::anyhow!(lang::render_all(&e, &loaded.map)))?;
        compile.push(t0.elapsed());
    }
    Ok(vec![
        ("in process: load and parse (p50)", ms(stats(&load).p50)),
        ("in process: scope (p50)", ms(stats(&scope).p50)),
        ("in process: compile, scope to graph (p50)", ms(stats(&compile).p50)),
    ])
}

/// Generic functions composed `n` deep (`f{i}` calls `f{i-1}`), used at two types: type
/// inference must carry each use through the whole chain.
fn depth_program(n: usize) -> String {
    let mut text = String::from("func f0($x) {\n\t[$x]\n}\n");
    for i in 1..n {
        let _ = writeln!(text, "func f{i}($x) {{\n\tf{}($x)\n}}", i - 1);
    }
    let last = n - 1;
    let _ =
        writeln!(text, "$ints = f{last}(1)\n$strs = f{last}(\"a\")\nprint \"p\" {{\n\tmsg => $strs[0],\n}}");
    text
}

/// The time of scope resolution and type inference (no evaluation: calls nest at most 200
/// deep when run) by depth of composition.
fn depth(dir: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut previous: Option<Duration> = None;
    for n in [10, 100, 1_000, 10_000] {
        let module = dir.join(format!("depth-{n}"));
        std::fs::create_dir_all(&module)?;
        std::fs::write(module.join("main.mcl"), depth_program(n))?;
        let loaded =
            lang::load(&module).map_err(|e| anyhow::anyhow!(lang::render_all(&e.diagnostics, &e.map)))?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            let resolved = lang::scope::resolve(&loaded)
                .map_err(|e| anyhow::anyhow!(lang::render_all(&e, &loaded.map)))?;
            lang::infer::check(&loaded, &resolved)
                .map_err(|e| anyhow::anyhow!(lang::render_all(&e, &loaded.map)))?;
            times.push(t0.elapsed());
        }
        let p50 = stats(&times).p50;
        let growth = previous.map_or(String::new(), |p| {
            format!(" ({:.1}x the depth before)", p50.as_secs_f64() / p.as_secs_f64())
        });
        rows.push(info(
            "depth",
            format!("scope + types, composition depth {n} (p50)"),
            format!("{}{growth}", ms(p50)),
        ));
        previous = Some(p50);
    }
    Ok(rows)
}
