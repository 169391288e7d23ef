//! The watchers of a running mcl program's changing values: one task per function and
//! arguments the program reads ([`Watched`]), each setting new values in the program's
//! [`Streams`], by events, never by polling:
//! - a file (`os.readfile`, `deploy.readfile`, `file_exists`): inotify on the file, through
//!   its directory, so a file that does not exist yet is seen when it appears; each
//!   finished write is read again;
//! - the time (`datetime.now`): a timer that fires on each second (or minute);
//! - a command (`os.system`): its output, line by line, while it runs;
//! - a key of the cluster's key store (`world.getval`, `world.kvlookup`): the world's
//!   change feed of `kv/` keys, read again when that key changes (or may have);
//! - the other hosts' exports (`collect.res`): the world's live list of them.
//!
//! Each watcher looks once right after it is in place, so a change between the program's
//! first read and the watch is not missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncBufReadExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::lang::HostInfo;
use super::lang::eval::streams::{StreamKey, Streams, Watched};
use super::lang::funcs::{CallCtx, Changes};
use super::lang::value::Val;
use crate::os::fswatch::{FsWatcher, Subscription};
use crate::world::World;

/// The longest line of a command's output kept as a value; the rest of the line is cut.
const MAX_LINE: usize = 1 << 20;

/// A task stopped when dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The watchers of one running program.
pub struct Watchers {
    streams: Arc<Streams>,
    fs: Arc<FsWatcher>,
    host: Arc<HostInfo>,
    /// The cluster (or this host alone); `None`: a key is read as unset.
    world: Option<Arc<dyn World>>,
    running: HashMap<StreamKey, Task>,
}

impl Watchers {
    pub fn new(
        streams: Arc<Streams>,
        fs: Arc<FsWatcher>,
        host: Arc<HostInfo>,
        world: Option<Arc<dyn World>>,
    ) -> Watchers {
        Watchers { streams, fs, host, world, running: HashMap::new() }
    }

    /// Watches each value the program reads now, and stops watching those it no longer reads.
    pub fn reconcile(&mut self) {
        let wanted = self.streams.wanted();
        self.running.retain(|key, _| wanted.iter().any(|w| &w.key == key));
        for watched in wanted {
            if !self.running.contains_key(&watched.key) {
                let key = watched.key.clone();
                let task = self.spawn(watched);
                self.running.insert(key, Task(task));
            }
        }
    }

    fn spawn(&self, watched: Watched) -> JoinHandle<()> {
        let (streams, host) = (self.streams.clone(), self.host.clone());
        match watched.changes {
            Changes::File(find) => {
                let path = find(&host, &watched.args);
                let fs = self.fs.clone();
                tokio::spawn(async move {
                    let Some(path) = path else { return };
                    let changed = Arc::new(Notify::new());
                    let wake = changed.clone();
                    let _sub: Subscription =
                        fs.subscribe_settled(path, Arc::new(move || wake.notify_one())).await;
                    loop {
                        call_again(&streams, &watched, &host).await;
                        changed.notified().await;
                    }
                })
            }
            Changes::Tick(seconds) => tokio::spawn(async move {
                loop {
                    call_again(&streams, &watched, &host).await;
                    tokio::time::sleep(until_next(seconds)).await;
                }
            }),
            Changes::Lines => tokio::spawn(async move { follow_lines(&streams, &watched).await }),
            Changes::Exports(value_of) => {
                let (world, own) = (self.world.clone(), host.hostname.clone());
                tokio::spawn(async move { follow_exports(&streams, &watched, world, &own, value_of).await })
            }
            Changes::Kv(value_of) => {
                let world = self.world.clone();
                tokio::spawn(async move { follow_key(&streams, &watched, world, value_of).await })
            }
        }
    }
}

