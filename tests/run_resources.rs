//! `exec` (args, shell, cwd, env, ifcmd, creates, watchcmd, timeout, send/recv), `timer` and
//! `print`, run for real.

mod common;

use std::fs;

use common::{TestDir, line_count, read};

fn graph(t: &TestDir, body: &str) -> std::path::PathBuf {
    t.write_yaml("g.yaml", &format!("graph: resources\n{body}"))
}

#[test]
fn exec_args_are_passed_verbatim() {
    let t = TestDir::new();
    let dir = t.p("out");
    fs::create_dir_all(&dir).unwrap();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: touch
    cmd: touch
    args: ["{dir}/has space", "{dir}/$HOME", "{dir}/semi;colon"]
"#
        ),
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    let mut names = common::entries_containing(t.path("out"), "");
    names.sort();
    assert_eq!(names, ["$HOME", "has space", "semi;colon"], "{}", out.stderr);
    out.assert_stderr_has(&format!(
        "exec[touch]: ran `touch '{dir}/has space' '{dir}/$HOME' '{dir}/semi;colon'` (start, exit 0)"
    ));
}

#[test]
fn exec_without_shell_splits_words_and_with_shell_interprets() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: words
    cmd: "sh -c 'echo \"one two\" > {words}'"
  - name: shell
    shell: /bin/sh
    cmd: "echo $((2 + 3)) | tr 5 X > {shell}"
  - name: noshell
    cmd: "touch {noshell} | tr"
"#,
            words = t.p("words"),
            shell = t.p("shell"),
            noshell = t.p("noshell"),
        ),
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert_eq!(read(t.path("words")).as_deref(), Some("one two\n"));
    assert_eq!(read(t.path("shell")).as_deref(), Some("X\n"));
    // Without a shell, `|` and `tr` are just more arguments to touch.
    assert!(t.path("noshell").exists());
    assert!(
        t.path("|").exists() && t.root().join("tr").exists(),
        "touch got `|` and `tr` as files (cwd is the test dir)"
    );
}

#[test]
fn exec_cwd_and_env() {
    let t = TestDir::new();
    fs::create_dir_all(t.path("work")).unwrap();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: where
    shell: /bin/sh
    cwd: {work}
    cmd: "pwd > here.txt; echo \"$GREETING $OTHER\" > env.txt"
    env:
      GREETING: hello
      OTHER: "with spaces"
"#,
            work = t.p("work"),
        ),
    );
    t.run_to_end(&["--converged-timeout", "1"], &yaml).assert_code(0);
    assert_eq!(read(t.path("work/here.txt")).map(|s| s.trim().to_string()), Some(t.p("work")));
    assert_eq!(read(t.path("work/env.txt")).as_deref(), Some("hello with spaces\n"));
}

#[test]
fn exec_ifcmd_and_creates_guard_the_command() {
    let t = TestDir::new();
    fs::write(t.path("already"), "").unwrap();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: if-false
    cmd: touch {a}
    ifcmd: "test -e {nope}"
  - name: if-true
    cmd: touch {b}
    ifcmd: "test -e {already}"
  - name: created
    cmd: touch {c}
    creates: {already}
  - name: not-created
    cmd: touch {d}
    creates: {d}
"#,
            a = t.p("a"),
            b = t.p("b"),
            c = t.p("c"),
            d = t.p("d"),
            nope = t.p("nope"),
            already = t.p("already"),
        ),
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0).assert_stderr_has("converged: all 4 resources are in their desired state");
    assert!(!t.path("a").exists(), "ifcmd failed, yet cmd ran");
    assert!(t.path("b").exists(), "ifcmd succeeded, yet cmd did not run");
    assert!(!t.path("c").exists(), "`creates` existed, yet cmd ran");
    assert!(t.path("d").exists(), "`creates` was missing, yet cmd did not run");
    assert!(!out.stderr.contains("exec[if-false]: ran"), "{}", out.stderr);
    assert!(!out.stderr.contains("exec[created]: ran"), "{}", out.stderr);

    // Second run: `creates` now exists for not-created, so it does not run again.
    fs::remove_file(t.path("b")).unwrap();
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert!(!out.stderr.contains("exec[not-created]: ran"), "{}", out.stderr);
    assert!(t.path("b").exists());
}

