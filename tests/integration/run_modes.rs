//! How `mgmt run` runs: `--converged-timeout`, `--no-watch`, `--noop` (global and as a meta
//! param on one resource), `--prefix` (its mode and its lock), `--tmp-prefix`, `--hostname`,
//! and the checks of `--seeds` and `--lease-ttl`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::{Agent, TestDir, entries_containing, identity, mode, poll_until, read};

fn two_files(t: &TestDir) -> String {
    format!(
        r#"graph: two
resources:
  file:
  - name: one
    path: {one}
    content: "one\n"
  - name: two
    path: {two}
    content: "two\n"
"#,
        one = t.p("out/one"),
        two = t.p("out/two"),
    )
}

#[test]
fn converged_timeout_exits_zero_once_in_the_desired_state() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0).assert_stderr_has("converged: all 2 resources are in their desired state");
    assert_eq!(read(t.path("out/one")).as_deref(), Some("one\n"));
    assert_eq!(read(t.path("out/two")).as_deref(), Some("two\n"));
    // The temporary prefix is removed on exit.
    assert_eq!(
        entries_containing(t.path("tmp"), "mgmt-"),
        Vec::<String>::new(),
        "--tmp-prefix left its directory behind"
    );
}

#[test]
fn converged_timeout_exits_one_when_a_resource_failed() {
    let t = TestDir::new();
    let yaml = format!("{}  exec:\n  - name: fails\n    cmd: \"false\"\n", two_files(&t));
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(1)
        .assert_stderr_has("converged: exec[fails] is not in its desired state: `false` exited with code 1");
    assert_eq!(read(t.path("out/one")).as_deref(), Some("one\n"));
}

