//! `exec` (args, shell, cwd, env, ifcmd, ifequals, nifcmd, per-command cwd and shell,
//! creates, mtimes, watchcmd, watchfiles, timeout and sig, user and group, send/recv,
//! process groups, bounded output), `timer`, `print` and `kv`, run for real.

use std::fs;

use crate::common::{self, TestDir, line_count, read};

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
        .assert_stderr_has("exec[done-fails]: donecmd exited with code 2")
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

/// A live edit that changes only params replaces those vertices in the running graph: a
/// new sender's values reach the kept receiver, and a new receiver gets the kept sender's.
#[test]
fn a_live_edit_of_a_sender_or_a_receiver_keeps_send_recv_working() {
    let t = TestDir::new();
    let text = |word: &str, mode: &str| {
        format!(
            r#"resources:
  exec:
  - name: make
    shell: /bin/sh
    cmd: "echo {word}"
  file:
  - name: out
    path: {out}
    mode: "{mode}"
edges:
- name: make-out
  from: {{kind: exec, name: make}}
  to: {{kind: file, name: out}}
  send: stdout
  recv: content
"#,
            out = t.p("out/made"),
        )
    };
    let yaml = graph(&t, &text("one", "0644"));
    let a = t.agent(&[], &yaml);
    let made = t.path("out/made");
    a.wait_content(&made, "one\n");
    graph(&t, &text("two", "0644"));
    a.wait_content(&made, "two\n");
    a.wait_log_count("graph swapped: 1 kept, 1 started, 1 stopped", 1);
    graph(&t, &text("two", "0600"));
    a.wait_for("the new receiver's mode", || {
        fs::metadata(&made)
            .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777 == 0o600)
    });
    assert_eq!(read(&made).as_deref(), Some("two\n"), "the new receiver has the kept sender's value");
    a.wait_log_count("graph swapped: 1 kept, 1 started, 1 stopped", 2);
    assert_eq!(a.interrupt().code(), Some(0));
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

/// A unique argument for `sleep` in this test process: `<secs>.<pid>` (a valid duration).
fn sleep_arg(secs: u32) -> String {
    format!("{secs}.{}", std::process::id())
}

/// Pids of live processes whose command line is exactly `sleep <arg>` (zombies have none).
fn sleeping(arg: &str) -> Vec<i32> {
    let want = format!("sleep\0{arg}\0");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes()))
        .collect()
}

/// Kills, when dropped, whatever `sleep <arg>` is left, so a failing test leaves nothing behind.
struct Sleeps(Vec<String>);

impl Drop for Sleeps {
    fn drop(&mut self) {
        for arg in &self.0 {
            for pid in sleeping(arg) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The process group of a process, from /proc.
fn pgid(pid: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')').next().unwrap().split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn a_timeout_kills_every_process_the_command_started() {
    let t = TestDir::new();
    let (a1, a2) = (sleep_arg(1001), sleep_arg(1011));
    let _cleanup = Sleeps(vec![a1.clone(), a2.clone()]);
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: seq
    shell: /bin/sh
    cmd: "sleep {a1}; true"
    timeout: 1
  - name: pipe
    shell: /bin/sh
    cmd: "sleep {a2} | cat"
    timeout: 1
"#
        ),
    );
    let a = t.agent(&[], &yaml);
    a.wait_log("exec[seq]: cmd timed out after 1s and was killed");
    a.wait_log("exec[pipe]: cmd timed out after 1s and was killed");
    a.wait_for("no `sleep` of a timed-out command left", || {
        sleeping(&a1).is_empty() && sleeping(&a2).is_empty()
    });
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn agent_stop_kills_every_process_of_running_commands_and_watchcmds() {
    let t = TestDir::new();
    let (a1, a2) = (sleep_arg(1002), sleep_arg(1012));
    let _cleanup = Sleeps(vec![a1.clone(), a2.clone()]);
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: long
    shell: /bin/sh
    cmd: "sleep {a1}; true"
  - name: watched
    shell: /bin/sh
    cmd: "true"
    watchcmd: "sleep {a2} | cat"
"#
        ),
    );
    let a = t.agent(&[], &yaml);
    a.wait_for("both commands running", || !sleeping(&a1).is_empty() && !sleeping(&a2).is_empty());
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.stderr());
    a.wait_for("no `sleep` left after the agent stopped", || {
        sleeping(&a1).is_empty() && sleeping(&a2).is_empty()
    });
}

