//! What a run says about its changes: `--noop` shows a unified diff of file contents
//! (bounded, binary content and sensitive files shown without their content), real runs log
//! the same at debug level, and `--detailed-exitcodes` tells changes and failures apart.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::{Finished, TestDir, identity, mode, read};

/// A graph of one file resource at `out/f`, with `params` (YAML lines, indented by 4).
fn one_file(t: &TestDir, params: &str) -> std::path::PathBuf {
    let yaml = format!("graph: g\nresources:\n  file:\n  - name: f\n    path: {}\n{params}", t.p("out/f"));
    t.write_yaml("g.yaml", &yaml)
}

/// Put `content` at `out/f` with `mode`.
fn existing(t: &TestDir, content: &[u8], m: u32) -> std::path::PathBuf {
    let f = t.path("out/f");
    fs::create_dir_all(t.path("out")).unwrap();
    fs::write(&f, content).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(m)).unwrap();
    f
}

#[track_caller]
fn has_line(out: &Finished, line: &str) {
    assert!(out.stderr.lines().any(|l| l == line), "no line {line:?} in:\n{}", out.stderr);
}

#[track_caller]
fn lacks(out: &Finished, text: &str) {
    assert!(!out.stderr.contains(text), "{text:?} was logged:\n{}", out.stderr);
}

#[test]
fn noop_shows_a_unified_diff_of_the_content_and_changes_nothing() {
    let t = TestDir::new();
    let f = existing(&t, b"one\ntwo\nold line\nthree\n", 0o644);
    let before = identity(&f);
    let yaml = one_file(&t, "    content: \"one\\ntwo\\nnew line\\nthree\\n\"\n");
    let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[f]: noop: would replace content (23 -> 23 bytes)");
    let path = t.p("out/f");
    for line in [
        &format!("--- {path} (current)"),
        &format!("+++ {path} (desired)"),
        "@@ -1,4 +1,4 @@",
        " one",
        " two",
        "-old line",
        "+new line",
        " three",
    ] {
        has_line(&out, line);
    }
    assert_eq!(read(&f).as_deref(), Some("one\ntwo\nold line\nthree\n"));
    assert_eq!(identity(&f), before);
}

#[test]
fn noop_shows_the_content_of_a_new_file() {
    let t = TestDir::new();
    let yaml = one_file(&t, "    content: \"hello\\n\"\n");
    let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
    out.assert_code(0);
    has_line(&out, "--- /dev/null");
    has_line(&out, "+hello");
    assert!(!t.path("out/f").exists());
}

#[test]
fn noop_shows_mode_changes_from_old_to_new() {
    let t = TestDir::new();
    let f = existing(&t, b"same\n", 0o644);
    let yaml = one_file(&t, "    content: \"same\\n\"\n    mode: \"0640\"\n");
    let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[f]: noop: would set mode 0644 -> 0640");
    assert_eq!(mode(&f), 0o644);
}

#[test]
fn noop_shows_binary_content_by_its_size_only() {
    let t = TestDir::new();
    existing(&t, b"plain text\n", 0o644);
    fs::write(t.path("blob"), b"\x7fELF\x02\x01\x01\0\0\0binary-marker").unwrap();
    let yaml = one_file(&t, &format!("    source: {}\n", t.p("blob")));
    let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
    out.assert_code(0);
    has_line(&out, "binary content changed (11 -> 23 bytes)");
    lacks(&out, "plain text");
    lacks(&out, "binary-marker");
    assert_eq!(read(t.path("out/f")).as_deref(), Some("plain text\n"));
}

/// A file that not everyone may read (mode without world-read, now or as desired) keeps its
/// content out of the log: noop says only that it would change.
#[test]
fn a_file_without_world_read_shows_only_that_its_content_changed() {
    let t = TestDir::new();
    existing(&t, b"password=hunter2\n", 0o600);
    let yaml = one_file(&t, "    content: \"password=correcthorse\\n\"\n");
    let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[f]: noop: would replace content (sensitive)");
    has_line(&out, "content changed");
    lacks(&out, "hunter2");
    lacks(&out, "correcthorse");

    // A world-readable file that will be made private is sensitive too.
    let t = TestDir::new();
    existing(&t, b"password=hunter2\n", 0o644);
    let yaml = one_file(&t, "    content: \"password=correcthorse\\n\"\n    mode: \"0640\"\n");
    let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
    out.assert_code(0);
    has_line(&out, "content changed");
    lacks(&out, "hunter2");
    lacks(&out, "correcthorse");
}