/// `--no-watch` checks and applies every resource once and exits; nothing is watched, so
/// drift after the run stays. (The exec keeps the graph busy a little, see the next test.)
#[test]
fn no_watch_applies_once_and_exits() {
    let t = TestDir::new();
    let yaml = format!(
        "{}  exec:\n  - name: slow\n    shell: /bin/sh\n    cmd: \"sleep 0.2; echo ran >> {log}\"\n",
        two_files(&t),
        log = t.p("exec.log")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("applied once: all 3 resources are in their desired state");
    assert_eq!(read(t.path("out/one")).as_deref(), Some("one\n"));
    assert_eq!(read(t.path("exec.log")).as_deref(), Some("ran\n"));

    // A second one-shot run repairs drift and runs the command once more.
    fs::write(t.path("out/one"), "drift\n").unwrap();
    let two = identity(t.path("out/two"));
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[one]: replace content (6 -> 4 bytes)");
    assert_eq!(read(t.path("out/one")).as_deref(), Some("one\n"));
    assert_eq!(identity(t.path("out/two")), two, "an unchanged file was rewritten");
    assert_eq!(read(t.path("exec.log")).as_deref(), Some("ran\nran\n"));
}

#[test]
fn no_watch_exits_one_when_a_resource_failed() {
    let t = TestDir::new();
    let yaml = format!(
        "{}  exec:\n  - name: fails\n    shell: /bin/sh\n    cmd: \"sleep 0.2; exit 4\"\n",
        two_files(&t)
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(1).assert_stderr_has(
        "applied once: exec[fails] is not in its desired state: `sleep 0.2; exit 4` exited with code 4",
    );
    assert_eq!(read(t.path("out/two")).as_deref(), Some("two\n"));
}

/// A graph whose vertices finish at once must still end a `--no-watch` run. Run it many
/// times: the run must exit every time.
#[test]
fn no_watch_always_exits_on_a_fast_graph() {
    let t = TestDir::new();
    let yaml = t.write_yaml(
        "g.yaml",
        "graph: fast\nresources:\n  noop:\n  - name: a\n  print:\n  - name: b\n    msg: hi\n",
    );
    for i in 0..40 {
        let a = t.agent(&["--no-watch"], &yaml);
        let exited = poll_until(|| a.try_exit().is_some(), std::time::Duration::from_secs(5));
        assert!(exited, "run {i}: `mgmt run --no-watch` still running after 5s:\n{}", a.stderr());
        assert_eq!(a.try_exit().and_then(|s| s.code()), Some(0), "run {i}:\n{}", a.stderr());
    }
}

/// A world with drift in every direction: wrong content and mode, a missing file in a
/// missing directory, a file that must go, a directory to create, a command and a print.
fn drifted(t: &TestDir) -> String {
    fs::create_dir_all(t.path("d")).unwrap();
    fs::write(t.path("d/f1"), "old\n").unwrap();
    fs::set_permissions(t.path("d/f1"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(t.path("d/f3"), "remove me\n").unwrap();
    format!(
        r#"graph: drifted
resources:
  file:
  - name: f1
    path: {f1}
    content: "i am f1\n"
    mode: "0644"
  - name: f2
    path: {f2}
    content: "i am f2\n"
  - name: f3
    path: {f3}
    state: absent
  - name: dir
    path: {dir}/
  exec:
  - name: e
    cmd: touch {marker}
  print:
  - name: p
    msg: hello from print
"#,
        f1 = t.p("d/f1"),
        f2 = t.p("d/new/f2"),
        f3 = t.p("d/f3"),
        dir = t.p("d/sub"),
        marker = t.p("d/marker"),
    )
}

#[test]
fn noop_changes_nothing_and_reports_each_change() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &drifted(&t));
    let f1 = identity(t.path("d/f1"));
    let out = t.run_to_end(&["--noop", "--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    for line in [
        "file[f1]: noop: would replace content (sensitive)",
        "file[f1]: noop: would set mode 0600 -> 0644",
        &format!("file[f2]: noop: would create parent directory {}", t.p("d/new")),
        "file[f2]: noop: would create file (8 bytes)",
        "file[f3]: noop: would remove file",
        "file[dir]: noop: would create directory",
        &format!("exec[e]: noop: would run `touch {}` (start)", t.p("d/marker")),
        "print[p]: noop: would print \"hello from print\"",
        "converged (noop): 6 of 6 resources would change: ",
    ] {
        out.assert_stderr_has(line);
    }
    // Untouched: content, mode, inode; nothing created, nothing removed, nothing printed.
    assert_eq!(read(t.path("d/f1")).as_deref(), Some("old\n"));
    assert_eq!(mode(t.path("d/f1")), 0o600);
    assert_eq!(identity(t.path("d/f1")), f1);
    assert!(!t.path("d/new").exists());
    assert_eq!(read(t.path("d/f3")).as_deref(), Some("remove me\n"));
    assert!(!t.path("d/sub").exists());
    assert!(!t.path("d/marker").exists());
    assert_eq!(out.stdout, "", "noop printed");
    assert!(!out.stderr.contains("] create") && !out.stderr.contains(": replace"), "{}", out.stderr);
}

/// `--noop` while running: drift is reported, not repaired.
#[test]
fn noop_agent_reports_drift_without_repairing_it() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    fs::create_dir_all(t.path("out")).unwrap();
    fs::write(t.path("out/one"), "one\n").unwrap();
    let a = t.agent(&["--noop"], &yaml);
    a.wait_log("file[two]: noop: would create file (4 bytes)");
    fs::write(t.path("out/one"), "edited\n").unwrap();
    a.wait_log("file[one]: noop: would replace content (7 -> 4 bytes)");
    assert_eq!(read(t.path("out/one")).as_deref(), Some("edited\n"));
    assert!(!t.path("out/two").exists());
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn meta_noop_applies_to_its_resource_only() {
    let t = TestDir::new();
    fs::create_dir_all(t.path("out")).unwrap();
    fs::write(t.path("out/one"), "old\n").unwrap();
    let yaml = format!(
        r#"graph: partly
resources:
  file:
  - name: one
    path: {one}
    content: "one\n"
    meta: {{noop: true}}
  - name: two
    path: {two}
    content: "two\n"
"#,
        one = t.p("out/one"),
        two = t.p("out/two"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&["--converged-timeout", "1"], &yaml);
    a.wait_content(&t.path("out/two"), "two\n");
    a.wait_log("file[one]: noop: would replace content (4 -> 4 bytes)");
    // The normal one is enforced while running.
    fs::write(t.path("out/two"), "drift\n").unwrap();
    a.wait_content(&t.path("out/two"), "two\n");
    let status = a.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", a.stderr());
    assert!(
        a.stderr().contains("converged (noop): 1 of 2 resources would change: file[one]"),
        "{}",
        a.stderr()
    );
    assert_eq!(read(t.path("out/one")).as_deref(), Some("old\n"), "a meta-noop resource changed its file");
    assert!(a.stderr().contains("file[two]: create file (4 bytes)"));
}

#[test]
fn prefix_is_created() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    let prefix = t.path("state/deep/prefix");
    let prefix_s = prefix.to_str().unwrap();
    // `--prefix` replaces `--tmp-prefix` here (the two conflict).
    let a = Agent::spawn(
        &t,
        &["run", "--prefix", prefix_s, "--converged-timeout", "1", "yaml", yaml.to_str().unwrap()],
    );
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    assert!(prefix.is_dir(), "--prefix was not created");
    assert!(a.stderr().contains(&format!("prefix {prefix_s})")), "{}", a.stderr());
    assert_eq!(read(t.path("out/one")).as_deref(), Some("one\n"));
}

#[test]
fn prefix_and_tmp_prefix_conflict() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    let out = t.run_to_end(&["--prefix", t.p("p").as_str(), "--converged-timeout", "1"], &yaml);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    out.assert_stderr_has("--prefix");
    assert!(!t.path("out").exists() && !t.path("p").exists());
}

#[test]
fn hostname_is_used_and_must_not_be_empty() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    let out = t.run_to_end(&["--hostname", "test-host-42", "--converged-timeout", "1"], &yaml);
    out.assert_code(0).assert_stderr_has("on host test-host-42 (2 resources");
    assert_eq!(read(t.path("out/one")).as_deref(), Some("one\n"));

    fs::remove_dir_all(t.path("out")).unwrap();
    let out = t.run_to_end(&["--hostname", " ", "--converged-timeout", "1"], &yaml);
    out.assert_code(1).assert_stderr_has("mgmt: error: --hostname must not be empty");
    assert!(!t.path("out").exists());
}

#[test]
fn log_level_error_hides_info_lines() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    let y = yaml.to_str().unwrap();
    let a = Agent::spawn(
        &t,
        &["--log-level", "error", "run", "--tmp-prefix", "--converged-timeout", "1", "yaml", y],
    );
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    assert_eq!(read(t.path("out/two")).as_deref(), Some("two\n"));
    assert_eq!(a.stderr(), "", "info lines logged at --log-level error");
}