/// The function called again with its arguments, off the runtime's threads (it may read a
/// file), and its value set.
async fn call_again(streams: &Arc<Streams>, watched: &Watched, host: &Arc<HostInfo>) {
    let (call, args, sig, host) =
        (watched.builtin.call, watched.args.clone(), watched.sig.clone(), host.clone());
    let value = tokio::task::spawn_blocking(move || call(&CallCtx { sig: &sig, host: &host }, args)).await;
    if let Ok(value) = value {
        streams.set(&watched.key, value.map_err(|e| e.0));
    }
}

/// The time to the next multiple of `seconds` since the epoch, so that ticks fall on the
/// second (or minute) the value changes.
fn until_next(seconds: u64) -> Duration {
    let period = Duration::from_secs(seconds.max(1));
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let into = Duration::from_nanos((since.as_nanos() % period.as_nanos()) as u64);
    period - into
}

/// Follows the key `kv/<first argument>`: read once the change feed is subscribed, then
/// again each time the feed names it (or may have missed it). A read that fails sets an
/// error, so the program keeps its last graph until the cluster answers again.
async fn follow_key(
    streams: &Arc<Streams>,
    watched: &Watched,
    world: Option<Arc<dyn World>>,
    value_of: fn(Option<(&str, &str)>) -> Val,
) {
    let Some(Val::Str(key)) = watched.args.first() else { return };
    let Some(world) = world else {
        streams.set(&watched.key, Ok(value_of(None)));
        return;
    };
    let mut changes = world.kv_changes();
    loop {
        let value = match world.kv_get(key).await {
            Ok(v) => Ok(value_of(v.as_ref().map(|v| (v.value.as_str(), v.host.as_str())))),
            Err(e) => Err(format!("cannot read the key {key:?}: {e}")),
        };
        streams.set(&watched.key, value);
        loop {
            match changes.recv().await {
                Ok(changed) if changed == *key => break,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Follows the resources of a kind the other hosts export, as the world's live list of
/// collected exports changes.
async fn follow_exports(
    streams: &Arc<Streams>,
    watched: &Watched,
    world: Option<Arc<dyn World>>,
    own: &str,
    value_of: fn(&[(&str, &str)]) -> Val,
) {
    let Some(Val::Str(kind)) = watched.args.first() else { return };
    let Some(world) = world else {
        streams.set(&watched.key, Ok(value_of(&[])));
        return;
    };
    let mut collected = world.collected();
    loop {
        let value = {
            let list = collected.borrow_and_update();
            let of_kind: Vec<(&str, &str)> = list
                .iter()
                .filter(|e| e.kind == *kind && e.host != own)
                .map(|e| (e.name.as_str(), e.host.as_str()))
                .collect();
            value_of(&of_kind)
        };
        streams.set(&watched.key, Ok(value));
        if collected.changed().await.is_err() {
            return;
        }
    }
}

/// Runs `sh -c COMMAND` and sets each line it prints as the value; what it writes on stderr
/// is logged. A command that ends keeps its last line.
async fn follow_lines(streams: &Arc<Streams>, watched: &Watched) {
    let Some(Val::Str(command)) = watched.args.first() else { return };
    let child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            streams.set(&watched.key, Err(format!("cannot run `sh -c {command:?}`: {e}")));
            return;
        }
    };
    if let Some(stderr) = child.stderr.take() {
        let command = command.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!("os.system {command:?}: stderr: {line}");
            }
        });
    }
    let Some(stdout) = child.stdout.take() else { return };
    let mut reader = tokio::io::BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line(&mut reader, &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                streams.set(&watched.key, Ok(Val::Str(text.trim_end_matches(['\n', '\r']).to_string())));
            }
        }
    }
    let _ = child.wait().await;
}

/// One line into `line`, at most [`MAX_LINE`] bytes of it kept; the bytes read.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(end) => (&buf[..=end], true),
            None => (buf, false),
        };
        let keep = chunk.len().min(MAX_LINE.saturating_sub(line.len()));
        line.extend_from_slice(&chunk[..keep]);
        let used = chunk.len();
        reader.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}
