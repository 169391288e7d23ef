//! One task per vertex: run the resource's watch, and check/apply whenever the resource
//! moved, an upstream vertex changed something, or a refresh arrived.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use super::EngineEnv;
use super::converged::{Cond, CondHandle};
use super::rate::RateLimiter;
use crate::contract::ResId;
use crate::contract::limits::ERROR_TEXT_MAX;
use crate::contract::meta::MIN_FOREVER_DELAY_MS;
use crate::os::unix_now;
use crate::resources::{
    ApplyCtx, Change, Changes, Detail, ResResult, Resource, ResourceError, Sends, Trigger, WatchCtx,
};
use crate::text::head;
use crate::world::RecentChange;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Not checked yet, or waiting for upstream vertices.
    Pending = 0,
    /// In its desired state.
    Ok = 1,
    /// Its last check/apply failed and retries are used up.
    Failed = 2,
    /// An upstream vertex failed, so this one cannot run.
    Blocked = 3,
}

impl Status {
    fn from_u8(v: u8) -> Status {
        match v {
            1 => Status::Ok,
            2 => Status::Failed,
            3 => Status::Blocked,
            _ => Status::Pending,
        }
    }
}

/// Links of a vertex to its neighbours; replaced wholesale on graph swap.
#[derive(Default)]
pub struct Links {
    pub upstream: Vec<Arc<VertexShared>>,
    /// (vertex, the edge notifies)
    pub downstream: Vec<(Arc<VertexShared>, bool)>,
    /// (upstream vertex, its send field, our recv field)
    pub recv: Vec<(Arc<VertexShared>, String, String)>,
}

/// State of a vertex that other vertices and the engine can see.
pub struct VertexShared {
    pub id: ResId,
    wake: Notify,
    event: AtomicBool,
    poke: AtomicBool,
    refresh: AtomicBool,
    status: AtomicU8,
    links: RwLock<Arc<Links>>,
    sends: Mutex<Option<Sends>>,
    pub last_error: Mutex<Option<String>>,
    /// The tail of the output of the command behind the last error, if any: published with
    /// the error, logged only at debug level.
    pub last_output: Mutex<Option<String>>,
    /// In noop mode: the last check found changes it did not make.
    pub would_change: AtomicBool,
    /// Whether this vertex really applies (is not in noop mode). A vertex that only reports
    /// what it would change sends refreshes only to vertices that also only report.
    applies: AtomicBool,
    /// Started again with the params it was stopped with moments ago (see `Engine::swap`):
    /// its first check looks at the state but is not a first run.
    resumed: AtomicBool,
    /// Its watch failed and its retries are used up: it watches no more (`meta.rewatch`
    /// starts it again on the next swap).
    watch_gave_up: AtomicBool,
    /// It undoes a resource that left the graph (`meta.reverse`): once it applies, the
    /// record of what undoes that resource is forgotten.
    pub reversal: AtomicBool,
    /// It has been in its desired state at least once (`meta.realize`).
    realized: AtomicBool,
    /// It has stopped checking for good (`meta.realize`: a vertex a swap let run on until it
    /// converged once); what replaces it starts checking then.
    finished: AtomicBool,
    /// Told of every status change and of `finished`.
    settled: Notify,
    /// The vertex this one replaces, which must finish first (`meta.realize`).
    predecessor: Mutex<Option<Arc<VertexShared>>>,
}

impl VertexShared {
    pub fn new(id: ResId, applies: bool) -> Arc<Self> {
        Arc::new(VertexShared {
            id,
            wake: Notify::new(),
            event: AtomicBool::new(false),
            poke: AtomicBool::new(false),
            refresh: AtomicBool::new(false),
            status: AtomicU8::new(Status::Pending as u8),
            links: RwLock::new(Arc::default()),
            sends: Mutex::new(None),
            last_error: Mutex::new(None),
            last_output: Mutex::new(None),
            would_change: AtomicBool::new(false),
            resumed: AtomicBool::new(false),
            applies: AtomicBool::new(applies),
            watch_gave_up: AtomicBool::new(false),
            reversal: AtomicBool::new(false),
            realized: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            settled: Notify::new(),
            predecessor: Mutex::new(None),
        })
    }

    /// Whether it has been in its desired state at least once.
    pub fn realized(&self) -> bool {
        self.realized.load(Ordering::SeqCst)
    }

