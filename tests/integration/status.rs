//! `mgmt status` for scripts, against a real etcd (`common::etcd`) and real agents:
//! its exit status (failing or behind hosts), `status HOST` with each failing resource and
//! its error, `--wait` until every host runs the latest deploy, and etcd errors (refused
//! connection, authentication, a request too large) as one readable line.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::common::cluster::{LONG, fail, poll_within, wait_some};
use crate::common::etcd::Etcd;
use crate::common::repo::{commit, deploy_yaml, mgmt, new_repo_deployed, shown, text};
use crate::common::{Agent, TestDir, read};
use serde_json::Value;

/// `mgmt status --seeds <etcd> ARGS`, run to its end.
fn status(e: &Etcd, args: &[&str]) -> Output {
    let mut all = vec!["status", "--seeds", e.url()];
    all.extend_from_slice(args);
    mgmt(Path::new("/"), &all)
}

/// Wait until `mgmt status ARGS` exits with `code`; its output then.
#[track_caller]
fn status_until(e: &Etcd, args: &[&str], code: i32, agents: &[&Agent]) -> Output {
    let mut last = None;
    let found = poll_within(LONG, || {
        let o = status(e, args);
        if o.status.code() == Some(code) {
            return Some(o);
        }
        last = Some(o);
        None
    });
    match found {
        Some(o) => o,
        None => {
            let last = last.as_ref().map(shown).unwrap_or_default();
            fail(LONG, &format!("mgmt status {args:?} to exit {code}\nlast run:\n{last}"), agents)
        }
    }
}

