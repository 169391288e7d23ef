//! mcl benchmarks: how long `mgmt graph lang` takes for programs of 1,000 and 10,000
//! resources (beside `mgmt graph yaml` for the same graph, as the baseline), where the time
//! goes (load and parse, scope, the rest of compiling), and how compile time grows with the
//! depth of the values type inference must follow.
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

/// A program of `n` file resources, each with an interpolated path, content made by
/// `fmt.printf` and a mode; every tenth depends on the one before it. Half are written one
/// by one, half by a `for` loop over a list, as programs mix both.
fn program(n: usize) -> String {
    let mut text = String::from("import \"fmt\"\n\n$base = \"/tmp/mgmt-bench\"\n\n");
    let single = n / 2;
    for i in 0..single {
        let _ = writeln!(
            text,
            "file \"${{base}}/f{i}\" {{\n\tcontent => fmt.printf(\"value %d of %s\\n\", {i}, $base),\n\tmode => \"0644\",\n}}"
        );
        if i % 10 == 9 {
            let _ = writeln!(text, "File[\"/tmp/mgmt-bench/f{}\"] -> File[\"/tmp/mgmt-bench/f{i}\"]", i - 1);
        }
    }
    let names: Vec<String> = (single..n).map(|i| format!("\"g{i}\"")).collect();
    let _ = writeln!(
        text,
        "$names = [{}]\nfor $i, $name in $names {{\n\tfile \"${{base}}/${{name}}\" {{\n\t\tcontent => fmt.printf(\"value %d of %s\\n\", $i, $base),\n\t\tmode => \"0644\",\n\t}}\n}}",
        names.join(", ")
    );
    text
}

/// The same graph in YAML: the baseline.
fn yaml_graph(n: usize) -> String {
    let mut text = String::from("graph: bench\nresources:\n  file:\n");
    for i in 0..n {
        let name = if i < n / 2 { format!("f{i}") } else { format!("g{i}") };
        let k = if i < n / 2 { i } else { i - n / 2 };
        let _ = writeln!(
            text,
            "    - name: /tmp/mgmt-bench/{name}\n      content: \"value {k} of /tmp/mgmt-bench\\n\"\n      mode: \"0644\""
        );
    }
    text.push_str("edges:\n");
    for i in (9..n / 2).step_by(10) {
        let _ = writeln!(
            text,
            "  - name: e{i}\n    from: {{kind: file, name: /tmp/mgmt-bench/f{}}}\n    to: {{kind: file, name: /tmp/mgmt-bench/f{i}}}",
            i - 1
        );
    }
    text
}

/// The wall time of `mgmt graph --format text ...`, and its line count.
fn time_graph(args: &[&str]) -> Result<(Duration, usize)> {
    let t0 = Instant::now();
    let out = Command::new(bin()).args(["graph", "--format", "text"]).args(args).output()?;
    let took = t0.elapsed();
    if !out.status.success() {
        bail!("mgmt graph {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((took, out.stdout.iter().filter(|&&b| b == b'\n').count()))
}

fn graph_of(
    bench: &'static str,
    dir: &Path,
    n: usize,
    runs: usize,
    target: &'static str,
) -> Result<Vec<Row>> {
    let module = dir.join(format!("lang-{n}"));
    std::fs::create_dir_all(&module)?;
    std::fs::write(module.join("main.mcl"), program(n))?;
    let yaml = dir.join(format!("graph-{n}.yaml"));
    std::fs::write(&yaml, yaml_graph(n))?;
    let module_arg = module.to_str().context("a UTF-8 path")?;
    let yaml_arg = yaml.to_str().context("a UTF-8 path")?;

    let (mut lang_times, mut yaml_times) = (Vec::new(), Vec::new());
    let mut lines = (0, 0);
    for _ in 0..runs {
        // Alternate, so both see the same machine.
        let (t, l) = time_graph(&["lang", module_arg])?;
        lang_times.push(t);
        lines.0 = l;
        let (t, l) = time_graph(&["yaml", yaml_arg])?;
        yaml_times.push(t);
        lines.1 = l;
    }
    if lines.0 != lines.1 {
        bail!("the mcl graph has {} lines of text, the YAML graph {}", lines.0, lines.1);
    }
    let lang_stats = stats(&lang_times);
    let phases = phases(&module, runs)?;
    let mut rows = vec![
        row(
            bench,
            "mgmt graph lang (p50, min..max)",
            lang_stats.median_range(),
            target,
            Some(lang_stats.p50 < limit(target)),
        ),
        info(bench, "mgmt graph yaml, same graph (baseline)", stats(&yaml_times).median_range()),
    ];
    rows.extend(phases.into_iter().map(|(name, value)| info(bench, name, value)));
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

/// Calls may nest at most this deep at run time (the evaluator's bound).
const MAX_CALL_CHAIN: usize = 150;

/// A chain of `n` binds, each one more than the last, and a chain of nested generic function
/// applications over a list (as long as `n`, up to the evaluator's bound on nested calls):
/// inference must carry a type through all of them.
fn depth_program(n: usize) -> String {
    let calls = n.min(MAX_CALL_CHAIN);
    let mut text = String::from("import \"fmt\"\n$x0 = 1\n$f0 = func($l) { $l }\n");
    for i in 1..n {
        let _ = writeln!(text, "$x{i} = $x{} + 1", i - 1);
    }
    for i in 1..calls {
        let _ = writeln!(text, "$f{i} = func($l) {{ $f{}($l) }}", i - 1);
    }
    let _ = writeln!(
        text,
        "print \"p\" {{\n\tmsg => fmt.printf(\"%d %d\", $x{}, len($list)),\n}}\n$list = $f{}([1, 2])",
        n - 1,
        calls - 1
    );
    text
}

fn depth(dir: &Path) -> Result<Vec<Row>> {
    let host = HostInfo { hostname: "bench".into(), deploy_root: dir.to_path_buf(), ..HostInfo::default() };
    let mut rows = Vec::new();
    let mut previous: Option<Duration> = None;
    for n in [10, 100, 1_000, 10_000] {
        let module = dir.join(format!("depth-{n}"));
        std::fs::create_dir_all(&module)?;
        std::fs::write(module.join("main.mcl"), depth_program(n))?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let loaded =
                lang::load(&module).map_err(|e| anyhow::anyhow!(lang::render_all(&e.diagnostics, &e.map)))?;
            let t0 = Instant::now();
            lang::compile(&loaded, &host).map_err(|e| anyhow::anyhow!(lang::render_all(&e, &loaded.map)))?;
            times.push(t0.elapsed());
        }
        let p50 = stats(&times).p50;
        let growth = previous.map_or(String::new(), |p| {
            format!(" ({:.1}x the depth before)", p50.as_secs_f64() / p.as_secs_f64())
        });
        rows.push(info("depth", format!("compile, depth {n} (p50)"), format!("{}{growth}", ms(p50))));
        previous = Some(p50);
    }
    Ok(rows)
}
