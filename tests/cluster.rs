//! Several agents on one real etcd: the talk's three-host demo, live export changes and
//! removals, registration on a lease, duplicate hostnames, `mgmt status`, the `kv` resource,
//! an etcd outage and compaction. Asserted through files on disk and `etcdctl`.

mod common;

use std::fs;
use std::process::{Command, Output};
use std::time::Duration;

use common::etcd::Etcd;
use common::{Agent, TestDir, read};

/// The talk's graph for host `h` (A, B or C), with /tmp moved into the test directory.
fn host_yaml(t: &TestDir, h: char, content: &str) -> String {
    let l = h.to_ascii_lowercase();
    format!(
        r#"---
graph: mygraph
resources:
  file:
  - name: "@@file{l}"
    path: "{dir}/f{h}"
    content: |
      {content}
    state: exists
collect:
- kind: file
  pattern: "{dir}/"
edges: []
"#,
        dir = t.p(&format!("mgmt{h}"))
    )
}

fn talk_content(h: char) -> String {
    format!("i am f{h}, exported from host {h}")
}

fn start_host(t: &TestDir, e: &Etcd, h: char, extra: &[&str]) -> Agent {
    let yaml = t.write_yaml(&format!("{h}.yaml"), &host_yaml(t, h, &talk_content(h)));
    let host = h.to_string();
    let mut args = vec!["--seeds", e.url.as_str(), "--hostname", host.as_str()];
    args.extend_from_slice(extra);
    t.agent(&args, &yaml)
}

fn mgmt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mgmt")).args(args).env_remove("MGMT_LOG").output().unwrap()
}

fn status_json(e: &Etcd) -> serde_json::Value {
    let out = mgmt(&["status", "--seeds", &e.url, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Wait until every host has the three files with their exporters' content.
fn all_files_everywhere(t: &TestDir, a: &Agent, hosts: &[char]) {
    for h in hosts {
        for x in hosts {
            a.wait_content(&t.path(&format!("mgmt{h}/f{x}")), &format!("{}\n", talk_content(*x)));
        }
    }
}

#[test]
fn the_talks_three_host_demo() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    // Started one after another, as in the talk.
    let a = start_host(&t, &e, 'A', &[]);
    a.wait_content(&t.path("mgmtA/fA"), &format!("{}\n", talk_content('A')));
    let b = start_host(&t, &e, 'B', &[]);
    all_files_everywhere(&t, &a, &['A', 'B']);
    let c = start_host(&t, &e, 'C', &[]);
    all_files_everywhere(&t, &a, &['A', 'B', 'C']);

    // What the cluster holds, read with etcdctl: readable JSON.
    let exported = e.get_prefix("/_mgmt/exported/");
    let keys: Vec<&str> = exported.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["/_mgmt/exported/A/file/filea", "/_mgmt/exported/B/file/fileb", "/_mgmt/exported/C/file/filec"]
    );
    let fa: serde_json::Value = serde_json::from_str(&exported[0].1).unwrap();
    assert_eq!(fa["host"], "A");
    assert_eq!(fa["params"]["content"], format!("{}\n", talk_content('A')));
    a.wait_for("three converged hosts", || {
        ['A', 'B', 'C']
            .iter()
            .all(|h| e.get_json(&format!("/_mgmt/hosts/{h}")).is_some_and(|s| s["converged"] == true))
    });
    let ha = e.get_json("/_mgmt/hosts/A").unwrap();
    assert_eq!(ha["hostname"], "A");
    assert_eq!(ha["resources"], 3);
    assert_eq!(ha["version"], env!("CARGO_PKG_VERSION"));

    // A collected file is enforced like a local one.
    fs::write(t.path("mgmtB/fA"), "drift\n").unwrap();
    b.wait_content(&t.path("mgmtB/fA"), &format!("{}\n", talk_content('A')));

    // A changed export reaches every collector live.
    t.replace_yaml("A.yaml", &host_yaml(&t, 'A', "i am fA, version 2"));
    for h in ['A', 'B', 'C'] {
        c.wait_content(&t.path(&format!("mgmt{h}/fA")), "i am fA, version 2\n");
    }

    // Removed from A's graph: the key goes, collectors stop managing the file (it stays).
    let without =
        host_yaml(&t, 'A', "x").replace("  file:\n  - name: \"@@filea\"", "  file:\n  - name: \"locala\"");
    t.replace_yaml("A.yaml", &without);
    a.wait_for("A's export removed", || e.get_prefix("/_mgmt/exported/A/").is_empty());
    b.wait_log("collected resources changed: 2 kept, 0 started, 1 stopped");
    fs::write(t.path("mgmtB/fA"), "mine now\n").unwrap();
    // B's own file is still enforced (proof that B is alive and watching) ...
    fs::write(t.path("mgmtB/fB"), "drift\n").unwrap();
    b.wait_content(&t.path("mgmtB/fB"), &format!("{}\n", talk_content('B')));
    // ... and by then, a drift of the dropped file would have been repaired too.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(t.path("mgmtB/fA")).as_deref(), Some("mine now\n"));
    for ag in [&a, &b, &c] {
        assert!(ag.try_exit().is_none(), "{}", ag.stderr());
    }
}

#[test]
fn hosts_register_on_a_lease() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let a = start_host(&t, &e, 'A', &["--lease-ttl", "2"]);
    let b = start_host(&t, &e, 'B', &[]);
    a.wait_for("both registered and exporting", || {
        e.get_prefix("/_mgmt/hosts/").len() == 2 && e.get_prefix("/_mgmt/exported/").len() == 2
    });
    // Killed: gone when the lease expires.
    a.kill9();
    b.wait_for("A's lease to expire", || e.get_json("/_mgmt/hosts/A").is_none());
    assert!(e.get_json("/_mgmt/hosts/B").is_some());
    // Stopped: gone at once (the lease is revoked), with exit code 0.
    assert_eq!(b.interrupt().code(), Some(0));
    assert!(e.get_json("/_mgmt/hosts/B").is_none(), "B still registered after a clean stop");
    // Exports outlive their agents.
    assert_eq!(e.get_prefix("/_mgmt/exported/").len(), 2);
}

