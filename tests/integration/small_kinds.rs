//! `line`, `value`, `exit`, `tar`, `gzip` and `ssh:authorized_key` through the binary: files
//! in a test directory, and a user's keys in a systemd sandbox (a user is created there).

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::common::systemd::{DEADLINE, Sandbox, eventually};
use crate::common::{TestDir, identity, mode, read};

/// The log lines of changes made (or that would be made) by resources of `kind`.
fn changes(stderr: &str, kind: &str) -> Vec<String> {
    stderr.lines().filter(|l| l.contains(&format!(" INFO {kind}["))).map(str::to_string).collect()
}

/// Replace a file as an editor does (a new file renamed over it), so a watching agent never
/// reads it half-written.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("swp");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

// ---- line

fn line_graph(t: &TestDir, state: &str, content: &str) -> String {
    format!(
        "graph: g\nresources:\n  line:\n  - name: port\n    file: {}\n    state: {state}\n    content: \"{content}\"\n  - name: old\n    file: {}\n    state: absent\n    content: old\n",
        t.p("conf"),
        t.p("conf")
    )
}

#[test]
fn line_is_added_once_old_lines_removed_and_the_rest_and_mode_kept() {
    let t = TestDir::new();
    fs::write(t.path("conf"), "# top\nold\nkeep = 1\nold").unwrap();
    fs::set_permissions(t.path("conf"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let g = t.write_yaml("g.yaml", &line_graph(&t, "exists", "port = 80"));
    let first = t.run_to_end(&["--no-watch"], &g);
    first.assert_code(0);
    assert_eq!(read(t.path("conf")).unwrap(), "# top\nkeep = 1\nport = 80\n");
    assert_eq!(mode(t.path("conf")), 0o640, "the file keeps its mode");
    let second = t.run_to_end(&["--no-watch"], &g);
    second.assert_code(0);
    assert_eq!(changes(&second.stderr, "line"), Vec::<String>::new(), "converged: nothing to change");
    let before = identity(t.path("conf"));
    t.run_to_end(&["--no-watch"], &g).assert_code(0);
    assert_eq!(identity(t.path("conf")), before, "a converged file is not rewritten");
}

#[test]
fn line_noop_changes_nothing_and_says_what_it_would_do() {
    let t = TestDir::new();
    fs::write(t.path("conf"), "old\n").unwrap();
    let g = t.write_yaml("g.yaml", &line_graph(&t, "exists", "port = 80"));
    let run = t.run_to_end(&["--noop", "--no-watch"], &g);
    run.assert_code(0)
        .assert_stderr_has("noop: would add 1 line to")
        .assert_stderr_has("noop: would remove 1 line");
    assert_eq!(read(t.path("conf")).unwrap(), "old\n");
}

#[test]
fn line_drift_is_repaired_by_a_watching_agent() {
    let t = TestDir::new();
    fs::write(t.path("conf"), "a\n").unwrap();
    let g = t.write_yaml("g.yaml", &line_graph(&t, "exists", "port = 80"));
    let agent = t.agent(&[], &g);
    agent.wait_content(&t.path("conf"), "a\nport = 80\n");
    replace(&t.path("conf"), "a\nold\n");
    agent.wait_content(&t.path("conf"), "a\nport = 80\n");
    fs::remove_file(t.path("conf")).unwrap();
    agent.wait_content(&t.path("conf"), "port = 80\n");
    assert_eq!(mode(t.path("conf")), 0o600, "a file created for a line is 0600");
}

#[test]
fn line_state_absent_removes_a_block_of_lines() {
    let t = TestDir::new();
    fs::write(t.path("conf"), "x\nold\ny\nz\n").unwrap();
    let graph = format!(
        "graph: g\nresources:\n  line:\n  - name: block\n    file: {}\n    state: absent\n    content: \"y\\nz\\n\"\n    trim: true\n",
        t.p("conf")
    );
    t.run_to_end(&["--no-watch"], &t.write_yaml("g.yaml", &graph)).assert_code(0);
    assert_eq!(read(t.path("conf")).unwrap(), "x\nold\n");
}

#[test]
fn bad_params_of_each_kind_are_refused_naming_the_field() {
    let t = TestDir::new();
    let cases = [
        ("line:\n  - name: l\n    file: /tmp/mgmt-compat/x\n    content: a\n", "field `state`"),
        ("line:\n  - name: l\n    file: rel/x\n    state: exists\n", "field `file`"),
        ("tar:\n  - name: /tmp/mgmt-compat/a.tar\n    inputs: [/tmp/mgmt-compat/]\n", "would archive itself"),
        ("tar:\n  - name: /tmp/mgmt-compat/a.tar\n    format: 1\n", "field `format`"),
        ("gzip:\n  - name: /tmp/mgmt-compat/a.gz\n    level: -2\n", "huffman_only"),
        ("exit:\n  - name: e\n    code: 126\n", "field `code`"),
        (
            "ssh:authorized_key:\n  - name: k\n    state: exists\n    type: ssh-rsa\n    key: AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
            "is a `ssh-ed25519` key, not `ssh-rsa`",
        ),
        ("value:\n  - name: v\n    anything: 1\n", "anything"),
    ];
    for (resources, needle) in cases {
        let g = t.write_yaml("g.yaml", &format!("graph: g\nresources:\n  {resources}"));
        t.run_to_end(&["--no-watch"], &g).assert_code(1).assert_stderr_has(needle);
    }
    assert!(!Path::new("/tmp/mgmt-compat").exists());
}

// ---- tar and gzip

fn archive_graph(t: &TestDir) -> String {
    format!(
        "graph: g\nresources:\n  tar:\n  - name: {tar}\n    inputs: [{dir}, {file}]\n  gzip:\n  - name: {gz}\n    input: {tar}\n    level: 9\n  - name: {text}\n    content: \"hello\\n\"\n",
        tar = t.p("out/a.tar"),
        dir = t.p("in"),
        file = t.p("f"),
        gz = t.p("out/a.tar.gz"),
        text = t.p("out/hello.gz"),
    )
}

/// The names and contents of an archive's entries.
fn entries(tar_bytes: &[u8]) -> Vec<(String, String)> {
    let mut a = ::tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            (name, body)
        })
        .collect()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn archive_inputs(t: &TestDir) {
    fs::create_dir_all(t.path("in/sub")).unwrap();
    fs::create_dir_all(t.path("out")).unwrap();
    fs::write(t.path("in/sub/a"), "A").unwrap();
    fs::write(t.path("in/b"), "B").unwrap();
    fs::write(t.path("f"), "F").unwrap();
}

#[test]
fn tar_and_gzip_write_once_and_then_are_converged() {
    let t = TestDir::new();
    archive_inputs(&t);
    let g = t.write_yaml("g.yaml", &archive_graph(&t));
    let first = t.run_to_end(&["--no-watch"], &g);
    first.assert_code(0);
    let tar_bytes = fs::read(t.path("out/a.tar")).unwrap();
    let want = [("in/", ""), ("in/b", "B"), ("in/sub/", ""), ("in/sub/a", "A"), ("f", "F")];
    let want: Vec<(String, String)> = want.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect();
    assert_eq!(entries(&tar_bytes), want);
    assert_eq!(
        gunzip(&fs::read(t.path("out/a.tar.gz")).unwrap()),
        tar_bytes,
        "the gzip of the tar, after it"
    );
    assert_eq!(gunzip(&fs::read(t.path("out/hello.gz")).unwrap()), b"hello\n");
    let ids: Vec<_> =
        ["out/a.tar", "out/a.tar.gz", "out/hello.gz"].iter().map(|p| identity(t.path(p))).collect();
    // Touching an input changes no byte of the archive: no mtime is archived.
    fs::write(t.path("in/b"), "B").unwrap();
    let second = t.run_to_end(&["--no-watch"], &g);
    second.assert_code(0);
    assert_eq!(changes(&second.stderr, "tar"), Vec::<String>::new(), "converged");
    assert_eq!(changes(&second.stderr, "gzip"), Vec::<String>::new(), "converged");
    let again: Vec<_> =
        ["out/a.tar", "out/a.tar.gz", "out/hello.gz"].iter().map(|p| identity(t.path(p))).collect();
    assert_eq!(again, ids, "nothing rewritten");
}

#[test]
fn tar_and_gzip_noop_write_nothing() {
    let t = TestDir::new();
    archive_inputs(&t);
    let run = t.run_to_end(&["--noop", "--no-watch"], &t.write_yaml("g.yaml", &archive_graph(&t)));
    run.assert_code(0).assert_stderr_has("noop: would create");
    assert_eq!(fs::read_dir(t.path("out")).unwrap().count(), 0);
}

#[test]
fn tar_and_gzip_drift_is_repaired_by_a_watching_agent() {
    let t = TestDir::new();
    archive_inputs(&t);
    let g = t.write_yaml("g.yaml", &archive_graph(&t));
    let agent = t.agent(&[], &g);
    let gz = t.path("out/a.tar.gz");
    agent.wait_for("the first archive", || gz_holds(&gz, "B"));
    // An input changes: the tar, then the gzip of it, follow.
    fs::write(t.path("in/b"), "B2").unwrap();
    agent.wait_for("the archive of the changed input", || gz_holds(&gz, "B2"));
    // The outputs are damaged or removed: written again.
    fs::write(t.path("out/a.tar"), "garbage").unwrap();
    agent.wait_for("the tar repaired", || {
        fs::read(t.path("out/a.tar")).is_ok_and(|b| entries_ok(&b) && entries(&b).len() == 5)
    });
    fs::remove_file(t.path("out/hello.gz")).unwrap();
    agent.wait_for("the gzip recreated", || {
        fs::read(t.path("out/hello.gz")).is_ok_and(|b| !b.is_empty() && gunzip(&b) == b"hello\n")
    });
}

/// Whether the gzipped archive at `gz` holds `in/b` with `body`.
fn gz_holds(gz: &Path, body: &str) -> bool {
    fs::read(gz).ok().filter(|b| !b.is_empty()).is_some_and(|b| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b.as_slice()).read_to_end(&mut out).is_ok()
            && entries_ok(&out)
            && entries(&out).iter().any(|(n, c)| n == "in/b" && c == body)
    })
}