    /// Until `done` holds for this vertex, woken by each status change.
    async fn until(&self, done: impl Fn(&Self) -> bool) {
        loop {
            let changed = self.settled.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }

    /// Until it has converged once, or cannot (it failed, or a failed dependency blocks it).
    pub async fn realized_or_stuck(&self) {
        self.until(|v| v.realized() || matches!(v.status(), Status::Failed | Status::Blocked)).await
    }

    /// It checks no more: whatever waits for it (`set_predecessor`) may go on.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.settled.notify_waiters();
    }

    /// This vertex checks only once `was`, which it replaces, has finished.
    pub fn set_predecessor(&self, was: Arc<VertexShared>) {
        *self.predecessor.lock().unwrap() = Some(was);
    }

    async fn after_predecessor(&self) {
        let was = self.predecessor.lock().unwrap().take();
        if let Some(was) = was {
            was.until(|v| v.finished.load(Ordering::SeqCst)).await;
        }
    }

    /// Whether its watch failed for good.
    pub fn watch_gave_up(&self) -> bool {
        self.watch_gave_up.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::SeqCst))
    }

    fn set_status(&self, s: Status) -> Status {
        if s == Status::Ok {
            self.realized.store(true, Ordering::SeqCst);
        }
        let was = Status::from_u8(self.status.swap(s as u8, Ordering::SeqCst));
        self.settled.notify_waiters();
        was
    }

    /// Replace the links; returns whether the set of upstream vertices changed.
    pub fn set_links(&self, links: Links) -> bool {
        let mut slot = self.links.write().unwrap();
        let same = slot.upstream.len() == links.upstream.len()
            && slot.upstream.iter().zip(&links.upstream).all(|(a, b)| Arc::ptr_eq(a, b));
        *slot = Arc::new(links);
        !same
    }

    /// Ask for a re-check without a refresh (e.g. its upstream vertices changed on a swap).
    pub fn poke(&self) {
        self.signal_poke(false);
    }

    fn links(&self) -> Arc<Links> {
        self.links.read().unwrap().clone()
    }

    /// The resource's own state may have changed.
    /// Mark a vertex that is not new (before its task starts): it takes over what `was`, its
    /// stopped predecessor, last sent, since its first check will not produce it again.
    pub fn resume(&self, was: &VertexShared) {
        *self.sends.lock().unwrap() = was.sends.lock().unwrap().clone();
        self.resumed.store(true, Ordering::SeqCst);
    }

    pub fn signal_event(&self) {
        self.event.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// An upstream vertex changed (and, on a notify edge, asks for a refresh).
    fn signal_poke(&self, refresh: bool) {
        if refresh {
            self.refresh.store(true, Ordering::SeqCst);
        }
        self.poke.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Wake the vertices downstream; `changed` asks notify edges for a refresh.
    fn poke_downstream(&self, changed: bool) {
        let applied = self.applies.load(Ordering::SeqCst);
        for (d, notify) in &self.links().downstream {
            let refresh = *notify && changed && (applied || !d.applies.load(Ordering::SeqCst));
            d.signal_poke(refresh);
        }
    }

    /// Set the status; neighbours downstream are poked when it changed.
    fn transition(&self, s: Status) {
        if self.set_status(s) != s {
            self.poke_downstream(false);
        }
    }
}

/// The longest wait before restarting a watch that keeps failing (unless `delay` is longer),
/// and how long a watch must have run for its failure not to count as failing quickly.
pub const WATCH_BACKOFF_CAP: Duration = Duration::from_secs(10);

/// Waits between restarts of a failing watch: `delay` (at least [`MIN_FOREVER_DELAY_MS`]),
/// doubled after each watch that failed quickly, up to [`WATCH_BACKOFF_CAP`]. Each restart
/// wakes a check, so a watch that ends at once must not be restarted at a fixed pace.
struct WatchBackoff {
    base: Duration,
    next: Duration,
}

impl WatchBackoff {
    fn new(delay_ms: u64) -> Self {
        let base = Duration::from_millis(delay_ms.max(MIN_FOREVER_DELAY_MS));
        WatchBackoff { base, next: base }
    }

    /// The wait after a watch that ran for `ran` and failed.
    fn after(&mut self, ran: Duration) -> Duration {
        // A watch that worked for a while starts over from the shortest wait.
        if ran > WATCH_BACKOFF_CAP {
            self.next = self.base;
        }
        let wait = self.next;
        self.next = (wait * 2).min(WATCH_BACKOFF_CAP.max(self.base));
        wait
    }
}

/// Retry warnings a vertex logs at once, then one every [`RETRY_LOG_PERIOD_SECS`]: a
/// resource that fails forever without a delay does not flood the log.
const RETRY_LOG_BURST: u32 = 5;
const RETRY_LOG_PERIOD_SECS: f64 = 10.0;

/// Rate limit for one vertex's retry warnings; counts what it held back.
struct RetryLog {
    bucket: RateLimiter,
    held_back: u64,
}

impl RetryLog {
    fn new() -> Self {
        RetryLog { bucket: RateLimiter::new(1.0 / RETRY_LOG_PERIOD_SECS, RETRY_LOG_BURST), held_back: 0 }
    }

    /// Log `line` at WARN if the bucket allows, else only count it (and log it at debug).
    fn warn(&mut self, id: &ResId, line: &str) {
        if self.bucket.try_take(Instant::now()) {
            match std::mem::take(&mut self.held_back) {
                0 => warn!("{id}: {line}"),
                n => warn!("{id}: {line} ({n} similar warnings not logged)"),
            }
        } else {
            self.held_back += 1;
            debug!("{id}: {line}");
        }
    }
}

/// Log a failure (its command output only at debug level, and never for a sensitive
/// resource) and record it, bounded.
fn record_error(shared: &VertexShared, e: &ResourceError, sensitive: bool) {
    let id = &shared.id;
    let text = head(&e.summary(), ERROR_TEXT_MAX).into_owned();
    error!("{id}: {text}");
    if let Some(out) = e.output().filter(|_| !sensitive) {
        debug!("{id}: output: {out}");
    }
    *shared.last_error.lock().unwrap() = Some(text);
    *shared.last_output.lock().unwrap() = e.output().map(str::to_string);
}

/// Log one change of a vertex, the one place that does: `KIND[NAME]: CHANGE` at info (in
/// noop mode `KIND[NAME]: noop: would CHANGE`), with the fields `kind`, `name` and `change`.
/// Its detail goes in a field of its own (`diff` or `output`), on that line in noop mode and
/// on a second line at debug level otherwise (resources leave out what `meta.sensitive`
/// hides).
fn log_change(id: &ResId, change: &Change, applied: bool) {
    let (kind, name) = (id.kind.as_str(), id.name.as_str());
    let line = head(&change.line, ERROR_TEXT_MAX);
    let (diff, output) = match &change.detail {
        Some(Detail::Diff(d)) => (Some(d.as_str()), None),
        Some(Detail::Output(o)) => (None, Some(o.as_str())),
        None => (None, None),
    };
    let (diff, output) = (diff.map(tracing::field::display), output.map(tracing::field::display));
    if !applied {
        info!(kind, name, change = %line, diff, output, "{id}: noop: would {line}");
        return;
    }
    info!(kind, name, change = %line, "{id}: {line}");
    if diff.is_some() || output.is_some() {
        debug!(kind, name, change = %line, diff, output, "{id}: {line}");
    }
}

/// What woke a vertex, as its checker reads it.
#[derive(Debug, Clone, Copy, Default)]
struct Wake {
    /// No check has succeeded since the vertex started.
    first: bool,
    /// Its own watch saw a change.
    event: bool,
    /// An upstream vertex on a `notify` edge changed something.
    refresh: bool,
    /// An upstream vertex changed or changed status, or a swap changed its upstream set.
    poke: bool,
}

/// Whether the upstream vertices hold this one back: `Blocked` when one failed or is
/// blocked (this vertex is blocked until they recover), `Pending` while one has not yet
/// been checked, `None` when all are `Ok`. Pure.
fn upstream_gate(upstream: &[Status]) -> Option<Status> {
    if upstream.iter().any(|s| matches!(s, Status::Failed | Status::Blocked)) {
        Some(Status::Blocked)
    } else if upstream.contains(&Status::Pending) {
        Some(Status::Pending)
    } else {
        None
    }
}

/// Whether a woken vertex whose upstream is all `Ok` checks its resource: when something
/// happened, or when it is not `Ok` itself (it was blocked, pending or failed). Pure.
fn needs_check(wake: Wake, own: Status) -> bool {
    wake.first || wake.event || wake.refresh || wake.poke || own != Status::Ok
}

/// After a successful check: downstream vertices look again when something changed or when
/// this vertex has just become `Ok`. Pure.
fn pokes_downstream(changes: usize, was: Status) -> bool {
    changes > 0 || was != Status::Ok
}

/// One retry taken from `retries` (-1: forever): what is left, and how it is logged. Pure.
fn retry_taken(retries: i32) -> (i32, String) {
    let left = retries.saturating_sub(1).max(-1);
    (left, if left < 0 { "forever".to_string() } else { format!("{left} left") })
}

/// The vertex task: its watch and its checks, side by side. Returns when cancelled (the
/// future is dropped) or never.
pub async fn run(
    shared: Arc<VertexShared>,
    res: Arc<dyn Resource>,
    env: Arc<EngineEnv>,
    mut cond: CondHandle,
) {
    // `meta.hidden`: in the graph (for edges, and exported), never checked on this host.
    if res.meta().hidden {
        debug!("{}: hidden: not applied on this host", shared.id);
        shared.transition(Status::Ok);
        cond.set(Cond::Ok);
        std::future::pending::<()>().await;
    }
    tokio::select! {
        _ = watch_loop(&shared, res.as_ref(), &env) => {}
        _ = check_loop(&shared, res.as_ref(), &env, cond) => {}
    }
}

/// Watch the resource (or poll it, as `meta.poll` asks), waking the checker on every change;
/// a failed watch is restarted as `meta.retry` allows, with a growing wait.
async fn watch_loop(shared: &Arc<VertexShared>, res: &dyn Resource, env: &EngineEnv) {
    let meta = res.meta();
    let id = &shared.id;
    let waker_shared = shared.clone();
    // Counts the watch's events, to tell a watch that failed before its first one.
    let events = Arc::new(AtomicU64::new(0));
    let counted = events.clone();
    let waker: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        waker_shared.signal_event()
    });
    if env.no_watch {
        waker();
        std::future::pending::<()>().await;
    }
    if meta.poll > 0 || !res.can_watch() {
        let period = Duration::from_secs(meta.poll.max(1));
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            waker();
        }
    }
    let ctx = WatchCtx::new(waker.clone(), env.fs.clone(), env.world.clone());
    let mut retries = meta.retry;
    let mut watch_log = RetryLog::new();
    let mut backoff = WatchBackoff::new(meta.delay);
    loop {
        let started = Instant::now();
        let before = events.load(Ordering::SeqCst);
        let Err(e) = res.watch(ctx.clone()).await else {
            std::future::pending::<()>().await;
            unreachable!()
        };
        // A watch that failed before its first event must not leave the vertex unchecked:
        // the check runs (and reports what is wrong, if anything). One that had an event
        // woke a check already: one check per restart is enough.
        if events.load(Ordering::SeqCst) == before {
            waker();
        }
        let text = head(&e.summary(), ERROR_TEXT_MAX).into_owned();
        if retries == 0 {
            error!("{id}: watch failed: {text}; no longer watching");
            *shared.last_error.lock().unwrap() = Some(format!("watch: {text}"));
            shared.watch_gave_up.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        retries = retries.saturating_sub(1).max(-1);
        let delay = backoff.after(started.elapsed());
        watch_log.warn(id, &format!("watch failed: {text}; restarting in {delay:?}"));
        tokio::time::sleep(delay).await;
    }
}

