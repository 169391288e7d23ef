//! The in-process world of a standalone agent: there are no other hosts, so nothing is
//! collected; `kv` values live in memory for the life of the process.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

use super::{Exported, HostStatus, KvValue, World, WorldError};

pub struct LocalWorld {
    hostname: String,
    /// Always empty: no other host exports anything here.
    collected: watch::Sender<Vec<Exported>>,
    kv: Mutex<HashMap<String, KvValue>>,
    kv_changes: broadcast::Sender<String>,
}

impl LocalWorld {
    pub fn new(hostname: impl Into<String>) -> Self {
        LocalWorld {
            hostname: hostname.into(),
            collected: watch::channel(Vec::new()).0,
            kv: Mutex::default(),
            kv_changes: broadcast::channel(1024).0,
        }
    }
}

#[async_trait]
impl World for LocalWorld {
    fn hostname(&self) -> &str {
        &self.hostname
    }

    async fn export(&self, _resources: Vec<Exported>) -> Result<(), WorldError> {
        Ok(())
    }

    fn collected(&self) -> watch::Receiver<Vec<Exported>> {
        self.collected.subscribe()
    }

    fn report(&self, _status: HostStatus) {}

    async fn kv_get(&self, key: &str) -> Result<Option<KvValue>, WorldError> {
        Ok(self.kv.lock().unwrap().get(key).cloned())
    }

    async fn kv_put(&self, key: &str, value: &str) -> Result<(), WorldError> {
        let v = KvValue { value: value.to_string(), host: self.hostname.clone() };
        self.kv.lock().unwrap().insert(key.to_string(), v);
        let _ = self.kv_changes.send(key.to_string());
        Ok(())
    }

    async fn kv_delete(&self, key: &str) -> Result<(), WorldError> {
        if self.kv.lock().unwrap().remove(key).is_some() {
            let _ = self.kv_changes.send(key.to_string());
        }
        Ok(())
    }

    fn kv_changes(&self) -> broadcast::Receiver<String> {
        self.kv_changes.subscribe()
    }
}
