//! The talk's three-host demo (examples/yaml/cluster-{a,b,c}.yaml) and a deploy to two
//! agents, end to end over each secure transport: a locked-down etcd (certificates from
//! `mgmt certs`, client certificates required, roles from scripts/etcd-roles, authentication
//! on), and an SSH tunnel (`--ssh-url`) to Debian's sshd.

use std::fs;
use std::path::Path;

use crate::common::etcd::Etcd;
use crate::common::repo::{commit, deployed, mgmt, new_repo, text};
use crate::common::secure::SecureEtcd;
use crate::common::sshd::Sshd;
use crate::common::{self, Agent, TestDir};

const HOSTS: [char; 3] = ['A', 'B', 'C'];

/// Example `cluster-<h>.yaml` with /tmp moved into the test directory.
fn example(t: &TestDir, h: char) -> std::path::PathBuf {
    let l = h.to_ascii_lowercase();
    let path = format!("{}/examples/yaml/cluster-{l}.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains("/tmp/mgmt"), "the example no longer uses /tmp/mgmt");
    t.write_yaml(&format!("cluster-{l}.yaml"), &text.replace("/tmp/mgmt", &t.p("mgmt")))
}

/// `mgmt run <flags> --hostname H yaml <example>`.
fn demo_host(t: &TestDir, flags: &[String], h: char) -> Agent {
    let host = h.to_string();
    let yaml = example(t, h);
    let mut argv: Vec<&str> = vec!["run"];
    argv.extend(flags.iter().map(String::as_str));
    argv.extend(["--hostname", &host, "--tmp-prefix", "yaml", yaml.to_str().unwrap()]);
    Agent::spawn(t, &argv)
}

/// `mgmt run <flags> --hostname H empty`, with a prefix of its own.
fn deploy_host(t: &TestDir, flags: &[String], host: &str) -> Agent {
    let prefix = t.p(&format!("prefix-{host}"));
    let mut argv: Vec<&str> = vec!["run"];
    argv.extend(flags.iter().map(String::as_str));
    argv.extend(["--hostname", host, "--prefix", &prefix, "empty"]);
    Agent::spawn(t, &argv)
}

/// Every demo host has every host's file, with its exporter's content.
fn demo_converges(t: &TestDir, agents: &[Agent]) {
    for h in HOSTS {
        for x in HOSTS {
            let path = t.path(&format!("mgmt{h}/f{x}"));
            agents[0].wait_for(&format!("{} from {x}", path.display()), || {
                common::read(&path).as_deref() == Some(&format!("i am f{x}, exported from host {x}\n"))
            });
        }
    }
}

/// `mgmt deploy <flags> yaml graph.yaml` of a new commit writing `content`, which both
/// deploy hosts then run, as `mgmt status` (through the same transport) shows.
fn deploy_reaches_both(
    t: &TestDir,
    repo: &Path,
    deployer: &[String],
    reader: &[String],
    content: &str,
    agents: &[Agent],
) {
    let out = t.path("out");
    commit(repo, &out, content);
    let mut args: Vec<&str> = vec!["deploy"];
    args.extend(deployer.iter().map(String::as_str));
    args.extend(["yaml", "graph.yaml"]);
    let o = mgmt(repo, &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = deployed(&o);
    let mut status: Vec<&str> = vec!["status", "--json"];
    status.extend(reader.iter().map(String::as_str));
    agents[0].wait_for(&format!("h1 and h2 converged on deploy {id}"), || {
        let s = mgmt(repo, &status);
        let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap_or_default();
        let done = ["h1", "h2"].iter().all(|h| {
            v.as_array()
                .into_iter()
                .flatten()
                .any(|e| e["hostname"] == *h && e["deploy"] == id && e["converged"] == true)
        });
        if !done {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        done
    });
    assert_eq!(common::read(out.join("app.conf")).as_deref(), Some(&*format!("{content}\n")));
}

#[test]
fn the_demo_and_deploys_run_in_a_locked_down_cluster() {
    let t = TestDir::new();
    let e = SecureEtcd::start(&t, &["A", "B", "C", "h1", "h2"]);
    let demo: Vec<Agent> = HOSTS.iter().map(|h| demo_host(&t, &e.flags(&h.to_string()), *h)).collect();
    demo_converges(&t, &demo);
    // Each host wrote only what its role allows: its status and its export.
    assert_eq!(
        e.keys("/_mgmt/exported/"),
        ["/_mgmt/exported/A/file/filea", "/_mgmt/exported/B/file/fileb", "/_mgmt/exported/C/file/filec"]
    );
    let hosts: Vec<Agent> = ["h1", "h2"].iter().map(|h| deploy_host(&t, &e.flags(h), h)).collect();
    let repo = new_repo(&t);
    deploy_reaches_both(&t, &repo, &e.flags("deployer"), &e.flags("h1"), "one", &hosts);
    deploy_reaches_both(&t, &repo, &e.flags("deployer"), &e.flags("h1"), "two", &hosts);
    // A host's certificate cannot publish a deploy.
    let mut args: Vec<&str> = vec!["deploy"];
    let h1 = e.flags("h1");
    args.extend(h1.iter().map(String::as_str));
    args.extend(["yaml", "graph.yaml", "--force"]);
    let refused = mgmt(&repo, &args);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    let said = text(&refused.stderr);
    assert!(said.contains("nothing was published: etcd refused to append deploy 3"), "{said}");
    assert!(said.contains("denied user h1 permission"), "{said}");
}

#[test]
fn the_demo_and_deploys_run_through_an_ssh_tunnel() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let sshd = Sshd::start(&t);
    let mut flags = sshd.flags();
    flags.extend(["--seeds".into(), e.url().to_string()]);
    let demo: Vec<Agent> = HOSTS.iter().map(|h| demo_host(&t, &flags, *h)).collect();
    demo_converges(&t, &demo);
    let hosts: Vec<Agent> = ["h1", "h2"].iter().map(|h| deploy_host(&t, &flags, h)).collect();
    let repo = new_repo(&t);
    deploy_reaches_both(&t, &repo, &flags, &flags, "one", &hosts);
    deploy_reaches_both(&t, &repo, &flags, &flags, "two", &hosts);
    // Everything went through sshd: each agent forwarded its connections to etcd's port.
    let port = e.url().rsplit(':').next().unwrap().to_string();
    assert!(sshd.log().contains(&port), "{}", sshd.log());
}

#[test]
fn a_push_deploys_through_the_hook_to_a_locked_down_cluster() {
    let t = TestDir::new();
    let e = SecureEtcd::start(&t, &["h1"]);
    let bare = t.path("app.git");
    fs::create_dir(&bare).unwrap();
    common::git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/post-receive"), bare.join("hooks/post-receive"))
        .unwrap();
    for (key, value) in [
        ("mgmt.seeds", e.url.clone()),
        ("mgmt.binary", env!("CARGO_BIN_EXE_mgmt").to_string()),
        ("mgmt.etcd-ca", e.file("ca.crt")),
        ("mgmt.etcd-cert", e.file("deployer.crt")),
        ("mgmt.etcd-key", e.file("deployer.key")),
    ] {
        common::git(&bare, &["config", key, &value]);
    }
    let h1 = deploy_host(&t, &e.flags("h1"), "h1");
    let work = t.path("work");
    common::git(t.root(), &["clone", "-q", bare.to_str().unwrap(), "work"]);
    let out = t.path("out");
    commit(&work, &out, "pushed");
    let said = push(&work);
    assert!(said.contains("remote: mgmt: deploy 1"), "{said}");
    h1.wait_content(&out.join("app.conf"), "pushed\n");
    // Without the deployer's certificate, the hook cannot publish.
    common::git(&bare, &["config", "--unset", "mgmt.etcd-cert"]);
    common::git(&bare, &["config", "--unset", "mgmt.etcd-key"]);
    commit(&work, &out, "again");
    let said = push(&work);
    assert!(said.contains("etcd requires a client certificate"), "{said}");
    assert!(said.contains("the deploy failed; the push itself went through"), "{said}");
}

/// `git push origin HEAD:main` from `work`, which must succeed (the hook never refuses a
/// push); what the pusher was told.
#[track_caller]
fn push(work: &Path) -> String {
    let o = std::process::Command::new("git")
        .args(["push", "origin", "HEAD:main"])
        .current_dir(work)
        .output()
        .unwrap();
    let said = text(&o.stderr);
    assert!(o.status.success(), "{said}");
    said
}
