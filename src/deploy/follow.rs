//! The agent's side of deploys (`mgmt run ... empty`): follow `deploy/latest` (through a
//! [`mirror`] of that key, which reads it again after any break), fetch and
//! verify each new deploy's record and bundle, unpack it under `<prefix>/deploys/<bundle>/`,
//! parse its entry, and hand the graph to the agent's loop.
//!
//! What etcd holds is untrusted until verified: a deploy that fails any check is refused
//! (and reported), and the agent keeps running what it ran. etcd failing to answer is not a
//! refusal: the fetch is tried again, with jittered backoff, until etcd answers. The follower
//! itself cannot die: it runs under [`supervise`], which restarts it after a panic.

use crate::world::access::EtcdAccess;
use std::future::Future;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::Client;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::blobs;
use super::bundle::{FileEntry, MAX_FILE_SIZE, MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK, Manifest};
use super::cache::{self, BlobCache, Cached, Hit};
use super::check::check_unpacked;
use super::store::{self, DeployKeys, DeployRecord, FetchError, RecordError};
use crate::frontend::GraphSpec;
use crate::frontend::registry::BundleFrontend;
use crate::world::backoff::Backoff;
use crate::world::etcd::connect;
use crate::world::mirror::{self, Mirrored, Watched};

pub enum DeployEvent {
    /// A verified, unpacked and parsed deploy. Once the agent runs it, it hands `ran` to
    /// [`remember`].
    Ready {
        record: Box<DeployRecord>,
        spec: Box<GraphSpec>,
        dir: PathBuf,
        ran: Box<LastRun>,
    },
    Refused {
        id: u64,
        error: String,
    },
    /// `deploy/latest` cannot be read (missing while records exist, or not a deploy ID).
    Unreadable {
        error: String,
    },
}

/// What an agent remembers of the last deploy it ran, to run it again when it starts while
/// etcd is unreachable: `<prefix>/deploys/last-run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastRun {
    pub record: DeployRecord,
    /// sha256 of the record's bytes in etcd (the next record's parent).
    pub record_sha256: String,
    pub manifest: Manifest,
}

/// Mode of `<prefix>/deploys/`, of each unpacked bundle and of the directories in it.
const PRIVATE_DIR: u32 = 0o700;
/// Modes of unpacked files: the agent's alone.
const PRIVATE_FILE: u32 = 0o600;
const PRIVATE_EXECUTABLE: u32 = 0o700;
const LAST_RUN: &str = "last-run.json";
/// Unpacked bundles kept in `<prefix>/deploys/` (the newest, and the one last run; older
/// ones are fetched again if a rollback needs them).
const KEEP_UNPACKED: usize = 3;

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

impl From<RecordError> for LoadError {
    fn from(e: RecordError) -> LoadError {
        LoadError::Fetch(e.into())
    }
}

