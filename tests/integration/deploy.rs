//! Deploys end to end: a real etcd, real git repositories (and a real `git push` through the
//! post-receive hook), several `mgmt run ... empty` agents. Asserted through files on disk,
//! `mgmt deploy list --json` and `etcdctl`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::etcd::Etcd;
use crate::common::repo::{commit, deployed, graph, mgmt, new_repo, run_deploy};
use crate::common::{self, Agent, TestDir, git, read};
use mgmt::deploy::store::DeployRecord;

#[track_caller]
fn deploy(e: &Etcd, dir: &Path, extra: &[&str]) -> u64 {
    deployed(&run_deploy(e, dir, extra))
}

fn history(e: &Etcd) -> Vec<DeployRecord> {
    let out = mgmt(Path::new("/"), &["deploy", "--seeds", &e.url, "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn agent(t: &TestDir, e: &Etcd, host: &str) -> Agent {
    Agent::spawn(t, &["run", "--seeds", &e.url, "--hostname", host, "--tmp-prefix", "empty"])
}

#[test]
fn agents_run_each_new_deploy_and_roll_back() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    // The three agents run one graph, so they manage one file: each agent's log shows it
    // switched, and the file shows the content.
    let out = t.path("out");
    let agents: Vec<Agent> = ["a", "b", "c"].iter().map(|h| agent(&t, &e, h)).collect();
    for a in &agents {
        a.wait_log("running graph `empty`");
    }

    let c1 = commit(&repo, &out, "one");
    let d1 = deploy(&e, &repo, &["yaml", "graph.yaml"]);
    assert_eq!(d1, 1);
    for a in &agents {
        a.wait_log("running deploy 1 (commit ");
    }
    agents[0].wait_content(&out.join("app.conf"), "one\n");

    commit(&repo, &out, "two");
    let d2 = deploy(&e, &repo, &["yaml", "graph.yaml"]);
    assert_eq!(d2, 2);
    for a in &agents {
        a.wait_log("running deploy 2 (commit ");
    }
    agents[0].wait_content(&out.join("app.conf"), "two\n");

    // Deploying what is live is nothing new, unless forced.
    let out2 = mgmt(&repo, &["deploy", "--seeds", &e.url, "yaml", "graph.yaml"]);
    assert!(String::from_utf8_lossy(&out2.stdout).contains("nothing new: deploy 2"), "{out2:?}");

    // Rollback by ID, then by commit: new records, every agent follows.
    assert_eq!(deploy(&e, &repo, &["rollback", "1"]), 3);
    for a in &agents {
        a.wait_log("running deploy 3 (commit ");
    }
    agents[0].wait_content(&out.join("app.conf"), "one\n");
    // Deploy 3 runs that bundle already: forced, and named after the deploy that published it.
    assert_eq!(deploy(&e, &repo, &["rollback", "--force", &c1[..10]]), 4);
    let h = history(&e);
    assert_eq!(h.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(h[2].rollback_of, Some(1));
    assert_eq!(h[2].bundle, h[0].bundle);
    assert_eq!(h[3].commit.as_deref(), Some(c1.as_str()));
    assert_eq!(h[3].rollback_of, Some(1));
    // The chain: each record names the hash of the one before.
    for w in h.windows(2) {
        assert_eq!(w[1].parent.as_deref(), Some(w[0].hash().as_str()));
    }
    for a in &agents {
        a.wait_log("running deploy 4 (commit ");
        assert!(a.try_exit().is_none());
    }

    // mgmt status shows the deploy each host runs.
    agents[0].wait_for("status to show deploy 4 on every host", || {
        let s = mgmt(Path::new("/"), &["status", "--seeds", &e.url, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap_or_default();
        v.as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|h| h["deploy"] == 4 && h["converged"] == true))
    });
}

#[test]
fn an_agent_started_after_five_deploys_runs_the_fifth() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    for n in 1..=5 {
        commit(&repo, &out, &format!("v{n}"));
        assert_eq!(deploy(&e, &repo, &["yaml", "graph.yaml"]), n);
    }
    let a = agent(&t, &e, "late");
    a.wait_content(&out.join("app.conf"), "v5\n");
    assert_eq!(a.count("running deploy"), 1, "{}", a.stderr());
    a.wait_log("running deploy 5 (commit ");
}

#[test]
fn ten_concurrent_deploys_get_consecutive_ids_and_a_clean_chain() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    commit(&repo, &t.path("out"), "same");
    let children: Vec<Child> = (0..10)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_mgmt"))
                .args(["deploy", "--seeds", &e.url, "--force", "yaml", "graph.yaml"])
                .current_dir(&repo)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids: Vec<u64> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("deploy ")?.parse().ok())
                .unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=10).collect::<Vec<u64>>());
    let h = history(&e);
    assert_eq!(h.len(), 10);
    for w in h.windows(2) {
        assert_eq!(w[1].parent.as_deref(), Some(w[0].hash().as_str()), "broken chain at {}", w[1].id);
    }
    let latest = e.ctl(&["get", "/_mgmt/deploy/latest", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&latest.stdout).trim(), "10");
}

