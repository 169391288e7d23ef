//! Looking at the deploy history and going back in it, against a real etcd and real git:
//! `deploy list` (the live deploy, hosts per deploy), `deploy show` (text and JSON, modes in
//! octal), `deploy rollback` (the previous deploy, git revisions, refusing what is live,
//! who and why) and `deploy diff` (files and resources against the live deploy).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::etcd::Etcd;
use crate::common::repo::{
    commit, deploy_yaml, deployed, latest, mgmt, new_repo, new_repo_deployed, record, run_deploy, text,
};
use crate::common::{self, Agent, TestDir, git};

/// Stdout of a command that must succeed.
#[track_caller]
fn ok(out: &Output) -> String {
    common::succeeded("the command", out)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// A new repository whose graph was deployed with each of `contents` in turn (deploys 1,
/// 2, ...): the repository and the directory the graph writes into.
fn deployed_history(t: &TestDir, e: &Etcd, contents: &[&str]) -> (PathBuf, PathBuf) {
    let repo = new_repo(t);
    let out = t.path("out");
    for (i, content) in contents.iter().enumerate() {
        commit(&repo, &out, content);
        assert_eq!(deployed(&run_deploy(e, &repo, &["yaml", "graph.yaml"])), i as u64 + 1);
    }
    (repo, out)
}

#[test]
fn list_marks_the_live_deploy_counts_its_hosts_and_names_the_timezone() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (repo, out) = deployed_history(&t, &e, &["one", "two"]);
    let a = Agent::spawn(&t, &["run", "--seeds", e.url(), "--hostname", "h1", "--tmp-prefix", "empty"]);
    a.wait_content(&out.join("app.conf"), "two\n");
    a.wait_for("the host to report deploy 2", || {
        let v = json(&run_deploy(&e, &repo, &["list", "--json"]));
        v[1]["hosts"] == 1
    });
    let v = json(&run_deploy(&e, &repo, &["list", "--json"]));
    assert_eq!(
        (v[0]["key"].clone(), v[0]["live"].clone(), v[0]["hosts"].clone()),
        (1.into(), false.into(), 0.into())
    );
    assert_eq!(
        (v[1]["key"].clone(), v[1]["live"].clone(), v[1]["hosts"].clone()),
        (2.into(), true.into(), 1.into())
    );

    let table = ok(&run_deploy(&e, &repo, &["list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID     LIVE HOSTS TIME (UTC) "), "{table}");
    let cells = |l: &str| l.split_whitespace().take(3).map(String::from).collect::<Vec<_>>();
    assert_eq!(cells(lines[1])[..2], ["1", "0"], "{table}");
    assert_eq!(cells(lines[2]), ["2", "*", "1"], "{table}");

    let last = ok(&run_deploy(&e, &repo, &["list", "--last", "1"]));
    assert_eq!(last.lines().count(), 2, "{last}");
    assert!(last.lines().nth(1).unwrap().starts_with("2 "), "{last}");
}

#[test]
fn show_prints_the_record_and_the_manifest_with_octal_modes_as_text_or_json() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    fs::write(repo.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(repo.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("run.sh", repo.join("link")).unwrap();
    let c = commit(&repo, &t.path("out"), "one");
    deploy_yaml(&e, &repo);

    let shown = ok(&run_deploy(&e, &repo, &["show", "1"]));
    assert!(shown.starts_with("deploy       1 (live)\n"), "{shown}");
    assert!(shown.contains(&format!("\ncommit       {c}\n")), "{shown}");
    let files: Vec<(&str, &str)> = shown
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (mode, sha, path) = (w.next()?, w.next()?, w.next()?);
            (sha.len() == 12 && mode.len() == 6).then_some((mode, path))
        })
        .collect();
    assert_eq!(files, [("100644", "graph.yaml"), ("120000", "link"), ("100755", "run.sh")], "{shown}");

    let v = json(&run_deploy(&e, &repo, &["show", "1", "--json"]));
    assert_eq!(v["live"], true);
    assert_eq!(v["record"]["commit"], c.as_str());
    let modes: Vec<(&str, &str)> = v["manifest"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["mode"].as_str().unwrap()))
        .collect();
    assert_eq!(modes, [("graph.yaml", "100644"), ("link", "120000"), ("run.sh", "100755")], "{v}");
}

