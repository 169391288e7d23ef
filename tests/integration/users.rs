//! `user`, `group` and `hostname` against the real shadow tools and systemd-hostnamed, each
//! test in a systemd sandbox of its own (an overlay root and a UTS namespace of its own: the
//! host's accounts and hostname never change). Outside changes are made with the same tools
//! an operator would use (`usermod`, `gpasswd`, `hostnamectl`, `hostname`), inside.
//!
//! Needs root; without it each test prints a loud `SKIPPED` line and returns. The tests that
//! change nothing run on the host: bad params (refused before anything runs) and a hostname
//! resource with no system bus.

use std::process::{Command, Output};

use crate::common::TestDir;
use crate::common::systemd::{DEADLINE, Sandbox, Spawned, eventually};

const MGMT: &str = env!("CARGO_BIN_EXE_mgmt");
const GRAPH: &str = "/root/mgmt-users-test/g.yaml";

macro_rules! sandbox_or_skip {
    () => {
        match Sandbox::start() {
            Some(sb) => sb,
            None => return,
        }
    };
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `getent DB KEY` inside, trimmed (empty when there is no such entry).
fn getent(sb: &Sandbox, db: &str, key: &str) -> String {
    text(&sb.exec(&["getent", db, key]).stdout).trim().to_string()
}

/// One pass; panics unless it exits with `code` (`--detailed-exitcodes`: 0 nothing changed,
/// 2 something changed, 4 a check failed). Returns the log.
#[track_caller]
fn once(sb: &Sandbox, yaml: &str, flags: &[&str], code: i32) -> String {
    let mut all = vec!["--detailed-exitcodes"];
    all.extend_from_slice(flags);
    let out: Output = sb.mgmt_once(GRAPH, yaml, &all);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "mgmt run {flags:?}: {}\n--- stderr:\n{log}", out.status);
    log
}

#[track_caller]
fn assert_logged(log: &str, lines: &[&str]) {
    for l in lines {
        assert!(log.contains(l), "no {l:?} in:\n{log}");
    }
}

/// Wait until `cond` holds inside; panic with the agent's log otherwise.
#[track_caller]
fn wait(agent: &mut Spawned, what: &str, mut cond: impl FnMut() -> bool) {
    if !eventually(&mut cond, DEADLINE) {
        panic!("timed out after {DEADLINE:?} waiting for: {what}\n--- agent stderr:\n{}", agent.stderr());
    }
}

const ACCOUNTS: &str = "graph: accounts
resources:
  user:
  - name: mgmtalice
    uid: 15001
    group: mgmtops
    groups: [mgmtdev, mgmtweb]
    homedir: /srv/mgmtalice/
    shell: /bin/sh
  group:
  - name: mgmtops
    gid: 15100
  - name: mgmtdev
    state: exists
  - name: mgmtweb
    gid: 15102
";

const ALICE: &str = "mgmtalice:x:15001:15100::/srv/mgmtalice:/bin/sh";

#[test]
fn users_and_groups_are_created_with_their_params_then_converged() {
    let sb = sandbox_or_skip!();
    let log = once(&sb, ACCOUNTS, &[], 2);
    assert_logged(
        &log,
        &[
            "group[mgmtops]: add group mgmtops (gid 15100)",
            "group[mgmtdev]: add group mgmtdev",
            "user[mgmtalice]: add user mgmtalice (uid 15001, gid mgmtops, groups mgmtdev,mgmtweb, home /srv/mgmtalice, shell /bin/sh)",
        ],
    );
    // The groups were there before the user needed them (autoedges), or useradd had failed.
    assert_eq!(getent(&sb, "passwd", "mgmtalice"), ALICE);
    assert!(getent(&sb, "group", "mgmtops").starts_with("mgmtops:x:15100:"));
    assert!(getent(&sb, "group", "mgmtdev").ends_with(":mgmtalice"), "{}", getent(&sb, "group", "mgmtdev"));
    assert_eq!(getent(&sb, "group", "mgmtweb"), "mgmtweb:x:15102:mgmtalice");

    // Converged: the second pass changes nothing and says so with its exit code.
    let passwd = sb.read("/etc/passwd");
    let log = once(&sb, ACCOUNTS, &[], 0);
    assert!(!log.contains("user[mgmtalice]: ") && !log.contains("group[mgmt"), "{log}");
    assert_eq!(sb.read("/etc/passwd"), passwd);
}