/// `mgmt run --prefix <prefix> <args...> yaml <yaml>`.
fn agent_on_prefix(t: &TestDir, prefix: &std::path::Path, args: &[&str], yaml: &std::path::Path) -> Agent {
    let mut argv = vec!["run", "--prefix", prefix.to_str().unwrap()];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["yaml", yaml.to_str().unwrap()]);
    Agent::spawn(t, &argv)
}

#[test]
fn the_prefix_is_private_to_the_agent() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    // Created, parents included, with mode 0700.
    let prefix = t.path("state/deep/prefix");
    let a = agent_on_prefix(&t, &prefix, &["--no-watch"], &yaml);
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    for p in [t.path("state"), t.path("state/deep"), prefix.clone()] {
        assert_eq!(mode(&p), 0o700, "{}", p.display());
    }
    // An existing prefix that others can read is made private.
    let open = t.path("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    let a = agent_on_prefix(&t, &open, &["--no-watch"], &yaml);
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    assert_eq!(mode(&open), 0o700);
    assert!(a.stderr().contains("was mode 0755; made it 0700"), "{}", a.stderr());
    // A temporary prefix is created private, not narrowed afterwards.
    let a = Agent::spawn(&t, &["run", "--tmp-prefix", "--no-watch", "yaml", yaml.to_str().unwrap()]);
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    assert!(!a.stderr().contains("made it 0700"), "{}", a.stderr());
}

#[test]
fn a_second_agent_on_a_prefix_in_use_refuses_to_start() {
    let t = TestDir::new();
    let prefix = t.path("p");
    let first_yaml = t.write_yaml("g.yaml", &two_files(&t));
    let first = agent_on_prefix(&t, &prefix, &[], &first_yaml);
    first.wait_content(&t.path("out/one"), "one\n");

    // Whatever it runs, one-shot or not: exit 1, nothing applied, the first one untouched.
    let other = t.write_yaml(
        "other.yaml",
        &format!("graph: other\nresources:\n  file:\n  - name: x\n    path: {}\n    content: x\n", t.p("x")),
    );
    for extra in [&["--no-watch"][..], &[]] {
        let second = agent_on_prefix(&t, &prefix, extra, &other);
        let status = second.wait_exit();
        assert_eq!(status.code(), Some(1), "{}", second.stderr());
        let want = format!(
            "mgmt: error: another mgmt agent (pid {}) is running with prefix {}",
            first.pid(),
            prefix.display()
        );
        assert!(second.stderr().contains(&want), "{}", second.stderr());
        assert!(!t.path("x").exists(), "the refused agent applied its graph");
    }
    assert!(first.try_exit().is_none(), "{}", first.stderr());
    fs::write(t.path("out/one"), "drift\n").unwrap();
    first.wait_content(&t.path("out/one"), "one\n");

    // Once the first has stopped (even killed), the prefix is free.
    first.kill9();
    let next = agent_on_prefix(&t, &prefix, &["--no-watch"], &other);
    assert_eq!(next.wait_exit().code(), Some(0), "{}", next.stderr());
    assert_eq!(read(t.path("x")).as_deref(), Some("x"));

    // Temporary prefixes never collide.
    let a = t.agent(&[], &first_yaml);
    let b = t.run_to_end(&["--no-watch"], &other);
    b.assert_code(0);
    assert!(a.try_exit().is_none(), "{}", a.stderr());
}

