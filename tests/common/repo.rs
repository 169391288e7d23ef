//! A git repository holding one graph, and the `mgmt` command run in it: what the deploy
//! tests share.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{TestDir, git};

/// A new repository `repo` in the test directory, on branch `main`.
pub fn new_repo(t: &TestDir) -> PathBuf {
    let repo = t.path("repo");
    fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    repo
}

/// A graph that writes `content` into `<out>/app.conf`.
pub fn graph(out: &Path, content: &str) -> String {
    format!(
        "graph: app\nresources:\n  file:\n  - name: conf\n    path: {}/app.conf\n    content: \"{content}\\n\"\n",
        out.display()
    )
}

/// Commit `graph.yaml` with `content`; returns the commit.
pub fn commit(repo: &Path, out: &Path, content: &str) -> String {
    fs::write(repo.join("graph.yaml"), graph(out, content)).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", &format!("set {content}")]);
    git(repo, &["rev-parse", "HEAD"])
}

/// `mgmt ARGS` run to its end in `dir`, with the default log level.
pub fn mgmt(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(args)
        .current_dir(dir)
        .env_remove("MGMT_LOG")
        .output()
        .unwrap()
}
