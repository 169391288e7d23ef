//! The cluster world: etcd (v3 API). Key layout under the namespace (default `/_mgmt`),
//! documented in docs/etcd.md as a stable interface:
//!
//! - `hosts/<hostname>`: [`HostStatus`] as JSON, on this agent's lease (a dead agent's key
//!   disappears when the lease expires; a stopped agent revokes it).
//! - `exported/<hostname>/<kind>/<name>`: [`Exported`] as JSON. Not on a lease: an agent that
//!   restarts does not make every collector drop and re-add its resources.
//! - `kv/<key>`: [`KvValue`] as JSON, written by the `kv` resource.
//!
//! Background tasks keep etcd in line with what the agent wants (registration and status,
//! exports) and mirror what it reads (exports of every host, kv). Each recovers on its own
//! from an outage: it retries with backoff, and a mirror re-reads its prefix and watches
//! again from the revision it read (which also covers compaction). An outage is logged once,
//! when it starts, and once when it ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::{Notify, broadcast, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Exported, HostStatus, KvValue, World, WorldError};

/// How to reach the cluster and who we are in it.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub seeds: Vec<String>,
    /// Key prefix, e.g. `/_mgmt` (no trailing `/`).
    pub namespace: String,
    pub hostname: String,
    pub lease_ttl: u64,
    /// Where the agent remembers its lease, so that after a crash it can take its own
    /// registration over instead of waiting for the lease to expire.
    pub lease_file: Option<PathBuf>,
}

/// Keys of the layout, in one place.
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Keys {
        let ns = namespace.trim_end_matches('/');
        Keys { ns: if ns.is_empty() { String::new() } else { ns.to_string() } }
    }
    pub fn hosts(&self) -> String {
        format!("{}/hosts/", self.ns)
    }
    pub fn host(&self, hostname: &str) -> String {
        format!("{}/hosts/{hostname}", self.ns)
    }
    pub fn exported(&self) -> String {
        format!("{}/exported/", self.ns)
    }
    pub fn exported_by(&self, hostname: &str) -> String {
        format!("{}/exported/{hostname}/", self.ns)
    }
    pub fn export(&self, e: &Exported) -> String {
        format!("{}/exported/{}/{}/{}", self.ns, e.host, e.kind, e.name)
    }
    pub fn kv_prefix(&self) -> String {
        format!("{}/kv/", self.ns)
    }
    pub fn kv(&self, key: &str) -> String {
        format!("{}/kv/{key}", self.ns)
    }
}

/// Check a hostname for use in keys.
pub fn validate_hostname(h: &str) -> Result<()> {
    if h.is_empty() || h.contains('/') || h.chars().any(char::is_whitespace) {
        bail!("hostname `{h}` cannot be used in a cluster: it must be non-empty, without `/` or spaces");
    }
    Ok(())
}

pub async fn connect(seeds: &[String]) -> Result<Client> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true);
    Client::connect(seeds, Some(opts))
        .await
        .with_context(|| format!("connecting to etcd at {}", seeds.join(",")))
}

/// Logs an outage once when it starts and once when it ends, however many tasks notice.
struct Health {
    down: AtomicBool,
    seeds: String,
}

impl Health {
    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        // gRPC errors carry their whole source chain; the first part says it all.
        let e = e.to_string();
        let e = e.split(", source:").next().unwrap_or(&e);
        if !self.down.swap(true, Ordering::SeqCst) {
            warn!(
                "etcd at {} unreachable ({what}: {e}); still enforcing the running graph, retrying in the background",
                self.seeds
            );
        } else {
            debug!("etcd still unreachable ({what}: {e})");
        }
    }
    fn ok(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            info!("etcd at {} reachable again", self.seeds);
        }
    }
}

