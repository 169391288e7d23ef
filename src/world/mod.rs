//! The world: what agents share. Standalone agents use the in-process [`local::LocalWorld`];
//! a cluster uses [`etcd::EtcdWorld`]. The engine and the resources only see the [`World`]
//! trait.
//!
//! A world never blocks the engine on the network: exports and status reports are recorded
//! and published in the background (again after an outage); collected resources are the last
//! state seen. Only resources that need a live answer (`kv`) get an error while the cluster is
//! unreachable, and retry like any failing resource.

pub mod access;
pub mod backoff;
pub mod etcd;
pub mod local;
pub mod mirror;
pub mod ssh;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

/// A resource exported by a host (`@@name` in YAML), as stored in the world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exported {
    pub host: String,
    pub kind: String,
    pub name: String,
    /// The resource's params (its serde form).
    pub params: serde_json::Value,
    /// The hosts it is exported to (mcl's `Meta:export => ["h1", "h2"]`); `None`: every
    /// host that collects its kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
}

impl Exported {
    /// Whether `host` may collect it.
    pub fn for_host(&self, host: &str) -> bool {
        self.to.as_ref().is_none_or(|to| to.iter().any(|h| h == host || h == "*"))
    }
}

/// What an agent says about itself (`hosts/<hostname>` in etcd, `mgmt status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HostStatus {
    pub hostname: String,
    /// The mgmt version the agent runs.
    pub version: String,
    pub pid: u32,
    /// The graph it runs (its `graph:` name) and where it came from.
    pub graph: String,
    pub source: String,
    /// The deploy it runs; `null` for a graph given on the command line.
    pub deploy: Option<u64>,
    /// Why the newest deploy was refused (it keeps running the one before).
    #[serde(default)]
    pub deploy_error: Option<String>,
    /// Every resource is idle in its desired state.
    pub converged: bool,
    pub resources: usize,
    /// Resources that failed or are blocked by a failed dependency.
    pub failed: Vec<String>,
    pub last_error: Option<String>,
    /// Unix seconds.
    pub started: u64,
    pub updated: u64,
    /// The agent runs the cluster's deploys (`run empty`), rather than a graph file.
    #[serde(default)]
    pub follows_deploys: bool,
    /// The deploy `deploy_error` is about, when it names one.
    #[serde(default)]
    pub refused_deploy: Option<u64>,
    /// Nothing is being checked, applied or retried: `failed` is settled, not a retry
    /// under way.
    #[serde(default)]
    pub idle: bool,
    /// The failing resources with their last errors, failed ones first: at most
    /// [`STATUS_FAILURES_MAX`], the rest counted in `failures_more`.
    #[serde(default)]
    pub failures: Vec<Failure>,
    #[serde(default)]
    pub failures_more: usize,
    /// The last changes this agent made (or, in noop mode, found), oldest first: at most
    /// [`STATUS_CHANGES_MAX`].
    #[serde(default)]
    pub changes: Vec<RecentChange>,
}

/// One change a resource made, with why it was checked, as a host publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RecentChange {
    /// `kind[name]`.
    pub resource: String,
    /// The change, as logged: `replace content (3 -> 12 bytes)`.
    pub change: String,
    /// What made the agent check it: its watch, a refresh, a retry, the first check.
    pub why: String,
    /// Unix seconds.
    pub at: u64,
    /// Found in noop mode, not made.
    #[serde(default)]
    pub noop: bool,
}

/// A resource that is not in its desired state, as a host publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Failure {
    pub kind: String,
    pub name: String,
    /// `failed`: its last check or apply failed; `blocked`: a dependency failed.
    pub state: String,
    /// Its last error, with the tail of a failed command's output (bounded).
    #[serde(default)]
    pub error: Option<String>,
}

/// The most bytes of a text field (an error, a graph name, a source) a published status
/// carries: far below etcd's request limit (1.5 MiB by default), whatever the agent runs.
pub const STATUS_TEXT_MAX: usize = 4096;
/// The most resource ids the `failed` list of a published status carries, each at most
/// [`STATUS_ID_MAX`] bytes; a longer list ends with a "… and N more" entry.
pub const STATUS_FAILED_MAX: usize = 100;
pub const STATUS_ID_MAX: usize = 256;
/// The most entries of `failures` a published status carries, and the most bytes of each
/// one's error.
pub const STATUS_FAILURES_MAX: usize = 50;
pub const STATUS_FAILURE_ERROR_MAX: usize = 1024;
/// The most recent changes a published status carries, and the most bytes of each one's text.
pub const STATUS_CHANGES_MAX: usize = 20;
pub const STATUS_CHANGE_TEXT_MAX: usize = 512;