#[test]
fn a_tampered_blob_is_refused_and_the_previous_deploy_keeps_running() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "good");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let a = agent(&t, &e, "h1");
    a.wait_content(&out.join("app.conf"), "good\n");

    // Deploy 2's graph blob is tampered with after the deploy and before the agent reads it
    // (it is stopped meanwhile), as if etcd had been changed behind everyone's back.
    commit(&repo, &out, "evil-free");
    let text = fs::read(repo.join("graph.yaml")).unwrap();
    let sha = mgmt::deploy::bundle::sha256_hex(&text);
    let key = format!("/_mgmt/storage/sha256/{sha}/0");
    a.signal(nix::sys::signal::Signal::SIGSTOP);
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let put = e.ctl(&["put", &key, "graph: tampered\n"]);
    a.signal(nix::sys::signal::Signal::SIGCONT);
    assert!(put.status.success());
    a.wait_log("ERROR deploy 2 refused: `graph.yaml`: ");
    assert_eq!(read(out.join("app.conf")).as_deref(), Some("good\n"));
    // The agent still runs deploy 1 and repairs drift.
    fs::write(out.join("app.conf"), "drift\n").unwrap();
    a.wait_content(&out.join("app.conf"), "good\n");
    a.wait_for("the refusal in the host status", || {
        let s = mgmt(Path::new("/"), &["status", "--seeds", &e.url, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap_or_default();
        v[0]["deploy"] == 1 && v[0]["deploy_error"].as_str().is_some_and(|m| m.starts_with("deploy 2: "))
    });
    let table = mgmt(Path::new("/"), &["status", "--seeds", &e.url]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("1 (latest refused)"));
}

#[test]
fn no_git_deploys_the_directory_as_it_is() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let dir = t.path("plain");
    fs::create_dir(&dir).unwrap();
    let out = t.path("out");
    fs::write(dir.join("graph.yaml"), graph(&out, "plain")).unwrap();
    // Not a repository: plain deploy refuses, --no-git works.
    let refused = mgmt(&dir, &["deploy", "--seeds", &e.url, "yaml", "graph.yaml"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--no-git"));
    deploy(&e, &dir, &["--no-git", "yaml", "graph.yaml"]);
    let h = history(&e);
    assert_eq!(h[0].commit, None);
    let a = agent(&t, &e, "h1");
    a.wait_content(&out.join("app.conf"), "plain\n");
}

#[test]
fn retention_keeps_n_deploys_fetchable_and_collects_the_rest() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    for n in 1..=6 {
        commit(&repo, &out, &format!("v{n}"));
        deploy(&e, &repo, &["--keep", "3", "yaml", "graph.yaml"]);
    }
    let ids: Vec<u64> = history(&e).iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![4, 5, 6]);
    for id in [4, 5, 6] {
        let s = mgmt(Path::new("/"), &["deploy", "--seeds", &e.url, "show", &id.to_string()]);
        assert!(s.status.success(), "deploy {id} not fetchable: {}", String::from_utf8_lossy(&s.stderr));
    }
    // Blobs: 3 graphs + 3 manifests are all that is left, and the deletions are marked.
    let keys = e.ctl(&["get", "--prefix", "/_mgmt/storage/sha256/", "--keys-only"]);
    let n = String::from_utf8_lossy(&keys.stdout).lines().filter(|l| !l.is_empty()).count();
    assert_eq!(n, 6, "{}", String::from_utf8_lossy(&keys.stdout));
    assert_eq!(
        e.get_prefix("/_mgmt/storage/pruned"),
        [("/_mgmt/storage/pruned".into(), "retention after deploy 6".into())]
    );
    // A rollback to a pruned deploy is refused with the reason.
    let r = mgmt(&repo, &["deploy", "--seeds", &e.url, "rollback", "2"]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("no deploy 2"));
}

