//! `--ssh-url`: agents, deploys and `mgmt status` reaching a real etcd through a real OpenSSH
//! server (`common::sshd`, on a loopback port with its own host key and
//! `authorized_keys`). The server's log shows each etcd connection as a forwarding request to
//! etcd's port; killing it cuts agents off. Host keys and client keys that do not fit are
//! refused with what to do, and an agent survives the server's restart.
//!
//! One-shot commands run with `HOME` in the test directory, so `~/.ssh` is the test's own.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::common::cluster;
use crate::common::etcd::Etcd;
use crate::common::repo::{commit, deployed, new_repo, shown, text};
use crate::common::sshd::{Sshd, fingerprint, keygen, keygen_typed, public_key};
use crate::common::{self, Agent, TestDir, read};

/// How long any cluster condition may take (an etcd, an sshd and agents per test, tests in
/// parallel on a small machine, and an agent's backoff after an outage).
const LONG: Duration = Duration::from_secs(40);

/// Wait until `cond` holds; on timeout panic with `what` and every agent's log.
#[track_caller]
fn wait(what: &str, agents: &[&Agent], cond: impl FnMut() -> bool) {
    cluster::wait_within(LONG, what, agents, cond)
}

/// A home directory for one-shot commands, with an empty `~/.ssh`.
fn home(t: &TestDir) -> PathBuf {
    let home = t.path("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    home
}

/// `mgmt ARGS` run to its end in `dir`, with `HOME` set to `home`.
fn mgmt(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env_remove("MGMT_LOG")
        .output()
        .unwrap()
}

/// `mgmt status --seeds <etcd> --json` through `ssh` (flags after it), with `HOME` `home`.
fn status(t: &TestDir, e: &Etcd, home: &Path, ssh: &[&str]) -> Output {
    let mut args = vec!["status", "--seeds", e.url(), "--json"];
    args.extend_from_slice(ssh);
    mgmt(t.root(), home, &args)
}

/// The one line a refused `mgmt status` printed (exit 3, etcd could not be read).
#[track_caller]
fn refusal(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(3), "{}", shown(o));
    let stderr = text(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for dump in ["tonic", "Os {", "Status {", "source:", "russh", "Error {"] {
        assert!(!stderr.contains(dump), "{dump:?} in:\n{stderr}");
    }
    stderr.trim_end().to_string()
}

/// An agent on deploys (`run ... empty`) reaching etcd through `s`.
fn agent(t: &TestDir, e: &Etcd, s: &Sshd, host: &str) -> Agent {
    let ssh = s.flags();
    let mut args = vec!["run", "--seeds", e.url(), "--hostname", host, "--tmp-prefix"];
    args.extend(ssh.iter().map(String::as_str));
    args.push("empty");
    Agent::spawn(t, &args)
}

fn etcd_port(e: &Etcd) -> &str {
    e.url().rsplit_once(':').unwrap().1
}

#[test]
fn agents_deploys_and_status_go_through_the_tunnel() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let s = Sshd::start(&t);
    let home = home(&t);
    let ssh = s.flags();
    let ssh: Vec<&str> = ssh.iter().map(String::as_str).collect();
    let (a, b) = (agent(&t, &e, &s, "a"), agent(&t, &e, &s, "b"));
    let all = [&a, &b];
    for x in all {
        x.wait_log("running graph `empty`");
    }
    wait("both agents registered", &all, || e.keys("/_mgmt/hosts/") == ["/_mgmt/hosts/a", "/_mgmt/hosts/b"]);

    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "one");
    let mut args = vec!["deploy", "--seeds", e.url()];
    args.extend_from_slice(&ssh);
    args.extend(["yaml", "graph.yaml"]);
    let d = mgmt(&repo, &home, &args);
    assert_eq!(deployed(&d), 1, "{}", shown(&d));
    for x in all {
        wait("deploy 1 running", &all, || x.count("running deploy 1 (commit ") == 1);
    }
    wait("deploy 1 applied", &all, || read(out.join("app.conf")).as_deref() == Some("one\n"));

    // The connection flags are also taken before the subcommand.
    let mut args = vec!["--ssh-url", ssh[1], "--ssh-id", ssh[3], "--ssh-hostkey", ssh[5]];
    args.extend(["status", "--seeds", e.url(), "--json"]);
    wait("mgmt status through the tunnel: both hosts on deploy 1, converged", &all, || {
        let o = mgmt(t.root(), &home, &args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        o.status.code() == Some(0)
            && v.as_array()
                .is_some_and(|h| h.len() == 2 && h.iter().all(|h| h["deploy"] == 1 && h["converged"] == true))
    });

    // Every etcd connection was a forwarding request to etcd's port, made by the server.
    let log = s.log();
    let forwarded = format!(
        "server_request_direct_tcpip: originator 127.0.0.1 port 0, target 127.0.0.1 port {}",
        etcd_port(&e)
    );
    assert!(log.matches(&forwarded).count() >= 4, "{forwarded:?} not in the sshd log:\n{log}");
}