#[test]
fn seed_urls_are_checked_before_anything_runs() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    for (seed, why) in [
        ("http://127.0.0.1:99999", "invalid port `99999`"),
        ("http://127.0.0.1:0", "invalid port `0`"),
        ("http://127.0.0.1:", "empty port"),
        ("http://root:secret@127.0.0.1:2379", "user names and passwords do not go in seed URLs"),
        ("http://127.0.0.1:2379/v3/kv", "a path, query or fragment is not supported"),
        ("ftp://127.0.0.1:2379", "unsupported scheme `ftp`"),
    ] {
        // One bad URL among good ones is enough.
        let seeds = format!("http://127.0.0.1:2379,{seed}");
        let out = t.run_to_end(&["--seeds", &seeds, "--no-watch"], &yaml);
        assert_eq!(out.status.code(), Some(2), "{seed}: {}", out.stderr);
        out.assert_stderr_has(&format!("invalid value '{seed}' for '--seeds <URLS>': {why}"));
        assert!(!t.path("out").exists(), "{seed}: the graph was applied");
        // The same check for every command that talks to etcd, and for MGMT_SEEDS.
        for argv in [vec!["status", "--seeds", &seeds], vec!["deploy", "--seeds", &seeds, "list"]] {
            let a = Agent::spawn(&t, &argv);
            assert_eq!(a.wait_exit().code(), Some(2), "{argv:?}: {}", a.stderr());
            assert!(a.stderr().contains(why), "{argv:?}: {}", a.stderr());
        }
    }
}

#[test]
fn seeds_from_the_environment_are_checked_too() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(["status"])
        .env("MGMT_SEEDS", "ftp://127.0.0.1:2379")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported scheme `ftp`"));
}

#[test]
fn https_seeds_need_the_ca_before_anything_runs() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    let seeds = "http://127.0.0.1:2379,https://127.0.0.1:2379";
    let out = t.run_to_end(&["--seeds", seeds, "--no-watch"], &yaml);
    out.assert_code(1).assert_stderr_has("mgmt: error: https:// seeds need --etcd-ca");
    assert!(!t.path("out").exists(), "the graph was applied");
    for argv in [vec!["status", "--seeds", seeds], vec!["deploy", "--seeds", seeds, "list"]] {
        let a = Agent::spawn(&t, &argv);
        assert_eq!(a.wait_exit().code(), Some(1), "{argv:?}: {}", a.stderr());
        assert!(a.stderr().contains("https:// seeds need --etcd-ca"), "{argv:?}: {}", a.stderr());
    }
}

#[test]
fn a_lease_ttl_above_etcds_maximum_is_refused() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    for ttl in ["9000000001", "99999999999999999"] {
        let out =
            t.run_to_end(&["--seeds", "http://127.0.0.1:2379", "--lease-ttl", ttl, "--no-watch"], &yaml);
        assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
        out.assert_stderr_has(&format!("invalid value '{ttl}' for '--lease-ttl <SECONDS>'"));
        out.assert_stderr_has("2..=9000000000");
        assert!(!t.path("out").exists());
    }
}

/// A graph with one file resource whose content is `word`, plus `extra` resources.
fn word_graph(t: &TestDir, word: &str) -> String {
    format!(
        "graph: words\nresources:\n  file:\n  - name: w\n    path: {}\n    content: \"{word}\\n\"\n",
        t.p("out/w")
    )
}

