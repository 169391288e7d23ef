//! Deploys in etcd: blobs under `storage/sha256/<hex>/<chunk>`, records under
//! `deploy/<id>`, the newest id under `deploy/latest`.
//!
//! Blobs are content-addressed, so they are written once and never change: a blob's chunk 0
//! is written last, and its presence means the blob is complete. Deploy IDs are assigned by a
//! transaction on `deploy/latest`, so concurrent deploys get consecutive IDs and each record
//! names the hash of the one before it (a chain).

use anyhow::{Context, Result, bail};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::bundle::{
    BundleError, CHUNK_SIZE, MAX_FILE_SIZE, MAX_MANIFEST_CHUNKS, Manifest, chunk_count, chunk_len, chunks,
    is_sha256_hex, sha256_hex, validate_path,
};
use super::source::Built;

/// A deploy record, `deploy/<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployRecord {
    pub id: u64,
    /// The git commit, or `null` for `--no-git`.
    pub commit: Option<String>,
    /// The bundle ID (sha256 of the manifest).
    pub bundle: String,
    pub frontend: String,
    pub entry: String,
    /// sha256 of the previous record's JSON, `null` for the first deploy.
    pub parent: Option<String>,
    pub author: Option<String>,
    /// Unix seconds.
    pub time: u64,
    pub message: Option<String>,
    /// For a rollback: the deploy whose bundle this one runs again.
    pub rollback_of: Option<u64>,
}

impl DeployRecord {
    pub fn hash(&self) -> String {
        sha256_hex(&serde_json::to_vec(self).expect("records serialize"))
    }
}

#[derive(Debug, Clone)]
pub struct DeployKeys {
    ns: String,
}

impl DeployKeys {
    pub fn new(namespace: &str) -> DeployKeys {
        DeployKeys { ns: namespace.trim_end_matches('/').to_string() }
    }
    pub fn latest(&self) -> String {
        format!("{}/deploy/latest", self.ns)
    }
    pub fn record(&self, id: u64) -> String {
        format!("{}/deploy/{id}", self.ns)
    }
    pub fn records(&self) -> String {
        format!("{}/deploy/", self.ns)
    }
    pub fn chunk(&self, sha: &str, n: usize) -> String {
        format!("{}/storage/sha256/{sha}/{n}", self.ns)
    }
    pub fn blob(&self, sha: &str) -> String {
        format!("{}/storage/sha256/{sha}/", self.ns)
    }
    pub fn storage(&self) -> String {
        format!("{}/storage/sha256/", self.ns)
    }
}

/// Store a blob unless it is there already. Returns whether it was written.
pub async fn put_blob(c: &mut Client, keys: &DeployKeys, data: &[u8]) -> Result<bool> {
    let sha = sha256_hex(data);
    let first = keys.chunk(&sha, 0);
    if !c.get(first.clone(), Some(GetOptions::new().with_keys_only())).await?.kvs().is_empty() {
        return Ok(false);
    }
    let parts = chunks(data);
    // Chunk 0 last: once it exists, the blob is whole.
    for (n, part) in parts.iter().enumerate().skip(1) {
        c.put(keys.chunk(&sha, n), part.to_vec(), None).await?;
    }
    c.put(first, parts[0].to_vec(), None).await?;
    Ok(true)
}

/// Why reading a deploy failed: etcd did not answer (try again), or what it holds is not a
/// valid deploy (refuse it).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    /// Whether trying again later may succeed: only etcd failing to answer.
    pub fn is_transient(&self) -> bool {
        matches!(self, FetchError::Etcd(_))
    }
}

/// A record that does not belong where it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("deploy {0} does not exist")]
    Missing(u64),
    #[error("deploy/{key} is not a deploy record: {why}")]
    Malformed { key: u64, why: String },
    #[error("deploy/{key} holds the record of deploy {id}")]
    WrongId { key: u64, id: u64 },
    #[error("deploy {id} names bundle `{bundle}`, which is not a sha256")]
    BadBundle { id: u64, bundle: String },
    #[error("deploy {id}: `{field}`: {why}")]
    BadField { id: u64, field: &'static str, why: String },
    #[error("deploy {id}'s parent is {got}, but deploy {}'s sha256 is {want}", id - 1)]
    WrongParent { id: u64, want: String, got: String },
}

