//! `mgmt certs DIR` through the binary: what it writes, with which modes, what a later run
//! reuses and what it refuses. The certificates are read back with x509-parser; that etcd
//! accepts them is tests/integration/etcd_roles.rs.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::common::{self, TestDir, mode};
use x509_parser::prelude::*;

fn certs(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .arg("certs")
        .args(args)
        .env_remove("MGMT_LOG")
        .output()
        .unwrap()
}

#[track_caller]
fn ok(out: &Output) -> String {
    common::succeeded("mgmt certs", out)
}

fn pem(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Common name and DNS/IP names of a certificate, after checking it is signed by `ca.crt`.
fn read_cert(dir: &Path, name: &str) -> (String, Vec<String>) {
    let ca_pem = pem(dir, "ca.crt");
    let (_, ca) = parse_x509_pem(&ca_pem).unwrap();
    let ca = ca.parse_x509().unwrap();
    let leaf_pem = pem(dir, name);
    let (_, leaf) = parse_x509_pem(&leaf_pem).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    leaf.verify_signature(Some(ca.public_key()))
        .unwrap_or_else(|e| panic!("{name} is not signed by ca.crt: {e}"));
    let cn = leaf.subject().iter_common_name().next().unwrap().as_str().unwrap().to_string();
    let names = leaf
        .subject_alternative_name()
        .unwrap()
        .map(|s| s.value.general_names.iter().map(san).collect())
        .unwrap_or_default();
    (cn, names)
}

/// A DNS name as `DNS:name`, an IP address as `IP:address`.
fn san(g: &GeneralName) -> String {
    match g {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::IPAddress(b) if b.len() == 4 => {
            format!("IP:{}", std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()))
        }
        GeneralName::IPAddress(b) => {
            format!("IP:{}", std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()))
        }
        other => other.to_string(),
    }
}

#[test]
fn a_first_run_writes_a_ca_a_server_and_clients_with_keys_for_the_owner_only() {
    let t = TestDir::new();
    let dir = t.path("pki");
    let stdout = ok(&certs(&[dir.to_str().unwrap(), "--client", "h1", "--server-name", "etcd.example.com"]));

    assert_eq!(mode(&dir), 0o700);
    for stem in ["ca", "server", "root", "deployer", "h1"] {
        assert_eq!(mode(dir.join(format!("{stem}.key"))), 0o600, "{stem}.key");
        assert_eq!(mode(dir.join(format!("{stem}.crt"))), 0o644, "{stem}.crt");
    }
    assert_eq!(mode(dir.join("etcd-roles")), 0o755);
    assert_eq!(
        fs::read_to_string(dir.join("etcd-roles")).unwrap(),
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/etcd-roles")).unwrap()
    );
    // Written through temporary files renamed into place: none is left.
    let names: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 11, "{names:?}");

    // Each client's common name is its etcd user; the server is named as asked.
    for user in ["root", "deployer", "h1"] {
        assert_eq!(read_cert(&dir, &format!("{user}.crt")).0, user);
    }
    let (cn, names) = read_cert(&dir, "server.crt");
    assert_eq!(cn, "mgmt etcd server");
    for n in ["DNS:localhost", "IP:127.0.0.1", "IP:::1", "DNS:etcd.example.com"] {
        assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
    }

    let d = dir.to_str().unwrap();
    assert!(stdout.contains("  created  h1.crt, h1.key "), "{stdout}");
    for line in [
        format!("  mgmt etcd --tls-dir {d}"),
        format!("  {d}/etcd-roles --tls-dir {d} --host h1"),
        format!(
            "  mgmt run --hostname h1 --seeds https://etcd.example.com:2379 --etcd-ca {d}/ca.crt --etcd-cert {d}/h1.crt --etcd-key {d}/h1.key empty"
        ),
    ] {
        assert!(stdout.lines().any(|l| l == line), "no line {line:?} in\n{stdout}");
    }
}