#[test]
fn a_push_deploys_through_the_hook_and_other_branches_do_nothing() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let bare = t.path("app.git");
    fs::create_dir(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let hook = bare.join("hooks/post-receive");
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/post-receive"), &hook).unwrap();
    git(&bare, &["config", "mgmt.seeds", &e.url]);
    git(&bare, &["config", "mgmt.binary", env!("CARGO_BIN_EXE_mgmt")]);
    git(&bare, &["config", "mgmt.graph", "graph.yaml"]);
    let agents: Vec<Agent> = ["a", "b", "c"].iter().map(|h| agent(&t, &e, h)).collect();

    let work = t.path("work");
    git(t.root(), &["clone", "-q", bare.to_str().unwrap(), "work"]);
    let out = t.path("out");
    let c = commit(&work, &out, "pushed");
    let push = Command::new("git").args(["push", "origin", "HEAD:main"]).current_dir(&work).output().unwrap();
    let said = String::from_utf8_lossy(&push.stderr);
    assert!(push.status.success(), "{said}");
    assert!(said.contains("remote: mgmt: deploy 1"), "the pusher did not get the deploy id:\n{said}");
    assert!(said.contains(&format!("remote: mgmt: commit {c}")), "{said}");
    for a in &agents {
        a.wait_log("running deploy 1 (commit ");
    }
    agents[0].wait_content(&out.join("app.conf"), "pushed\n");

    // Another branch: nothing deployed.
    commit(&work, &out, "side");
    let push = Command::new("git").args(["push", "origin", "HEAD:side"]).current_dir(&work).output().unwrap();
    assert!(push.status.success());
    assert!(!String::from_utf8_lossy(&push.stderr).contains("mgmt: deploy"));
    assert_eq!(history(&e).len(), 1);

    // A graph agents would refuse is not deployed: the pusher sees where it is wrong.
    fs::write(work.join("graph.yaml"), "graph: [unclosed\n").unwrap();
    git(&work, &["commit", "-qam", "broken"]);
    let push = Command::new("git").args(["push", "origin", "HEAD:main"]).current_dir(&work).output().unwrap();
    let said = String::from_utf8_lossy(&push.stderr);
    assert!(push.status.success(), "{said}");
    assert!(said.contains("remote: mgmt: error: graph.yaml:1:"), "{said}");
    assert!(said.contains("the deploy failed; the push itself went through"), "{said}");
    assert_eq!(history(&e).len(), 1);

    // A failing deploy says why, and the push still goes through.
    fs::write(work.join("other.yaml"), "graph: x\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "another"]);
    git(&bare, &["config", "mgmt.graph", "missing.yaml"]);
    let push = Command::new("git").args(["push", "origin", "HEAD:main"]).current_dir(&work).output().unwrap();
    let said = String::from_utf8_lossy(&push.stderr);
    assert!(push.status.success(), "{said}");
    assert!(said.contains("the deploy failed; the push itself went through"), "{said}");
    assert!(said.contains("entry `missing.yaml`"), "{said}");
    assert_eq!(history(&e).len(), 1);
}

// ---- Deploys crafted by hand in etcd (any etcd client can write these), and what an agent
// ---- does with them.

use mgmt::deploy::bundle::{FileEntry, MODE_FILE, MODE_SYMLINK, Manifest, sha256_hex};

/// The raw bytes of `/_mgmt/deploy/<id>`, if present.
fn record_bytes(e: &Etcd, id: u64) -> Option<String> {
    let key = format!("/_mgmt/deploy/{id}");
    e.get_prefix_raw(&key).into_iter().find(|(k, _, _)| *k == key).map(|(_, v, _)| v)
}

/// Store `data` as a one-chunk blob; its sha256.
fn put_blob(e: &Etcd, data: &str) -> String {
    let sha = sha256_hex(data.as_bytes());
    e.etcdctl(&["put", &format!("/_mgmt/storage/sha256/{sha}/0"), data]);
    sha
}

fn file_entry(path: &str, mode: u32, content: &str) -> FileEntry {
    FileEntry { path: path.into(), mode, size: content.len() as u64, sha256: sha256_hex(content.as_bytes()) }
}

/// A record as `mgmt deploy` writes it, for bundle `bundle`, chained to what `deploy/<id-1>`
/// holds.
fn record_for(e: &Etcd, id: u64, bundle: &str) -> DeployRecord {
    DeployRecord {
        id,
        commit: None,
        bundle: bundle.into(),
        frontend: "yaml".into(),
        entry: "graph.yaml".into(),
        parent: record_bytes(e, id - 1).map(|b| sha256_hex(b.as_bytes())),
        author: None,
        time: 0,
        message: None,
        rollback_of: None,
        ..Default::default()
    }
}

/// Publish `record` as `deploy/<key>` and point `deploy/latest` at it.
fn publish(e: &Etcd, key: u64, record: &str) {
    e.etcdctl(&["put", &format!("/_mgmt/deploy/{key}"), record]);
    e.etcdctl(&["put", "/_mgmt/deploy/latest", &key.to_string()]);
}

/// Store a manifest (its blobs must be stored already) and publish deploy `id` of it.
fn craft(e: &Etcd, id: u64, files: Vec<FileEntry>) {
    let m = Manifest { frontend: "yaml".into(), entry: "graph.yaml".into(), files };
    let bundle = put_blob(e, &String::from_utf8(m.canonical_json()).unwrap());
    let rec = record_for(e, id, &bundle);
    publish(e, id, &String::from_utf8(serde_json::to_vec(&rec).unwrap()).unwrap());
}

fn status(e: &Etcd) -> serde_json::Value {
    let s = mgmt(Path::new("/"), &["status", "--seeds", &e.url, "--json"]);
    serde_json::from_slice(&s.stdout).unwrap_or_default()
}

fn agent_in(t: &TestDir, seeds: &str, host: &str, prefix: &Path) -> Agent {
    Agent::spawn(
        t,
        &["run", "--seeds", seeds, "--hostname", host, "--prefix", prefix.to_str().unwrap(), "empty"],
    )
}

#[test]
fn sizes_beyond_the_bounds_or_the_stored_chunks_are_refused_and_the_agent_keeps_following() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "one");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let a = agent(&t, &e, "h1");
    a.wait_content(&out.join("app.conf"), "one\n");

    let evil = graph(&out, "evil");
    put_blob(&e, &evil);
    let sizes =
        [(2, 1u64 << 40, "above the limit"), (3, u64::MAX, "above the limit"), (4, 5 << 20, "needs 5")];
    for (id, size, why) in sizes {
        craft(&e, id, vec![FileEntry { size, ..file_entry("graph.yaml", MODE_FILE, &evil) }]);
        a.wait_log(&format!("ERROR deploy {id} refused: "));
        assert!(
            a.stderr().lines().any(|l| l.contains(&format!("deploy {id} refused")) && l.contains(why)),
            "{}",
            a.stderr()
        );
    }
    // `deploy show` says why instead of aborting.
    let show = mgmt(Path::new("/"), &["deploy", "--seeds", &e.url, "show", "2"]);
    assert_eq!(show.status.code(), Some(1), "{show:?}");
    assert!(String::from_utf8_lossy(&show.stderr).contains("above the limit"), "{show:?}");

    commit(&repo, &out, "two");
    assert_eq!(deploy(&e, &repo, &["yaml", "graph.yaml"]), 5);
    a.wait_content(&out.join("app.conf"), "two\n");
    assert!(a.try_exit().is_none());
    a.wait_for("deploy 5 in the host status, without an error", || {
        let v = status(&e);
        v[0]["deploy"] == 5 && v[0]["deploy_error"].is_null()
    });
}