/// The checks a record passes on its own (pure): its key's id, a sha256 bundle ID, a valid
/// entry, and a parent exactly when it is not the first deploy.
pub fn check_record(key: u64, rec: &DeployRecord) -> Result<(), RecordError> {
    if rec.id != key {
        return Err(RecordError::WrongId { key, id: rec.id });
    }
    if !is_sha256_hex(&rec.bundle) {
        return Err(RecordError::BadBundle { id: rec.id, bundle: rec.bundle.clone() });
    }
    validate_path(&rec.entry).map_err(|e| RecordError::BadField {
        id: rec.id,
        field: "entry",
        why: e.to_string(),
    })?;
    let bad_parent = |why: &str| RecordError::BadField { id: rec.id, field: "parent", why: why.into() };
    match (&rec.parent, rec.id) {
        (Some(_), 0 | 1) => Err(bad_parent("the first deploy has no parent")),
        (None, 2..) => Err(bad_parent("missing; only the first deploy has none")),
        (Some(p), _) if !is_sha256_hex(p) => Err(bad_parent("not a sha256")),
        _ => Ok(()),
    }
}

/// Check a record's parent against the sha256 of the bytes of the record before it, when
/// those are known (pure).
pub fn check_parent(rec: &DeployRecord, prev_hash: Option<&str>) -> Result<(), RecordError> {
    match (prev_hash, &rec.parent) {
        (Some(want), Some(got)) if want != got => {
            Err(RecordError::WrongParent { id: rec.id, want: want.to_string(), got: got.clone() })
        }
        _ => Ok(()),
    }
}

/// Read a blob of known size and check that etcd holds exactly the chunks that size needs,
/// each of the right length, before allocating anything for it. The caller verifies its hash.
pub async fn get_blob(
    c: &mut Client,
    keys: &DeployKeys,
    sha: &str,
    size: u64,
) -> Result<Vec<u8>, FetchError> {
    if size > MAX_FILE_SIZE {
        return Err(FetchError::Invalid(format!("blob {sha}: size {size} is above the limit")));
    }
    let n = chunk_count(size);
    let present =
        c.get(keys.blob(sha), Some(GetOptions::new().with_prefix().with_count_only())).await?.count();
    if present == 0 {
        return Err(FetchError::Invalid(format!("blob {sha} is missing")));
    }
    if present != n as i64 {
        return Err(FetchError::Invalid(format!(
            "blob {sha} is stored in {present} chunks, but its size {size} needs {n}"
        )));
    }
    let mut out = Vec::with_capacity(size as usize);
    for i in 0..n {
        let r = c.get(keys.chunk(sha, i), None).await?;
        let Some(kv) = r.kvs().first() else {
            return Err(FetchError::Invalid(format!("blob {sha} is missing chunk {i}")));
        };
        let want = chunk_len(size, i);
        if kv.value().len() != want {
            return Err(FetchError::Invalid(format!(
                "blob {sha}: chunk {i} holds {} bytes, not {want}",
                kv.value().len()
            )));
        }
        out.extend_from_slice(kv.value());
    }
    Ok(out)
}

/// The newest deploy, if any.
pub async fn latest(c: &mut Client, keys: &DeployKeys) -> Result<Option<(DeployRecord, i64)>> {
    let r = c.get(keys.latest(), None).await?;
    let Some(kv) = r.kvs().first() else { return Ok(None) };
    let id: u64 = std::str::from_utf8(kv.value())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| format!("{} is not a deploy id", keys.latest()))?;
    let rec = record(c, keys, id).await?;
    Ok(Some((rec, kv.mod_revision())))
}

/// A deploy record, checked to be the one its key names (see [`check_record`]).
pub async fn record(c: &mut Client, keys: &DeployKeys, id: u64) -> Result<DeployRecord, FetchError> {
    Ok(record_bytes(c, keys, id).await?.0)
}

/// A checked deploy record and the sha256 of its bytes (what the next record names as its
/// parent).
pub async fn record_bytes(
    c: &mut Client,
    keys: &DeployKeys,
    id: u64,
) -> Result<(DeployRecord, String), FetchError> {
    let r = c.get(keys.record(id), None).await?;
    let Some(kv) = r.kvs().first() else { return Err(RecordError::Missing(id).into()) };
    let rec: DeployRecord = serde_json::from_slice(kv.value())
        .map_err(|e| RecordError::Malformed { key: id, why: e.to_string() })?;
    check_record(id, &rec)?;
    Ok((rec, sha256_hex(kv.value())))
}