#[test]
fn the_sensitive_meta_param_keeps_content_out_of_noop_and_debug_logs() {
    let t = TestDir::new();
    let f = existing(&t, b"token=old-secret\n", 0o644);
    let yaml = one_file(&t, "    content: \"token=new-secret\\n\"\n    meta: {sensitive: true}\n");
    let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[f]: noop: would replace content (sensitive)");
    has_line(&out, "content changed");
    lacks(&out, "old-secret");
    lacks(&out, "new-secret");

    let out = t.run_to_end(&["--log-level", "debug", "--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[f]: replace content (sensitive)");
    lacks(&out, "old-secret");
    lacks(&out, "new-secret");
    assert_eq!(read(&f).as_deref(), Some("token=new-secret\n"));
}

#[test]
fn the_sensitive_meta_param_keeps_command_output_out_of_debug_logs() {
    let t = TestDir::new();
    let exec = |name: &str, meta: &str| {
        format!(
            "  - name: {name}\n    shell: /bin/sh\n    cmd: 'echo \"$TOKEN\"; echo \"$TOKEN\" >&2'\n    env: {{TOKEN: {name}-token}}\n{meta}"
        )
    };
    let yaml = format!(
        "graph: g\nresources:\n  exec:\n{}{}",
        exec("hidden", "    meta: {sensitive: true}\n"),
        exec("shown", "")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--log-level", "debug", "--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("exec[hidden]: ran `echo");
    has_line(&out, "stdout: shown-token");
    has_line(&out, "stderr: shown-token");
    lacks(&out, "hidden-token");

    // Nor the output of a command that fails.
    let yaml = "graph: g\nresources:\n  exec:\n  - name: fails\n    shell: /bin/sh\n    cmd: 'echo \"$TOKEN\"; exit 3'\n    env: {TOKEN: failed-token}\n    meta: {sensitive: true}\n";
    let yaml = t.write_yaml("g.yaml", yaml);
    let out = t.run_to_end(&["--log-level", "debug", "--no-watch"], &yaml);
    out.assert_code(1).assert_stderr_has("exec[fails]: `echo \"$TOKEN\"; exit 3` exited with code 3");
    lacks(&out, "failed-token");
}

#[test]
fn real_runs_log_the_diff_and_command_output_at_debug_level() {
    let t = TestDir::new();
    let f = existing(&t, b"before\n", 0o644);
    let yaml = format!(
        "graph: g\nresources:\n  file:\n  - name: f\n    path: {}\n    content: \"after\\n\"\n  exec:\n  - name: e\n    cmd: echo said-on-stdout\n",
        t.p("out/f")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--log-level", "debug", "--no-watch"], &yaml);
    out.assert_code(0);
    has_line(&out, "-before");
    has_line(&out, "+after");
    has_line(&out, "stdout: said-on-stdout");
    assert_eq!(read(&f).as_deref(), Some("after\n"));

    // At the default level, only the change lines.
    fs::write(&f, b"before\n").unwrap();
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[f]: replace content (7 -> 6 bytes)");
    lacks(&out, "-before");
    lacks(&out, "stdout: said-on-stdout");
}

/// A graph of a file (`out/f`, content `new`) and, with `failing`, a command that fails.
fn file_and_exec(t: &TestDir, failing: bool) -> std::path::PathBuf {
    let mut yaml =
        format!("graph: g\nresources:\n  file:\n  - name: f\n    path: {}\n    content: new\n", t.p("out/f"));
    if failing {
        yaml.push_str("  exec:\n  - name: fails\n    cmd: \"false\"\n");
    }
    t.write_yaml("g.yaml", &yaml)
}

#[test]
fn detailed_exitcodes_is_0_when_nothing_changes() {
    let t = TestDir::new();
    existing(&t, b"new", 0o644);
    let yaml = file_and_exec(&t, false);
    t.run_to_end(&["--detailed-exitcodes", "--no-watch"], &yaml).assert_code(0);
    t.run_to_end(&["--detailed-exitcodes", "--noop", "--converged-timeout", "0"], &yaml).assert_code(0);
}

#[test]
fn detailed_exitcodes_is_2_when_something_changed_or_would_change() {
    let t = TestDir::new();
    let f = existing(&t, b"old", 0o644);
    let yaml = file_and_exec(&t, false);
    t.run_to_end(&["--detailed-exitcodes", "--noop", "--no-watch"], &yaml).assert_code(2);
    assert_eq!(read(&f).as_deref(), Some("old"));
    t.run_to_end(&["--detailed-exitcodes", "--converged-timeout", "0"], &yaml).assert_code(2);
    assert_eq!(read(&f).as_deref(), Some("new"));
    // Without the flag, changes exit 0 as before.
    fs::write(&f, b"old").unwrap();
    t.run_to_end(&["--no-watch"], &yaml).assert_code(0);
}

#[test]
fn detailed_exitcodes_is_4_when_something_failed() {
    let t = TestDir::new();
    existing(&t, b"new", 0o644);
    let yaml = file_and_exec(&t, true);
    t.run_to_end(&["--detailed-exitcodes", "--no-watch"], &yaml)
        .assert_code(4)
        .assert_stderr_has("exec[fails]: `false` exited with code 1");
}

#[test]
fn detailed_exitcodes_is_6_when_something_changed_and_something_failed() {
    let t = TestDir::new();
    let f = existing(&t, b"old", 0o644);
    let yaml = file_and_exec(&t, true);
    t.run_to_end(&["--detailed-exitcodes", "--no-watch"], &yaml).assert_code(6);
    assert_eq!(read(&f).as_deref(), Some("new"));
    // Without the flag, a failure exits 1 as before.
    t.run_to_end(&["--no-watch"], &yaml).assert_code(1);
}

#[test]
fn detailed_exitcodes_needs_a_run_that_ends() {
    let t = TestDir::new();
    let yaml = file_and_exec(&t, false);
    t.run_to_end(&["--detailed-exitcodes"], &yaml)
        .assert_code(1)
        .assert_stderr_has("--detailed-exitcodes needs --no-watch or --converged-timeout");
    assert!(!t.path("out/f").exists());
}
