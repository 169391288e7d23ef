//! Bad input. At start: a non-zero exit, an error naming the graph file with line:column (and
//! the resource and field where there is one), and nothing applied. On live reload: the error
//! is logged, the running graph keeps running, and a later valid edit is applied.

use std::fs;

use crate::common::{self, TestDir, read};

/// A valid first resource (lines 1-6) that must never be applied when the graph is invalid.
fn head(t: &TestDir) -> String {
    format!(
        "graph: bad\nresources:\n  file:\n  - name: ok\n    path: {}\n    content: \"must not be written\\n\"\n",
        t.p("out/ok")
    )
}

/// Run `tail` (appended after `head`), expect failure and an error line
/// `<graph file>:<expected>`, and that nothing was applied.
#[track_caller]
fn rejects(tail: &str, expected: &str) {
    let t = TestDir::new();
    let text = format!("{}{}", head(&t), tail.replace("@DIR@", &t.p("out")));
    let yaml = t.write_yaml("g.yaml", &text);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    assert_eq!(out.status.code(), Some(1), "graph was accepted:\n{text}\n--- stderr:\n{}", out.stderr);
    let want = format!("mgmt: error: {}:{expected}", yaml.display());
    assert!(out.stderr.contains(&want), "expected {want:?}\n--- stderr:\n{}\n--- graph:\n{text}", out.stderr);
    assert!(!t.path("out").exists(), "something was applied from an invalid graph");
    assert!(!out.stderr.contains("running graph"), "the agent started:\n{}", out.stderr);
}

#[test]
fn unknown_key_in_a_resource() {
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    contnet: hi\n",
        "9:5: file[f1]: unknown field `contnet`, expected one of name, meta, path, content, source, state, mode, owner, group, recurse, purge, force",
    );
}

#[test]
fn unknown_key_in_meta() {
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    meta: {retyr: 3}\n",
        "9:12: file[f1]: unknown field `retyr`, expected one of retry, delay, poll, limit, burst, noop, sensitive",
    );
}

#[test]
fn unknown_kind() {
    rejects(
        "  fiel:\n  - name: f1\n",
        "7:3: unknown field `fiel`, expected one of cron, exec, exit, file, group, gzip, hostname, kv, line, mount, msg, noop, pkg, print, ssh:authorized_key, svc, sysctl, tar, test, timer, user, value",
    );
}

#[test]
fn bad_mode() {
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    mode: \"rw-r--r--\"\n",
        "9:11: file[f1]: field `mode`: `rw-r--r--` is not an octal mode like \"0644\"",
    );
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    mode: \"0800\"\n",
        "9:11: file[f1]: field `mode`: `0800` is not an octal mode",
    );
}

#[test]
fn relative_path() {
    rejects(
        "  - name: f1\n    path: out/f1\n",
        "8:11: file[f1]: field `path`: `out/f1` must be an absolute path without `..`",
    );
    rejects("  - name: f1\n    path: @DIR@/../escape\n", "8:11: file[f1]: field `path`: ");
    // Without `path`, the name is the path.
    rejects(
        "  - name: relative/f\n",
        "7:11: file[relative/f]: field `name`: `relative/f` must be an absolute path",
    );
}

#[test]
fn content_and_source_together() {
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    content: hi\n    source: /etc/hostname\n",
        "10:13: file[f1]: field `source`: `content` and `source` cannot both be set",
    );
}

#[test]
fn bad_meta_values() {
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    meta:\n      limit: -3\n",
        "10:14: file[f1]: field `meta.limit`: must be a positive number of events per second",
    );
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    meta: {retry: -5}\n",
        "9:19: file[f1]: field `meta.retry`: must be -1 (forever) or at least 0",
    );
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    meta: {limit: 2, burst: 0}\n",
        "9:29: file[f1]: field `meta.burst`: must be at least 1 when `limit` is set",
    );
}

/// A value of the wrong type is located and its field named.
#[test]
fn bad_meta_type_names_the_field() {
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    meta: {retry: lots}\n",
        "9:19: file[f1]: field `meta.retry`: expected -1 (forever) or a whole number from 0 to 2147483647",
    );
}