#[test]
fn removing_an_exec_kills_every_process_its_command_started() {
    let t = TestDir::new();
    let arg = sleep_arg(1004);
    let _cleanup = Sleeps(vec![arg.clone()]);
    let keep = format!("  file:\n  - name: kept\n    path: {}\n    content: \"kept\\n\"\n", t.p("kept"));
    let yaml = graph(
        &t,
        &format!(
            "resources:\n  exec:\n  - name: long\n    shell: /bin/sh\n    cmd: \"sleep {arg}; true\"\n{keep}"
        ),
    );
    let a = t.agent(&[], &yaml);
    a.wait_for("the command running", || !sleeping(&arg).is_empty());
    t.replace_yaml("g.yaml", &format!("graph: resources\nresources:\n{keep}"));
    a.wait_log("graph swapped: 1 kept, 0 started, 1 stopped");
    a.wait_for("no `sleep` of the removed exec left", || sleeping(&arg).is_empty());
    assert_eq!(a.interrupt().code(), Some(0));
}

/// A background process that keeps stdout open does not keep the exec (or the graph) waiting;
/// it is left running: it is not part of the command's own run.
#[test]
fn an_exec_is_done_when_its_process_exits_even_if_a_background_child_holds_stdout() {
    let t = TestDir::new();
    let arg = sleep_arg(1003);
    let _cleanup = Sleeps(vec![arg.clone()]);
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: bg
    shell: /bin/sh
    cmd: "sleep {arg} & echo started"
  print:
  - name: after
    msg: done
edges:
- name: bg-after
  from: {{kind: exec, name: bg}}
  to: {{kind: print, name: after}}
"#
        ),
    );
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("exec[bg]: ran `sleep ");
    assert_eq!(out.stdout, "done\n");
}

#[test]
fn captured_output_keeps_only_the_last_64_kib() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: loud
    shell: /bin/sh
    cmd: "head -c 10000000 /dev/zero | tr '\\0' a; echo; echo last-line"
  file:
  - name: out
    path: {out}
edges:
- name: loud-out
  from: {{kind: exec, name: loud}}
  to: {{kind: file, name: out}}
  send: stdout
  recv: content
"#,
            out = t.p("out"),
        ),
    );
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has(
        "exec[loud]: cmd printed more than 65536 bytes on stdout; only the last 65536 are kept",
    );
    let got = fs::read(t.path("out")).unwrap();
    assert_eq!(got.len(), 65536);
    assert!(got.ends_with(b"aaa\nlast-line\n"));
}

#[test]
fn a_missing_program_cwd_or_shell_is_named() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: prog
    cmd: no-such-program-xyz --flag
  - name: cwd
    cmd: "true"
    cwd: {nodir}
  - name: shell
    shell: /bin/no-such-shell
    cmd: "true"
"#,
            nodir = t.p("no-such-dir"),
        ),
    );
    t.run_to_end(&["--no-watch"], &yaml)
        .assert_code(1)
        .assert_stderr_has("exec[prog]: starting cmd: program `no-such-program-xyz` not found in PATH")
        .assert_stderr_has(&format!(
            "exec[cwd]: starting cmd: cwd `{}` is not an existing directory",
            t.p("no-such-dir")
        ))
        .assert_stderr_has("exec[shell]: starting cmd: shell `/bin/no-such-shell` not found");
}

