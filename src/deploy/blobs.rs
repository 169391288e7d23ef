//! Many blobs at once, in few requests: which are stored (keys-only reads of each blob's
//! prefix, in transactions: the cost follows the bundle, not the storage), their bytes read back in transactions of
//! reads, the missing or damaged ones written in transactions, and many fetched in
//! transactions of reads. Every transaction stays within etcd's operation and request-size
//! limits ([`txn_batches`]), and every reply within what the client accepts: a reply too big
//! (what is stored is not what mgmt stores) is read again one blob at a time.

use std::collections::{HashMap, HashSet};

use etcd_client::{Client, GetOptions, GetResponse, Txn, TxnOp, TxnOpResponse};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::bundle::{CHUNK_SIZE, MAX_FILE_SIZE, Manifest, chunk_count, chunks, sha256_hex};
use super::source::Built;
use super::store::{self, BlobState, DeployKeys, FetchError, Stored, chunk_index, reply_too_large};
use crate::world::etcd::txn_batches;

/// What fails here is etcd: a blob that is not what it must be is stored again, not an error.
type Result<T, E = etcd_client::Error> = std::result::Result<T, E>;

/// Keys listed per range read under one blob's prefix, when its keys do not fit in a
/// transaction's reply: about 1 MiB of keys, under the client's 4 MiB reply limit. A page
/// that is too big all the same (keys far longer than mgmt's) is asked again with half the
/// limit.
const LIST_PAGE: i64 = 10_000;

/// Transactions in flight at once: etcd commits concurrent writes with one fsync.
const IN_FLIGHT: usize = 8;

/// The keys stored under one blob's prefix: each full key and its chunk index, if it is a
/// canonical one.
pub type Listed = Vec<(Vec<u8>, Option<usize>)>;

/// The keys under one blob's prefix, and how old they are: the newest key's create revision,
/// and whether any key was written more than once (put over, so its bytes may have changed).
#[derive(Debug, Default, Clone)]
pub struct Stamped {
    pub listed: Listed,
    pub newest_create: i64,
    pub rewritten: bool,
}

impl Stamped {
    fn add(&mut self, keys: &DeployKeys, sha: &str, kv: &etcd_client::KeyValue) {
        let Some(rest) = kv.key().strip_prefix(keys.blob(sha).as_bytes()) else { return };
        self.listed.push((kv.key().to_vec(), chunk_index(rest)));
        self.newest_create = self.newest_create.max(kv.create_revision());
        self.rewritten |= kv.version() != 1;
    }
}

/// Blobs whose bytes need not be read back: those of the live deploy, verified (read back or
/// written) when it was published, as long as none of their keys was created at or after
/// that deploy's record or written twice. Anything else about them (a key deleted and put
/// again, a put over a chunk) shows in the keys' revisions, and they are read back.
#[derive(Debug, Default)]
pub struct Trusted {
    shas: HashSet<String>,
    /// The revision of the live deploy's record.
    before: i64,
}

impl Trusted {
    /// The blobs of the bundle `manifest` (and the manifest itself, `bundle`), published in a
    /// record at `revision`.
    pub fn live(manifest: &Manifest, bundle: &str, revision: i64) -> Trusted {
        let mut shas: HashSet<String> = manifest.files.iter().map(|f| f.sha256.clone()).collect();
        shas.insert(bundle.to_string());
        Trusted { shas, before: revision }
    }

    fn covers(&self, sha: &str, s: &Stamped) -> bool {
        self.shas.contains(sha) && !s.rewritten && s.newest_create > 0 && s.newest_create < self.before
    }
}

/// What the keys under a blob's prefix say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByKeys {
    Absent,
    /// Exactly the chunks `0..n`: whole, if their bytes match.
    Complete,
    /// Chunks missing or too many, or keys that are not chunks: `stale` are the keys that do
    /// not belong to the blob (deleted when it is stored again).
    Damaged {
        stale: Vec<Vec<u8>>,
    },
}

