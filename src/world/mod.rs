//! The world: what agents share. Standalone agents use the in-process [`local::LocalWorld`];
//! a cluster uses [`etcd::EtcdWorld`]. The engine and the resources only see the [`World`]
//! trait.
//!
//! A world never blocks the engine on the network: exports and status reports are recorded
//! and published in the background (again after an outage); collected resources are the last
//! state seen. Only resources that need a live answer (`kv`) get an error while the cluster is
//! unreachable, and retry like any failing resource.

pub mod etcd;
pub mod local;

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
    #[error("the cluster is unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
}

#[async_trait]
pub trait World: Send + Sync {
    fn hostname(&self) -> &str;
    /// Replace everything this host exports. Never waits for the network.
    async fn export(&self, resources: Vec<Exported>) -> anyhow::Result<()>;
    /// Every resource exported by the other hosts, updated live.
    fn collected(&self) -> watch::Receiver<Vec<Exported>>;
    /// Publish this host's status. Never waits for the network.
    fn report(&self, status: HostStatus);
    async fn kv_get(&self, key: &str) -> Result<Option<KvValue>, WorldError>;
    async fn kv_put(&self, key: &str, value: &str) -> Result<(), WorldError>;
    /// Keys under `kv/` that changed (or may have: after a reconnect every key is sent).
    fn kv_changes(&self) -> broadcast::Receiver<String>;
}