#[test]
fn rollback_without_a_target_goes_to_the_last_deploy_of_another_bundle() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (repo, _) = deployed_history(&t, &e, &["one", "two"]);
    // The same bundle again: not where a rollback goes.
    assert_eq!(deployed(&run_deploy(&e, &repo, &["yaml", "--force", "graph.yaml"])), 3);
    let o = run_deploy(&e, &repo, &["rollback"]);
    assert_eq!(deployed(&o), 4);
    assert!(text(&o.stdout).contains("rollback to deploy 1 (bundle "), "{}", text(&o.stdout));
    let r = record(&e, "/_mgmt", 4);
    assert_eq!((r.rollback_of, r.bundle), (Some(1), record(&e, "/_mgmt", 1).bundle));
    // And from there, back to the deploy before it.
    deployed(&run_deploy(&e, &repo, &["rollback"]));
    assert_eq!(record(&e, "/_mgmt", 5).rollback_of, Some(3));
}

#[test]
fn rollback_resolves_git_revisions_and_tags_in_the_current_repository() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    let c1 = commit(&repo, &out, "one");
    git(&repo, &["tag", "v1"]);
    deploy_yaml(&e, &repo);
    let c2 = commit(&repo, &out, "two");
    deploy_yaml(&e, &repo);
    commit(&repo, &out, "three");
    deploy_yaml(&e, &repo);

    assert_eq!(deployed(&run_deploy(&e, &repo, &["rollback", "HEAD~1"])), 4);
    assert_eq!((record(&e, "/_mgmt", 4).rollback_of, record(&e, "/_mgmt", 4).commit), (Some(2), Some(c2)));
    assert_eq!(deployed(&run_deploy(&e, &repo, &["rollback", "v1"])), 5);
    assert_eq!((record(&e, "/_mgmt", 5).rollback_of, record(&e, "/_mgmt", 5).commit), (Some(1), Some(c1)));
    // Outside the repository the tag means nothing.
    let o = run_deploy(&e, t.root(), &["rollback", "v1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no deploy `v1` in the history (by ID, commit or git revision)"),
        "{}",
        text(&o.stderr)
    );
    // A revision no deploy ran.
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "four"]);
    let o = run_deploy(&e, &repo, &["rollback", "HEAD"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("which no deploy in the history runs"), "{}", text(&o.stderr));
    assert_eq!(latest(&e, "/_mgmt"), "5");
}