#[test]
fn a_second_agent_with_the_same_hostname_is_refused() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let first = start_host(&t, &e, 'A', &[]);
    first.wait_for("A registered", || e.get_json("/_mgmt/hosts/A").is_some());
    let before = e.get_json("/_mgmt/hosts/A").unwrap();
    let yaml = t.write_yaml("other.yaml", "graph: other\nresources:\n  noop:\n  - name: n\n");
    let second = t.run_to_end(&["--seeds", &e.url, "--hostname", "A"], &yaml);
    second.assert_code(1).assert_stderr_has("another agent is already registered as `A` in this cluster");
    assert!(!second.stderr.contains("running graph"), "{}", second.stderr);
    assert!(first.try_exit().is_none());
    assert_eq!(e.get_json("/_mgmt/hosts/A").unwrap()["pid"], before["pid"]);
}

#[test]
fn status_shows_every_host() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let good = start_host(&t, &e, 'A', &[]);
    let bad_yaml = t.write_yaml(
        "bad.yaml",
        "graph: failing\nresources:\n  exec:\n  - name: broken\n    shell: /bin/sh\n    cmd: \"echo boom >&2; exit 3\"\n",
    );
    let bad = t.agent(&["--seeds", &e.url, "--hostname", "B"], &bad_yaml);
    bad.wait_log("ERROR exec[broken]");
    good.wait_for("both statuses settled", || {
        let v = status_json(&e);
        v.as_array().is_some_and(|a| a.len() == 2)
            && v[0]["converged"] == true
            && v[1]["failed"].as_array().is_some_and(|f| f.len() == 1)
    });
    let v = status_json(&e);
    assert_eq!(v[0]["hostname"], "A");
    assert_eq!(v[1]["hostname"], "B");
    assert_eq!(v[1]["converged"], false);
    assert_eq!(v[1]["failed"][0], "exec[broken]");
    assert!(v[1]["last_error"].as_str().unwrap().contains("exited with code 3: boom"), "{v}");

    let table = mgmt(&["status", "--seeds", &e.url]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("HOST") && lines[0].contains("CONVERGED"), "{text}");
    assert!(lines[1].starts_with("A ") && lines[1].contains(" yes "), "{text}");
    assert!(lines[2].starts_with("B ") && lines[2].contains(" no ") && lines[2].contains("boom"), "{text}");

    // Nobody there: an error, exit 1.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let none = mgmt(&["status", "--seeds", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).starts_with("mgmt: error: "));
}