#[test]
fn an_unknown_changed_or_wrong_host_key_is_refused_with_what_to_do() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let s = Sshd::start(&t);
    let home = home(&t);
    let (url, id) = (s.url(), s.client_key.display().to_string());
    let real = fingerprint(&s.host_key);
    let name = format!("[127.0.0.1]:{}", s.port);
    let known_hosts = home.join(".ssh/known_hosts");

    // Not in known_hosts: no trust on first use.
    let line = refusal(&status(&t, &e, &home, &["--ssh-url", &url, "--ssh-id", &id]));
    assert_eq!(
        line,
        format!(
            "mgmt: error: the SSH server {url} is unknown: its host key {real} is not in ~/.ssh/known_hosts or /etc/ssh/ssh_known_hosts; check that it is the server's key (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there) and pass it with --ssh-hostkey, or trust it on first use with --ssh-accept-new"
        )
    );
    assert!(!known_hosts.exists());

    // Another key given: refused, with both fingerprints.
    let other = t.path("other_host_key");
    keygen(&other);
    let line = refusal(&status(
        &t,
        &e,
        &home,
        &["--ssh-url", &url, "--ssh-id", &id, "--ssh-hostkey", &public_key(&other)],
    ));
    assert!(line.starts_with(&format!("mgmt: error: the host key of the SSH server {url} is {real}, not the one --ssh-hostkey gives ({})", fingerprint(&other))), "{line}");

    // The right key, as a key or as its fingerprint.
    for given in [s.hostkey(), real.clone()] {
        let o = status(&t, &e, &home, &["--ssh-url", &url, "--ssh-id", &id, "--ssh-hostkey", &given]);
        assert_eq!(o.status.code(), Some(0), "{given}: {}", shown(&o));
    }

    // Trusted on first use when asked, and remembered.
    let o = status(&t, &e, &home, &["--ssh-url", &url, "--ssh-id", &id, "--ssh-accept-new"]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    assert_eq!(read(&known_hosts).unwrap(), format!("{name} {}\n", s.hostkey()));
    let o = status(&t, &e, &home, &["--ssh-url", &url, "--ssh-id", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));

    // A hashed entry (`ssh-keygen -H`) is found too.
    let hashed = Command::new("ssh-keygen").arg("-H").arg("-f").arg(&known_hosts).output().unwrap();
    assert!(hashed.status.success());
    assert!(read(&known_hosts).unwrap().starts_with("|1|"));
    let o = status(&t, &e, &home, &["--ssh-url", &url, "--ssh-id", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));

    // A changed key is refused, --ssh-accept-new or not.
    fs::write(&known_hosts, format!("# an old key\n{name} {}\n", public_key(&other))).unwrap();
    for extra in [None, Some("--ssh-accept-new")] {
        let mut args = vec!["--ssh-url", url.as_str(), "--ssh-id", id.as_str()];
        args.extend(extra);
        let line = refusal(&status(&t, &e, &home, &args));
        assert_eq!(
            line,
            format!(
                "mgmt: error: the host key of the SSH server {url} has changed: it is {real}, but ~/.ssh/known_hosts:2 has another (the connection may be intercepted); if the server's key was replaced on purpose, remove the old entry with `ssh-keygen -R '{name}'` and connect again"
            )
        );
    }
    assert_eq!(read(&known_hosts).unwrap().lines().count(), 2);

    // A malformed --ssh-hostkey is a command-line error.
    let o = status(&t, &e, &home, &["--ssh-url", &url, "--ssh-hostkey", "SHA256:nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(text(&o.stderr).contains("invalid fingerprint `SHA256:nope`"), "{}", shown(&o));
}

#[test]
fn a_client_key_the_server_does_not_know_is_refused_with_what_to_do() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let s = Sshd::start(&t);
    let home = home(&t);
    let (url, hostkey) = (s.url(), s.hostkey());

    // No --ssh-id and none of OpenSSH's default keys.
    let line = refusal(&status(&t, &e, &home, &["--ssh-url", &url, "--ssh-hostkey", &hostkey]));
    assert_eq!(
        line,
        "mgmt: error: no SSH key to log in with: none of ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa exists; pass one with --ssh-id"
    );

    // A key not in authorized_keys: by --ssh-id, and as a default key.
    let stranger = t.path("stranger");
    keygen(&stranger);
    let line = refusal(&status(
        &t,
        &e,
        &home,
        &["--ssh-url", &url, "--ssh-hostkey", &hostkey, "--ssh-id", &stranger.display().to_string()],
    ));
    assert_eq!(
        line,
        format!(
            "mgmt: error: the SSH server {url} refused the key {} for user root: add its public key to ~root/.ssh/authorized_keys there, or pass another key with --ssh-id",
            stranger.display()
        )
    );
    fs::copy(&stranger, home.join(".ssh/id_ecdsa")).unwrap();
    let line = refusal(&status(&t, &e, &home, &["--ssh-url", &url, "--ssh-hostkey", &hostkey]));
    assert!(line.contains("refused the key ~/.ssh/id_ecdsa for user root"), "{line}");

    // A key with a passphrase cannot be used (nothing can ask for it).
    let locked = t.path("locked");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&locked)
        .output()
        .unwrap();
    assert!(made.status.success());
    let line = refusal(&status(
        &t,
        &e,
        &home,
        &["--ssh-url", &url, "--ssh-hostkey", &hostkey, "--ssh-id", &locked.display().to_string()],
    ));
    assert_eq!(
        line,
        format!(
            "mgmt: error: cannot use the SSH key {}: it has a passphrase, which mgmt cannot ask for (use a key without one, or remove it with `ssh-keygen -p`); pass a usable private key with --ssh-id",
            locked.display()
        )
    );

    // The authorized key among the defaults: it is offered first, and taken.
    fs::copy(&s.client_key, home.join(".ssh/id_ed25519")).unwrap();
    let o = status(&t, &e, &home, &["--ssh-url", &url, "--ssh-hostkey", &hostkey]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));

    // An agent with a refused key says so in its log, and keeps trying.
    let mut args = vec![
        "run",
        "--seeds",
        e.url(),
        "--hostname",
        "x",
        "--tmp-prefix",
        "--ssh-url",
        &url,
        "--ssh-hostkey",
        &hostkey,
    ];
    let stranger = stranger.display().to_string();
    args.extend(["--ssh-id", &stranger, "empty"]);
    let a = Agent::spawn(&t, &args);
    a.wait_log(&format!("the SSH server {url} refused the key {stranger} for user root"));
    assert!(a.try_exit().is_none(), "{}", a.stderr());
}

