//! `pkg` against the real apt and dpkg, only inside the systemd sandbox (its root is an
//! overlay over the host's: nothing installed there reaches the host). Each test builds a
//! local repository of tiny packages with `dpkg-deb` and `dpkg-scanpackages`, points the
//! sandbox's apt at it alone (the sandbox has no network) and runs `mgmt` inside.
//!
//! Without root these print a loud `SKIPPED` line and return, as the other sandbox tests do.

use std::process::Output;

use crate::common::succeeded;
use crate::common::systemd::{DEADLINE, Sandbox, eventually};

const MGMT: &str = env!("CARGO_BIN_EXE_mgmt");
const GRAPH: &str = "/root/mgmt-pkg-test/g.yaml";
const REPO: &str = "/var/local/mgmt-pkg-repo";
const HISTORY: &str = "/var/log/apt/history.log";

/// Build the repository inside the sandbox (mgmt-ta 1.0 and 2.0, mgmt-tb, mgmt-tc, each
/// architecture `all`) and make it apt's only source.
fn with_repo(sb: &Sandbox) {
    sb.sh(&format!(
        r#"set -e
R={REPO}
mkdir -p $R
mk() {{
  d=$(mktemp -d)
  mkdir -p $d/DEBIAN $d/usr/share/$1
  printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: test <test@example.com>\nDescription: a package for tests\n' $1 $2 > $d/DEBIAN/control
  echo $2 > $d/usr/share/$1/version
  dpkg-deb --root-owner-group --build $d $R/$1_$2_all.deb > /dev/null
  rm -rf $d
}}
mk mgmt-ta 1.0; mk mgmt-ta 2.0; mk mgmt-tb 1.0; mk mgmt-tc 1.0
cd $R && dpkg-scanpackages --multiversion . > Packages 2> /dev/null
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
echo "deb [trusted=yes] file:$R ./" > /etc/apt/sources.list.d/mgmt-test.list
apt-get update -q > /dev/null
"#
    ));
}

