//! Deploys in etcd: blobs under `storage/sha256/<hex>/<chunk>`, records under
//! `deploy/<id>`, the newest id under `deploy/latest`.
//!
//! Blobs are content-addressed: a blob's chunk 0 is written last, and its presence means the
//! blob is complete. A deploy checks the blobs it needs that are already stored and stores
//! again any whose bytes no longer match. Deploy IDs are assigned by a transaction on
//! `deploy/latest`, so concurrent deploys get consecutive IDs and each record names the hash
//! of the one before it (a chain). A broken `deploy/latest` is repaired by the next record,
//! which follows the newest intact one.

use std::collections::BTreeMap;

use etcd_client::{Client, CompactionOptions, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bundle::{
    BundleError, CHUNK_SIZE, MAX_FILE_SIZE, MAX_MANIFEST_CHUNKS, Manifest, chunk_count, chunk_len, chunks,
    is_sha256_hex, sha256_hex, validate_path,
};

/// What fails here, unless a function says otherwise: etcd.
type Result<T, E = etcd_client::Error> = std::result::Result<T, E>;

/// Why reading the head of the history, appending to it or compacting failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd: {}", crate::world::etcd::describe(.0))]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("deploy ids are exhausted")]
    IdsExhausted,
    #[error(transparent)]
    BlobsPruned(#[from] BlobsPruned),
    #[error(transparent)]
    Unsettled(#[from] Box<AppendUnsettled>),
    #[error("gave up after 50 deploys raced this one; try again")]
    Raced,
    #[error("compacting etcd")]
    Compact(#[source] etcd_client::Error),
}

/// A deploy record, `deploy/<id>`.
///
/// Fields added after the first version are optional and left out of the JSON when empty,
/// so an older record reads and hashes as it was written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Who published it: `Name <email>` from git's configuration, or `user@host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployer: Option<String>,
    /// Why, in the deployer's words (`rollback -m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The most bytes of a record's `deployer`.
pub const MAX_DEPLOYER: usize = 256;
/// The most bytes of a record's `reason`.
pub const MAX_REASON: usize = 1024;

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
    /// Written in the same transaction as every deletion of blobs by retention: its mod
    /// revision is the last time a stored blob may have gone (see [`append`]).
    pub fn pruned(&self) -> String {
        format!("{}/storage/pruned", self.ns)
    }
}

/// What [`put_blob`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The blob was not there and is now.
    Written,
    /// It was there, whole and matching its sha256.
    Present,
    /// It was there but damaged (bytes, chunk count or chunk keys wrong) and is stored again.
    Repaired,
}

/// What a stored blob looks like against what it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlobState {
    Absent,
    Intact,
    Damaged,
}

/// Store a blob unless an intact copy is there already. A stored copy is checked (exactly
/// the chunks `0..n`, whose bytes hash to the blob's sha256) and stored again when it does
/// not match, so a damaged blob is healed by the next deploy that needs it.
pub async fn put_blob(c: &mut Client, keys: &DeployKeys, data: &[u8]) -> Result<Stored> {
    let sha = sha256_hex(data);
    let parts = chunks(data);
    let state = blob_state(c, keys, &sha, parts.len(), true).await?;
    if state == BlobState::Intact {
        return Ok(Stored::Present);
    }
    write_blob(c, keys, &sha, &parts, state == BlobState::Damaged).await?;
    Ok(if state == BlobState::Absent { Stored::Written } else { Stored::Repaired })
}

/// Write every chunk, chunk 0 last: once it exists, the blob is whole. Over a damaged copy,
/// chunk keys that do not belong to the blob are deleted before chunk 0 is written.
async fn write_blob(
    c: &mut Client,
    keys: &DeployKeys,
    sha: &str,
    parts: &[&[u8]],
    damaged: bool,
) -> Result<()> {
    for (n, part) in parts.iter().enumerate().skip(1) {
        c.put(keys.chunk(sha, n), part.to_vec(), None).await?;
    }
    if damaged {
        let r = c.get(keys.blob(sha), Some(GetOptions::new().with_prefix().with_keys_only())).await?;
        let prefix = keys.blob(sha);
        for kv in r.kvs() {
            let index = kv.key().strip_prefix(prefix.as_bytes()).and_then(chunk_index);
            if index.is_none_or(|i| i >= parts.len()) {
                c.delete(kv.key().to_vec(), None).await?;
            }
        }
    }
    c.put(keys.chunk(sha, 0), parts[0].to_vec(), None).await?;
    Ok(())
}