impl From<super::bundle::BundleError> for LoadError {
    fn from(e: super::bundle::BundleError) -> LoadError {
        LoadError::Fetch(e.into())
    }
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LoadError {
    move |source| LoadError::Io { what: what.to_string(), source }
}

/// A deploy ready to run.
struct Loaded {
    spec: GraphSpec,
    dir: PathBuf,
    ran: LastRun,
}

/// What the follower knows across restarts of its task.
#[derive(Default)]
struct State {
    /// The last deploy run or refused.
    handled: Option<u64>,
    /// The deploy being loaded (refused if loading it panics).
    loading: Option<u64>,
    /// The last deploy verified and handed over: its ID and the sha256 of its record.
    verified: Option<(u64, String)>,
    /// The deploy whose fetch is being retried (logged once).
    retrying: Option<u64>,
    tried_cache: bool,
}

struct Follower {
    link: Arc<Dialer>,
    keys: DeployKeys,
    prefix: PathBuf,
    /// This host's name: an mcl program's graph depends on it.
    hostname: String,
    tx: mpsc::Sender<DeployEvent>,
    cancel: CancellationToken,
    state: Mutex<State>,
    /// The blob cache's pruning after the last unpack, still running in the background:
    /// the next unpack waits for it, so that it never deletes what that unpack caches.
    cache_pruning: Mutex<Option<tokio::task::JoinHandle<usize>>>,
}

/// Follow the cluster's deploys until `cancel`, sending each outcome to `tx`.
pub fn spawn(
    access: EtcdAccess,
    namespace: String,
    prefix: PathBuf,
    hostname: String,
    tx: mpsc::Sender<DeployEvent>,
    cancel: CancellationToken,
) {
    let f = Arc::new(Follower {
        link: Arc::new(Dialer {
            access,
            client: Mutex::default(),
            down: watch::channel(false).0,
            cancel: cancel.clone(),
        }),
        keys: DeployKeys::new(&namespace),
        prefix,
        hostname,
        tx,
        cancel: cancel.clone(),
        state: Mutex::default(),
        cache_pruning: Mutex::default(),
    });
    let on_panic = f.clone();
    tokio::spawn(supervise(
        "the deploy follower",
        cancel,
        move || f.clone().run(),
        move |why| on_panic.panicked(why),
    ));
}

/// Run the task `make` builds until it returns; when it panics, log it, call `on_panic`
/// with the panic's message, and start a new one after a pause.
pub async fn supervise<F, Fut>(
    what: &str,
    cancel: CancellationToken,
    mut make: F,
    mut on_panic: impl FnMut(String),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = Duration::from_millis(100);
    loop {
        match tokio::spawn(make()).await {
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                let why = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                error!("{what} failed ({why}); restarting it");
                on_panic(why);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = cancel.cancelled() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            _ => return,
        }
    }
}

/// What `deploy/latest` holds.
#[derive(Debug, Clone, PartialEq)]
enum Latest {
    Id(u64),
    Missing,
    Garbage(String),
}

fn parse_latest(v: &[u8]) -> Latest {
    match store::parse_deploy_id(v) {
        Some(id) => Latest::Id(id),
        None => Latest::Garbage(String::from_utf8_lossy(v).chars().take(40).collect()),
    }
}

/// What `deploy/latest` (`key`) holds in its mirror.
fn latest_of(m: &Mirrored, key: &str) -> Latest {
    m.kvs.get(key).map_or(Latest::Missing, |v| parse_latest(v))
}

/// The follower's way to etcd: one client, for the mirror of `deploy/latest` and the fetches
/// alike, made again after either fails.
struct Dialer {
    access: EtcdAccess,
    client: Mutex<Option<Client>>,
    /// Whether etcd is failing the follower (the agent may run its last deploy meanwhile).
    down: watch::Sender<bool>,
    cancel: CancellationToken,
}

impl Dialer {
    fn cached(&self) -> MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request failed: connect again for the next one.
    fn forget(&self, e: &dyn std::fmt::Display) {
        debug!("following deploys: {e}");
        self.cached().take();
        self.down.send_replace(true);
    }
}

#[async_trait::async_trait]
impl mirror::Link for Dialer {
    async fn client(&self) -> Option<Client> {
        let mut backoff = Backoff::new();
        while !self.cancel.is_cancelled() {
            if let Some(c) = self.cached().clone() {
                return Some(c);
            }
            match connect(&self.access).await {
                Ok(c) => return Some(self.cached().insert(c).clone()),
                Err(e) => {
                    self.forget(&e);
                    backoff.wait(&self.cancel).await;
                }
            }
        }
        None
    }

    fn failed(&self, what: &str, _keys: String, e: &etcd_client::Error) {
        self.forget(&format_args!("{what}: {e}"));
    }

    fn ok(&self) {
        self.down.send_if_modified(|down| std::mem::replace(down, false));
    }
}

impl Follower {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, ev: DeployEvent) {
        let _ = self.tx.send(ev).await;
    }

    /// The follower's task panicked: refuse what it was loading, so the new task does not
    /// load it (and panic) again.
    fn panicked(&self, why: String) {
        let id = {
            let mut s = self.state();
            let id = s.loading.take();
            if id.is_some() {
                s.handled = id;
            }
            id
        };
        if let Some(id) = id {
            let _ = self.tx.try_send(DeployEvent::Refused { id, error: format!("loading it failed: {why}") });
        }
    }

    async fn run(self: Arc<Self>) {
        clean_leftovers(&self.prefix);
        // The mirror ends with this task, so that a restart after a panic starts a new one.
        let stop = self.cancel.child_token();
        let _stop_mirror = stop.clone().drop_guard();
        let key = self.keys.latest();
        let mut latest = mirror::spawn(self.link.clone(), Watched::Key(key.clone()), stop);
        let mut down = self.link.down.subscribe();
        let mut backoff = Backoff::new();
        loop {
            tokio::select! {
                r = latest.changed() => if r.is_err() { return self.mirror_ended() },
                r = down.changed() => {
                    if r.is_err() { return }
                    if *down.borrow_and_update() {
                        self.run_cached_once().await;
                    }
                    continue;
                }
                _ = self.cancel.cancelled() => return,
            }
            // A newer deploy published while one loads takes its place.
            loop {
                let want = latest_of(&latest.borrow_and_update(), &key);
                tokio::select! {
                    () = self.settle_retrying(want, &mut backoff) => break,
                    r = latest.changed() => {
                        self.state().loading = None;
                        if r.is_err() { return self.mirror_ended() }
                    }
                    _ = self.cancel.cancelled() => return,
                }
            }
        }
    }