/// Whether bytes read as a whole archive.
fn entries_ok(b: &[u8]) -> bool {
    ::tar::Archive::new(b).entries().is_ok_and(|mut es| es.all(|e| e.is_ok())) && b.len() >= 1024
}

// ---- value and exit

#[test]
fn value_sends_its_value_and_receives_one_and_stores_it_in_the_prefix() {
    let t = TestDir::new();
    let prefix = t.path("prefix");
    let graph = format!(
        "graph: g
resources:
  exec:
  - name: say
    cmd: printf from-exec
  value:
  - name: relay
  - name: fixed
    any: 42
  file:
  - name: {a}
  - name: {b}
edges:
- from: {{kind: exec, name: say}}
  to: {{kind: value, name: relay}}
  send: stdout
  recv: any
- from: {{kind: value, name: relay}}
  to: {{kind: file, name: {a}}}
  send: any
  recv: content
- from: {{kind: value, name: fixed}}
  to: {{kind: file, name: {b}}}
  send: any
  recv: content
",
        a = t.p("a"),
        b = t.p("b")
    );
    let g = t.write_yaml("g.yaml", &graph);
    let prefix_arg = prefix.to_str().unwrap();
    let run = crate::common::Agent::spawn(
        &t,
        &["run", "--prefix", prefix_arg, "--no-watch", "yaml", g.to_str().unwrap()],
    );
    let status = run.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", run.stderr());
    assert_eq!(read(t.path("a")).unwrap(), "from-exec");
    assert_eq!(read(t.path("b")).unwrap(), "42");
    let stored: Vec<String> = fs::read_dir(prefix.join("value"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(stored.iter().any(|s| s.contains("\"relay\"") && s.contains("from-exec")), "{stored:?}");
    assert!(stored.iter().any(|s| s.contains("\"fixed\"") && s.contains("42")), "{stored:?}");
    // The next run finds the values stored: nothing to store again.
    let again = crate::common::Agent::spawn(
        &t,
        &["run", "--prefix", prefix_arg, "--no-watch", "yaml", g.to_str().unwrap()],
    );
    assert_eq!(again.wait_exit().code(), Some(0), "{}", again.stderr());
    assert_eq!(changes(&again.stderr(), "value"), Vec::<String>::new(), "converged across runs");
}

#[test]
fn exit_ends_a_watching_run_with_its_code_after_what_comes_before_it() {
    let t = TestDir::new();
    let graph = format!(
        "graph: g\nresources:\n  file:\n  - name: {f}\n    content: done\n  exit:\n  - name: bye\n    code: 3\nedges:\n- from: {{kind: file, name: {f}}}\n  to: {{kind: exit, name: bye}}\n",
        f = t.p("f")
    );
    let g = t.write_yaml("g.yaml", &graph);
    let agent = t.agent(&[], &g);
    let status = agent.wait_exit();
    assert_eq!(status.code(), Some(3), "{}", agent.stderr());
    assert_eq!(read(t.path("f")).unwrap(), "done");
    assert!(agent.stderr().contains("asked the run to end with exit code 3"), "{}", agent.stderr());
    // In noop mode it only says so: the run ends as any noop run does.
    let noop = t.run_to_end(&["--noop", "--no-watch"], &g);
    noop.assert_code(0).assert_stderr_has("exit[bye]: noop: would end the run with exit code 3");
}

// ---- ssh:authorized_key, in a sandbox

const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
const KEYS: &str = "/home/keyuser/.ssh/authorized_keys";
const GRAPH: &str = "/root/mgmt-ssh-test/g.yaml";

fn key_graph(state: &str) -> String {
    format!(
        "graph: g\nresources:\n  ssh:authorized_key:\n  - name: laptop\n    user: keyuser\n    state: {state}\n    type: ssh-ed25519\n    key: {KEY}\n    comment: me@laptop\n    options: [no-pty]\n"
    )
}

#[track_caller]
fn once(sb: &Sandbox, yaml: &str, flags: &[&str]) -> String {
    let out = sb.mgmt_once(GRAPH, yaml, flags);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mgmt {flags:?}: {stderr}");
    stderr
}

#[test]
fn ssh_authorized_key_is_kept_in_a_users_file() {
    let Some(sb) = Sandbox::start() else { return };
    sb.sh("useradd -m -s /bin/sh keyuser");
    let entry = format!("no-pty ssh-ed25519 {KEY} me@laptop\n");
    // noop first: nothing is created.
    let noop = once(&sb, &key_graph("exists"), &["--noop"]);
    assert!(noop.contains("would create /home/keyuser/.ssh (0700)"), "{noop}");
    assert!(sb.read(KEYS).is_none() && !sb.path("/home/keyuser/.ssh").exists());
    once(&sb, &key_graph("exists"), &[]);
    assert_eq!(sb.read(KEYS).unwrap(), entry);
    let perms = sb.sh(&format!("stat -c '%a %U:%G' /home/keyuser/.ssh {KEYS}"));
    assert_eq!(perms, "700 keyuser:keyuser\n600 keyuser:keyuser\n");
    let second = once(&sb, &key_graph("exists"), &[]);
    assert_eq!(changes(&second, "ssh:authorized_key"), Vec::<String>::new(), "converged");
    // A stale entry for the key (other options) is replaced; other lines stay.
    sb.write(KEYS, &format!("# mine\nssh-ed25519 {KEY} old\n"));
    once(&sb, &key_graph("exists"), &[]);
    assert_eq!(sb.read(KEYS).unwrap(), format!("# mine\n{entry}"));
    once(&sb, &key_graph("absent"), &[]);
    assert_eq!(sb.read(KEYS).unwrap(), "# mine\n");
    // A link the user plants there is not followed by the (root) agent.
    sb.write("/root/not-keys", "root's own\n");
    sb.sh(&format!("rm {KEYS} && ln -s /root/not-keys {KEYS}"));
    let out = sb.mgmt_once(GRAPH, &key_graph("exists"), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a symlink: refusing to follow it"));
    assert_eq!(sb.read("/root/not-keys").unwrap(), "root's own\n");
}

#[test]
fn ssh_authorized_key_drift_is_repaired_by_a_watching_agent() {
    let Some(sb) = Sandbox::start() else { return };
    sb.sh("useradd -m -s /bin/sh keyuser");
    let entry = format!("no-pty ssh-ed25519 {KEY} me@laptop\n");
    let mut agent = sb.mgmt_agent(GRAPH, &key_graph("exists"), &[]);
    let has = |want: &str| eventually(|| sb.read(KEYS).as_deref() == Some(want), DEADLINE);
    assert!(has(&entry), "first apply: {}", agent.stderr());
    sb.sh(&format!("echo 'ssh-ed25519 {KEY} tampered' > {KEYS}"));
    assert!(has(&entry), "repaired after an edit: {}", agent.stderr());
    sb.sh(&format!("rm {KEYS}"));
    assert!(has(&entry), "repaired after removal: {}", agent.stderr());
    assert_eq!(sb.sh(&format!("stat -c '%a %U' {KEYS}")), "600 keyuser\n");
    agent.kill();
}

#[test]
fn ssh_authorized_key_for_a_user_made_later_is_written_once_the_user_exists() {
    let Some(sb) = Sandbox::start() else { return };
    let mut agent = sb.mgmt_agent(GRAPH, &key_graph("exists"), &[]);
    agent.wait_log("no user `keyuser` in /etc/passwd");
    sb.sh("useradd -m -s /bin/sh keyuser");
    let entry = format!("no-pty ssh-ed25519 {KEY} me@laptop\n");
    assert!(eventually(|| sb.read(KEYS).as_deref() == Some(entry.as_str()), DEADLINE), "{}", agent.stderr());
    agent.kill();
}