/// A chunk key's index: canonical decimal digits only (`01` is not chunk 1).
pub(super) fn chunk_index(suffix: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(suffix).ok()?;
    let n: usize = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

/// Whether the blob `sha` is stored as exactly `n` chunks `0..n` and, with `check_bytes`,
/// whether their bytes hash to `sha`. At most `n + 1` chunks are listed: enough to see that
/// there are extra ones. No reply may exceed what the client accepts (4 MiB): a small blob
/// is read in one request, a bigger one is listed by key and then read a chunk at a time.
pub(super) async fn blob_state(
    c: &mut Client,
    keys: &DeployKeys,
    sha: &str,
    n: usize,
    check_bytes: bool,
) -> Result<BlobState> {
    let whole = check_bytes && n <= ONE_READ_CHUNKS;
    let mut opts = GetOptions::new().with_prefix().with_limit(n as i64 + 1);
    if !whole {
        opts = opts.with_keys_only();
    }
    let r = match c.get(keys.blob(sha), Some(opts)).await {
        Ok(r) => r,
        Err(e) if reply_too_large(&e) => return Ok(BlobState::Damaged),
        Err(e) => return Err(e),
    };
    if r.count() == 0 {
        return Ok(BlobState::Absent);
    }
    let prefix = keys.blob(sha);
    let mut parts: Vec<(usize, &[u8])> = Vec::with_capacity(n);
    for kv in r.kvs() {
        match kv.key().strip_prefix(prefix.as_bytes()).and_then(chunk_index) {
            Some(i) => parts.push((i, kv.value())),
            None => return Ok(BlobState::Damaged),
        }
    }
    parts.sort_by_key(|p| p.0);
    let complete = r.count() == n as i64 && parts.iter().enumerate().all(|(want, (i, _))| *i == want);
    if !complete {
        return Ok(BlobState::Damaged);
    }
    if !check_bytes {
        return Ok(BlobState::Intact);
    }
    let mut h = Sha256::new();
    if whole {
        parts.iter().for_each(|(_, part)| h.update(part));
    } else {
        for i in 0..n {
            let r = match c.get(keys.chunk(sha, i), None).await {
                Ok(r) => r,
                Err(e) if reply_too_large(&e) => return Ok(BlobState::Damaged),
                Err(e) => return Err(e),
            };
            match r.kvs().first() {
                Some(kv) if kv.value().len() <= CHUNK_SIZE => h.update(kv.value()),
                _ => return Ok(BlobState::Damaged),
            }
        }
    }
    Ok(if hex::encode(h.finalize()) == sha { BlobState::Intact } else { BlobState::Damaged })
}

/// Chunks a blob may have to be read in one request: with the extra one listed, 3 MiB.
const ONE_READ_CHUNKS: usize = 2;

/// The client refused a reply over its size limit: what is stored there is not what this
/// code stores (chunks of at most 1 MiB).
pub(super) fn reply_too_large(e: &etcd_client::Error) -> bool {
    e.to_string().contains("message length too large")
}

/// Why reading a deploy failed: etcd did not answer (try again), or what it holds is not a
/// valid deploy (refuse it).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("etcd: {}", crate::world::etcd::describe(.0))]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    /// Whether trying again later may succeed: only etcd failing to answer. A reply too big
    /// for the client is what etcd holds, not a failure to answer: trying again gets it again.
    pub fn is_transient(&self) -> bool {
        matches!(self, FetchError::Etcd(e) if !reply_too_large(e))
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
    check_length(rec.id, "deployer", rec.deployer.as_deref(), MAX_DEPLOYER)?;
    check_length(rec.id, "reason", rec.reason.as_deref(), MAX_REASON)?;
    let bad_parent = |why: &str| RecordError::BadField { id: rec.id, field: "parent", why: why.into() };
    match (&rec.parent, rec.id) {
        (Some(_), 0 | 1) => Err(bad_parent("the first deploy has no parent")),
        (None, 2..) => Err(bad_parent("missing; only the first deploy has none")),
        (Some(p), _) if !is_sha256_hex(p) => Err(bad_parent("not a sha256")),
        _ => Ok(()),
    }
}

/// A text field of at most `max` bytes (pure).
fn check_length(id: u64, field: &'static str, text: Option<&str>, max: usize) -> Result<(), RecordError> {
    match text {
        Some(t) if t.len() > max => Err(RecordError::BadField {
            id,
            field,
            why: format!("{} bytes; at most {max} are allowed", t.len()),
        }),
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
    if n == 1 {
        return get_small_blob(c, keys, sha, size).await;
    }
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

/// [`get_blob`] for a blob of one chunk, in one request: the chunks are listed with their
/// values, at most two of them (enough to see an extra one), so the reply stays within what
/// the client accepts.
async fn get_small_blob(
    c: &mut Client,
    keys: &DeployKeys,
    sha: &str,
    size: u64,
) -> Result<Vec<u8>, FetchError> {
    let r = c.get(keys.blob(sha), Some(GetOptions::new().with_prefix().with_limit(2))).await?;
    check_small_blob(keys, sha, size, r.count(), r.kvs().first().map(|kv| (kv.key(), kv.value())))
        .map(<[u8]>::to_vec)
}

/// A one-chunk blob's bytes from a read of its prefix (`count` keys there, the first one
/// `first`), checked: exactly chunk 0, of `size` bytes (pure).
pub(super) fn check_small_blob<'a>(
    keys: &DeployKeys,
    sha: &str,
    size: u64,
    count: i64,
    first: Option<(&[u8], &'a [u8])>,
) -> Result<&'a [u8], FetchError> {
    match count {
        0 => return Err(FetchError::Invalid(format!("blob {sha} is missing"))),
        1 => {}
        n => {
            return Err(FetchError::Invalid(format!(
                "blob {sha} is stored in {n} chunks, but its size {size} needs 1"
            )));
        }
    }
    let Some((_, value)) = first.filter(|(k, _)| *k == keys.chunk(sha, 0).as_bytes()) else {
        return Err(FetchError::Invalid(format!("blob {sha} is missing chunk 0")));
    };
    if value.len() as u64 != size {
        return Err(FetchError::Invalid(format!(
            "blob {sha}: chunk 0 holds {} bytes, not {size}",
            value.len()
        )));
    }
    Ok(value)
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

/// The bytes of `deploy/<id>` as stored, unchecked, if the key exists.
pub async fn record_raw(
    c: &mut Client,
    keys: &DeployKeys,
    id: u64,
) -> Result<Option<Vec<u8>>, etcd_client::Error> {
    let r = c.get(keys.record(id), None).await?;
    Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
}

/// Whether any deploy record is stored (`deploy/latest` aside).
pub async fn any_record(c: &mut Client, keys: &DeployKeys) -> Result<bool, FetchError> {
    let r =
        c.get(keys.records(), Some(GetOptions::new().with_prefix().with_keys_only().with_limit(2))).await?;
    Ok(r.kvs().iter().any(|kv| !kv.key().ends_with(b"/latest")))
}

/// The highest id of any `deploy/<id>` key (0: none), from the keys alone.
pub async fn newest_record_key(c: &mut Client, keys: &DeployKeys) -> Result<u64, FetchError> {
    let prefix = keys.records();
    let r = c.get(prefix.clone(), Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    Ok(r.kvs()
        .iter()
        .filter_map(|kv| parse_deploy_id(kv.key().strip_prefix(prefix.as_bytes())?))
        .max()
        .unwrap_or(0))
}

/// A deploy ID as mgmt writes it (in `deploy/latest` and in record keys): canonical decimal
/// digits, no sign, no spaces, no leading zero, not 0. Anything else is not an ID.
pub fn parse_deploy_id(raw: &[u8]) -> Option<u64> {
    chunk_index(raw).map(|i| i as u64).filter(|&id| id > 0)
}

/// One consistent read of everything under `deploy/`.
struct Scan {
    /// `deploy/latest`'s value and mod revision, if the key exists.
    latest: Option<(Vec<u8>, i64)>,
    /// The revision the scan was read at.
    read_at: i64,
    /// Intact records (the value parses and its id equals its key's) and their create revision.
    intact: BTreeMap<u64, (DeployRecord, i64)>,
    /// The highest id of any `deploy/<id>` key, intact or not (0: none).
    max_key: u64,
    /// The sha256 of each intact record's stored bytes: what the next record names as its
    /// parent, whatever fields a newer version wrote into it.
    hashes: BTreeMap<u64, String>,
}

async fn scan(c: &mut Client, keys: &DeployKeys) -> Result<Scan> {
    let prefix = keys.records();
    let r = c.get(prefix.clone(), Some(GetOptions::new().with_prefix())).await?;
    let read_at = r.header().map_or(0, |h| h.revision());
    let mut out =
        Scan { latest: None, read_at, intact: BTreeMap::new(), max_key: 0, hashes: BTreeMap::new() };
    for kv in r.kvs() {
        let Some(rest) = kv.key().strip_prefix(prefix.as_bytes()) else { continue };
        if rest == b"latest" {
            out.latest = Some((kv.value().to_vec(), kv.mod_revision()));
            continue;
        }
        // Keys that are not `deploy/<id>` are not ours to judge.
        let Some(id) = chunk_index(rest).map(|i| i as u64) else { continue };
        out.max_key = out.max_key.max(id);
        if let Ok(rec) = serde_json::from_slice::<DeployRecord>(kv.value())
            && rec.id == id
        {
            out.intact.insert(id, (rec, kv.create_revision()));
            out.hashes.insert(id, sha256_hex(kv.value()));
        }
    }
    Ok(out)
}

/// Why `deploy/latest` cannot be taken as it is, or the id it names. Pure.
///
/// It is sound when it names an intact record and no record key above that one exists.
pub fn judge_latest(
    latest: Option<&[u8]>,
    intact: impl Fn(u64) -> bool,
    max_key: u64,
) -> std::result::Result<Option<u64>, String> {
    let Some(raw) = latest else {
        return match max_key {
            0 => Ok(None),
            n => Err(format!("is missing although deploy/{n} exists")),
        };
    };
    let text = String::from_utf8_lossy(raw);
    let Some(id) = parse_deploy_id(raw) else {
        let shown: String = text.chars().take(40).collect();
        return Err(format!("holds {shown:?}, not a deploy id"));
    };
    if !intact(id) {
        return Err(if id > max_key || id == 0 {
            format!("names deploy {id}, which does not exist")
        } else {
            format!("names deploy {id}, which is not a valid record")
        });
    }
    if max_key > id {
        return Err(format!("names deploy {id} but deploy/{max_key} exists"));
    }
    Ok(Some(id))
}

/// The head of the history: the record a new deploy follows.
pub struct Head {
    /// The newest deploy: what `deploy/latest` names, or when that is broken the newest
    /// intact record.
    pub record: Option<DeployRecord>,
    /// The id the next record gets: above every `deploy/<id>` key, so none is overwritten.
    pub next: u64,
    /// What was wrong with `deploy/latest`, when it was not used as it is.
    pub broken: Option<String>,
    /// `deploy/latest`'s mod revision (0: absent), the guard of the append transaction.
    latest_rev: i64,
    /// The sha256 of the stored bytes of `record`.
    record_hash: Option<String>,
    /// How many intact records there are.
    pub intact: usize,
    /// The revision the head was read at.
    pub read_at: i64,
}

impl Head {
    /// The revision at which `deploy/latest` was last written (0: absent): for the live
    /// record, the revision it was appended at.
    pub fn latest_revision(&self) -> i64 {
        self.latest_rev
    }
}

/// Read the head of the history. A broken `deploy/latest` (missing, not an id, naming a
/// missing or invalid record, or behind an existing record) does not stop anything: the
/// newest intact record stands in for it, and [`Head::broken`] says why.
pub async fn head(c: &mut Client, keys: &DeployKeys) -> Result<Head, StoreError> {
    let s = scan(c, keys).await?;
    let verdict =
        judge_latest(s.latest.as_ref().map(|l| l.0.as_slice()), |id| s.intact.contains_key(&id), s.max_key);
    let (record, broken) = match verdict {
        Ok(id) => (id.and_then(|id| s.intact.get(&id)).map(|r| r.0.clone()), None),
        Err(why) => (s.intact.values().next_back().map(|r| r.0.clone()), Some(why)),
    };
    let next = s.max_key.checked_add(1).ok_or(StoreError::IdsExhausted)?;
    let record_hash = record.as_ref().and_then(|r| s.hashes.get(&r.id).cloned());
    Ok(Head {
        record,
        next,
        broken,
        latest_rev: s.latest.map(|l| l.1).unwrap_or(0),
        record_hash,
        intact: s.intact.len(),
        read_at: s.read_at,
    })
}

/// The condition that `deploy/latest` is still what was read at mod revision `rev` (0: it
/// was absent).
fn latest_unchanged(keys: &DeployKeys, rev: i64) -> Compare {
    match rev {
        0 => Compare::create_revision(keys.latest(), CompareOp::Equal, 0),
        rev => Compare::mod_revision(keys.latest(), CompareOp::Equal, rev),
    }
}

/// Every intact record (its id equals its key's), oldest first.
pub async fn history(c: &mut Client, keys: &DeployKeys) -> Result<Vec<DeployRecord>> {
    Ok(scan(c, keys).await?.intact.into_values().map(|r| r.0).collect())
}

/// One `deploy/<id>` key as `mgmt deploy list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    /// The id in the key.
    pub key: u64,
    /// The record, when the value is one and its id is the key's.
    #[serde(flatten)]
    pub record: Option<DeployRecord>,
    /// What is wrong: the value is not a valid record, or its parent is not the hash of
    /// the record before it ([`check_parent`]). `None` for a sound record.
    pub problem: Option<String>,
}

/// Judge every `deploy/<id>` key and value, oldest first (pure): each must be a record of
/// the id in its key (else it is not listed as one), pass [`check_record`], and its parent
/// be the sha256 of the stored bytes of `deploy/<id - 1>` when that
/// key is still there (retention removes old ones).
pub fn judge_history(stored: &BTreeMap<u64, Vec<u8>>) -> Vec<Listed> {
    stored
        .iter()
        .map(|(&key, bytes)| {
            let invalid = |why: String| Listed {
                key,
                record: None,
                problem: Some(format!("not a valid record ({why})")),
            };
            let rec = match serde_json::from_slice::<DeployRecord>(bytes) {
                Ok(rec) if rec.id != key => {
                    return invalid(RecordError::WrongId { key, id: rec.id }.to_string());
                }
                Ok(rec) => rec,
                Err(e) => return invalid(e.to_string()),
            };
            let prev = key.checked_sub(1).and_then(|k| stored.get(&k)).map(|b| sha256_hex(b));
            let problem = check_record(key, &rec).and_then(|()| check_parent(&rec, prev.as_deref()));
            Listed { key, record: Some(rec), problem: problem.err().map(|e| e.to_string()) }
        })
        .collect()
}

/// Every `deploy/<id>` key, judged by [`judge_history`], oldest first, and the live deploy:
/// the one `deploy/latest` soundly names ([`judge_latest`]), if any. One read.
pub async fn listing(c: &mut Client, keys: &DeployKeys) -> Result<(Vec<Listed>, Option<u64>)> {
    let prefix = keys.records();
    let r = c.get(prefix.clone(), Some(GetOptions::new().with_prefix())).await?;
    let mut latest = None;
    let mut stored: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for kv in r.kvs() {
        let Some(rest) = kv.key().strip_prefix(prefix.as_bytes()) else { continue };
        if rest == b"latest" {
            latest = Some(kv.value());
        } else if let Some(id) = chunk_index(rest) {
            stored.insert(id as u64, kv.value().to_vec());
        }
    }
    let listed = judge_history(&stored);
    let intact = |id: u64| listed.iter().any(|l| l.key == id && l.record.is_some());
    let max_key = stored.keys().next_back().copied().unwrap_or(0);
    let live = judge_latest(latest, intact, max_key).ok().flatten();
    Ok((listed, live))
}

pub enum Published {
    New(DeployRecord),
    /// The live deploy already runs this bundle (and commit).
    NothingNew(DeployRecord),
}

/// What [`append`] did, and what it found wrong with `deploy/latest` (and repaired, for a
/// new record) on the way.
pub struct Appended {
    pub published: Published,
    /// The record that stood in for a broken `deploy/latest`, and what was wrong with it.
    pub repaired: Option<(Option<u64>, String)>,
}

/// What a new record says besides its id and chain.
#[derive(Clone)]
pub struct NewDeploy {
    pub bundle: String,
    pub frontend: String,
    pub entry: String,
    pub commit: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    pub rollback_of: Option<u64>,
    pub deployer: Option<String>,
    pub reason: Option<String>,
}

/// The append transaction failed, so whether its record was stored is not known: read
/// `deploy/<id>` again and [`settle`] it.
#[derive(Debug, thiserror::Error)]
#[error("etcd {} deploy {}: {}", appending(source), rec.id, crate::world::etcd::describe(source))]
pub struct AppendUnsettled {
    /// The record the transaction carried.
    pub rec: DeployRecord,
    /// Its bytes, exactly as sent.
    pub bytes: Vec<u8>,
    pub repaired: Option<(Option<u64>, String)>,
    #[source]
    pub source: etcd_client::Error,
}

/// What etcd did to an append that failed: refused it (it answered), or failed under it.
fn appending(e: &etcd_client::Error) -> &'static str {
    if crate::world::etcd::answered(e) { "refused to append" } else { "failed while appending" }
}

/// Whether a record whose append failed in transit was published, from what `deploy/<id>`
/// holds afterwards (pure): only the very bytes sent mean it was (the transaction puts
/// them and `deploy/latest` together); nothing, or another deploy's record, means it was not.
pub fn settle(stored: Option<&[u8]>, sent: &[u8]) -> bool {
    stored == Some(sent)
}

/// Retention deleted blobs after the new record's blobs were seen stored: some it needs
/// may be gone. Nothing was appended; store them again and append again.
#[derive(Debug, thiserror::Error)]
#[error("old deploys' blobs were deleted while this deploy was being stored")]
pub struct BlobsPruned;

/// How a record is appended besides what it says.
#[derive(Default)]
pub struct AppendGuard {
    /// Append even when the live deploy already runs this bundle and commit.
    pub force: bool,
    /// The revision at which every blob the record needs was known to be stored: the
    /// append fails with [`BlobsPruned`] if retention has deleted blobs since.
    pub blobs_at: Option<i64>,
    /// The head read just before, saving the first read (a stale one only costs a retry).
    pub head: Option<Head>,
}

/// Append a record after the head of the history (see [`head`]): parent = hash of the
/// head's record, by a transaction on `deploy/latest` that also checks the new key is
/// absent, and that no blob was pruned since `guard.blobs_at`; a lost race is retried. A
/// broken `deploy/latest` is repaired by the new record.
///
/// Retention deletes blobs only in transactions that find `deploy/latest` as it read it
/// and that write [`DeployKeys::pruned`] ([`prune`]), so a record that lands needs no blob
/// that is gone: a deletion before the append moved that key (and fails the append), and
/// one after it found `deploy/latest` moved (and deleted nothing).
pub async fn append(
    c: &mut Client,
    keys: &DeployKeys,
    new: NewDeploy,
    guard: AppendGuard,
) -> Result<Appended, StoreError> {
    let mut prefetched = guard.head;
    for attempt in 0..50u32 {
        let h = match prefetched.take() {
            Some(h) => h,
            None => head(c, keys).await?,
        };
        let force = guard.force;
        let repaired = h.broken.clone().map(|why| (h.record.as_ref().map(|r| r.id), why));
        if let Some(p) = &h.record
            && !force
            && repaired.is_none()
            && p.bundle == new.bundle
            && p.commit == new.commit
        {
            return Ok(Appended { published: Published::NothingNew(p.clone()), repaired });
        }
        let rec = DeployRecord {
            id: h.next,
            commit: new.commit.clone(),
            bundle: new.bundle.clone(),
            frontend: new.frontend.clone(),
            entry: new.entry.clone(),
            parent: h.record_hash.clone(),
            author: new.author.clone(),
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            message: new.message.clone(),
            rollback_of: new.rollback_of,
            deployer: new.deployer.clone(),
            reason: new.reason.clone(),
        };
        // Never overwrite a record: history is append-only.
        let fresh = Compare::create_revision(keys.record(rec.id), CompareOp::Equal, 0);
        let mut when = vec![latest_unchanged(keys, h.latest_rev), fresh];
        if let Some(at) = guard.blobs_at {
            // A missing key compares as revision 0.
            when.push(Compare::mod_revision(keys.pruned(), CompareOp::Less, at.saturating_add(1)));
        }
        let bytes = serde_json::to_vec(&rec).expect("records serialize");
        let txn = Txn::new()
            .when(when)
            .and_then([
                TxnOp::put(keys.record(rec.id), bytes.clone(), None),
                TxnOp::put(keys.latest(), rec.id.to_string(), None),
            ])
            .or_else([TxnOp::get(keys.pruned(), Some(GetOptions::new().with_keys_only()))]);
        match c.txn(txn).await {
            Ok(r) if r.succeeded() => return Ok(Appended { published: Published::New(rec), repaired }),
            Ok(r) => {
                if let Some(at) = guard.blobs_at
                    && pruned_since(&r, at)
                {
                    return Err(BlobsPruned.into());
                }
            }
            // The request may have been applied before the answer was lost.
            Err(source) => return Err(Box::new(AppendUnsettled { rec, bytes, repaired, source }).into()),
        }
        // Another deploy won; take the next id after a short, spread-out pause.
        let pause = 1 + (std::process::id() as u64 + attempt as u64 * 7) % 10;
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
    Err(StoreError::Raced)
}

/// Whether a failed append's reply shows blobs pruned after revision `at`.
fn pruned_since(r: &etcd_client::TxnResponse, at: i64) -> bool {
    r.op_responses().iter().any(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().iter().any(|kv| kv.mod_revision() > at),
        _ => false,
    })
}

/// Outcome of [`prune`].
#[derive(Debug, Default, PartialEq)]
pub struct Pruned {
    pub records: usize,
    pub blobs: usize,
    /// The etcd revision after the last delete (0: nothing deleted): where to compact.
    pub revision: i64,
}

/// Keep the newest `keep` intact records (at least 1) and delete the older ones, then
/// delete the blobs no kept record needs. A blob written after the oldest kept record is
/// never deleted: it may belong to a deploy still uploading. Blobs are deleted in
/// transactions that require `deploy/latest` unchanged since the records were read (a new
/// record may need them: retention then stops, and the next one decides again) and that
/// write [`DeployKeys::pruned`], which fails the append of a deploy that saw them stored
/// before (see [`append`]). Keys that are not intact records are left alone.
pub async fn prune(c: &mut Client, keys: &DeployKeys, keep: usize) -> Result<Pruned> {
    let plan = plan_prune(c, keys, keep).await?;
    apply_prune(c, keys, &plan).await
}

/// What [`prune`] will delete, decided from the records and storage as they were read.
#[derive(Debug, Default)]
pub struct PrunePlan {
    /// The ids of the records to delete.
    pub records: Vec<u64>,
    /// The blobs no kept record needs.
    pub blobs: Vec<String>,
    /// `deploy/latest`'s mod revision when the records were read (0: absent).
    latest_rev: i64,
    /// The live deploy then, if any.
    live: Option<u64>,
}

/// Decide what [`prune`] deletes: records beyond the newest `keep` (the live one always
/// kept), and the blobs none of the kept ones needs that are older than all of them.
pub async fn plan_prune(c: &mut Client, keys: &DeployKeys, keep: usize) -> Result<PrunePlan> {
    let keep = keep.max(1);
    let s = scan(c, keys).await?;
    let latest_rev = s.latest.as_ref().map_or(0, |l| l.1);
    let live =
        judge_latest(s.latest.as_ref().map(|l| l.0.as_slice()), |id| s.intact.contains_key(&id), s.max_key)
            .ok()
            .flatten();
    let mut plan = PrunePlan { latest_rev, live, ..PrunePlan::default() };
    let mut recs: Vec<(DeployRecord, i64)> = s.intact.into_values().collect();
    // The live deploy is kept whatever its place.
    if let Some(pos) = recs.iter().position(|(r, _)| Some(r.id) == live) {
        let rec = recs.remove(pos);
        recs.push(rec);
    }
    if recs.len() <= keep {
        return Ok(plan);
    }
    let (old, kept) = recs.split_at(recs.len() - keep);
    plan.records = old.iter().map(|(r, _)| r.id).collect();
    let oldest_kept_rev = kept.iter().map(|(_, rev)| *rev).min().unwrap_or(i64::MAX);
    // What the kept deploys need: their manifests and every file in them.
    let mut needed = std::collections::HashSet::new();
    for (rec, _) in kept {
        needed.insert(rec.bundle.clone());
        match fetch_manifest(c, keys, &rec.bundle).await {
            Ok(m) => needed.extend(m.files.into_iter().map(|f| f.sha256)),
            // A kept deploy with a broken bundle: keep every blob rather than guess.
            Err(_) => return Ok(plan),
        }
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
    plan.blobs = doomed.into_iter().collect();
    Ok(plan)
}

/// Delete what `plan` names. Blobs go in transactions that require `deploy/latest` as the
/// plan read it: once a new record is there (it may need them), no more are deleted.
pub async fn apply_prune(c: &mut Client, keys: &DeployKeys, plan: &PrunePlan) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    for id in &plan.records {
        let r = c.delete(keys.record(*id), None).await?;
        pruned.revision = r.header().map(|h| h.revision()).unwrap_or(pruned.revision);
        pruned.records += 1;
    }
    let unchanged = latest_unchanged(keys, plan.latest_rev);
    let marker = plan.live.map_or("retention".to_string(), |id| format!("retention after deploy {id}"));
    for batch in plan.blobs.chunks(crate::world::etcd::TXN_MAX_OPS - 1) {
        let mut ops: Vec<TxnOp> = batch
            .iter()
            .map(|sha| TxnOp::delete(keys.blob(sha), Some(etcd_client::DeleteOptions::new().with_prefix())))
            .collect();
        ops.push(TxnOp::put(keys.pruned(), marker.clone(), None));
        let r = c.txn(Txn::new().when([unchanged.clone()]).and_then(ops)).await?;
        if !r.succeeded() {
            break;
        }
        pruned.revision = r.header().map(|h| h.revision()).unwrap_or(pruned.revision);
        pruned.blobs += batch.len();
    }
    Ok(pruned)
}

/// Compact etcd's history up to `revision`, so the space of deleted keys (pruned deploys)
/// can be used again; waits until the compaction is applied. A compaction already past
/// `revision` (another deploy, etcd's auto-compaction) is fine.
pub async fn compact(c: &mut Client, revision: i64) -> Result<(), StoreError> {
    match c.compact(revision, Some(CompactionOptions::new().with_physical())).await {
        Err(e) if e.to_string().contains("required revision has been compacted") => Ok(()),
        r => r.map(|_| ()).map_err(StoreError::Compact),
    }
}

/// Fetch a bundle's manifest and verify it against the bundle ID, within
/// [`MAX_MANIFEST_CHUNKS`] chunks, each checked before it is kept.
pub async fn fetch_manifest(c: &mut Client, keys: &DeployKeys, bundle: &str) -> Result<Manifest, FetchError> {
    if !is_sha256_hex(bundle) {
        return Err(FetchError::Invalid(format!("bundle `{bundle}` is not a sha256")));
    }
    // Most manifests are one chunk: read it with the count (and at most one more chunk, to
    // see it), so that case takes one request.
    let first = c.get(keys.blob(bundle), Some(GetOptions::new().with_prefix().with_limit(2))).await?;
    let count = first.count();
    if count == 0 {
        return Err(FetchError::Invalid(format!("the manifest of bundle {bundle} is missing")));
    }
    if count == 1
        && let Some(kv) = first.kvs().first().filter(|kv| kv.key() == keys.chunk(bundle, 0).as_bytes())
    {
        if kv.value().len() > CHUNK_SIZE {
            return Err(FetchError::Invalid(format!(
                "the manifest of bundle {bundle}: chunk 0 has a wrong length"
            )));
        }
        return decode_manifest(bundle, kv.value());
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
    decode_manifest(bundle, &raw)
}

/// A manifest's bytes, checked: they hash to the bundle ID and the manifest is valid.
fn decode_manifest(bundle: &str, raw: &[u8]) -> Result<Manifest, FetchError> {
    let manifest: Manifest = serde_json::from_slice(raw)
        .map_err(|e| FetchError::Invalid(format!("the manifest of bundle {bundle} is not valid: {e}")))?;
    manifest.verify_id(bundle)?;
    manifest.check()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_error_from_etcd_reads_as_its_etcd_line() {
        // The cli's `readable` drops this wrapper from the line (see its tests).
        let fetch = FetchError::from(etcd_client::Error::IoError(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(fetch.to_string(), "etcd: connection refused");
    }

    #[test]
    fn an_append_lost_in_transit_is_published_only_if_its_very_bytes_are_stored() {
        let sent = br#"{"id":7}"#;
        assert!(settle(Some(sent), sent));
        assert!(!settle(None, sent), "nothing stored");
        assert!(!settle(Some(br#"{"id":7,"x":1}"#), sent), "another deploy took the id");
        assert!(!settle(Some(b""), sent));
    }

    #[test]
    fn the_history_listing_marks_broken_links_and_invalid_records() {
        let one = serde_json::to_vec(&rec(1, None)).unwrap();
        let two = serde_json::to_vec(&rec(2, Some(&sha256_hex(&one)))).unwrap();
        let three = serde_json::to_vec(&rec(3, Some(&"b".repeat(64)))).unwrap();
        let five = serde_json::to_vec(&rec(5, Some(&"c".repeat(64)))).unwrap();
        let stored = BTreeMap::from([
            (1, one),
            (2, two),
            (3, three),
            (4, b"garbage".to_vec()),
            (
                7,
                serde_json::to_vec(&DeployRecord { bundle: "x".into(), ..rec(7, Some(&"d".repeat(64))) })
                    .unwrap(),
            ),
            (5, five),
            (6, serde_json::to_vec(&rec(9, Some(&"d".repeat(64)))).unwrap()),
        ]);
        let listed = judge_history(&stored);
        let problems: Vec<(u64, Option<&str>)> =
            listed.iter().map(|l| (l.key, l.problem.as_deref())).collect();
        assert_eq!(problems[0], (1, None));
        assert_eq!(problems[1], (2, None));
        assert!(problems[2].1.is_some_and(|p| p.starts_with("deploy 3's parent is bbbb")), "{problems:?}");
        assert!(problems[3].1.is_some_and(|p| p.starts_with("not a valid record (expected")), "{problems:?}");
        assert!(listed[3].record.is_none());
        // The parent is checked against the bytes stored, valid record or not.
        assert!(problems[4].1.is_some_and(|p| p.starts_with("deploy 5's parent is cccc")), "{problems:?}");
        assert_eq!(problems[5].1, Some("not a valid record (deploy/6 holds the record of deploy 9)"));
        assert_eq!(problems[6], (7, Some("deploy 7 names bundle `x`, which is not a sha256")));
        assert!(listed[6].record.is_some());
        // A pruned predecessor cannot be checked.
        let alone = BTreeMap::from([(7, serde_json::to_vec(&rec(7, Some(&"e".repeat(64)))).unwrap())]);
        assert_eq!(judge_history(&alone)[0].problem, None);
    }

    #[test]
    fn chunk_and_record_keys_are_canonical_decimals() {
        assert_eq!(chunk_index(b"0"), Some(0));
        assert_eq!(chunk_index(b"12"), Some(12));
        for bad in [&b"01"[..], b"-1", b"+1", b"1e3", b"", b" 1", b"latest", b"\xff"] {
            assert_eq!(chunk_index(bad), None, "{bad:?}");
        }
    }

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
            ..Default::default()
        }
    }

    #[test]
    fn latest_is_sound_only_naming_the_newest_intact_record() {
        let intact = |id: u64| (1..=5).contains(&id) && id != 4;
        assert_eq!(judge_latest(None, intact, 0), Ok(None));
        assert_eq!(judge_latest(Some(b"5"), intact, 5), Ok(Some(5)));
        let broken = |latest: Option<&[u8]>, max: u64| judge_latest(latest, intact, max).unwrap_err();
        assert_eq!(broken(None, 5), "is missing although deploy/5 exists");
        for garbage in [&b"garbage"[..], b"-5", b"1e3", b"", b"\xff\xfe", b" 5\n", b"05", b"+5", b"0"] {
            assert!(broken(Some(garbage), 5).ends_with("not a deploy id"), "{garbage:?}");
        }
        assert_eq!(broken(Some(b"99999"), 5), "names deploy 99999, which does not exist");
        assert_eq!(broken(Some(b"4"), 5), "names deploy 4, which is not a valid record");
        assert_eq!(broken(Some(b"3"), 5), "names deploy 3 but deploy/5 exists");
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
        let who = DeployRecord { deployer: Some("d".repeat(MAX_DEPLOYER)), ..rec(1, None) };
        assert!(check_record(1, &who).is_ok());
        let bad = DeployRecord { deployer: Some("d".repeat(MAX_DEPLOYER + 1)), ..rec(1, None) };
        assert!(matches!(check_record(1, &bad), Err(RecordError::BadField { field: "deployer", .. })));
        let bad = DeployRecord { reason: Some("r".repeat(MAX_REASON + 1)), ..rec(1, None) };
        assert!(matches!(check_record(1, &bad), Err(RecordError::BadField { field: "reason", .. })));
    }

    #[test]
    fn a_record_without_the_newer_fields_reads_and_hashes_as_written() {
        let old = br#"{"id":1,"commit":null,"bundle":"b","frontend":"yaml","entry":"g.yaml","parent":null,"author":null,"time":0,"message":null,"rollback_of":null}"#;
        let rec: DeployRecord = serde_json::from_slice(old).unwrap();
        assert_eq!(rec.deployer, None);
        assert_eq!(rec.hash(), sha256_hex(old));
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