/// A writer that pauses in the middle of a file (scp, `cat >`, a slow disk) is read once it
/// closes the file, never half-written.
#[test]
fn a_graph_file_is_read_only_once_its_writer_closes_it() {
    use std::io::Write;
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &word_graph(&t, "v1"));
    let a = t.agent(&[], &yaml);
    a.wait_content(&t.path("out/w"), "v1\n");
    // The first half is a valid graph on its own (without the second file).
    let full =
        format!("{}  - name: x\n    path: {}\n    content: \"x\\n\"\n", word_graph(&t, "v2"), t.p("out/x"));
    let cut = full.find("  - name: x").unwrap();
    let mut f = fs::OpenOptions::new().write(true).truncate(true).open(&yaml).unwrap();
    f.write_all(&full.as_bytes()[..cut]).unwrap();
    f.flush().unwrap();
    // The writer pauses with the file open.
    std::thread::sleep(std::time::Duration::from_millis(300));
    f.write_all(&full.as_bytes()[cut..]).unwrap();
    drop(f);
    a.wait_content(&t.path("out/x"), "x\n");
    a.wait_content(&t.path("out/w"), "v2\n");
    assert_eq!(a.count("graph swapped"), 1, "a half-written graph was swapped in:\n{}", a.stderr());
    a.wait_log("graph swapped: 0 kept, 2 started, 1 stopped");
}

/// A one-shot exec that a swap stops and the next swap brings back unchanged does not run
/// again, and what it sent before still reaches its receivers.
#[test]
fn a_one_shot_exec_is_not_run_again_by_a_stop_start_flip() {
    let t = TestDir::new();
    let runs = t.p("runs");
    let exec = |name: &str, cmd: &str| format!("  - name: {name}\n    cmd: \"{cmd}\"\n    shell: /bin/sh\n");
    let with_a = |marker: bool| {
        let mut g = format!(
            "graph: flip\nresources:\n  noop:\n  - name: n\n  file:\n  - name: f\n    path: {}\n    content: \"static\\n\"\n  exec:\n{}",
            t.p("out/f"),
            exec("a", &format!("echo a >> {runs}; echo sent"))
        );
        if marker {
            g += &exec("done", &format!("touch {}", t.p("done")));
        }
        g += "edges:\n- from: {kind: exec, name: a}\n  to: {kind: file, name: f}\n  send: stdout\n  recv: content\n";
        if marker {
            g += "- from: {kind: file, name: f}\n  to: {kind: exec, name: done}\n";
        }
        g
    };
    let yaml = t.write_yaml("g.yaml", &with_a(false));
    let a = t.agent(&[], &yaml);
    a.wait_content(&t.path("runs"), "a\n");
    a.wait_content(&t.path("out/f"), "sent\n");
    t.replace_yaml("g.yaml", "graph: flip\nresources:\n  noop:\n  - name: n\n");
    a.wait_log("graph swapped: 1 kept, 0 started, 2 stopped");
    t.replace_yaml("g.yaml", &with_a(true));
    a.wait_log("graph swapped: 1 kept, 3 started, 0 stopped");
    // `done` runs only once `f` (after `a`) is checked and in its desired state.
    a.wait_for("exec[done] ran", || t.path("done").exists());
    assert_eq!(read(t.path("runs")).as_deref(), Some("a\n"), "{}", a.stderr());
    assert_eq!(read(t.path("out/f")).as_deref(), Some("sent\n"), "{}", a.stderr());
}

/// A symlinked graph file follows its target: edits in place, a swapped link, and the
/// ConfigMap layout (`g.yaml -> ..data/g.yaml`, `..data` renamed over to switch versions).
#[test]
fn a_symlinked_graph_file_follows_its_target() {
    use std::os::unix::fs::symlink;
    let t = TestDir::new();
    let w = t.path("out/w");
    t.write_yaml("real.yaml", &word_graph(&t, "v1"));
    symlink("real.yaml", t.path("g.yaml")).unwrap();
    let a = t.agent(&[], &t.path("g.yaml"));
    a.wait_content(&w, "v1\n");
    // The target edited in place.
    t.write_yaml("real.yaml", &word_graph(&t, "v2"));
    a.wait_content(&w, "v2\n");
    // The link swapped, then the new target edited in place.
    t.write_yaml("other.yaml", &word_graph(&t, "v3"));
    symlink("other.yaml", t.path("g.yaml.new")).unwrap();
    fs::rename(t.path("g.yaml.new"), t.path("g.yaml")).unwrap();
    a.wait_content(&w, "v3\n");
    t.write_yaml("other.yaml", &word_graph(&t, "v4"));
    a.wait_content(&w, "v4\n");
    // The old target no longer counts.
    t.write_yaml("real.yaml", &word_graph(&t, "stale"));
    t.write_yaml("other.yaml", &word_graph(&t, "v5"));
    a.wait_content(&w, "v5\n");

    // Through a symlinked directory that is switched by renaming a new link over it.
    let t = TestDir::new();
    let w = t.path("out/w");
    fs::create_dir(t.path("ver1")).unwrap();
    fs::create_dir(t.path("ver2")).unwrap();
    t.write_yaml("ver1/g.yaml", &word_graph(&t, "one"));
    t.write_yaml("ver2/g.yaml", &word_graph(&t, "two"));
    symlink("ver1", t.path("..data")).unwrap();
    symlink("..data/g.yaml", t.path("g.yaml")).unwrap();
    let a = t.agent(&[], &t.path("g.yaml"));
    a.wait_content(&w, "one\n");
    symlink("ver2", t.path("..data_tmp")).unwrap();
    fs::rename(t.path("..data_tmp"), t.path("..data")).unwrap();
    a.wait_content(&w, "two\n");
    t.write_yaml("ver2/g.yaml", &word_graph(&t, "three"));
    a.wait_content(&w, "three\n");
}