#[test]
fn a_rollback_to_the_live_bundle_does_nothing_unless_forced() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (repo, _) = deployed_history(&t, &e, &["one", "two"]);
    let o = run_deploy(&e, &repo, &["rollback", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("nothing to roll back: deploy 2 is live and runs bundle "),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(latest(&e, "/_mgmt"), "2");
    let v = json(&run_deploy(&e, &repo, &["rollback", "--json", "2"]));
    assert_eq!(
        (v["deploy"].clone(), v["rollback_of"].clone(), v["published"].clone()),
        (2.into(), 2.into(), false.into())
    );
    assert_eq!(deployed(&run_deploy(&e, &repo, &["rollback", "--force", "2"])), 3);
    let v = json(&run_deploy(&e, &repo, &["rollback", "--json", "1"]));
    assert_eq!(
        (v["deploy"].clone(), v["rollback_of"].clone(), v["published"].clone()),
        (4.into(), 1.into(), true.into())
    );
    assert_eq!(v["bundle"], record(&e, "/_mgmt", 1).bundle.as_str());
    assert_eq!(deployed(&run_deploy(&e, &repo, &["rollback", "--force", "3"])), 5);
    // Deploy 5 runs deploy 2's bundle: going back to either is nothing new.
    let o = run_deploy(&e, &repo, &["rollback", "2"]);
    assert!(text(&o.stdout).starts_with("nothing to roll back: deploy 5 is live"), "{}", text(&o.stdout));
    assert_eq!(latest(&e, "/_mgmt"), "5");
}

/// `mgmt ARGS` in `dir` with `HOME` in `home`: no git identity of the user's own.
fn mgmt_as(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(args)
        .current_dir(dir)
        .env_remove("MGMT_LOG")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("USER", "tester")
        .output()
        .unwrap()
}

#[test]
fn records_say_who_deployed_or_rolled_back_and_why() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    git(&repo, &["config", "user.name", "Grace"]);
    git(&repo, &["config", "user.email", "grace@example.com"]);
    commit(&repo, &out, "one");
    deploy_yaml(&e, &repo);
    assert_eq!(record(&e, "/_mgmt", 1).deployer.as_deref(), Some("Grace <grace@example.com>"));
    // Without any git identity: user@host, also for a directory deployed as it is.
    let home = t.path("home");
    let dir = t.path("plain");
    fs::create_dir_all(&home).unwrap();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("graph.yaml"), common::repo::graph(&out, "two")).unwrap();
    let seeds = ["deploy", "--seeds", e.url()];
    deployed(&mgmt_as(&dir, &home, &[&seeds[..], &["yaml", "--no-git", "graph.yaml"]].concat()));
    let who = record(&e, "/_mgmt", 2).deployer.unwrap();
    assert!(who.starts_with("tester@") && who.len() > "tester@".len(), "{who}");

    deployed(&run_deploy(&e, &repo, &["rollback", "-m", "two breaks the app", "1"]));
    let r = record(&e, "/_mgmt", 3);
    assert_eq!(r.deployer.as_deref(), Some("Grace <grace@example.com>"));
    assert_eq!(r.reason.as_deref(), Some("two breaks the app"));
    let list = ok(&run_deploy(&e, &repo, &["list"]));
    let line = list.lines().last().unwrap();
    assert!(line.contains(" Grace ") && line.ends_with("rollback to deploy 1: two breaks the app"), "{list}");
    let shown = ok(&run_deploy(&e, &repo, &["show", "3"]));
    assert!(shown.contains("\nreason       two breaks the app\n"), "{shown}");
    // The reason is bounded like everything in a record.
    let o = run_deploy(&e, &repo, &["rollback", "--force", "-m", &"x".repeat(2000), "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("2000 bytes; at most 1024 are allowed"), "{}", text(&o.stderr));
    assert_eq!(latest(&e, "/_mgmt"), "3");
}

const GRAPH_ONE: &str = "graph: app
resources:
  file:
  - name: conf
    path: /nonexistent/app.conf
    content: \"one\\n\"
  exec:
  - name: reload
    cmd: echo reload
";

const GRAPH_TWO: &str = "graph: app
resources:
  file:
  - name: conf
    path: /nonexistent/app.conf
    content: \"two\\n\"
  - name: extra
    path: /nonexistent/extra.conf
    source: files/new.conf
";

#[test]
fn diff_shows_the_files_and_resources_a_deploy_changes_against_the_live_one() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    fs::create_dir(repo.join("files")).unwrap();
    fs::write(repo.join("graph.yaml"), GRAPH_ONE).unwrap();
    fs::write(repo.join("files/old.conf"), "old\n").unwrap();
    fs::write(repo.join("files/run.sh"), "#!/bin/sh\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    // Before the first deploy, the repository's graph.yaml: everything is added.
    let o = run_deploy(&e, &repo, &["diff", "--exit-code"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let first = text(&o.stdout);
    assert!(first.contains("  + files/old.conf  100644 ") && first.contains("  + file[conf]\n"), "{first}");
    deploy_yaml(&e, &repo);
    // Nothing changed yet.
    let o = run_deploy(&e, &repo, &["diff", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).ends_with("no differences\n"), "{}", text(&o.stdout));

    fs::write(repo.join("graph.yaml"), GRAPH_TWO).unwrap();
    fs::remove_file(repo.join("files/old.conf")).unwrap();
    fs::write(repo.join("files/new.conf"), "new\n").unwrap();
    fs::set_permissions(repo.join("files/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "two"]);
    let o = run_deploy(&e, &repo, &["diff", "--exit-code"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let said = text(&o.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines[0].starts_with("deploy 1 (live) -> commit "), "{said}");
    let starts = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(starts("  + files/new.conf  100644 "), "{said}");
    assert!(starts("  - files/old.conf  100644 "), "{said}");
    assert!(starts("  ~ files/run.sh  100644 ") && said.contains(" -> 100755 "), "{said}");
    assert!(starts("  ~ graph.yaml  100644 "), "{said}");
    assert!(lines.contains(&"  + file[extra]") && lines.contains(&"  - exec[reload]"), "{said}");
    assert!(lines.contains(&"  ~ file[conf]"), "{said}");
    assert!(lines.contains(&"      content: \"one\\n\" -> \"two\\n\""), "{said}");

    let v = json(&run_deploy(&e, &repo, &["diff", "--json"]));
    assert_eq!(v["differences"], true);
    assert_eq!(v["from"]["deploy"], 1);
    let changes: Vec<(&str, &str)> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [
            ("files/new.conf", "added"),
            ("files/old.conf", "removed"),
            ("files/run.sh", "changed"),
            ("graph.yaml", "changed")
        ]
    );
    assert_eq!(v["files"][2]["new"]["mode"], "100755");
    let resources: Vec<(&str, &str)> = v["graph"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["change"].as_str().unwrap()))
        .collect();
    assert_eq!(resources, [("exec[reload]", "removed"), ("file[conf]", "changed"), ("file[extra]", "added")]);
    assert_eq!(v["graph"]["resources"][1]["params"][0]["param"], "content");

    // Once deployed, HEAD is what runs; deploy 1 is what a rollback would change.
    deploy_yaml(&e, &repo);
    let o = run_deploy(&e, &repo, &["diff", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    let back = ok(&run_deploy(&e, &repo, &["diff", "1"]));
    assert!(back.starts_with("deploy 2 (live) -> deploy 1\n"), "{back}");
    assert!(back.contains("  + exec[reload]\n") && back.contains("  - file[extra]\n"), "{back}");
}

#[test]
fn each_deploy_subcommand_takes_and_shows_only_its_own_flags() {
    let help = |sub: &str| ok(&mgmt(Path::new("/"), &["deploy", sub, "--help"]));
    let list = help("list");
    for absent in ["--force", "--keep", "--no-git", "--commit", "--message"] {
        assert!(!list.contains(absent), "{absent} in\n{list}");
    }
    assert!(list.contains("--json") && list.contains("--last <N>"), "{list}");
    let show = help("show");
    assert!(show.contains("<ID>  The deploy's ID"), "{show}");
    assert!(show.lines().any(|l| l.contains("--json") && l.contains("Print JSON")), "{show}");
    let rollback = help("rollback");
    for present in ["-m, --message <MESSAGE>", "--force", "--keep <N>", "[TARGET]"] {
        assert!(rollback.contains(present), "{present} not in\n{rollback}");
    }
    assert!(!rollback.contains("--no-git") && !rollback.contains("--commit"), "{rollback}");
    let diff = help("diff");
    for present in ["--commit <REV>", "--no-git", "--json", "--exit-code"] {
        assert!(diff.contains(present), "{present} not in\n{diff}");
    }
    assert!(!diff.contains("--force") && !diff.contains("--keep"), "{diff}");

    // Before the subcommand, a flag it does not take is a command-line error.
    let o = mgmt(Path::new("/"), &["deploy", "--seeds", "http://127.0.0.1:9", "--force", "list"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("`--force` goes with `deploy yaml`, `deploy lang` or `deploy rollback`"),
        "{}",
        text(&o.stderr)
    );
    for args in
        [&["deploy", "yaml", "--keep", "0", "g.yaml"][..], &["deploy", "--keep", "0", "yaml", "g.yaml"]]
    {
        let o = mgmt(Path::new("/"), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            text(&o.stderr).contains("'0' for '--keep <N>': at least 1 deploy is kept: the live one"),
            "{}",
            text(&o.stderr)
        );
    }
}

/// A newer version may add fields to a record; the next record's parent is the hash of the
/// record's bytes as stored, not of what this version reads of them.
#[test]
fn the_parent_is_the_hash_of_the_stored_record_whatever_fields_it_has() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (repo, out) = new_repo_deployed(&t, &e);
    let mut newer = e.get_json("/_mgmt/deploy/1").unwrap();
    newer["signed_by"] = "a field of a later version".into();
    let bytes = serde_json::to_string(&newer).unwrap();
    e.etcdctl(&["put", "/_mgmt/deploy/1", &bytes]);
    commit(&repo, &out, "two");
    deploy_yaml(&e, &repo);
    assert_eq!(record(&e, "/_mgmt", 2).parent, Some(mgmt::deploy::bundle::sha256_hex(bytes.as_bytes())));
    let list = ok(&run_deploy(&e, &repo, &["list"]));
    assert!(!list.contains(" ! "), "{list}");
}