/// The sha256 of the bytes of `deploy/<id>`, if that record is still stored.
pub async fn record_hash(c: &mut Client, keys: &DeployKeys, id: u64) -> Result<Option<String>, FetchError> {
    let r = c.get(keys.record(id), None).await?;
    Ok(r.kvs().first().map(|kv| sha256_hex(kv.value())))
}

/// Whether any deploy record is stored (`deploy/latest` aside).
pub async fn any_record(c: &mut Client, keys: &DeployKeys) -> Result<bool, FetchError> {
    let r =
        c.get(keys.records(), Some(GetOptions::new().with_prefix().with_keys_only().with_limit(2))).await?;
    Ok(r.kvs().iter().any(|kv| !kv.key().ends_with(b"/latest")))
}

/// Every record, oldest first.
pub async fn history(c: &mut Client, keys: &DeployKeys) -> Result<Vec<DeployRecord>> {
    let r = c.get(keys.records(), Some(GetOptions::new().with_prefix())).await?;
    let mut out: Vec<DeployRecord> = r
        .kvs()
        .iter()
        .filter(|kv| !kv.key().ends_with(b"/latest"))
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect();
    out.sort_by_key(|r| r.id);
    Ok(out)
}

pub enum Published {
    New(DeployRecord),
    /// The live deploy already runs this bundle (and commit).
    NothingNew(DeployRecord),
}

/// What a new record says besides its id and chain.
pub struct NewDeploy {
    pub bundle: String,
    pub frontend: String,
    pub entry: String,
    pub commit: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    pub rollback_of: Option<u64>,
}

/// Append a record: id = latest + 1, parent = hash of latest, by a transaction on
/// `deploy/latest`; a lost race is retried.
pub async fn append(c: &mut Client, keys: &DeployKeys, new: NewDeploy, force: bool) -> Result<Published> {
    for attempt in 0..50u32 {
        let prev = latest(c, keys).await?;
        if let Some((p, _)) = &prev
            && !force
            && p.bundle == new.bundle
            && p.commit == new.commit
        {
            return Ok(Published::NothingNew(p.clone()));
        }
        let rec = DeployRecord {
            id: prev.as_ref().map(|(p, _)| p.id + 1).unwrap_or(1),
            commit: new.commit.clone(),
            bundle: new.bundle.clone(),
            frontend: new.frontend.clone(),
            entry: new.entry.clone(),
            parent: prev.as_ref().map(|(p, _)| p.hash()),
            author: new.author.clone(),
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            message: new.message.clone(),
            rollback_of: new.rollback_of,
        };
        let guard = match &prev {
            Some((_, rev)) => Compare::mod_revision(keys.latest(), CompareOp::Equal, *rev),
            None => Compare::create_revision(keys.latest(), CompareOp::Equal, 0),
        };
        // Never overwrite a record: history is append-only.
        let fresh = Compare::create_revision(keys.record(rec.id), CompareOp::Equal, 0);
        let txn = Txn::new().when([guard, fresh]).and_then([
            TxnOp::put(keys.record(rec.id), serde_json::to_vec(&rec)?, None),
            TxnOp::put(keys.latest(), rec.id.to_string(), None),
        ]);
        if c.txn(txn).await?.succeeded() {
            return Ok(Published::New(rec));
        }
        if latest(c, keys).await?.map(|(p, _)| p.id) == prev.as_ref().map(|(p, _)| p.id)
            && !c.get(keys.record(rec.id), Some(GetOptions::new().with_keys_only())).await?.kvs().is_empty()
        {
            bail!(
                "{} says {} but {} exists already; the deploy history was changed by hand",
                keys.latest(),
                prev.map(|(p, _)| p.id.to_string()).unwrap_or_else(|| "nothing".into()),
                keys.record(rec.id)
            );
        }
        // Another deploy won; take the next id after a short, spread-out pause.
        let pause = 1 + (std::process::id() as u64 + attempt as u64 * 7) % 10;
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
    bail!("gave up after 50 deploys raced this one; try again")
}

/// Store a built bundle's blobs and manifest. Returns (blobs written, blobs already there).
pub async fn store_bundle(c: &mut Client, keys: &DeployKeys, built: &Built) -> Result<(usize, usize)> {
    let (mut written, mut present) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    for (f, data) in built.manifest.files.iter().zip(&built.contents) {
        if !seen.insert(f.sha256.clone()) {
            continue;
        }
        if put_blob(c, keys, data).await? {
            written += 1;
        } else {
            present += 1;
        }
    }
    put_blob(c, keys, &built.manifest.canonical_json()).await?;
    Ok((written, present))
}

/// Fetch and verify a deploy's bundle: the manifest must hash to the bundle ID and every
/// file to its entry.
pub async fn fetch_bundle(
    c: &mut Client,
    keys: &DeployKeys,
    bundle: &str,
) -> Result<(Manifest, Vec<Vec<u8>>), FetchError> {
    let manifest = fetch_manifest(c, keys, bundle).await?;
    let mut contents = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        let data = get_blob(c, keys, &f.sha256, f.size).await?;
        manifest.verify_file(f, &data)?;
        contents.push(data);
    }
    Ok((manifest, contents))
}