/// A deploy's graph: `out/app.conf` holds `content`, and the resource `@@shared` (a file
/// `out/shared` with `content`) is exported.
fn exporting_graph(out: &Path, content: &str) -> String {
    format!(
        "graph: app\nresources:\n  file:\n  - name: conf\n    path: {o}/app.conf\n    content: \"{content}\\n\"\n  - name: \"@@shared\"\n    path: {o}/shared\n    content: \"{content}\\n\"\n",
        o = out.display()
    )
}

fn deploy_direct(e: &Etcd, repo: &Path, home: &Path, out: &Path, content: &str) -> u64 {
    fs::write(repo.join("graph.yaml"), exporting_graph(out, content)).unwrap();
    common::git(repo, &["add", "."]);
    common::git(repo, &["commit", "-q", "-m", content]);
    deployed(&mgmt(repo, home, &["deploy", "--seeds", e.url(), "yaml", "graph.yaml"]))
}

fn exported_content(e: &Etcd) -> Option<String> {
    let v = e.get_json("/_mgmt/exported/a/file/shared")?;
    Some(v.to_string())
}

#[test]
fn an_agent_keeps_enforcing_while_sshd_is_down_and_catches_up_when_it_is_back() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let mut s = Sshd::start(&t);
    let home = home(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    assert_eq!(deploy_direct(&e, &repo, &home, &out, "one"), 1);
    let a = agent(&t, &e, &s, "a");
    let conf = out.join("app.conf");
    wait("deploy 1 applied", &[&a], || read(&conf).as_deref() == Some("one\n"));
    wait("deploy 1's export published", &[&a], || exported_content(&e).is_some_and(|v| v.contains("one\\n")));

    // The agent's world and its deploy follower share one SSH connection.
    assert_eq!(s.log().matches("Accepted publickey for root").count(), 1, "{}", s.log());

    // The server and its sessions die: the agent says so, and keeps its graph.
    s.kill();
    let target = s.url();
    a.wait_for("the agent to notice", || {
        a.stderr().lines().any(|l| {
            l.contains("WARN")
                && l.contains(&format!(
                    "cannot connect to the SSH server {target}: connection refused (is sshd running there? check --ssh-url)"
                ))
        })
    });
    fs::remove_file(&conf).unwrap();
    wait("app.conf restored while the tunnel is down", &[&a], || read(&conf).as_deref() == Some("one\n"));

    // A deploy published meanwhile (straight to etcd) waits for the tunnel.
    assert_eq!(deploy_direct(&e, &repo, &home, &out, "two"), 2);
    assert_eq!(a.count("running deploy 2 (commit "), 0, "{}", a.stderr());

    s.restart();
    wait("deploy 2 running after sshd is back", &[&a], || a.count("running deploy 2 (commit ") == 1);
    wait("deploy 2 applied", &[&a], || read(&conf).as_deref() == Some("two\n"));
    wait("deploy 2's export published", &[&a], || exported_content(&e).is_some_and(|v| v.contains("two\\n")));
    assert!(a.count("reachable again") >= 1, "{}", a.stderr());
    assert_eq!(s.log().matches("Accepted publickey for root").count(), 2, "{}", s.log());
    wait("the agent registered again", &[&a], || {
        e.get_json("/_mgmt/hosts/a").is_some_and(|h| h["deploy"] == 2)
    });
}