/// Exponential backoff between retries: 100 ms doubling to 2 s.
struct Backoff(Duration);
impl Backoff {
    fn new() -> Backoff {
        Backoff(Duration::from_millis(100))
    }
    async fn wait(&mut self, cancel: &CancellationToken) {
        tokio::select! {
            _ = tokio::time::sleep(self.0) => {}
            _ = cancel.cancelled() => {}
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
}

pub struct EtcdWorld {
    cfg: EtcdConfig,
    keys: Keys,
    client: watch::Receiver<Option<Client>>,
    health: Arc<Health>,
    /// The exports wanted, with a generation number, and the last generation published.
    desired_exports: watch::Sender<(u64, Vec<Exported>)>,
    published_exports: watch::Sender<u64>,
    /// What `exported/<hostname>/` held after the last publication.
    published_keys: std::sync::Mutex<Option<BTreeMap<String, Vec<u8>>>>,
    collected: watch::Sender<Vec<Exported>>,
    status: watch::Sender<Option<HostStatus>>,
    kv_changes: broadcast::Sender<String>,
    lease: Arc<std::sync::Mutex<Option<i64>>>,
    cancel: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error(
        "another agent is already registered as `{host}` in this cluster ({key}); each agent needs its own --hostname"
    )]
    Duplicate { host: String, key: String },
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
}

impl EtcdWorld {
    /// Start the background tasks and wait (up to `startup_wait`) for the registration: a
    /// duplicate hostname is an error; an unreachable cluster is a warning (the agent runs
    /// its graph and joins when etcd answers).
    pub async fn start(cfg: EtcdConfig, startup_wait: Duration) -> Result<Arc<EtcdWorld>> {
        validate_hostname(&cfg.hostname)?;
        let keys = Keys::new(&cfg.namespace);
        let (client_tx, client_rx) = watch::channel(None);
        let health = Arc::new(Health { down: AtomicBool::new(false), seeds: cfg.seeds.join(",") });
        let world = Arc::new(EtcdWorld {
            keys,
            client: client_rx,
            health,
            desired_exports: watch::channel((0, Vec::new())).0,
            published_exports: watch::channel(0).0,
            published_keys: std::sync::Mutex::new(None),
            collected: watch::channel(Vec::new()).0,
            status: watch::channel(None).0,
            kv_changes: broadcast::channel(1024).0,
            lease: Arc::default(),
            cancel: CancellationToken::new(),
            cfg,
        });

        // Connect (retrying), then hand the client to every task.
        {
            let w = world.clone();
            tokio::spawn(async move {
                let mut backoff = Backoff::new();
                loop {
                    match connect(&w.cfg.seeds).await {
                        Ok(c) => {
                            let _ = client_tx.send(Some(c));
                            return;
                        }
                        Err(e) => w.health.failed("connect", &format!("{e:#}")),
                    }
                    backoff.wait(&w.cancel).await;
                    if w.cancel.is_cancelled() {
                        return;
                    }
                }
            });
        }

        let (first_tx, first_rx) = oneshot::channel();
        let exports_nudge = Arc::new(Notify::new());
        tokio::spawn(world.clone().register_task(first_tx, exports_nudge.clone()));
        tokio::spawn(world.clone().export_task(exports_nudge.clone()));
        let (exported_rx, mut exported_loaded) = world.clone().spawn_mirror(world.keys.exported());
        tokio::spawn(world.clone().collect_task(exported_rx, exports_nudge));
        let (kv_rx, _) = world.clone().spawn_mirror(world.keys.kv_prefix());
        tokio::spawn(world.clone().kv_task(kv_rx));

        let deadline = tokio::time::Instant::now() + startup_wait;
        match tokio::time::timeout_at(deadline, first_rx).await {
            Ok(Ok(Err(e))) => {
                world.cancel.cancel();
                return Err(e);
            }
            Ok(Ok(Ok(()))) => {
                info!("joined the cluster at {} as `{}`", world.cfg.seeds.join(","), world.cfg.hostname)
            }
            Ok(Err(_)) => bail!("the cluster registration stopped"),
            Err(_) => warn!(
                "etcd at {} did not answer within {:?}; running the graph and joining when it does",
                world.cfg.seeds.join(","),
                startup_wait
            ),
        }
        // Start with what the cluster exports, not with nothing and then everything.
        let _ = tokio::time::timeout_at(deadline, exported_loaded.wait_for(|l| *l)).await;
        Ok(world)
    }

