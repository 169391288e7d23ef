//! A locked-down cluster as docs/security.md sets it up: `mgmt certs`, `mgmt etcd --tls-dir`
//! (TLS, client certificates required), `scripts/etcd-roles` (users named after the
//! certificates' common names, authentication on). What each role may write, checked with
//! `etcdctl`, then agents and deploys through the `mgmt` binary.

use std::fs;
use std::path::Path;

use crate::common::repo::new_repo;
use crate::common::secure::{self, SecureEtcd};
use crate::common::{Agent, TestDir, git};

fn denied(r: Result<(), String>) -> bool {
    r.is_err_and(|e| e.contains("permission denied"))
}

#[test]
fn an_agent_writes_only_its_own_status_and_exports_and_the_kv_space() {
    let t = TestDir::new();
    let e = SecureEtcd::start(&t, &["h1", "h2"]);

    for key in ["/_mgmt/hosts/h1", "/_mgmt/exported/h1/file/f", "/_mgmt/kv/k"] {
        assert_eq!(e.put_as("h1", key, "v"), Ok(()), "h1 writes {key}");
    }
    for key in [
        "/_mgmt/deploy/1",
        "/_mgmt/deploy/latest",
        "/_mgmt/storage/sha256/x/0",
        "/_mgmt/hosts/h2",
        "/_mgmt/hosts/h1x",
        "/_mgmt/exported/h2/file/f",
        "/_mgmt/exported/h1x/file/f",
        "/elsewhere",
    ] {
        assert!(denied(e.put_as("h1", key, "v")), "h1 must not write {key}");
    }
    // It reads everything of the namespace: other hosts' status and exports, deploys.
    e.put_as("h2", "/_mgmt/exported/h2/file/g", "w").unwrap();
    e.put_as("deployer", "/_mgmt/deploy/latest", "1").unwrap();
    for prefix in ["/_mgmt/exported/", "/_mgmt/deploy/", "/_mgmt/hosts/"] {
        e.etcdctl_as("h1", &["get", "--prefix", prefix]);
    }
    assert!(e.etcdctl_as("h1", &["get", "/_mgmt/exported/h2/file/g"]).contains('w'));
}

#[test]
fn a_deployer_writes_deploys_and_storage_only() {
    let t = TestDir::new();
    let e = SecureEtcd::start(&t, &["h1"]);
    for key in
        ["/_mgmt/deploy/1", "/_mgmt/deploy/latest", "/_mgmt/storage/sha256/x/0", "/_mgmt/storage/pruned"]
    {
        assert_eq!(e.put_as("deployer", key, "v"), Ok(()), "deployer writes {key}");
    }
    for key in ["/_mgmt/hosts/h1", "/_mgmt/exported/h1/file/f", "/_mgmt/kv/k", "/elsewhere"] {
        assert!(denied(e.put_as("deployer", key, "v")), "deployer must not write {key}");
    }
    // Root writes anything; a certificate of the CA without an etcd user writes nothing.
    e.put_as("root", "/elsewhere", "v").unwrap();
    secure::certs(&e.pki, &["stranger"]);
    let out = e.ctl_as("stranger", &["put", "/_mgmt/kv/k", "v"]);
    assert!(!out.status.success(), "a certificate without a user must be refused");
}