/// Make sure every blob of a published bundle is there (a garbage collection racing this
/// deploy's upload may have removed some); put back what is missing.
pub async fn ensure_bundle(c: &mut Client, keys: &DeployKeys, built: &Built) -> Result<usize> {
    let mut restored = 0;
    for data in &built.contents {
        if put_blob(c, keys, data).await? {
            restored += 1;
        }
    }
    if put_blob(c, keys, &built.manifest.canonical_json()).await? {
        restored += 1;
    }
    Ok(restored)
}

/// Outcome of [`prune`].
#[derive(Debug, Default, PartialEq)]
pub struct Pruned {
    pub records: usize,
    pub blobs: usize,
}

/// Keep the newest `keep` records (at least 1) and delete the older ones, then delete the
/// blobs no kept record needs. A blob written after the oldest kept record is never
/// deleted: it may belong to a deploy still uploading (which also checks its blobs again
/// after publishing, see [`ensure_bundle`]).
pub async fn prune(c: &mut Client, keys: &DeployKeys, keep: usize) -> Result<Pruned> {
    let keep = keep.max(1);
    let r = c.get(keys.records(), Some(GetOptions::new().with_prefix())).await?;
    let mut recs: Vec<(DeployRecord, i64)> = r
        .kvs()
        .iter()
        .filter(|kv| !kv.key().ends_with(b"/latest"))
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok().map(|rec| (rec, kv.create_revision())))
        .collect();
    recs.sort_by_key(|(r, _)| r.id);
    // The live deploy is kept whatever its place.
    let live = latest(c, keys).await?.map(|(r, _)| r.id);
    if let Some(pos) = recs.iter().position(|(r, _)| Some(r.id) == live) {
        let rec = recs.remove(pos);
        recs.push(rec);
    }
    if recs.len() <= keep {
        return Ok(Pruned::default());
    }
    let (old, kept) = recs.split_at(recs.len() - keep);
    let oldest_kept_rev = kept.iter().map(|(_, rev)| *rev).min().unwrap_or(i64::MAX);
    let mut pruned = Pruned::default();
    for (rec, _) in old {
        c.delete(keys.record(rec.id), None).await?;
        pruned.records += 1;
    }
    // What the kept deploys need: their manifests and every file in them.
    let mut needed = std::collections::HashSet::new();
    for (rec, _) in kept {
        needed.insert(rec.bundle.clone());
        let (manifest, _) = match fetch_manifest(c, keys, &rec.bundle).await {
            Ok(m) => (m, ()),
            // A kept deploy with a broken bundle: keep everything rather than guess.
            Err(_) => return Ok(pruned),
        };
        needed.extend(manifest.files.into_iter().map(|f| f.sha256));
    }
    let all = c.get(keys.storage(), Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    let prefix = keys.storage();
    let mut doomed = std::collections::BTreeSet::new();
    for kv in all.kvs() {
        let k = String::from_utf8_lossy(kv.key());
        let Some(sha) = k.strip_prefix(&prefix).and_then(|rest| rest.split('/').next()) else { continue };
        if !needed.contains(sha) && kv.create_revision() < oldest_kept_rev {
            doomed.insert(sha.to_string());
        }
    }
    for sha in &doomed {
        c.delete(keys.blob(sha), Some(etcd_client::DeleteOptions::new().with_prefix())).await?;
    }
    pruned.blobs = doomed.len();
    Ok(pruned)
}