/// Every symlink below `dir`, without following any.
fn symlinks_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                found.push(e.path());
            } else if ft.is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

#[test]
fn chained_symlinks_in_a_bundle_write_nothing_anywhere() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    let prefix = t.path("prefix");
    commit(&repo, &out, "one");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let a = agent_in(&t, &e.url, "h1", &prefix);
    a.wait_content(&out.join("app.conf"), "one\n");

    // Each link stays inside the bundle on its own; through one another they climb out of
    // the unpack directory, `deploys/`, and the prefix.
    let g = graph(&out, "two");
    put_blob(&e, &g);
    for blob in [".", "..", "pwned\n"] {
        put_blob(&e, blob);
    }
    let files = vec![
        file_entry("graph.yaml", MODE_FILE, &g),
        file_entry("x", MODE_SYMLINK, "."),
        file_entry("x/y", MODE_SYMLINK, ".."),
        file_entry("x/y/w", MODE_SYMLINK, ".."),
        file_entry("x/y/w/v", MODE_SYMLINK, ".."),
        file_entry("x/y/w/v/PWNED", MODE_FILE, "pwned\n"),
    ];
    craft(&e, 2, files);
    a.wait_log("ERROR deploy 2 refused: `x/y` is below `x`");
    assert!(!t.path("PWNED").exists());
    assert_eq!(symlinks_below(&prefix), Vec::<PathBuf>::new());
    // Nothing but the bundle that runs (and the note of it) in `deploys/`.
    let mut left: Vec<String> = fs::read_dir(prefix.join("deploys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, vec![history(&e)[0].bundle.clone(), "last-run.json".to_string()]);
    assert_eq!(read(out.join("app.conf")).as_deref(), Some("one\n"));
}

#[test]
fn a_replayed_record_or_a_broken_chain_is_refused() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "one");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let a = agent(&t, &e, "h1");
    a.wait_content(&out.join("app.conf"), "one\n");

    // Deploy 1's record again, under key 2.
    publish(&e, 2, &record_bytes(&e, 1).unwrap());
    a.wait_log("ERROR deploy 2 refused: deploy/2 holds the record of deploy 1");

    // A record whose parent is not the record before it.
    let three = graph(&out, "three");
    put_blob(&e, &three);
    let m = Manifest::new("yaml", "graph.yaml", vec![file_entry("graph.yaml", MODE_FILE, &three)]).unwrap();
    let bundle = put_blob(&e, &String::from_utf8(m.canonical_json()).unwrap());
    let rec = DeployRecord { parent: Some("0".repeat(64)), ..record_for(&e, 3, &bundle) };
    publish(&e, 3, &serde_json::to_string(&rec).unwrap());
    a.wait_log("ERROR deploy 3 refused: deploy 3's parent is 0000");
    assert_eq!(read(out.join("app.conf")).as_deref(), Some("one\n"));

    // A record chained as it should be runs.
    let rec = record_for(&e, 4, &bundle);
    publish(&e, 4, &serde_json::to_string(&rec).unwrap());
    a.wait_content(&out.join("app.conf"), "three\n");
}

