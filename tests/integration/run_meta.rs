//! Meta params: `retry` and `delay`, failures that do not stop the rest of the graph, `poll`,
//! `limit`/`burst`, and the bounds of numeric params.

use std::fs;

use crate::common::{TestDir, read};

/// A shell command that counts its runs in `counter` and fails until run number `ok_on`.
fn flaky(counter: &str, ok_on: u32) -> String {
    format!(
        "n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo attempt $n >&2; [ $n -ge {ok_on} ]"
    )
}

#[test]
fn retry_with_delay_succeeds_on_the_third_attempt() {
    let t = TestDir::new();
    let counter = t.p("counter");
    let yaml = format!(
        r#"graph: retry
resources:
  exec:
  - name: flaky
    shell: /bin/sh
    cmd: "{cmd}"
    meta: {{retry: 3, delay: 50}}
  - name: after
    cmd: touch {after}
edges:
- name: flaky-after
  from: {{kind: exec, name: flaky}}
  to: {{kind: exec, name: after}}
"#,
        cmd = flaky(&counter, 3),
        after = t.p("after"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0)
        .assert_stderr_has("exec[flaky]: `")
        .assert_stderr_has("exited with code 1; retrying in 50ms (2 left)")
        .assert_stderr_has("exited with code 1; retrying in 50ms (1 left)")
        .assert_stderr_has("(start, exit 0)")
        .assert_stderr_has("converged: all 2 resources are in their desired state");
    assert_eq!(read(&counter).as_deref(), Some("3\n"), "exactly three attempts");
    assert!(t.path("after").exists(), "the dependent ran after the retries succeeded");
    assert!(
        !out.stderr.contains("ERROR"),
        "a retried-then-successful resource logged an error:\n{}",
        out.stderr
    );
}

#[test]
fn exhausted_retries_fail_only_that_resource() {
    let t = TestDir::new();
    let counter = t.p("counter");
    let yaml = format!(
        r#"graph: exhausted
resources:
  exec:
  - name: broken
    shell: /bin/sh
    cmd: "{cmd}"
    meta: {{retry: 2, delay: 10}}
  file:
  - name: fine
    path: {fine}
    content: "fine\n"
"#,
        cmd = flaky(&counter, 100),
        fine = t.p("out/fine"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    let fine = t.path("out/fine");
    a.wait_content(&fine, "fine\n");
    a.wait_log("ERROR exec[broken]: `");
    assert_eq!(read(&counter).as_deref(), Some("3\n"), "one attempt plus two retries");
    // The agent and the other resources carry on: drift is still repaired.
    fs::write(&fine, "drift\n").unwrap();
    a.wait_content(&fine, "fine\n");
    fs::remove_file(&fine).unwrap();
    a.wait_content(&fine, "fine\n");
    assert!(a.try_exit().is_none(), "the agent stopped");
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn retry_forever_is_reported_as_such() {
    let t = TestDir::new();
    let counter = t.p("counter");
    let yaml = format!(
        "graph: forever\nresources:\n  exec:\n  - name: flaky\n    shell: /bin/sh\n    cmd: \"{}\"\n    meta: {{retry: -1, delay: 10}}\n",
        flaky(&counter, 4)
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    // Retries that go on forever wait at least 100 ms.
    out.assert_code(0).assert_stderr_has("; retrying in 100ms (forever)");
    assert_eq!(read(&counter).as_deref(), Some("4\n"));
}

/// `poll` replaces watching with periodic checks; drift is still repaired.
#[test]
fn poll_repairs_drift() {
    let t = TestDir::new();
    let yaml = format!(
        "graph: poll\nresources:\n  file:\n  - name: polled\n    path: {}\n    content: \"polled\\n\"\n    meta: {{poll: 1}}\n",
        t.p("out/polled")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    let p = t.path("out/polled");
    a.wait_content(&p, "polled\n");
    fs::write(&p, "drift\n").unwrap();
    a.wait_content(&p, "polled\n");
    fs::remove_file(&p).unwrap();
    a.wait_content(&p, "polled\n");
    a.wait_log_count("file[polled]: create file", 2);
    assert_eq!(a.count("file[polled]: replace content ("), 1, "{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn limit_and_burst_are_accepted_and_still_converge() {
    let t = TestDir::new();
    let yaml = format!(
        r#"graph: limited
resources:
  file:
  - name: limited
    path: {p}
    content: "limited\n"
    meta: {{limit: 5, burst: 2}}
  - name: slow
    path: {q}
    content: "slow\n"
    meta: {{limit: 0.5}}
"#,
        p = t.p("out/limited"),
        q = t.p("out/slow"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&["--converged-timeout", "1"], &yaml);
    let (p, q) = (t.path("out/limited"), t.path("out/slow"));
    a.wait_content(&p, "limited\n");
    a.wait_content(&q, "slow\n");
    // A burst of drift is rate limited, not lost: the final state is repaired.
    for i in 0..5 {
        fs::write(&p, format!("drift {i}\n")).unwrap();
    }
    fs::write(&q, "drift\n").unwrap();
    a.wait_content(&p, "limited\n");
    a.wait_content(&q, "slow\n");
    let status = a.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", a.stderr());
    assert!(a.stderr().contains("converged: all 2 resources are in their desired state"), "{}", a.stderr());
    assert_eq!(read(&p).as_deref(), Some("limited\n"));
}

/// A resource that fails forever without a delay: retries are spaced and their warnings are
/// rate limited (a burst, then one every 10 s saying how many were not logged).
#[test]
fn retrying_forever_without_delay_does_not_flood_the_log() {
    let t = TestDir::new();
    let counter = t.p("counter");
    let yaml = format!(
        "graph: flood\nresources:\n  exec:\n  - name: flaky\n    shell: /bin/sh\n    cmd: \"{}\"\n    meta: {{retry: -1}}\n",
        flaky(&counter, u32::MAX)
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    let attempts = || read(&counter).and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(0);
    a.wait_for("twelve attempts", || attempts() >= 12);
    let warnings = a.count("retrying in");
    assert!(
        (1..=6).contains(&warnings),
        "{warnings} retry warnings for {} attempts:\n{}",
        attempts(),
        a.stderr()
    );
    assert!(a.stderr().contains("exec[flaky]: `"), "{}", a.stderr());
    assert!(a.stderr().contains("; retrying in 100ms (forever)"), "{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
}

/// A watch that ends at once is restarted ever later (doubling from 100 ms), and each
/// restart runs the command once: no flood of runs.
#[test]
fn a_watch_that_keeps_ending_is_restarted_with_backoff_and_one_run_each() {
    let t = TestDir::new();
    let yaml = t.write_yaml(
        "g.yaml",
        "graph: g\nresources:\n  exec:\n  - {name: w, shell: /bin/sh, cmd: \"true\", watchcmd: \"true\", meta: {retry: -1}}\n",
    );
    let a = t.agent(&[], &yaml);
    // The fifth failure: the waits so far add up to 1.5 s, at 100 ms each they would be 0.5 s.
    a.wait_log("watch failed: watchcmd exited (exit status: 0); restarting in 1.6s");
    let log = a.stderr();
    let waits: Vec<&str> = log.lines().filter_map(|l| l.split("; restarting in ").nth(1)).collect();
    assert_eq!(waits, ["100ms", "200ms", "400ms", "800ms", "1.6s"], "{log}");
    // The start, then one run per restart: four so far (the fifth may have begun).
    a.wait_log_count("exec[w]: ran `true`", 5);
    let runs = a.count("exec[w]: ran `true`");
    assert!(runs <= 6, "{runs} runs:\n{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
}

/// Numbers the engine cannot honour are refused when the graph is read, naming the field;
/// nothing panics later.
#[test]
fn numeric_params_out_of_bounds_are_validation_errors_naming_the_field() {
    let t = TestDir::new();
    for (what, res, field) in [
        ("timer", "timer:\n  - name: r\n    interval: 9223372036854775807", "interval"),
        ("timer", "timer:\n  - name: r\n    interval: 315360001", "interval"),
        ("exec", "exec:\n  - name: r\n    cmd: \"true\"\n    timeout: 18446744073709551615", "timeout"),
        ("file", "file:\n  - name: r\n    path: /tmp/x\n    meta: {limit: 1e-300}", "meta.limit"),
        ("file", "file:\n  - name: r\n    path: /tmp/x\n    meta: {limit: 1e-9}", "meta.limit"),
        ("file", "file:\n  - name: r\n    path: /tmp/x\n    meta: {poll: 18446744073709551615}", "meta.poll"),
    ] {
        let yaml = t.write_yaml("g.yaml", &format!("graph: bounds\nresources:\n  {res}\n"));
        t.run_to_end(&["--no-watch"], &yaml)
            .assert_code(1)
            .assert_stderr_has(&format!("{what}[r]: field `{field}`"));
    }
    // The bounds themselves are accepted.
    let yaml = t.write_yaml(
        "g.yaml",
        &format!(
            "graph: bounds\nresources:\n  timer:\n  - name: r\n    interval: 315360000\n  file:\n  - name: f\n    path: {}\n    content: x\n    meta: {{limit: 0.0000001, poll: 315360000}}\n",
            t.p("f")
        ),
    );
    t.run_to_end(&["--no-watch"], &yaml).assert_code(0);
}

/// The same bound holds for the one interval given on the command line.
#[test]
fn a_converged_timeout_beyond_ten_years_is_refused() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", "graph: g\nresources:\n  noop:\n  - name: n\n");
    let out = t.run_to_end(&["--converged-timeout", "18446744073709551615"], &yaml);
    out.assert_code(2).assert_stderr_has("--converged-timeout");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// Three commands share the semaphore `one` (count 1): however the engine schedules them,
/// no two run at once, which each one's start and end lines in a shared log show. A fourth,
/// on `two:2`, with `limit: .inf` (no limit), runs beside them.
#[test]
fn commands_on_one_semaphore_never_overlap() {
    let t = TestDir::new();
    let log = t.p("log");
    let step = |name: &str| {
        format!(
            "  - name: {name}\n    shell: /bin/sh\n    cmd: \"echo start >> {log}; sleep 0.2; echo end >> {log}\"\n    meta: {{sema: [one], limit: .inf}}\n"
        )
    };
    let yaml = format!(
        "graph: sema\nresources:\n  exec:\n{}{}{}  - name: apart\n    cmd: touch {apart}\n    meta: {{sema: [\"two:2\"]}}\n",
        step("a"),
        step("b"),
        step("c"),
        apart = t.p("apart"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    t.run_to_end(&["--converged-timeout", "1"], &yaml).assert_code(0);
    let lines: Vec<String> = read(t.path("log")).unwrap_or_default().lines().map(String::from).collect();
    assert_eq!(lines, ["start", "end", "start", "end", "start", "end"], "one at a time");
    assert!(t.path("apart").exists());
}

/// Upstream's meta params this agent does not implement are refused with the reason, not
/// ignored; their usual values are accepted.
#[test]
fn an_unsupported_meta_param_is_refused_with_why() {
    let t = TestDir::new();
    let graph = |meta: &str| format!("graph: m\nresources:\n  noop:\n  - name: n\n    meta: {meta}\n");
    let usual =
        t.write_yaml("usual.yaml", &graph("{hidden: false, realize: false, timeout: 0, autogroup: false}"));
    t.run_to_end(&["--no-watch"], &usual).assert_code(0);
    let set = t.write_yaml("set.yaml", &graph("{timeout: 5}"));
    t.run_to_end(&["--no-watch"], &set)
        .assert_code(1)
        .assert_stderr_has("meta.timeout")
        .assert_stderr_has("a check has no time limit here");
    // `reverse` on a kind that cannot be undone.
    let set = t.write_yaml("set.yaml", &graph("{reverse: true}"));
    t.run_to_end(&["--no-watch"], &set)
        .assert_code(1)
        .assert_stderr_has("meta.reverse")
        .assert_stderr_has("`noop` cannot be undone by this agent (only `file` can)");
}

/// `meta.realize`: a resource a new graph removes or changes before it ever converged runs
/// on until it has, and what replaces it waits for it. Without it, the swap stops it.
#[test]
fn realize_lets_a_removed_or_changed_resource_converge_once_first() {
    let t = TestDir::new();
    let (go, log) = (t.path("go"), t.path("log"));
    // An exec that converges only once `go` exists, then appends `word` to the log.
    let graph = |name: &str, word: &str, realize: bool| {
        format!(
            "graph: r\nresources:\n  exec:\n  - name: {name}\n    shell: /bin/sh\n    cmd: \"while [ ! -e {go} ]; do sleep 0.05; done; echo {word} >> {log}\"\n    meta: {{realize: {realize}}}\n",
            go = go.display(),
            log = log.display(),
        )
    };
    let nothing = "graph: r\nresources:\n  noop:\n  - name: n\n";
    let yaml = t.write_yaml("g.yaml", &graph("slow", "first", true));
    let a = t.agent(&[], &yaml);
    a.wait_log("running graph");

    // Changed before it converged: the old one runs on, and the new one runs after it.
    t.replace_yaml("g.yaml", &graph("slow", "second", true));
    a.wait_log("exec[slow]: realize: runs on until it has converged once");
    std::fs::write(&go, "").unwrap();
    a.wait_content(&log, "first\nsecond\n");

    // Removed before it converged: it runs on and converges.
    std::fs::remove_file(&go).unwrap();
    t.replace_yaml("g.yaml", &graph("gone", "third", true));
    a.wait_log_count("graph swapped", 2);
    t.replace_yaml("g.yaml", nothing);
    a.wait_log("exec[gone]: realize: runs on until it has converged once");
    std::fs::write(&go, "").unwrap();
    a.wait_content(&log, "first\nsecond\nthird\n");

    // Without realize, removed the same way: stopped at once, it never writes.
    std::fs::remove_file(&go).unwrap();
    t.replace_yaml("g.yaml", &graph("dropped", "never", false));
    a.wait_log_count("graph swapped", 4);
    t.replace_yaml("g.yaml", nothing);
    a.wait_log_count("graph swapped", 5);
    // The swap has stopped it; its command is killed a moment later.
    let never = format!("echo never >> {}", log.display());
    let running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(never.as_str()))
        })
    };
    crate::common::wait_until(|| !running(), std::time::Duration::from_secs(15));
    std::fs::write(&go, "").unwrap();
    t.replace_yaml("g.yaml", &graph("last", "fourth", false));
    a.wait_content(&log, "first\nsecond\nthird\nfourth\n");
}
