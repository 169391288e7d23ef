//! Agents losing etcd (`common::etcd`, SIGKILLed and started again on the same ports
//! and data, paused with SIGSTOP, restarted without its data): they say so once, keep
//! enforcing their graphs, and catch up when it is back (registration on a new lease if the
//! old one is gone, exports, collected changes made during the outage). Also: a dead endpoint
//! among the seeds, and an etcd that answers but refuses (out of space, authentication).

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::common::cluster::{all_files_everywhere, host_yaml, start_host, talk, wait, wait_content};
use crate::common::etcd::Etcd;
use crate::common::{self, Agent, TestDir};

/// Log lines at WARN or ERROR that mention etcd.
fn etcd_trouble(a: &Agent) -> usize {
    a.stderr()
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && l.to_lowercase().contains("etcd"))
        .count()
}

/// The files (temp files of atomic writes aside) in `dir`.
fn files_in(dir: &Path) -> Vec<String> {
    let mut v = common::entries_containing(dir, "");
    v.retain(|n| !n.ends_with(".mgmt-tmp"));
    v
}

#[test]
fn an_etcd_outage_is_survived() {
    let t = TestDir::new();
    let mut e = Etcd::start(&t);
    let (a, b, c) =
        (start_host(&t, &e, 'A', &[]), start_host(&t, &e, 'B', &[]), start_host(&t, &e, 'C', &[]));
    let all = [&a, &b, &c];
    all_files_everywhere(&t, &all, &['A', 'B', 'C']);
    wait("three hosts registered and converged", &all, || {
        let hosts = e.get_prefix_json("/_mgmt/hosts/");
        hosts.len() == 3 && hosts.iter().all(|(_, v)| v["converged"] == true)
    });
    let before: Vec<usize> = all.iter().map(|a| etcd_trouble(a)).collect();

    e.kill();
    wait("every agent to log the outage", &all, || {
        all.iter().zip(&before).all(|(a, n)| etcd_trouble(a) > *n)
    });
    let noticed = Instant::now();

    // `mgmt status` cannot read anything: an error of its own exit status, in one line.
    let status = Agent::spawn(&t, &["status", "--seeds", e.url()]);
    assert_eq!(status.wait_exit().code(), Some(3), "{}", status.stderr());
    assert_eq!(
        status.stderr().trim_end(),
        format!(
            "mgmt: error: cannot reach etcd at {}: connection refused (is etcd running? `mgmt etcd` starts one)",
            e.url()
        )
    );

    // Still enforcing, collected files included: a deleted file is restored at once.
    fs::remove_file(t.path("mgmtB/fA")).unwrap();
    wait_content(&all, &t.path("mgmtB/fA"), &format!("{}\n", talk('A')));
    fs::remove_file(t.path("mgmtC/fC")).unwrap();
    wait_content(&all, &t.path("mgmtC/fC"), &format!("{}\n", talk('C')));
    fs::write(t.path("mgmtA/fB"), "drift\n").unwrap();
    wait_content(&all, &t.path("mgmtA/fB"), &format!("{}\n", talk('B')));
    // An edit of A's export during the outage is applied on A at once.
    t.replace_yaml("A.yaml", &host_yaml(&t, 'A', "i am fA, edited during the outage"));
    wait_content(&all, &t.path("mgmtA/fA"), "i am fA, edited during the outage\n");

    // The outage is logged once (or a few times), not once per retry.
    if let Some(rest) = Duration::from_secs(3).checked_sub(noticed.elapsed()) {
        sleep(rest);
    }
    for (ag, (h, n)) in all.iter().zip(['A', 'B', 'C'].iter().zip(&before)) {
        let lines = etcd_trouble(ag) - n;
        assert!(lines <= 3, "{h} logged the outage {lines} times in 3 s:\n{}", ag.stderr());
        assert!(ag.try_exit().is_none(), "{h} exited during the outage:\n{}", ag.stderr());
    }

    // etcd is back: same data, same ports.
    e.restart();
    wait("three hosts registered again", &all, || {
        let hosts = e.get_prefix_json("/_mgmt/hosts/");
        hosts.iter().map(|(k, _)| k.as_str()).eq(["/_mgmt/hosts/A", "/_mgmt/hosts/B", "/_mgmt/hosts/C"])
    });
    // The edit made during the outage reached the collectors ...
    for h in ['B', 'C'] {
        wait_content(&all, &t.path(&format!("mgmt{h}/fA")), "i am fA, edited during the outage\n");
    }
    wait("the edit published", &all, || {
        e.get_json("/_mgmt/exported/A/file/filea")
            .is_some_and(|v| v["params"]["content"] == "i am fA, edited during the outage\n")
    });
    // ... and nothing is duplicated.
    assert_eq!(
        e.keys("/_mgmt/exported/"),
        ["/_mgmt/exported/A/file/filea", "/_mgmt/exported/B/file/fileb", "/_mgmt/exported/C/file/filec"]
    );
    for h in ['A', 'B', 'C'] {
        assert_eq!(files_in(&t.path(&format!("mgmt{h}"))), ["fA", "fB", "fC"], "mgmt{h}");
    }
    wait("three converged hosts", &all, || {
        let hosts = e.get_prefix_json("/_mgmt/hosts/");
        hosts.len() == 3 && hosts.iter().all(|(_, v)| v["converged"] == true)
    });

    // Watching again: a change made after the outage still propagates.
    t.replace_yaml("C.yaml", &host_yaml(&t, 'C', "i am fC, after the outage"));
    for h in ['A', 'B'] {
        wait_content(&all, &t.path(&format!("mgmt{h}/fC")), "i am fC, after the outage\n");
    }
    for (ag, h) in all.iter().zip(['A', 'B', 'C']) {
        assert!(ag.try_exit().is_none(), "{h} exited:\n{}", ag.stderr());
    }
}