#[test]
fn with_the_record_before_it_pruned_a_deploy_is_checked_against_the_last_one_verified() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    let a = agent(&t, &e, "h1");
    a.wait_log("running graph `empty`");
    for n in 1..=4 {
        commit(&repo, &out, &format!("v{n}"));
        deploy(&e, &repo, &["--keep", "1", "yaml", "graph.yaml"]);
        a.wait_content(&out.join("app.conf"), &format!("v{n}\n"));
    }
    assert_eq!(a.count("refused"), 0, "{}", a.stderr());
    // A late agent sees only the newest record; it runs it.
    let b = agent(&t, &e, "h2");
    b.wait_log("running deploy 4 (commit ");

    // With deploy 4 gone from etcd too, an agent checks deploy 5's parent against the
    // record it verified itself.
    let bundle = history(&e)[0].bundle.clone();
    e.etcdctl(&["del", "/_mgmt/deploy/4"]);
    let rec = DeployRecord { parent: Some("0".repeat(64)), ..record_for(&e, 5, &bundle) };
    publish(&e, 5, &serde_json::to_string(&rec).unwrap());
    a.wait_log("ERROR deploy 5 refused: deploy 5's parent is 0000");
}

#[test]
fn a_tampered_unpacked_bundle_is_unpacked_again_before_it_runs() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    let prefix = t.path("prefix");
    let a = agent_in(&t, &e.url, "h1", &prefix);
    commit(&repo, &out, "one");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    a.wait_content(&out.join("app.conf"), "one\n");
    commit(&repo, &out, "two");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    a.wait_content(&out.join("app.conf"), "two\n");

    let cached = prefix.join("deploys").join(&history(&e)[0].bundle);
    fs::write(cached.join("graph.yaml"), graph(&out, "evil")).unwrap();
    fs::write(cached.join("extra"), "left here\n").unwrap();
    deploy(&e, &repo, &["rollback", "1"]);
    a.wait_log("running deploy 3 (commit ");
    a.wait_content(&out.join("app.conf"), "one\n");
    assert!(a.stderr().contains("does not match its manifest"), "{}", a.stderr());
    assert!(!cached.join("extra").exists());
}

