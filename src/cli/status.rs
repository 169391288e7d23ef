//! `mgmt status`: the hosts of a cluster, from their `hosts/<hostname>` keys, judged against
//! `deploy/latest`. `mgmt status HOST` shows one host and its failing resources; `--wait`
//! follows the hosts (an etcd watch, no polling) until every one runs the latest deploy
//! and has converged.
//!
//! Exit status: 0 every host runs the latest deploy and none is failing;
//! [`EXIT_FAILING`] a host is failing or behind (with `--wait`: failing, or it refused the
//! latest deploy); 2 invalid command line; [`EXIT_ETCD`] etcd cannot be asked (unreachable,
//! or refusing); [`EXIT_TIMEOUT`] `--wait` ran out of time.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use etcd_client::{Client, GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream};

use super::StatusArgs;
use crate::deploy::store::{DeployKeys, parse_deploy_id};
use crate::os::unix_now;
use crate::text::head;
use crate::world::HostStatus;
use crate::world::access::EtcdAccess;
use crate::world::backoff::Backoff;
use crate::world::etcd::{EtcdError, Keys, connect};

/// A host is failing or is not on the latest deploy (with `--wait`: a host failed).
pub const EXIT_FAILING: u8 = 1;
/// etcd cannot be asked: unreachable, or refusing the request.
pub const EXIT_ETCD: u8 = 3;
/// `--wait` ran out of time before every host was done.
pub const EXIT_TIMEOUT: u8 = 4;

/// How long one read may take before etcd is taken as unreachable.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(args: StatusArgs) -> Result<u8> {
    if args.cluster.seeds.is_empty() {
        bail!("--seeds (or MGMT_SEEDS) is needed: the etcd endpoints of the cluster");
    }
    let access = args.cluster.access()?;
    let r = match args.wait {
        Some(limit) => wait(&args, &access, limit).await,
        None => once(&args, &access).await,
    };
    match r {
        Ok(code) => Ok(code),
        Err(StatusError::Etcd(e)) => {
            eprintln!("mgmt: error: {e}");
            Ok(EXIT_ETCD)
        }
        Err(StatusError::Other(e)) => Err(e),
    }
}

/// Why a status could not be given.
enum StatusError {
    Etcd(EtcdError),
    Other(anyhow::Error),
}

impl From<EtcdError> for StatusError {
    fn from(e: EtcdError) -> StatusError {
        StatusError::Etcd(e)
    }
}

impl From<anyhow::Error> for StatusError {
    fn from(e: anyhow::Error) -> StatusError {
        StatusError::Other(e)
    }
}

/// What the cluster says: every host's status and the latest deploy, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub hosts: Vec<HostStatus>,
    pub latest: Option<u64>,
    revision: i64,
}

async fn connected(access: &EtcdAccess) -> Result<Client, EtcdError> {
    tokio::time::timeout(READ_TIMEOUT, connect(access))
        .await
        .map_err(|_| EtcdError::unreachable(&access.label(), format!("no answer within {READ_TIMEOUT:?}")))?
}

/// Read every host and `deploy/latest` in one transaction. Another host wrote these: what is
/// shown of them is bounded (and escaped when printed).
async fn read(c: &mut Client, args: &StatusArgs) -> Result<Cluster, EtcdError> {
    let seeds = args.cluster.seeds.join(",");
    let keys = Keys::new(&args.cluster.etcd_namespace);
    let latest_key = DeployKeys::new(&args.cluster.etcd_namespace).latest();
    let txn = Txn::new().and_then([
        TxnOp::get(keys.hosts(), Some(GetOptions::new().with_prefix())),
        TxnOp::get(latest_key.clone(), None),
    ]);
    let resp = tokio::time::timeout(READ_TIMEOUT, c.txn(txn))
        .await
        .map_err(|_| EtcdError::unreachable(&seeds, format!("no answer within {READ_TIMEOUT:?}")))?
        .map_err(|e| {
            let mut e =
                EtcdError::new(&seeds, &e).on_keys(format!("read under {} and {latest_key}", keys.hosts()));
            e.user = args.cluster.secure.etcd_user.clone();
            e
        })?;
    let mut cluster =
        Cluster { revision: resp.header().map(|h| h.revision()).unwrap_or(0), ..Cluster::default() };
    let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
        TxnOpResponse::Get(g) => Some(g),
        _ => None,
    });
    for kv in gets.next().map(|g| g.kvs().to_vec()).unwrap_or_default() {
        match serde_json::from_slice::<HostStatus>(kv.value()) {
            Ok(h) => cluster.hosts.push(h.bounded()),
            Err(e) => eprintln!(
                "mgmt: warning: {} is not a host status: {}",
                shown(&String::from_utf8_lossy(kv.key()), LONG_CELL),
                shown(&e.to_string(), LONG_CELL)
            ),
        }
    }
    cluster.latest = gets.next().and_then(|g| g.kvs().first().and_then(|kv| parse_deploy_id(kv.value())));
    cluster.hosts.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Ok(cluster)
}

