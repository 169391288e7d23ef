//! One mirror of etcd keys, for every reader that follows them: the world (`exported/` and
//! `kv/`) and the deploy follower (`deploy/latest`).
//!
//! A mirror reads a prefix (or one key), then watches it from the revision after the one
//! read. A compacted or cancelled watch, an ended stream, an outage or any other error makes
//! it read everything again, after a jittered backoff ([`Backoff`]): a watch never resumes
//! from a revision kept from before the break, so nothing compacted meanwhile is missed.
//! Readers get the whole mirrored map on a `tokio::sync::watch` channel ([`Mirrored`]).
//!
//! What is read is untrusted: keys are taken as (lossy) UTF-8 and values as bytes, for the
//! reader to parse; a reply is bounded by the client's reply limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchResponse};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::backoff::Backoff;

/// What a mirror follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// Every key under a prefix.
    Prefix(String),
    /// One key.
    Key(String),
}

impl Watched {
    fn key(&self) -> &str {
        match self {
            Watched::Prefix(k) | Watched::Key(k) => k,
        }
    }

    fn get_options(&self) -> Option<GetOptions> {
        match self {
            Watched::Prefix(_) => Some(GetOptions::new().with_prefix()),
            Watched::Key(_) => None,
        }
    }

    fn watch_options(&self, from: i64) -> WatchOptions {
        let opts = WatchOptions::new().with_start_revision(from);
        match self {
            Watched::Prefix(_) => opts.with_prefix(),
            Watched::Key(_) => opts,
        }
    }

    /// What the mirror does, for its errors: `watching /_mgmt/kv/`.
    pub fn what(&self) -> String {
        format!("watching {}", self.key())
    }

    /// The permission a refusal is about: `read under /_mgmt/kv/`, `read /_mgmt/deploy/latest`.
    pub fn keys(&self) -> String {
        match self {
            Watched::Prefix(p) => format!("read under {p}"),
            Watched::Key(k) => format!("read {k}"),
        }
    }
}

/// What a mirror holds: every key followed, with its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirrored {
    pub kvs: BTreeMap<String, Vec<u8>>,
    /// The etcd revision the map is at (0 until read).
    pub revision: i64,
    /// Whether the keys were read once (until then the map is empty for want of a read).
    pub read: bool,
}

/// Where a mirror gets its client, and where it tells how etcd answers.
#[async_trait]
pub trait Link: Send + Sync + 'static {
    /// A client to read and watch with; `None` once stopping. Called again after each break.
    async fn client(&self) -> Option<Client>;
    /// A read or watch failed (`what` and `keys` as in [`Watched::what`], [`Watched::keys`]);
    /// the mirror reads again after a backoff.
    fn failed(&self, what: &str, keys: String, e: &etcd_client::Error);
    /// The keys were read and are watched.
    fn ok(&self);
}

/// Mirror `watched` until `cancel` (or until nobody receives any more).
pub fn spawn(link: Arc<dyn Link>, watched: Watched, cancel: CancellationToken) -> watch::Receiver<Mirrored> {
    let (tx, rx) = watch::channel(Mirrored::default());
    tokio::spawn(run(link, watched, tx, cancel));
    rx
}

/// Why one read and watch ended without an error.
enum Ended {
    Stopped,
    ReadAgain(String),
}

async fn run(link: Arc<dyn Link>, watched: Watched, tx: watch::Sender<Mirrored>, cancel: CancellationToken) {
    let mut backoff = Backoff::new();
    while !cancel.is_cancelled() && !tx.is_closed() {
        let Some(mut c) = link.client().await else { return };
        match read_and_watch(&mut c, &watched, &tx, &*link, &mut backoff, &cancel).await {
            Ok(Ended::Stopped) => return,
            Ok(Ended::ReadAgain(why)) => debug!("watch of {} ended ({why}); reading again", watched.key()),
            Err(e) => link.failed(&watched.what(), watched.keys(), &e),
        }
        backoff.wait(&cancel).await;
    }
}

/// Read the keys, publish them, then apply each change the watch brings until it breaks.
async fn read_and_watch(
    c: &mut Client,
    watched: &Watched,
    tx: &watch::Sender<Mirrored>,
    link: &dyn Link,
    backoff: &mut Backoff,
    cancel: &CancellationToken,
) -> Result<Ended, etcd_client::Error> {
    let resp = c.get(watched.key(), watched.get_options()).await?;
    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
    let kvs = resp.kvs().iter().map(|kv| (key_text(kv.key()), kv.value().to_vec())).collect();
    tx.send_if_modified(|m| reset(m, kvs, revision));
    let mut stream = c.watch(watched.key(), Some(watched.watch_options(revision + 1))).await?;
    link.ok();
    backoff.reset();
    loop {
        let msg = tokio::select! {
            m = stream.message() => m?,
            _ = cancel.cancelled() => return Ok(Ended::Stopped),
        };
        let Some(resp) = msg else { return Ok(Ended::ReadAgain("the stream ended".into())) };
        match next_step(resp.canceled(), resp.compact_revision(), resp.events().len()) {
            Step::ReadAgain => {
                let why = format!("cancelled: {}", crate::text::head(resp.cancel_reason(), 200));
                return Ok(Ended::ReadAgain(why));
            }
            Step::Wait => {}
            Step::Apply => {
                tx.send_modify(|m| apply(m, changes(&resp)));
            }
        }
    }
}

