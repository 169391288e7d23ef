//! The in-process world of a standalone agent: this host's exports are all there is.

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Exported, World};

pub struct LocalWorld {
    hostname: String,
    exports: watch::Sender<Vec<Exported>>,
}

impl LocalWorld {
    pub fn new(hostname: impl Into<String>) -> Self {
        LocalWorld { hostname: hostname.into(), exports: watch::channel(Vec::new()).0 }
    }
}

#[async_trait]
impl World for LocalWorld {
    fn hostname(&self) -> &str {
        &self.hostname
    }

    async fn export(&self, resources: Vec<Exported>) -> anyhow::Result<()> {
        self.exports.send_if_modified(|cur| {
            let changed = *cur != resources;
            *cur = resources;
            changed
        });
        Ok(())
    }

    fn collected(&self) -> watch::Receiver<Vec<Exported>> {
        self.exports.subscribe()
    }
}