/// Judge a blob of `n` chunks by the keys listed under its prefix (pure).
pub fn judge_keys(n: usize, listed: &[(Vec<u8>, Option<usize>)]) -> ByKeys {
    if listed.is_empty() {
        return ByKeys::Absent;
    }
    let stale: Vec<Vec<u8>> =
        listed.iter().filter(|(_, i)| i.is_none_or(|i| i >= n)).map(|(k, _)| k.clone()).collect();
    let mut present: Vec<usize> = listed.iter().filter_map(|(_, i)| *i).filter(|i| *i < n).collect();
    present.sort_unstable();
    present.dedup();
    if stale.is_empty() && present.len() == n { ByKeys::Complete } else { ByKeys::Damaged { stale } }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What [`list_stored`] found: the keys under each blob's prefix (blobs with none left
/// out), and the oldest revision any of them was read at.
#[derive(Debug, Default)]
pub struct Listing {
    pub stamps: HashMap<String, Stamped>,
    pub read_at: i64,
}

/// Every key under the prefixes of the blobs `wanted`. When the storage is small next to
/// the bundle ([`list_whole_storage`], after a count of its keys), one keys-only listing
/// of it; else keys-only prefix reads, a transaction of them at a time, [`IN_FLIGHT`] at
/// once, whose cost follows the bundle, not what etcd holds. A transaction whose reply is
/// too big (junk keys under some prefix) is read again blob by blob, in pages.
pub async fn list_stored(
    c: &mut Client,
    keys: &DeployKeys,
    wanted: &HashSet<&str>,
) -> Result<Listing, etcd_client::Error> {
    let count = c.get(keys.storage(), Some(GetOptions::new().with_prefix().with_count_only())).await?;
    if list_whole_storage(usize::try_from(count.count()).unwrap_or(usize::MAX), wanted.len()) {
        return list_storage(c, keys, wanted).await;
    }
    let mut shas: Vec<&str> = wanted.iter().copied().collect();
    shas.sort_unstable();
    let batches = batched(&shas, |sha| keys.blob(sha).len() + READ_OVERHEAD);
    let mut results = futures_util::stream::iter(batches)
        .map(|batch| {
            let mut c = c.clone();
            async move {
                let opts = || Some(GetOptions::new().with_prefix().with_keys_only());
                let ops: Vec<TxnOp> = batch.iter().map(|sha| TxnOp::get(keys.blob(sha), opts())).collect();
                let mut out = Vec::new();
                let mut read_at = i64::MAX;
                match txn_split(&mut c, ops).await {
                    Ok((r, at)) => {
                        read_at = at;
                        for (sha, op) in batch.iter().zip(r) {
                            let TxnOpResponse::Get(g) = op else { continue };
                            let mut st = Stamped::default();
                            for kv in g.kvs() {
                                st.add(keys, sha, kv);
                            }
                            out.push((*sha, st));
                        }
                    }
                    Err(e) if reply_too_large(&e) => {
                        for sha in batch {
                            let (st, at) = list_prefix(&mut c, keys, sha).await?;
                            read_at = read_at.min(at);
                            out.push((sha, st));
                        }
                    }
                    Err(e) => return Err(e),
                }
                Ok((out, read_at))
            }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut out = Listing { stamps: HashMap::new(), read_at: i64::MAX };
    while let Some(r) = results.next().await {
        let (listed, read_at) = r?;
        out.read_at = out.read_at.min(read_at);
        for (sha, st) in listed {
            if !st.listed.is_empty() {
                out.stamps.insert(sha.to_string(), st);
            }
        }
    }
    Ok(out)
}

/// The keys under one blob's prefix.
async fn list_prefix(
    c: &mut Client,
    keys: &DeployKeys,
    sha: &str,
) -> Result<(Stamped, i64), etcd_client::Error> {
    let mut out = Stamped::default();
    let read_at = page_keys(c, &keys.blob(sha), &mut |kv| out.add(keys, sha, kv)).await?;
    Ok((out, read_at))
}

/// Every key under `prefix`, handed to `each`, from keys-only range reads of [`LIST_PAGE`]
/// keys (fewer when a page is too big); the oldest revision a page was read at.
async fn page_keys(
    c: &mut Client,
    prefix: &str,
    each: &mut (dyn FnMut(&etcd_client::KeyValue) + Send),
) -> Result<i64, etcd_client::Error> {
    let end = prefix_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut limit = LIST_PAGE;
    let mut read_at = i64::MAX;
    loop {
        let opts = GetOptions::new().with_range(end.clone()).with_keys_only().with_limit(limit);
        let r = match c.get(from.clone(), Some(opts)).await {
            Ok(r) => r,
            Err(e) if reply_too_large(&e) && limit > 1 => {
                limit /= 2;
                continue;
            }
            Err(e) => return Err(e),
        };
        read_at = read_at.min(r.header().map_or(0, |h| h.revision()));
        for kv in r.kvs() {
            each(kv);
        }
        match r.kvs().last() {
            Some(last) if r.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok(read_at),
        }
    }
}

/// Whether to list all of the storage rather than read each wanted blob's prefix (pure):
/// while it holds at most about eight keys per blob wanted (retention keeps it small). In
/// the bench, with three trees of 1,000 files stored, both take the same time; with
/// 10,000 files the listing saved a sixth of the deploy. A storage far bigger than the
/// bundle would make a listing cost what etcd holds.
pub fn list_whole_storage(stored_keys: usize, wanted: usize) -> bool {
    stored_keys <= wanted.saturating_mul(8).saturating_add(1000)
}

/// [`list_stored`] by one listing of the whole storage, in pages.
async fn list_storage(
    c: &mut Client,
    keys: &DeployKeys,
    wanted: &HashSet<&str>,
) -> Result<Listing, etcd_client::Error> {
    let prefix = keys.storage();
    let mut stamps: HashMap<String, Stamped> = HashMap::new();
    let read_at = page_keys(c, &prefix, &mut |kv| {
        let Some(rest) = kv.key().strip_prefix(prefix.as_bytes()) else { return };
        let Some(slash) = rest.iter().position(|b| *b == b'/') else { return };
        let Ok(sha) = std::str::from_utf8(&rest[..slash]) else { return };
        if wanted.contains(sha) {
            stamps.entry(sha.to_string()).or_default().add(keys, sha, kv);
        }
    })
    .await?;
    Ok(Listing { stamps, read_at })
}

/// What a read reply adds to a value: its key and the key-value's fields, rounded up.
const READ_OVERHEAD: usize = 160;

/// One transaction of `ops`, without conditions, and the replies in order. A transaction
/// etcd refuses for having too many operations (a cluster run with a `--max-txn-ops` below
/// [`crate::world::etcd::TXN_MAX_OPS`]) is cut in halves until it is accepted.
///
/// Also the revision the replies were read at (the oldest, when the transaction was cut).
async fn txn_split(c: &mut Client, ops: Vec<TxnOp>) -> Result<(Vec<TxnOpResponse>, i64), etcd_client::Error> {
    let mut pending = vec![ops];
    let mut out = Vec::new();
    let mut read_at = i64::MAX;
    while let Some(mut ops) = pending.pop() {
        match c.txn(Txn::new().and_then(ops.clone())).await {
            Ok(r) => {
                read_at = read_at.min(r.header().map_or(0, |h| h.revision()));
                out.extend(r.op_responses());
            }
            Err(e) if ops.len() > 1 && e.to_string().contains("too many operations in txn request") => {
                let second = ops.split_off(ops.len() / 2);
                pending.extend([second, ops]);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((out, read_at))
}

/// Items cut in transactions by [`txn_batches`], in order.
fn batched<T: Clone>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let sizes: Vec<usize> = items.iter().map(size).collect();
    let mut rest = items;
    let mut out = Vec::new();
    for n in txn_batches(&sizes) {
        let (this, next) = rest.split_at(n);
        out.push(this.to_vec());
        rest = next;
    }
    out
}

/// A blob to make sure of.
struct Blob<'a> {
    sha: String,
    parts: Vec<&'a [u8]>,
}

/// Make sure each of `data` is stored whole: the keys under each blob's prefix, then, with
/// `check_bytes`, the bytes of those listed complete are read back and hashed (a transaction
/// of reads for many small blobs; a bigger blob a chunk at a time), and the missing and
/// damaged ones are written in transactions. `progress(done, total)` counts the distinct
/// blobs known to be stored whole, as they are found or written. What was found and done,
/// for each of `data` in order, and the revision from which they are known to be stored.
///
/// `trusted` is awaited while the keys are listed: what it names is not read back.
pub async fn sync_blobs(
    c: &mut Client,
    keys: &DeployKeys,
    data: &[&[u8]],
    check_bytes: bool,
    trusted: impl std::future::Future<Output = Trusted>,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Synced> {
    let shas: Vec<String> = data.iter().map(|d| sha256_hex(d)).collect();
    // Distinct blobs: a transaction may not name a key twice.
    let mut seen = HashSet::new();
    let blobs: Vec<Blob> = data
        .iter()
        .zip(&shas)
        .filter(|(_, sha)| seen.insert(sha.as_str()))
        .map(|(d, sha)| Blob { sha: sha.clone(), parts: chunks(d) })
        .collect();
    let wanted: HashSet<&str> = blobs.iter().map(|b| b.sha.as_str()).collect();
    let mut lister = c.clone();
    let (listing, trusted) = tokio::join!(list_stored(&mut lister, keys, &wanted), trusted);
    let Listing { stamps: listed, read_at } = listing?;
    let mut states: HashMap<&str, (Stored, Vec<Vec<u8>>)> = HashMap::new();
    let mut complete = Vec::new();
    let (total, mut settled) = (blobs.len(), 0);
    for b in &blobs {
        let stamp = listed.get(&b.sha);
        let read_back = check_bytes && !stamp.is_some_and(|st| trusted.covers(&b.sha, st));
        match judge_keys(b.parts.len(), stamp.map_or(&[][..], |st| st.listed.as_slice())) {
            ByKeys::Absent => _ = states.insert(&b.sha, (Stored::Written, Vec::new())),
            ByKeys::Damaged { stale } => _ = states.insert(&b.sha, (Stored::Repaired, stale)),
            ByKeys::Complete if read_back => complete.push(b),
            ByKeys::Complete => {
                settled += 1;
                states.insert(&b.sha, (Stored::Present, Vec::new()));
            }
        }
    }
    progress(settled, total);
    let mut found = |n| {
        settled += n;
        progress(settled, total);
    };
    for (b, state) in complete.iter().zip(check_stored(c, keys, &complete, &mut found).await?) {
        let stored = match state {
            BlobState::Intact => Stored::Present,
            BlobState::Absent => Stored::Written,
            BlobState::Damaged => Stored::Repaired,
        };
        // Complete by its keys: no key to delete, whatever its bytes.
        states.insert(&b.sha, (stored, Vec::new()));
    }
    let to_write: Vec<(&Blob, &[Vec<u8>])> = blobs
        .iter()
        .filter_map(|b| {
            let (s, stale) = &states[b.sha.as_str()];
            (*s != Stored::Present).then_some((b, stale.as_slice()))
        })
        .collect();
    write_blobs(c, keys, &to_write, &mut |n| {
        settled += n;
        progress(settled, total);
    })
    .await?;
    Ok(Synced { stored: shas.iter().map(|sha| states[sha.as_str()].0).collect(), read_at })
}

/// What [`sync_blobs`] found and did.
#[derive(Debug)]
pub struct Synced {
    /// For each blob asked, in order.
    pub stored: Vec<Stored>,
    /// Every blob was stored whole at this revision (or was written after it): only a
    /// deletion after it can have removed one. The guard of the record that will need
    /// them ([`store::append`]).
    pub read_at: i64,
}

/// Read back the bytes of blobs whose chunks are all listed and hash them: one-chunk blobs
/// a transaction of reads at a time (about [`crate::world::etcd::TXN_MAX_BYTES`] of values
/// each), bigger ones a chunk at a time. A reply over the client's limit means something
/// else is stored there: those blobs are checked one by one. `intact(n)` after each
/// transaction that found `n` intact.
async fn check_stored(
    c: &mut Client,
    keys: &DeployKeys,
    blobs: &[&Blob<'_>],
    intact: &mut (dyn FnMut(usize) + Send),
) -> Result<Vec<BlobState>> {
    let mut out = vec![BlobState::Damaged; blobs.len()];
    let (small, big): (Vec<usize>, Vec<usize>) = (0..blobs.len()).partition(|i| blobs[*i].parts.len() == 1);
    let batches = batched(&small, |i| blobs[*i].parts[0].len() + READ_OVERHEAD);
    let mut results = futures_util::stream::iter(batches)
        .map(|batch| {
            let mut c = c.clone();
            async move {
                // Serializable: answered by the member without a round through the leader. A
                // check that reads a lagging member is repaired by a later deploy; what runs
                // is verified by the agents anyway.
                let opts = || Some(GetOptions::new().with_serializable());
                let ops: Vec<TxnOp> =
                    batch.iter().map(|i| TxnOp::get(keys.chunk(&blobs[*i].sha, 0), opts())).collect();
                let checked: Result<Vec<(usize, BlobState)>> = match txn_split(&mut c, ops).await {
                    Ok((r, _)) => {
                        Ok(batch.iter().zip(r).map(|(i, op)| (*i, small_state(&blobs[*i].sha, op))).collect())
                    }
                    Err(e) if reply_too_large(&e) => {
                        let mut v = Vec::new();
                        for i in batch {
                            v.push((i, store::blob_state(&mut c, keys, &blobs[i].sha, 1, true).await?));
                        }
                        Ok(v)
                    }
                    Err(e) => Err(e),
                };
                checked
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(r) = results.next().await {
        let r: Vec<(usize, BlobState)> = r?;
        intact(r.iter().filter(|(_, s)| *s == BlobState::Intact).count());
        for (i, s) in r {
            out[i] = s;
        }
    }
    drop(results);
    for i in big {
        let b = blobs[i];
        out[i] = store::blob_state(c, keys, &b.sha, b.parts.len(), true).await?;
        intact(usize::from(out[i] == BlobState::Intact));
    }
    Ok(out)
}

/// A one-chunk blob from the reply to a read of its chunk 0 (pure).
fn small_state(sha: &str, op: TxnOpResponse) -> BlobState {
    let TxnOpResponse::Get(r) = op else { return BlobState::Damaged };
    match r.kvs().first() {
        None => BlobState::Absent,
        Some(kv) if kv.value().len() <= CHUNK_SIZE && hex::encode(Sha256::digest(kv.value())) == sha => {
            BlobState::Intact
        }
        Some(_) => BlobState::Damaged,
    }
}

/// One operation of a write: a chunk put, or the deletion of a key that does not belong.
enum Op<'a> {
    Put(String, &'a [u8]),
    Delete(&'a [u8]),
}

impl Op<'_> {
    fn size(&self) -> usize {
        match self {
            Op::Put(k, v) => k.len() + v.len(),
            Op::Delete(k) => k.len(),
        }
    }
    fn txn_op(&self) -> TxnOp {
        match self {
            Op::Put(k, v) => TxnOp::put(k.as_str(), v.to_vec(), None),
            Op::Delete(k) => TxnOp::delete(k.to_vec(), None),
        }
    }
}

/// Write blobs in transactions, a few side by side: first every chunk but chunk 0 and the
/// deletion of the keys that do not belong (`stale`), then every chunk 0. A blob is whole
/// once its chunk 0 is there, which is never before its other chunks. `written(n)` after
/// each transaction that completed `n` blobs.
async fn write_blobs(
    c: &mut Client,
    keys: &DeployKeys,
    blobs: &[(&Blob<'_>, &[Vec<u8>])],
    written: &mut (dyn FnMut(usize) + Send),
) -> Result<()> {
    let mut rest = Vec::new();
    for (b, stale) in blobs {
        rest.extend(b.parts.iter().enumerate().skip(1).map(|(n, part)| Op::Put(keys.chunk(&b.sha, n), part)));
        rest.extend(stale.iter().map(|k| Op::Delete(k)));
    }
    run_txns(c, &rest, &mut |_| {}).await?;
    let firsts: Vec<Op> = blobs.iter().map(|(b, _)| Op::Put(keys.chunk(&b.sha, 0), b.parts[0])).collect();
    run_txns(c, &firsts, written).await
}

/// Run operations in transactions within etcd's limits, [`IN_FLIGHT`] at a time (so at most
/// that many transactions' bytes are copied at once); `each(n)` after a transaction of `n`
/// operations is applied.
async fn run_txns(c: &mut Client, ops: &[Op<'_>], each: &mut (dyn FnMut(usize) + Send)) -> Result<()> {
    let sizes: Vec<usize> = ops.iter().map(Op::size).collect();
    let mut rest = ops;
    let mut txns = Vec::new();
    for n in txn_batches(&sizes) {
        let (this, next) = rest.split_at(n);
        txns.push(this);
        rest = next;
    }
    let mut applied = futures_util::stream::iter(txns)
        .map(|txn| {
            let mut c = c.clone();
            async move {
                let ops: Vec<TxnOp> = txn.iter().map(Op::txn_op).collect();
                txn_split(&mut c, ops).await.map(|_| txn.len())
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(r) = applied.next().await {
        each(r?);
    }
    Ok(())
}

/// Fetch blobs of known sizes, in order, each checked as [`store::get_blob`] does (exactly
/// the chunks its size needs, each of the right length; the caller verifies the hashes).
/// One-chunk blobs are read a transaction at a time (a read of the blob's prefix, at most
/// two keys, to see an extra chunk; about [`crate::world::etcd::TXN_MAX_BYTES`] of values per
/// transaction), bigger ones with [`store::get_blob`].
pub async fn get_blobs(
    c: &mut Client,
    keys: &DeployKeys,
    wanted: &[(&str, u64)],
) -> Result<Vec<Vec<u8>>, BlobError> {
    if let Some(i) = wanted.iter().position(|(_, s)| *s > MAX_FILE_SIZE) {
        let (sha, size) = wanted[i];
        return Err(BlobError {
            index: i,
            error: FetchError::Invalid(format!("blob {sha}: size {size} is above the limit")),
        });
    }
    let mut out: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
    let small: Vec<usize> = (0..wanted.len()).filter(|i| chunk_count(wanted[*i].1) == 1).collect();
    let batches = batched(&small, |i| wanted[*i].1 as usize + READ_OVERHEAD);
    let results: Vec<Result<Fetched, BlobError>> = futures_util::stream::iter(batches)
        .map(|batch| {
            let mut c = c.clone();
            async move {
                let opts = || Some(GetOptions::new().with_prefix().with_limit(2));
                let ops: Vec<TxnOp> =
                    batch.iter().map(|i| TxnOp::get(keys.blob(wanted[*i].0), opts())).collect();
                match txn_split(&mut c, ops).await {
                    Ok((r, _)) => batch
                        .iter()
                        .zip(r)
                        .map(|(i, op)| {
                            let (sha, size) = wanted[*i];
                            let at = |error| BlobError { index: *i, error };
                            let TxnOpResponse::Get(g) = op else {
                                return Err(at(FetchError::Invalid(format!("blob {sha}: not a read reply"))));
                            };
                            Ok((*i, small_blob(keys, sha, size, &g).map_err(at)?))
                        })
                        .collect(),
                    // Something bigger than its size is stored: read one by one, which names it.
                    Err(e) if reply_too_large(&e) => {
                        let mut v = Vec::new();
                        for i in batch {
                            let (sha, size) = wanted[i];
                            let data = store::get_blob(&mut c, keys, sha, size).await;
                            v.push((i, data.map_err(|error| BlobError { index: i, error })?));
                        }
                        Ok(v)
                    }
                    Err(e) => Err(BlobError { index: batch[0], error: e.into() }),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for r in results {
        for (i, data) in r? {
            out[i] = Some(data);
        }
    }
    for (i, (sha, size)) in wanted.iter().enumerate() {
        if out[i].is_none() {
            let data = store::get_blob(c, keys, sha, *size).await;
            out[i] = Some(data.map_err(|error| BlobError { index: i, error })?);
        }
    }
    Ok(out.into_iter().map(|d| d.expect("every blob fetched")).collect())
}

/// Blobs fetched by one transaction: their indices in the request, and their bytes.
type Fetched = Vec<(usize, Vec<u8>)>;

/// Why [`get_blobs`] failed, and for which of the blobs asked (for an etcd failure, the
/// first of the transaction that failed).
#[derive(Debug)]
pub struct BlobError {
    pub index: usize,
    pub error: FetchError,
}

/// A one-chunk blob from a read of its prefix (at most two keys), checked.
fn small_blob(keys: &DeployKeys, sha: &str, size: u64, r: &GetResponse) -> Result<Vec<u8>, FetchError> {
    store::check_small_blob(keys, sha, size, r.count(), r.kvs().first().map(|kv| (kv.key(), kv.value())))
        .map(<[u8]>::to_vec)
}

/// What [`store_bundle`] did with a bundle's distinct blobs (the manifest not counted).
#[derive(Debug, Default, PartialEq)]
pub struct Uploaded {
    pub written: usize,
    pub present: usize,
    /// Stored copies that did not match their sha256 and were stored again.
    pub repaired: usize,
    /// Every blob was stored whole at this revision ([`Synced::read_at`]).
    pub read_at: i64,
}

/// Store a built bundle's blobs and manifest, checking the ones already there.
pub async fn store_bundle(c: &mut Client, keys: &DeployKeys, built: &Built) -> Result<Uploaded> {
    store_bundle_with(c, keys, built, std::future::ready(Trusted::default()), &mut |_, _| {}).await
}

/// [`store_bundle`] in few requests (see [`sync_blobs`]): the keys under each blob's
/// prefix, the bytes of the blobs already there read back in transactions, and only
/// the missing or damaged ones written, in transactions; blobs `trusted` are not read back.
/// `progress(done, total)` follows the blobs being written.
pub async fn store_bundle_with(
    c: &mut Client,
    keys: &DeployKeys,
    built: &Built,
    trusted: impl std::future::Future<Output = Trusted>,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Uploaded> {
    let mut seen = std::collections::HashSet::new();
    let manifest = built.manifest.canonical_json();
    let distinct: Vec<&[u8]> = built
        .manifest
        .files
        .iter()
        .zip(&built.contents)
        .filter(|(f, _)| seen.insert(f.sha256.as_str()))
        .map(|(_, data)| data.as_slice())
        .chain([manifest.as_slice()])
        .collect();
    let synced = sync_blobs(c, keys, &distinct, true, trusted, progress).await?;
    let mut up = Uploaded { read_at: synced.read_at, ..Uploaded::default() };
    let (files, manifest) = synced.stored.split_at(synced.stored.len() - 1);
    for s in files {
        match s {
            Stored::Written => up.written += 1,
            Stored::Present => up.present += 1,
            Stored::Repaired => up.repaired += 1,
        }
    }
    if manifest[0] == Stored::Repaired {
        up.repaired += 1;
    }
    Ok(up)
}

/// Fetch and verify a deploy's bundle: the manifest must hash to the bundle ID and every
/// file to its entry.
pub async fn fetch_bundle(
    c: &mut Client,
    keys: &DeployKeys,
    bundle: &str,
) -> Result<(Manifest, Vec<Vec<u8>>), FetchError> {
    let manifest = store::fetch_manifest(c, keys, bundle).await?;
    let wanted: Vec<(&str, u64)> = manifest.files.iter().map(|f| (f.sha256.as_str(), f.size)).collect();
    let contents = get_blobs(c, keys, &wanted).await.map_err(|e| e.error)?;
    for (f, data) in manifest.files.iter().zip(&contents) {
        manifest.verify_file(f, data)?;
    }
    Ok((manifest, contents))
}

/// Make sure every blob of a bundle is still there (retention may have removed some since
/// [`store_bundle`] saw them: [`store::BlobsPruned`]) and put back what is missing. One
/// round of reads of the keys: the bytes were checked by [`store_bundle`] before. How many
/// distinct blobs were put back, and the revision from which all are known to be stored.
pub async fn ensure_bundle(c: &mut Client, keys: &DeployKeys, built: &Built) -> Result<(usize, i64)> {
    let manifest = built.manifest.canonical_json();
    let all: Vec<&[u8]> = built.contents.iter().map(Vec::as_slice).chain([manifest.as_slice()]).collect();
    let synced =
        sync_blobs(c, keys, &all, false, std::future::ready(Trusted::default()), &mut |_, _| {}).await?;
    let mut restored = std::collections::HashSet::new();
    for (data, s) in all.iter().zip(synced.stored) {
        if s != Stored::Present {
            restored.insert(*data);
        }
    }
    Ok((restored.len(), synced.read_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str, i: Option<usize>) -> (Vec<u8>, Option<usize>) {
        (s.as_bytes().to_vec(), i)
    }

    #[test]
    fn only_the_live_deploys_unchanged_blobs_are_trusted() {
        let t = Trusted { shas: ["a".to_string()].into(), before: 100 };
        let stamp =
            |newest_create, rewritten| Stamped { listed: vec![key("k", Some(0))], newest_create, rewritten };
        assert!(t.covers("a", &stamp(99, false)));
        assert!(!t.covers("b", &stamp(99, false)), "not in the live deploy");
        assert!(!t.covers("a", &stamp(99, true)), "put over");
        assert!(!t.covers("a", &stamp(100, false)), "created again at or after the record");
        assert!(!t.covers("a", &stamp(0, false)), "no keys");
        assert!(!Trusted::default().covers("a", &stamp(1, false)));
    }

    #[test]
    fn a_blob_is_complete_by_its_keys_only_with_exactly_its_chunks() {
        assert_eq!(judge_keys(1, &[]), ByKeys::Absent);
        assert_eq!(judge_keys(1, &[key("s/0", Some(0))]), ByKeys::Complete);
        assert_eq!(judge_keys(2, &[key("s/1", Some(1)), key("s/0", Some(0))]), ByKeys::Complete);
        assert_eq!(judge_keys(2, &[key("s/1", Some(1))]), ByKeys::Damaged { stale: vec![] });
        assert_eq!(
            judge_keys(1, &[key("s/0", Some(0)), key("s/1", Some(1))]),
            ByKeys::Damaged { stale: vec![b"s/1".to_vec()] }
        );
        assert_eq!(
            judge_keys(1, &[key("s/0", Some(0)), key("s/00", None)]),
            ByKeys::Damaged { stale: vec![b"s/00".to_vec()] }
        );
    }

    #[test]
    fn the_whole_storage_is_listed_only_while_it_is_small_next_to_the_bundle() {
        assert!(list_whole_storage(0, 0));
        assert!(list_whole_storage(1050, 20), "retention keeps a small storage");
        assert!(list_whole_storage(9000, 1001));
        assert!(!list_whole_storage(1200, 20));
        assert!(!list_whole_storage(200_000, 1001));
        assert!(list_whole_storage(usize::MAX, usize::MAX), "no overflow");
    }

    #[test]
    fn the_storage_range_ends_after_its_prefix() {
        assert_eq!(prefix_end("/_mgmt/storage/sha256/"), b"/_mgmt/storage/sha2560".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
