//! What the benchmarks share: the binary under test, running the benchmarks named on the
//! command line, the results table and statistics, child processes, /proc readings and
//! waiting for file content. Each bench includes it with `#[path]`.

// Every bench uses a part of it.
#![allow(dead_code)]

pub mod machine;
pub mod process;
pub mod procfs;
pub mod report;
pub mod wait;

use std::time::Instant;

use anyhow::Result;

use report::Row;

/// The binary under test: the one cargo built, or `$MGMT_BENCH_BIN` (to measure another
/// build, e.g. an older commit, with this bench).
pub fn bin() -> String {
    std::env::var("MGMT_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mgmt").to_string())
}

/// A benchmark: it runs in `A` (its bench's context) and returns rows of the results table.
pub type Bench<A> = fn(&A) -> Result<Vec<Row>>;

/// The benchmarks named on the command line (every non-flag argument: `cargo bench` passes
/// `--bench`), in the order of `benches`; all of them when none is named. An unknown name
/// ends the process with status 2.
pub fn selected<A: ?Sized>(benches: &[(&'static str, Bench<A>)]) -> Vec<(&'static str, Bench<A>)> {
    let names: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for n in &names {
        if !benches.iter().any(|(b, _)| b == n) {
            let known: Vec<&str> = benches.iter().map(|(b, _)| *b).collect();
            eprintln!("unknown benchmark `{n}` (known: {})", known.join(", "));
            std::process::exit(2);
        }
    }
    benches.iter().filter(|(b, _)| names.is_empty() || names.iter().any(|n| n == b)).copied().collect()
}

/// Run each benchmark with `run` under a heading, and say how long it took; a failure is
/// printed and the next one runs. Returns every row and the names of the failed benchmarks.
pub fn run_each<A: ?Sized>(
    benches: &[(&'static str, Bench<A>)],
    mut run: impl FnMut(&'static str, Bench<A>) -> Result<Vec<Row>>,
) -> (Vec<Row>, Vec<&'static str>) {
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for &(name, f) in benches {
        println!("\n== {name} ==");
        let t0 = Instant::now();
        let result = run(name, f);
        println!("({name} took {:.1} s)", t0.elapsed().as_secs_f64());
        match result {
            Ok(r) => rows.extend(r),
            Err(e) => {
                println!("{name}: FAILED: {e:#}");
                failed.push(name);
            }
        }
    }
    (rows, failed)
}

/// Name the failed benchmarks and exit with status 1, if there are any.
pub fn exit_if_failed(failed: &[&str]) {
    if !failed.is_empty() {
        println!("\nfailed: {}", failed.join(", "));
        std::process::exit(1);
    }
}
