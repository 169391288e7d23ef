//! The talk's first example (examples/yaml/file1.yaml) run for real: files created, drift of
//! every kind repaired, live edits of the graph swapped in without touching unchanged files,
//! and Ctrl-C.

use std::fs;
use std::path::PathBuf;

use crate::common::{self, Agent, TestDir, identity, read};

const F1: &str = "i am f1\n";
const F2: &str = "i am f2\n";
const F3: &str = "i am f3\n";

/// The example from the repository with "/tmp/mgmt/" moved into the test directory.
fn example(t: &TestDir) -> String {
    let text = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/yaml/file1.yaml"))
        .expect("reading the example");
    assert!(text.contains("/tmp/mgmt/"), "the example no longer uses /tmp/mgmt/");
    text.replace("/tmp/mgmt/", &format!("{}/", t.p("mgmt")))
}

struct Files {
    f1: PathBuf,
    f2: PathBuf,
    f3: PathBuf,
    f4: PathBuf,
}

fn files(t: &TestDir) -> Files {
    Files { f1: t.path("mgmt/f1"), f2: t.path("mgmt/f2"), f3: t.path("mgmt/f3"), f4: t.path("mgmt/f4") }
}

fn start(t: &TestDir) -> (Agent, Files) {
    let yaml = t.write_yaml("file1.yaml", &example(t));
    let a = t.agent(&[], &yaml);
    let f = files(t);
    a.wait_content(&f.f1, F1);
    a.wait_content(&f.f2, F2);
    a.wait_content(&f.f3, F3);
    (a, f)
}

#[test]
fn example_creates_files_and_removes_f4() {
    let t = TestDir::new();
    // f4 exists before the agent starts: it must be removed.
    fs::create_dir_all(t.path("mgmt")).unwrap();
    fs::write(t.path("mgmt/f4"), "i am f4 and i should not be here\n").unwrap();
    let (a, f) = start(&t);
    a.wait_absent(&f.f4);
    a.wait_log("file[file4]: remove file");
    for (name, path) in [("file1", &f.f1), ("file2", &f.f2), ("file3", &f.f3)] {
        a.wait_log(&format!("file[{name}]: create file (8 bytes)"));
        assert_eq!(common::mode(path), 0o644, "{name}: default mode");
    }
    assert!(a.try_exit().is_none(), "the agent must keep running");
    assert_eq!(a.interrupt().code(), Some(0), "SIGINT exits 0");
}

#[test]
fn example_repairs_edits_deletes_and_intruders() {
    let t = TestDir::new();
    let (a, f) = start(&t);

    // Edited from outside: restored. (The agent may see the file truncated, before the
    // write, so the logged size is not checked.)
    fs::write(&f.f1, "drift\n").unwrap();
    a.wait_content(&f.f1, F1);
    a.wait_log("file[file1]: replace content (");

    // Deleted from outside: restored.
    fs::remove_file(&f.f2).unwrap();
    a.wait_content(&f.f2, F2);

    // f4 created from outside: removed.
    fs::write(&f.f4, "sneaky\n").unwrap();
    a.wait_absent(&f.f4);
    a.wait_log("file[file4]: remove file");

    // Truncated from outside: restored.
    fs::write(&f.f3, "").unwrap();
    a.wait_content(&f.f3, F3);

    assert!(a.try_exit().is_none(), "the agent must keep running");
    assert_eq!(a.interrupt().code(), Some(0), "SIGINT exits 0");
}

/// Make a directory vanish at once, as `rm -rf` does when nothing races it: move it away,
/// then delete the moved copy.
fn vanish(t: &TestDir, rel: &str, n: u32) {
    let away = t.path(&format!("{rel}.removed{n}"));
    fs::rename(t.path(rel), &away).unwrap();
    common::rm_rf(away);
}

#[test]
fn example_restores_a_removed_directory() {
    let t = TestDir::new();
    let (a, f) = start(&t);
    for n in 0..3 {
        vanish(&t, "mgmt", n);
        a.wait_content(&f.f1, F1);
        a.wait_content(&f.f2, F2);
        a.wait_content(&f.f3, F3);
        // The restored tree is watched again.
        fs::write(&f.f2, "drift again\n").unwrap();
        a.wait_content(&f.f2, F2);
        fs::write(&f.f4, "sneaky\n").unwrap();
        a.wait_absent(&f.f4);
    }
    assert_eq!(a.interrupt().code(), Some(0));
}