#[test]
fn an_agent_started_during_an_outage_joins_when_etcd_is_back() {
    let t = TestDir::new();
    let mut e = Etcd::start(&t);
    let a = start_host(&t, &e, 'A', &[]);
    wait("A registered and exporting", &[&a], || {
        e.get_json("/_mgmt/hosts/A").is_some() && e.get_json("/_mgmt/exported/A/file/filea").is_some()
    });

    e.kill();
    // B cannot reach etcd: it still applies its own graph, and says why it is alone.
    let b = start_host(&t, &e, 'B', &[]);
    let both = [&a, &b];
    wait_content(&both, &t.path("mgmtB/fB"), &format!("{}\n", talk('B')));
    wait("B to log that etcd is unreachable", &both, || etcd_trouble(&b) > 0);
    assert!(b.try_exit().is_none(), "{}", b.stderr());

    e.restart();
    wait("B registered", &both, || e.get_json("/_mgmt/hosts/B").is_some());
    all_files_everywhere(&t, &both, &['A', 'B']);
    assert_eq!(e.keys("/_mgmt/exported/"), ["/_mgmt/exported/A/file/filea", "/_mgmt/exported/B/file/fileb"]);
}

#[test]
fn a_lost_lease_is_registered_again() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let a = start_host(&t, &e, 'A', &[]);
    wait("A registered", &[&a], || e.get_json("/_mgmt/hosts/A").is_some());
    let (_, _, lease) = e.get_prefix_raw("/_mgmt/hosts/A").into_iter().next().expect("hosts/A");
    assert_ne!(lease, 0, "hosts/A is not on a lease");

    // The lease disappears behind the agent's back (as after an outage longer than its TTL).
    e.etcdctl(&["lease", "revoke", &format!("{lease:x}")]);
    assert!(e.get_json("/_mgmt/hosts/A").is_none());
    wait("A registered again on a new lease", &[&a], || {
        e.get_prefix_raw("/_mgmt/hosts/A").first().is_some_and(|(_, _, l)| *l != 0 && *l != lease)
    });
    assert_eq!(e.get_json("/_mgmt/hosts/A").unwrap()["hostname"], "A");
    assert!(a.try_exit().is_none(), "{}", a.stderr());
}

/// The lease of `hosts/<host>` (0: none; None: no such key).
fn lease_of(e: &Etcd, host: &str) -> Option<i64> {
    let key = format!("/_mgmt/hosts/{host}");
    e.get_prefix_raw(&key).into_iter().find(|(k, _, _)| *k == key).map(|(_, _, l)| l)
}

