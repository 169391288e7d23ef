//! Cluster benchmarks of the `mgmt` agent, with a real etcd and real agents: export -> collect
//! propagation, and deploys.
//!
//! ```text
//! cargo bench --bench cluster                 # all of them
//! cargo bench --bench cluster -- propagation  # one (or several) of: propagation propagation_lang deploy deploy50 bigtree bigtree10k transport
//! ```
//!
//! One module a topic: `propagation` (export -> collect), `propagation_lang` (the same demo in
//! YAML and in mcl, side by side), `deploy` (`deploy`, `deploy50`),
//! `bigtree` (`bigtree`, `bigtree10k`) and `transport`; what they share is in `etcd` (an etcd
//! member on free loopback ports), `logs` (the agents' logs by timestamp), `deploy_round` (one
//! timed `mgmt deploy`) and `../support` (shared with the other benches). This file only
//! dispatches the names.
//!
//! Environment: `MGMT_ETCD_BINARY` (default `/usr/bin/etcd`); `MGMT_BENCH_LOG=LEVEL` runs the
//! agents with `--log-level LEVEL` (a tracing filter, e.g. `debug` or `info,h2=debug`);
//! `MGMT_BENCH_KEEP_LOGS=DIR` copies the agents' and etcd's logs into DIR at the end. etcd and
//! the agents are stopped and the temp dir removed when the bench ends or fails; a killed bench
//! takes its children with it (`PR_SET_PDEATHSIG`).
//!
//! `MGMT_BENCH_BIN=PATH` runs another `mgmt` binary (e.g. one built from an older commit)
//! instead of the one cargo built with the bench.
//!
//! Methodology and results: BENCHMARKS.md, sections "Cluster: export -> collect propagation"
//! and "Deploys".

#[path = "../support/mod.rs"]
mod support;

mod bigtree;
mod deploy;
mod deploy_round;
mod etcd;
mod logs;
mod propagation;
mod propagation_lang;
mod transport;

use std::fs;
use std::path::Path;

use support::{Bench, exit_if_failed, machine::print_machine, report::print_table, run_each, selected};

/// Every benchmark, in the order `cargo bench --bench cluster` runs them.
const BENCHES: &[(&str, Bench<Path>)] = &[
    ("propagation", propagation::propagation),
    ("propagation_lang", propagation_lang::propagation_lang),
    ("deploy", deploy::deploy3),
    ("deploy50", deploy::deploy50),
    ("bigtree", bigtree::bigtree),
    ("bigtree10k", bigtree::bigtree10k),
    ("transport", transport::transport),
];

fn main() {
    let benches = selected(BENCHES);
    let dir =
        tempfile::Builder::new().prefix("mgmt-cluster-bench-").tempdir().expect("creating the bench dir");
    print_machine(dir.path());
    let (rows, failed) = run_each(&benches, |name, f| {
        // propagation works in the run directory itself (as it always did), the others in a
        // directory of their own inside it.
        let t = if name == "propagation" { dir.path().to_path_buf() } else { dir.path().join(name) };
        fs::create_dir_all(&t)?;
        f(&t)
    });
    print_table(&rows);
    drop(dir);
    exit_if_failed(&failed);
}