/// The installed version of `name` in the sandbox, if installed.
fn version(sb: &Sandbox, name: &str) -> Option<String> {
    let out = sb.exec(&["dpkg-query", "-W", "-f", "${Status} ${Version}", name]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.strip_prefix("install ok installed ").map(str::to_string)
}

/// A graph of pkgs: each `(name, extra YAML lines)`.
fn graph(pkgs: &[(&str, &str)]) -> String {
    let mut y = String::from("graph: pkgs\nresources:\n  pkg:\n");
    for (name, extra) in pkgs {
        y.push_str(&format!("  - name: {name}\n"));
        for line in extra.lines() {
            y.push_str(&format!("    {line}\n"));
        }
    }
    y
}

/// One `--detailed-exitcodes` pass; its stderr, after checking its exit code (0: nothing
/// changed, 2: something changed, or would in noop mode, 4: a check failed).
#[track_caller]
fn once(sb: &Sandbox, yaml: &str, flags: &[&str], code: i32) -> String {
    let mut all = vec!["--detailed-exitcodes"];
    all.extend_from_slice(flags);
    let out: Output = sb.mgmt_once(GRAPH, yaml, &all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "exit code; stderr:\n{stderr}");
    stderr
}

/// The `Install:` lines apt's history log gained since it held `before` bytes.
fn installs_since(sb: &Sandbox, before: usize) -> Vec<String> {
    let log = sb.read(HISTORY).unwrap_or_default();
    log.get(before..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.starts_with("Install:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn pkg_installs_converges_holds_a_version_and_removes() {
    let Some(sb) = Sandbox::start() else { return };
    with_repo(&sb);
    // Noop first: nothing is installed.
    let g = graph(&[("mgmt-ta", "state: installed")]);
    let noop = once(&sb, &g, &["--noop"], 2);
    assert!(noop.contains("pkg[mgmt-ta]: noop: would install mgmt-ta (version 2.0)"), "{noop}");
    assert_eq!(version(&sb, "mgmt-ta"), None, "noop installed it");

    let first = once(&sb, &g, &[], 2);
    assert!(first.contains("pkg[mgmt-ta]: install mgmt-ta (version 2.0)"), "{first}");
    assert_eq!(version(&sb, "mgmt-ta").as_deref(), Some("2.0"));
    let second = once(&sb, &g, &[], 0);
    assert!(second.contains("0 changes"), "converged: {second}");

    // A lower version needs allowdowngrade; apt refuses it otherwise.
    let down = graph(&[("mgmt-ta", "state: \"1.0\"")]);
    let refused = once(&sb, &down, &[], 4);
    assert!(refused.contains("apt-get install mgmt-ta=1.0 failed"), "{refused}");
    assert_eq!(version(&sb, "mgmt-ta").as_deref(), Some("2.0"));
    let down = graph(&[("mgmt-ta", "state: \"1.0\"\nallowdowngrade: true")]);
    let held = once(&sb, &down, &[], 2);
    assert!(held.contains("change mgmt-ta version (2.0 -> 1.0)"), "{held}");
    assert_eq!(version(&sb, "mgmt-ta").as_deref(), Some("1.0"));
    once(&sb, &down, &[], 0);

    let newest = once(&sb, &graph(&[("mgmt-ta", "state: newest")]), &[], 2);
    assert!(newest.contains("upgrade mgmt-ta (1.0 -> 2.0)"), "{newest}");

    let gone = graph(&[("mgmt-ta", "state: uninstalled")]);
    let noop = once(&sb, &gone, &["--noop"], 2);
    assert!(noop.contains("would remove mgmt-ta (version 2.0)"), "{noop}");
    assert_eq!(version(&sb, "mgmt-ta").as_deref(), Some("2.0"), "noop removed it");
    let removed = once(&sb, &gone, &[], 2);
    assert!(removed.contains("remove mgmt-ta (version 2.0)"), "{removed}");
    assert_eq!(version(&sb, "mgmt-ta"), None);
    once(&sb, &gone, &[], 0);

    // A version no source offers, and a package apt does not know, fail naming them.
    let missing = once(&sb, &graph(&[("mgmt-ta", "state: \"9.9\"")]), &[], 4);
    assert!(missing.contains("version 9.9 of mgmt-ta is not in apt's sources"), "{missing}");
    let unknown = once(&sb, &graph(&[("mgmt-nothere", "")]), &[], 4);
    assert!(unknown.contains("package mgmt-nothere is not known to apt"), "{unknown}");
}

#[test]
fn a_bad_pkg_param_is_refused_with_its_message() {
    // Refused before anything runs: no sandbox needed, and nothing is asked of apt.
    let dir = crate::common::TestDir::new();
    let path = dir.path("g.yaml");
    for (extra, want) in [
        ("state: latest", "did you mean `newest`?"),
        ("state: v2", "is not installed, uninstalled, newest, or a Debian version"),
        ("allowsomething: true", "allowsomething"),
    ] {
        std::fs::write(&path, graph(&[("mgmt-ta", extra)])).unwrap();
        let out = std::process::Command::new(MGMT)
            .args(["run", "--tmp-prefix", "--noop", "--no-watch", "yaml"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {stderr}");
        assert!(stderr.contains(want), "{extra}: {stderr}");
    }
    std::fs::write(&path, graph(&[("-oAPT::x", "")])).unwrap();
    let out = std::process::Command::new(MGMT).args(["graph", "yaml"]).arg(&path).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Debian package name"));
}

#[test]
fn three_pkgs_are_one_apt_transaction_unless_autogroup_is_off() {
    let Some(sb) = Sandbox::start() else { return };
    with_repo(&sb);
    let three = graph(&[("mgmt-ta", ""), ("mgmt-tb", ""), ("mgmt-tc", "")]);
    sb.write(GRAPH, &three);
    let shown = succeeded("mgmt graph", &sb.exec(&[MGMT, "graph", "yaml", GRAPH]));
    assert_eq!(shown, "pkg[mgmt-ta] (grouped: pkg[mgmt-tb], pkg[mgmt-tc])\n");

    let before = sb.read(HISTORY).unwrap_or_default().len();
    let out = once(&sb, &three, &[], 2);
    assert!(out.contains("pkg[mgmt-ta]: grouped with pkg[mgmt-tb], pkg[mgmt-tc]"), "{out}");
    let installs = installs_since(&sb, before);
    assert_eq!(installs.len(), 1, "one apt transaction: {installs:?}");
    for name in ["mgmt-ta", "mgmt-tb", "mgmt-tc"] {
        assert!(installs[0].contains(&format!("{name}:")), "{name} in {installs:?}");
    }
    once(&sb, &three, &[], 0);

    sb.sh("apt-get remove -y -q mgmt-ta mgmt-tb mgmt-tc > /dev/null");
    let apart = graph(&[
        ("mgmt-ta", "meta:\n  autogroup: false"),
        ("mgmt-tb", "meta:\n  autogroup: false"),
        ("mgmt-tc", "meta:\n  autogroup: false"),
    ]);
    sb.write(GRAPH, &apart);
    let shown = succeeded("mgmt graph", &sb.exec(&[MGMT, "graph", "yaml", GRAPH]));
    assert_eq!(shown, "pkg[mgmt-ta]\npkg[mgmt-tb]\npkg[mgmt-tc]\n");
    let before = sb.read(HISTORY).unwrap_or_default().len();
    once(&sb, &apart, &[], 2);
    assert_eq!(installs_since(&sb, before).len(), 3, "one transaction each");
}

#[test]
fn a_watching_agent_reinstalls_a_package_removed_behind_its_back() {
    let Some(sb) = Sandbox::start() else { return };
    with_repo(&sb);
    let mut a = sb.mgmt_agent(GRAPH, &graph(&[("mgmt-tb", "")]), &[]);
    a.wait_log("pkg[mgmt-tb]: install mgmt-tb (version 1.0)");
    assert_eq!(version(&sb, "mgmt-tb").as_deref(), Some("1.0"));
    sb.sh("dpkg -r mgmt-tb > /dev/null");
    a.wait_log_count("pkg[mgmt-tb]: install mgmt-tb (version 1.0)", 2);
    assert!(
        eventually(|| version(&sb, "mgmt-tb").as_deref() == Some("1.0"), DEADLINE),
        "not reinstalled:\n{}",
        a.stderr()
    );
    // A live edit that adds a pkg regroups the graph: the new one is installed with it.
    sb.write(GRAPH, &graph(&[("mgmt-tb", ""), ("mgmt-tc", "")]));
    a.wait_log("pkg[mgmt-tb]: grouped with pkg[mgmt-tc]");
    a.wait_log("pkg[mgmt-tb]: install mgmt-tc (version 1.0)");
    assert_eq!(version(&sb, "mgmt-tc").as_deref(), Some("1.0"));
    assert_eq!(a.try_exit(), None, "the agent exited:\n{}", a.stderr());
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}