#[test]
fn a_watching_agent_repairs_an_outside_usermod_gpasswd_and_userdel() {
    let sb = sandbox_or_skip!();
    let mut a = sb.mgmt_agent(GRAPH, ACCOUNTS, &[]);
    wait(&mut a, "the user created", || getent(&sb, "passwd", "mgmtalice") == ALICE);
    a.wait_log("user[mgmtalice]: add user");

    sb.sh("usermod -s /bin/bash mgmtalice");
    a.wait_log("user[mgmtalice]: shell /bin/bash -> /bin/sh");
    wait(&mut a, "the shell repaired", || getent(&sb, "passwd", "mgmtalice") == ALICE);

    // Supplementary groups live in /etc/group only.
    sb.sh("gpasswd -d mgmtalice mgmtweb");
    a.wait_log("user[mgmtalice]: groups mgmtdev -> mgmtdev,mgmtweb");
    wait(&mut a, "the membership repaired", || getent(&sb, "group", "mgmtweb").ends_with(":mgmtalice"));

    sb.sh("usermod -u 15009 -d /srv/x mgmtalice");
    a.wait_log("user[mgmtalice]: uid 15009 -> 15001");
    a.wait_log("user[mgmtalice]: home /srv/x -> /srv/mgmtalice");
    wait(&mut a, "uid and home repaired", || getent(&sb, "passwd", "mgmtalice") == ALICE);

    sb.sh("userdel mgmtalice && groupmod -g 15111 mgmtops");
    a.wait_log("group[mgmtops]: gid 15111 -> 15100");
    wait(&mut a, "the user re-added", || getent(&sb, "passwd", "mgmtalice") == ALICE);
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}

#[test]
fn absent_removes_and_noop_changes_nothing() {
    let sb = sandbox_or_skip!();
    sb.sh("groupadd -g 15200 mgmtold && useradd -u 15201 -g mgmtold -s /bin/bash mgmtbob");
    let gone = "graph: gone
resources:
  user:
  - name: mgmtbob
    state: absent
    gid: 15200
  group:
  - name: mgmtold
    state: absent
    gid: 15200
";
    let changed =
        "graph: changed\nresources:\n  user:\n  - name: mgmtbob\n    shell: /bin/sh\n    uid: 15299\n";
    let (passwd, group) = (sb.read("/etc/passwd"), sb.read("/etc/group"));

    // Noop: every change reported, none made.
    let log = once(&sb, changed, &["--noop"], 2);
    assert_logged(
        &log,
        &[
            "user[mgmtbob]: noop: would shell /bin/bash -> /bin/sh",
            "user[mgmtbob]: noop: would uid 15201 -> 15299",
        ],
    );
    let log = once(&sb, gone, &["--noop"], 2);
    assert_logged(
        &log,
        &[
            "user[mgmtbob]: noop: would remove user mgmtbob (uid 15201)",
            "group[mgmtold]: noop: would remove group mgmtold (gid 15200)",
        ],
    );
    assert_eq!((sb.read("/etc/passwd"), sb.read("/etc/group")), (passwd, group), "noop changed the files");

    // For real: the user goes first (its group could not be removed while it is its
    // primary group), and a second pass finds nothing to do.
    let log = once(&sb, gone, &[], 2);
    assert_logged(&log, &["user[mgmtbob]: remove user mgmtbob", "group[mgmtold]: remove group mgmtold"]);
    assert_eq!(getent(&sb, "passwd", "mgmtbob"), "");
    assert_eq!(getent(&sb, "group", "mgmtold"), "");
    once(&sb, gone, &[], 0);
}

#[test]
fn a_taken_uid_or_a_failing_tool_fails_the_resource_with_the_reason() {
    let sb = sandbox_or_skip!();
    let yaml = "graph: taken\nresources:\n  user:\n  - name: mgmtcarol\n    uid: 0\n  - name: mgmtdave\n    group: mgmtnosuchgroup\n";
    let log = once(&sb, yaml, &[], 4);
    assert_logged(
        &log,
        &[
            "uid 0 belongs to user root; set allowduplicateuid to share it",
            "group 'mgmtnosuchgroup' does not exist",
        ],
    );
    assert_eq!(getent(&sb, "passwd", "mgmtcarol"), "");
    assert_eq!(getent(&sb, "passwd", "mgmtdave"), "");
}

// ---------------------------------------------------------------------------------------------
// hostname

fn hostnamectl(sb: &Sandbox, which: &str) -> String {
    text(&sb.exec(&["hostnamectl", which, "hostname"]).stdout).trim().to_string()
}