#[test]
fn mgmt_etcd_tls_dir_accepts_only_client_certificates_of_its_ca() {
    let t = TestDir::new();
    let pki = t.path("pki");
    secure::certs(&pki, &["h1"]);
    let e = SecureEtcd::start_tls(&t, &pki);
    assert_eq!(e.put_as("h1", "/k", "v"), Ok(()));

    let ctl = |args: &[&str]| {
        std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &e.url, "--cacert", &e.file("ca.crt"), "--dial-timeout", "2s"])
            .args(args)
            .args(["put", "/k", "v"])
            .output()
            .unwrap()
    };
    assert!(!ctl(&[]).status.success(), "no client certificate");
    let other = t.path("other");
    secure::certs(&other, &["h1"]);
    let (c, k) = (other.join("h1.crt"), other.join("h1.key"));
    let out = ctl(&["--cert", c.to_str().unwrap(), "--key", k.to_str().unwrap()]);
    assert!(!out.status.success(), "a certificate of another CA");
    // Plain http is not served.
    let plain = e.url.replace("https://", "http://");
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &plain, "--dial-timeout", "2s", "put", "/k", "v"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_roles_script_runs_again_to_add_hosts_and_keeps_what_is_there() {
    let t = TestDir::new();
    let e = SecureEtcd::start(&t, &["h1"]);
    secure::certs(&e.pki, &["h3"]);
    assert!(denied(e.put_as("h3", "/_mgmt/hosts/h3", "v")), "no user h3 yet");

    let out = e.roles(&["--host", "h1", "--host", "h3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("authentication is on"));
    assert_eq!(e.put_as("h3", "/_mgmt/hosts/h3", "v"), Ok(()));
    assert!(denied(e.put_as("h3", "/_mgmt/hosts/h1", "v")));
    assert_eq!(e.put_as("h1", "/_mgmt/hosts/h1", "v"), Ok(()));

    // Another namespace, for a second cluster in the same etcd.
    let out = e.roles(&["--namespace", "/other/", "--host", "h1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(e.put_as("h1", "/other/exported/h1/file/f", "v"), Ok(()));
    assert!(denied(e.put_as("h1", "/other/hosts/h3", "v")));

    // Names that are no user name are refused before anything is done.
    let out = e.roles(&["--host", "a b"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A graph that writes `<out>/app.conf`, exports a file and sets a kv value.
fn graph(out: &Path) -> String {
    format!(
        "graph: locked\nresources:\n  file:\n  - name: conf\n    path: {o}/app.conf\n    content: \"deployed\\n\"\n  \
         - name: \"@@shared\"\n    path: {o}/shared\n    content: \"shared\\n\"\n  kv:\n  - name: greeting\n    value: hello\n",
        o = out.display()
    )
}

fn commit_graph(t: &TestDir) -> std::path::PathBuf {
    let repo = new_repo(t);
    fs::write(repo.join("graph.yaml"), graph(&t.path("out"))).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "locked"]);
    repo
}

fn deploy_as(e: &SecureEtcd, user: &str, repo: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["deploy".into()];
    args.extend(e.flags(user));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["yaml".into(), "graph.yaml".into()]);
    std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(&args)
        .current_dir(repo)
        .env_remove("MGMT_LOG")
        .output()
        .unwrap()
}

#[test]
fn an_agent_with_its_certificate_runs_a_deploy_and_exports() {
    let t = TestDir::new();
    let e = SecureEtcd::start(&t, &["h1"]);
    let repo = commit_graph(&t);

    let mut args = vec!["run".to_string()];
    args.extend(e.flags("h1"));
    args.extend(["--hostname", "h1", "--tmp-prefix", "empty"].map(String::from));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = Agent::spawn(&t, &argv);
    a.wait_log("running graph `empty`");

    let out = deploy_as(&e, "deployer", &repo, &[]);
    assert!(out.status.success(), "deploy as deployer: {}", String::from_utf8_lossy(&out.stderr));
    a.wait_log("running deploy 1 (commit ");
    a.wait_content(&t.path("out/app.conf"), "deployed\n");
    a.wait_for("its export and kv value in etcd", || {
        e.keys("/_mgmt/exported/h1/") == ["/_mgmt/exported/h1/file/shared"]
            && e.keys("/_mgmt/kv/") == ["/_mgmt/kv/greeting"]
    });
    assert_eq!(e.keys("/_mgmt/hosts/"), ["/_mgmt/hosts/h1"]);
    assert!(!a.stderr().contains("permission denied"), "{}", a.stderr());

    // What each reads to report: the agent's user runs `mgmt status`, the deployer's lists.
    let mut status = vec!["status".to_string(), "--json".to_string()];
    status.extend(e.flags("h1"));
    let out = secure::mgmt(&status.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(out.status.code(), Some(3), "etcd refused: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"h1\""), "{out:?}");
    let mut list = vec!["deploy".to_string()];
    list.extend(e.flags("deployer"));
    list.extend(["list".to_string(), "--json".to_string()]);
    let out = secure::mgmt(&list.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A clean stop revokes its lease: allowed, as the lease holds only its own key.
    a.interrupt();
    assert!(e.keys("/_mgmt/hosts/").is_empty(), "{}", a.stderr());
}

#[test]
fn a_deploy_with_a_certificate_whose_role_cannot_write_deploys_is_refused() {
    let t = TestDir::new();
    let e = SecureEtcd::start(&t, &["h1"]);
    let repo = commit_graph(&t);

    let out = deploy_as(&e, "h1", &repo, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("mgmt: error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("permission denied"), "{stderr}");
    assert!(e.keys("/_mgmt/deploy/").is_empty(), "nothing published");
    assert!(e.keys("/_mgmt/storage/").is_empty(), "nothing stored");
}

#[test]
fn a_deployer_prunes_and_compacts_without_the_root_role() {
    let t = TestDir::new();
    let e = SecureEtcd::start(&t, &["h1"]);
    let repo = commit_graph(&t);
    for n in 1..=3 {
        fs::write(repo.join("graph.yaml"), graph(&t.path(&format!("out{n}")))).unwrap();
        git(&repo, &["commit", "-qam", &format!("v{n}")]);
        let out = deploy_as(&e, "deployer", &repo, &["--keep", "1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Exit 0, not 3: compacting etcd after pruning is allowed to the deployer's role.
        assert_eq!(out.status.code(), Some(0), "deploy {n}: {stderr}");
        assert!(!stderr.contains("warning"), "{stderr}");
        assert_eq!(stderr.contains("mgmt: pruned 1 old deploy records"), n > 1, "{stderr}");
    }
    assert_eq!(e.keys("/_mgmt/deploy/"), ["/_mgmt/deploy/3", "/_mgmt/deploy/latest"]);
}
