//! The upstream-compatibility corpus, `tests/compat/*.yaml`: graphs that spell out the
//! params of every kind with upstream's names. Each must be accepted by `mgmt graph yaml`
//! and by `mgmt run --noop --no-watch yaml`, which applies nothing.

use std::path::PathBuf;

use crate::common::{Agent, TestDir};

fn corpus() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the corpus is in {}", dir.display());
    files
}

#[test]
fn every_compat_graph_is_accepted_by_graph_and_by_a_noop_run() {
    for file in corpus() {
        let t = TestDir::new();
        let path = file.to_str().unwrap();
        let shown = Agent::spawn(&t, &["graph", "yaml", path]);
        let status = shown.wait_exit();
        assert_eq!(status.code(), Some(0), "graph {path}:\n{}", shown.stderr());
        let run = t.run_to_end(&["--noop", "--no-watch"], &file);
        // A `svc` (and any `systemd-*` graph) is checked against systemd, which this host may
        // not run: what matters here is that the graph was accepted, so only its validation
        // is asserted.
        let svc = file.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with("svc") || n.starts_with("systemd-")
        });
        if svc {
            assert!(!run.stderr.contains("field `"), "run {path}:\n{}", run.stderr);
        } else {
            assert_eq!(run.status.code(), Some(0), "run {path}:\n{}", run.stderr);
        }
        assert!(!std::path::Path::new("/tmp/mgmt-compat").exists(), "a noop run applied something");
    }
}
