//! kill -9 safety of file writes: a large managed file is corrupted from outside again and
//! again while the agent is SIGKILLed at varying moments of its repair. The file is always
//! whole (old or new, never partial), readers never see a partial file, and the temp files a
//! killed agent leaves behind are removed by the next agent's first check.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::common::{TestDir, entries_containing, read};

const CORRUPT: &str = "corrupted from outside\n";

/// About 3 MB of numbered lines.
fn big_content() -> String {
    (0..48_000).map(|i| format!("line {i:06} {}\n", "x".repeat(56))).collect()
}

fn big_graph(t: &TestDir, content: &str) -> PathBuf {
    let mut yaml = format!(
        "graph: big\nresources:\n  file:\n  - name: big\n    path: {}\n    content: |\n",
        t.p("out/big")
    );
    for line in content.lines() {
        yaml.push_str("      ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    t.write_yaml("g.yaml", &yaml)
}

/// Replace `path` atomically (so only the agent could ever produce a partial file).
fn corrupt(path: &Path) {
    let tmp = path.with_file_name("corrupt.partial");
    fs::write(&tmp, CORRUPT).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// Leave a temp file like a killed agent would (`.<name>.<random>.mgmt-tmp`, partly written).
fn plant_stale_temp(dir: &Path, name: &str, tag: &str) -> PathBuf {
    let p = dir.join(format!(".{name}.{tag}.mgmt-tmp"));
    fs::write(&p, "line 000000 xxxx partial").unwrap();
    p
}

fn temps(dir: &Path) -> Vec<String> {
    entries_containing(dir, ".mgmt-tmp")
}

#[test]
fn sigkill_never_leaves_a_partial_file_and_stale_temps_are_cleaned() {
    let t = TestDir::new();
    let content = Arc::new(big_content());
    assert!(content.len() > 3_000_000);
    let yaml = big_graph(&t, &content);
    let out = t.path("out");
    let big = out.join("big");
    fs::create_dir_all(&out).unwrap();

    // A reader that checks every version of the file it can open while all this happens.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, content, big) = (stop.clone(), content.clone(), big.clone());
        thread::spawn(move || {
            let (mut reads, mut bad) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                if let Ok(s) = fs::read_to_string(&big) {
                    reads += 1;
                    if s != *content && s != CORRUPT {
                        bad.push(s.len());
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
            (reads, bad)
        })
    };

    let mut left_temps = 0;
    for round in 0..12u64 {
        // Between agents: the file is corrupt, and a stale temp file of its own is lying
        // around (planted, on top of any a real kill left).
        corrupt(&big);
        let planted = plant_stale_temp(&out, "big", &format!("stale{round}"));

        let a = t.agent(&[], &yaml);
        a.wait_log(&format!("file[big]: replace content ({} -> {} bytes)", CORRUPT.len(), content.len()));
        a.wait_for("the big file repaired", || read(&big).as_deref() == Some(content.as_str()));
        assert!(!planted.exists(), "round {round}: the stale temp file was not removed by the first check");
        assert_eq!(temps(&out), Vec::<String>::new(), "round {round}: temp files remain after the repair");

        // Corrupt it twice more while running; kill during the second repair, at a moment
        // that moves a little further into the repair each round.
        corrupt(&big);
        a.wait_for("the big file repaired again", || read(&big).as_deref() == Some(content.as_str()));
        corrupt(&big);
        thread::sleep(Duration::from_micros(round * 2_500));
        a.kill9();

        match read(&big) {
            None => {}
            Some(s) => assert!(
                s == *content || s == CORRUPT,
                "round {round}: after SIGKILL the file is neither old nor new ({} bytes)",
                s.len()
            ),
        }
        left_temps += temps(&out).len();
    }

    // A last agent cleans whatever the last kill left and converges.
    corrupt(&big);
    let a = t.agent(&[], &yaml);
    a.wait_for("the big file repaired", || read(&big).as_deref() == Some(content.as_str()));
    a.wait_for("no temp files", || temps(&out).is_empty());
    assert_eq!(a.interrupt().code(), Some(0));

    stop.store(true, Ordering::SeqCst);
    let (reads, bad) = reader.join().unwrap();
    assert!(reads > 0, "the reader never saw the file");
    assert!(bad.is_empty(), "readers saw partial files (sizes {bad:?}) in {reads} reads");
    eprintln!("{reads} consistent reads; {left_temps} temp file(s) left by kills and cleaned");
}

/// Stale temp files of other paths in the same directory are not the file resource's to
/// remove (they may be another agent's write in flight).
#[test]
fn first_check_removes_only_its_own_stale_temps() {
    let t = TestDir::new();
    let out = t.path("out");
    fs::create_dir_all(&out).unwrap();
    let own = plant_stale_temp(&out, "f", "abc123");
    let other = plant_stale_temp(&out, "not-managed-here", "xyz789");
    let yaml = t.write_yaml(
        "g.yaml",
        &format!(
            "graph: g\nresources:\n  file:\n  - name: f\n    path: {}\n    content: \"f\\n\"\n",
            t.p("out/f")
        ),
    );
    t.run_to_end(&["--converged-timeout", "1"], &yaml).assert_code(0);
    assert_eq!(read(out.join("f")).as_deref(), Some("f\n"));
    assert!(!own.exists(), "its own stale temp file was kept");
    assert!(other.exists(), "another path's temp file was removed");
}

/// `--noop` changes nothing on disk, stale temp files included.
#[test]
fn noop_leaves_stale_temps_alone() {
    let t = TestDir::new();
    let out = t.path("out");
    fs::create_dir_all(&out).unwrap();
    let own = plant_stale_temp(&out, "f", "abc123");
    let yaml = t.write_yaml(
        "g.yaml",
        &format!(
            "graph: g\nresources:\n  file:\n  - name: f\n    path: {}\n    content: \"f\\n\"\n",
            t.p("out/f")
        ),
    );
    let run = t.run_to_end(&["--noop", "--converged-timeout", "1"], &yaml);
    run.assert_code(0).assert_stderr_has("file[f]: noop: would create file (2 bytes)");
    assert!(!out.join("f").exists());
    assert!(own.exists(), "--noop deleted {}", own.display());
}

/// SIGTERM or SIGINT in the middle of a large cold apply (many big files being written at
/// once): the agent stops cleanly and leaves no temp file behind, and no target file is
/// partial.
#[test]
fn a_clean_stop_during_a_large_apply_leaves_no_temp_files() {
    use nix::sys::signal::Signal;
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let t = TestDir::new();
        let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
        fs::write(t.path("src"), &body).unwrap();
        let mut yaml = String::from("graph: many\nresources:\n  file:\n");
        for i in 0..200 {
            yaml.push_str(&format!(
                "  - name: f{i}\n    path: {}/f{i}\n    source: {}\n",
                t.p("out"),
                t.p("src")
            ));
        }
        let yaml = t.write_yaml("g.yaml", &yaml);
        let a = t.agent(&[], &yaml);
        let out = t.path("out");
        a.wait_for("the apply to be under way", || {
            fs::read_dir(&out).map(|d| d.count() >= 20).unwrap_or(false)
        });
        a.signal(sig);
        a.wait_exit();
        assert_eq!(temps(&out), Vec::<String>::new(), "after {sig:?}");
        for e in fs::read_dir(&out).unwrap().flatten() {
            assert_eq!(fs::read(e.path()).unwrap(), body, "partial file {:?}", e.path());
        }
    }
}