    /// The mirror of `deploy/latest` is gone: fine when stopping; else it panicked, and this
    /// task panics too, for [`supervise`] to start both again.
    fn mirror_ended(&self) {
        if !self.cancel.is_cancelled() {
            panic!("the mirror of {} ended", self.keys.latest());
        }
    }

    /// Act on a value of `deploy/latest`, again (after a backoff) while etcd does not answer.
    async fn settle_retrying(&self, want: Latest, backoff: &mut Backoff) {
        use mirror::Link;
        while let Some(mut c) = self.link.client().await {
            match self.settle(&mut c, want.clone()).await {
                Ok(()) => {
                    backoff.reset();
                    return;
                }
                Err(e) => {
                    self.link.forget(&e);
                    self.run_cached_once().await;
                    backoff.wait(&self.cancel).await;
                }
            }
        }
    }

    /// Act on a value of `deploy/latest`. Errors are etcd not answering; anything else has
    /// been reported.
    async fn settle(&self, c: &mut Client, want: Latest) -> Result<(), FetchError> {
        let id = match want {
            Latest::Id(id) => id,
            Latest::Missing => {
                if store::any_record(c, &self.keys).await? {
                    let e = format!("{} is missing, but deploy records exist", self.keys.latest());
                    self.unreadable(e).await;
                }
                return Ok(());
            }
            Latest::Garbage(v) => {
                let e = format!("{} holds `{v}`, which is not a deploy ID", self.keys.latest());
                self.unreadable(e).await;
                return Ok(());
            }
        };
        let verified = {
            let mut s = self.state();
            if s.handled == Some(id) {
                return Ok(());
            }
            s.loading = Some(id);
            s.verified.clone()
        };
        // A `latest` behind the newest record would run old code while newer deploys exist:
        // checked side by side with the loading, whose result is then not used.
        let mut c2 = c.clone();
        let (newest, r) =
            tokio::join!(store::newest_record_key(&mut c2, &self.keys), self.load(c, id, verified));
        let newest = match newest {
            Ok(n) => n,
            Err(e) => {
                self.state().loading = None;
                return Err(e);
            }
        };
        if newest > id {
            self.state().loading = None;
            let e = format!("{} names deploy {id}, but deploy/{newest} exists", self.keys.latest());
            self.unreadable(e).await;
            return Ok(());
        }
        let event = {
            let mut s = self.state();
            s.loading = None;
            match r {
                Err(LoadError::Fetch(e)) if e.is_transient() => {
                    drop(s);
                    self.retrying(id, &e);
                    return Err(e);
                }
                Ok(l) => {
                    s.verified = Some((id, l.ran.record_sha256.clone()));
                    ready(l)
                }
                Err(e) => DeployEvent::Refused { id, error: e.to_string() },
            }
        };
        {
            let mut s = self.state();
            s.handled = Some(id);
            s.retrying = None;
        }
        self.send(event).await;
        Ok(())
    }

    /// etcd failed while deploy `id` was being fetched: logged once per deploy.
    fn retrying(&self, id: u64, e: &dyn std::fmt::Display) {
        if self.state().retrying.replace(id) != Some(id) {
            warn!("deploy {id}: etcd did not answer while fetching it ({e}); trying again");
        }
    }

    async fn unreadable(&self, error: String) {
        // Whatever `latest` says once repaired is run (again), which clears the report.
        self.state().handled = None;
        self.send(DeployEvent::Unreadable { error }).await;
    }

    /// Fetch, verify, unpack and parse deploy `id`. `verified` is the last record this agent
    /// verified, to check the chain against when the record before `id` has been pruned.
    async fn load(
        &self,
        c: &mut Client,
        id: u64,
        verified: Option<(u64, String)>,
    ) -> Result<Loaded, LoadError> {
        // The record and the one before it, side by side.
        let mut c2 = c.clone();
        let previous = async {
            match id {
                1 => Ok(None),
                _ => store::record_hash(&mut c2, &self.keys, id - 1).await,
            }
        };
        let (this, previous) = tokio::join!(store::record_bytes(c, &self.keys, id), previous);
        let (record, record_sha256) = this?;
        if id > 1 {
            let prev = match previous? {
                Some(h) => Some(h),
                None => verified.filter(|(v, _)| *v == id - 1).map(|(_, h)| h),
            };
            store::check_parent(&record, prev.as_deref())?;
        }
        info!("deploy {id}: fetching bundle {}", record.bundle);
        let manifest = store::fetch_manifest(c, &self.keys, &record.bundle).await?;
        if manifest.entry != record.entry || manifest.frontend != record.frontend {
            return Err(LoadError::Invalid(
                "the record's entry or frontend does not match its bundle's manifest".into(),
            ));
        }
        // Refused before anything is fetched: no frontend here could run it.
        BundleFrontend::named(&manifest.frontend).map_err(|e| LoadError::Invalid(e.to_string()))?;
        let dir = match self.cached(&record.bundle, &manifest).await {
            Some(dir) => dir,
            None => self.unpack(c, &record.bundle, &manifest).await?,
        };
        // Compiling a program reads its files: off the runtime's threads.
        let (d, m, host) = (dir.clone(), manifest.clone(), self.hostname.clone());
        let spec = tokio::task::spawn_blocking(move || parse_entry(&d, &m, &host, id))
            .await
            .map_err(|e| LoadError::Invalid(format!("checking the bundle: {e}")))??;
        Ok(Loaded { spec, dir, ran: LastRun { record, record_sha256, manifest } })
    }