/// A real `rm -rf` races the agent, which starts recreating files while the tree is being
/// removed (so `rm` itself may have to be repeated). Afterwards every file must be back and
/// every file still watched.
#[test]
fn example_survives_rm_rf_racing_its_repairs() {
    let t = TestDir::new();
    let (a, f) = start(&t);
    for _ in 0..50 {
        // `rm -rf` itself, repeated while it reports "Directory not empty".
        let dir = t.path("mgmt");
        a.wait_for("rm -rf to succeed", || {
            std::process::Command::new("rm").arg("-rf").arg(&dir).status().unwrap().success()
        });
        a.wait_content(&f.f1, F1);
        a.wait_content(&f.f2, F2);
        a.wait_content(&f.f3, F3);
        for (path, want) in [(&f.f1, F1), (&f.f2, F2), (&f.f3, F3)] {
            fs::write(path, "drift\n").unwrap();
            a.wait_content(path, want);
        }
    }
    assert_eq!(a.interrupt().code(), Some(0));
}

/// Removing the directory twice in a row (the second time just after the agent recreated it)
/// must not lose the watches on it.
#[test]
fn example_survives_the_directory_removed_twice_in_a_row() {
    let t = TestDir::new();
    let (a, f) = start(&t);
    for n in 0..50 {
        vanish(&t, "mgmt", 2 * n);
        a.wait_for("the directory recreated", || t.path("mgmt").is_dir());
        vanish(&t, "mgmt", 2 * n + 1);
        a.wait_content(&f.f1, F1);
        a.wait_content(&f.f2, F2);
        a.wait_content(&f.f3, F3);
        for (path, want) in [(&f.f1, F1), (&f.f2, F2), (&f.f3, F3)] {
            fs::write(path, "drift\n").unwrap();
            a.wait_content(path, want);
        }
    }
    assert_eq!(a.interrupt().code(), Some(0));
}

/// Edit the graph while the agent runs, first in place, then the way editors save (write a
/// temp file, rename it over the graph). A changed `content` is applied; f2 and f3, whose
/// params did not change, are not rewritten.
#[test]
fn example_live_edit_swaps_only_what_changed() {
    let t = TestDir::new();
    let (a, f) = start(&t);
    let yaml = example(&t);
    let before2 = identity(&f.f2);
    let before3 = identity(&f.f3);

    // 1. In-place rewrite.
    let v2 = yaml.replace("i am f1\n", "i am f1, edited in place\n");
    assert_ne!(v2, yaml);
    t.write_yaml("file1.yaml", &v2);
    a.wait_content(&f.f1, "i am f1, edited in place\n");
    a.wait_log("graph swapped: 3 kept, 1 started, 1 stopped");

    // 2. Temp file renamed over the graph.
    let v3 = yaml.replace("i am f1\n", "i am f1, saved by an editor\n");
    t.replace_yaml("file1.yaml", &v3);
    a.wait_content(&f.f1, "i am f1, saved by an editor\n");
    a.wait_log_count("graph swapped: 3 kept, 1 started, 1 stopped", 2);

    // The new graph is the one being enforced.
    fs::write(&f.f1, "drift\n").unwrap();
    a.wait_content(&f.f1, "i am f1, saved by an editor\n");

    assert_eq!(identity(&f.f2), before2, "f2 (unchanged params) was rewritten");
    assert_eq!(identity(&f.f3), before3, "f3 (unchanged params) was rewritten");
    assert_eq!(read(&f.f2).as_deref(), Some(F2));
    for name in ["file2", "file3"] {
        assert_eq!(
            a.count(&format!("file[{name}]: create file")),
            1,
            "{name} created more than once:\n{}",
            a.stderr()
        );
        assert_eq!(a.count(&format!("file[{name}]: replace")), 0, "{name} rewritten:\n{}", a.stderr());
    }
    // Still watching the graph after a rename replaced it.
    let v4 = yaml.replace("i am f2\n", "i am f2, edited\n");
    t.write_yaml("file1.yaml", &v4);
    a.wait_content(&f.f2, "i am f2, edited\n");
    a.wait_content(&f.f1, F1);
    assert_eq!(identity(&f.f3), before3, "f3 (unchanged params) was rewritten");
    assert_eq!(a.interrupt().code(), Some(0), "SIGINT exits 0");
}

#[test]
fn sigterm_exits_zero() {
    let t = TestDir::new();
    let (a, _f) = start(&t);
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(a.wait_exit().code(), Some(0));
    assert!(a.stderr().contains("terminated; stopping"), "{}", a.stderr());
}