/// A and its registration on a lease, with `extra` flags.
fn registered_host(t: &TestDir, e: &Etcd, extra: &[&str]) -> (Agent, i64) {
    let yaml = t.write_yaml("A.yaml", &host_yaml(t, 'A', &talk('A')));
    let mut args = vec!["--seeds", e.url(), "--hostname", "A"];
    args.extend_from_slice(extra);
    let a = t.agent(&args, &yaml);
    wait("A registered", &[&a], || lease_of(e, "A").is_some_and(|l| l != 0));
    let lease = lease_of(e, "A").unwrap();
    (a, lease)
}

#[test]
fn an_etcd_paused_longer_than_the_lease_ttl_gets_the_agent_registered_again() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (a, lease) = registered_host(&t, &e, &["--lease-ttl", "2"]);

    // etcd hangs (as under SIGSTOP, a stalled disk, a VM paused) for more than the TTL: when
    // it goes on, it expires the lease.
    e.pause();
    sleep(Duration::from_secs(5));
    e.resume();

    wait("A registered again on a new lease", &[&a], || {
        lease_of(&e, "A").is_some_and(|l| l != 0 && l != lease)
    });
    wait("A to log why it registered again", &[&a], || {
        a.stderr().lines().any(|l| l.contains("lease of `A`") && l.contains("registering again"))
    });
    assert_eq!(e.get_json("/_mgmt/hosts/A").unwrap()["hostname"], "A");
    // And it stays registered (the new lease is kept alive).
    sleep(Duration::from_secs(3));
    assert!(lease_of(&e, "A").is_some_and(|l| l != 0 && l != lease), "{}", a.stderr());
    assert!(a.try_exit().is_none(), "{}", a.stderr());
}

#[test]
fn an_etcd_restarted_without_its_data_gets_everything_published_again() {
    let t = TestDir::new();
    let mut e = Etcd::start(&t);
    let (a, _) = registered_host(&t, &e, &[]);
    wait("A exporting", &[&a], || e.get_json("/_mgmt/exported/A/file/filea").is_some());

    e.kill();
    fs::remove_dir_all(e.data_dir()).unwrap();
    e.restart();

    wait("A registered again in the new etcd", &[&a], || lease_of(&e, "A").is_some_and(|l| l != 0));
    wait("A's exports published again", &[&a], || e.get_json("/_mgmt/exported/A/file/filea").is_some());
    wait("A to log why it registered again", &[&a], || {
        a.stderr().lines().any(|l| l.contains("lease of `A`") && l.contains("registering again"))
    });
    assert!(a.try_exit().is_none(), "{}", a.stderr());
}

#[test]
fn a_dead_seed_first_or_last_fails_no_call() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let (a, _) = registered_host(&t, &e, &[]);
    for seeds in [format!("{dead},{}", e.url()), format!("{},{dead}", e.url())] {
        // Each call used to fail whenever its request went to the dead endpoint.
        for _ in 0..8 {
            let s = Agent::spawn(&t, &["status", "--seeds", &seeds]);
            let status = s.wait_exit();
            assert_eq!(status.code(), Some(0), "status --seeds {seeds}:\n{}", s.stderr());
            assert!(s.stdout().lines().any(|l| l.starts_with("A ")), "{}", s.stdout());
        }
        // An agent joins, exports and collects through the live endpoint, and its log shows
        // no trouble with etcd.
        let b_yaml = t.write_yaml("B.yaml", &host_yaml(&t, 'B', &talk('B')));
        let b = t.agent(&["--seeds", &seeds, "--hostname", "B"], &b_yaml);
        wait_content(&[&a, &b], &t.path("mgmtB/fA"), &format!("{}\n", talk('A')));
        wait_content(&[&a, &b], &t.path("mgmtA/fB"), &format!("{}\n", talk('B')));
        wait("B registered", &[&a, &b], || e.get_json("/_mgmt/hosts/B").is_some());
        assert_eq!(etcd_trouble(&b), 0, "{}", b.stderr());
        drop(b);
        // Its key goes when its lease expires; the next round registers B again.
        e.etcdctl(&["del", "/_mgmt/hosts/B"]);
    }
}