    /// The bundle's unpacked directory, if it is there and exactly what the manifest says.
    async fn cached(&self, bundle: &str, m: &Manifest) -> Option<PathBuf> {
        let dir = self.prefix.join("deploys").join(bundle);
        std::fs::symlink_metadata(&dir).ok()?;
        let (d, m2) = (dir.clone(), m.clone());
        match tokio::task::spawn_blocking(move || verify_unpacked(&d, &m2)).await {
            Ok(Ok(())) => {
                // Newest again, for pruning.
                let _ = std::fs::File::open(&dir).and_then(|f| f.set_modified(std::time::SystemTime::now()));
                Some(dir)
            }
            Ok(Err(why)) => {
                warn!(
                    "the unpacked bundle {} does not match its manifest ({why}); unpacking it again",
                    dir.display()
                );
                None
            }
            Err(e) => {
                warn!("checking the unpacked bundle {}: {e}", dir.display());
                None
            }
        }
    }

    /// Fetch and write each file into a fresh private temporary directory, verifying each
    /// blob before it is written, then rename it into place: a bundle directory only ever
    /// appears complete and verified, and a refused bundle leaves nothing behind.
    async fn unpack(&self, c: &mut Client, bundle: &str, m: &Manifest) -> Result<PathBuf, LoadError> {
        let base = deploys_dir(&self.prefix).map_err(io("creating the deploys directory"))?;
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .permissions(std::fs::Permissions::from_mode(PRIVATE_DIR))
            .tempdir_in(&base)
            .map_err(io("creating a temporary directory"))?;
        let root = open_dir(tmp.path()).map_err(io(tmp.path().display()))?;
        let mut writer = Some((root, Dirs::default()));
        let manifest = std::sync::Arc::new(m.clone());
        let pruning = self.cache_pruning.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = pruning {
            let _ = p.await;
        }
        let cache = self.blob_cache(bundle, m);
        let (mut hits, mut fetched) = (0, 0);
        for batch in fetch_batches(&m.files) {
            // The blobs this host has already verified, verified again (blocking: reads and
            // hashes), then the rest from etcd: a transaction of reads for many small ones.
            let (files, m2, cache2) = (batch.to_vec(), manifest.clone(), cache.clone());
            let cached = tokio::task::spawn_blocking(move || from_cache(cache2.as_deref(), &m2, &files))
                .await
                .map_err(|e| LoadError::Invalid(format!("reading the blob cache: {e}")))?;
            let missing: Vec<usize> = (0..batch.len()).filter(|i| cached[*i].is_none()).collect();
            let wanted: Vec<(&str, u64)> =
                missing.iter().map(|i| (batch[*i].sha256.as_str(), batch[*i].size)).collect();
            let mut got = match blobs::get_blobs(c, &self.keys, &wanted).await {
                Ok(got) => got.into_iter(),
                Err(e) if !e.error.is_transient() => {
                    let f = &batch[missing[e.index]];
                    return Err(LoadError::Invalid(format!("`{}`: {}", f.path, e.error)));
                }
                Err(e) => return Err(e.error.into()),
            };
            (hits, fetched) = (hits + batch.len() - missing.len(), fetched + missing.len());
            let blobs: Vec<(Option<Hit>, Vec<u8>)> = cached
                .into_iter()
                .map(|d| match d {
                    Some(mut hit) => {
                        let data = std::mem::take(&mut hit.data);
                        (Some(hit), data)
                    }
                    None => (None, got.next().expect("one blob per missing file")),
                })
                .collect();
            // Hashing and writing are blocking work: on the blocking pool, not on the threads
            // that run the agent's loop and its resources.
            let (root, mut dirs) = writer.take().expect("put back after each batch");
            let (files, m, cache2) = (batch.to_vec(), manifest.clone(), cache.clone());
            let (root, dirs, written) = tokio::task::spawn_blocking(move || {
                let written =
                    files.iter().zip(&blobs).try_for_each(|(f, (hit, data))| -> Result<(), LoadError> {
                        if hit.is_none() {
                            m.verify_file(f, data)?;
                        }
                        unpack_entry(&root, &mut dirs, f, data, cache2.as_deref(), hit.as_ref())
                            .map_err(io(format!("unpacking `{}`", f.path)))
                    });
                (root, dirs, written)
            })
            .await
            .map_err(|e| LoadError::Invalid(format!("unpacking: {e}")))?;
            written?;
            writer = Some((root, dirs));
        }
        info!(
            "bundle {bundle}: {} fetched from etcd, {hits} from the local cache",
            crate::text::count(fetched, "blob")
        );
        let dir = base.join(bundle);
        if std::fs::symlink_metadata(&dir).is_ok() {
            // A damaged copy: out of the way first (a rename does not replace a directory).
            let stale =
                tempfile::Builder::new().prefix(".stale-").tempdir_in(&base).map_err(io("moving aside"))?;
            let aside = stale.path().join("old");
            std::fs::rename(&dir, &aside).map_err(io(format!("moving {} aside", dir.display())))?;
        }
        let tmp = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io(format!("renaming into {}", dir.display()))(e));
        }
        prune_unpacked(&base, KEEP_UNPACKED, remembered_bundle(&self.prefix).as_deref());
        if let Some(cache) = cache {
            // In the background: nothing of it is needed to run this deploy.
            let pruning = tokio::task::spawn_blocking(move || cache.prune(&cache::kept_blobs(&cache, &base)));
            *self.cache_pruning.lock().unwrap_or_else(|e| e.into_inner()) = Some(pruning);
        }
        Ok(dir)
    }

    /// The local blob cache, holding this bundle's manifest (so that pruning keeps its
    /// blobs while it is kept unpacked); `None` (every blob fetched) if it cannot be used.
    fn blob_cache(&self, bundle: &str, m: &Manifest) -> Option<Arc<BlobCache>> {
        let opened =
            BlobCache::open(&self.prefix).and_then(|c| c.put(bundle, &m.canonical_json()).map(|()| c));
        match opened {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                warn!("the blob cache in {}: {e}; fetching every blob", self.prefix.join("blobs").display());
                None
            }
        }
    }

    /// When etcd does not answer and nothing has run yet, run the last deploy this host ran
    /// (once, and only if its unpacked bundle still verifies).
    async fn run_cached_once(&self) {
        {
            let mut s = self.state();
            if s.handled.is_some() || s.tried_cache {
                return;
            }
            s.tried_cache = true;
        }
        let (prefix, host) = (self.prefix.clone(), self.hostname.clone());
        match tokio::task::spawn_blocking(move || load_cached(&prefix, &host)).await {
            Ok(Ok(Some(l))) => {
                let id = l.ran.record.id;
                info!(
                    "etcd is unreachable: running deploy {id} again, the last deploy this host ran, from {}",
                    l.dir.display()
                );
                {
                    let mut s = self.state();
                    if s.handled.is_some() {
                        return;
                    }
                    s.handled = Some(id);
                    s.verified = Some((id, l.ran.record_sha256.clone()));
                }
                self.send(ready(l)).await;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                warn!("etcd is unreachable, and the last deploy this host ran cannot be run again: {e}")
            }
            Err(e) => warn!("loading the last deploy this host ran: {e}"),
        }
    }
}