/// One look: print, and exit 1 if a host is failing or behind.
async fn once(args: &StatusArgs, access: &EtcdAccess) -> Result<u8, StatusError> {
    let mut c = connected(access).await?;
    let cluster = read(&mut c, args).await?;
    if let Some(name) = &args.host {
        let Some(h) = cluster.hosts.iter().find(|h| &h.hostname == name) else {
            let known: Vec<String> = cluster.hosts.iter().map(|h| shown(&h.hostname, SHORT_CELL)).collect();
            return Err(anyhow::anyhow!(
                "no host `{}` is registered (registered: {})",
                shown(name, SHORT_CELL),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
            .into());
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(h).map_err(anyhow::Error::from)?);
        } else {
            print!("{}", host_report(h, cluster.latest, unix_now()));
        }
        return Ok(if judge(h, cluster.latest).is_bad() { EXIT_FAILING } else { 0 });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cluster.hosts).map_err(anyhow::Error::from)?);
    } else {
        print!("{}", table(&cluster.hosts, unix_now()));
    }
    let bad: Vec<String> = cluster
        .hosts
        .iter()
        .filter_map(|h| {
            let j = judge(h, cluster.latest);
            j.is_bad().then(|| format!("{} ({j})", shown(&h.hostname, SHORT_CELL)))
        })
        .collect();
    if bad.is_empty() {
        return Ok(0);
    }
    eprintln!("mgmt: {} of {} hosts failing or behind: {}", bad.len(), cluster.hosts.len(), bad.join(", "));
    Ok(EXIT_FAILING)
}

/// Where a host stands against the latest deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// On the latest deploy (or not following deploys), converged.
    Done,
    /// On the latest deploy, still checking or applying.
    Converging,
    /// Following deploys, but not (yet) on the latest.
    Behind { on: Option<u64>, latest: u64 },
    /// Failed resources while a retry is still under way.
    Retrying { failed: usize },
    /// Failed resources, and nothing left to retry.
    Failing { failed: usize },
    /// The latest deploy was refused (or `deploy/latest` cannot be read).
    Refused,
}

impl Standing {
    /// Failing or behind: `mgmt status` exits 1.
    pub fn is_bad(&self) -> bool {
        !matches!(self, Standing::Done | Standing::Converging)
    }
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match self {
            Standing::Done => write!(f, "converged"),
            Standing::Converging => write!(f, "converging"),
            Standing::Behind { on: Some(on), latest } => write!(f, "on deploy {on}, latest is {latest}"),
            Standing::Behind { on: None, latest } => write!(f, "no deploy yet, latest is {latest}"),
            Standing::Retrying { failed } => {
                write!(f, "{failed} failed resource{}, retrying", plural(*failed))
            }
            Standing::Failing { failed } => write!(f, "{failed} failed resource{}", plural(*failed)),
            Standing::Refused => write!(f, "refused the latest deploy"),
        }
    }
}

/// Judge one host against the latest deploy. Pure.
///
/// A host that runs a graph file (not `run empty`) is not behind any deploy; it is judged by
/// its resources only. A refusal of an older deploy does not count once a newer one is out:
/// the host is behind, and may still take the newer one.
pub fn judge(h: &HostStatus, latest: Option<u64>) -> Standing {
    // Registered, nothing run yet: not on the latest deploy, whatever it will run.
    if !reported(h) {
        return match latest {
            Some(l) => Standing::Behind { on: None, latest: l },
            None => Standing::Converging,
        };
    }
    let follows = h.follows_deploys || h.deploy.is_some();
    if follows && h.deploy_error.is_some() && (h.refused_deploy.is_none() || h.refused_deploy == latest) {
        return Standing::Refused;
    }
    if let Some(l) = latest
        && follows
        && h.deploy != Some(l)
    {
        return Standing::Behind { on: h.deploy, latest: l };
    }
    let failed = h.failed_total();
    match (failed, h.idle, h.converged) {
        (0, _, true) => Standing::Done,
        (0, _, false) => Standing::Converging,
        (n, true, _) => Standing::Failing { failed: n },
        (n, false, _) => Standing::Retrying { failed: n },
    }
}

/// Whether a host has reported what it runs: an agent registers with a placeholder status
/// (no graph yet) and replaces it once its first graph runs.
fn reported(h: &HostStatus) -> bool {
    !h.graph.is_empty()
}