#[test]
fn an_etcd_the_ssh_server_cannot_reach_is_named_with_the_server_that_tried() {
    let t = TestDir::new();
    let s = Sshd::start(&t);
    let home = home(&t);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let seed = format!("http://127.0.0.1:{port}");
    let ssh = s.flags();
    let mut args = vec!["status", "--seeds", &seed];
    args.extend(ssh.iter().map(String::as_str));
    let line = refusal(&mgmt(t.root(), &home, &args));
    assert_eq!(
        line,
        format!(
            "mgmt: error: cannot reach etcd at {seed}: the SSH server {} cannot connect to 127.0.0.1:{port}: connection failed (is etcd running? `mgmt etcd` starts one)",
            s.url()
        )
    );
}

/// A CA and a certificate for `localhost` and 127.0.0.1 signed by it, made with openssl in
/// `dir`: (CA certificate, certificate, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
        assert!(o.status.success(), "openssl {args:?}: {}", text(&o.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA"],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-keyout", "etcd.key", "-out", "etcd.csr", "-subj", "/CN=etcd"]].concat());
    fs::write(dir.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "etcd.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "etcd.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    (dir.join("ca.pem"), dir.join("etcd.pem"), dir.join("etcd.key"))
}

/// An etcd serving its clients over TLS only, on a free loopback port; killed when dropped.
struct TlsEtcd {
    child: std::process::Child,
    url: String,
}