#[test]
fn a_nul_byte_in_an_exec_param_is_a_validation_error_naming_the_field() {
    let t = TestDir::new();
    for (field, line) in [
        ("cmd", r#"cmd: "a\0b""#),
        ("args", "cmd: echo\n    args: [\"x\\0y\"]"),
        ("env", "cmd: env\n    env: {A: \"x\\0y\"}"),
        ("cwd", "cmd: \"true\"\n    cwd: \"/tmp/a\\0b\""),
        ("shell", "cmd: \"true\"\n    shell: \"/bin/s\\0h\""),
    ] {
        let yaml = graph(&t, &format!("resources:\n  exec:\n  - name: nul\n    {line}\n"));
        let out = t.run_to_end(&["--no-watch"], &yaml);
        out.assert_code(1)
            .assert_stderr_has(&format!("exec[nul]: field `{field}`: must not contain a NUL byte"));
    }
}

/// `mgmt run yaml` leading a process group of its own, as in a terminal, logging to `log`.
fn agent_in_own_group(t: &TestDir, yaml: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(["run", "--tmp-prefix", "yaml", yaml.to_str().unwrap()])
        .current_dir(t.root())
        .env("TMPDIR", t.path("tmp"))
        .env_remove("MGMT_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// The agent runs in a process group of its own, as in a terminal; Ctrl-C signals the whole
/// group. The commands are not in it: the agent stops them, and logs no errors for them.
#[test]
fn ctrl_c_to_the_agents_group_reaches_only_the_agent_and_logs_no_errors() {
    let t = TestDir::new();
    let (a1, a2) = (sleep_arg(1005), sleep_arg(1015));
    let _cleanup = Sleeps(vec![a1.clone(), a2.clone()]);
    let pidfile = t.path("pid");
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: long
    shell: /bin/sh
    cmd: "echo $$ > {pid}; sleep {a1}; true"
  - name: watched
    shell: /bin/sh
    cmd: "true"
    watchcmd: "sleep {a2}; true"
"#,
            pid = pidfile.display(),
        ),
    );
    let log = t.path("tmp/agent.log");
    let mut child = agent_in_own_group(&t, &yaml, &log);
    let agent = child.id() as i32;
    let started = common::poll_until(
        || {
            read(&pidfile).is_some_and(|s| s.ends_with('\n'))
                && !sleeping(&a1).is_empty()
                && !sleeping(&a2).is_empty()
        },
        common::TIMEOUT,
    );
    let stderr = || read(&log).unwrap_or_default();
    if !started {
        let _ = child.kill();
        panic!("the commands did not start\n{}", stderr());
    }
    let cmd: i32 = read(&pidfile).unwrap().trim().parse().unwrap();
    assert_eq!(pgid(cmd), cmd, "the command leads a process group of its own");
    assert_ne!(pgid(cmd), agent);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(-agent), nix::sys::signal::Signal::SIGINT).unwrap();
    let mut status = None;
    let exited = common::poll_until(
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        },
        common::TIMEOUT,
    );
    if !exited {
        let _ = child.kill();
        panic!("the agent did not stop\n{}", stderr());
    }
    assert_eq!(status.unwrap().code(), Some(0), "{}", stderr());
    assert!(!stderr().contains("ERROR"), "errors logged for commands stopped with the agent:\n{}", stderr());
    common::wait_until(|| sleeping(&a1).is_empty() && sleeping(&a2).is_empty(), common::TIMEOUT);
}

/// Ctrl-C can reach the agent in the instant a command is being started, while the new
/// process is still in the agent's group. The command must survive that too: the agent stops
/// and logs no error for it. Commands start hundreds of times a second here, and the agent is
/// interrupted many times, so that some interrupts land in that instant.
#[test]
fn ctrl_c_while_commands_are_starting_kills_none_of_them() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        r#"resources:
  exec:
  - name: busy
    shell: /bin/sh
    cmd: "true"
    watchcmd: "while :; do echo x; sleep 0.001; done"
"#,
    );
    for round in 0..40 {
        let log = t.path(&format!("tmp/agent-{round}.log"));
        let mut child = agent_in_own_group(&t, &yaml, &log);
        let stderr = || read(&log).unwrap_or_default();
        let busy = common::poll_until(|| stderr().matches("ran `true`").count() >= 20, common::TIMEOUT);
        let agent = nix::unistd::Pid::from_raw(-(child.id() as i32));
        nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGINT).unwrap();
        let status = child.wait().unwrap();
        assert!(busy, "the command did not run repeatedly\n{}", stderr());
        assert_eq!(status.code(), Some(0), "{}", stderr());
        assert!(!stderr().contains("ERROR"), "an error logged in round {round}:\n{}", stderr());
    }
}

#[test]
fn command_output_and_kv_values_are_logged_only_at_debug_level() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        r#"resources:
  exec:
  - name: fails
    shell: /bin/sh
    cmd: "printf 'out-%s\n' SECRET1; printf 'err-%s\n' SECRET2 >&2; exit 3"
  kv:
  - name: token
    value: kv-SECRET3