const FAILED_MORE: (&str, &str) = ("… and ", " more");

impl HostStatus {
    /// The status as it is published: every field that grows with what the agent runs is
    /// bounded (see [`STATUS_TEXT_MAX`], [`STATUS_FAILED_MAX`]), with a visible marker where
    /// something was cut.
    pub fn bounded(mut self) -> HostStatus {
        let cut = |s: &mut String| *s = crate::text::head(s, STATUS_TEXT_MAX).into_owned();
        cut(&mut self.graph);
        cut(&mut self.source);
        cut(&mut self.hostname);
        self.last_error.as_mut().map(cut);
        self.deploy_error.as_mut().map(cut);
        let total = self.failed.len();
        if total > STATUS_FAILED_MAX {
            self.failed.truncate(STATUS_FAILED_MAX);
            self.failed.push(format!("{}{}{}", FAILED_MORE.0, total - STATUS_FAILED_MAX, FAILED_MORE.1));
        }
        let ids = self.failed.len().min(STATUS_FAILED_MAX);
        for id in &mut self.failed[..ids] {
            *id = crate::text::head(id, STATUS_ID_MAX).into_owned();
        }
        if self.failures.len() > STATUS_FAILURES_MAX {
            self.failures_more = self.failures_more.saturating_add(self.failures.len() - STATUS_FAILURES_MAX);
            self.failures.truncate(STATUS_FAILURES_MAX);
        }
        for f in &mut self.failures {
            for id in [&mut f.kind, &mut f.name, &mut f.state] {
                *id = crate::text::head(id, STATUS_ID_MAX).into_owned();
            }
            if let Some(e) = f.error.as_mut() {
                *e = crate::text::head(e, STATUS_FAILURE_ERROR_MAX).into_owned();
            }
        }
        let old = self.changes.len().saturating_sub(STATUS_CHANGES_MAX);
        self.changes.drain(..old);
        for c in &mut self.changes {
            c.resource = crate::text::head(&c.resource, STATUS_ID_MAX).into_owned();
            for text in [&mut c.change, &mut c.why] {
                *text = crate::text::head(text, STATUS_CHANGE_TEXT_MAX).into_owned();
            }
        }
        self
    }

    /// How many resources failed, counting those a bounded `failed` list leaves out.
    pub fn failed_total(&self) -> usize {
        let more = self
            .failed
            .last()
            .and_then(|l| l.strip_prefix(FAILED_MORE.0)?.strip_suffix(FAILED_MORE.1)?.parse::<usize>().ok());
        match more {
            Some(n) if self.failed.len() == STATUS_FAILED_MAX + 1 => STATUS_FAILED_MAX + n,
            _ => self.failed.len(),
        }
    }
}

/// A value under `kv/` (what the `kv` resource writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvValue {
    pub value: String,
    /// The host that wrote it.
    pub host: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
}