/// The progress line of `--wait`, e.g. `2/3 hosts on deploy 7, 1 converged`. Pure.
pub fn progress(cluster: &Cluster, gone: &[String]) -> String {
    let n = cluster.hosts.len() + gone.len();
    let converged = cluster.hosts.iter().filter(|h| judge(h, cluster.latest) == Standing::Done).count();
    let mut line = match cluster.latest {
        Some(d) => {
            let on = cluster
                .hosts
                .iter()
                .filter(|h| !matches!(judge(h, Some(d)), Standing::Behind { .. } | Standing::Refused))
                .count();
            format!("{on}/{n} hosts on deploy {d}, {converged} converged")
        }
        None => format!("{converged}/{n} hosts converged"),
    };
    let failing = cluster.hosts.iter().filter(|h| judge(h, cluster.latest).is_bad()).count();
    let behind =
        cluster.hosts.iter().filter(|h| matches!(judge(h, cluster.latest), Standing::Behind { .. })).count();
    if failing > behind {
        line.push_str(&format!(", {} failing", failing - behind));
    }
    if !gone.is_empty() {
        line.push_str(&format!(
            ", gone: {}",
            gone.iter().map(|g| shown(g, SHORT_CELL)).collect::<Vec<_>>().join(", ")
        ));
    }
    line
}

/// What `--wait` concludes from one look, given the hosts it expects (seen since it began).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    Waiting,
    /// A host failed: its name and why.
    Failed(String, String),
}

/// Pure, for tests: done when at least one host is registered, every host seen since the
/// wait began still is, and every one is [`Standing::Done`]; failed as soon as one host is
/// [`Standing::Failing`] or [`Standing::Refused`].
pub fn verdict(cluster: &Cluster, gone: &[String]) -> Verdict {
    for h in &cluster.hosts {
        let j = judge(h, cluster.latest);
        if matches!(j, Standing::Failing { .. } | Standing::Refused) {
            let why = match (&j, &h.deploy_error, &h.last_error) {
                (Standing::Refused, Some(e), _) => e.clone(),
                (_, _, Some(e)) => format!("{j}: {e}"),
                _ => j.to_string(),
            };
            return Verdict::Failed(h.hostname.clone(), why);
        }
    }
    let all_done = cluster.hosts.iter().all(|h| judge(h, cluster.latest) == Standing::Done);
    if !cluster.hosts.is_empty() && gone.is_empty() && all_done { Verdict::Done } else { Verdict::Waiting }
}

/// The hosts `--wait` is still waiting for, with where each stands.
fn waiting_for(cluster: &Cluster, gone: &[String]) -> String {
    let mut out: Vec<String> = cluster
        .hosts
        .iter()
        .filter_map(|h| {
            let j = judge(h, cluster.latest);
            (j != Standing::Done).then(|| format!("{} ({j})", shown(&h.hostname, SHORT_CELL)))
        })
        .collect();
    out.extend(gone.iter().map(|g| format!("{} (gone)", shown(g, SHORT_CELL))));
    if cluster.hosts.is_empty() && gone.is_empty() {
        out.push("a host to register".into());
    }
    out.join(", ")
}

