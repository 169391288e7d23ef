mod common;

use std::process::{Command, Output};

use common::TestDir;
use common::certs::Certs;
use common::etcd::Etcd;

fn mgmt(t: &TestDir, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mgmt"));
    c.current_dir(t.root()).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn probe_errors() {
    let t = TestDir::new();
    let certs = Certs::new(&t);
    let e = Etcd::start_tls(&t, &certs, &[]);
    let good = certs.ca.client("agent");
    let expired = certs.ca.expired_client("agent");
    let foreign = certs.other_ca.client("agent");
    let ca = certs.ca.ca();
    let other = certs.other_ca.ca();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("good", vec!["--etcd-ca", ca, "--etcd-cert", good.cert(), "--etcd-key", good.key()]),
        ("wrong ca", vec!["--etcd-ca", other, "--etcd-cert", good.cert(), "--etcd-key", good.key()]),
        ("expired", vec!["--etcd-ca", ca, "--etcd-cert", expired.cert(), "--etcd-key", expired.key()]),
        ("foreign", vec!["--etcd-ca", ca, "--etcd-cert", foreign.cert(), "--etcd-key", foreign.key()]),
        ("none", vec!["--etcd-ca", ca]),
    ];
    for (name, flags) in cases {
        let mut args = vec!["status", "--seeds", e.url()];
        args.extend(flags);
        let o = mgmt(&t, &args, &[]);
        eprintln!("=== {name}: {:?}\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    }
    let plain = e.url().replace("https", "http");
    let o = mgmt(&t, &["status", "--seeds", &plain], &[]);
    eprintln!("=== http to https: {:?}\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    e.etcdctl(&["user", "add", "root", "--new-user-password=pw"]);
    e.etcdctl(&["user", "add", "bob", "--new-user-password=pw"]);
    e.etcdctl(&["auth", "enable"]);
    for (name, pw) in [("right pw", "pw"), ("wrong pw", "nope")] {
        let o = mgmt(&t, &["status", "--seeds", e.url(), "--etcd-ca", ca, "--etcd-cert", good.cert(), "--etcd-key", good.key(), "--etcd-user", "bob"], &[("MGMT_ETCD_PASSWORD", pw)]);
        eprintln!("=== {name}: {:?}\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    }
    let o = mgmt(&t, &["status", "--seeds", e.url(), "--etcd-ca", ca, "--etcd-cert", good.cert(), "--etcd-key", good.key(), "--etcd-user", "nobody"], &[("MGMT_ETCD_PASSWORD", "x")]);
    eprintln!("=== no user: {:?}\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    let o = mgmt(&t, &["status", "--seeds", e.url(), "--etcd-ca", ca, "--etcd-cert", good.cert(), "--etcd-key", good.key()], &[]);
    eprintln!("=== cn agent no user: {:?}\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    eprintln!("{}", e.log().lines().filter(|l| l.contains("rejected|tls|TLS|certificate|auth")).collect::<Vec<_>>().join("\n"));
    panic!("show");
}

#[test]
fn make_certs_for_manual() {
    let t = TestDir::new();
    let certs = Certs::new(&t);
    certs.ca.client("agent");
    certs.ca.client("root");
    certs.ca.expired_client("agent");
    certs.other_ca.client("agent");
    let _ = std::fs::remove_dir_all("/tmp/tlsprobe");
    Command::new("cp").args(["-r", t.path("certs").to_str().unwrap(), "/tmp/tlsprobe"]).status().unwrap();
}
