//! etcd secured with TLS (client certificates required) and with users: agents, deploys and
//! `mgmt status` work through it, and each refusal says what was refused.

use std::fs;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::certs::{Certs, Pair};
use crate::common::cluster::wait;
use crate::common::etcd::Etcd;
use crate::common::repo::{shown, text};
use crate::common::{self, Agent, TestDir};

/// `mgmt ARGS` in the test directory with `env` added, run to its end.
fn mgmt(t: &TestDir, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mgmt"));
    c.current_dir(t.root()).args(args).env_remove("MGMT_LOG").env_remove("MGMT_ETCD_PASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running mgmt")
}

/// `--etcd-ca CA` and, if given, `--etcd-cert` and `--etcd-key` of `client`.
fn tls_flags<'a>(ca: &'a str, client: Option<&'a Pair>) -> Vec<&'a str> {
    let mut f = vec!["--etcd-ca", ca];
    if let Some(c) = client {
        f.extend(["--etcd-cert", c.cert(), "--etcd-key", c.key()]);
    }
    f
}

/// A graph for host `h`: an exported file, the collection of every host's, and a kv value.
fn host_graph(t: &TestDir, h: &str, kv: &str) -> String {
    format!(
        "graph: g{h}\nresources:\n  file:\n  - name: \"@@file{h}\"\n    path: {dir}/f{h}\n    content: \"from {h}\\n\"\n  - name: local{h}\n    path: {local}\n    content: \"local\\n\"\n  kv:\n  - name: value{h}\n    value: \"{kv}\"\ncollect:\n- kind: file\n  pattern: {dir}/\n",
        dir = t.p(&format!("collected{h}")),
        local = t.p(&format!("local{h}")),
    )
}

/// Start an agent for host `h` with `flags` (TLS, user).
fn agent(t: &TestDir, e: &Etcd, h: &str, flags: &[&str]) -> Agent {
    let yaml = t.write_yaml(&format!("{h}.yaml"), &host_graph(t, h, &format!("v-{h}")));
    let mut args = vec!["--seeds", e.url(), "--hostname", h];
    args.extend_from_slice(flags);
    t.agent(&args, &yaml)
}

fn kv_is(e: &Etcd, key: &str, value: &str) -> bool {
    e.get_json(&format!("/_mgmt/kv/{key}")).is_some_and(|v| v["value"] == value)
}

/// A repository whose graph writes `out/app.conf`, for `mgmt deploy --no-git`.
fn deploy_dir(t: &TestDir) -> std::path::PathBuf {
    let dir = t.path("repo");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("graph.yaml"), common::repo::graph(&t.path("out"), "deployed")).unwrap();
    dir
}

