//! A git repository holding one graph, and the `mgmt` command run in it: what the deploy
//! tests share.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mgmt::deploy::store::DeployRecord;

use super::etcd::Etcd;
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

/// `mgmt deploy --seeds URL <args>` run to its end in `dir`.
pub fn run_deploy(e: &Etcd, dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["deploy", "--seeds", e.url()];
    all.extend_from_slice(args);
    mgmt(dir, &all)
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a failed assertion shows of a command's outcome.
pub fn shown(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// Deploy record `id` under the namespace `ns` (`/_mgmt` unless `--etcd-namespace`).
#[track_caller]
pub fn record(e: &Etcd, ns: &str, id: u64) -> DeployRecord {
    let v = e.get_json(&format!("{ns}/deploy/{id}")).unwrap_or_else(|| panic!("no record {id} in {ns}"));
    serde_json::from_value(v).unwrap()
}

/// The id `deploy/latest` names under the namespace `ns`.
pub fn latest(e: &Etcd, ns: &str) -> String {
    e.etcdctl(&["get", &format!("{ns}/deploy/latest"), "--print-value-only"]).trim().to_string()
}

/// `mgmt deploy yaml graph.yaml` in `repo`, which must succeed: the new deploy's id.
#[track_caller]
pub fn deploy_yaml(e: &Etcd, repo: &Path) -> u64 {
    deployed(&run_deploy(e, repo, &["yaml", "graph.yaml"]))
}

/// A new repository whose graph (writing `one` into `out/app.conf`) is deploy 1: the
/// repository and `out`.
#[track_caller]
pub fn new_repo_deployed(t: &TestDir, e: &Etcd) -> (PathBuf, PathBuf) {
    let repo = new_repo(t);
    let out = t.path("out");
    commit(&repo, &out, "one");
    assert_eq!(deploy_yaml(e, &repo), 1);
    (repo, out)
}

/// The deploy ID a successful `mgmt deploy` printed.
#[track_caller]
pub fn deployed(out: &Output) -> u64 {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "mgmt deploy failed ({}):\n{stdout}{}", out.status, text(&out.stderr));
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("deploy ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no deploy id in {stdout}"))
}