"#,
    );
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(1)
        .assert_stderr_has("ERROR exec[fails]: `printf")
        .assert_stderr_has("exited with code 3")
        .assert_stderr_has("kv[token]: set token (it was unset)");
    for secret in ["out-SECRET1", "err-SECRET2", "kv-SECRET3"] {
        assert!(!out.stderr.contains(secret), "{secret} logged:\n{}", out.stderr);
    }
    let out = t.run_to_end(&["--no-watch", "--log-level", "debug"], &yaml);
    out.assert_code(1).assert_stderr_has("err-SECRET2").assert_stderr_has("kv-SECRET3");
}

#[test]
fn a_kv_value_too_large_for_etcd_is_a_validation_error_naming_value() {
    let t = TestDir::new();
    let big = "v".repeat(2_000_000);
    let yaml = graph(&t, &format!("resources:\n  kv:\n  - name: big\n    value: {big}\n"));
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(1).assert_stderr_has(
        "kv[big]: field `value`: is 2000002 bytes as stored (JSON); at most 1048576 bytes",
    );
    assert!(!out.stderr.contains("running graph"), "the agent started:\n{}", out.stderr);
    assert!(!out.stderr.contains(&big[..1000]), "the value was logged");
}

#[test]
fn error_texts_are_bounded_in_the_log() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            "resources:\n  exec:\n  - name: wordy\n    shell: /bin/sh\n    cmd: \": {}; exit 1\"\n",
            "w".repeat(50_000)
        ),
    );
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(1).assert_stderr_has("ERROR exec[wordy]: `: www").assert_stderr_has(" more bytes]");
    let longest = out.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096 + 200, "a log line of {longest} bytes");
}

/// A failure with a 3 MB line of output: its host status still reaches etcd, with the error
/// and a bounded tail of the output.
#[test]
fn a_huge_failure_output_is_published_as_a_bounded_tail() {
    let t = TestDir::new();
    let e = common::etcd::Etcd::start(&t);
    let yaml = graph(
        &t,
        "resources:\n  exec:\n  - name: huge\n    shell: /bin/sh\n    cmd: \"head -c 3000000 /dev/zero | tr '\\\\0' y >&2; exit 3\"\n",
    );
    let a = t.agent(&["--seeds", e.url(), "--hostname", "h1"], &yaml);
    let last_error =
        || e.get_json("/_mgmt/hosts/h1").and_then(|v| v["last_error"].as_str().map(str::to_string));
    a.wait_for("the failure in hosts/h1", || last_error().is_some());
    let err = last_error().unwrap();
    assert!(err.starts_with("exec[huge]: `head -c 3000000"), "{err}");
    assert!(err.contains("exited with code 3: ["), "{err}");
    assert!(err.ends_with("yyyy"), "{err}");
    assert!(err.len() <= 2 * 4096, "{}", err.len());
    assert!(!a.stderr().contains("yyyy"), "the output was logged");
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn exec_nifcmd_and_ifequals_guard_the_command() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: nif-true
    cmd: touch {a}
    nifcmd: "true"
  - name: nif-false
    cmd: touch {b}
    nifcmd: "false"
  - name: equal
    cmd: touch {c}
    ifcmd: "echo yes"
    ifequals: "yes\n"
  - name: different
    cmd: touch {d}
    ifcmd: "echo no"
    ifequals: "yes\n"
  - name: stdout-equal
    cmd: touch {e}
    ifcmd: "echo yes; echo warning >&2"
    ifequals_stdout: "yes\n"
  - name: both-differ
    cmd: touch {f}
    ifcmd: "echo yes; echo warning >&2"
    ifequals: "yes\n"
"#,
            a = t.p("a"),
            b = t.p("b"),
            c = t.p("c"),
            d = t.p("d"),
            e = t.p("e"),
            f = t.p("f"),
        ),
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0).assert_stderr_has("converged: all 6 resources are in their desired state");
    assert!(!t.path("a").exists(), "nifcmd succeeded, yet cmd ran");
    assert!(t.path("b").exists(), "nifcmd failed, yet cmd did not run");
    assert!(!t.path("c").exists(), "ifcmd printed what ifequals says, yet cmd ran");
    assert!(t.path("d").exists(), "ifcmd printed something else, yet cmd did not run");
    assert!(!t.path("e").exists(), "ifcmd's stdout equals ifequals_stdout, yet cmd ran");
    assert!(t.path("f").exists(), "ifequals compares stdout and stderr together, yet cmd did not run");
}