/// What a watch response calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The watch is over (cancelled, or behind a compaction): read everything again.
    ReadAgain,
    /// Changes to apply.
    Apply,
    /// Nothing to do (the watch's creation, a progress notice).
    Wait,
}

fn next_step(canceled: bool, compact_revision: i64, events: usize) -> Step {
    if canceled || compact_revision > 0 {
        Step::ReadAgain
    } else if events > 0 {
        Step::Apply
    } else {
        Step::Wait
    }
}

/// One change a watch reported.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Put { key: String, value: Vec<u8>, revision: i64 },
    Delete { key: String, revision: i64 },
}

fn changes(resp: &WatchResponse) -> Vec<Change> {
    resp.events()
        .iter()
        .filter_map(|ev| {
            let kv = ev.kv()?;
            let (key, revision) = (key_text(kv.key()), kv.mod_revision());
            Some(match ev.event_type() {
                EventType::Put => Change::Put { key, value: kv.value().to_vec(), revision },
                EventType::Delete => Change::Delete { key, revision },
            })
        })
        .collect()
}

/// The map as read at `revision`. Whether readers hear of it: only if it differs from what
/// they have, or is the first read.
fn reset(m: &mut Mirrored, kvs: BTreeMap<String, Vec<u8>>, revision: i64) -> bool {
    let changed = !m.read || m.kvs != kvs;
    *m = Mirrored { kvs, revision, read: true };
    changed
}

/// Apply a watch's changes, in order.
fn apply(m: &mut Mirrored, changes: Vec<Change>) {
    for change in changes {
        match change {
            Change::Put { key, value, revision } => {
                m.kvs.insert(key, value);
                m.revision = m.revision.max(revision);
            }
            Change::Delete { key, revision } => {
                m.kvs.remove(&key);
                m.revision = m.revision.max(revision);
            }
        }
    }
}

fn key_text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kvs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        kvs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn a_cancelled_or_compacted_watch_is_read_again() {
        assert_eq!(next_step(true, 0, 0), Step::ReadAgain);
        assert_eq!(next_step(false, 42, 0), Step::ReadAgain);
        // Events that come with the cancellation are not applied: the read covers them.
        assert_eq!(next_step(true, 42, 3), Step::ReadAgain);
        assert_eq!(next_step(false, 0, 2), Step::Apply);
        assert_eq!(next_step(false, 0, 0), Step::Wait);
    }

    #[test]
    fn the_first_read_is_news_even_when_empty_and_later_ones_only_when_different() {
        let mut m = Mirrored::default();
        assert!(reset(&mut m, BTreeMap::new(), 5));
        assert!(m.read && m.revision == 5);
        assert!(!reset(&mut m, BTreeMap::new(), 9), "the same keys again");
        assert_eq!(m.revision, 9);
        assert!(reset(&mut m, map(&[("a", "1")]), 10));
        assert!(!reset(&mut m, map(&[("a", "1")]), 11));
        assert!(reset(&mut m, map(&[("a", "2")]), 12));
        assert!(reset(&mut m, BTreeMap::new(), 13));
    }

    #[test]
    fn changes_apply_in_order() {
        let mut m = Mirrored { kvs: map(&[("a", "1"), ("b", "1")]), revision: 3, read: true };
        apply(
            &mut m,
            vec![
                Change::Put { key: "c".into(), value: b"1".to_vec(), revision: 4 },
                Change::Delete { key: "a".into(), revision: 5 },
                Change::Put { key: "b".into(), value: b"2".to_vec(), revision: 6 },
                Change::Delete { key: "c".into(), revision: 6 },
                Change::Delete { key: "never there".into(), revision: 6 },
            ],
        );
        assert_eq!(m.kvs, map(&[("b", "2")]));
        assert_eq!(m.revision, 6);
    }

    #[test]
    fn a_prefix_and_a_key_are_read_and_told_apart() {
        let p = Watched::Prefix("/_mgmt/kv/".into());
        let k = Watched::Key("/_mgmt/deploy/latest".into());
        assert_eq!(p.what(), "watching /_mgmt/kv/");
        assert_eq!(p.keys(), "read under /_mgmt/kv/");
        assert_eq!(k.keys(), "read /_mgmt/deploy/latest");
        assert!(p.get_options().is_some() && k.get_options().is_none());
    }
}