    /// Publish what is pending (a run that ends on its own may have changed its exports a
    /// moment ago), stop the tasks and revoke the lease, so the host disappears from the
    /// cluster at once.
    pub async fn shutdown(&self) {
        let wanted = self.desired_exports.borrow().0;
        if !self.health.down.load(Ordering::SeqCst) && self.client.borrow().is_some() {
            let mut published = self.published_exports.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(2), published.wait_for(|p| *p >= wanted)).await;
        }
        self.cancel.cancel();
        let lease = *self.lease.lock().unwrap();
        let client = self.client.borrow().clone();
        if let (Some(id), Some(mut c)) = (lease, client) {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(id)).await;
            if let Some(f) = &self.cfg.lease_file {
                let _ = std::fs::remove_file(f);
            }
        }
    }

    async fn client(&self) -> Option<Client> {
        let mut rx = self.client.clone();
        tokio::select! {
            r = rx.wait_for(|c| c.is_some()) => r.ok().and_then(|c| c.clone()),
            _ = self.cancel.cancelled() => None,
        }
    }

    fn status_json(&self) -> String {
        let s = self.status.borrow().clone().unwrap_or_else(|| HostStatus {
            hostname: self.cfg.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            ..HostStatus::default()
        });
        serde_json::to_string(&s).expect("status serializes")
    }

    fn current_lease(&self) -> Option<i64> {
        *self.lease.lock().unwrap()
    }

    fn remembered_lease(&self) -> Option<i64> {
        let f = self.cfg.lease_file.as_ref()?;
        let text = std::fs::read_to_string(f).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["namespace"] == self.cfg.namespace.as_str()).then(|| v["lease"].as_i64()).flatten()
    }

    fn remember_lease(&self, id: i64) {
        if let Some(f) = &self.cfg.lease_file {
            let v = serde_json::json!({"namespace": self.cfg.namespace, "lease": id});
            if let Err(e) =
                crate::resources::file::write_atomic(f, v.to_string().as_bytes(), 0o600, None, None)
            {
                warn!("cannot remember the etcd lease in {}: {e}", f.display());
            }
        }
    }

    /// Claim `hosts/<hostname>` with a new lease. The key may exist only if it is ours: on our
    /// current lease (a short outage), or on the lease a crashed run of this agent left.
    async fn claim(&self, c: &mut Client, previous: Option<i64>) -> Result<i64, RegisterError> {
        let key = self.keys.host(&self.cfg.hostname);
        let lease = c.lease_grant(self.cfg.lease_ttl as i64, None).await?.id();
        let put = TxnOp::put(key.clone(), self.status_json(), Some(PutOptions::new().with_lease(lease)));
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put.clone()]);
        if c.txn(txn).await?.succeeded() {
            return Ok(lease);
        }
        let mut owners: Vec<i64> = previous.into_iter().collect();
        owners.extend(self.remembered_lease());
        for old in owners {
            let txn =
                Txn::new().when([Compare::lease(key.clone(), CompareOp::Equal, old)]).and_then([put.clone()]);
            if c.txn(txn).await?.succeeded() {
                let _ = c.lease_revoke(old).await;
                return Ok(lease);
            }
        }
        let _ = c.lease_revoke(lease).await;
        Err(RegisterError::Duplicate { host: self.cfg.hostname.clone(), key })
    }

    /// Register, keep the lease alive, publish status changes; re-register after outages.
    async fn register_task(self: Arc<Self>, first: oneshot::Sender<Result<()>>, exports_nudge: Arc<Notify>) {
        let mut first = Some(first);
        let Some(mut c) = self.client().await else { return };
        let mut backoff = Backoff::new();
        let mut lease: Option<i64> = None;
        let mut duplicate_logged = false;
        let key = self.keys.host(&self.cfg.hostname);
        let mut status_rx = self.status.subscribe();
        'outer: while !self.cancel.is_cancelled() {
            let id = match lease {
                Some(id) => id,
                None => match self.claim(&mut c, self.current_lease()).await {
                    Ok(id) => {
                        self.remember_lease(id);
                        *self.lease.lock().unwrap() = Some(id);
                        lease = Some(id);
                        duplicate_logged = false;
                        if let Some(f) = first.take() {
                            let _ = f.send(Ok(()));
                        }
                        id
                    }
                    Err(e @ RegisterError::Duplicate { .. }) => {
                        // At start-up this is fatal; later (or once start-up gave up waiting)
                        // the agent keeps running and keeps trying.
                        if let Some(f) = first.take()
                            && f.send(Err(anyhow::anyhow!("{e}"))).is_ok()
                        {
                            return;
                        }
                        if !duplicate_logged {
                            error!("{e}; retrying");
                            duplicate_logged = true;
                        }
                        backoff.wait(&self.cancel).await;
                        continue;
                    }
                    Err(RegisterError::Etcd(e)) => {
                        self.health.failed("registering", &e);
                        backoff.wait(&self.cancel).await;
                        continue;
                    }
                },
            };
            // The lease is ours: keep it alive and keep the status current.
            let session = async {
                let (mut keeper, mut stream) = c.clone().lease_keep_alive(id).await?;
                keeper.keep_alive().await?;
                match stream.message().await? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Ok::<bool, etcd_client::Error>(false),
                }
                c.clone()
                    .put(key.clone(), self.status_json(), Some(PutOptions::new().with_lease(id)))
                    .await?;
                self.health.ok();
                backoff.reset();
                exports_nudge.notify_one();
                let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.lease_ttl * 1000 / 3));
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            keeper.keep_alive().await?;
                            match stream.message().await? {
                                Some(r) if r.ttl() > 0 => {}
                                _ => return Ok(false),
                            }
                        }
                        r = status_rx.changed() => {
                            if r.is_err() { return Ok(true); }
                            // Coalesce a burst of reports into one write.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            drop(status_rx.borrow_and_update());
                            c.clone().put(key.clone(), self.status_json(), Some(PutOptions::new().with_lease(id))).await?;
                        }
                        _ = self.cancel.cancelled() => return Ok(true),
                    }
                }
            };
            match session.await {
                Ok(true) => break 'outer,
                // The lease expired (a long outage): register again.
                Ok(false) => {
                    info!("the etcd lease of `{}` expired; registering again", self.cfg.hostname);
                    lease = None;
                }
                Err(e) => {
                    self.health.failed("keeping the lease alive", &e);
                    backoff.wait(&self.cancel).await;
                }
            }
        }
    }

    /// Make `exported/<hostname>/` hold exactly what this host exports. What it published
    /// last is remembered, so a change costs one transaction; after an error or a reconnect
    /// the keys are read again first.
    async fn export_task(self: Arc<Self>, nudge: Arc<Notify>) {
        let Some(c) = self.client().await else { return };
        let mut desired_rx = self.desired_exports.subscribe();
        let mut backoff = Backoff::new();
        let mut known: Option<BTreeMap<String, Vec<u8>>> = None;
        loop {
            let (generation, desired) = desired_rx.borrow_and_update().clone();
            match self.reconcile_exports(&mut c.clone(), &desired, known.take()).await {
                Ok(now) => {
                    *self.published_keys.lock().unwrap() = Some(now.clone());
                    known = Some(now);
                    backoff.reset();
                    self.published_exports.send_replace(generation);
                    tokio::select! {
                        _ = desired_rx.changed() => {}
                        _ = nudge.notified() => known = None,
                        _ = self.cancel.cancelled() => return,
                    }
                }
                Err(e) => {
                    self.health.failed("publishing exports", &e);
                    backoff.wait(&self.cancel).await;
                    if self.cancel.is_cancelled() {
                        return;
                    }
                }
            }
        }
    }

    /// Returns what `exported/<hostname>/` holds afterwards.
    async fn reconcile_exports(
        &self,
        c: &mut Client,
        desired: &[Exported],
        known: Option<BTreeMap<String, Vec<u8>>>,
    ) -> Result<BTreeMap<String, Vec<u8>>, etcd_client::Error> {
        let mut existing = match known {
            Some(k) => k,
            None => {
                let prefix = self.keys.exported_by(&self.cfg.hostname);
                let have = c.get(prefix, Some(GetOptions::new().with_prefix())).await?;
                have.kvs()
                    .iter()
                    .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec()))
                    .collect()
            }
        };
        let mut after = BTreeMap::new();
        let mut ops = Vec::new();
        for e in desired {
            let key = self.keys.export(e);
            let value = serde_json::to_vec(e).expect("exports serialize");
            if existing.remove(&key).as_deref() != Some(value.as_slice()) {
                ops.push(TxnOp::put(key.clone(), value.clone(), None));
            }
            after.insert(key, value);
        }
        ops.extend(existing.into_keys().map(|k| TxnOp::delete(k, None)));
        // etcd limits the operations of one transaction (128 by default).
        for chunk in ops.chunks(100) {
            c.txn(Txn::new().and_then(chunk.to_vec())).await?;
        }
        Ok(after)
    }

    /// Mirror every key under `prefix`: read it, then watch from the revision read; on
    /// compaction, a broken stream or an outage, read again.
    /// Also returns a flag that turns true once the prefix was read.
    #[allow(clippy::type_complexity)]
    fn spawn_mirror(
        self: Arc<Self>,
        prefix: String,
    ) -> (watch::Receiver<BTreeMap<String, Vec<u8>>>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(BTreeMap::new());
        let (loaded_tx, loaded_rx) = watch::channel(false);
        tokio::spawn(async move {
            let Some(c) = self.client().await else { return };
            let mut backoff = Backoff::new();
            while !self.cancel.is_cancelled() {
                let r = async {
                    let mut c = c.clone();
                    let resp = c.get(prefix.clone(), Some(GetOptions::new().with_prefix())).await?;
                    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                    let map: BTreeMap<String, Vec<u8>> = resp
                        .kvs()
                        .iter()
                        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec()))
                        .collect();
                    tx.send_if_modified(|cur| {
                        let changed = *cur != map;
                        *cur = map;
                        changed
                    });
                    let _ = loaded_tx.send(true);
                    let opts = WatchOptions::new().with_prefix().with_start_revision(rev + 1);
                    let mut stream = c.watch(prefix.clone(), Some(opts)).await?;
                    self.health.ok();
                    backoff.reset();
                    loop {
                        let msg = tokio::select! {
                            m = stream.message() => m?,
                            _ = self.cancel.cancelled() => return Ok::<(), etcd_client::Error>(()),
                        };
                        let Some(resp) = msg else { return Ok(()) };
                        if resp.canceled() || resp.compact_revision() > 0 {
                            debug!("watch of {prefix} canceled ({}); reading again", resp.cancel_reason());
                            return Ok(());
                        }
                        if resp.events().is_empty() {
                            continue;
                        }
                        tx.send_modify(|map| {
                            for ev in resp.events() {
                                let Some(kv) = ev.kv() else { continue };
                                let key = String::from_utf8_lossy(kv.key()).into_owned();
                                match ev.event_type() {
                                    EventType::Put => {
                                        map.insert(key, kv.value().to_vec());
                                    }
                                    EventType::Delete => {
                                        map.remove(&key);
                                    }
                                }
                            }
                        });
                    }
                }
                .await;
                if let Err(e) = r {
                    self.health.failed(&format!("watching {prefix}"), &e);
                    backoff.wait(&self.cancel).await;
                }
            }
        });
        (rx, loaded_rx)
    }

    /// Turn the mirror of `exported/` into the collected resources.
    /// Also notices this host's exports changed behind its back (deleted with etcdctl, say)
    /// and has them published again.
    async fn collect_task(
        self: Arc<Self>,
        mut rx: watch::Receiver<BTreeMap<String, Vec<u8>>>,
        nudge: Arc<Notify>,
    ) {
        let own = self.keys.exported_by(&self.cfg.hostname);
        loop {
            {
                let map = rx.borrow();
                let mine: BTreeMap<String, Vec<u8>> = map
                    .range(own.clone()..)
                    .take_while(|(k, _)| k.starts_with(&own))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let published = self.published_keys.lock().unwrap();
                if published.as_ref().is_some_and(|p| *p != mine) {
                    nudge.notify_one();
                }
            }
            let list: Vec<Exported> = rx
                .borrow_and_update()
                .iter()
                .filter_map(|(k, v)| match serde_json::from_slice::<Exported>(v) {
                    // Its own exports are in its graph already; seeing them come back
                    // would only cost a useless re-assembly per change.
                    Ok(e) if e.host == self.cfg.hostname => None,
                    Ok(e) => Some(e),
                    Err(err) => {
                        warn!("ignoring {k}: not an exported resource ({err})");
                        None
                    }
                })
                .collect();
            self.collected.send_if_modified(|cur| {
                let changed = *cur != list;
                *cur = list;
                changed
            });
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    /// Turn the mirror of `kv/` into change notifications, key by key.
    async fn kv_task(self: Arc<Self>, mut rx: watch::Receiver<BTreeMap<String, Vec<u8>>>) {
        let prefix = self.keys.kv_prefix();
        let mut last: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        loop {
            let now = rx.borrow_and_update().clone();
            let changed = now
                .iter()
                .filter(|(k, v)| last.get(*k) != Some(v))
                .map(|(k, _)| k)
                .chain(last.keys().filter(|k| !now.contains_key(*k)));
            for k in changed {
                if let Some(key) = k.strip_prefix(&prefix) {
                    let _ = self.kv_changes.send(key.to_string());
                }
            }
            last = now;
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> WorldError {
        WorldError::Unreachable(format!("etcd at {}: {e}", self.cfg.seeds.join(",")))
    }

    fn current_client(&self) -> Result<Client, WorldError> {
        self.client.borrow().clone().ok_or_else(|| self.unreachable("not connected yet"))
    }
}

#[async_trait]
impl World for EtcdWorld {
    fn hostname(&self) -> &str {
        &self.cfg.hostname
    }

    async fn export(&self, resources: Vec<Exported>) -> Result<()> {
        self.desired_exports.send_if_modified(|(generation, cur)| {
            let changed = *cur != resources;
            if changed {
                *generation += 1;
                *cur = resources;
            }
            changed
        });
        Ok(())
    }

    fn collected(&self) -> watch::Receiver<Vec<Exported>> {
        self.collected.subscribe()
    }

    fn report(&self, status: HostStatus) {
        self.status.send_if_modified(|cur| {
            // `updated` alone is no news.
            let same =
                cur.as_ref().is_some_and(|c| HostStatus { updated: status.updated, ..c.clone() } == status);
            if !same {
                *cur = Some(status);
            }
            !same
        });
    }

    async fn kv_get(&self, key: &str) -> Result<Option<KvValue>, WorldError> {
        let mut c = self.current_client()?;
        let resp = c.get(self.keys.kv(key), None).await.map_err(|e| self.unreachable(e))?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some(serde_json::from_slice(kv.value()).unwrap_or(KvValue {
                // Written by something else than mgmt: compare as raw text.
                value: String::from_utf8_lossy(kv.value()).into_owned(),
                host: String::new(),
            }))),
        }
    }

    async fn kv_put(&self, key: &str, value: &str) -> Result<(), WorldError> {
        let mut c = self.current_client()?;
        let v = KvValue { value: value.to_string(), host: self.cfg.hostname.clone() };
        let json = serde_json::to_string(&v).map_err(|e| WorldError::Other(e.to_string()))?;
        c.put(self.keys.kv(key), json, None).await.map_err(|e| self.unreachable(e))?;
        Ok(())
    }

    fn kv_changes(&self) -> broadcast::Receiver<String> {
        self.kv_changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let k = Keys::new("/_mgmt/");
        assert_eq!(k.host("h1"), "/_mgmt/hosts/h1");
        let e = Exported {
            host: "h1".into(),
            kind: "file".into(),
            name: "/a/b".into(),
            params: Default::default(),
        };
        assert_eq!(k.export(&e), "/_mgmt/exported/h1/file//a/b");
        assert_eq!(k.exported_by("h1"), "/_mgmt/exported/h1/");
        assert_eq!(k.kv("x"), "/_mgmt/kv/x");
    }

    #[test]
    fn hostnames_must_fit_in_a_key() {
        assert!(validate_hostname("h1").is_ok());
        assert!(validate_hostname("").is_err());
        assert!(validate_hostname("a/b").is_err());
        assert!(validate_hostname("a b").is_err());
    }
}