#[test]
fn unpacked_bundles_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    let prefix = t.path("prefix");
    // Left wide open by an older agent.
    fs::create_dir_all(prefix.join("deploys")).unwrap();
    fs::set_permissions(prefix.join("deploys"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(repo.join("bin")).unwrap();
    fs::write(repo.join("bin/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(repo.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    commit(&repo, &out, "one");
    let a = agent_in(&t, &e.url, "h1", &prefix);
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    a.wait_content(&out.join("app.conf"), "one\n");
    let bundle = prefix.join("deploys").join(&history(&e)[0].bundle);
    assert_eq!(common::mode(prefix.join("deploys")) & 0o7777, 0o700);
    assert_eq!(common::mode(&bundle) & 0o7777, 0o700);
    assert_eq!(common::mode(bundle.join("bin")) & 0o7777, 0o700);
    assert_eq!(common::mode(bundle.join("graph.yaml")) & 0o7777, 0o600);
    assert_eq!(common::mode(bundle.join("bin/tool")) & 0o7777, 0o700);
}

#[test]
fn an_agent_started_while_etcd_is_down_runs_the_last_deploy_it_ran() {
    let t = TestDir::new();
    let mut e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    let prefix = t.path("prefix");
    commit(&repo, &out, "one");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let a = agent_in(&t, &e.url, "h1", &prefix);
    a.wait_content(&out.join("app.conf"), "one\n");
    a.interrupt();

    e.kill();
    fs::remove_file(out.join("app.conf")).unwrap();
    let b = agent_in(&t, &e.url, "h1", &prefix);
    b.wait_content(&out.join("app.conf"), "one\n");
    b.wait_log("etcd is unreachable: running deploy 1 again");

    // Once etcd answers, the agent follows the cluster again.
    e.restart();
    commit(&repo, &out, "two");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    b.wait_content(&out.join("app.conf"), "two\n");
}

#[test]
fn a_damaged_latest_is_reported_until_it_is_repaired() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "one");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let a = agent(&t, &e, "h1");
    a.wait_content(&out.join("app.conf"), "one\n");

    for (garbage, n) in [("garbage", 1), ("-5", 1), ("1e3", 1), ("01", 1), ("+1", 1)] {
        e.etcdctl(&["put", "--", "/_mgmt/deploy/latest", garbage]);
        a.wait_log_count(&format!("holds `{garbage}`, which is not a deploy ID"), n);
    }
    // A `latest` behind the newest record is not run either.
    commit(&repo, &out, "two");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    a.wait_content(&out.join("app.conf"), "two\n");
    e.etcdctl(&["put", "/_mgmt/deploy/latest", "1"]);
    a.wait_log("/_mgmt/deploy/latest names deploy 1, but deploy/2 exists");
    assert_eq!(read(out.join("app.conf")).as_deref(), Some("two\n"));
    e.etcdctl(&["put", "/_mgmt/deploy/latest", "garbage"]);
    a.wait_for("the damage in the host status", || {
        status(&e)[0]["deploy_error"].as_str().is_some_and(|m| m.contains("not a deploy ID"))
    });
    e.etcdctl(&["del", "/_mgmt/deploy/latest"]);
    a.wait_log("/_mgmt/deploy/latest is missing, but deploy records exist");
    // Repaired: the report goes away, and the agent runs what `latest` names.
    e.etcdctl(&["put", "/_mgmt/deploy/latest", "2"]);
    a.wait_for("a clean host status", || {
        let v = status(&e);
        v[0]["deploy"] == 2 && v[0]["deploy_error"].is_null()
    });
    assert_eq!(read(out.join("app.conf")).as_deref(), Some("two\n"));
}

/// A TCP proxy in front of etcd. Once armed, it cuts every connection as soon as one has
/// carried more than 1 MiB of responses since, and refuses connections for a few seconds:
/// etcd failing in the middle of a bundle fetch.
struct FlakyProxy {
    url: String,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FlakyProxy {
    fn start(etcd_url: &str) -> FlakyProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::{Duration, Instant};
        let upstream = etcd_url.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let down_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (a, c) = (armed.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if down_until.lock().unwrap().is_some_and(|t| Instant::now() < t) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                open.lock().unwrap().push(client.try_clone().unwrap());
                open.lock().unwrap().push(server.try_clone().unwrap());
                let pump = |mut from: TcpStream, mut to: TcpStream, watch: bool| {
                    let (armed, cuts, open, down) = (a.clone(), c.clone(), open.clone(), down_until.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 << 10];
                        let mut since_armed = 0usize;
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            if watch && armed.load(Ordering::SeqCst) {
                                since_armed += n;
                                if since_armed > 1 << 20 && armed.swap(false, Ordering::SeqCst) {
                                    *down.lock().unwrap() = Some(Instant::now() + Duration::from_secs(3));
                                    for s in open.lock().unwrap().drain(..) {
                                        let _ = s.shutdown(Shutdown::Both);
                                    }
                                    cuts.fetch_add(1, Ordering::SeqCst);
                                }
                            } else {
                                since_armed = 0;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                };
                pump(client.try_clone().unwrap(), server.try_clone().unwrap(), false);
                pump(server, client, true);
            }
        });
        FlakyProxy { url, armed, cuts }
    }
}