#[async_trait]
pub trait World: Send + Sync {
    fn hostname(&self) -> &str;
    /// Replace everything this host exports. Never waits for the network.
    async fn export(&self, resources: Vec<Exported>) -> Result<(), WorldError>;
    /// Every resource exported by the other hosts, updated live.
    fn collected(&self) -> watch::Receiver<Vec<Exported>>;
    /// Publish this host's status. Never waits for the network.
    fn report(&self, status: HostStatus);
    async fn kv_get(&self, key: &str) -> Result<Option<KvValue>, WorldError>;
    async fn kv_put(&self, key: &str, value: &str) -> Result<(), WorldError>;
    /// Remove the key (nothing to do if it is not there).
    async fn kv_delete(&self, key: &str) -> Result<(), WorldError>;
    /// Keys under `kv/` that changed (or may have: after a reconnect every key is sent).
    fn kv_changes(&self) -> broadcast::Receiver<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_status() -> HostStatus {
        HostStatus {
            hostname: "h".into(),
            graph: "g".repeat(10_000),
            source: "s".repeat(10_000),
            last_error: Some(format!("exec[x]: {}", "ü".repeat(3_000_000))),
            deploy_error: Some("d".repeat(1_000_000)),
            failed: (0..5000).map(|i| format!("file[{i}{}]", "p".repeat(1000))).collect(),
            failures: (0..5000)
                .map(|i| Failure {
                    kind: "k".repeat(1000),
                    name: format!("{i}{}", "n".repeat(100_000)),
                    state: "failed".into(),
                    error: Some("e".repeat(1_000_000)),
                })
                .collect(),
            changes: (0..1000)
                .map(|i| RecentChange {
                    resource: format!("file[{i}{}]", "r".repeat(100_000)),
                    change: "c".repeat(1_000_000),
                    why: "w".repeat(1_000_000),
                    at: i,
                    noop: false,
                })
                .collect(),
            ..HostStatus::default()
        }
    }

    #[test]
    fn a_bounded_status_stays_far_below_the_etcd_request_limit() {
        let b = big_status().bounded();
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.len() < 150_000, "{} bytes", json.len());
        assert!(b.last_error.as_ref().unwrap().starts_with("exec[x]: üü"));
        assert!(b.last_error.as_ref().unwrap().ends_with(" more bytes]"));
        assert!(b.deploy_error.as_ref().unwrap().ends_with(" more bytes]"));
        assert!(b.graph.len() <= STATUS_TEXT_MAX && b.source.len() <= STATUS_TEXT_MAX);
        assert_eq!(b.failed.len(), STATUS_FAILED_MAX + 1);
        assert_eq!(b.failed.last().unwrap(), "… and 4900 more");
        assert!(b.failed[0].starts_with("file[0pp") && b.failed[0].len() <= STATUS_ID_MAX);
        assert_eq!(b.failed_total(), 5000);
        assert_eq!(b.failures.len(), STATUS_FAILURES_MAX);
        assert_eq!(b.failures_more, 5000 - STATUS_FAILURES_MAX);
        let f = &b.failures[0];
        assert!(f.name.starts_with("0nn") && f.name.len() <= STATUS_ID_MAX, "{}", f.name.len());
        assert!(f.kind.len() <= STATUS_ID_MAX);
        assert!(f.error.as_ref().unwrap().len() <= STATUS_FAILURE_ERROR_MAX);
        assert!(f.error.as_ref().unwrap().ends_with(" more bytes]"));
        assert_eq!(b.changes.len(), STATUS_CHANGES_MAX);
        let newest = b.changes.last().unwrap();
        assert_eq!(newest.at, 999, "the newest changes are kept");
        assert!(newest.resource.starts_with("file[999rr") && newest.resource.len() <= STATUS_ID_MAX);
        assert!(newest.change.len() <= STATUS_CHANGE_TEXT_MAX && newest.why.len() <= STATUS_CHANGE_TEXT_MAX);
    }

    #[test]
    fn a_status_from_an_older_agent_reads_with_empty_new_fields() {
        let old = r#"{"hostname":"h","version":"0.1.0","pid":1,"graph":"g","source":"s","deploy":3,
            "converged":true,"resources":2,"failed":[],"last_error":null,"started":1,"updated":2}"#;
        let s: HostStatus = serde_json::from_str(old).unwrap();
        assert_eq!(s.deploy, Some(3));
        assert!(s.failures.is_empty() && !s.follows_deploys && !s.idle && s.refused_deploy.is_none());
        assert!(s.changes.is_empty());
    }

    #[test]
    fn a_small_status_is_published_unchanged() {
        let s = HostStatus {
            hostname: "h".into(),
            failed: vec!["exec[a]".into(), "file[b]".into()],
            last_error: Some("exec[a]: boom".into()),
            ..HostStatus::default()
        };
        assert_eq!(s.clone().bounded(), s);
        assert_eq!(s.failed_total(), 2);
        let exactly = HostStatus { failed: vec!["x".into(); STATUS_FAILED_MAX], ..HostStatus::default() };
        assert_eq!(exactly.clone().bounded(), exactly);
        assert_eq!(exactly.failed_total(), STATUS_FAILED_MAX);
    }
}