#[test]
fn exec_commands_have_their_own_cwd_and_shell_or_the_resources() {
    let t = TestDir::new();
    for d in ["main", "if", "nif", "watch"] {
        fs::create_dir_all(t.path(d)).unwrap();
    }
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: where
    shell: /bin/sh
    cwd: {main}
    cmd: "pwd > {out}/cmd.txt"
    ifcmd: "pwd > {out}/if.txt; echo \"${{BASH_VERSION:+bash}}\" > {out}/ifshell.txt"
    ifcwd: {ifd}
    ifshell: /bin/bash
    nifcmd: "pwd > {out}/nif.txt; echo \"${{BASH_VERSION:+bash}}\" > {out}/nifshell.txt; false"
    nifcwd: nif
    watchcmd: "pwd > {out}/watch.txt; exec tail -f --pid=$PPID /dev/null"
    watchcwd: {watchd}
    donecmd: "pwd > {out}/done.txt"
"#,
            main = t.p("main"),
            ifd = t.p("if"),
            watchd = t.p("watch"),
            out = t.p(""),
        ),
    );
    let a = t.agent(&[], &yaml);
    a.wait_for("donecmd ran", || t.path("done.txt").exists() && t.path("watch.txt").exists());
    assert_eq!(a.interrupt().code(), Some(0));
    let pwd = |f: &str| read(t.path(f)).map(|s| s.trim().to_string());
    assert_eq!(pwd("cmd.txt"), Some(t.p("main")));
    assert_eq!(pwd("if.txt"), Some(t.p("if")));
    // A relative one is relative to the graph file's directory, like `cwd`.
    assert_eq!(pwd("nif.txt"), Some(t.p("nif")));
    assert_eq!(pwd("watch.txt"), Some(t.p("watch")));
    // Without a `donecwd`, `donecmd` runs in `cwd`.
    assert_eq!(pwd("done.txt"), Some(t.p("main")));
    assert_eq!(pwd("ifshell.txt").as_deref(), Some("bash"), "ifshell is bash");
    // Without a `nifshell`, `nifcmd` runs with `shell` (/bin/sh, not bash).
    assert_eq!(pwd("nifshell.txt").as_deref(), Some(""));
}

#[test]
fn exec_watchfiles_changes_rerun_the_command() {
    let t = TestDir::new();
    let (trigger, log) = (t.path("trigger"), t.path("runs.log"));
    let (dir, dirlog) = (t.path("tree"), t.path("tree.log"));
    fs::write(&trigger, "").unwrap();
    fs::create_dir_all(dir.join("sub")).unwrap();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: file
    shell: /bin/sh
    cmd: "echo run >> {log}"
    watchfiles: ["{trigger}"]
  - name: tree
    shell: /bin/sh
    cmd: "echo run >> {dirlog}"
    watchfiles: ["{dir}/"]
"#,
            log = log.display(),
            trigger = trigger.display(),
            dirlog = dirlog.display(),
            dir = dir.display(),
        ),
    );
    let a = t.agent(&[], &yaml);
    a.wait_for("first runs", || line_count(&log) == 1 && line_count(&dirlog) == 1);
    for n in 2..=3 {
        fs::write(&trigger, format!("{n}\n")).unwrap();
        a.wait_for(&format!("run {n} of file"), || line_count(&log) >= n);
        fs::write(dir.join("sub").join(format!("f{n}")), "x").unwrap();
        a.wait_for(&format!("run {n} of tree"), || line_count(&dirlog) >= n);
    }
    a.wait_log("exec[file]: ran `echo run >> ");
    assert!(a.stderr().contains("(event, exit 0)"), "{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn exec_mtimes_force_a_run_past_the_guards_only_when_newer() {
    let t = TestDir::new();
    let (src, other) = (t.path("src"), t.path("other"));
    let (log, iflog) = (t.path("runs.log"), t.path("if.log"));
    fs::write(&src, "v1\n").unwrap();
    fs::write(&other, "").unwrap();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: build
    shell: /bin/sh
    cmd: "echo run >> {log}"
    ifcmd: "echo checked >> {iflog}; false"
    mtimes: ["{src}"]
    watchfiles: ["{other}"]
"#,
            log = log.display(),
            iflog = iflog.display(),
            src = src.display(),
            other = other.display(),
        ),
    );
    let a = t.agent(&[], &yaml);
    // Never ran: `src` counts as newer and the run is forced.
    a.wait_for("first run", || line_count(&log) == 1);
    // The command's output can land before the agent logs the run.
    a.wait_log("(mtimes, exit 0)");
    // An event while `src` is older than the last run: the guard decides (and blocks).
    let checks = line_count(&iflog);
    fs::write(&other, "x\n").unwrap();
    a.wait_for("ifcmd asked", || line_count(&iflog) > checks);
    assert_eq!(line_count(&log), 1, "cmd ran though no mtime was newer and ifcmd failed");
    // `src` is replaced (one event, its mtime set before): newer than the last run, so the
    // run is forced again, without asking ifcmd.
    let checks = line_count(&iflog);
    fs::write(t.path("src.new"), "v2\n").unwrap();
    fs::rename(t.path("src.new"), &src).unwrap();
    a.wait_for("second run", || line_count(&log) == 2);
    assert_eq!(line_count(&iflog), checks, "a forced run asked ifcmd");
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn exec_a_missing_mtimes_file_is_an_error() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            "resources:\n  exec:\n  - name: m\n    cmd: \"true\"\n    mtimes: [\"{}\"]\n",
            t.p("missing")
        ),
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_stderr_has(&format!("exec[m]: mtimes: `{}`", t.p("missing")));
}

