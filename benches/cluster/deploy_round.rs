//! One timed `mgmt deploy`, followed until every agent reports it converged, and what
//! `deploy`, `deploy50`, `bigtree` and `transport` need around it: the git repository, the
//! deployed graph, the agents that follow the deploys, and where the time goes from their logs.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};

use crate::etcd::Etcd;
use crate::logs::{Log, unix_us};
use crate::support::bin;
use crate::support::process::Proc;
use crate::support::procfs::cpu_ns;
use crate::support::report::ms;

/// The agents' etcd namespace (the default).
const NS: &str = "/_mgmt";
/// Pause after each commit (and so before each timed deploy), so the previous round's tail
/// (status writes, etcd's background commit, git's own writes) is over.
pub const DEPLOY_PAUSE: Duration = Duration::from_millis(300);

/// `git ARGS` in `repo`, as a bench user; returns its stdout.
pub fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(["-c", "user.name=Bench", "-c", "user.email=bench@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(repo)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null())
        .output()
        .context("running git")?;
    ensure!(out.status.success(), "git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The deployed graph: one file whose content is the version. Every agent runs this same
/// graph, as the hosts of a cluster do; here they share one file system, so the path is
/// `/proc/self/cwd/app.conf`, which each agent resolves in its own working directory
/// (`<T>/hosts/<h>/`): every agent writes a file of its own, as on separate hosts.
pub fn app_yaml(version: usize) -> String {
    format!(
        "graph: app\nresources:\n  file:\n  - name: conf\n    path: /proc/self/cwd/app.conf\n    \
         content: \"version {version}\\n\"\n"
    )
}

pub fn app_content(version: usize) -> Vec<u8> {
    format!("version {version}\n").into_bytes()
}

/// A git repository with the graph at version 0, committed on `main`.
pub fn init_repo(repo: &Path) -> Result<()> {
    fs::create_dir_all(repo)?;
    git(repo, &["init", "-q", "-b", "main"])?;
    fs::write(repo.join("graph.yaml"), app_yaml(0))?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "version 0"])?;
    Ok(())
}

/// `n` agents `h1`..`hn` following the cluster's deploys (`mgmt run ... empty`), each in its
/// own working directory `<t>/hosts/<h>/`.
pub fn spawn_deploy_agents(t: &Path, url: &str, names: &[String]) -> Result<Vec<Proc>> {
    let prefix = t.join("prefix");
    fs::create_dir_all(&prefix)?;
    let log_level = std::env::var("MGMT_BENCH_LOG").ok();
    names
        .iter()
        .map(|h| {
            let cwd = t.join("hosts").join(h);
            fs::create_dir_all(&cwd)?;
            let mut cmd = Command::new(bin());
            if let Some(l) = &log_level {
                cmd.args(["--log-level", l]);
            }
            cmd.args(["run", "--seeds", url, "--hostname", h, "--tmp-prefix", "empty"])
                .current_dir(&cwd)
                .env("TMPDIR", &prefix)
                .env_remove("MGMT_LOG")
                .env_remove("MGMT_SEEDS");
            Proc::spawn(cmd, t.join(format!("agent-{h}.log")), format!("mgmt --hostname {h}"))
        })
        .collect()
}

pub fn host_file(t: &Path, h: &str) -> PathBuf {
    t.join("hosts").join(h).join("app.conf")
}

/// What the bench last saw of a host's `hosts/<h>` key.
#[derive(Clone, Copy, Default, Debug)]
pub struct HostSeen {
    deploy: Option<u64>,
    converged: bool,
}

/// The bench's own view of the cluster: one etcd client (in a current-thread runtime) that
/// watches `hosts/` (every agent's status JSON: `"deploy": N`, `"converged": true`) and
/// `deploy/latest`. Watch events are pushed by etcd: nothing polls.
pub struct ClusterWatch {
    rt: tokio::runtime::Runtime,
    _client: etcd_client::Client,
    stream: etcd_client::WatchStream,
    hosts: HashMap<String, HostSeen>,
    latest: Option<u64>,
}

impl ClusterWatch {
    pub fn new(url: &str) -> Result<ClusterWatch> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (client, stream) = rt.block_on(async {
            let mut c = etcd_client::Client::connect([url], None).await?;
            let opts = etcd_client::WatchOptions::new().with_prefix();
            let mut s = c.watch(format!("{NS}/hosts/"), Some(opts)).await?;
            s.watch(format!("{NS}/deploy/latest"), None).await?;
            // Both watches exist before anything is started.
            let mut created = 0;
            while created < 2 {
                let m = tokio::time::timeout(Duration::from_secs(5), s.message())
                    .await
                    .context("no watch created within 5 s")??
                    .context("the watch stream ended")?;
                created += usize::from(m.created());
            }
            anyhow::Ok((c, s))
        })?;
        Ok(ClusterWatch { rt, _client: client, stream, hosts: Default::default(), latest: None })
    }

    /// Follow the watch until `done` holds.
    pub fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&HashMap<String, HostSeen>) -> bool,
    ) -> Result<()> {
        let ClusterWatch { rt, stream, hosts, latest, .. } = self;
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + limit;
            while !done(hosts) {
                let m = tokio::time::timeout_at(deadline, stream.message())
                    .await
                    .map_err(|_| anyhow::anyhow!("{what}: not within {limit:?}"))??
                    .context("the watch stream ended")?;
                apply_events(&m, hosts, latest);
            }
            Ok(())
        })
    }
}

