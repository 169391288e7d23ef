//! Several agents on one real etcd (`common::etcd`): the talk's three-host demo with
//! live export changes and removals, registration on a lease, duplicate hostnames,
//! `mgmt status`, the `kv` resource and `--etcd-namespace`, compaction. Asserted through
//! files on disk, the binary's output and `etcdctl`. The etcd outage is in
//! `tests/integration/cluster_outage.rs`.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use crate::common::cluster::{all_files_everywhere, host_yaml, start_host, talk, wait, wait_content};
use crate::common::etcd::{Etcd, base64_decode};
use crate::common::{self, Agent, Finished, TestDir, read};
use serde_json::{Value, json};

/// Run `mgmt <args>` to its end (bounded), output captured.
fn mgmt(t: &TestDir, args: &[&str]) -> Finished {
    let a = Agent::spawn(t, args);
    let status = a.wait_exit();
    Finished { status, stdout: a.stdout(), stderr: a.stderr() }
}

/// `mgmt status --json`: the array of host status objects (exit 0, or 1 when a host is
/// failing).
#[track_caller]
fn status_json(t: &TestDir, e: &Etcd) -> Vec<Value> {
    let out = mgmt(t, &["status", "--seeds", e.url(), "--json"]);
    if out.status.code() != Some(1) {
        out.assert_code(0);
    }
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("{err}: {}", out.stdout));
    v.as_array().unwrap_or_else(|| panic!("not a JSON array: {v}")).clone()
}

/// The status object of `host` in a `mgmt status --json` array.
fn host_in<'a>(v: &'a [Value], host: &str) -> Option<&'a Value> {
    v.iter().find(|s| s["hostname"] == host)
}