#[test]
fn a_later_run_reuses_the_ca_adds_clients_and_never_replaces_a_key() {
    let t = TestDir::new();
    let dir = t.path("pki");
    let d = dir.to_str().unwrap();
    ok(&certs(&[d, "--client", "h1"]));
    let before: Vec<Vec<u8>> =
        ["ca.key", "ca.crt", "h1.key", "h1.crt", "server.key"].iter().map(|f| pem(&dir, f)).collect();

    let stdout = ok(&certs(&[d, "--client", "h1", "--client", "h2"]));
    let after: Vec<Vec<u8>> =
        ["ca.key", "ca.crt", "h1.key", "h1.crt", "server.key"].iter().map(|f| pem(&dir, f)).collect();
    assert_eq!(before, after, "nothing replaced");
    assert!(stdout.contains("  kept     ca.crt, ca.key "), "{stdout}");
    assert!(stdout.contains("  kept     h1.crt, h1.key "), "{stdout}");
    assert!(stdout.contains("  created  h2.crt, h2.key "), "{stdout}");
    // Signed by the same CA.
    assert_eq!(read_cert(&dir, "h2.crt").0, "h2");
    assert_eq!(mode(dir.join("h2.key")), 0o600);
}

#[test]
fn force_issues_the_certificates_again_but_never_the_ca() {
    let t = TestDir::new();
    let dir = t.path("pki");
    let d = dir.to_str().unwrap();
    ok(&certs(&[d, "--client", "h1"]));
    let (ca_key, h1_key) = (pem(&dir, "ca.key"), pem(&dir, "h1.key"));

    // A kept server certificate must have every name asked for.
    let out = certs(&[d, "--server-name", "10.0.0.5"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.crt does not name 10.0.0.5; give --force"), "{stderr}");

    let stdout = ok(&certs(&[d, "--client", "h1", "--server-name", "10.0.0.5", "--force"]));
    assert!(stdout.contains("  replaced h1.crt, h1.key "), "{stdout}");
    assert!(stdout.contains("  kept     ca.crt, ca.key "), "{stdout}");
    assert_eq!(pem(&dir, "ca.key"), ca_key);
    assert_ne!(pem(&dir, "h1.key"), h1_key);
    assert_eq!(mode(dir.join("h1.key")), 0o600);
    assert!(read_cert(&dir, "server.crt").1.contains(&"IP:10.0.0.5".to_string()));
}

#[test]
fn half_a_pair_or_a_ca_without_its_key_is_refused() {
    let t = TestDir::new();
    let dir = t.path("pki");
    let d = dir.to_str().unwrap();
    ok(&certs(&[d, "--client", "h1"]));

    fs::remove_file(dir.join("h1.key")).unwrap();
    let out = certs(&[d, "--client", "h1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("h1.crt exists without h1.key: restore it, or give --force to issue both again"),
        "{out:?}"
    );
    assert!(!dir.join("h1.key").exists());

    fs::remove_file(dir.join("ca.key")).unwrap();
    let out = certs(&[d, "--client", "h2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ca.crt exists without ca.key"), "{out:?}");
    assert!(!dir.join("h2.crt").exists() && !dir.join("ca.key").exists());
}

#[test]
fn names_that_cannot_be_users_or_certificate_names_are_usage_errors() {
    let t = TestDir::new();
    let dir = t.path("pki");
    for args in [
        &["--client", "a/b"][..],
        &["--client", "-h"],
        &["--client", "ca"],
        &["--server-name", "not a name"],
        &["--days", "0"],
    ] {
        let mut all = vec![dir.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = certs(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    assert!(!dir.exists(), "nothing written");
}

#[test]
fn mgmt_etcd_tls_dir_without_certificates_says_how_to_make_them() {
    let t = TestDir::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(["etcd", "--prefix", t.p("state").as_str(), "--tls-dir", t.p("none").as_str()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("--tls-dir: cannot read {}/ca.crt", t.p("none"))), "{stderr}");
    assert!(stderr.contains(&format!("mgmt certs {}", t.p("none"))), "{stderr}");

    // Given after etcd's flags it would go to etcd, which knows no such flag: caught first.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(["etcd", "--name", "x", "--tls-dir", "/p"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give it before etcd's flags"), "{out:?}");
}
