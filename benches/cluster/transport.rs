//! `transport`: the same small cluster over plain http, mutual TLS (certificates from
//! `mgmt certs`) and an SSH tunnel (`--ssh-url` to a local sshd; again with
//! `--ssh-control-persist`, one-shot commands sharing a login), side by side in one run:
//! export -> collect (three agents, as in `propagation`) and `mgmt deploy` -> two agents
//! converged (as in `deploy`).

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::deploy_round::{DEPLOY_PAUSE, app_content, app_yaml, git, host_file, init_repo};
use crate::etcd::{Etcd, free_ports};
use crate::propagation::{AtomicSave, HOSTS, PAUSE, ROUND_LIMIT, content, graph_path, host_yaml};
use crate::support::bin;
use crate::support::process::Proc;
use crate::support::report::{Row, Stats, info, ms, row, stats};
use crate::support::wait::{Waiter, until_all};

const EXPORT_WARMUP: usize = 5;
const EXPORT_ROUNDS: usize = 40;
const DEPLOY_WARMUP: usize = 2;
const DEPLOY_ROUNDS: usize = 12;
/// The agents of the deploy half.
const DEPLOYED: [&str; 2] = ["h1", "h2"];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Tls,
    Ssh,
    /// SSH with `--ssh-control-persist`: one-shot commands share a login.
    SshShared,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Tls => "TLS",
            Mode::Ssh => "SSH",
            Mode::SshShared => "SSH-shared",
        }
    }
}

/// An etcd reachable in one mode, and the flags every mgmt command needs for it.
struct Setup {
    /// Flags for one-shot commands only (`mgmt deploy`).
    command_flags: Vec<String>,
    _etcd: Etcd,
    certs: Option<PathBuf>,
    flags: Vec<String>,
    _sshd: Option<Proc>,
}

impl Setup {
    /// The connection flags, with this host's client certificate in TLS mode.
    fn args(&self, host: &str) -> Vec<String> {
        let mut a = self.flags.clone();
        if let Some(c) = &self.certs {
            a.extend(["--etcd-cert".into(), c.join(format!("{host}.crt")).display().to_string()]);
            a.extend(["--etcd-key".into(), c.join(format!("{host}.key")).display().to_string()]);
        }
        a
    }
}

pub fn transport(t: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut p50s: Vec<(Mode, Duration, Duration)> = Vec::new();
    for mode in [Mode::Plain, Mode::Tls, Mode::Ssh, Mode::SshShared] {
        let dir = t.join(mode.name().to_lowercase());
        fs::create_dir_all(&dir)?;
        if matches!(mode, Mode::Ssh | Mode::SshShared) && !Path::new("/usr/sbin/sshd").exists() {
            println!("SSH: skipped, /usr/sbin/sshd is not installed (scripts/install-deps.sh installs it)");
            continue;
        }
        println!("-- {} --", mode.name());
        let setup = setup(&dir, mode)?;
        let export = export_collect(&dir.join("export"), &setup)?;
        let (deploy, command) = deploy_converged(&dir.join("deploy"), &setup)?;
        println!(
            "{}: export -> collect {}; deploy -> converged {}",
            mode.name(),
            export.line(),
            deploy.line()
        );
        rows.push(info(
            "transport",
            format!("{}: export -> collected on both peers: p50/p90/p99/max (n={})", mode.name(), export.n),
            export.p50_p90_p99_max(),
        ));
        rows.push(info(
            "transport",
            format!("{}: `mgmt deploy` -> 2 agents converged: p50/p90/p99/max (n={})", mode.name(), deploy.n),
            deploy.p50_p90_p99_max(),
        ));
        rows.push(info(
            "transport",
            format!("{}: `mgmt deploy` wall time: p50/p90/p99/max (n={})", mode.name(), command.n),
            command.p50_p90_p99_max(),
        ));
        rows.push(info(
            "transport",
            format!("{}: the agents' part, p50 of converged minus p50 of the command", mode.name()),
            ms(deploy.p50.saturating_sub(command.p50)),
        ));
        p50s.push((mode, export.p50, deploy.p50));
    }
    let Some(&(_, plain_export, plain_deploy)) = p50s.iter().find(|(m, _, _)| *m == Mode::Plain) else {
        return Ok(rows);
    };
    for (mode, export, deploy) in &p50s {
        let (limit, target) = match mode {
            Mode::Plain => continue,
            Mode::Tls => (1.5, "<= 1.5x plain"),
            Mode::Ssh | Mode::SshShared => (2.0, "<= 2x plain"),
        };
        let (ex, de) = (
            export.as_secs_f64() / plain_export.as_secs_f64(),
            deploy.as_secs_f64() / plain_deploy.as_secs_f64(),
        );
        rows.push(row(
            "transport",
            format!("{} / plain, p50: export -> collect; deploy -> converged", mode.name()),
            format!("x{ex:.2}; x{de:.2}"),
            target,
            Some(ex <= limit && de <= limit),
        ));
    }
    Ok(rows)
}