/// What the kernel says (the transient hostname), asked inside: the host's view of the
/// sandbox's /proc would answer for the host's UTS namespace.
fn kernel_hostname(sb: &Sandbox) -> String {
    text(&sb.exec(&["cat", "/proc/sys/kernel/hostname"]).stdout).trim().to_string()
}

const HOST: &str = "graph: host
resources:
  hostname:
  - name: the host
    hostname: mgmt-test-host
    pretty_hostname: Mgmt Test Host
";

#[test]
fn hostnames_are_set_converged_and_repaired() {
    let sb = sandbox_or_skip!();
    let log = once(&sb, HOST, &[], 2);
    assert_logged(
        &log,
        &[
            "hostname[the host]: static hostname ",
            " -> \"mgmt-test-host\"",
            "hostname[the host]: pretty hostname ",
            " -> \"Mgmt Test Host\"",
        ],
    );
    assert_eq!(hostnamectl(&sb, "--static"), "mgmt-test-host");
    assert_eq!(hostnamectl(&sb, "--pretty"), "Mgmt Test Host");
    assert_eq!(kernel_hostname(&sb), "mgmt-test-host");
    assert_eq!(sb.read("/etc/hostname").as_deref(), Some("mgmt-test-host\n"));
    once(&sb, HOST, &[], 0);

    let mut a = sb.mgmt_agent(GRAPH, HOST, &[]);
    for (drift, which) in [
        ("hostnamectl hostname drifted", "--static"),
        ("hostnamectl --pretty hostname Drifted", "--pretty"),
        // Past hostnamed, straight to the kernel.
        ("hostname drifted2", "--transient"),
    ] {
        sb.sh(drift);
        let want = if which == "--pretty" { "Mgmt Test Host" } else { "mgmt-test-host" };
        wait(&mut a, &format!("{which} repaired after `{drift}`"), || {
            hostnamectl(&sb, which) == want && kernel_hostname(&sb) == "mgmt-test-host"
        });
    }
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}

#[test]
fn a_transient_hostname_is_kept_only_without_a_static_one() {
    let sb = sandbox_or_skip!();
    let yaml = "graph: transient\nresources:\n  hostname:\n  - name: h\n    static_hostname: \"\"\n    pretty_hostname: \"\"\n    transient_hostname: mgmt-transient\n";
    sb.sh("hostnamectl --static hostname mgmt-static");
    let mut a = sb.mgmt_agent(GRAPH, yaml, &[]);
    a.wait_log("hostnamed keeps the kernel's hostname at the static hostname `mgmt-static`");
    assert_eq!(kernel_hostname(&sb), "mgmt-static");
    // Once the static hostname is gone (/etc/hostname is watched), the transient one is set.
    sb.sh("hostnamectl --static hostname ''");
    wait(&mut a, "the transient hostname", || kernel_hostname(&sb) == "mgmt-transient");
    a.wait_log("hostname[h]: transient hostname");
}

// ---------------------------------------------------------------------------------------------
// On the host: nothing here changes anything.

#[test]
fn bad_params_are_refused_before_anything_runs() {
    let t = TestDir::new();
    for (yaml, needle) in [
        ("user:\n  - name: bob\n    homedir: /home/bob\n", "homedir"),
        ("user:\n  - name: bob\n    gid: 5\n    group: staff\n", "set either gid or group"),
        ("user:\n  - name: bob\n    home: /home/bob/\n", "`home`"),
        ("user:\n  - name: \"b:b\"\n", "contains ':'"),
        ("group:\n  - name: ops\n    state: gone\n", "gone"),
        ("hostname:\n  - name: Not A Hostname\n", "a hostname has only"),
        ("hostname:\n  - name: a\n    transient_hostname: b\n", "static hostname `a`"),
    ] {
        let g = t.write_yaml("bad.yaml", &format!("graph: bad\nresources:\n  {yaml}"));
        let out = Command::new(MGMT).args(["graph", "yaml"]).arg(&g).output().unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{yaml} was accepted");
        assert!(err.contains(needle), "no {needle:?} for {yaml}:\n{err}");
    }
}

#[test]
fn without_hostnamed_the_hostname_resource_fails_clearly() {
    let t = TestDir::new();
    let g = t
        .write_yaml("h.yaml", "graph: h\nresources:\n  hostname:\n  - name: h\n    hostname: mgmt-nowhere\n");
    let out = Command::new(MGMT)
        .args(["run", "--tmp-prefix", "--noop", "--no-watch", "yaml"])
        .arg(&g)
        .env("TMPDIR", t.path("tmp"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .env_remove("MGMT_LOG")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(err.contains("hostname[h]") && err.contains("no hostnamed"), "{err}");
}