#[test]
fn a_bundle_fetch_cut_by_an_etcd_failure_is_retried_until_it_runs() {
    use std::sync::atomic::Ordering;
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let proxy = FlakyProxy::start(&e.url);
    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "one");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let a = agent_in(&t, &proxy.url, "h1", &t.path("prefix"));
    a.wait_content(&out.join("app.conf"), "one\n");

    // A bundle big enough that fetching it takes several responses of 1 MiB.
    fs::write(repo.join("data.bin"), vec![b'x'; 3 << 20]).unwrap();
    commit(&repo, &out, "two");
    proxy.armed.store(true, Ordering::SeqCst);
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    a.wait_content(&out.join("app.conf"), "two\n");
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 1, "the fetch was never cut");
    assert_eq!(a.count("refused"), 0, "{}", a.stderr());
    a.wait_log("deploy 2: etcd did not answer while fetching it");
}

// ---- What is checked before publishing, and files deployed with a graph.

/// etcd's revision: it moves with every write.
fn revision(e: &Etcd) -> i64 {
    let v: serde_json::Value = serde_json::from_str(&e.etcdctl(&["get", "/", "-w", "json"])).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

#[test]
fn a_commit_agents_would_refuse_is_not_published() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "good");
    assert_eq!(deploy(&e, &repo, &["yaml", "graph.yaml"]), 1);
    let before = (e.get_prefix("/_mgmt/"), revision(&e));

    let no_source = graph(&out, "x").replace("    content: \"x\\n\"\n", "    source: files/app.conf\n");
    let escapes = graph(&out, "x").replace("    content: \"x\\n\"\n", "    source: ../outside.conf\n");
    let cases = [
        ("this: [is broken\n".to_string(), "graph.yaml:1:"),
        (
            graph(&out, "x").replace("content:", "contnet:"),
            "graph.yaml:6:5: file[conf]: unknown field `contnet`",
        ),
        (
            no_source,
            "graph.yaml:6:13: file[conf]: field `source`: `files/app.conf` is not a file of the deployed bundle",
        ),
        (
            escapes,
            "graph.yaml:6:13: file[conf]: field `source`: `../outside.conf` must stay inside the graph's directory",
        ),
    ];
    for (text, want) in cases {
        fs::write(repo.join("graph.yaml"), &text).unwrap();
        git(&repo, &["commit", "-qam", "refused"]);
        for check in [false, true] {
            let mut args = vec!["deploy", "--seeds", &e.url, "yaml", "graph.yaml"];
            if check {
                args.push("--check");
            }
            let r = mgmt(&repo, &args);
            let stderr = String::from_utf8_lossy(&r.stderr);
            assert_eq!(r.status.code(), Some(1), "{want}: {stderr}");
            assert!(stderr.contains(&format!("mgmt: error: {want}")), "{want}: {stderr}");
            assert!(r.stdout.is_empty(), "{want}: {}", String::from_utf8_lossy(&r.stdout));
        }
        // Nothing was written: no blob, no record, the same `deploy/latest`.
        assert_eq!((e.get_prefix("/_mgmt/"), revision(&e)), before, "{want}");
    }

    // --check of a good commit says what would be published, without etcd at all.
    let c = commit(&repo, &out, "checked");
    let r = mgmt(&repo, &["deploy", "--check", "yaml", "graph.yaml"]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(stdout.starts_with("valid graph.yaml (graph `app`, 1 resources)\n"), "{stdout}");
    assert!(stdout.contains(&format!("commit {c}\nbundle ")), "{stdout}");
    assert_eq!((e.get_prefix("/_mgmt/"), revision(&e)), before);
    assert_eq!(deploy(&e, &repo, &["yaml", "graph.yaml"]), 2);
}