fn setup(dir: &Path, mode: Mode) -> Result<Setup> {
    match mode {
        Mode::Plain => {
            let etcd = Etcd::start(dir)?;
            let flags = vec!["--seeds".into(), etcd.url.clone()];
            Ok(Setup { _etcd: etcd, certs: None, flags, _sshd: None, command_flags: Vec::new() })
        }
        Mode::Tls => {
            let certs = dir.join("certs");
            let mut cmd = Command::new(bin());
            cmd.arg("certs").arg(&certs);
            for h in ["a", "b", "c", DEPLOYED[0], DEPLOYED[1]] {
                cmd.args(["--client", h]);
            }
            let out = cmd.output()?;
            ensure!(out.status.success(), "mgmt certs: {}", String::from_utf8_lossy(&out.stderr));
            let etcd = Etcd::start_tls(dir, &certs)?;
            let flags = vec![
                "--seeds".into(),
                etcd.url.clone(),
                "--etcd-ca".into(),
                certs.join("ca.crt").display().to_string(),
            ];
            Ok(Setup { _etcd: etcd, certs: Some(certs), flags, _sshd: None, command_flags: Vec::new() })
        }
        Mode::Ssh | Mode::SshShared => {
            let etcd = Etcd::start(dir)?;
            let (sshd, mut flags) = sshd(dir)?;
            flags.extend(["--seeds".into(), etcd.url.clone()]);

            let command_flags = if mode == Mode::SshShared {
                vec!["--ssh-control-persist".into(), "30".into()]
            } else {
                Vec::new()
            };
            Ok(Setup { _etcd: etcd, certs: None, flags, _sshd: Some(sshd), command_flags })
        }
    }
}

/// A local sshd on a free loopback port with keys of its own; the flags that reach it.
fn sshd(dir: &Path) -> Result<(Proc, Vec<String>)> {
    let d = dir.join("ssh");
    fs::create_dir_all(&d)?;
    fs::create_dir_all("/run/sshd")?;
    for key in ["host_key", "client_key"] {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join(key))
            .output()?;
        ensure!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))?;
    let port = free_ports(1)?[0];
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nStrictModes no\nUsePAM no\n\
         PidFile none\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nAllowTcpForwarding yes\n",
        d.join("host_key").display(),
        d.join("authorized_keys").display()
    );
    fs::write(d.join("sshd_config"), config)?;
    let mut cmd = Command::new("/usr/sbin/sshd");
    cmd.args(["-D", "-e", "-f"]).arg(d.join("sshd_config"));
    let mut p = Proc::spawn(cmd, d.join("sshd.log"), "sshd".into())?;
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        p.ensure_alive()?;
        ensure!(t0.elapsed() < Duration::from_secs(10), "sshd does not listen; log:\n{}", p.log_tail());
        std::thread::sleep(Duration::from_millis(20));
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let hostkey = fs::read_to_string(d.join("host_key.pub"))?;
    let hostkey: Vec<&str> = hostkey.split_whitespace().take(2).collect();
    let flags = vec![
        "--ssh-url".into(),
        format!("{user}@127.0.0.1:{port}"),
        "--ssh-id".into(),
        d.join("client_key").display().to_string(),
        "--ssh-hostkey".into(),
        hostkey.join(" "),
    ];
    Ok((p, flags))
}

fn agent(t: &Path, s: &Setup, host: &str, cwd: &Path, tail: &[&str]) -> Result<Proc> {
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .args(s.args(host))
        .args(["--hostname", host, "--tmp-prefix"])
        .args(tail)
        .current_dir(cwd)
        .env("TMPDIR", t)
        .env_remove("MGMT_LOG")
        .env_remove("MGMT_SEEDS");
    Proc::spawn(cmd, t.join(format!("agent-{host}.log")), format!("mgmt --hostname {host}"))
}