/// Wait until `mgmt status` exits 0 with `n` hosts registered.
#[track_caller]
fn all_fine(e: &Etcd, n: usize, agents: &[&Agent]) {
    wait_some(&format!("{n} hosts, all fine, in mgmt status --json"), agents, || {
        let o = status(e, &["--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        (o.status.code() == Some(0) && v.as_array()?.len() == n).then_some(())
    });
}

/// Nothing of the client's internals reaches the user.
#[track_caller]
fn assert_no_dump(stderr: &str) {
    for dump in ["tonic", "Os {", "Status {", "source:", "MetadataMap"] {
        assert!(!stderr.contains(dump), "{dump:?} in:\n{stderr}");
    }
}

fn agent_on_deploys(t: &TestDir, e: &Etcd, host: &str) -> Agent {
    Agent::spawn(
        t,
        &["run", "--seeds", e.url(), "--hostname", host, "--lease-ttl", "60", "--tmp-prefix", "empty"],
    )
}

#[test]
fn a_failing_exec_makes_status_exit_1_and_status_host_shows_its_error() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let good_yaml = t.write_yaml(
        "good.yaml",
        &format!(
            "graph: good\nresources:\n  file:\n  - name: f\n    path: {}\n    content: \"ok\\n\"\n",
            t.p("good.txt")
        ),
    );
    let bad_yaml = t.write_yaml(
        "bad.yaml",
        "graph: failing\nresources:\n  exec:\n  - name: broken\n    shell: /bin/sh\n    cmd: \"echo boom-from-the-command >&2; exit 3\"\n",
    );
    let good = t.agent(&["--seeds", e.url(), "--hostname", "good"], &good_yaml);
    let bad = t.agent(&["--seeds", e.url(), "--hostname", "bad"], &bad_yaml);
    let both = [&good, &bad];

    wait_some("both hosts registered", &both, || {
        (e.get_json("/_mgmt/hosts/good").is_some() && e.get_json("/_mgmt/hosts/bad").is_some()).then_some(())
    });
    let out = status_until(&e, &["good"], 0, &both);
    assert!(text(&out.stdout).contains("state      converged"), "{}", shown(&out));
    let out = status_until(&e, &[], 1, &both);
    assert!(text(&out.stderr).contains("bad (1 failed resource)"), "{}", shown(&out));
    assert!(!text(&out.stderr).contains("good ("), "{}", shown(&out));

    // One host: its state, and the failing resource with its error and the command's output.
    let out = status(&e, &["bad"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("state      1 failed resource"), "{stdout}");
    let row = stdout.lines().find(|l| l.starts_with("exec[broken]")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("failed") && row.contains("boom-from-the-command"), "{row}");

    let out = status(&e, &["bad", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {}", shown(&out)));
    assert_eq!(v["hostname"], "bad", "{v}");
    let f = &v["failures"][0];
    assert_eq!(
        (&f["kind"], &f["name"], &f["state"]),
        (&"exec".into(), &"broken".into(), &"failed".into()),
        "{v}"
    );
    assert!(f["error"].as_str().is_some_and(|e| e.contains("boom-from-the-command")), "{v}");

    let out = status(&e, &["nosuch"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(
        text(&out.stderr).contains("no host `nosuch` is registered (registered: bad, good)"),
        "{}",
        shown(&out)
    );

    // The failing host gone, every host is fine again.
    bad.interrupt();
    all_fine(&e, 1, &[&good]);
}

#[test]
fn status_host_shows_recent_changes_and_why_each_was_made() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let target = t.path("motd");
    let yaml = t.write_yaml(
        "g.yaml",
        &format!(
            "graph: why\nresources:\n  file:\n  - name: motd\n    path: {}\n    content: \"hello\\n\"\n",
            target.display()
        ),
    );
    let a = t.agent(&["--seeds", e.url(), "--hostname", "web1"], &yaml);
    a.wait_content(&target, "hello\n");
    fs::write(&target, "tampered\n").unwrap();
    a.wait_content(&target, "hello\n");

    // The repair reaches the published status after the first change.
    let v = wait_some("two changes in status web1 --json", &[&a], || {
        let o = status(&e, &["web1", "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        (v["changes"].as_array()?.len() >= 2).then_some(v)
    });
    let changes = v["changes"].as_array().unwrap();
    let whys: Vec<&str> = changes.iter().map(|c| c["why"].as_str().unwrap()).collect();
    assert_eq!(whys.first(), Some(&"first check of this resource"), "{v}");
    assert_eq!(whys.last(), Some(&"drift: its watch saw a change"), "{v}");
    let last = changes.last().unwrap();
    assert_eq!(last["resource"], "file[motd]", "{v}");
    assert!(last["change"].as_str().unwrap().contains("content"), "{v}");
    assert_eq!(last["noop"], false, "{v}");

    let out = status(&e, &["web1"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("recent changes:"), "{stdout}");
    let newest = stdout.lines().find(|l| l.contains("file[motd]")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(newest.ends_with("; drift: its watch saw a change"), "{stdout}");
}

#[test]
fn status_exits_1_when_a_host_refused_the_latest_deploy() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (_, out) = new_repo_deployed(&t, &e);
    let a = agent_on_deploys(&t, &e, "h1");
    a.wait_content(&out.join("app.conf"), "one\n");
    all_fine(&e, 1, &[&a]);

    // Deploy 1's record again as deploy 2: the agent refuses it and keeps running deploy 1.
    let one = e.get_prefix("/_mgmt/deploy/1").into_iter().next().expect("deploy/1").1;
    e.etcdctl(&["put", "/_mgmt/deploy/2", &one]);
    e.etcdctl(&["put", "/_mgmt/deploy/latest", "2"]);
    a.wait_log("deploy 2 refused");
    // The refusal reaches the host's status a moment after the log line.
    let out = wait_some("the refusal in mgmt status", &[&a], || {
        let o = status(&e, &[]);
        (o.status.code() == Some(1) && text(&o.stderr).contains("h1 (refused the latest deploy)"))
            .then_some(o)
    });
    assert!(text(&out.stdout).contains("h1"), "{}", shown(&out));

    // A wait ends at once: the host will not run the latest deploy.
    let out = status(&e, &["--wait=60s"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("mgmt: host h1 failed: deploy 2: "), "{stderr}");
    assert!(stderr.contains("0/1 hosts on deploy 2"), "{stderr}");
}

#[test]
fn wait_returns_0_once_every_agent_converged_on_a_new_deploy() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (repo, out) = new_repo_deployed(&t, &e);
    let a = agent_on_deploys(&t, &e, "h1");
    let b = agent_on_deploys(&t, &e, "h2");
    all_fine(&e, 2, &[&a, &b]);

    commit(&repo, &out, "two");
    assert_eq!(deploy_yaml(&e, &repo), 2);
    let done = status(&e, &["--wait=60s"]);
    assert_eq!(done.status.code(), Some(0), "{}", shown(&done));
    // Done means applied: the new content is there already.
    assert_eq!(read(out.join("app.conf")).as_deref(), Some("two\n"));
    let stderr = text(&done.stderr);
    assert_eq!(stderr.lines().last(), Some("2/2 hosts on deploy 2, 2 converged"), "{stderr}");
    // The final status on stdout, as `mgmt status` prints it.
    assert!(text(&done.stdout).starts_with("HOST"), "{}", shown(&done));

    // With no limit, and for one host.
    let done = status(&e, &["h1", "--wait", "--json"]);
    assert_eq!(done.status.code(), Some(0), "{}", shown(&done));
    let v: Value =
        serde_json::from_slice(&done.stdout).unwrap_or_else(|err| panic!("{err}: {}", shown(&done)));
    assert_eq!((&v["hostname"], &v["deploy"]), (&"h1".into(), &2.into()), "{v}");
}

#[test]
fn wait_times_out_with_exit_4_while_an_agent_is_stopped() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (repo, out) = new_repo_deployed(&t, &e);
    let a = agent_on_deploys(&t, &e, "h1");
    let b = agent_on_deploys(&t, &e, "h2");
    all_fine(&e, 2, &[&a, &b]);

    b.signal(nix::sys::signal::Signal::SIGSTOP);
    commit(&repo, &out, "two");
    deploy_yaml(&e, &repo);
    let timed_out = status(&e, &["--wait=2s"]);
    // The plain status says the same while h2 is stopped: a host is behind.
    let behind = status(&e, &[]);
    b.signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(behind.status.code(), Some(1), "{}", shown(&behind));
    assert!(text(&behind.stderr).contains("h2 (on deploy 1, latest is 2)"), "{}", shown(&behind));
    assert_eq!(timed_out.status.code(), Some(4), "{}\nh2:\n{}", shown(&timed_out), b.stderr());
    let stderr = text(&timed_out.stderr);
    assert!(
        stderr.contains("mgmt: timed out after 2s: still waiting for h2 (on deploy 1, latest is 2)"),
        "{stderr}\nh2 in etcd: {:?}\nh2:\n{}",
        e.get_json("/_mgmt/hosts/h2"),
        b.stderr()
    );
}

#[test]
fn an_unreachable_etcd_is_one_line_with_the_url_and_a_hint() {
    let t = TestDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let want = format!(
        "mgmt: error: cannot reach etcd at {url}: connection refused (is etcd running? `mgmt etcd` starts one)"
    );
    for (args, code) in [
        (vec!["status", "--seeds", &url], 3),
        (vec!["status", "--seeds", &url, "--json"], 3),
        (vec!["status", "--seeds", &url, "h1"], 3),
        (vec!["status", "--seeds", &url, "--wait=30s"], 3),
        (vec!["deploy", "--seeds", &url, "list"], 1),
    ] {
        let out = mgmt(t.root(), &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", shown(&out));
        assert_eq!(text(&out.stderr).trim_end(), want, "{args:?}");
    }
}

#[test]
fn an_etcd_that_requires_authentication_is_named_as_such() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    e.etcdctl(&["user", "add", "root", "--new-user-password=pw"]);
    e.etcdctl(&["auth", "enable"]);
    for (args, code) in [
        (vec!["status", "--seeds", e.url()], 3),
        (vec!["status", "--seeds", e.url(), "--wait=30s"], 3),
        (vec!["deploy", "--seeds", e.url(), "list"], 1),
    ] {
        let out = mgmt(t.root(), &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", shown(&out));
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("mgmt: error: etcd at {} requires authentication: ", e.url())),
            "{stderr}"
        );
        assert!(stderr.contains("user name is empty") && stderr.contains("give --etcd-user"), "{stderr}");
        assert_no_dump(&stderr);
    }
}

#[test]
fn a_request_too_large_for_etcd_is_named_as_such() {
    let t = TestDir::new();
    let e = Etcd::start_with(&t, &["--max-request-bytes=4096"]);
    let dir = t.path("repo");
    fs::create_dir_all(dir.join("files")).unwrap();
    fs::write(dir.join("graph.yaml"), "graph: big\nresources:\n  noop:\n  - name: n\n").unwrap();
    fs::write(dir.join("files/big.bin"), vec![b'x'; 64 * 1024]).unwrap();
    let out = mgmt(&dir, &["deploy", "--seeds", e.url(), "--no-git", "yaml", "graph.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("etcd at {} refused a request as too large: ", e.url())), "{stderr}");
    assert!(stderr.contains("--max-request-bytes"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_no_dump(&stderr);
}