/// A number outside a param's range is reported with the values the param accepts, not the
/// range of the type that holds it.
#[test]
fn out_of_range_numbers_give_the_range_the_param_accepts() {
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    meta: {burst: 18446744073709551615}\n",
        "9:19: file[f1]: field `meta.burst`: expected a whole number from 0 to 4294967295 (at least 1 with a `limit`)",
    );
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    meta: {poll: -1}\n",
        "9:18: file[f1]: field `meta.poll`: expected a whole number of seconds from 0 to 315360000 (ten years)",
    );
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    meta: {delay: -1}\n",
        "9:19: file[f1]: field `meta.delay`: expected a whole number of milliseconds from 0 to 86400000 (one day)",
    );
    rejects(
        "  timer:\n  - name: t\n    interval: -1\n",
        "9:15: timer[t]: field `interval`: expected a whole number of seconds from 1 to 315360000 (ten years)",
    );
    rejects(
        "  noop:\n  - {name: n, meta: {retry: [1]}}\n",
        "8:29: noop[n]: field `meta.retry`: expected -1 (forever) or a whole number from 0 to 2147483647",
    );
}

/// A resource is named even where the parser stops at a limit, in flow style too.
#[test]
fn a_too_deep_flow_style_resource_is_named() {
    let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
    rejects(&format!("  noop:\n  - {{name: \"d e\", meta: {{retry: {deep}}}}}\n"), "8:33: noop[d e]: ");
}

/// In flow style (`- {name: a, ...}`) the resource is named by its `name` value alone.
#[test]
fn flow_style_resources_are_named_by_their_name() {
    rejects(
        "  exec:\n  - {name: a, cmd: echo, args: [a, b, c, ~]}\n",
        "8:42: exec[a]: field `args[3]`: expected a text value, found null",
    );
    rejects(
        "  noop:\n  - {name: a, meta: {retry: x}}\n",
        "8:29: noop[a]: field `meta.retry`: expected -1 (forever)",
    );
    rejects("  noop:\n  - !baz {name: x}\n", "8:10: noop[x]: unknown YAML tag `!baz`");
    rejects(
        "  noop:\n  - {name: \"a b\", meta: {burst: 0, limit: 1}}\n",
        "8:33: noop[a b]: field `meta.burst`: must be at least 1 when `limit` is set",
    );
    rejects("  noop:\n  - {name: 'x,y', meta: {poll: z}}\n", "8:32: noop[x,y]: field `meta.poll`");
    rejects("  noop:\n  - {name: \"@@e\", meta: {retry: z}}\n", "8:33: noop[e]: field `meta.retry`");
    rejects("  noop:\n  - {meta: {retry: z}, name: n}\n", "8:20: noop[n]: field `meta.retry`");
}

#[test]
fn duplicate_names() {
    rejects(
        "  - name: ok\n    path: @DIR@/again\n",
        "7:11: file[ok]: field `name`: duplicate resource file[ok]",
    );
    // `@@` exports do not make a second name.
    rejects(
        "  - name: \"@@ok\"\n    path: @DIR@/again\n",
        "7:11: file[@@ok]: field `name`: duplicate resource file[ok]",
    );
}

#[test]
fn edge_to_a_missing_resource() {
    rejects(
        "edges:\n- name: e1\n  from: {kind: file, name: ok}\n  to: {kind: exec, name: nope}\n",
        "8:3: edge `e1`: `to` names exec[nope], which is not in the graph",
    );
    rejects(
        "edges:\n- name: e2\n  from: {kind: file, name: missing}\n  to: {kind: file, name: ok}\n",
        "8:3: edge `e2`: `from` names file[missing], which is not in the graph",
    );
}

#[test]
fn an_unnamed_edge_is_named_by_its_position() {
    rejects(
        "edges:\n- from: {kind: file, name: ok}\n  to: {kind: file, name: nope}\n",
        "8:3: edge #1: `to` names file[nope], which is not in the graph",
    );
}

#[test]
fn duplicate_keys_and_extra_documents() {
    rejects("    path: @DIR@/other\n", "7:5: file[ok]: duplicate key `path`");
    rejects("---\ngraph: second\n", "8:1: a graph file holds one YAML document; this one has more (`---`)");
}

#[test]
fn bad_send_recv_fields() {
    rejects(
        "  exec:\n  - name: e\n    cmd: \"true\"\nedges:\n- name: e1\n  from: {kind: exec, name: e}\n  to: {kind: file, name: ok}\n  send: stdot\n  recv: content\n",
        "11:3: edge `e1`: exec[e] does not send `stdot` (it sends: stdout, stderr, exitcode)",
    );
}

#[test]
fn yaml_syntax_errors() {
    rejects("  - name: f1\n    path: @DIR@/f1\n    content: \"unclosed\n", "9:14: file[f1]: unclosed quote");
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n     content: hi\n",
        "9:13: file[f1]: mapping values are not allowed in this context",
    );
}