#[test]
fn exec_watchcmd_lines_rerun_the_command() {
    let t = TestDir::new();
    let (trigger, log) = (t.path("trigger"), t.path("runs.log"));
    fs::write(&trigger, "").unwrap();
    // `--pid=$PPID` ends tail with the agent, however the agent ends.
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: watched
    shell: /bin/sh
    cmd: "echo run >> {log}"
    watchcmd: "exec tail -n +1 -F --pid=$PPID {trigger}"
"#,
            log = log.display(),
            trigger = trigger.display(),
        ),
    );
    let a = t.agent(&[], &yaml);
    a.wait_for("first run", || line_count(&log) == 1);
    for n in 2..=4 {
        fs::OpenOptions::new()
            .append(true)
            .open(&trigger)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"go\n"))
            .unwrap();
        a.wait_for(&format!("run {n}"), || line_count(&log) >= n);
    }
    a.wait_log("exec[watched]: ran `echo run >> ");
    assert!(a.stderr().contains("(event, exit 0)"), "{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn exec_timeout_kills_a_long_command_and_fails() {
    let t = TestDir::new();
    let pidfile = t.path("pid");
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: slow
    shell: /bin/sh
    cmd: "echo $$ > {pidfile}; exec sleep 20"
    timeout: 1
  file:
  - name: other
    path: {other}
    content: "ok\n"
"#,
            pidfile = pidfile.display(),
            other = t.p("other"),
        ),
    );
    let a = t.agent(&["--converged-timeout", "1"], &yaml);
    a.wait_log("exec[slow]: cmd timed out after 1s and was killed");
    let pid: i32 = read(&pidfile).unwrap().trim().parse().unwrap();
    a.wait_for("the timed-out command to be gone", || gone(pid));
    let status = a.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", a.stderr());
    assert!(a.stderr().contains(
        "converged: exec[slow] is not in its desired state: cmd timed out after 1s and was killed"
    ));
    assert_eq!(read(t.path("other")).as_deref(), Some("ok\n"));
}

/// A process is gone when /proc has no entry or only a zombie (its parent may be gone too).
fn gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn exec_stdout_is_sent_into_a_file() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: make
    shell: /bin/sh
    cmd: "printf 'generated by %s\n' exec; echo to-stderr >&2"
  file:
  - name: out
    path: {out}
edges:
- name: make-out
  from: {{kind: exec, name: make}}
  to: {{kind: file, name: out}}
  send: stdout
  recv: content
"#,
            out = t.p("out/generated"),
        ),
    );
    let a = t.agent(&[], &yaml);
    let out = t.path("out/generated");
    a.wait_content(&out, "generated by exec\n");
    // The received content is enforced like any other.
    fs::write(&out, "drift\n").unwrap();
    a.wait_content(&out, "generated by exec\n");
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn timer_notify_reruns_an_exec() {
    let t = TestDir::new();
    let log = t.path("ticks.log");
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  timer:
  - name: tick
    interval: 1
  exec:
  - name: count
    shell: /bin/sh
    cmd: "echo tick >> {log}"
edges:
- name: tick-count
  from: {{kind: timer, name: tick}}
  to: {{kind: exec, name: count}}
  notify: true
"#,
            log = log.display(),
        ),
    );
    let a = t.agent(&[], &yaml);
    a.wait_for("three runs", || line_count(&log) >= 3);
    a.wait_log("timer[tick]: tick");
    assert!(a.stderr().contains("(refresh, exit 0)"), "{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn print_writes_its_message_or_its_name_to_stdout() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        r#"resources:
  print:
  - name: greeting
    msg: "hello, world"
  - name: just-a-name
"#,
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0).assert_stderr_has("print[greeting]: print \"hello, world\"");
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["hello, world", "just-a-name"], "stdout: {:?}", out.stdout);
}

#[test]
fn print_receives_its_message_from_an_exec() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        r#"resources:
  exec:
  - name: compute
    cmd: "echo computed-value"
  print:
  - name: show
edges:
- name: compute-show
  from: {kind: exec, name: compute}
  to: {kind: print, name: show}
  send: stdout
  recv: msg
"#,
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert!(out.stdout.starts_with("computed-value"), "stdout: {:?}", out.stdout);
    assert!(!out.stdout.contains("show"), "printed its name instead: {:?}", out.stdout);
}