/// `--wait`: follow the hosts and `deploy/latest` with etcd watches until every host is done
/// (0), one fails (1) or the time is up. Progress goes to stderr, one line per change; the
/// final status to stdout.
async fn wait(args: &StatusArgs, access: &EtcdAccess, limit: Option<Duration>) -> Result<u8, StatusError> {
    let started = tokio::time::Instant::now();
    let deadline = limit.map(|l| started + l);
    let seeds = args.cluster.seeds.join(",");
    let keys = Keys::new(&args.cluster.etcd_namespace);
    let latest_key = DeployKeys::new(&args.cluster.etcd_namespace).latest();
    // Every host seen since the wait began: one that goes away is waited for.
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    let mut last_line = String::new();
    let mut last = Cluster::default();
    let mut backoff = Backoff::new();
    let mut trouble: Option<EtcdError> = None;
    // etcd failing at the start is an error (exit 3); later, an outage to wait through.
    let mut answered = false;
    let sleep_until = |d: Option<tokio::time::Instant>| async move {
        match d {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    loop {
        // One session: connect, read, watch from the revision read; a break starts another.
        let session = async {
            let mut c = connected(access).await?;
            let mut cluster = read(&mut c, args).await?;
            answered = true;
            let from = WatchOptions::new().with_start_revision(cluster.revision + 1);
            let watch = |c: &mut Client, key: String, o: WatchOptions| {
                let mut c = c.clone();
                async move { c.watch(key, Some(o)).await }
            };
            let err = |e: etcd_client::Error| EtcdError::new(&seeds, &e);
            let mut hosts_w: WatchStream =
                watch(&mut c, keys.hosts(), from.clone().with_prefix()).await.map_err(err)?;
            let mut latest_w: WatchStream = watch(&mut c, latest_key.clone(), from).await.map_err(err)?;
            if trouble.take().is_some() {
                eprintln!("etcd at {seeds} answers again");
            }
            backoff.reset();
            loop {
                if let Some(code) = self::look(args, &cluster, &mut seen, &mut last_line) {
                    return Ok::<_, EtcdError>(Some(code));
                }
                last = cluster.clone();
                let changed = tokio::select! {
                    m = hosts_w.message() => m.map_err(err)?.is_some_and(|r| !r.canceled()),
                    m = latest_w.message() => m.map_err(err)?.is_some_and(|r| !r.canceled()),
                    _ = sleep_until(deadline) => return Ok(None),
                };
                if !changed {
                    return Err(EtcdError::unreachable(&seeds, "the watch ended"));
                }
                cluster = read(&mut c, args).await?;
            }
        };
        let r = tokio::select! {
            r = session => r,
            _ = sleep_until(deadline) => Ok(None),
        };
        match r {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => {
                if let Some(name) = &args.host {
                    last.hosts.retain(|h| &h.hostname == name);
                }
                let gone = gone_hosts(&last, &seen);
                eprintln!(
                    "mgmt: timed out after {}: still waiting for {}",
                    human(limit.unwrap_or_default()),
                    waiting_for(&last, &gone)
                );
                print_final(args, &last);
                return Ok(EXIT_TIMEOUT);
            }
            Err(e) if !answered => return Err(e.into()),
            Err(e) => {
                if trouble.is_none() {
                    eprintln!("mgmt: {e}; retrying");
                }
                trouble = Some(e);
                let cancel = tokio_util::sync::CancellationToken::new();
                tokio::select! {
                    _ = backoff.wait(&cancel) => {}
                    _ = sleep_until(deadline) => {}
                }
            }
        }
    }
}

/// The hosts seen since the wait began that are no longer registered.
fn gone_hosts(cluster: &Cluster, seen: &BTreeMap<String, ()>) -> Vec<String> {
    seen.keys().filter(|s| !cluster.hosts.iter().any(|h| &h.hostname == *s)).cloned().collect()
}

/// One look during `--wait`: print progress if it changed; the exit code once decided.
fn look(
    args: &StatusArgs,
    cluster: &Cluster,
    seen: &mut BTreeMap<String, ()>,
    last_line: &mut String,
) -> Option<u8> {
    let mut cluster = cluster.clone();
    if let Some(name) = &args.host {
        cluster.hosts.retain(|h| &h.hostname == name);
    }
    for h in &cluster.hosts {
        seen.insert(h.hostname.clone(), ());
    }
    let gone = gone_hosts(&cluster, seen);
    let line = progress(&cluster, &gone);
    if line != *last_line {
        eprintln!("{line}");
        *last_line = line;
    }
    match verdict(&cluster, &gone) {
        Verdict::Waiting => None,
        Verdict::Done => {
            print_final(args, &cluster);
            Some(0)
        }
        Verdict::Failed(host, why) => {
            eprintln!(
                "mgmt: host {} failed: {}",
                shown(&host, SHORT_CELL),
                shown(&why.replace(['\n', '\r'], " "), LONG_CELL)
            );
            print_final(args, &cluster);
            Some(EXIT_FAILING)
        }
    }
}

/// What `--wait` prints on stdout when it ends: the status as `mgmt status` shows it.
fn print_final(args: &StatusArgs, cluster: &Cluster) {
    let mut hosts = cluster.hosts.clone();
    if let Some(name) = &args.host {
        hosts.retain(|h| &h.hostname == name);
    }
    match (args.json, hosts.as_slice()) {
        (true, [h]) if args.host.is_some() => {
            println!("{}", serde_json::to_string_pretty(h).unwrap_or_default())
        }
        (true, _) => println!("{}", serde_json::to_string_pretty(&hosts).unwrap_or_default()),
        (false, [h]) if args.host.is_some() => print!("{}", host_report(h, cluster.latest, unix_now())),
        (false, _) => print!("{}", table(&hosts, unix_now())),
    }
}

/// A duration as `--wait` takes it: `90s`, `5m`, `1h30m`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// The longest `--wait` timeout: ten years, like every interval.
const MAX_WAIT_SECS: u64 = crate::contract::limits::MAX_INTERVAL_SECS;

/// Parse a `--wait` timeout: seconds (`90`), or numbers with units `s`, `m`, `h`, `d`
/// (`30s`, `5m`, `1h30m`). At least one second. Pure, for clap.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad =
        || format!("invalid timeout `{text}`: use seconds (90) or a number with a unit: 30s, 5m, 1h30m, 1d");
    if t.is_empty() {
        return Err(bad());
    }
    let secs = if t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>().map_err(|_| bad())?
    } else {
        let mut total: u64 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            let unit = match rest.as_bytes().get(digits) {
                Some(b's') => 1,
                Some(b'm') => 60,
                Some(b'h') => 3600,
                Some(b'd') => 86400,
                _ => return Err(bad()),
            };
            total = n.checked_mul(unit).and_then(|x| total.checked_add(x)).ok_or_else(bad)?;
            rest = &rest[digits + 1..];
        }
        total
    };
    if secs == 0 {
        return Err(format!(
            "invalid timeout `{text}`: it must be at least 1s (leave it out to wait without limit)"
        ));
    }
    if secs > MAX_WAIT_SECS {
        return Err(format!("invalid timeout `{text}`: at most {MAX_WAIT_SECS} seconds"));
    }
    Ok(Duration::from_secs(secs))
}

