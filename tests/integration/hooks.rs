//! The pre-receive hook in a real bare repository, through a real `git push`: a commit whose
//! graph agents would refuse never reaches the deploy branch. No etcd: the check needs none.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::repo::{commit, graph};
use crate::common::{TestDir, git};

/// A bare repository `app.git` with the pre-receive hook, and a clone of it, `work`.
fn bare_with_hook(t: &TestDir) -> (PathBuf, PathBuf) {
    let bare = t.path("app.git");
    fs::create_dir(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/pre-receive"), bare.join("hooks/pre-receive"))
        .unwrap();
    git(&bare, &["config", "mgmt.binary", env!("CARGO_BIN_EXE_mgmt")]);
    git(t.root(), &["clone", "-q", bare.to_str().unwrap(), "work"]);
    (bare, t.path("work"))
}

fn push(work: &Path, to: &str) -> Output {
    Command::new("git").args(["push", "origin", &format!("HEAD:{to}")]).current_dir(work).output().unwrap()
}

fn branch(bare: &Path, name: &str) -> Option<String> {
    let out =
        Command::new("git").args(["rev-parse", "--verify", "-q", name]).current_dir(bare).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_push_whose_graph_agents_would_refuse_is_rejected_and_the_branch_stays() {
    let t = TestDir::new();
    let (bare, work) = bare_with_hook(&t);
    let out = t.path("out");

    // A good commit passes: the hook sees the pushed objects while they are in quarantine.
    let good = commit(&work, &out, "good");
    let p = push(&work, "main");
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert_eq!(branch(&bare, "main").as_deref(), Some(good.as_str()));

    // A graph that does not parse: rejected with file:line:col, and main does not move.
    fs::write(work.join("graph.yaml"), "this: [is broken\n").unwrap();
    git(&work, &["commit", "-qam", "broken"]);
    let broken = git(&work, &["rev-parse", "HEAD"]);
    let p = push(&work, "main");
    let said = String::from_utf8_lossy(&p.stderr);
    assert!(!p.status.success(), "{said}");
    assert!(said.contains("remote: mgmt: graph.yaml:1:"), "{said}");
    assert!(said.contains(&format!("remote: mgmt: push to main refused: {broken} does not pass")), "{said}");
    assert_eq!(branch(&bare, "main").as_deref(), Some(good.as_str()));
    // The refused objects stay out of the repository.
    let there = Command::new("git").args(["cat-file", "-e", &broken]).current_dir(&bare).status().unwrap();
    assert!(!there.success(), "the refused commit is in the repository");

    // A graph that parses but names a file the commit does not hold: rejected, located.
    let missing =
        format!("{}    source: files/app.conf\n", graph(&out, "x").replace("    content: \"x\\n\"\n", ""));
    fs::write(work.join("graph.yaml"), &missing).unwrap();
    git(&work, &["commit", "-qam", "a source that is not there"]);
    let p = push(&work, "main");
    let said = String::from_utf8_lossy(&p.stderr);
    assert!(!p.status.success(), "{said}");
    assert!(
        said.contains("remote: mgmt: graph.yaml:6:13: file[conf]: field `source`: `files/app.conf` is not a file of the deployed bundle"),
        "{said}"
    );

    // Adding the file makes the same graph pass.
    fs::create_dir(work.join("files")).unwrap();
    fs::write(work.join("files/app.conf"), "from the repository\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "the source"]);
    let fixed = git(&work, &["rev-parse", "HEAD"]);
    let p = push(&work, "main");
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert_eq!(branch(&bare, "main").as_deref(), Some(fixed.as_str()));
}

#[test]
fn other_branches_and_deletions_pass_the_hook() {
    let t = TestDir::new();
    let (bare, work) = bare_with_hook(&t);
    fs::write(work.join("graph.yaml"), "this: [is broken\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "broken"]);
    let p = push(&work, "side");
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let p = Command::new("git").args(["push", "origin", ":side"]).current_dir(&work).output().unwrap();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert!(branch(&bare, "side").is_none());
}

#[test]
fn the_hook_reads_the_graph_and_branch_from_git_config() {
    let t = TestDir::new();
    let (bare, work) = bare_with_hook(&t);
    git(&bare, &["config", "mgmt.branch", "prod"]);
    git(&bare, &["config", "mgmt.graph", "app"]);
    fs::create_dir(work.join("app")).unwrap();
    fs::write(work.join("app/graph.yaml"), "graph: [unclosed\n").unwrap();
    fs::write(work.join("graph.yaml"), "graph: fine\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "broken app"]);
    // `main` is not the deploy branch here; `prod` is, and its graph is app/graph.yaml.
    assert!(push(&work, "main").status.success());
    let p = push(&work, "prod");
    let said = String::from_utf8_lossy(&p.stderr);
    assert!(!p.status.success(), "{said}");
    assert!(said.contains("remote: mgmt: app/graph.yaml:1:"), "{said}");
}