/// Sleep until woken, then check (and apply, unless in noop) when the upstream vertices let
/// it and something happened; retry as `meta.retry` says; record the outcome.
async fn check_loop(shared: &Arc<VertexShared>, res: &dyn Resource, env: &EngineEnv, mut cond: CondHandle) {
    let meta = res.meta();
    let apply = !(env.noop || meta.noop);
    // Details are worked out only when they are logged.
    let detail = !apply || tracing::enabled!(tracing::Level::DEBUG);
    // A resumed vertex's first check is neither a first run nor an event (the event is
    // its watch starting), so one-shot resources do not act again.
    let mut resumed = shared.resumed.load(Ordering::SeqCst);
    let mut first = !resumed;
    let mut ready = false;
    let mut limiter = meta.rate_limit().map(|l| RateLimiter::new(l, meta.burst));
    let mut retry_log = RetryLog::new();
    shared.after_predecessor().await;
    loop {
        shared.wake.notified().await;
        if !ready {
            if !shared.event.load(Ordering::SeqCst) {
                continue;
            }
            ready = true;
        }
        let links = shared.links();
        let statuses: Vec<Status> = links.upstream.iter().map(|u| u.status()).collect();
        match upstream_gate(&statuses) {
            Some(Status::Blocked) => {
                shared.transition(Status::Blocked);
                cond.set(Cond::Bad);
                continue;
            }
            Some(_) => {
                shared.transition(Status::Pending);
                cond.set(Cond::Busy);
                continue;
            }
            None => {}
        }
        let event = shared.event.swap(false, Ordering::SeqCst) && !std::mem::take(&mut resumed);
        let refresh = shared.refresh.swap(false, Ordering::SeqCst);
        let poke = shared.poke.swap(false, Ordering::SeqCst);
        let wake = Wake { first, event, refresh, poke };
        if !needs_check(wake, shared.status()) {
            continue;
        }
        cond.set(Cond::Busy);
        if let Some(l) = limiter.as_mut() {
            let wait = l.reserve(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let mut recv = Sends::new();
        for (up, send, field) in &links.recv {
            if let Some(v) = up.sends.lock().unwrap().as_ref().and_then(|s| s.get(send)) {
                recv.insert(field.clone(), v.clone());
            }
        }
        let failed = shared.status() == Status::Failed;
        let trigger = Trigger { first, event, refresh, failed };
        let check = Check { shared, res, env, apply, detail };
        let result = match check.record_reversal(first).await {
            Ok(()) => check.with_retries(trigger, &recv, &mut retry_log).await,
            Err(e) => Err(e),
        };
        if result.is_ok() {
            first = false;
            check.forget_reversal();
        }
        cond.set(check.record(result, trigger));
    }
}

/// One check of a vertex's resource, with what it needs.
struct Check<'a> {
    shared: &'a Arc<VertexShared>,
    res: &'a dyn Resource,
    env: &'a EngineEnv,
    apply: bool,
    detail: bool,
}

impl Check<'_> {
    /// Before a resource with `meta.reverse` first applies: record what undoes it (kept
    /// from an earlier run if there is one). Noop changes nothing, so it records nothing.
    async fn record_reversal(&self, first: bool) -> ResResult<()> {
        let Some(reversals) = self.env.reversals.clone() else { return Ok(()) };
        if !first || !self.apply || !self.res.meta().reverse {
            return Ok(());
        }
        let res = self.res.boxed_clone();
        tokio::task::spawn_blocking(move || reversals.record(res.as_ref()))
            .await
            .map_err(|e| ResourceError::msg(format!("recording what undoes it panicked: {e}")))?
            .map_err(|e| ResourceError::msg(format!("not applied: {}", e.summary())))
    }

    /// A reversal that applied is done: its record is forgotten.
    fn forget_reversal(&self) {
        if self.apply
            && self.shared.reversal.swap(false, Ordering::SeqCst)
            && let Some(reversals) = &self.env.reversals
        {
            reversals.forget(&self.shared.id);
            info!("{}: undone, as it left the graph", self.shared.id);
        }
    }

    /// `check_apply`, retried as `meta.retry` and `meta.delay` say; what it sends is kept for
    /// the receivers downstream.
    async fn with_retries(
        &self,
        trigger: Trigger,
        recv: &Sends,
        retry_log: &mut RetryLog,
    ) -> ResResult<Changes> {
        let (meta, id) = (self.res.meta(), &self.shared.id);
        let mut retries = meta.retry;
        loop {
            let mut ctx = ApplyCtx::new(trigger, recv.clone(), self.env.world.clone());
            ctx.detail = self.detail;
            ctx.local = self.env.local.clone();
            let permits = self.env.semaphores.acquire(&meta.sema).await;
            let r = self.res.check_apply(&ctx, self.apply).await;
            drop(permits);
            if let Some(s) = ctx.take_sends() {
                *self.shared.sends.lock().unwrap() = Some(s);
            }
            match r {
                Err(e) if retries != 0 => {
                    let left;
                    (retries, left) = retry_taken(retries);
                    let delay = meta.retry_delay();
                    let text = head(&e.summary(), ERROR_TEXT_MAX).into_owned();
                    retry_log.warn(id, &format!("{text}; retrying in {}ms ({left})", delay.as_millis()));
                    if let Some(out) = e.output().filter(|_| !meta.sensitive) {
                        debug!("{id}: output: {out}");
                    }
                    tokio::time::sleep(delay).await;
                }
                r => return r,
            }
        }
    }

    /// Log, count and publish what a check found; the vertex's convergence condition after it.
    fn record(&self, result: ResResult<Changes>, trigger: Trigger) -> Cond {
        let shared = self.shared;
        match result {
            Ok(changes) => {
                for c in &changes {
                    log_change(&shared.id, c, self.apply);
                    self.env.tally.remember(RecentChange {
                        resource: shared.id.to_string(),
                        change: c.line.clone(),
                        why: trigger.why().to_string(),
                        at: unix_now(),
                        noop: !self.apply,
                    });
                }
                self.env.tally.changed(changes.len());
                *shared.last_error.lock().unwrap() = None;
                *shared.last_output.lock().unwrap() = None;
                if !self.apply {
                    shared.would_change.store(!changes.is_empty(), Ordering::SeqCst);
                }
                let was = shared.set_status(Status::Ok);
                if pokes_downstream(changes.len(), was) {
                    shared.poke_downstream(!changes.is_empty());
                }
                Cond::Ok
            }
            Err(e) => {
                record_error(shared, &e, self.res.meta().sensitive);
                self.env.tally.failed();
                shared.transition(Status::Failed);
                Cond::Bad
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_realizing_vertex_is_awaited_until_it_converged_or_is_stuck_then_its_successor_goes_on() {
        let old = VertexShared::new(ResId::new("exec", "a"), true);
        let waiting = tokio::spawn({
            let old = old.clone();
            async move { old.realized_or_stuck().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        old.transition(Status::Pending);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "pending is not converged");
        old.transition(Status::Ok);
        waiting.await.unwrap();
        assert!(old.realized());

        let stuck = VertexShared::new(ResId::new("exec", "b"), true);
        stuck.transition(Status::Blocked);
        stuck.realized_or_stuck().await;
        assert!(!stuck.realized());

        let new = VertexShared::new(ResId::new("exec", "a"), true);
        new.set_predecessor(old.clone());
        let after = tokio::spawn({
            let new = new.clone();
            async move { new.after_predecessor().await }
        });
        tokio::task::yield_now().await;
        assert!(!after.is_finished(), "waits for the old one to finish");
        old.finish();
        after.await.unwrap();
    }

    #[test]
    fn a_watch_failing_quickly_waits_twice_as_long_each_time_up_to_the_cap() {
        let mut b = WatchBackoff::new(0);
        let waits: Vec<u64> = (0..9).map(|_| b.after(Duration::ZERO).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        // A watch that ran longer than the cap starts over.
        assert_eq!(b.after(WATCH_BACKOFF_CAP + Duration::from_secs(1)), Duration::from_millis(100));
        assert_eq!(b.after(Duration::ZERO), Duration::from_millis(200));
    }

    #[test]
    fn a_delay_longer_than_the_cap_is_kept() {
        let mut b = WatchBackoff::new(30_000);
        assert_eq!(b.after(Duration::ZERO), Duration::from_secs(30));
        assert_eq!(b.after(Duration::ZERO), Duration::from_secs(30));
    }

    #[test]
    fn a_failed_or_blocked_upstream_blocks_and_a_pending_one_holds_back() {
        use Status::*;
        assert_eq!(upstream_gate(&[]), None);
        assert_eq!(upstream_gate(&[Ok, Ok]), None);
        assert_eq!(upstream_gate(&[Ok, Pending]), Some(Pending));
        assert_eq!(upstream_gate(&[Pending, Failed]), Some(Blocked));
        assert_eq!(upstream_gate(&[Blocked, Ok]), Some(Blocked));
    }

    #[test]
    fn an_ok_vertex_checks_only_when_something_woke_it() {
        let nothing = Wake::default();
        assert!(!needs_check(nothing, Status::Ok));
        for own in [Status::Pending, Status::Failed, Status::Blocked] {
            assert!(needs_check(nothing, own), "{own:?}");
        }
        for wake in [
            Wake { first: true, ..nothing },
            Wake { event: true, ..nothing },
            Wake { refresh: true, ..nothing },
            Wake { poke: true, ..nothing },
        ] {
            assert!(needs_check(wake, Status::Ok), "{wake:?}");
        }
    }

    #[test]
    fn downstream_looks_again_after_a_change_or_a_recovery_only() {
        assert!(!pokes_downstream(0, Status::Ok));
        assert!(pokes_downstream(2, Status::Ok));
        assert!(pokes_downstream(0, Status::Failed));
        assert!(pokes_downstream(0, Status::Pending));
    }

    #[test]
    fn retries_count_down_to_zero_and_forever_stays_forever() {
        assert_eq!(retry_taken(3), (2, "2 left".to_string()));
        assert_eq!(retry_taken(1), (0, "0 left".to_string()));
        assert_eq!(retry_taken(-1), (-1, "forever".to_string()));
    }
}