/// `mgmt status HOST`: the host's state, then each failing resource with its last error.
/// Pure, for tests; everything the host published is escaped and bounded.
pub fn host_report(h: &HostStatus, latest: Option<u64>, now: u64) -> String {
    let mut out = host_fields(h, latest, now);
    out.push_str(&failures_table(h));
    out.push_str(&changes_table(h, now));
    out
}

/// One `key value` line per fact about the host.
fn host_fields(h: &HostStatus, latest: Option<u64>, now: u64) -> String {
    let j = judge(h, latest);
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<10} {v}\n"));
    field("host", shown(&h.hostname, SHORT_CELL));
    field("state", j.to_string());
    field(
        "deploy",
        match (h.deploy, latest) {
            (Some(d), Some(l)) => format!("{d} (latest {l})"),
            (Some(d), None) => d.to_string(),
            (None, Some(l)) if h.follows_deploys => format!("none (latest {l})"),
            (None, _) => "-".into(),
        },
    );
    if let Some(e) = &h.deploy_error {
        field("refused", shown(&e.replace(['\n', '\r'], " "), LONG_CELL));
    }
    field("graph", format!("{} (from {})", shown(&h.graph, SHORT_CELL), shown(&h.source, LONG_CELL)));
    field("resources", format!("{}, {} not in their desired state", h.resources, h.failed_total()));
    field("converged", if h.converged { "yes".into() } else { "no".into() });
    field("version", format!("{}, pid {}, up {}", shown(&h.version, SHORT_CELL), h.pid, age(now, h.started)));
    field("updated", format!("{} ago", age(now, h.updated)));
    if h.failures.is_empty() && h.failed_total() > 0 {
        // An agent that does not publish its failures yet: its ids and last error.
        field("failed", shown(&h.failed.join(", "), LONG_CELL));
        if let Some(e) = &h.last_error {
            field("error", shown(&e.replace(['\n', '\r'], " "), LONG_CELL));
        }
    }
    out
}

/// The failing resources with their last errors, as a table after a blank line.
fn failures_table(h: &HostStatus) -> String {
    if h.failures.is_empty() {
        return String::new();
    }
    let rows: Vec<[String; 3]> = h
        .failures
        .iter()
        .map(|f| {
            [
                format!("{}[{}]", shown(&f.kind, SHORT_CELL), shown(&f.name, LONG_CELL)),
                shown(&f.state, SHORT_CELL),
                shown(&f.error.as_deref().unwrap_or("-").replace(['\n', '\r'], " "), 2 * LONG_CELL),
            ]
        })
        .collect();
    let mut out = format!("\n{}", columns(["RESOURCE", "STATE", "LAST ERROR"], &rows));
    if h.failures_more > 0 {
        out.push_str(&format!("... and {} more\n", h.failures_more));
    }
    out
}

/// The last changes the host made, newest first, with why each resource was checked.
fn changes_table(h: &HostStatus, now: u64) -> String {
    if h.changes.is_empty() {
        return String::new();
    }
    let rows: Vec<[String; 3]> = h
        .changes
        .iter()
        .rev()
        .map(|c| {
            let noop = if c.noop { " (noop: not made)" } else { "" };
            [
                format!("{} ago", age(now, c.at)),
                shown(&c.resource, LONG_CELL),
                format!("{}{noop}; {}", shown(&c.change, LONG_CELL), shown(&c.why, SHORT_CELL)),
            ]
        })
        .collect();
    format!("\nrecent changes:\n{}", columns(["WHEN", "RESOURCE", "CHANGE; WHY"], &rows))
}