#[test]
fn kv_values_are_written_and_restored_under_the_namespace() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let yaml =
        t.write_yaml("kv.yaml", "graph: kv\nresources:\n  kv:\n  - name: greeting\n    value: hello\n");
    let a = t.agent(&["--seeds", &e.url, "--hostname", "h1", "--etcd-namespace", "/other"], &yaml);
    let value = || e.get_json("/other/kv/greeting");
    a.wait_for("the value", || value().is_some_and(|v| v["value"] == "hello" && v["host"] == "h1"));
    assert!(e.get_prefix("/_mgmt/").is_empty(), "something was written outside the namespace");
    assert!(e.get_json("/other/hosts/h1").is_some());
    e.ctl(&["put", "/other/kv/greeting", "{\"value\":\"changed\",\"host\":\"x\"}"]);
    a.wait_log("kv[greeting]: set greeting to \"hello\" (was \"changed\")");
    a.wait_for("restored", || value().is_some_and(|v| v["value"] == "hello"));
    e.ctl(&["del", "/other/kv/greeting"]);
    a.wait_for("restored after a delete", || value().is_some_and(|v| v["value"] == "hello"));
}

#[test]
fn an_etcd_outage_is_survived() {
    let t = TestDir::new();
    let mut e = Etcd::start(&t);
    let agents: Vec<Agent> = ['A', 'B', 'C'].iter().map(|h| start_host(&t, &e, *h, &[])).collect();
    all_files_everywhere(&t, &agents[0], &['A', 'B', 'C']);

    e.kill();
    for a in &agents {
        a.wait_log("unreachable");
    }
    // Still enforcing, collected files included.
    fs::remove_file(t.path("mgmtB/fA")).unwrap();
    agents[1].wait_content(&t.path("mgmtB/fA"), &format!("{}\n", talk_content('A')));
    fs::write(t.path("mgmtC/fC"), "drift\n").unwrap();
    agents[2].wait_content(&t.path("mgmtC/fC"), &format!("{}\n", talk_content('C')));
    // An edit made during the outage is applied locally at once ...
    t.replace_yaml("A.yaml", &host_yaml(&t, 'A', "i am fA, edited during the outage"));
    agents[0].wait_content(&t.path("mgmtA/fA"), "i am fA, edited during the outage\n");
    // ... and the outage is logged once per agent, not once per retry.
    std::thread::sleep(Duration::from_secs(2));
    for a in &agents {
        let n = a.count("WARN etcd at");
        assert_eq!(n, 1, "outage logged {n} times:\n{}", a.stderr());
    }

    e.restart();
    for a in &agents {
        a.wait_log("reachable again");
    }
    for h in ['A', 'B', 'C'] {
        agents[1].wait_content(&t.path(&format!("mgmt{h}/fA")), "i am fA, edited during the outage\n");
    }
    agents[0].wait_for("three hosts registered", || e.get_prefix("/_mgmt/hosts/").len() == 3);
    assert_eq!(e.get_prefix("/_mgmt/exported/").len(), 3, "exports duplicated or lost");
    // Watching again: a change after the outage still propagates.
    t.replace_yaml("C.yaml", &host_yaml(&t, 'C', "i am fC, after the outage"));
    agents[0].wait_content(&t.path("mgmtA/fC"), "i am fC, after the outage\n");
}

#[test]
fn compaction_loses_nothing() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let a = start_host(&t, &e, 'A', &[]);
    let b = start_host(&t, &e, 'B', &[]);
    all_files_everywhere(&t, &a, &['A', 'B']);
    for n in 0..5 {
        t.replace_yaml("A.yaml", &host_yaml(&t, 'A', &format!("version {n}")));
        b.wait_content(&t.path("mgmtB/fA"), &format!("version {n}\n"));
    }
    // Compact everything up to now, as `--auto-compaction-*` would, then keep changing.
    let rev = e.get_json("/_mgmt/hosts/A").map(|_| ()).and_then(|_| {
        let out = e.ctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v[0]["Status"]["header"]["revision"].as_i64()
    });
    let rev = rev.expect("etcd's revision");
    let out = e.ctl(&["compact", &rev.to_string(), "--physical"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.replace_yaml("A.yaml", &host_yaml(&t, 'A', "after compaction"));
    b.wait_content(&t.path("mgmtB/fA"), "after compaction\n");
    assert!(a.try_exit().is_none() && b.try_exit().is_none());
}