fn apply_events(
    resp: &etcd_client::WatchResponse,
    hosts: &mut HashMap<String, HostSeen>,
    latest: &mut Option<u64>,
) {
    let host_prefix = format!("{NS}/hosts/");
    let latest_key = format!("{NS}/deploy/latest");
    for e in resp.events() {
        let Some(kv) = e.kv() else { continue };
        let key = String::from_utf8_lossy(kv.key());
        let put = e.event_type() == etcd_client::EventType::Put;
        if key == latest_key {
            if put {
                *latest = String::from_utf8_lossy(kv.value()).trim().parse().ok();
            }
        } else if let Some(h) = key.strip_prefix(&host_prefix) {
            if !put {
                hosts.remove(h);
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
            let seen =
                HostSeen { deploy: v["deploy"].as_u64(), converged: v["converged"].as_bool() == Some(true) };
            hosts.insert(h.to_string(), seen);
        }
    }
}

/// One timed deploy.
pub struct DeployRound {
    /// Wall clock just before the spawn of `mgmt deploy` (to match the agents' log lines).
    pub wall: SystemTime,
    /// Spawn of `mgmt deploy` -> its exit.
    pub command: Duration,
    pub stdout: String,
    pub stderr: String,
    /// Spawn -> the bench's watch sees `deploy/latest` = the new ID.
    pub published: Duration,
    /// Per host: spawn -> the first status naming the new deploy (converged or not).
    pub named: Vec<Duration>,
    /// Per host: spawn -> a status naming the new deploy with `"converged": true`; `None` for
    /// a host that got stuck (see `STUCK_GRACE`).
    pub converged: Vec<Option<Duration>>,
    /// Hosts whose file did not have the new content yet when their status said converged.
    pub early: usize,
    /// Hosts (indices) whose status named the new deploy, and whose file had the new content,
    /// but whose status still said `"converged": false` `STUCK_GRACE` after the command exited.
    pub stuck: Vec<usize>,
}

/// How long a host may stay at "deploy N, not converged" while its file is right and nothing
/// else is pending, before the round counts it as stuck (a status that never became true)
/// instead of waiting for it.
pub const STUCK_GRACE: Duration = Duration::from_secs(3);

impl DeployRound {
    /// Spawn -> the last host converged; `None` if a host got stuck.
    pub fn all(&self) -> Option<Duration> {
        self.converged.iter().copied().collect::<Option<Vec<_>>>()?.into_iter().max()
    }
    pub fn first(&self) -> Duration {
        self.converged.iter().flatten().min().copied().unwrap_or_default()
    }
}

/// Run `mgmt deploy --seeds URL yaml graph.yaml` in `repo` and follow the cluster until every
/// host in `names` reports deploy `id` converged, and the command has exited.
#[allow(clippy::too_many_arguments)]
pub fn deploy_round(
    w: &mut ClusterWatch,
    url: &str,
    repo: &Path,
    names: &[String],
    files: &[PathBuf],
    want: &[u8],
    id: u64,
    limit: Duration,
) -> Result<DeployRound> {
    let ClusterWatch { rt, stream, hosts, latest, .. } = w;
    let r = rt.block_on(async {
        let wall = SystemTime::now();
        let t0 = Instant::now();
        let child = tokio::process::Command::new(bin())
            .args(["deploy", "--seeds", url, "yaml", "graph.yaml"])
            .current_dir(repo)
            .env_remove("MGMT_LOG")
            .env_remove("MGMT_SEEDS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting mgmt deploy")?;
        let mut cmd = std::pin::pin!(async move {
            let out = child.wait_with_output().await;
            (out, t0.elapsed())
        });
        let mut done: Option<(std::process::Output, Duration)> = None;
        let mut published = None;
        let mut named: Vec<Option<Duration>> = vec![None; names.len()];
        let mut converged: Vec<Option<Duration>> = vec![None; names.len()];
        let mut early = 0;
        let deadline = tokio::time::Instant::now() + limit;
        let mut stuck_since: Option<tokio::time::Instant> = None;
        let mut stuck = Vec::new();
        while done.is_none() || converged.iter().any(Option::is_none) {
            // Everything that is still missing is a status flag whose file is right already?
            let quiet = done.is_some()
                && names.iter().enumerate().filter(|(k, _)| converged[*k].is_none()).all(|(k, _)| {
                    named[k].is_some() && fs::read(&files[k]).ok().as_deref() == Some(want)
                });
            if !quiet {
                stuck_since = None;
            } else if stuck_since.is_none() {
                stuck_since = Some(tokio::time::Instant::now());
            }
            let stuck_at = stuck_since.map(|s| s + STUCK_GRACE);
            tokio::select! {
                r = &mut cmd, if done.is_none() => {
                    let (out, took) = r;
                    let out = out.context("waiting for mgmt deploy")?;
                    ensure!(
                        out.status.success(),
                        "mgmt deploy failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    done = Some((out, took));
                }
                m = stream.message() => {
                    let now = t0.elapsed();
                    let m = m?.context("the watch stream ended")?;
                    apply_events(&m, hosts, latest);
                    if published.is_none() && *latest == Some(id) {
                        published = Some(now);
                    }
                    for (k, h) in names.iter().enumerate() {
                        let s = hosts.get(h).copied().unwrap_or_default();
                        if s.deploy != Some(id) {
                            continue;
                        }
                        named[k].get_or_insert(now);
                        if s.converged && converged[k].is_none() {
                            converged[k] = Some(now);
                            if fs::read(&files[k]).ok().as_deref() != Some(want) {
                                early += 1;
                            }
                        }
                    }
                }
                _ = async { tokio::time::sleep_until(stuck_at.unwrap_or(deadline)).await }, if stuck_at.is_some() => {
                    stuck = (0..names.len()).filter(|k| converged[*k].is_none()).collect();
                    break;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let missing: Vec<String> = names
                        .iter()
                        .zip(&converged)
                        .filter(|(_, c)| c.is_none())
                        .map(|(h, _)| format!("{h} ({:?})", hosts.get(h)))
                        .collect();
                    bail!(
                        "deploy {id}: within {limit:?}, mgmt deploy {}; not converged on it: {}",
                        if done.is_some() { "exited" } else { "did not exit" },
                        missing.join(", ")
                    );
                }
            }
        }
        let (out, command) = done.context("no exit")?;
        Ok(DeployRound {
            wall,
            command,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            published: published.context("deploy/latest was not seen")?,
            named: named.into_iter().map(Option::unwrap_or_default).collect(),
            converged,
            early,
            stuck,
        })
    })?;
    let said = r.stdout.lines().next().unwrap_or("");
    ensure!(said == format!("deploy {id}"), "expected deploy {id}, mgmt deploy said `{said}`");
    Ok(r)
}

pub fn ms_or_stuck(d: Option<Duration>) -> String {
    d.map(ms).unwrap_or_else(|| "never (a host stuck)".into())
}

/// Say which hosts got stuck, with their log lines about this deploy.
pub fn report_stuck(r: &DeployRound, id: u64, agents: &[Proc], names: &[String]) {
    for &k in r.stuck.iter().take(3) {
        let log = fs::read_to_string(&agents[k].log).unwrap_or_default();
        let from = log.find(&format!("deploy {id}: fetching")).unwrap_or(log.len());
        let lines: Vec<&str> = log[from..].lines().take(6).collect();
        println!(
            "WARNING: {} ran deploy {id} and its file is right, but its status still says \
             `converged: false` {STUCK_GRACE:?} later; its log from the deploy on:\n  {}",
            names[k],
            lines.join("\n  ")
        );
    }
}

/// `mgmt: deployed N files (X new blobs, Y already stored) as deploy I` -> (N, X, Y).
pub fn deployed_counts(stderr: &str) -> Option<(u64, u64, u64)> {
    let l = stderr.lines().find_map(|l| l.strip_prefix("mgmt: deployed "))?;
    let nums: Vec<u64> = l
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (nums.len() >= 3).then(|| (nums[0], nums[1], nums[2]))
}

/// Milestones of each agent in each round, from its log (info level): the lines
/// `deploy N: fetching bundle` (after the watch event and the record read),
/// `running deploy N (` (bundle fetched, verified, unpacked, parsed, swapped in) and
/// `file[conf]: ...` (the file written), as offsets from the round's start.
#[derive(Default)]
pub struct Milestones {
    pub fetching: Vec<Duration>,
    pub running: Vec<Duration>,
    pub file: Vec<Duration>,
    /// Step durations, per agent and round.
    pub published_to_fetching: Vec<Duration>,
    pub fetching_to_running: Vec<Duration>,
    pub running_to_file: Vec<Duration>,
    pub file_to_status: Vec<Duration>,
}

pub fn milestones(rounds: &[(u64, DeployRound)], logs: &[Log]) -> Milestones {
    let mut m = Milestones::default();
    let us = |d: i64| Duration::from_micros(d.max(0) as u64);
    for (k, (id, r)) in rounds.iter().enumerate() {
        let s = unix_us(r.wall);
        let e = rounds.get(k + 1).map(|(_, n)| unix_us(n.wall)).unwrap_or(i64::MAX);
        for (h, log) in logs.iter().enumerate() {
            let Some((i1, t1)) = log.find(log.at(s), e, &[&format!("deploy {id}: fetching bundle")]) else {
                continue;
            };
            let Some((_, t2)) = log.find(i1, e, &[&format!("running deploy {id} (")]) else { continue };
            let file = log.find(i1, e, &["file[conf]: "]).map(|(_, t)| t);
            m.fetching.push(us(t1 - s));
            m.running.push(us(t2 - s));
            m.published_to_fetching.push(us(t1 - s - r.published.as_micros() as i64));
            m.fetching_to_running.push(us(t2 - t1));
            if let Some(t3) = file {
                m.file.push(us(t3 - s));
                m.running_to_file.push(us(t3 - t2));
                if let Some(c) = r.converged[h] {
                    m.file_to_status.push(us(s + c.as_micros() as i64 - t3));
                }
            }
        }
    }
    m
}

/// Wall time of `mgmt ARGS` in `cwd`, `n` times (50 ms apart); `check` judges each run.
pub fn time_mgmt(
    cwd: &Path,
    args: &[&str],
    n: usize,
    check: impl Fn(&std::process::Output) -> Result<()>,
) -> Result<Vec<Duration>> {
    let mut v = Vec::new();
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        let out = Command::new(bin())
            .args(args)
            .current_dir(cwd)
            .env_remove("MGMT_LOG")
            .env_remove("MGMT_SEEDS")
            .stdin(Stdio::null())
            .output()?;
        v.push(t0.elapsed());
        check(&out).with_context(|| format!("mgmt {}", args.join(" ")))?;
    }
    Ok(v)
}

/// Sum of the CPU time of processes, in ns.
pub fn cpu_all(ps: &[Proc]) -> u64 {
    ps.iter().map(|p| cpu_ns(p.pid())).sum()
}

/// Stop the agents (SIGINT, as a user would); keep their logs if asked.
pub fn stop_agents(agents: &mut [Proc], etcd: &Etcd, bench: &str) -> Result<()> {
    for a in agents.iter_mut() {
        let s = a.stop(libc::SIGINT);
        if !s.is_some_and(|s| s.success()) {
            println!("WARNING: {} did not stop cleanly ({s:?}); log:\n{}", a.what, a.log_tail());
        }
    }
    if let Ok(keep) = std::env::var("MGMT_BENCH_KEEP_LOGS") {
        let keep = PathBuf::from(keep).join(bench);
        fs::create_dir_all(&keep)?;
        for p in agents.iter().map(|a| &a.log).chain([&etcd.process.log]) {
            fs::copy(p, keep.join(p.file_name().context("no name")?))?;
        }
        println!("logs kept in {}", keep.display());
    }
    Ok(())
}

/// A round failed: say why as well as possible (a dead agent, or the logs of the agents that
/// did not converge) and keep the logs if asked.
pub fn round_failed(
    e: anyhow::Error,
    agents: &mut [Proc],
    names: &[String],
    etcd: &Etcd,
    bench: &str,
) -> anyhow::Error {
    for a in agents.iter_mut() {
        if let Err(dead) = a.ensure_alive() {
            return dead.context(e);
        }
    }
    let msg = format!("{e:#}");
    for (a, h) in agents.iter().zip(names).filter(|(_, h)| msg.contains(&format!(" {h} ("))).take(3) {
        println!("log of {h} (last lines):\n{}", a.log_tail());
    }
    if let Ok(keep) = std::env::var("MGMT_BENCH_KEEP_LOGS") {
        let keep = PathBuf::from(keep).join(bench);
        let _ = fs::create_dir_all(&keep);
        for p in agents.iter().map(|a| &a.log).chain([&etcd.process.log]) {
            if let Some(name) = p.file_name() {
                let _ = fs::copy(p, keep.join(name));
            }
        }
        println!("logs kept in {}", keep.display());
    }
    e
}