/// Fetch a bundle's manifest and verify it against the bundle ID, within
/// [`MAX_MANIFEST_CHUNKS`] chunks, each checked before it is kept.
pub async fn fetch_manifest(c: &mut Client, keys: &DeployKeys, bundle: &str) -> Result<Manifest, FetchError> {
    if !is_sha256_hex(bundle) {
        return Err(FetchError::Invalid(format!("bundle `{bundle}` is not a sha256")));
    }
    let count =
        c.get(keys.blob(bundle), Some(GetOptions::new().with_prefix().with_count_only())).await?.count();
    if count == 0 {
        return Err(FetchError::Invalid(format!("the manifest of bundle {bundle} is missing")));
    }
    if count > MAX_MANIFEST_CHUNKS as i64 {
        return Err(FetchError::Invalid(format!(
            "the manifest of bundle {bundle} has {count} chunks; at most {MAX_MANIFEST_CHUNKS} are allowed"
        )));
    }
    let mut raw = Vec::new();
    for i in 0..count as usize {
        let r = c.get(keys.chunk(bundle, i), None).await?;
        let Some(kv) = r.kvs().first() else {
            return Err(FetchError::Invalid(format!("the manifest of bundle {bundle} is missing chunk {i}")));
        };
        let last = i + 1 == count as usize;
        if kv.value().len() > CHUNK_SIZE || (!last && kv.value().len() != CHUNK_SIZE) {
            return Err(FetchError::Invalid(format!(
                "the manifest of bundle {bundle}: chunk {i} has a wrong length"
            )));
        }
        raw.extend_from_slice(kv.value());
    }
    let manifest: Manifest = serde_json::from_slice(&raw)
        .map_err(|e| FetchError::Invalid(format!("the manifest of bundle {bundle} is not valid: {e}")))?;
    manifest.verify_id(bundle)?;
    manifest.check()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, parent: Option<&str>) -> DeployRecord {
        DeployRecord {
            id,
            commit: None,
            bundle: sha256_hex(b"manifest"),
            frontend: "yaml".into(),
            entry: "g.yaml".into(),
            parent: parent.map(str::to_string),
            author: None,
            time: 0,
            message: None,
            rollback_of: None,
        }
    }

    #[test]
    fn a_record_must_be_the_one_its_key_names() {
        let p = sha256_hex(b"previous");
        assert!(check_record(1, &rec(1, None)).is_ok());
        assert!(check_record(2, &rec(2, Some(&p))).is_ok());
        assert_eq!(check_record(30, &rec(19, Some(&p))), Err(RecordError::WrongId { key: 30, id: 19 }));
        assert!(matches!(
            check_record(1, &rec(1, Some(&p))),
            Err(RecordError::BadField { field: "parent", .. })
        ));
        assert!(matches!(check_record(2, &rec(2, None)), Err(RecordError::BadField { field: "parent", .. })));
        assert!(matches!(
            check_record(2, &rec(2, Some("0"))),
            Err(RecordError::BadField { field: "parent", .. })
        ));
        let bad = DeployRecord { bundle: "../../etc".into(), ..rec(1, None) };
        assert!(matches!(check_record(1, &bad), Err(RecordError::BadBundle { .. })));
        let bad = DeployRecord { entry: "../g.yaml".into(), ..rec(1, None) };
        assert!(matches!(check_record(1, &bad), Err(RecordError::BadField { field: "entry", .. })));
    }

    #[test]
    fn the_parent_must_be_the_previous_records_hash_when_it_is_known() {
        let p = sha256_hex(b"previous");
        assert!(check_parent(&rec(2, Some(&p)), Some(&p)).is_ok());
        assert!(check_parent(&rec(2, Some(&p)), None).is_ok());
        let other = sha256_hex(b"other");
        assert!(matches!(
            check_parent(&rec(2, Some(&p)), Some(&other)),
            Err(RecordError::WrongParent { .. })
        ));
    }
}