#[test]
fn exec_and_timer_params_are_validated() {
    rejects(
        "  exec:\n  - name: e\n    cmd: echo\n    shell: /bin/sh\n    args: [a]\n",
        "11:11: exec[e]: field `args`: cannot be combined with `shell`",
    );
    rejects("  exec:\n  - name: e\n    cmd: \"   \"\n", "9:10: exec[e]: field `cmd`: must not be empty");
    rejects(
        "  exec:\n  - name: e\n    cmd: \"true\"\n    cwd: ../rel\n",
        "10:10: exec[e]: field `cwd`: `../rel` must stay inside the graph's directory: `..` is not allowed",
    );
    rejects(
        "  exec:\n  - name: e\n    cmd: \"true\"\n    timeout: 315360001\n",
        "10:14: exec[e]: field `timeout`: is in seconds and must be at most ten years (315360000)",
    );
    rejects(
        "  timer:\n  - name: t\n    interval: 0\n",
        "9:15: timer[t]: field `interval`: must be at least 1 second",
    );
    rejects("  exec:\n  - name: e\n", "8:5: exec[e]: missing field `cmd`");
}

#[test]
fn missing_graph_file() {
    let t = TestDir::new();
    let out = t.run_to_end(&["--converged-timeout", "1"], &t.path("nope.yaml"));
    out.assert_code(1).assert_stderr_has(&format!(
        "mgmt: error: reading graph file {}: No such file or directory",
        t.p("nope.yaml")
    ));
}

fn live_graph(t: &TestDir, content: &str) -> String {
    format!(
        "graph: live\nresources:\n  file:\n  - name: f1\n    path: {}\n    content: \"{content}\"\n  - name: f2\n    path: {}\n    content: \"f2\\n\"\n",
        t.p("out/f1"),
        t.p("out/f2")
    )
}

#[test]
fn invalid_live_edit_keeps_the_running_graph() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &live_graph(&t, "v1\\n"));
    let a = t.agent(&[], &yaml);
    let (f1, f2) = (t.path("out/f1"), t.path("out/f2"));
    a.wait_content(&f1, "v1\n");
    a.wait_content(&f2, "f2\n");
    let g = yaml.display().to_string();

    // 1. An unknown key.
    t.write_yaml("g.yaml", &live_graph(&t, "v2\\n").replace("content: \"f2", "contnet: \"f2"));
    a.wait_log(&format!("ERROR {g}:9:5: file[f2]: unknown field `contnet`"));
    assert!(a.stderr().contains("; keeping the running graph"), "{}", a.stderr());
    // Still running the old graph: drift repaired with the old content.
    fs::write(&f1, "drift\n").unwrap();
    a.wait_content(&f1, "v1\n");
    fs::remove_file(&f2).unwrap();
    a.wait_content(&f2, "f2\n");

    // 2. A validation error (saved like an editor: temp file and rename).
    t.replace_yaml("g.yaml", &live_graph(&t, "v3\\n").replace(&t.p("out/f1"), "relative/f1"));
    a.wait_log(&format!("ERROR {g}:5:11: file[f1]: field `path`: `relative/f1` must be an absolute path"));
    // 3. A graph error (a cycle).
    let cyclic = format!(
        "{}  noop:\n  - name: a\n  - name: b\nedges:\n- name: ab\n  from: {{kind: noop, name: a}}\n  to: {{kind: noop, name: b}}\n- name: ba\n  from: {{kind: noop, name: b}}\n  to: {{kind: noop, name: a}}\n",
        live_graph(&t, "v4\\n")
    );
    t.write_yaml("g.yaml", &cyclic);
    a.wait_log(&format!("ERROR {g}: the graph has a cycle: "));
    fs::write(&f1, "drift again\n").unwrap();
    a.wait_content(&f1, "v1\n");
    assert!(!a.stderr().contains("graph swapped"), "an invalid graph was swapped in:\n{}", a.stderr());

    // 4. A later valid edit is applied.
    t.write_yaml("g.yaml", &live_graph(&t, "v5\\n"));
    a.wait_content(&f1, "v5\n");
    a.wait_log("graph swapped: 1 kept, 1 started, 1 stopped");
    fs::write(&f1, "drift\n").unwrap();
    a.wait_content(&f1, "v5\n");

    // 5. A bad edit, then the running graph's text restored: the error is said to be over.
    t.write_yaml("g.yaml", &live_graph(&t, "v6\\n").replace("content: \"f2", "contnet: \"f2"));
    a.wait_log_count("unknown field `contnet`", 2);
    t.write_yaml("g.yaml", &live_graph(&t, "v5\\n"));
    a.wait_log(&format!("{g}: valid again, the running graph's text; nothing to swap"));
    assert_eq!(a.count("graph swapped"), 1, "{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn removed_graph_file_keeps_the_running_graph() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &live_graph(&t, "v1\\n"));
    let a = t.agent(&[], &yaml);
    let f1 = t.path("out/f1");
    a.wait_content(&f1, "v1\n");
    fs::remove_file(&yaml).unwrap();
    a.wait_log("keeping the running graph");
    fs::write(&f1, "drift\n").unwrap();
    a.wait_content(&f1, "v1\n");
    t.write_yaml("g.yaml", &live_graph(&t, "v2\\n"));
    a.wait_content(&f1, "v2\n");
    assert_eq!(a.interrupt().code(), Some(0));
}