/// A bundle whose graph does not parse (published by hand: `mgmt deploy` refuses it) is
/// refused by the agent with the error once, prefixed by the deploy's ID once.
#[test]
fn an_agent_names_the_deploy_it_refuses_once() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "good");
    deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let a = agent(&t, &e, "h1");
    a.wait_content(&out.join("app.conf"), "good\n");
    let broken = "this: [is broken\n";
    put_blob(&e, broken);
    craft(&e, 2, vec![file_entry("graph.yaml", MODE_FILE, broken)]);
    a.wait_log("ERROR deploy 2 refused: graph.yaml:1:");
    a.wait_for("the refusal in the host status", || {
        status(&e)[0]["deploy_error"].as_str().is_some_and(|m| m.starts_with("deploy 2: graph.yaml:1:"))
    });
    assert_eq!(a.count("deploy 2: deploy 2"), 0, "{}", a.stderr());
    // Nor can it be rolled back to.
    let r = mgmt(Path::new("/"), &["deploy", "--seeds", &e.url, "rollback", "2"]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("deploy 2's graph would be refused by agents: graph.yaml:1:"), "{stderr}");
    assert_eq!(e.get_prefix("/_mgmt/deploy/latest")[0].1, "2");
    // A rollback checked only publishes nothing.
    // (The agent writes its status meanwhile: only deploys and blobs are compared.)
    let deploys = || (e.get_prefix("/_mgmt/deploy/"), e.get_prefix("/_mgmt/storage/"));
    let before = deploys();
    let r = mgmt(Path::new("/"), &["deploy", "--seeds", &e.url, "rollback", "1", "--check"]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(stdout.contains("valid graph.yaml (graph `app`, 1 resources)\nrollback to deploy 1"), "{stdout}");
    assert_eq!(deploys(), before);
}

#[test]
fn a_deployed_graph_uses_the_files_deployed_with_it() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    fs::create_dir_all(repo.join("app/files")).unwrap();
    let graph = format!(
        "graph: app\nresources:\n  file:\n  - name: conf\n    path: {out}/app.conf\n    source: files/app.conf\n\
         \x20 exec:\n  - name: copy\n    shell: /bin/sh\n    cwd: files\n    cmd: cp app.conf {out}/copied.conf\n    creates: {out}/copied.conf\n",
        out = out.display()
    );
    fs::write(repo.join("app/graph.yaml"), graph).unwrap();
    fs::write(repo.join("app/files/app.conf"), "from the repository\n").unwrap();
    fs::create_dir(&out).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "graph and its files"]);
    // The agent's prefix is relative (to the test directory, where agents start).
    let a = Agent::spawn(
        &t,
        &["run", "--seeds", &e.url, "--hostname", "h1", "--prefix", "./state/../state", "empty"],
    );
    // A directory names its graph.yaml.
    assert_eq!(deploy(&e, &repo, &["yaml", "app"]), 1);
    assert_eq!(history(&e)[0].entry, "app/graph.yaml");
    a.wait_content(&out.join("app.conf"), "from the repository\n");
    a.wait_content(&out.join("copied.conf"), "from the repository\n");

    // A change to the file alone is deployed like a change to the graph.
    fs::write(repo.join("app/files/app.conf"), "changed\n").unwrap();
    git(&repo, &["commit", "-qam", "new content"]);
    assert_eq!(deploy(&e, &repo, &["yaml", "app/graph.yaml"]), 2);
    a.wait_content(&out.join("app.conf"), "changed\n");
}