/// Rows of three cells under a header, the first two columns padded to their widest cell.
fn columns(header: [&str; 3], rows: &[[String; 3]]) -> String {
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(header[i].len());
    let (w0, w1) = (width(0), width(1));
    let mut out = format!("{:<w0$}  {:<w1$}  {}\n", header[0], header[1], header[2]);
    for [a, b, c] in rows {
        out.push_str(&format!("{a:<w0$}  {b:<w1$}  {c}\n"));
    }
    out
}

fn age(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// The most bytes of a short cell of the table (host, graph, deploy, version).
const SHORT_CELL: usize = 64;
/// The most bytes of the last error shown in the table.
const LONG_CELL: usize = 200;

/// Whether `c` could break a line or fool a terminal: control characters (newlines,
/// escapes) and the invisible marks that reorder or hide text.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// Text another host published, as one bounded line: every unsafe character escaped
/// (`\n`, `\u{1b}`), then cut to `max` bytes with a marker.
pub fn shown(text: &str, max: usize) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    head(&line, max).into_owned()
}

/// The table `mgmt status` prints; pure, for tests.
pub fn table(hosts: &[HostStatus], now: u64) -> String {
    let header =
        ["HOST", "CONVERGED", "RESOURCES", "FAILED", "GRAPH", "DEPLOY", "VERSION", "UP", "LAST ERROR"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for h in hosts {
        rows.push(vec![
            shown(&h.hostname, SHORT_CELL),
            if h.converged { "yes".into() } else { "no".into() },
            h.resources.to_string(),
            h.failed_total().to_string(),
            shown(&h.graph, SHORT_CELL),
            match (h.deploy, &h.deploy_error) {
                (Some(d), None) => d.to_string(),
                (Some(d), Some(_)) => format!("{d} (latest refused)"),
                (None, Some(_)) => "refused".into(),
                (None, None) => "-".into(),
            },
            shown(&h.version, SHORT_CELL),
            age(now, h.started),
            // A multi-line error reads best on one line with its breaks as spaces.
            shown(
                &h.last_error
                    .as_deref()
                    .or(h.deploy_error.as_deref())
                    .unwrap_or("-")
                    .replace(['\n', '\r'], " "),
                LONG_CELL,
            ),
        ]);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| if i + 1 == r.len() { c.clone() } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if hosts.is_empty() {
        out.push_str("(no hosts registered)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Failure, RecentChange};

    fn host(name: &str, deploy: Option<u64>) -> HostStatus {
        HostStatus {
            hostname: name.into(),
            graph: "g".into(),
            deploy,
            follows_deploys: true,
            converged: true,
            idle: true,
            resources: 1,
            ..Default::default()
        }
    }

    fn failing(mut h: HostStatus, idle: bool) -> HostStatus {
        h.converged = false;
        h.idle = idle;
        h.failed = vec!["exec[x]".into()];
        h.last_error = Some("exec[x]: exit status 3".into());
        h.failures = vec![Failure {
            kind: "exec".into(),
            name: "x".into(),
            state: "failed".into(),
            error: Some("exit status 3: boom".into()),
        }];
        h
    }

    #[test]
    fn hosts_are_judged_against_the_latest_deploy() {
        assert_eq!(judge(&host("a", Some(7)), Some(7)), Standing::Done);
        assert_eq!(judge(&host("a", Some(6)), Some(7)), Standing::Behind { on: Some(6), latest: 7 });
        assert_eq!(judge(&host("a", None), Some(7)), Standing::Behind { on: None, latest: 7 });
        // Not following deploys (a graph file): never behind.
        let file = HostStatus { follows_deploys: false, ..host("a", None) };
        assert_eq!(judge(&file, Some(7)), Standing::Done);
        assert_eq!(judge(&host("a", None), None), Standing::Done);
        let busy = HostStatus { converged: false, idle: false, ..host("a", Some(7)) };
        assert_eq!(judge(&busy, Some(7)), Standing::Converging);
        assert!(!Standing::Converging.is_bad());
        assert_eq!(judge(&failing(host("a", Some(7)), true), Some(7)), Standing::Failing { failed: 1 });
        assert_eq!(judge(&failing(host("a", Some(7)), false), Some(7)), Standing::Retrying { failed: 1 });
        // Failures from before the latest deploy do not count yet: the host is behind.
        assert!(matches!(judge(&failing(host("a", Some(6)), true), Some(7)), Standing::Behind { .. }));
        let refused = HostStatus {
            deploy_error: Some("deploy 7: no such file".into()),
            refused_deploy: Some(7),
            ..host("a", Some(6))
        };
        assert_eq!(judge(&refused, Some(7)), Standing::Refused);
        // A refusal of an older deploy: behind, it may take the newer one.
        assert!(matches!(judge(&refused, Some(8)), Standing::Behind { .. }));
        for bad in
            [Standing::Refused, Standing::Failing { failed: 1 }, Standing::Behind { on: None, latest: 1 }]
        {
            assert!(bad.is_bad(), "{bad}");
        }
    }

    #[test]
    fn a_wait_ends_when_every_host_is_done_or_one_fails() {
        let c = |hosts: Vec<HostStatus>, latest| Cluster { hosts, latest, revision: 0 };
        assert_eq!(verdict(&c(vec![], Some(1)), &[]), Verdict::Waiting);
        assert_eq!(verdict(&c(vec![host("a", Some(2)), host("b", Some(2))], Some(2)), &[]), Verdict::Done);
        assert_eq!(verdict(&c(vec![host("a", Some(2)), host("b", Some(1))], Some(2)), &[]), Verdict::Waiting);
        // A host that went away is waited for.
        assert_eq!(verdict(&c(vec![host("a", Some(2))], Some(2)), &["b".into()]), Verdict::Waiting);
        let v = verdict(&c(vec![host("a", Some(2)), failing(host("b", Some(2)), true)], Some(2)), &[]);
        assert_eq!(v, Verdict::Failed("b".into(), "1 failed resource: exec[x]: exit status 3".into()));
        // Still retrying: not failed yet.
        let v = verdict(&c(vec![failing(host("b", Some(2)), false)], Some(2)), &[]);
        assert_eq!(v, Verdict::Waiting);
        let refused = HostStatus {
            deploy_error: Some("deploy 2: bad".into()),
            refused_deploy: Some(2),
            ..host("b", Some(1))
        };
        assert_eq!(
            verdict(&c(vec![refused], Some(2)), &[]),
            Verdict::Failed("b".into(), "deploy 2: bad".into())
        );
    }

    #[test]
    fn progress_counts_hosts_on_the_latest_deploy_and_converged() {
        let busy = HostStatus { converged: false, idle: false, ..host("c", Some(7)) };
        let cluster = Cluster {
            hosts: vec![host("a", Some(7)), host("b", Some(6)), busy],
            latest: Some(7),
            revision: 0,
        };
        assert_eq!(progress(&cluster, &[]), "2/3 hosts on deploy 7, 1 converged");
        assert_eq!(progress(&cluster, &["d".into()]), "2/4 hosts on deploy 7, 1 converged, gone: d");
        // Registered, nothing reported yet: not on any deploy.
        let placeholder = HostStatus { hostname: "e".into(), ..HostStatus::default() };
        assert_eq!(judge(&placeholder, Some(7)), Standing::Behind { on: None, latest: 7 });
        assert_eq!(judge(&placeholder, None), Standing::Converging);
        let starting = Cluster { hosts: vec![host("a", Some(7)), placeholder], latest: Some(7), revision: 0 };
        assert_eq!(progress(&starting, &[]), "1/2 hosts on deploy 7, 1 converged");
        let none = Cluster {
            hosts: vec![host("a", None), failing(host("b", None), true)],
            latest: None,
            revision: 0,
        };
        assert_eq!(progress(&none, &[]), "1/2 hosts converged, 1 failing");
    }

    #[test]
    fn timeouts_take_seconds_or_units() {
        let ok = |t: &str| parse_timeout(t).map(|d| d.as_secs());
        assert_eq!(ok("90"), Ok(90));
        assert_eq!(ok("30s"), Ok(30));
        assert_eq!(ok("5m"), Ok(300));
        assert_eq!(ok("1h30m"), Ok(5400));
        assert_eq!(ok("1d"), Ok(86400));
        for bad in ["", "0", "0s", "5x", "m", "1.5m", "-1", "5 m", "99999999999999999999", "1h1"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert!(parse_timeout("0").unwrap_err().contains("at least 1s"));
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
    }

    #[test]
    fn one_host_shows_each_failing_resource_with_its_error() {
        let mut h = failing(host("web1", Some(7)), true);
        h.failures.push(Failure {
            kind: "file".into(),
            name: "/a\nb".into(),
            state: "blocked".into(),
            error: None,
        });
        h.failures_more = 3;
        let r = host_report(&h, Some(7), 100);
        assert!(r.contains("state      1 failed resource\n"), "{r}");
        assert!(r.contains("deploy     7 (latest 7)\n"), "{r}");
        let lines: Vec<&str> = r.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("RESOURCE")).expect(&r);
        assert!(
            lines[header + 1].starts_with("exec[x]") && lines[header + 1].ends_with("exit status 3: boom"),
            "{r}"
        );
        assert!(
            lines[header + 2].starts_with("file[/a\\nb]") && lines[header + 2].contains("blocked"),
            "{r}"
        );
        assert_eq!(lines[header + 3], "... and 3 more");
    }

    #[test]
    fn one_host_shows_its_recent_changes_newest_first_with_why() {
        let mut h = host("web1", Some(7));
        let change = |resource: &str, change: &str, why: &str, at, noop| RecentChange {
            resource: resource.into(),
            change: change.into(),
            why: why.into(),
            at,
            noop,
        };
        h.changes.push(change(
            "file[/etc/motd]",
            "replace content (3 -> 9 bytes)",
            "first check of this resource",
            40,
            false,
        ));
        h.changes.push(change("svc[nginx]", "start", "drift: its watch saw a change", 95, true));
        let r = host_report(&h, Some(7), 100);
        let lines: Vec<&str> = r.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("WHEN")).expect(&r);
        assert_eq!(lines[header - 1], "recent changes:", "{r}");
        let newest = lines[header + 1];
        assert!(newest.starts_with("5s ago") && newest.contains("svc[nginx]"), "{r}");
        assert!(newest.ends_with("start (noop: not made); drift: its watch saw a change"), "{r}");
        let oldest = lines[header + 2];
        assert!(oldest.starts_with("1m") && oldest.contains("file[/etc/motd]"), "{r}");
        assert!(oldest.ends_with("replace content (3 -> 9 bytes); first check of this resource"), "{r}");
        assert!(!host_report(&host("idle", Some(7)), Some(7), 100).contains("recent changes"));
    }

    #[test]
    fn one_host_of_an_older_agent_shows_its_failed_ids_and_last_error() {
        let mut h = failing(host("old", None), true);
        h.failures.clear();
        let r = host_report(&h, None, 0);
        assert!(r.contains("failed     exec[x]\n"), "{r}");
        assert!(r.contains("error      exec[x]: exit status 3\n"), "{r}");
        assert!(!r.contains("RESOURCE"), "{r}");
    }

    #[test]
    fn table_has_a_header_and_a_line_per_host() {
        let hosts = vec![
            HostStatus {
                hostname: "h1".into(),
                converged: true,
                resources: 3,
                started: 90,
                ..Default::default()
            },
            HostStatus {
                hostname: "host-two".into(),
                resources: 2,
                failed: vec!["exec[x]".into()],
                last_error: Some("exec[x]: boom".into()),
                started: 0,
                ..Default::default()
            },
        ];
        let t = table(&hosts, 100);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("HOST      CONVERGED"));
        assert!(lines[1].starts_with("h1        yes"));
        assert!(lines[2].starts_with("host-two  no"));
        assert!(lines[2].ends_with("exec[x]: boom"));
        assert!(lines[1].contains("10s"));
    }

    #[test]
    fn what_a_host_published_is_shown_on_one_bounded_line() {
        let evil = HostStatus {
            hostname: "evil\nfake      yes".into(),
            graph: "g\r\x1b[2J".into(),
            version: "v".repeat(10_000),
            last_error: Some(format!("line one\nline two\u{202e}{}", "e".repeat(1_000_000))),
            ..Default::default()
        };
        let t = table(&[evil], 0);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[1].starts_with("evil\\nfake      yes  no"), "{t}");
        assert!(lines[1].contains("g\\r\\u{1b}[2J"), "{t}");
        assert!(lines[1].contains("line one line two\\u{202e}eee"), "{t}");
        assert!(!t.contains(['\x1b', '\r', '\u{202e}']), "{t}");
        assert!(lines[1].len() < 3 * SHORT_CELL + LONG_CELL + 100, "{} bytes", lines[1].len());
        assert!(lines[1].ends_with(" more bytes]"), "{t}");
    }

    #[test]
    fn shown_text_keeps_plain_text_and_bounds_the_rest() {
        assert_eq!(shown("web-1 é", 64), "web-1 é");
        assert_eq!(shown("a\tb\0", 64), "a\\tb\\u{0}");
        let long = shown(&"x".repeat(1000), 64);
        assert!(long.len() <= 64 && long.ends_with(" more bytes]"), "{long}");
    }

    #[test]
    fn failed_counts_the_resources_a_bounded_status_leaves_out() {
        let h = HostStatus {
            hostname: "h".into(),
            failed: (0..250).map(|i| format!("file[{i}]")).collect(),
            ..Default::default()
        }
        .bounded();
        let t = table(&[h], 0);
        let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[3], "250", "{t}");
    }
}