/// An unknown `--log-level` (or `MGMT_LOG`) is a usage error naming the valid levels, not a
/// filter that silently hides every line; `warning` means `warn`.
#[test]
fn an_unknown_log_level_is_a_usage_error() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    let y = yaml.to_str().unwrap();
    let a = Agent::spawn(
        &t,
        &["--log-level", "loud", "run", "--tmp-prefix", "--converged-timeout", "1", "yaml", y],
    );
    assert_eq!(a.wait_exit().code(), Some(2), "{}", a.stderr());
    assert!(a.stderr().contains("invalid value 'loud' for '--log-level"), "{}", a.stderr());
    assert!(a.stderr().contains("error, warn (or warning), info, debug, trace"), "{}", a.stderr());
    assert!(!t.path("out").exists(), "an agent ran with an invalid log level");

    let a = Agent::spawn(
        &t,
        &["--log-level", "warning", "run", "--tmp-prefix", "--converged-timeout", "1", "yaml", y],
    );
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    assert_eq!(read(t.path("out/two")).as_deref(), Some("two\n"));
    assert!(!a.stderr().contains("INFO"), "info lines logged at --log-level warning:\n{}", a.stderr());
}

/// `--log-format json` (accepted after the frontend and its file, like every run flag) writes
/// one JSON object per line, with the level and message as keys.
#[test]
fn json_logs_are_one_object_per_line() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    let y = yaml.to_str().unwrap();
    let a = Agent::spawn(
        &t,
        &["run", "yaml", y, "--tmp-prefix", "--converged-timeout", "1", "--log-format", "json"],
    );
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    assert_eq!(read(t.path("out/two")).as_deref(), Some("two\n"));
    let lines: Vec<serde_json::Value> = a
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 2, "{}", a.stderr());
    for l in &lines {
        assert!(l["level"].is_string() && l["message"].is_string() && l["timestamp"].is_string(), "{l}");
    }
    // A resource's change carries the resource and the change as fields of their own.
    let created = |name: &str| {
        lines.iter().any(|l| {
            l["kind"] == "file"
                && l["name"] == name
                && l["change"] == "create file (4 bytes)"
                && l["message"] == format!("file[{name}]: create file (4 bytes)")
        })
    };
    assert!(created("one") && created("two"), "{}", a.stderr());
}

/// Runs `mgmt ARGS` on a pseudo-terminal (util-linux `script`), where log lines are coloured
/// unless `NO_COLOR` is set; returns what the terminal showed.
fn on_a_terminal(t: &TestDir, args: &str, no_color: Option<&str>) -> String {
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{} {args}", env!("CARGO_BIN_EXE_mgmt")), "/dev/null"])
        .current_dir(t.root())
        .env("TMPDIR", t.path("tmp"))
        .env_remove("MGMT_LOG")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().expect("running script(1)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Colour follows the terminal, and `NO_COLOR` (set and not empty) turns it off.
#[test]
fn no_color_turns_off_colour_on_a_terminal() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &two_files(&t));
    let args = format!("run --tmp-prefix --no-watch yaml {}", yaml.display());
    let coloured = on_a_terminal(&t, &args, None);
    assert!(coloured.contains("\x1b["), "no colour on a terminal: {coloured:?}");
    assert!(on_a_terminal(&t, &args, Some("")).contains("\x1b["), "an empty NO_COLOR counts as unset");
    let plain = on_a_terminal(&t, &args, Some("1"));
    assert!(plain.contains("INFO") && !plain.contains('\x1b'), "colour despite NO_COLOR: {plain:?}");
}