#[test]
fn exec_sig_is_sent_at_timeout() {
    let t = TestDir::new();
    let got = t.path("got");
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: trapped
    shell: /bin/sh
    sig: USR1
    timeout: 1
    cmd: "trap 'echo usr1 > {got}; exit 0' USR1; sleep 20 & wait"
"#,
            got = got.display(),
        ),
    );
    let a = t.agent(&["--converged-timeout", "1"], &yaml);
    a.wait_log("exec[trapped]: cmd timed out after 1s and was killed");
    a.wait_content(&got, "usr1\n");
    a.wait_exit();
}

#[test]
fn exec_runs_as_user_and_group_and_names_an_unknown_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: as-nobody
    shell: /bin/sh
    cwd: /
    user: nobody
    group: "4321"
    cmd: "id -u; id -g"
  - name: unknown
    cmd: "true"
    user: no-such-user-xyz
  file:
  - name: out
    path: {out}
edges:
- name: ids
  from: {{kind: exec, name: as-nobody}}
  to: {{kind: file, name: out}}
  send: stdout
  recv: content
"#,
            out = t.p("ids"),
        ),
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_stderr_has("exec[unknown]: user `no-such-user-xyz` does not exist");
    assert_eq!(read(t.path("ids")), Some(format!("{}\n4321\n", nobody.uid)), "{}", out.stderr);
}

#[test]
fn exec_send_stdout_is_sent_while_cmd_has_not_run() {
    let t = TestDir::new();
    fs::write(t.path("exists"), "").unwrap();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  exec:
  - name: skipped
    cmd: "echo real"
    creates: {exists}
    send_stdout: "fallback\n"
  file:
  - name: out
    path: {out}
edges:
- name: e
  from: {{kind: exec, name: skipped}}
  to: {{kind: file, name: out}}
  send: stdout
  recv: content
"#,
            exists = t.p("exists"),
            out = t.p("out"),
        ),
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert_eq!(read(t.path("out")).as_deref(), Some("fallback\n"), "{}", out.stderr);
}

/// `print` with `refresh_only` prints when a `notify` edge refreshes it, not when the graph
/// starts; `noop` takes a `comment`.
#[test]
fn print_refresh_only_prints_only_when_notified() {
    let t = TestDir::new();
    let yaml = graph(
        &t,
        &format!(
            r#"resources:
  print:
  - name: quiet
    msg: "never printed"
    refresh_only: true
  - name: told
    msg: "refreshed"
    refresh_only: true
  exec:
  - name: make
    cmd: touch {made}
  noop:
  - name: join
    comment: "a join point"
edges:
- name: make-told
  from: {{kind: exec, name: make}}
  to: {{kind: print, name: told}}
  notify: true
"#,
            made = t.p("made"),
        ),
    );
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert!(!out.stdout.contains("never printed"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("refreshed").count(), 1, "{}", out.stdout);
}
