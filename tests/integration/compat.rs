//! The upstream-compatibility corpus, `tests/compat/*.yaml`: graphs that spell out the
//! params of every kind with upstream's names. Each must be accepted by `mgmt graph yaml`
//! and by `mgmt run --noop --no-watch yaml`, which applies nothing.
//!
//! A graph whose check needs systemd or its D-Bus services (`systemd-*.yaml`) is checked in
//! noop mode inside a sandbox's systemd (`common/systemd.rs`); the others on this host.

use std::path::{Path, PathBuf};

use crate::common::systemd::Sandbox;
use crate::common::{Agent, TestDir};

/// Where a sandboxed graph is written inside its sandbox.
const INSIDE: &str = "/root/mgmt-compat-test/g.yaml";

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

fn needs_systemd(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n.to_string_lossy().starts_with("systemd-"))
}

#[track_caller]
fn assert_shown(t: &TestDir, path: &str) {
    let shown = Agent::spawn(t, &["graph", "yaml", path]);
    let status = shown.wait_exit();
    assert_eq!(status.code(), Some(0), "graph {path}:\n{}", shown.stderr());
}

#[test]
fn every_compat_graph_is_accepted_by_graph_and_by_a_noop_run() {
    for file in corpus().iter().filter(|f| !needs_systemd(f)) {
        let t = TestDir::new();
        let path = file.to_str().unwrap();
        assert_shown(&t, path);
        let run = t.run_to_end(&["--noop", "--no-watch"], file);
        assert_eq!(run.status.code(), Some(0), "run {path}:\n{}", run.stderr);
        assert!(!Path::new("/tmp/mgmt-compat").exists(), "a noop run applied something");
    }
}

#[test]
fn every_systemd_compat_graph_is_accepted_by_graph_and_by_a_noop_run_under_systemd() {
    let files: Vec<PathBuf> = corpus().into_iter().filter(|f| needs_systemd(f)).collect();
    assert!(!files.is_empty(), "no systemd-*.yaml in the corpus");
    for file in &files {
        assert_shown(&TestDir::new(), file.to_str().unwrap());
    }
    let Some(sb) = Sandbox::start() else { return };
    for file in &files {
        let before = sb.sh("find /etc /var/lib/systemd -newer /proc/1 -print 2>/dev/null | sort");
        let yaml = std::fs::read_to_string(file).unwrap();
        let out = sb.mgmt_once(INSIDE, &yaml, &["--noop"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "run {} in the sandbox:\n{stderr}", file.display());
        let after = sb.sh("find /etc /var/lib/systemd -newer /proc/1 -print 2>/dev/null | sort");
        assert_eq!(before, after, "a noop run of {} changed files under /etc", file.display());
        assert!(sb.read("/tmp/mgmt-compat").is_none(), "a noop run applied something");
    }
}