/// Three agents export a file each and collect the others'; A's graph is saved with a new
/// version, timed until B's and C's copies have it.
fn export_collect(t: &Path, s: &Setup) -> Result<Stats> {
    fs::create_dir_all(t)?;
    let mut agents = Vec::new();
    for h in HOSTS {
        fs::create_dir_all(t.join(format!("mgmt{h}")))?;
        fs::create_dir_all(t.join(format!("host{h}")))?;
        fs::write(graph_path(t, h), host_yaml(t, h, 0))?;
        let name = h.to_ascii_lowercase().to_string();
        let graph = graph_path(t, h).display().to_string();
        agents.push(agent(t, s, &name, t, &["yaml", &graph])?);
    }
    let peers: Vec<PathBuf> = ['B', 'C'].iter().map(|h| t.join(format!("mgmt{h}/fA"))).collect();
    let dirs: Vec<PathBuf> = ['B', 'C'].iter().map(|h| t.join(format!("mgmt{h}"))).collect();
    let mut w = Waiter::new(&dirs, "fA")?;
    let t0 = Instant::now();
    until_all(&mut w, &peers, &content('A', 0), t0, Duration::from_secs(30))
        .with_context(|| format!("first export not collected; A's log:\n{}", agents[0].log_tail()))?;
    let ga = graph_path(t, 'A');
    let mut samples = Vec::new();
    for i in 1..=EXPORT_WARMUP + EXPORT_ROUNDS {
        let save = AtomicSave::prepare(&ga, &host_yaml(t, 'A', i))?;
        std::thread::sleep(PAUSE);
        w.drain();
        let t0 = Instant::now();
        save.commit()?;
        let arr = until_all(&mut w, &peers, &content('A', i), t0, ROUND_LIMIT)?;
        if i > EXPORT_WARMUP {
            samples.push(arr.at.iter().copied().max().unwrap_or_default());
        }
    }
    for a in &mut agents {
        a.ensure_alive()?;
        a.stop(libc::SIGINT);
    }
    Ok(stats(&samples))
}

/// Two agents follow the deploys of a one-file graph; each round commits a new version and
/// times `mgmt deploy` until both have written it; also the command's own wall time (with
/// SSH, it logs in afresh each time).
fn deploy_converged(t: &Path, s: &Setup) -> Result<(Stats, Stats)> {
    let repo = t.join("repo");
    init_repo(&repo)?;
    let mut agents = Vec::new();
    for h in DEPLOYED {
        let cwd = t.join("hosts").join(h);
        fs::create_dir_all(&cwd)?;
        agents.push(agent(t, s, h, &cwd, &["empty"])?);
    }
    let files: Vec<PathBuf> = DEPLOYED.iter().map(|h| host_file(t, h)).collect();
    let dirs: Vec<PathBuf> = DEPLOYED.iter().map(|h| t.join("hosts").join(h)).collect();
    let mut w = Waiter::new(&dirs, "app.conf")?;
    // The deploy command's control sockets (with --ssh-control-persist), private to the bench.
    let run = t.join("run");
    std::fs::DirBuilder::new().mode(0o700).create(&run)?;
    let deploy = |i: usize| -> Result<Duration> {
        let t0 = Instant::now();
        let out = Command::new(bin())
            .arg("deploy")
            .args(s.args("deployer"))
            .args(&s.command_flags)
            .args(["yaml", "graph.yaml"])
            .env("XDG_RUNTIME_DIR", &run)
            .current_dir(&repo)
            .env_remove("MGMT_SEEDS")
            .output()?;
        ensure!(out.status.success(), "deploy of version {i}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(t0.elapsed())
    };
    deploy(0)?;
    until_all(&mut w, &files, &app_content(0), Instant::now(), Duration::from_secs(30))
        .with_context(|| format!("first deploy not run; h1's log:\n{}", agents[0].log_tail()))?;
    let (mut samples, mut commands) = (Vec::new(), Vec::new());
    for i in 1..=DEPLOY_WARMUP + DEPLOY_ROUNDS {
        fs::write(repo.join("graph.yaml"), app_yaml(i))?;
        git(&repo, &["commit", "-q", "-a", "-m", &format!("version {i}")])?;
        std::thread::sleep(DEPLOY_PAUSE);
        w.drain();
        let t0 = Instant::now();
        let command = deploy(i)?;
        let arr = until_all(&mut w, &files, &app_content(i), t0, ROUND_LIMIT)?;
        if i > DEPLOY_WARMUP {
            samples.push(arr.at.iter().copied().max().unwrap_or_default());
            commands.push(command);
        }
    }
    for a in &mut agents {
        a.ensure_alive()?;
        a.stop(libc::SIGINT);
    }
    Ok((stats(&samples), stats(&commands)))
}
