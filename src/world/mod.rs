//! The world: what agents share. Standalone agents use the in-process [`local::LocalWorld`];
//! a cluster world (etcd) implements the same trait.

pub mod local;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A resource exported by a host (`@@name` in YAML), as stored in the world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exported {
    pub host: String,
    pub kind: String,
    pub name: String,
    /// The resource's params (its serde form).
    pub params: serde_json::Value,
}

#[async_trait]
pub trait World: Send + Sync {
    fn hostname(&self) -> &str;
    /// Replace everything this host exports.
    async fn export(&self, resources: Vec<Exported>) -> anyhow::Result<()>;
    /// Every exported resource of every host, updated live.
    fn collected(&self) -> watch::Receiver<Vec<Exported>>;
}