fn ready(l: Loaded) -> DeployEvent {
    DeployEvent::Ready {
        record: Box::new(l.ran.record.clone()),
        spec: Box::new(l.spec),
        dir: l.dir,
        ran: Box::new(l.ran),
    }
}

/// Parse (with the frontend its manifest names) and check the bundle's entry as `mgmt
/// deploy` did before publishing it, from the unpacked bundle `dir`: a YAML graph's
/// relative paths resolved in it, an mcl program compiled there for `hostname` as deploy
/// `id`.
fn parse_entry(dir: &Path, m: &Manifest, hostname: &str, id: u64) -> Result<GraphSpec, LoadError> {
    check_unpacked(m, dir, hostname, id).map_err(|e| LoadError::Invalid(e.to_string()))
}

/// Writes `last-run.json` in the background, the newest deploy first, so that the agent's
/// loop never waits for the disk (an fsync per agent per deploy); [`Rememberer::finish`]
/// writes what is pending before the agent exits.
pub struct Rememberer {
    tx: tokio::sync::watch::Sender<Option<Arc<LastRun>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Rememberer {
    pub fn spawn(prefix: PathBuf) -> Rememberer {
        let (tx, mut rx) = tokio::sync::watch::channel(None::<Arc<LastRun>>);
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(ran) = rx.borrow_and_update().clone() else { continue };
                let (p, id) = (prefix.clone(), ran.record.id);
                let written = tokio::task::spawn_blocking(move || remember(&p, &ran)).await;
                if let Some(e) =
                    written.map_or_else(|e| Some(e.to_string()), |r| r.err().map(|e| e.to_string()))
                {
                    warn!("remembering deploy {id} for a start without etcd: {e}");
                }
            }
        });
        Rememberer { tx, task }
    }

    /// Remember `ran` (a newer one replaces one not yet written).
    pub fn remember(&self, ran: LastRun) {
        self.tx.send_replace(Some(Arc::new(ran)));
    }

    /// Write what is pending (at most `grace`), then stop.
    pub async fn finish(self, grace: Duration) {
        drop(self.tx);
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

/// Remember the deploy the agent now runs, for [`spawn`] to run again when the agent starts
/// while etcd is unreachable. Written whole or not at all (a temporary file renamed into
/// place), readable by the agent alone.
pub fn remember(prefix: &Path, ran: &LastRun) -> std::io::Result<()> {
    let base = deploys_dir(prefix)?;
    let mut tmp = tempfile::Builder::new().prefix(".last-run-").tempfile_in(&base)?;
    tmp.write_all(&serde_json::to_vec(ran).map_err(std::io::Error::other)?)?;
    tmp.as_file().sync_all()?;
    tmp.persist(base.join(LAST_RUN)).map_err(|e| e.error)?;
    Ok(())
}

fn read_last_run(prefix: &Path) -> Result<Option<LastRun>, String> {
    let path = prefix.join("deploys").join(LAST_RUN);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

fn remembered_bundle(prefix: &Path) -> Option<String> {
    read_last_run(prefix).ok().flatten().map(|r| r.record.bundle)
}

/// The last deploy this host ran, verified again: its record and manifest agree, and its
/// unpacked bundle is exactly what the manifest says.
fn load_cached(prefix: &Path, hostname: &str) -> Result<Option<Loaded>, String> {
    let Some(ran) = read_last_run(prefix)? else { return Ok(None) };
    let id = ran.record.id;
    store::check_record(id, &ran.record).map_err(|e| e.to_string())?;
    ran.manifest.verify_id(&ran.record.bundle).map_err(|e| e.to_string())?;
    ran.manifest.check().map_err(|e| e.to_string())?;
    let dir = prefix.join("deploys").join(&ran.record.bundle);
    verify_unpacked(&dir, &ran.manifest).map_err(|e| format!("{}: {e}", dir.display()))?;
    let spec = parse_entry(&dir, &ran.manifest, hostname, id).map_err(|e| e.to_string())?;
    Ok(Some(Loaded { spec, dir, ran }))
}

/// `<prefix>/deploys/`, created private; one left wide open by an older agent is made
/// private through a descriptor that does not follow a link.
fn deploys_dir(prefix: &Path) -> std::io::Result<PathBuf> {
    let base = prefix.join("deploys");
    match std::fs::DirBuilder::new().mode(PRIVATE_DIR).create(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let fd = open_dir(&base)?;
            if fstat(&fd)?.st_mode & 0o7777 != PRIVATE_DIR {
                fchmod(&fd, Mode::from_bits_truncate(PRIVATE_DIR))?;
            }
        }
        Err(e) => return Err(e),
    }
    Ok(base)
}

/// Open a directory, refusing a symlink.
fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Files fetched side by side while unpacking, and the bytes they may hold together (a
/// bigger file is fetched alone).
const FETCH_BATCH_FILES: usize = 256;
const FETCH_BATCH_BYTES: u64 = 16 << 20;

/// The manifest's files in order, cut in batches of at most [`FETCH_BATCH_FILES`] files and
/// [`FETCH_BATCH_BYTES`] bytes (or one file, when it alone is bigger).
fn fetch_batches(files: &[FileEntry]) -> Vec<&[FileEntry]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, f) in files.iter().enumerate() {
        let full = i - start == FETCH_BATCH_FILES || bytes.saturating_add(f.size) > FETCH_BATCH_BYTES;
        if i > start && full {
            out.push(&files[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(f.size);
    }
    if start < files.len() {
        out.push(&files[start..]);
    }
    out
}

/// Each file's blob from the cache, verified against the manifest (size, sha256, and a
/// symlink's rules); `None` where it is not there or does not verify (it is then deleted).
fn from_cache(cache: Option<&BlobCache>, m: &Manifest, files: &[FileEntry]) -> Vec<Option<Hit>> {
    let Some(cache) = cache else { return files.iter().map(|_| None).collect() };
    files
        .iter()
        .map(|f| match cache.get(&f.sha256, f.size) {
            Cached::Hit(hit) if m.verify_file(f, &hit.data).is_ok() => Some(hit),
            Cached::Hit(_) | Cached::Miss => None,
            Cached::Bad(why) => {
                warn!("the cached blob {} of `{}` is damaged ({why}); fetching it again", f.sha256, f.path);
                None
            }
        })
        .collect()
}

/// Unpack one verified entry, with the cache: a plain file the cache holds (`hit`) is
/// hard-linked from it (creating a file costs far more than a link), and one just fetched
/// is written and then linked into the cache. Executables (another mode) and symlinks are
/// written, and a fetched one is cached as a copy. A cache that fails only costs a write or
/// a fetch later.
fn unpack_entry(
    root: &OwnedFd,
    dirs: &mut Dirs,
    f: &FileEntry,
    data: &[u8],
    cache: Option<&BlobCache>,
    hit: Option<&Hit>,
) -> std::io::Result<()> {
    let Some(cache) = cache else { return write_entry(root, dirs, f, data) };
    if f.mode != MODE_FILE {
        write_entry(root, dirs, f, data)?;
        if let (None, Err(e)) = (hit, cache.put(&f.sha256, data)) {
            debug!("keeping blob {} in the cache: {e}", f.sha256);
        }
        return Ok(());
    }
    let (parent, name) = f.path.rsplit_once('/').unwrap_or(("", f.path.as_str()));
    if let Some(hit) = hit
        && cache.link_into(&f.sha256, hit, dirs.open(root, parent)?, name)
    {
        return Ok(());
    }
    write_entry(root, dirs, f, data)?;
    if let Err(e) = cache.adopt(dirs.open(root, parent)?, name, &f.sha256) {
        debug!("keeping blob {} in the cache: {e}", f.sha256);
    }
    Ok(())
}

/// Directories made so far while unpacking, by their path in the bundle, each opened
/// without following links (many files share a directory: it is made and opened once).
#[derive(Default)]
struct Dirs(std::collections::HashMap<String, OwnedFd>);

impl Dirs {
    /// The directory `path` of the bundle (`""` is the root), made (private) if needed.
    fn open<'a>(&'a mut self, root: &'a OwnedFd, path: &str) -> std::io::Result<&'a OwnedFd> {
        if path.is_empty() {
            return Ok(root);
        }
        if !self.0.contains_key(path) {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            let at = self.open(root, parent)?;
            match mkdirat(at, name, Mode::from_bits_truncate(PRIVATE_DIR)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = openat(at, name, flags, Mode::empty())?;
            self.0.insert(path.to_string(), fd);
        }
        Ok(&self.0[path])
    }
}

/// Write one verified entry below `root` without following any link: each parent directory
/// is created and opened relative to the one before it (`O_NOFOLLOW`), and the entry itself
/// is created new (`O_EXCL`, or `symlinkat`, which never follow).
fn write_entry(root: &OwnedFd, dirs: &mut Dirs, f: &FileEntry, data: &[u8]) -> std::io::Result<()> {
    let (parent, name) = f.path.rsplit_once('/').unwrap_or(("", f.path.as_str()));
    let at = dirs.open(root, parent)?;
    if f.mode == MODE_SYMLINK {
        nix::unistd::symlinkat(std::ffi::OsStr::from_bytes(data), at, name)?;
        return Ok(());
    }
    let mode = Mode::from_bits_truncate(file_mode(f));
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(at, name, flags, mode)?;
    // Exactly this mode, whatever the umask.
    fchmod(&fd, mode)?;
    std::fs::File::from(fd).write_all(data)
}

fn file_mode(f: &FileEntry) -> u32 {
    if f.mode == MODE_EXECUTABLE { PRIVATE_EXECUTABLE } else { PRIVATE_FILE }
}

/// Whether `dir` holds exactly the bundle: each file with its content and mode, each link
/// with its target, private real directories, and nothing else. Nothing is followed.
fn verify_unpacked(dir: &Path, m: &Manifest) -> Result<(), String> {
    let files: std::collections::HashMap<&str, &FileEntry> =
        m.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let dirs: std::collections::HashSet<&str> =
        m.files.iter().flat_map(|f| f.path.match_indices('/').map(|(i, _)| &f.path[..i])).collect();
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() || meta.mode() & 0o7777 != PRIVATE_DIR {
        return Err("not a private directory".into());
    }
    let mut seen = 0;
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        for e in std::fs::read_dir(&abs).map_err(|e| format!("{}: {e}", abs.display()))? {
            let e = e.map_err(|e| e.to_string())?;
            let name = e.file_name();
            let name = name.to_str().ok_or("a name that is not UTF-8")?;
            let path = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
            let meta = std::fs::symlink_metadata(e.path()).map_err(|e| e.to_string())?;
            if meta.is_dir() {
                if !dirs.contains(path.as_str()) || meta.mode() & 0o7777 != PRIVATE_DIR {
                    return Err(format!("`{path}`: an unexpected directory"));
                }
                stack.push((e.path(), path));
                continue;
            }
            let f = files.get(path.as_str()).ok_or_else(|| format!("`{path}` is not in the bundle"))?;
            let content = if meta.file_type().is_symlink() && f.mode == MODE_SYMLINK {
                std::fs::read_link(e.path()).map_err(|e| e.to_string())?.into_os_string().into_vec()
            } else if meta.is_file() && f.mode != MODE_SYMLINK && meta.mode() & 0o7777 == file_mode(f) {
                if meta.len() != f.size || f.size > MAX_FILE_SIZE {
                    return Err(format!("`{path}` has the wrong size"));
                }
                std::fs::read(e.path()).map_err(|e| e.to_string())?
            } else {
                return Err(format!("`{path}` has the wrong type or mode"));
            };
            m.verify_file(f, &content).map_err(|e| e.to_string())?;
            seen += 1;
        }
    }
    if seen != m.files.len() {
        return Err(format!("{} of {} files are there", seen, m.files.len()));
    }
    Ok(())
}

/// Remove what an agent stopped in the middle of an unpack left behind.
fn clean_leftovers(prefix: &Path) {
    let Ok(entries) = std::fs::read_dir(prefix.join("deploys")) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".unpack-") || name.starts_with(".stale-") {
            let _ = std::fs::remove_dir_all(e.path());
        } else if name.starts_with(".last-run-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Keep the `keep` most recently used unpacked bundles, and `also` (the one last run).
fn prune_unpacked(base: &Path, keep: usize, also: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            !n.starts_with('.') && Some(n.as_ref()) != also
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, d) in dirs.into_iter().skip(keep) {
        let _ = std::fs::remove_dir_all(d);
    }
    // The moved-aside damaged copies.
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".stale-")) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn latest_must_be_a_plain_positive_id() {
        assert_eq!(parse_latest(b"7"), Latest::Id(7));
        assert!(matches!(parse_latest(b" 7\n"), Latest::Garbage(_)));
        assert!(matches!(parse_latest(b"007"), Latest::Garbage(_)));
        for bad in [&b"garbage"[..], b"-5", b"1e3", b"+5", b"0", b"", b"\xff"] {
            assert!(matches!(parse_latest(bad), Latest::Garbage(_)), "{bad:?} accepted");
        }
    }

    #[test]
    fn latest_is_read_from_the_mirror_of_its_key() {
        let key = "/_mgmt/deploy/latest";
        let mut m = Mirrored { read: true, ..Mirrored::default() };
        assert_eq!(latest_of(&m, key), Latest::Missing);
        m.kvs.insert(key.to_string(), b"12".to_vec());
        assert_eq!(latest_of(&m, key), Latest::Id(12));
        m.kvs.insert(key.to_string(), b"twelve".to_vec());
        assert_eq!(latest_of(&m, key), Latest::Garbage("twelve".into()));
        // Only the key itself counts.
        let other = Mirrored { kvs: [("/_mgmt/deploy/latest2".to_string(), b"3".to_vec())].into(), ..m };
        assert_eq!(latest_of(&other, key), Latest::Missing);
    }

    #[test]
    fn fetch_batches_bound_files_and_bytes_and_keep_the_order() {
        let file = |size: u64| FileEntry { path: "f".into(), mode: 0o100644, size, sha256: String::new() };
        let sizes = |b: &[&[FileEntry]]| -> Vec<Vec<u64>> {
            b.iter().map(|b| b.iter().map(|f| f.size).collect()).collect()
        };
        assert!(fetch_batches(&[]).is_empty());
        let many: Vec<FileEntry> = (0..600).map(|_| file(1)).collect();
        assert_eq!(fetch_batches(&many).iter().map(|b| b.len()).collect::<Vec<_>>(), [256, 256, 88]);
        let mib = 1 << 20;
        let mixed = [file(10 * mib), file(10 * mib), file(200 * mib), file(1), file(6 * mib)];
        assert_eq!(
            sizes(&fetch_batches(&mixed)),
            [vec![10 * mib], vec![10 * mib], vec![200 * mib], vec![1, 6 * mib]]
        );
    }

    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_reported() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut panics = Vec::new();
        let r = runs.clone();
        supervise(
            "the test task",
            CancellationToken::new(),
            move || {
                let r = r.clone();
                async move {
                    if r.fetch_add(1, Ordering::SeqCst) < 2 {
                        panic!("boom");
                    }
                }
            },
            |why| panics.push(why),
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(panics, vec!["boom".to_string(), "boom".to_string()]);
    }
}