/// The same mistake saved again after a good save must be reported again.
#[test]
fn repeated_bad_save_is_reported_each_time() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &live_graph(&t, "v1\\n"));
    let a = t.agent(&[], &yaml);
    let f1 = t.path("out/f1");
    a.wait_content(&f1, "v1\n");
    let bad = live_graph(&t, "v1\\n").replace("content: \"f2", "contnet: \"f2");
    t.write_yaml("g.yaml", &bad);
    a.wait_log_count("unknown field `contnet`", 1);
    t.write_yaml("g.yaml", &live_graph(&t, "v2\\n"));
    a.wait_content(&f1, "v2\n");
    t.write_yaml("g.yaml", &bad);
    a.wait_log_count("unknown field `contnet`", 2);
    assert_eq!(read(&f1).as_deref(), Some("v2\n"));
}

/// Two file resources managing one path can never both be satisfied (the agent would
/// rewrite the file back and forth forever), so such a graph should be rejected at start.
#[test]
fn two_resources_for_one_path_are_rejected() {
    let t = TestDir::new();
    let yaml = t.write_yaml(
        "g.yaml",
        &format!(
            "graph: fight\nresources:\n  file:\n  - name: a\n    path: {p}\n    content: \"A\\n\"\n  - name: b\n    path: {p}\n    content: \"B\\n\"\n",
            p = t.p("out/x")
        ),
    );
    let a = t.agent(&[], &yaml);
    let exited = common::poll_until(|| a.try_exit().is_some(), common::TIMEOUT);
    let log = a.stderr();
    a.kill9();
    assert!(
        exited,
        "accepted; {} rewrites logged before it was killed",
        log.lines().filter(|l| l.contains("replace content")).count()
    );
    assert_eq!(a.try_exit().and_then(|s| s.code()), Some(1), "{log}");
    assert!(log.contains("file[a]") && log.contains("file[b]"), "{log}");
    assert!(!t.path("out").exists());
}

/// A graph file that is not a regular file is refused at start, and on a live edit it is
/// reported without blocking the agent, which still stops on SIGTERM.
#[test]
fn a_graph_file_that_is_not_a_regular_file_is_refused() {
    use nix::sys::stat::Mode;
    let t = TestDir::new();
    let out = t.run_to_end(&["--converged-timeout", "1"], t.root());
    out.assert_code(1).assert_stderr_has(&format!(
        "mgmt: error: `{}` is a directory without a graph.yaml; name the graph file",
        t.root().display()
    ));
    let fifo = t.path("fifo.yaml");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let out = t.run_to_end(&["--converged-timeout", "1"], &fifo);
    out.assert_code(1).assert_stderr_has(&format!(
        "mgmt: error: graph file {} is a FIFO, not a regular file",
        fifo.display()
    ));

    let yaml = t.write_yaml("g.yaml", &live_graph(&t, "v1\\n"));
    let a = t.agent(&[], &yaml);
    let f1 = t.path("out/f1");
    a.wait_content(&f1, "v1\n");
    fs::rename(&fifo, &yaml).unwrap();
    a.wait_log(&format!(
        "graph file {} is a FIFO, not a regular file; keeping the running graph",
        yaml.display()
    ));
    // Still running: drift is repaired, and a signal stops it.
    fs::write(&f1, "drift\n").unwrap();
    a.wait_content(&f1, "v1\n");
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
}

/// Bytes that are not UTF-8 are located.
#[test]
fn invalid_utf8_is_located() {
    let t = TestDir::new();
    let yaml = t.path("g.yaml");
    fs::write(&yaml, b"graph: x\nresources:\n  noop:\n  - name: ab\xff\n").unwrap();
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(1)
        .assert_stderr_has(&format!("mgmt: error: {}:4:13: invalid UTF-8 (byte 0xff)", yaml.display()));
}

