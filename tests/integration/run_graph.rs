//! Graph semantics: edges order work, independent vertices run in parallel, `notify` edges
//! refresh what is downstream (and plain edges do not), failed vertices block their
//! dependents, cycles are rejected, and autoedges order files after their directory and
//! commands after their `cwd`.

use std::fs;

use crate::common::{self, TestDir, line_count, read};

/// An exec appending `word` to `log` after sleeping `secs` (so a wrong order would show).
fn appender(name: &str, secs: &str, word: &str, log: &str) -> String {
    format!("  - name: {name}\n    shell: /bin/sh\n    cmd: \"sleep {secs}; echo {word} >> {log}\"\n")
}

fn edge(from_kind: &str, from: &str, to_kind: &str, to: &str, notify: bool) -> String {
    format!(
        "- name: {from}-{to}\n  from: {{kind: {from_kind}, name: {from}}}\n  to: {{kind: {to_kind}, name: {to}}}\n  notify: {notify}\n"
    )
}

#[test]
fn edges_order_work_from_before_to() {
    let t = TestDir::new();
    let log = t.p("order.log");
    // Listed in reverse, and the first in the chain is the slowest.
    let yaml = format!(
        "graph: order\nresources:\n  exec:\n{}{}{}{}edges:\n{}{}{}",
        appender("d", "0", "d", &log),
        appender("c", "0", "c", &log),
        appender("b", "0.1", "b", &log),
        appender("a", "0.3", "a", &log),
        edge("exec", "a", "exec", "b", false),
        edge("exec", "b", "exec", "c", false),
        edge("exec", "c", "exec", "d", false),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert_eq!(read(&log).as_deref(), Some("a\nb\nc\nd\n"), "{}", out.stderr);
}

#[test]
fn a_diamond_joins_after_both_branches() {
    let t = TestDir::new();
    let log = t.p("diamond.log");
    let yaml = format!(
        "graph: diamond\nresources:\n  exec:\n{}{}{}{}edges:\n{}{}{}{}",
        appender("join", "0", "join", &log),
        appender("left", "0.3", "left", &log),
        appender("right", "0.1", "right", &log),
        appender("top", "0", "top", &log),
        edge("exec", "top", "exec", "left", false),
        edge("exec", "top", "exec", "right", false),
        edge("exec", "left", "exec", "join", false),
        edge("exec", "right", "exec", "join", false),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    t.run_to_end(&["--converged-timeout", "1"], &yaml).assert_code(0);
    let got = read(&log).unwrap_or_default();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 4, "{got:?}");
    assert_eq!(lines[0], "top");
    assert_eq!(lines[3], "join");
}

/// Two unrelated commands each leave a marker and then wait (bounded) for the other's: both
/// succeed only if they run at the same time.
#[test]
fn independent_vertices_run_in_parallel() {
    let t = TestDir::new();
    let waiter = |me: &str, other: &str| {
        let (mine, theirs, ok) =
            (t.p(&format!("{me}.mark")), t.p(&format!("{other}.mark")), t.p(&format!("{me}.ok")));
        format!(
            "  - name: {me}\n    shell: /bin/sh\n    cmd: \"touch {mine}; i=0; while [ ! -e {theirs} ]; do i=$((i+1)); if [ $i -gt 500 ]; then exit 7; fi; sleep 0.02; done; touch {ok}\"\n"
        )
    };
    let yaml = format!("graph: parallel\nresources:\n  exec:\n{}{}", waiter("x", "y"), waiter("y", "x"));
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert!(t.path("x.ok").exists() && t.path("y.ok").exists(), "{}", out.stderr);
}

/// The refresh graph: file `conf` notifies exec `reload` and print `announce`; exec `plain`
/// depends on `conf` without notify. `gate` keeps the agent busy until the test is done, so
/// `--converged-timeout 1` ends the run only once everything has settled.
fn refresh_graph(t: &TestDir, content: &str) -> String {
    format!(
        r#"graph: refresh
resources:
  file:
  - name: conf
    path: {conf}
    content: "{content}"
  exec:
  - name: reload
    shell: /bin/sh
    cmd: "echo reload >> {reload}"
  - name: plain
    shell: /bin/sh
    cmd: "echo plain >> {plain}"
{gate}  print:
  - name: announce
    msg: "conf changed"
edges:
{e1}{e2}{e3}"#,
        conf = t.p("conf"),
        reload = t.p("reload.log"),
        plain = t.p("plain.log"),
        gate = common::gate_exec("gate", &t.path("go")),
        e1 = edge("file", "conf", "exec", "reload", true),
        e2 = edge("file", "conf", "print", "announce", true),
        e3 = edge("file", "conf", "exec", "plain", false),
    )
}

#[test]
fn notify_refreshes_downstream_and_plain_edges_do_not() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &refresh_graph(&t, "v1\\n"));
    let a = t.agent(&["--converged-timeout", "1"], &yaml);
    let (conf, reload, plain) = (t.path("conf"), t.path("reload.log"), t.path("plain.log"));
    a.wait_content(&conf, "v1\n");
    a.wait_for("first runs", || line_count(&reload) == 1 && line_count(&plain) == 1);
    a.wait_for("first print", || a.stdout_count("conf changed") >= 1);

    // Drift repaired on the upstream file: a change, so notify edges refresh.
    fs::write(&conf, "drift\n").unwrap();
    a.wait_content(&conf, "v1\n");
    a.wait_for("reload re-run after outside edit", || line_count(&reload) == 2);

    // A live edit of the upstream's content: the new vertex's change refreshes too.
    t.write_yaml("g.yaml", &refresh_graph(&t, "v2\\n"));
    a.wait_content(&conf, "v2\n");
    a.wait_for("reload re-run after graph edit", || line_count(&reload) == 3);

    fs::write(t.path("go"), "").unwrap();
    let status = a.wait_exit();
    let log = a.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(line_count(&reload), 3, "notify: one run per change of conf\n{log}");
    assert_eq!(line_count(&plain), 1, "no notify: no re-run\n{log}");
    assert_eq!(a.stdout_count("conf changed"), 3, "print re-prints on every refresh\n{log}");
    assert!(log.contains("exec[reload]: ran `echo reload >> "), "{log}");
    assert!(log.contains("(refresh, exit 0)"), "{log}");
}