/// One line on stderr, the error of a command, with the URL; nothing of the client's
/// internals.
#[track_caller]
fn assert_one_error_line(o: &Output, url: &str, needles: &[&str]) {
    let stderr = text(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{}", shown(o));
    assert!(stderr.starts_with("mgmt: error: "), "{}", shown(o));
    assert!(stderr.contains(url), "{}", shown(o));
    for n in needles {
        assert!(stderr.contains(n), "{n:?} missing:\n{}", shown(o));
    }
    for dump in ["tonic", "Custom {", "Status {", "source:", "MetadataMap", "hyper"] {
        assert!(!stderr.contains(dump), "{dump:?} in:\n{stderr}");
    }
}

#[test]
fn agents_deploys_and_status_work_over_mutual_tls() {
    let t = TestDir::new();
    let certs = Certs::new(&t);
    let e = Etcd::start_tls(&t, &certs, &[]);
    assert!(e.url().starts_with("https://127.0.0.1:"));
    let (a_cert, b_cert) = (certs.ca.client("a"), certs.ca.client("b"));
    let a = agent(&t, &e, "a", &tls_flags(certs.ca.ca(), Some(&a_cert)));
    let b = agent(&t, &e, "b", &tls_flags(certs.ca.ca(), Some(&b_cert)));
    wait("each host collects both exports, and both kv values are in etcd", &[&a, &b], || {
        ["a", "b"].iter().all(|h| {
            ["a", "b"].iter().all(|from| {
                common::read(t.path(&format!("collected{h}/f{from}"))).as_deref()
                    == Some(&format!("from {from}\n"))
            })
        }) && kv_is(&e, "valuea", "v-a")
            && kv_is(&e, "valueb", "v-b")
    });
    assert_eq!(e.keys("/_mgmt/hosts/"), ["/_mgmt/hosts/a", "/_mgmt/hosts/b"]);

    // An agent that follows deploys, with the flags before the subcommand.
    let c_cert = certs.ca.client("c");
    let mut follower = vec!["--seeds", e.url()];
    follower.extend(tls_flags(certs.ca.ca(), Some(&c_cert)));
    follower.extend(["run", "--hostname", "c", "--tmp-prefix", "empty"]);
    let c = Agent::spawn(&t, &follower);
    wait("c registered", &[&c], || e.get_json("/_mgmt/hosts/c").is_some());

    // A deploy, and status, with the TLS settings from the environment.
    let ops = certs.ca.client("ops");
    let env = [("MGMT_ETCD_CA", certs.ca.ca()), ("MGMT_ETCD_CERT", ops.cert()), ("MGMT_ETCD_KEY", ops.key())];
    let dir = deploy_dir(&t);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mgmt"));
    cmd.current_dir(&dir).args(["deploy", "--seeds", e.url(), "--no-git", "yaml", "graph.yaml"]).envs(env);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", shown(&o));
    assert!(e.get_json("/_mgmt/deploy/latest").is_some(), "no deploy/latest after the deploy");
    c.wait_content(&t.path("out/app.conf"), "deployed\n");
    let o = mgmt(&t, &["deploy", "--seeds", e.url(), "list"], &env);
    assert!(o.status.success(), "{}", shown(&o));
    let o = mgmt(&t, &["status", "--seeds", e.url(), "--json"], &env);
    let hosts: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", shown(&o)));
    assert_eq!(hosts.as_array().map(Vec::len), Some(3), "{}", shown(&o));
}

#[test]
fn each_tls_refusal_says_which_it_is() {
    let t = TestDir::new();
    let certs = Certs::new(&t);
    let e = Etcd::start_tls(&t, &certs, &[]);
    let ca = certs.ca.ca();
    let good = certs.ca.client("good");
    let expired = certs.ca.expired_client("old");
    let foreign = certs.other_ca.client("stranger");
    let cases: Vec<(&str, Vec<&str>, String)> = vec![
        (
            "wrong CA",
            tls_flags(certs.other_ca.ca(), Some(&good)),
            format!("etcd's certificate is not signed by the CA in --etcd-ca {}", certs.other_ca.ca()),
        ),
        (
            "expired client certificate",
            tls_flags(ca, Some(&expired)),
            format!("etcd refused the client certificate {}: it has expired", expired.cert()),
        ),
        (
            "client certificate of another CA",
            tls_flags(ca, Some(&foreign)),
            format!(
                "etcd refused the client certificate {}: it is not signed by a CA in etcd's --trusted-ca-file",
                foreign.cert()
            ),
        ),
        ("no client certificate", tls_flags(ca, None), "etcd requires a client certificate".to_string()),
    ];
    let prefix = format!("TLS to etcd at {} failed: ", e.url());
    for (case, flags, why) in &cases {
        let mut status = vec!["status", "--seeds", e.url()];
        status.extend(flags);
        let o = mgmt(&t, &status, &[]);
        assert_eq!(o.status.code(), Some(3), "{case}: {}", shown(&o));
        assert_one_error_line(&o, e.url(), &[&prefix, why]);
        let mut list = vec!["deploy", "--seeds", e.url()];
        list.extend(flags);
        list.push("list");
        let o = mgmt(&t, &list, &[]);
        assert_eq!(o.status.code(), Some(1), "{case}: {}", shown(&o));
        assert_one_error_line(&o, e.url(), &[&prefix, why]);
    }
    // An agent says it in its log, and keeps enforcing its graph meanwhile.
    let (_, flags, why) = &cases[1];
    let a = agent(&t, &e, "a", flags);
    a.wait_content(&t.path("locala"), "local\n");
    a.wait_log(why);
    let line = a.stderr().lines().find(|l| l.contains(why.as_str())).unwrap().to_string();
    assert!(line.contains(&prefix) && line.contains("still enforcing"), "{line}");
    assert!(a.try_exit().is_none(), "{}", a.stderr());
    assert!(e.keys("/_mgmt/").is_empty(), "a refused agent wrote to etcd");
}

#[test]
fn an_http_seed_for_a_tls_etcd_and_https_for_a_plain_one_are_named() {
    let t = TestDir::new();
    let certs = Certs::new(&t);
    let tls = Etcd::start_tls(&t, &certs, &[]);
    let plain = Etcd::start(&t);
    let as_http = tls.url().replace("https://", "http://");
    let o = mgmt(&t, &["status", "--seeds", &as_http], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    assert_one_error_line(&o, &as_http, &["if etcd serves TLS there, use an https:// seed"]);
    let as_https = plain.url().replace("http://", "https://");
    let o = mgmt(&t, &["status", "--seeds", &as_https, "--etcd-ca", certs.ca.ca()], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    assert_one_error_line(&o, &as_https, &["etcd does not answer TLS there", "is it an http:// endpoint?"]);
}

/// A TLS etcd with authentication on: user `root`, and user `agent` whose role may read and
/// write the whole namespace. Tokens are simple ones that expire after `ttl` seconds.
fn etcd_with_users(t: &TestDir, certs: &Certs, ttl: u32) -> Etcd {
    let ttl = format!("--auth-token-ttl={ttl}");
    let e = Etcd::start_tls(t, certs, &["--auth-token=simple", &ttl]);
    e.etcdctl(&["user", "add", "root", "--new-user-password=rootpw"]);
    e.etcdctl(&["user", "grant-role", "root", "root"]);
    e.etcdctl(&["user", "add", "agent", "--new-user-password=agentpw"]);
    e.etcdctl(&["role", "add", "mgmt"]);
    e.etcdctl(&["role", "grant-permission", "mgmt", "--prefix=true", "readwrite", "/_mgmt/"]);
    e.etcdctl(&["user", "grant-role", "agent", "mgmt"]);
    e.etcdctl(&["user", "add", "reader", "--new-user-password=readerpw"]);
    e.etcdctl(&["role", "add", "hosts-reader"]);
    e.etcdctl(&["role", "grant-permission", "hosts-reader", "--prefix=true", "read", "/_mgmt/hosts/"]);
    e.etcdctl(&["user", "grant-role", "reader", "hosts-reader"]);
    // May read everything but write only its status and kv values, not exports.
    e.etcdctl(&["user", "add", "limited", "--new-user-password=limitedpw"]);
    e.etcdctl(&["role", "add", "no-exports"]);
    e.etcdctl(&["role", "grant-permission", "no-exports", "--prefix=true", "read", "/_mgmt/"]);
    e.etcdctl(&["role", "grant-permission", "no-exports", "--prefix=true", "readwrite", "/_mgmt/hosts/"]);
    e.etcdctl(&["role", "grant-permission", "no-exports", "--prefix=true", "readwrite", "/_mgmt/kv/"]);
    e.etcdctl(&["user", "grant-role", "limited", "no-exports"]);
    e.etcdctl(&["auth", "enable"]);
    e
}

#[test]
fn an_agent_with_a_user_keeps_working_past_its_tokens_lifetime() {
    let t = TestDir::new();
    let certs = Certs::new(&t);
    let e = etcd_with_users(&t, &certs, 2);
    // The client certificate's common name is no etcd user: the password is what counts.
    let client = certs.ca.client("some-host");
    fs::write(t.path("password"), "agentpw\n").unwrap();
    let pw = t.p("password");
    let mut flags = tls_flags(certs.ca.ca(), Some(&client));
    flags.extend(["--etcd-user", "agent", "--etcd-password-file", pw.as_str()]);
    let a = agent(&t, &e, "a", &flags);
    wait("the kv value and the export in etcd", &[&a], || {
        kv_is(&e, "valuea", "v-a") && e.get_json("/_mgmt/exported/a/file/filea").is_some()
    });
    // Several token lifetimes later, a change still reaches etcd.
    std::thread::sleep(Duration::from_secs(7));
    t.replace_yaml("a.yaml", &host_graph(&t, "a", "later"));
    wait("the new kv value in etcd", &[&a], || kv_is(&e, "valuea", "later"));
    let log = a.stderr();
    assert!(!log.contains("WARN"), "{log}");
    // Status with the password from the environment.
    let mut status = vec!["status", "--seeds", e.url(), "--json", "--etcd-user", "agent"];
    status.extend(tls_flags(certs.ca.ca(), Some(&client)));
    let o = mgmt(&t, &status, &[("MGMT_ETCD_PASSWORD", "agentpw")]);
    assert!(o.status.success(), "{}", shown(&o));
}

#[test]
fn a_wrong_password_and_a_missing_permission_are_refusals() {
    let t = TestDir::new();
    let certs = Certs::new(&t);
    let e = etcd_with_users(&t, &certs, 300);
    let client = certs.ca.client("some-host");
    let base = |user: &'static str| {
        let mut a = vec!["status", "--seeds", e.url(), "--etcd-user", user];
        a.extend(tls_flags(certs.ca.ca(), Some(&client)));
        a
    };
    let refused = format!("etcd at {} refused the credentials of user agent: ", e.url());
    let o = mgmt(&t, &base("agent"), &[("MGMT_ETCD_PASSWORD", "wrong")]);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    assert_one_error_line(&o, e.url(), &[&refused, "authentication failed"]);
    assert!(!text(&o.stderr).contains("cannot reach"), "{}", shown(&o));
    // A user whose role reads hosts/ only cannot read deploy/latest.
    let o = mgmt(&t, &base("reader"), &[("MGMT_ETCD_PASSWORD", "readerpw")]);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    assert_one_error_line(
        &o,
        e.url(),
        &[
            "denied user reader permission to read under /_mgmt/hosts/ and /_mgmt/deploy/latest: ",
            "no role of reader",
        ],
    );
    // A deploy by a user that may not write deploy/ is refused as such.
    let dir = deploy_dir(&t);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mgmt"));
    cmd.current_dir(&dir).args(["deploy", "--seeds", e.url(), "--etcd-user", "reader", "--no-git"]);
    cmd.args(tls_flags(certs.ca.ca(), Some(&client))).args(["yaml", "graph.yaml"]);
    let o = cmd.env("MGMT_ETCD_PASSWORD", "readerpw").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    assert_one_error_line(&o, e.url(), &["denied user reader permission", "permission denied"]);
    assert!(e.get_json("/_mgmt/deploy/latest").is_none());
    // No user at all, with a client certificate whose name is no etcd user.
    let mut none = vec!["status", "--seeds", e.url()];
    none.extend(tls_flags(certs.ca.ca(), Some(&client)));
    let o = mgmt(&t, &none, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    assert!(!text(&o.stderr).contains("cannot reach"), "{}", shown(&o));

    // An agent with a wrong password says so, and keeps enforcing.
    fs::write(t.path("password"), "wrong\n").unwrap();
    let pw = t.p("password");
    let mut flags = tls_flags(certs.ca.ca(), Some(&client));
    flags.extend(["--etcd-user", "agent", "--etcd-password-file", pw.as_str()]);
    let a = agent(&t, &e, "a", &flags);
    a.wait_content(&t.path("locala"), "local\n");
    a.wait_log(&refused);
    assert!(a.try_exit().is_none(), "{}", a.stderr());
    assert!(!a.stderr().contains("cannot reach"), "{}", a.stderr());
    // The right password in the file: the next attempt gets in.
    fs::write(t.path("password"), "agentpw\n").unwrap();
    drop(a);
    let a = agent(&t, &e, "a", &flags);
    wait("the agent's kv value", &[&a], || kv_is(&e, "valuea", "v-a"));
}

#[test]
fn a_missing_permission_names_the_keys_and_the_agent_keeps_the_rest_going() {
    let t = TestDir::new();
    let certs = Certs::new(&t);
    let e = etcd_with_users(&t, &certs, 300);
    let client = certs.ca.client("some-host");
    fs::write(t.path("password"), "limitedpw").unwrap();
    let pw = t.p("password");
    let mut flags = tls_flags(certs.ca.ca(), Some(&client));
    flags.extend(["--etcd-user", "limited", "--etcd-password-file", pw.as_str()]);
    let a = agent(&t, &e, "a", &flags);
    let denied = format!(
        "publishing exports: etcd at {} denied user limited permission to write under /_mgmt/exported/a/: ",
        e.url()
    );
    a.wait_log(&denied);
    // What it may write still gets there, and its graph is enforced.
    wait("the kv value and the registration", &[&a], || {
        kv_is(&e, "valuea", "v-a") && e.get_json("/_mgmt/hosts/a").is_some()
    });
    a.wait_content(&t.path("locala"), "local\n");
    assert!(e.keys("/_mgmt/exported/").is_empty());
    assert!(a.try_exit().is_none(), "{}", a.stderr());
}