/// The shape of a `hosts/<hostname>` value.
#[track_caller]
fn assert_host_status(v: &Value, host: &str) {
    assert_eq!(v["hostname"], host, "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert!(v["converged"].is_boolean(), "{v}");
    assert!(v["resources"].is_u64(), "{v}");
    assert!(v["failed"].is_array(), "{v}");
    assert!(v["last_error"].is_null() || v["last_error"].is_string(), "{v}");
    assert!(v.get("deploy").is_some_and(Value::is_null), "{v}");
}

/// Write `drift` into `path` until a write survives `quiet` untouched (an agent may still be
/// managing the file right after the change that makes it stop); panic after `LONG`.
#[track_caller]
fn wait_unmanaged(agents: &[&Agent], path: &Path, drift: &str, quiet: Duration) {
    wait(&format!("{} to be left alone", path.display()), agents, || {
        fs::write(path, drift).unwrap();
        sleep(quiet);
        read(path).as_deref() == Some(drift)
    });
}

#[test]
fn the_etcd_harness_works() {
    assert_eq!(base64_decode("L19tZ210L2hvc3RzL0E="), b"/_mgmt/hosts/A");
    assert_eq!(base64_decode("YQpi"), b"a\nb");
    assert_eq!(base64_decode("YWI"), b"ab");
    assert_eq!(base64_decode(""), b"");

    let t = TestDir::new();
    let mut e = Etcd::start(&t);
    let other = Etcd::start(&t);
    assert_ne!(e.url(), other.url());
    assert_ne!(e.name(), other.name());
    assert_ne!(e.data_dir(), other.data_dir());
    assert!(e.data_dir().starts_with(t.root()), "{}", e.data_dir().display());
    assert!(e.url().starts_with("http://127.0.0.1:"), "{}", e.url());

    e.etcdctl(&["put", "/h/a", r#"{"x":1}"#]);
    e.etcdctl(&["put", "/h/b", "two\nlines"]);
    e.etcdctl(&["put", "/hz", "outside"]);
    assert_eq!(e.etcdctl(&["get", "/h/a", "--print-value-only"]).trim_end(), r#"{"x":1}"#);
    assert_eq!(
        e.get_prefix("/h/"),
        [("/h/a".to_string(), r#"{"x":1}"#.to_string()), ("/h/b".to_string(), "two\nlines".to_string())]
    );
    assert_eq!(e.get_prefix_json("/h/a"), [("/h/a".to_string(), json!({"x": 1}))]);
    assert_eq!(e.get_json("/h/a"), Some(json!({"x": 1})));
    assert_eq!(e.get_json("/h/nothing"), None);
    assert_eq!(e.keys("/h"), ["/h/a", "/h/b", "/hz"]);
    assert!(other.get_prefix("/").is_empty(), "two etcds share data");
    assert_eq!(e.lease_ttl_of("/h/a"), None);
    let lease = e.etcdctl(&["lease", "grant", "7"]);
    let id = lease.split_whitespace().nth(1).expect("lease id");
    e.etcdctl(&["put", "--lease", id, "/h/leased", "v"]);
    assert_eq!(e.lease_ttl_of("/h/leased"), Some(7));

    // Killed: nothing answers. Started again: same URL, same data.
    let url = e.url().to_string();
    e.kill();
    assert!(!e.running());
    assert!(!e.healthy());
    e.restart();
    assert!(e.running());
    assert_eq!(e.url(), url);
    assert_eq!(e.get_json("/h/a"), Some(json!({"x": 1})));
    assert!(other.healthy());
}

#[test]
fn the_talks_three_host_demo() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    // Started one after another, as in the talk.
    let a = start_host(&t, &e, 'A', &[]);
    wait_content(&[&a], &t.path("mgmtA/fA"), &format!("{}\n", talk('A')));
    let b = start_host(&t, &e, 'B', &[]);
    all_files_everywhere(&t, &[&a, &b], &['A', 'B']);
    let c = start_host(&t, &e, 'C', &[]);
    let all = [&a, &b, &c];
    all_files_everywhere(&t, &all, &['A', 'B', 'C']);
    for h in ['A', 'B', 'C'] {
        let mut names = common::entries_containing(t.path(&format!("mgmt{h}")), "");
        names.retain(|n| !n.ends_with(".mgmt-tmp"));
        assert_eq!(names, ["fA", "fB", "fC"], "mgmt{h}");
    }

    // What the cluster holds, read with etcdctl: readable JSON.
    let exported = e.get_prefix_json("/_mgmt/exported/");
    let keys: Vec<&str> = exported.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["/_mgmt/exported/A/file/filea", "/_mgmt/exported/B/file/fileb", "/_mgmt/exported/C/file/filec"]
    );
    for ((_, v), h) in exported.iter().zip(['A', 'B', 'C']) {
        let l = h.to_ascii_lowercase();
        assert_eq!(v["host"], h.to_string(), "{v}");
        assert_eq!(v["kind"], "file", "{v}");
        assert_eq!(v["name"], format!("file{l}"), "{v}");
        assert_eq!(v["params"]["path"], t.p(&format!("mgmt{h}/f{h}")), "{v}");
        assert_eq!(v["params"]["content"], format!("{}\n", talk(h)), "{v}");
    }
    wait("three registered, converged hosts running three resources each", &all, || {
        let hosts = e.get_prefix_json("/_mgmt/hosts/");
        hosts.len() == 3 && hosts.iter().all(|(_, v)| v["converged"] == true && v["resources"] == 3)
    });
    let hosts = e.get_prefix_json("/_mgmt/hosts/");
    let keys: Vec<&str> = hosts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["/_mgmt/hosts/A", "/_mgmt/hosts/B", "/_mgmt/hosts/C"]);
    for ((_, v), h) in hosts.iter().zip(["A", "B", "C"]) {
        assert_host_status(v, h);
        assert_eq!(v["failed"], json!([]), "{v}");
        assert_eq!(v["last_error"], Value::Null, "{v}");
    }

    // A collected file is enforced like a local one.
    fs::write(t.path("mgmtB/fA"), "drift\n").unwrap();
    wait_content(&all, &t.path("mgmtB/fA"), &format!("{}\n", talk('A')));

    // A changed export (the graph file rewritten in place) reaches every collector live.
    t.write_yaml("A.yaml", &host_yaml(&t, 'A', "i am fA, version 2"));
    for h in ['A', 'B', 'C'] {
        wait_content(&all, &t.path(&format!("mgmt{h}/fA")), "i am fA, version 2\n");
    }
    wait("the new content in etcd", &all, || {
        e.get_json("/_mgmt/exported/A/file/filea")
            .is_some_and(|v| v["params"]["content"] == "i am fA, version 2\n")
    });

    // Removed from A's graph (A keeps the file, not exported): the key goes, the others stay.
    let local = host_yaml(&t, 'A', "i am fA, version 2").replace("\"@@filea\"", "filea");
    t.replace_yaml("A.yaml", &local);
    wait("A's export to be removed from etcd", &all, || e.get_prefix("/_mgmt/exported/A/").is_empty());
    assert_eq!(e.keys("/_mgmt/exported/"), ["/_mgmt/exported/B/file/fileb", "/_mgmt/exported/C/file/filec"]);
    // Collectors leave the file in place and stop managing it: a drift stays.
    for h in ['B', 'C'] {
        assert_eq!(read(t.path(&format!("mgmt{h}/fA"))).as_deref(), Some("i am fA, version 2\n"));
    }
    wait_unmanaged(&all, &t.path("mgmtB/fA"), "mine now\n", Duration::from_millis(1500));
    wait_unmanaged(&all, &t.path("mgmtC/fA"), "mine too\n", Duration::from_millis(1500));
    // B's own file and its other collected file are still enforced ...
    fs::write(t.path("mgmtB/fB"), "drift\n").unwrap();
    wait_content(&all, &t.path("mgmtB/fB"), &format!("{}\n", talk('B')));
    fs::remove_file(t.path("mgmtB/fC")).unwrap();
    wait_content(&all, &t.path("mgmtB/fC"), &format!("{}\n", talk('C')));
    // ... and so is A's file on A, now a local resource.
    fs::write(t.path("mgmtA/fA"), "drift\n").unwrap();
    wait_content(&all, &t.path("mgmtA/fA"), "i am fA, version 2\n");
    assert_eq!(read(t.path("mgmtB/fA")).as_deref(), Some("mine now\n"));
    assert_eq!(read(t.path("mgmtC/fA")).as_deref(), Some("mine too\n"));
    for (ag, h) in all.iter().zip(['A', 'B', 'C']) {
        assert!(ag.try_exit().is_none(), "{h} exited:\n{}", ag.stderr());
    }
}

#[test]
fn hosts_register_on_a_lease() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let a = start_host(&t, &e, 'A', &["--lease-ttl", "2"]);
    let b = start_host(&t, &e, 'B', &["--lease-ttl", "30"]);
    wait("both registered and exporting", &[&a, &b], || {
        e.keys("/_mgmt/hosts/").len() == 2 && e.keys("/_mgmt/exported/").len() == 2
    });
    assert_eq!(e.lease_ttl_of("/_mgmt/hosts/A"), Some(2));
    assert_eq!(e.lease_ttl_of("/_mgmt/hosts/B"), Some(30));

    // Killed: gone once the lease expires.
    a.kill9();
    wait("A's key to vanish with its lease", &[&a, &b], || e.get_json("/_mgmt/hosts/A").is_none());
    assert!(e.get_json("/_mgmt/hosts/B").is_some());

    // Stopped: gone at once (the lease is revoked, not left to expire in 30 s), exit code 0.
    assert_eq!(b.interrupt().code(), Some(0), "{}", b.stderr());
    assert!(
        common::poll_until(|| e.get_json("/_mgmt/hosts/B").is_none(), Duration::from_secs(5)),
        "B still registered 5 s after a clean stop (lease not revoked?): {:?}",
        e.get_json("/_mgmt/hosts/B")
    );
    // Exports are not on the lease.
    assert_eq!(e.keys("/_mgmt/exported/").len(), 2);

    // A TTL under 2 s is refused.
    let yaml = t.write_yaml("short.yaml", "graph: short\nresources:\n  noop:\n  - name: n\n");
    let short = t.run_to_end(&["--seeds", e.url(), "--hostname", "short", "--lease-ttl", "1"], &yaml);
    assert_ne!(short.status.code(), Some(0), "{}", short.stderr);
    assert!(short.stderr.contains("lease-ttl"), "{}", short.stderr);
    assert!(e.get_json("/_mgmt/hosts/short").is_none());
}

#[test]
fn a_second_agent_with_the_same_hostname_is_refused() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let file_yaml = |name: &str| {
        format!(
            "graph: {name}\nresources:\n  file:\n  - name: {name}\n    path: {}\n    content: \"{name}\\n\"\n",
            t.p(name)
        )
    };
    let first_yaml = t.write_yaml("first.yaml", &file_yaml("first"));
    let first = t.agent(&["--seeds", e.url(), "--hostname", "dup-host"], &first_yaml);
    wait("the first registered", &[&first], || e.get_json("/_mgmt/hosts/dup-host").is_some());
    wait_content(&[&first], &t.path("first"), "first\n");
    let before = e.get_json("/_mgmt/hosts/dup-host").unwrap();
    assert_eq!(before["pid"], first.pid().as_raw(), "{before}");

    let second_yaml = t.write_yaml("second.yaml", &file_yaml("second"));
    let second = t.run_to_end(&["--seeds", e.url(), "--hostname", "dup-host"], &second_yaml);
    second.assert_code(1);
    assert!(
        second.stderr.lines().any(|l| l.contains("already") && l.contains("dup-host")),
        "no error naming the hostname:\n{}",
        second.stderr
    );
    assert!(!t.path("second").exists(), "the refused agent applied its graph");

    // The first keeps running, registered as before, and keeps enforcing.
    assert!(first.try_exit().is_none(), "{}", first.stderr());
    let after = e.get_json("/_mgmt/hosts/dup-host").expect("the first's key");
    assert_eq!(after["pid"], before["pid"], "{after}");
    assert_eq!(after["started"], before["started"], "{after}");
    fs::write(t.path("first"), "drift\n").unwrap();
    wait_content(&[&first], &t.path("first"), "first\n");

    // Once the first has stopped, the name is free again.
    assert_eq!(first.interrupt().code(), Some(0));
    let third = t.agent(&["--seeds", e.url(), "--hostname", "dup-host"], &second_yaml);
    wait_content(&[&third], &t.path("second"), "second\n");
    wait("the third registered", &[&third], || {
        e.get_json("/_mgmt/hosts/dup-host").is_some_and(|v| v["pid"] == third.pid().as_raw())
    });
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
    let bad = t.agent(&["--seeds", e.url(), "--hostname", "B"], &bad_yaml);
    let both = [&good, &bad];
    wait("A converged and B's failure, in mgmt status --json", &both, || {
        let v = status_json(&t, &e);
        v.len() == 2
            && host_in(&v, "A").is_some_and(|a| a["converged"] == true)
            && host_in(&v, "B").is_some_and(|b| b["failed"].as_array().is_some_and(|f| !f.is_empty()))
    });
    let v = status_json(&t, &e);
    let a = host_in(&v, "A").unwrap();
    let b = host_in(&v, "B").unwrap();
    assert_host_status(a, "A");
    assert_host_status(b, "B");
    assert_eq!(a["resources"], 1, "{a}");
    assert_eq!(a["failed"], json!([]), "{a}");
    assert_eq!(a["last_error"], Value::Null, "{a}");
    assert_eq!(b["converged"], false, "{b}");
    assert_eq!(b["resources"], 1, "{b}");
    assert_eq!(b["failed"], json!(["exec[broken]"]), "{b}");
    assert!(b["last_error"].as_str().is_some_and(|s| !s.is_empty()), "{b}");
    // The same objects as in etcd.
    assert_eq!(Some(a), e.get_json("/_mgmt/hosts/A").as_ref());

    // The table: a header, one line per host.
    // B is failing: exit 1.
    let table = mgmt(&t, &["status", "--seeds", e.url()]);
    table.assert_code(1);
    let lines: Vec<&str> = table.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header.first(), Some(&"HOST"), "{}", table.stdout);
    let col = header.iter().position(|c| *c == "CONVERGED").unwrap_or_else(|| panic!("{}", table.stdout));
    let row = |h: &str| {
        let line = lines[1..].iter().find(|l| l.split_whitespace().next() == Some(h));
        line.unwrap_or_else(|| panic!("no line for {h}:\n{}", table.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("A")[col], "yes", "{}", table.stdout);
    assert_eq!(row("B")[col], "no", "{}", table.stdout);

    // Nobody there: an error, exit 3 (table or JSON).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nobody = format!("http://127.0.0.1:{port}");
    for json in [false, true] {
        let mut args = vec!["status", "--seeds", nobody.as_str()];
        if json {
            args.push("--json");
        }
        let out = mgmt(&t, &args);
        out.assert_code(3).assert_stderr_has("cannot reach etcd");
    }
}

#[test]
fn kv_values_are_written_and_restored() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let yaml = t.write_yaml(
        "kv.yaml",
        "graph: kv\nresources:\n  kv:\n  - name: greeting\n    value: hello\n  - name: port\n    key: app/port\n    value: \"8080\"\n",
    );
    let a = t.agent(&["--seeds", e.url(), "--hostname", "kvhost"], &yaml);
    let is = |key: &str, value: &str| {
        e.get_json(&format!("/_mgmt/kv/{key}")).is_some_and(|v| v["value"] == value && v["host"] == "kvhost")
    };
    wait("both values written", &[&a], || is("greeting", "hello") && is("app/port", "8080"));
    assert_eq!(e.keys("/_mgmt/kv/"), ["/_mgmt/kv/app/port", "/_mgmt/kv/greeting"]);

    // Changed behind its back: written back.
    e.etcdctl(&["put", "/_mgmt/kv/greeting", r#"{"value":"changed","host":"intruder"}"#]);
    wait("restored after a put", &[&a], || is("greeting", "hello"));
    // Deleted: written back.
    e.etcdctl(&["del", "/_mgmt/kv/greeting"]);
    wait("restored after a delete", &[&a], || is("greeting", "hello"));
    // Garbage: written back.
    e.etcdctl(&["put", "/_mgmt/kv/app/port", "not json"]);
    wait("restored after garbage", &[&a], || is("app/port", "8080"));
    assert!(a.try_exit().is_none(), "{}", a.stderr());
}

/// A `kv` without a value keeps its key removed; with `skiplessthan` a greater value
/// stored by someone else is left, a smaller one is written over.
#[test]
fn kv_without_a_value_removes_the_key_and_skiplessthan_leaves_a_greater_one() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    e.etcdctl(&["put", "/_mgmt/kv/stale", r#"{"value":"old","host":"elsewhere"}"#]);
    e.etcdctl(&["put", "/_mgmt/kv/counter", r#"{"value":"12","host":"elsewhere"}"#]);
    let yaml = t.write_yaml(
        "kv.yaml",
        "graph: kv\nresources:\n  kv:\n  - name: stale\n  - name: counter\n    value: \"5\"\n    skiplessthan: true\n  - name: marker\n    value: done\n",
    );
    let a = t.agent(&["--seeds", e.url(), "--hostname", "kvhost"], &yaml);
    let value = |key: &str| e.get_json(&format!("/_mgmt/kv/{key}")).map(|v| v["value"].clone());
    wait("the stale key removed", &[&a], || value("stale").is_none() && value("marker").is_some());
    assert_eq!(value("counter"), Some(json!("12")), "a greater stored value is left");
    // Put back from outside: removed again.
    e.etcdctl(&["put", "/_mgmt/kv/stale", r#"{"value":"again","host":"elsewhere"}"#]);
    wait("removed again", &[&a], || value("stale").is_none());
    // A smaller value is not left: ours is written over it.
    e.etcdctl(&["put", "/_mgmt/kv/counter", r#"{"value":"3","host":"elsewhere"}"#]);
    wait("the smaller value written over", &[&a], || value("counter") == Some(json!("5")));
    assert!(a.try_exit().is_none(), "{}", a.stderr());
}

#[test]
fn a_namespace_keeps_a_cluster_apart() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let yaml = |l: char| {
        format!(
            "graph: ns{l}\nresources:\n  file:\n  - name: \"@@file{l}\"\n    path: {dir}/f{l}\n    content: \"f{l}\\n\"\n  kv:\n  - name: k{l}\n    value: v{l}\ncollect:\n- kind: file\n  pattern: {dir}/\n",
            dir = t.p(&format!("ns{l}"))
        )
    };
    let x_yaml = t.write_yaml("x.yaml", &yaml('x'));
    let x = t.agent(&["--seeds", e.url(), "--hostname", "same", "--etcd-namespace", "/other"], &x_yaml);
    wait("everything of x under /other", &[&x], || {
        e.get_json("/other/hosts/same").is_some_and(|v| v["converged"] == true)
            && e.get_json("/other/exported/same/file/filex").is_some_and(|v| v["params"]["content"] == "fx\n")
            && e.get_json("/other/kv/kx").is_some_and(|v| v["value"] == "vx" && v["host"] == "same")
    });
    assert!(e.get_prefix("/_mgmt").is_empty(), "written outside the namespace: {:?}", e.keys("/_mgmt"));
    assert_eq!(e.keys("/other/"), ["/other/exported/same/file/filex", "/other/hosts/same", "/other/kv/kx"]);

    // Another cluster on the same etcd, default namespace: the same hostname is no clash,
    // and nothing crosses over.
    let y_yaml = t.write_yaml("y.yaml", &yaml('y'));
    let y = t.agent(&["--seeds", e.url(), "--hostname", "same"], &y_yaml);
    wait("y registered and converged under /_mgmt", &[&x, &y], || {
        e.get_json("/_mgmt/hosts/same").is_some_and(|v| v["converged"] == true)
            && e.get_json("/_mgmt/kv/ky").is_some()
    });
    assert_eq!(e.keys("/_mgmt/"), ["/_mgmt/exported/same/file/filey", "/_mgmt/hosts/same", "/_mgmt/kv/ky"]);
    assert_eq!(e.keys("/other/").len(), 3);
    wait_content(&[&y], &t.path("nsy/fy"), "fy\n");
    assert!(!t.path("nsy/fx").exists(), "y collected x's export from another namespace");
    assert!(!t.path("nsx/fy").exists(), "x collected y's export from another namespace");
    assert!(x.try_exit().is_none() && y.try_exit().is_none());

    // `mgmt status` reads one namespace.
    let out = mgmt(&t, &["status", "--seeds", e.url(), "--etcd-namespace", "/other", "--json"]);
    out.assert_code(0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["graph"], "nsx", "{v}");

    // The connection flags work before the subcommand and after any subcommand, and from
    // the environment; a flag beats the environment.
    for argv in [
        vec!["--seeds", e.url(), "--etcd-namespace", "/other", "status", "--json"],
        vec!["--etcd-namespace", "/other", "status", "--json", "--seeds", e.url()],
    ] {
        let out = mgmt(&t, &argv);
        out.assert_code(0);
        assert!(
            out.stdout.contains("\"nsx\"") && !out.stdout.contains("\"nsy\""),
            "{argv:?}: {}",
            out.stdout
        );
    }
    let by_env = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
            .args(["status", "--json"])
            .args(extra)
            .env("MGMT_SEEDS", e.url())
            .env("MGMT_ETCD_NAMESPACE", "/other")
            .output()
            .expect("running mgmt status")
    };
    let out = by_env(&[]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"nsx\""), "{out:?}");
    let out = by_env(&["--etcd-namespace", "/_mgmt"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"nsy\""), "{out:?}");
    let out = mgmt(&t, &["deploy", "list", "--json", "--seeds", e.url(), "--etcd-namespace", "/other"]);
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "[]");
}

#[test]
fn compaction_loses_nothing() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let a = start_host(&t, &e, 'A', &[]);
    let b = start_host(&t, &e, 'B', &[]);
    let both = [&a, &b];
    all_files_everywhere(&t, &both, &['A', 'B']);
    for n in 0..5 {
        t.replace_yaml("A.yaml", &host_yaml(&t, 'A', &format!("version {n}")));
        wait_content(&both, &t.path("mgmtB/fA"), &format!("version {n}\n"));
    }
    // Compact everything up to now, as `--auto-compaction-*` would, then keep changing.
    let status: Value = serde_json::from_str(&e.etcdctl(&["endpoint", "status", "-w", "json"])).unwrap();
    let rev = status[0]["Status"]["header"]["revision"].as_i64().expect("etcd's revision");
    e.etcdctl(&["compact", &rev.to_string(), "--physical"]);
    t.replace_yaml("A.yaml", &host_yaml(&t, 'A', "after compaction"));
    wait_content(&both, &t.path("mgmtB/fA"), "after compaction\n");
    t.replace_yaml("B.yaml", &host_yaml(&t, 'B', "b after compaction"));
    wait_content(&both, &t.path("mgmtA/fB"), "b after compaction\n");
    assert!(a.try_exit().is_none() && b.try_exit().is_none());
}

/// A peer's exported files reach a collector with only their content and a mode without
/// setuid, setgid and sticky bits: never the peer's `source` (the collector's own files),
/// owner, group, `purge` or `force`.
#[test]
fn a_collector_takes_only_content_and_a_plain_mode_from_a_peer() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = TestDir::new();
    let e = Etcd::start(&t);
    fs::write(t.path("secret"), "s3cret\n").unwrap();
    fs::set_permissions(t.path("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir_all(t.path("in/d")).unwrap();
    fs::write(t.path("in/d/precious"), "mine\n").unwrap();
    let evil = format!(
        r#"graph: evil
resources:
  file:
  - {{name: "@@loot", path: "{x}/loot", source: "{secret}", mode: "0644"}}
  - {{name: "@@shell", path: "{x}/shell", content: "shell\n", mode: "6755", owner: nobody, group: "65534"}}
  - {{name: "@@d", path: "{x}/d/", purge: true, force: true, mode: "1777"}}
"#,
        x = t.p("evil"),
        secret = t.p("secret"),
    );
    let collector = format!(
        "graph: c\nresources:\n  noop:\n  - name: n\ncollect:\n- kind: file\n  pattern: \"{}/\"\n",
        t.p("in")
    );
    let evil = t.write_yaml("evil.yaml", &evil);
    let collector = t.write_yaml("c.yaml", &collector);
    let ea = t.agent(&["--seeds", e.url(), "--hostname", "evil"], &evil);
    let ca = t.agent(&["--seeds", e.url(), "--hostname", "c"], &collector);
    let agents = [&ea, &ca];
    wait_content(&agents, &t.path("in/shell"), "shell\n");
    wait("the collected loot and directory", &agents, || {
        t.path("in/loot").exists() && fs::metadata(t.path("in/d")).is_ok_and(|m| m.mode() & 0o777 == 0o777)
    });
    let md = |p: &str| fs::metadata(t.path(p)).unwrap();
    assert_eq!(read(t.path("in/loot")).as_deref(), Some(""), "the collector copied its own file for a peer");
    assert_eq!(md("in/loot").mode() & 0o7777, 0o644);
    assert_eq!(md("in/shell").mode() & 0o7777, 0o755, "setuid or setgid taken from a peer");
    assert_eq!((md("in/shell").uid(), md("in/shell").gid()), (0, 0), "owner taken from a peer");
    assert_eq!(md("in/d").mode() & 0o7777, 0o777, "sticky bit taken from a peer");
    assert_eq!(read(t.path("in/d/precious")).as_deref(), Some("mine\n"), "purge taken from a peer");
    // The exporter itself applies its own params.
    assert_eq!(read(t.path("evil/loot")).as_deref(), Some("s3cret\n"));
}

/// A crafted export whose path has no file name at its end (`/a/..`, `/a/.`, `/`, empty)
/// is refused with a warning naming it; the collect directory is left alone and the other
/// collected files still apply.
#[test]
fn a_crafted_export_without_a_file_name_is_refused_and_the_rest_applies() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = TestDir::new();
    let e = Etcd::start(&t);
    fs::create_dir(t.path("in")).unwrap();
    fs::set_permissions(t.path("in"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(t.path("in/precious.txt"), "keep me\n").unwrap();
    for (name, path) in [("up", "/a/.."), ("dot", "/a/."), ("root", "/"), ("empty", ""), ("slashes", "/a//")]
    {
        let params = json!({"name": name, "path": path, "purge": true, "force": true, "mode": "0777"});
        let export = json!({"host": "EVIL", "kind": "file", "name": name, "params": params});
        e.etcdctl(&["put", &format!("/_mgmt/exported/EVIL/file/{name}"), &export.to_string()]);
    }
    let ok = json!({"host": "EVIL", "kind": "file", "name": "ok",
        "params": {"name": "ok", "path": "/z/ok", "content": "fine\n"}});
    e.etcdctl(&["put", "/_mgmt/exported/EVIL/file/ok", &ok.to_string()]);
    let collector = format!(
        "graph: c\nresources:\n  noop:\n  - name: n\ncollect:\n- kind: file\n  pattern: \"{}/\"\n",
        t.p("in")
    );
    let collector = t.write_yaml("c.yaml", &collector);
    let ca = t.agent(&["--seeds", e.url(), "--hostname", "c"], &collector);
    wait_content(&[&ca], &t.path("in/ok"), "fine\n");
    for name in ["up", "dot", "root", "empty", "slashes"] {
        ca.wait_log(&format!("collected file[{name}] from EVIL: refused: field `path`"));
    }
    assert_eq!(read(t.path("in/precious.txt")).as_deref(), Some("keep me\n"));
    assert_eq!(fs::metadata(t.path("in")).unwrap().mode() & 0o7777, 0o750);
    assert!(!ca.stderr().contains("purge"), "{}", ca.stderr());
}

/// A file collected without a `pattern` would land wherever the peer chose: refused with
/// a warning.
#[test]
fn collecting_files_needs_a_pattern() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let export = json!({"host": "EVIL", "kind": "file", "name": "f",
        "params": {"name": "f", "path": t.p("anywhere"), "content": "x\n"}});
    e.etcdctl(&["put", "/_mgmt/exported/EVIL/file/f", &export.to_string()]);
    let collector = "graph: c\nresources:\n  noop:\n  - name: n\ncollect:\n- kind: file\n";
    let collector = t.write_yaml("c.yaml", collector);
    let ca = t.agent(&["--seeds", e.url(), "--hostname", "c"], &collector);
    ca.wait_log("collected file[f] from EVIL: refused: field `pattern`");
    assert!(!t.path("anywhere").exists());
}

/// An export too big for etcd's request limit is refused when the graph is loaded, naming
/// the resource, instead of failing to publish forever.
#[test]
fn an_export_too_big_for_etcd_is_refused_at_load() {
    let t = TestDir::new();
    let big = "x".repeat(2 * 1024 * 1024);
    let yaml = format!(
        "graph: g\nresources:\n  file:\n  - name: \"@@big\"\n    path: {}\n    content: \"{big}\"\n",
        t.p("big")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(1).assert_stderr_has("file[big] is exported, but its params take");
    assert!(!t.path("big").exists());
}

/// Several exports, each under the size limit but together over etcd's request limit, are
/// all published and collected.
#[test]
fn exports_too_big_for_one_request_together_are_all_collected() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let content = |i: usize| format!("{i}{}\n", "x".repeat(700_000));
    let files: String = (0..4)
        .map(|i| {
            format!(
                "  - {{name: \"@@big{i}\", path: \"{}/big{i}\", content: \"{}\"}}\n",
                t.p("out"),
                content(i).trim_end()
            )
        })
        .collect();
    let exporter = t.write_yaml("x.yaml", &format!("graph: x\nresources:\n  file:\n{files}"));
    let collector = format!(
        "graph: c\nresources:\n  noop:\n  - name: n\ncollect:\n- kind: file\n  pattern: \"{}/\"\n",
        t.p("in")
    );
    let collector = t.write_yaml("c.yaml", &collector);
    let xa = t.agent(&["--seeds", e.url(), "--hostname", "x"], &exporter);
    let ca = t.agent(&["--seeds", e.url(), "--hostname", "c"], &collector);
    for i in 0..4 {
        wait("a collected big file", &[&xa, &ca], || {
            read(t.path(&format!("in/big{i}"))).as_deref() == Some(content(i).trim_end())
        });
    }
}

/// `mgmt status` shows what another host published on one bounded line per host: a
/// hostile host's newlines, terminal escapes and huge texts do not reach the terminal as
/// they are.
#[test]
fn status_shows_a_hostile_hosts_fields_on_one_bounded_line() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let evil = json!({
        "hostname": "evil\nfake      yes",
        "version": format!("1\x1b[2J{}", "v".repeat(20_000)),
        "pid": 1,
        "graph": "g\r\nforged line",
        "source": "s\n",
        "deploy": null,
        "converged": false,
        "resources": 0,
        "failed": [],
        "last_error": format!("boom\n{}", "e".repeat(80_000)),
        "started": 0,
        "updated": 0,
    });
    e.etcdctl(&["put", "/_mgmt/hosts/evil", &evil.to_string()]);
    let out = mgmt(&t, &["status", "--seeds", e.url()]);
    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[1].starts_with("evil\\nfake      yes  no"), "{}", out.stdout);
    assert!(lines[1].contains("g\\r\\nforged line"), "{}", out.stdout);
    assert!(!out.stdout.contains('\x1b'), "{}", out.stdout);
    assert!(lines[1].len() < 1000, "a line of {} bytes", lines[1].len());
    let json = status_json(&t, &e);
    let shown = json[0]["last_error"].as_str().unwrap();
    assert!(shown.len() <= 4096 && shown.ends_with(" more bytes]"), "{} bytes", shown.len());
}