/// Messages speak of the graph, not of the parser's Rust types.
#[test]
fn type_errors_are_in_plain_words() {
    rejects(
        "  exec:\n  - name: e\n    cmd: echo\n    args: [a, ~]\n",
        "10:15: exec[e]: field `args[1]`: expected a text value, found null",
    );
    rejects(
        "  exec:\n  - name: e\n    cmd: echo\n    timeout: soon\n",
        "10:14: exec[e]: field `timeout`: expected a whole number of seconds from 1 to 315360000 (ten years)",
    );
}

/// A non-finite number is located at its field, not at its resource.
#[test]
fn a_nan_is_located_at_its_field() {
    rejects(
        "  - name: f1\n    path: @DIR@/f1\n    meta:\n      limit: .nan\n",
        "10:14: file[f1]: field `meta.limit`: must be a positive number of events per second",
    );
}

#[test]
fn an_empty_graph_file_says_so() {
    let t = TestDir::new();
    for text in ["", "\n# nothing yet\n"] {
        let yaml = t.write_yaml("g.yaml", text);
        let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
        out.assert_code(1).assert_stderr_has(&format!(
            "mgmt: error: {}: the graph file is empty; a graph needs at least `graph: NAME`",
            yaml.display()
        ));
    }
}

/// Unknown YAML tags are refused, naming their position, wherever they are.
#[test]
fn unknown_yaml_tags_are_refused() {
    rejects(
        "  - name: !custom f1\n    path: @DIR@/f1\n",
        "7:19: file[f1]: field `name`: unknown YAML tag `!custom`; tags are not used in graph files",
    );
    rejects("comment: !secret x\n", "7:18: unknown YAML tag `!secret`; tags are not used in graph files");
    rejects(
        "  - name: f1\n    !x path: @DIR@/f1\n",
        "8:8: file[f1]: unknown YAML tag `!x`; tags are not used in graph files",
    );
}

/// One receiving field takes one value: two edges into it are an error, not "last wins".
#[test]
fn two_edges_into_one_recv_field_are_rejected() {
    let e = |n: &str, send: &str| {
        format!(
            "- name: {n}\n  from: {{kind: exec, name: e}}\n  to: {{kind: file, name: ok}}\n  send: {send}\n  recv: content\n"
        )
    };
    rejects(
        &format!(
            "  exec:\n  - name: e\n    cmd: \"true\"\nedges:\n{}{}",
            e("out", "stdout"),
            e("err", "stderr")
        ),
        "16:3: edge `err`: file[ok] already receives `content` from edge `out`; a field takes one value",
    );
}

/// The node budget is named in plain words, with the limit.
#[test]
fn a_graph_over_the_node_budget_names_the_limit() {
    let t = TestDir::new();
    let mut text = String::from("graph: big\nresources:\n  noop:\n");
    for i in 0..90_000 {
        text += &format!("  - name: n{i}\n");
    }
    let yaml = t.write_yaml("g.yaml", &text);
    let a = t.agent(&["--converged-timeout", "1"], &yaml);
    // Parsing a quarter of a million nodes takes a while in a debug build on a busy machine.
    assert!(common::poll_until(|| a.try_exit().is_some(), std::time::Duration::from_secs(120)));
    assert_eq!(a.try_exit().and_then(|s| s.code()), Some(1), "{}", a.stderr());
    assert!(
        a.stderr().contains(&format!(
            "{}:83335:5: the graph is too big: it has more than 250000 YAML nodes (every key, value, list and mapping counts)",
            yaml.display()
        )),
        "{}",
        a.stderr()
    );
}

/// An error the location tree cannot be built for (aliases that expand past the parser's
/// limits) still names its resource.
#[test]
fn an_alias_bomb_names_its_resource() {
    let mut bomb = String::from(
        "  exec:\n  - name: bomb\n    cmd: echo\n    env:\n      a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n",
    );
    for i in 1..9 {
        bomb += &format!("      a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(","));
    }
    rejects(&bomb, "11:15: exec[bomb]: expected a text value");
}

/// A collect `pattern` is the directory collected files land in: checked when the graph is
/// loaded, not first when a peer's export arrives.
#[test]
fn a_collect_pattern_must_be_an_absolute_directory_other_than_root() {
    let cases = [
        ("rel/", "`rel/` must be an absolute path without `..`"),
        ("/a/../b/", "`/a/../b/` must be an absolute path without `..`"),
        ("\"/a\\0b/\"", "`/a\\0b/` must not contain a NUL byte"),
        ("/", "`/` is the root directory; collect into a directory of its own"),
        ("//./", "`//./` is the root directory; collect into a directory of its own"),
    ];
    for (pattern, why) in cases {
        rejects(
            &format!("collect:\n- kind: file\n  pattern: {pattern}\n"),
            &format!("9:12: collect: field `pattern`: {why}"),
        );
    }
}