#[test]
fn a_full_etcd_is_reported_as_full_not_as_unreachable() {
    let t = TestDir::new();
    // A quota below etcd's own size: the NOSPACE alarm is raised at once.
    let e = Etcd::start_with(&t, &["--quota-backend-bytes=1"]);
    let yaml = t.write_yaml("A.yaml", &host_yaml(&t, 'A', &talk('A')));
    let a = t.agent(&["--seeds", e.url(), "--hostname", "A"], &yaml);
    wait("A to log that etcd is out of space", &[&a], || a.stderr().contains("out of space"));
    let log = a.stderr();
    assert!(log.contains("NOSPACE"), "{log}");
    assert!(!log.contains("unreachable"), "{log}");
    // The graph is enforced all the same.
    wait_content(&[&a], &t.path("mgmtA/fA"), &format!("{}\n", talk('A')));
}

#[test]
fn an_etcd_that_requires_authentication_is_reported_as_refusing() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    e.etcdctl(&["user", "add", "root", "--new-user-password=pw"]);
    e.etcdctl(&["user", "grant-role", "root", "root"]);
    e.etcdctl(&["auth", "enable"]);
    let yaml = t.write_yaml("A.yaml", &host_yaml(&t, 'A', &talk('A')));
    let a = t.agent(&["--seeds", e.url(), "--hostname", "A"], &yaml);
    wait("A to log that etcd refuses it", &[&a], || {
        a.stderr().contains("requires authentication: user name is empty")
    });
    let log = a.stderr();
    assert!(log.contains("give --etcd-user with --etcd-password-file or MGMT_ETCD_PASSWORD"), "{log}");
    assert!(!log.contains("unreachable") && !log.contains("cannot reach"), "{log}");
}

#[test]
fn an_agent_leaves_an_endpoint_that_dies_for_one_that_answers() {
    // Two single-member etcds stand in for two members of one cluster: what matters here is
    // only which one answers.
    let t = TestDir::new();
    let mut e1 = Etcd::start(&t);
    let mut e2 = Etcd::start(&t);
    let seeds = format!("{},{}", e1.url(), e2.url());
    let yaml = t.write_yaml("A.yaml", &host_yaml(&t, 'A', &talk('A')));
    let a = t.agent(&["--seeds", &seeds, "--hostname", "A"], &yaml);
    wait("A registered in one of them", &[&a], || {
        e1.get_json("/_mgmt/hosts/A").is_some() || e2.get_json("/_mgmt/hosts/A").is_some()
    });
    let (dead, live) = if e1.get_json("/_mgmt/hosts/A").is_some() { (&mut e1, &e2) } else { (&mut e2, &e1) };
    assert!(live.get_json("/_mgmt/hosts/A").is_none(), "A talks to both endpoints");

    dead.kill();
    wait("A registered and exporting through the endpoint that answers", &[&a], || {
        live.get_json("/_mgmt/hosts/A").is_some() && live.get_json("/_mgmt/exported/A/file/filea").is_some()
    });
    assert!(a.try_exit().is_none(), "{}", a.stderr());
}

#[test]
fn agents_that_stop_on_their_own_leave_without_losing_or_renewing_their_lease() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    // Applying a few files changes the status as the run ends, while the lease is revoked.
    let files: String = (0..4)
        .map(|i| {
            format!("  - {{name: f{i}, path: \"{}\", content: x, state: exists}}\n", t.p(&format!("f{i}")))
        })
        .collect();
    let yaml = t.write_yaml("g.yaml", &format!("graph: short\nresources:\n  file:\n{files}"));
    let hosts: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    // Two rounds that end on their own, then one stopped by SIGTERM as soon as it runs.
    for round in 0..3 {
        let sigterm = round == 2;
        let agents: Vec<Agent> = hosts
            .iter()
            .map(|h| {
                let mut args = vec!["--seeds", e.url(), "--hostname", h.as_str()];
                if !sigterm {
                    args.push("--no-watch");
                }
                t.agent(&args, &yaml)
            })
            .collect();
        for a in &agents {
            if sigterm {
                a.wait_log("running graph");
                a.signal(nix::sys::signal::Signal::SIGTERM);
            }
            a.wait_exit();
            let log = a.stderr();
            assert!(log.contains("joined the cluster"), "round {round}: did not join:\n{log}");
            assert!(!log.contains("was lost") && !log.contains("registering again"), "round {round}:\n{log}");
        }
        let left = e.keys("/_mgmt/hosts/");
        assert!(left.is_empty(), "round {round}: hosts still registered: {left:?}");
    }
}