#[test]
fn exec_donecmd_runs_after_success_and_its_failure_is_an_error() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: good
    shell: /bin/sh
    cmd: "echo main >> {log}"
    donecmd: "echo done >> {log}"
  - name: main-fails
    shell: /bin/sh
    cmd: "exit 1"
    donecmd: "touch {never}"
  - name: done-fails
    shell: /bin/sh
    cmd: "true"
    donecmd: "echo cleanup broke >&2; exit 2"
"#,
            log = t.p("log"),
            never = t.p("never"),
        ),
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(1)
        .assert_stderr_has("exec[done-fails]: donecmd exited with code 2: cleanup broke")
        .assert_stderr_has("exec[main-fails]: `exit 1` exited with code 1");
    assert_eq!(read(t.path("log")).as_deref(), Some("main\ndone\n"));
    assert!(!t.path("never").exists(), "donecmd ran after a failed cmd");
}

#[test]
fn exec_sends_stderr_and_exitcode_too() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: make
    shell: /bin/sh
    cmd: "echo out; echo err >&2"
  file:
  - name: err
    path: {err}
  - name: code
    path: {code}
edges:
- name: make-err
  from: {{kind: exec, name: make}}
  to: {{kind: file, name: err}}
  send: stderr
  recv: content
- name: make-code
  from: {{kind: exec, name: make}}
  to: {{kind: file, name: code}}
  send: exitcode
  recv: content
"#,
            err = t.p("out/err"),
            code = t.p("out/code"),
        ),
    );
    t.run_to_end(&["--converged-timeout", "1"], &yaml).assert_code(0);
    assert_eq!(read(t.path("out/err")).as_deref(), Some("err\n"));
    assert_eq!(read(t.path("out/code")).as_deref(), Some("0"));
}

/// Ctrl-C while a command runs: the agent exits 0 at once and the command is killed.
#[test]
fn sigint_stops_a_running_command() {
    let t = TestDir::new();
    let pidfile = t.path("pid");
    let yaml = graph(
        &t,
        &format!(
            "resources:\n  exec:\n  - name: long\n    shell: /bin/sh\n    cmd: \"echo $$ > {}; exec sleep 20\"\n",
            pidfile.display()
        ),
    );
    let a = t.agent(&[], &yaml);
    a.wait_for("the command to start", || read(&pidfile).is_some_and(|s| s.ends_with('\n')));
    let pid: i32 = read(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!gone(pid));
    assert_eq!(a.interrupt().code(), Some(0));
    a.wait_for("the command to be killed", || gone(pid));
}

/// A command that ran once and later failed is not "done": the next time anything wakes it
/// (here an upstream file repaired, on an edge without `notify`), it runs again.
#[test]
fn a_failed_exec_runs_again_when_woken_without_refresh() {
    let t = TestDir::new();
    let (trigger, bad, log) = (t.path("trigger"), t.path("bad"), t.path("runs.log"));
    fs::write(&trigger, "").unwrap();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  file:
  - name: up
    path: {up}
    content: "up\n"
  exec:
  - name: job
    shell: /bin/sh
    cmd: "echo run >> {log}; test ! -e {bad}"
    watchcmd: "exec tail -n +1 -F --pid=$PPID {trigger}"
edges:
- name: e
  from: {{kind: file, name: up}}
  to: {{kind: exec, name: job}}
"#,
            up = t.p("up"),
            log = log.display(),
            bad = bad.display(),
            trigger = trigger.display(),
        ),
    );
    let a = t.agent(&[], &yaml);
    a.wait_for("first run", || line_count(&log) == 1);
    // Make it fail on an event from its watchcmd.
    fs::write(&bad, "").unwrap();
    fs::write(&trigger, "go\n").unwrap();
    a.wait_log("ERROR exec[job]: `echo run >> ");
    let runs = line_count(&log);
    // Fix the cause, then wake it through its upstream file only.
    fs::remove_file(&bad).unwrap();
    fs::write(t.path("up"), "drift\n").unwrap();
    a.wait_content(&t.path("up"), "up\n");
    a.wait_log("(retry after failure, exit 0)");
    assert!(line_count(&log) > runs);
    assert_eq!(a.interrupt().code(), Some(0));
}
