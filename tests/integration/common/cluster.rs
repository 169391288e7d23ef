//! What the tests of several agents on one etcd share: waiting for a condition with every
//! agent's log on failure, and the talk's three-host demo (each host exports a file and
//! collects everyone's).

use std::path::Path;
use std::time::Duration;

use super::etcd::Etcd;
use super::{Agent, TestDir, poll_some, read};

/// How long any cluster condition may take (several agents and an etcd per test, tests in
/// parallel on a small machine).
pub const LONG: Duration = Duration::from_secs(30);

/// Run `f` every 50 ms (conditions may run `etcdctl` or `mgmt`) until it returns `Some` or
/// `limit` passes.
pub fn poll_within<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_some(Duration::from_millis(50), limit, f)
}

/// Panic: `what` did not happen within `limit`; with every agent's exit and log.
#[track_caller]
pub fn fail(limit: Duration, what: &str, agents: &[&Agent]) -> ! {
    let logs: String = agents
        .iter()
        .enumerate()
        .map(|(i, a)| format!("--- agent #{i} (exit: {:?}) stderr:\n{}", a.try_exit(), a.stderr()))
        .collect();
    panic!("timed out after {limit:?} waiting for: {what} (at {})\n{logs}", std::panic::Location::caller());
}

/// Run `f` until it returns `Some`, within `limit`; on timeout panic with `what` and every
/// agent's log.
#[track_caller]
pub fn wait_some_within<T>(
    limit: Duration,
    what: &str,
    agents: &[&Agent],
    f: impl FnMut() -> Option<T>,
) -> T {
    match poll_within(limit, f) {
        Some(v) => v,
        None => fail(limit, what, agents),
    }
}

/// [`wait_some_within`] [`LONG`].
#[track_caller]
pub fn wait_some<T>(what: &str, agents: &[&Agent], f: impl FnMut() -> Option<T>) -> T {
    wait_some_within(LONG, what, agents, f)
}

/// Wait until `cond` holds, within `limit`; on timeout panic with `what` and every agent's log.
#[track_caller]
pub fn wait_within(limit: Duration, what: &str, agents: &[&Agent], mut cond: impl FnMut() -> bool) {
    wait_some_within(limit, what, agents, || cond().then_some(()))
}

/// [`wait_within`] [`LONG`].
#[track_caller]
pub fn wait(what: &str, agents: &[&Agent], cond: impl FnMut() -> bool) {
    wait_within(LONG, what, agents, cond)
}

/// Wait until `path` holds exactly `content`.
#[track_caller]
pub fn wait_content(agents: &[&Agent], path: &Path, content: &str) {
    if poll_within(LONG, || (read(path).as_deref() == Some(content)).then_some(())).is_none() {
        fail(LONG, &format!("{} to contain {content:?}; it has {:?}", path.display(), read(path)), agents);
    }
}

/// The talk's graph for host `h` (A, B or C), with /tmp moved into the test directory:
/// exports `@@file<h>` (`mgmt<H>/f<H>` holding `content` and a newline), collects files
/// into `mgmt<H>/`.
pub fn host_yaml(t: &TestDir, h: char, content: &str) -> String {
    let l = h.to_ascii_lowercase();
    format!(
        r#"graph: mygraph
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

/// The content the talk's host `h` exports (without the newline YAML's `|` adds).
pub fn talk(h: char) -> String {
    format!("i am f{h}, exported from host {h}")
}

/// Start the talk's host `h` (graph file `<h>.yaml`) with `--hostname <h>` and `extra` flags.
pub fn start_host(t: &TestDir, e: &Etcd, h: char, extra: &[&str]) -> Agent {
    let yaml = t.write_yaml(&format!("{h}.yaml"), &host_yaml(t, h, &talk(h)));
    let host = h.to_string();
    let mut args = vec!["--seeds", e.url(), "--hostname", host.as_str()];
    args.extend_from_slice(extra);
    t.agent(&args, &yaml)
}

/// Wait until every host in `hosts` has every host's file with its exporter's content.
#[track_caller]
pub fn all_files_everywhere(t: &TestDir, agents: &[&Agent], hosts: &[char]) {
    for h in hosts {
        for x in hosts {
            wait_content(agents, &t.path(&format!("mgmt{h}/f{x}")), &format!("{}\n", talk(*x)));
        }
    }
}

/// Agents that follow the cluster's deploys (`run ... empty`), one per host name, each
/// running its empty first graph.
pub fn empty_agents(t: &TestDir, e: &Etcd, hosts: &[&str]) -> Vec<Agent> {
    let agents: Vec<Agent> = hosts
        .iter()
        .map(|h| Agent::spawn(t, &["run", "--seeds", &e.url, "--hostname", h, "--tmp-prefix", "empty"]))
        .collect();
    for a in &agents {
        a.wait_log("running graph `empty`");
    }
    agents
}