#[test]
fn a_failed_vertex_blocks_its_dependents_only() {
    let t = TestDir::new();
    let yaml = format!(
        r#"graph: blocked
resources:
  exec:
  - name: broken
    shell: /bin/sh
    cmd: "echo oops >&2; exit 3"
  - name: after
    cmd: touch {after}
  file:
  - name: unrelated
    path: {unrelated}
    content: "fine\n"
edges:
{e}"#,
        after = t.p("after"),
        unrelated = t.p("unrelated"),
        e = edge("exec", "broken", "exec", "after", false),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(1)
        .assert_stderr_has("exec[broken]: `echo oops >&2; exit 3` exited with code 3")
        .assert_stderr_has("exec[after] is not in its desired state: blocked by a failed dependency");
    assert!(!t.path("after").exists(), "a blocked exec ran");
    assert_eq!(read(t.path("unrelated")).as_deref(), Some("fine\n"));
}

#[test]
fn a_cycle_is_rejected_and_named() {
    let t = TestDir::new();
    let yaml = format!(
        r#"graph: cyclic
resources:
  exec:
  - name: a
    cmd: touch {a}
  - name: b
    cmd: touch {b}
  - name: c
    cmd: touch {c}
  file:
  - name: outside
    path: {outside}
    content: "x"
edges:
{e1}{e2}{e3}"#,
        a = t.p("a"),
        b = t.p("b"),
        c = t.p("c"),
        outside = t.p("outside"),
        e1 = edge("exec", "a", "exec", "b", false),
        e2 = edge("exec", "b", "exec", "c", false),
        e3 = edge("exec", "c", "exec", "a", false),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    assert_ne!(out.status.code(), Some(0), "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("the graph has a cycle: "))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(line.contains("g.yaml"), "{line}");
    for r in ["exec[a]", "exec[b]", "exec[c]"] {
        assert!(line.contains(r), "cycle message does not name {r}: {line}");
    }
    assert!(!line.contains("file[outside]"), "{line}");
    for f in ["a", "b", "c", "outside"] {
        assert!(!t.path(f).exists(), "{f} was applied despite the cycle");
    }
}

/// A file inside a managed directory (path ending in `/`) waits for it. Proven two ways: the
/// directory is created by its own resource (mode 0700, never "fixed" afterwards) before the
/// file, and a failing directory blocks the file.
#[test]
fn autoedge_file_waits_for_its_directory() {
    let t = TestDir::new();
    let yaml = format!(
        r#"graph: auto
resources:
  file:
  - name: inner
    path: {inner}
    content: "inside\n"
  - name: dir
    path: {dir}/
    mode: "0700"
"#,
        inner = t.p("d/sub/inner"),
        dir = t.p("d/sub"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert_eq!(read(t.path("d/sub/inner")).as_deref(), Some("inside\n"));
    assert_eq!(common::mode(t.path("d/sub")), 0o700);
    let log = &out.stderr;
    let dir_at = log.find("file[dir]: create directory").unwrap_or_else(|| panic!("{log}"));
    let file_at = log.find("file[inner]: create file").unwrap_or_else(|| panic!("{log}"));
    assert!(dir_at < file_at, "file created before its directory:\n{log}");
    assert!(!log.contains("file[inner]: create parent directory"), "{log}");
    assert!(!log.contains("file[dir]: set mode"), "{log}");
}

#[test]
fn autoedge_failed_directory_blocks_the_file_inside() {
    let t = TestDir::new();
    let yaml = format!(
        r#"graph: auto
resources:
  file:
  - name: inner
    path: {inner}
    content: "inside\n"
  - name: dir
    path: {dir}/
    owner: no-such-user-mgmt-test
"#,
        inner = t.p("d/inner"),
        dir = t.p("d"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(1)
        .assert_stderr_has("file[dir]: no such user `no-such-user-mgmt-test`")
        .assert_stderr_has("file[inner] is not in its desired state: blocked by a failed dependency");
    assert!(!t.path("d").exists(), "blocked file was applied");
}

#[test]
fn autoedge_exec_waits_for_its_cwd() {
    let t = TestDir::new();
    let yaml = format!(
        r#"graph: auto
resources:
  exec:
  - name: work
    cmd: touch made-here
    cwd: {w}
  file:
  - name: workdir
    path: {w}/
"#,
        w = t.p("w"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert!(t.path("w/made-here").exists(), "{}", out.stderr);
}

/// Upstream `conf` fails while a directory sits where its file must go; once the
/// directory is removed from outside, the upstream repairs itself and the dependent runs.
#[test]
fn a_blocked_dependent_runs_once_its_upstream_recovers() {
    let t = TestDir::new();
    fs::create_dir_all(t.path("out/conf/in-the-way")).unwrap();
    let yaml = format!(
        r#"graph: recover
resources:
  file:
  - name: conf
    path: {conf}
    content: "conf\n"
  exec:
  - name: user
    cmd: touch {ran}
edges:
{e}"#,
        conf = t.p("out/conf"),
        ran = t.p("ran"),
        e = edge("file", "conf", "exec", "user", false),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    a.wait_log(&format!(
        "file[conf]: {} is a directory; set `force: true` to replace it with a file",
        t.p("out/conf")
    ));
    assert!(!t.path("ran").exists(), "ran behind a failed dependency");
    common::rm_rf(t.path("out/conf"));
    a.wait_content(&t.path("out/conf"), "conf\n");
    a.wait_for("the dependent to run", || t.path("ran").exists());
    assert_eq!(a.interrupt().code(), Some(0));
}

fn failing_dependency(t: &TestDir, upstream_cmd: Option<&str>) -> String {
    let mut yaml = format!(
        "graph: live-fix\nresources:\n  file:\n  - name: after\n    path: {}\n    content: \"after\\n\"\n",
        t.p("out/after")
    );
    if let Some(cmd) = upstream_cmd {
        yaml.push_str(&format!(
            "  exec:\n  - name: setup\n    shell: /bin/sh\n    cmd: \"{cmd}\"\nedges:\n{}",
            edge("exec", "setup", "file", "after", false)
        ));
    }
    yaml
}

#[test]
fn fixing_a_failed_dependency_live_unblocks_the_dependent() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &failing_dependency(&t, Some("exit 1")));
    let a = t.agent(&[], &yaml);
    a.wait_log("ERROR exec[setup]: `exit 1` exited with code 1");
    t.write_yaml("g.yaml", &failing_dependency(&t, Some("exit 0")));
    a.wait_log("graph swapped: 1 kept, 1 started, 1 stopped");
    a.wait_content(&t.path("out/after"), "after\n");
    assert_eq!(a.interrupt().code(), Some(0));
}

/// The failing upstream and its edge are removed by a live edit: the dependent, kept by the
/// swap, has nothing to wait for any more and must be applied.
#[test]
fn removing_a_failed_dependency_live_unblocks_the_dependent() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &failing_dependency(&t, Some("exit 1")));
    let a = t.agent(&["--converged-timeout", "2"], &yaml);
    a.wait_log("ERROR exec[setup]: `exit 1` exited with code 1");
    t.write_yaml("g.yaml", &failing_dependency(&t, None));
    a.wait_log("graph swapped: 1 kept, 0 started, 1 stopped");
    let status = a.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", a.stderr());
    assert_eq!(read(t.path("out/after")).as_deref(), Some("after\n"));
}

/// A resource with `meta: {noop: true}` changes nothing, so it has nothing to notify: the
/// real command downstream must not be refreshed by its "would change" checks.
#[test]
fn a_meta_noop_upstream_does_not_refresh_downstream() {
    let t = TestDir::new();
    fs::create_dir_all(t.path("out")).unwrap();
    fs::write(t.path("out/conf"), "old\n").unwrap();
    let yaml = format!(
        r#"graph: noop-notify
resources:
  file:
  - name: conf
    path: {conf}
    content: "new\n"
    meta: {{noop: true}}
  exec:
  - name: reload
    shell: /bin/sh
    cmd: "echo reload >> {reload}"
{gate}edges:
{e}"#,
        conf = t.p("out/conf"),
        reload = t.p("reload.log"),
        gate = common::gate_exec("gate", &t.path("go")),
        e = edge("file", "conf", "exec", "reload", true),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&["--converged-timeout", "1"], &yaml);
    a.wait_log("file[conf]: noop: would replace content (4 -> 4 bytes)");
    a.wait_for("the first run", || line_count(t.path("reload.log")) == 1);
    // Drift on the noop file: reported, not repaired, and nothing changed.
    fs::write(t.path("out/conf"), "older\n").unwrap();
    a.wait_log("file[conf]: noop: would replace content (6 -> 4 bytes)");
    fs::write(t.path("go"), "").unwrap();
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    assert_eq!(read(t.path("out/conf")).as_deref(), Some("older\n"));
    assert_eq!(
        line_count(t.path("reload.log")),
        1,
        "reload refreshed by a change that never happened:\n{}",
        a.stderr()
    );
}

/// A swap keeps vertices whose params did not change: an unchanged command is not run again,
/// and a resource removed from the graph is no longer enforced.
#[test]
fn a_swap_keeps_unchanged_vertices_and_stops_removed_ones() {
    let t = TestDir::new();
    let v = |content: &str, with_extra: bool| {
        let mut y = format!(
            "graph: swap\nresources:\n  file:\n  - name: f\n    path: {}\n    content: \"{content}\"\n",
            t.p("out/f")
        );
        if with_extra {
            y.push_str(&format!(
                "  - name: extra\n    path: {}\n    content: \"extra\\n\"\n",
                t.p("out/extra")
            ));
        }
        y.push_str(&format!(
            "  exec:\n  - name: once\n    shell: /bin/sh\n    cmd: \"echo once >> {}\"\n{}",
            t.p("once.log"),
            common::gate_exec("gate", &t.path("go"))
        ));
        y
    };
    let yaml = t.write_yaml("g.yaml", &v("v1\\n", true));
    let a = t.agent(&["--converged-timeout", "1"], &yaml);
    a.wait_content(&t.path("out/f"), "v1\n");
    a.wait_content(&t.path("out/extra"), "extra\n");
    a.wait_for("the command's first run", || line_count(t.path("once.log")) == 1);

    t.write_yaml("g.yaml", &v("v2\\n", false));
    a.wait_content(&t.path("out/f"), "v2\n");
    a.wait_log("graph swapped: 2 kept, 1 started, 2 stopped");
    // `extra` is no longer managed: drift on it stays.
    fs::write(t.path("out/extra"), "mine now\n").unwrap();
    // `f` still is (and its repair shows the agent has seen the events).
    fs::write(t.path("out/f"), "drift\n").unwrap();
    a.wait_content(&t.path("out/f"), "v2\n");

    fs::write(t.path("go"), "").unwrap();
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    assert_eq!(line_count(t.path("once.log")), 1, "an unchanged exec ran again after the swap");
    assert_eq!(
        read(t.path("out/extra")).as_deref(),
        Some("mine now\n"),
        "a removed resource is still enforced"
    );
    assert_eq!(a.count("file[extra]: replace"), 0, "{}", a.stderr());
}