impl TlsEtcd {
    fn start(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> TlsEtcd {
        for attempt in 0..5 {
            let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let (c, p) = (free(), free());
            let (client, peer) = (c.local_addr().unwrap().port(), p.local_addr().unwrap().port());
            drop((c, p));
            let url = format!("https://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = fs::File::create(dir.join(format!("etcd{attempt}.log"))).unwrap();
            let mut child = Command::new("/usr/bin/etcd")
                .args(["--name", "tls", "--data-dir"])
                .arg(dir.join(format!("etcd{attempt}.data")))
                .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("tls={peer_url}")])
                .arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting /usr/bin/etcd");
            let start = Instant::now();
            while start.elapsed() < common::etcd::START_TIMEOUT && matches!(child.try_wait(), Ok(None)) {
                let health = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", &url, "--cacert"])
                    .arg(ca)
                    .args(["endpoint", "health"])
                    .output()
                    .unwrap();
                if health.status.success() {
                    return TlsEtcd { child, url };
                }
                sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("etcd with TLS did not start (5 tries)");
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_to_etcd_works_inside_the_tunnel_with_the_seeds_name_checked() {
    let t = TestDir::new();
    let s = Sshd::start(&t);
    let home = home(&t);
    let (ca, cert, key) = certificates(t.root());
    let e = TlsEtcd::start(t.root(), &ca, &cert, &key);
    // `localhost` is resolved by the SSH server, and is the name etcd's certificate is checked for.
    let port = e.url.rsplit_once(':').unwrap().1;
    let seed = format!("https://localhost:{port}");
    let ca = ca.display().to_string();
    let ssh = s.flags();
    let ssh: Vec<&str> = ssh.iter().map(String::as_str).collect();
    let mut args = vec!["run", "--seeds", &seed, "--etcd-ca", &ca, "--hostname", "a", "--tmp-prefix"];
    args.extend_from_slice(&ssh);
    args.push("empty");
    let a = Agent::spawn(&t, &args);
    let mut status = vec!["status", "--seeds", &seed, "--etcd-ca", &ca, "--json"];
    status.extend_from_slice(&ssh);
    wait("host a registered, as mgmt status over TLS through the tunnel shows", &[&a], || {
        let o = mgmt(t.root(), &home, &status);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        o.status.code() == Some(0) && v.as_array().is_some_and(|h| h.len() == 1 && h[0]["hostname"] == "a")
    });
    assert!(s.log().contains(&format!("target localhost port {port}")), "{}", s.log());

    // Another CA: etcd's certificate is refused inside the tunnel as outside it.
    let other = t.path("other");
    fs::create_dir(&other).unwrap();
    let (other_ca, _, _) = certificates(&other);
    let other_ca = other_ca.display().to_string();
    let mut args = vec!["status", "--seeds", &seed, "--etcd-ca", &other_ca];
    args.extend_from_slice(&ssh);
    let o = mgmt(t.root(), &home, &args);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    assert!(text(&o.stderr).contains(&format!("etcd at {seed}")), "{}", shown(&o));
}

#[test]
fn rsa_and_ecdsa_keys_work_for_the_server_and_the_client() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let s = Sshd::start_typed(&t, "rsa");
    let home = home(&t);
    let (rsa, ecdsa) = (home.join(".ssh/id_rsa"), t.path("id_ecdsa"));
    let authorized = [keygen_typed(&rsa, "rsa"), keygen_typed(&ecdsa, "ecdsa")].join("\n");
    fs::write(s.client_key.with_file_name("authorized_keys"), format!("{authorized}\n")).unwrap();
    let url = s.url();
    // A known RSA host key (`ssh-keyscan` style line) and the default RSA client key.
    let known = format!("[127.0.0.1]:{} {}\n", s.port, s.hostkey());
    fs::write(home.join(".ssh/known_hosts"), known).unwrap();
    let o = status(&t, &e, &home, &["--ssh-url", &url]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    // An ECDSA client key, and the RSA host key by fingerprint.
    let ecdsa = ecdsa.display().to_string();
    let o = status(
        &t,
        &e,
        &home,
        &["--ssh-url", &url, "--ssh-id", &ecdsa, "--ssh-hostkey", &fingerprint(&s.host_key)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
}

/// The control sockets in `run` (the `XDG_RUNTIME_DIR` of the commands).
fn sockets(run: &Path) -> Vec<String> {
    common::entries_containing(run.join("mgmt"), ".sock")
}

#[test]
fn commands_share_one_login_with_ssh_control_persist_until_it_is_unused() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let s = Sshd::start(&t);
    let home = home(&t);
    let run = t.path("run");
    fs::create_dir_all(&run).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
    let mut args = vec!["status".to_string(), "--seeds".into(), e.url().to_string(), "--json".into()];
    args.extend(s.flags());
    args.extend(["--ssh-control-persist".into(), "2".into()]);
    let status = || {
        let o = Command::new(env!("CARGO_BIN_EXE_mgmt"))
            .args(&args)
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &run)
            .env_remove("MGMT_LOG")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", shown(&o));
    };
    let logins = || s.log().matches("Accepted publickey for root").count();
    // The first command logs in itself and starts the holder of a shared login.
    status();
    common::wait_until(|| sockets(&run).len() == 1, common::TIMEOUT);
    assert_eq!(logins(), 2, "{}", s.log());
    // The next ones go through it: no login of their own.
    status();
    status();
    assert_eq!(logins(), 2, "{}", s.log());
    // Unused for 2 s, the holder ends and removes its socket; the next command logs in again.
    common::wait_until(|| sockets(&run).is_empty(), common::TIMEOUT);
    status();
    assert!(logins() >= 3, "{}", s.log());
}
