//! The agent's side of deploys (`mgmt run ... empty`): follow `deploy/latest`, fetch and
//! verify each new deploy's bundle, unpack it under `<prefix>/deploys/<bundle>/`, parse its
//! entry, and hand the graph to the agent's loop. A deploy that fails any of this is refused
//! (and reported); the agent keeps running what it ran.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::bundle::{MODE_EXECUTABLE, MODE_SYMLINK, Manifest};
use super::store::{self, DeployKeys, DeployRecord};
use crate::frontend::{GraphSpec, yaml};
use crate::world::etcd::connect;

pub enum DeployEvent {
    Ready { record: Box<DeployRecord>, spec: Box<GraphSpec>, dir: PathBuf },
    Refused { id: u64, error: String },
}

pub fn spawn(
    seeds: Vec<String>,
    namespace: String,
    prefix: PathBuf,
    tx: mpsc::Sender<DeployEvent>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let keys = DeployKeys::new(&namespace);
        let mut handled: Option<u64> = None;
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            let r = async {
                let mut c = connect(&seeds).await?;
                let resp = c.get(keys.latest(), None).await?;
                let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                if let Some(kv) = resp.kvs().first()
                    && let Ok(id) = String::from_utf8_lossy(kv.value()).trim().parse::<u64>()
                    && handled != Some(id)
                {
                    handled = Some(id);
                    let _ = tx.send(handle(&mut c, &keys, &prefix, id).await).await;
                }
                let mut stream =
                    c.watch(keys.latest(), Some(WatchOptions::new().with_start_revision(rev + 1))).await?;
                backoff = Duration::from_millis(100);
                loop {
                    let msg = tokio::select! {
                        m = stream.message() => m?,
                        _ = cancel.cancelled() => return anyhow::Ok(()),
                    };
                    let Some(resp) = msg else { return Ok(()) };
                    if resp.canceled() {
                        return Ok(());
                    }
                    let newest = resp
                        .events()
                        .iter()
                        .filter(|e| e.event_type() == EventType::Put)
                        .filter_map(|e| e.kv())
                        .filter_map(|kv| String::from_utf8_lossy(kv.value()).trim().parse::<u64>().ok())
                        .next_back();
                    if let Some(id) = newest
                        && handled != Some(id)
                    {
                        handled = Some(id);
                        let _ = tx.send(handle(&mut c, &keys, &prefix, id).await).await;
                    }
                }
            }
            .await;
            if let Err(e) = r {
                debug!("following deploys: {e:#}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    });
}

async fn handle(c: &mut etcd_client::Client, keys: &DeployKeys, prefix: &Path, id: u64) -> DeployEvent {
    match load(c, keys, prefix, id).await {
        Ok((record, spec, dir)) => DeployEvent::Ready { record: Box::new(record), spec: Box::new(spec), dir },
        Err(e) => DeployEvent::Refused { id, error: format!("{e:#}") },
    }
}

async fn load(
    c: &mut etcd_client::Client,
    keys: &DeployKeys,
    prefix: &Path,
    id: u64,
) -> Result<(DeployRecord, GraphSpec, PathBuf)> {
    let record = store::record(c, keys, id).await?;
    info!("deploy {id}: fetching bundle {}", record.bundle);
    let (manifest, contents) = store::fetch_bundle(c, keys, &record.bundle).await?;
    if manifest.entry != record.entry || manifest.frontend != record.frontend {
        anyhow::bail!("the record's entry or frontend does not match its bundle's manifest");
    }
    if manifest.frontend != "yaml" {
        anyhow::bail!("this agent runs `yaml` deploys, not `{}`", manifest.frontend);
    }
    let dir = unpack(prefix, &record.bundle, &manifest, &contents)?;
    let entry = Manifest::local_path(
        &dir,
        manifest.files.iter().find(|f| f.path == manifest.entry).context("entry")?,
    );
    let text = std::fs::read_to_string(&entry).with_context(|| format!("reading {}", entry.display()))?;
    let spec = yaml::parse(&text, &format!("deploy {id}: {}", manifest.entry))?;
    Ok((record, spec, dir))
}

/// Write a verified bundle to `<prefix>/deploys/<bundle>/`, whole or not at all (a temp
/// directory renamed into place). An existing directory of that bundle is reused: its name
/// is its content's hash and it is only ever created complete.
fn unpack(prefix: &Path, bundle: &str, m: &Manifest, contents: &[Vec<u8>]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let base = prefix.join("deploys");
    let dir = base.join(bundle);
    if dir.is_dir() {
        // Newest again, for pruning.
        let _ = std::fs::File::open(&dir).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(dir);
    }
    std::fs::create_dir_all(&base)?;
    let tmp = tempfile::Builder::new().prefix(".unpack-").tempdir_in(&base)?;
    for (f, data) in m.files.iter().zip(contents) {
        let p = Manifest::local_path(tmp.path(), f);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if f.mode == MODE_SYMLINK {
            std::os::unix::fs::symlink(String::from_utf8_lossy(data).as_ref(), &p)?;
        } else {
            std::fs::write(&p, data)?;
            let mode = if f.mode == MODE_EXECUTABLE { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        }
    }
    let tmp = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.is_dir() {
            warn!("unpacking bundle {bundle}: {e}");
            return Err(e.into());
        }
    }
    prune_unpacked(&base, KEEP_UNPACKED);
    Ok(dir)
}

/// Unpacked bundles kept in `<prefix>/deploys/` (the newest; older ones are fetched again if a
/// rollback needs them).
const KEEP_UNPACKED: usize = 3;

fn prune_unpacked(base: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, d) in dirs.into_iter().skip(keep) {
        let _ = std::fs::remove_dir_all(d);
    }
}
