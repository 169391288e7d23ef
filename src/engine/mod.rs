//! The engine: runs a resource graph, one task per vertex, and swaps in new graphs by diff.
//!
//! Graph building, swap planning and convergence bookkeeping are plain functions on data
//! (`graph`, `converged`); the I/O lives in the resources the vertex tasks drive.

pub mod assemble;
pub mod converged;
pub mod graph;
pub mod group;
pub mod outcome;
pub mod rate;
pub mod reverse;
pub mod sema;
pub mod vertex;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::contract::ResId;
use crate::os::FsWatcher;
use crate::resources::{Local, Resource};
use crate::world::World;
pub use converged::{Convergence, Summary};
pub use graph::{Graph, GraphError, SwapPlan, plan_swap};
pub use outcome::{Outcome, Tally};
pub use vertex::Status;
use vertex::{Links, VertexShared};

#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Check and report only.
    pub noop: bool,
    /// Check each vertex once; watch nothing.
    pub no_watch: bool,
    /// Where resources keep state between runs (the agent's prefix).
    pub state_dir: Option<std::path::PathBuf>,
}

/// What every vertex task shares.
pub struct EngineEnv {
    pub noop: bool,
    pub no_watch: bool,
    pub fs: Arc<FsWatcher>,
    pub convergence: Arc<Convergence>,
    pub world: Arc<dyn World>,
    /// Changes and failures since the engine started, across swaps.
    pub tally: Tally,
    /// The semaphores of `meta.sema`, across swaps.
    pub semaphores: sema::Semaphores,
    /// Where what undoes `meta.reverse` resources is recorded; `None`: nowhere (an engine
    /// without a prefix does not undo).
    pub reversals: Option<reverse::Reversals>,
    /// The state directory and the exit request every check gets.
    pub local: Local,
}

struct Running {
    shared: Arc<VertexShared>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

pub struct Engine {
    env: Arc<EngineEnv>,
    graph: Graph,
    running: Vec<Running>,
    /// Vertices a swap stopped while they were `Ok`, for `RESUME_WINDOW`.
    stopped: HashMap<ResId, Stopped>,
    /// Vertices a swap removed or changed that run on until they have converged once
    /// (`meta.realize`): cancelled at shutdown with the others.
    lingering: Vec<CancellationToken>,
}

/// A vertex a swap stopped while it was `Ok`.
struct Stopped {
    at: Instant,
    res: Arc<dyn Resource>,
    shared: Arc<VertexShared>,
}

/// A vertex stopped by a swap and started again by another within this window, with the
/// same params, is resumed rather than new: a one-shot `exec` does not run again because a
/// graph flipped (a file saved in two steps, a collected resource that blinked).
pub const RESUME_WINDOW: Duration = Duration::from_secs(10);

/// Per-vertex status for reports.
#[derive(Debug, Clone)]
pub struct VertexReport {
    pub id: ResId,
    pub status: Status,
    pub error: Option<String>,
    /// The tail of the output of the command behind `error`, if any (logged only at debug
    /// level; published with the error).
    pub output: Option<String>,
    /// Noop only: its last check found changes it did not make.
    pub would_change: bool,
}

impl VertexReport {
    /// The error as published in status: `KIND[NAME]: error: output tail`, bounded.
    pub fn status_error(&self) -> Option<String> {
        let e = self.error.as_ref()?;
        let full = match &self.output {
            Some(o) => format!("{}: {e}: {o}", self.id),
            None => format!("{}: {e}", self.id),
        };
        Some(crate::text::head(&full, 2 * crate::contract::limits::ERROR_TEXT_MAX).into_owned())
    }
}

impl Engine {
    /// An engine whose vertices reach `world` (the `kv` resource) and watch files through
    /// `fs` (shared with whoever else watches files in this process: a frontend).
    pub fn new(opts: EngineOptions, world: Arc<dyn World>, fs: Arc<FsWatcher>) -> Engine {
        let env = EngineEnv {
            noop: opts.noop,
            no_watch: opts.no_watch,
            fs,
            convergence: Convergence::new(),
            world,
            tally: Tally::default(),
            semaphores: sema::Semaphores::default(),
            reversals: None,
            local: Local::new(opts.state_dir),
        };
        Engine {
            env: Arc::new(env),
            graph: Graph::default(),
            running: Vec::new(),
            stopped: HashMap::new(),
            lingering: Vec::new(),
        }
    }

    /// Record and apply reversals (`meta.reverse`) in `reversals`. Before the first swap.
    pub fn with_reversals(mut self, reversals: reverse::Reversals) -> Engine {
        if let Some(env) = Arc::get_mut(&mut self.env) {
            env.reversals = Some(reversals);
        }
        self
    }

    pub fn fs(&self) -> Arc<FsWatcher> {
        self.env.fs.clone()
    }

    /// The exit code a resource asked the run to end with (the `exit` kind), once one asks.
    pub fn exit_requests(&self) -> tokio::sync::watch::Receiver<Option<u8>> {
        self.env.local.exit_requests()
    }

    pub fn convergence(&self) -> Arc<Convergence> {
        self.env.convergence.clone()
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Replace the running graph: unchanged vertices keep running untouched, removed and
    /// changed ones stop, new ones start. Returns what was done.
    pub fn swap(&mut self, mut new: Graph) -> SwapPlan {
        let reversals = self.env.reversals.as_ref().map(|r| r.add_pending(&mut new)).unwrap_or_default();
        if !reversals.is_empty() {
            let ids: Vec<String> = reversals.iter().map(ToString::to_string).collect();
            info!("undoing what left the graph: {}", ids.join(", "));
        }
        let mut plan = plan_swap(&self.graph, &new);
        self.rewatch(&mut plan, &new);
        let mut old: Vec<Option<Running>> = std::mem::take(&mut self.running).into_iter().map(Some).collect();
        let mut next: Vec<Option<Running>> = (0..new.vertices.len()).map(|_| None).collect();
        for &(oi, ni) in &plan.keep {
            next[ni] = old[oi].take();
        }
        self.forget_stopped();
        let mut realizing = HashMap::new();
        for &oi in &plan.stop {
            let res = self.graph.vertices[oi].clone();
            if let Some(r) = old[oi].take()
                && let Some(was) = self.stop(&res, &r.shared, &r.cancel)
            {
                realizing.insert(was.id.clone(), was);
            }
        }
        let shared: Vec<Arc<VertexShared>> = next
            .iter()
            .zip(&new.vertices)
            .map(|(r, v)| r.as_ref().map(|r| r.shared.clone()).unwrap_or_else(|| self.new_shared(v.as_ref())))
            .collect();
        for &ni in &plan.start {
            if let Some(was) = realizing.remove(&shared[ni].id) {
                shared[ni].set_predecessor(was);
            }
        }
        link(&new.edges, &shared);
        for id in &reversals {
            shared[new.index[id]].reversal.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        for &ni in &plan.start {
            next[ni] = Some(self.start(shared[ni].clone(), new.vertices[ni].clone()));
        }
        self.running = next.into_iter().map(|r| r.expect("every vertex is kept or started")).collect();
        self.graph = new;
        plan
    }

    /// `meta.rewatch`: a kept vertex whose watch failed for good is started again.
    fn rewatch(&self, plan: &mut SwapPlan, new: &Graph) {
        let again: Vec<(usize, usize)> = plan
            .keep
            .iter()
            .copied()
            .filter(|&(oi, ni)| new.vertices[ni].meta().rewatch && self.running[oi].shared.watch_gave_up())
            .collect();
        plan.keep.retain(|k| !again.contains(k));
        for (oi, ni) in again {
            info!("{}: watching again (rewatch)", new.vertices[ni].id());
            plan.stop.push(oi);
            plan.start.push(ni);
        }
    }

    /// Replace some vertices of the running graph by resources of the same kind and name
    /// that manage and need the same paths (see `assemble::changed_in_place`): the graph's
    /// edges stay, those vertices restart, and only they and their neighbours are linked
    /// again. The cost is that of the changed vertices, not of the graph.
    pub fn replace(&mut self, mut changes: Vec<(usize, Arc<dyn Resource>)>) -> SwapPlan {
        // `meta.rewatch`: a vertex whose watch gave up starts again with any new graph.
        for (i, v) in self.graph.vertices.iter().enumerate() {
            if v.meta().rewatch
                && self.running[i].shared.watch_gave_up()
                && changes.iter().all(|(c, _)| *c != i)
            {
                info!("{}: watching again (rewatch)", v.id());
                changes.push((i, v.clone()));
            }
        }
        let changed: HashSet<usize> = changes.iter().map(|(i, _)| *i).collect();
        let mut plan = SwapPlan {
            keep: (0..self.running.len()).filter(|i| !changed.contains(i)).map(|i| (i, i)).collect(),
            stop: changes.iter().map(|(i, _)| *i).collect(),
            start: changes.iter().map(|(i, _)| *i).collect(),
        };
        if changes.is_empty() {
            return plan;
        }
        self.forget_stopped();
        let fresh: HashMap<usize, Arc<VertexShared>> =
            changes.iter().map(|(i, res)| (*i, self.new_shared(res.as_ref()))).collect();
        self.relink_around(&changed, &fresh);
        for (i, res) in changes {
            let was = std::mem::replace(&mut self.graph.vertices[i], res.clone());
            let (shared, cancel) = (self.running[i].shared.clone(), self.running[i].cancel.clone());
            if let Some(realizing) = self.stop(&was, &shared, &cancel) {
                fresh[&i].set_predecessor(realizing);
            }
            self.running[i] = self.start(fresh[&i].clone(), res);
        }
        plan.stop.sort_unstable();
        plan.start.sort_unstable();
        plan
    }

    /// Link again the changed vertices (whose new state is in `fresh`) and their
    /// neighbours, the only vertices whose links change when the graph's shape does not.
    fn relink_around(&self, changed: &HashSet<usize>, fresh: &HashMap<usize, Arc<VertexShared>>) {
        let shared = |i: usize| fresh.get(&i).unwrap_or(&self.running[i].shared).clone();
        let mut links: HashMap<usize, Links> = changed.iter().map(|i| (*i, Links::default())).collect();
        for e in self.graph.edges.iter().filter(|e| changed.contains(&e.from) || changed.contains(&e.to)) {
            links.entry(e.to).or_default();
            links.entry(e.from).or_default();
        }
        for e in &self.graph.edges {
            if let Some(l) = links.get_mut(&e.to) {
                l.upstream.push(shared(e.from));
                if let Some((send, recv)) = &e.send_recv {
                    l.recv.push((shared(e.from), send.clone(), recv.clone()));
                }
            }
            if let Some(l) = links.get_mut(&e.from) {
                l.downstream.push((shared(e.to), e.notify));
            }
        }
        for (i, l) in links {
            let s = shared(i);
            if s.set_links(l) {
                s.poke();
            }
        }
    }

    fn new_shared(&self, v: &dyn Resource) -> Arc<VertexShared> {
        VertexShared::new(v.id(), !(self.env.noop || v.meta().noop))
    }

    /// Vertices stopped longer ago than the resume window are not resumed any more.
    fn forget_stopped(&mut self) {
        let now = Instant::now();
        self.stopped.retain(|_, s| now.duration_since(s.at) < RESUME_WINDOW);
    }

    /// Start a vertex running `v`, resumed if a swap stopped it with the same params
    /// within the window.
    fn start(&mut self, shared: Arc<VertexShared>, v: Arc<dyn Resource>) -> Running {
        let members = v.grouped();
        if !members.is_empty() {
            let names: Vec<String> = members.iter().map(ToString::to_string).collect();
            tracing::info!("{}: grouped with {}", v.id(), names.join(", "));
        }
        if let Some(was) = self.stopped.remove(&v.id())
            && was.res.cmp(v.as_ref())
        {
            shared.resume(&was.shared);
        }
        let cancel = CancellationToken::new();
        let cond = self.env.convergence.register();
        let fut = vertex::run(shared.clone(), v, self.env.clone(), cond);
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = fut => {}
            }
        });
        Running { shared, cancel, task }
    }

    /// The changes made (or, in noop mode, found) and the checks failed since the engine
    /// started.
    pub fn outcome(&self) -> Outcome {
        self.env.tally.outcome()
    }

    /// The last changes the vertices made (or found, in noop mode), oldest first.
    pub fn recent_changes(&self) -> Vec<crate::world::RecentChange> {
        self.env.tally.recent()
    }

    pub fn report(&self) -> Vec<VertexReport> {
        self.running
            .iter()
            .map(|r| VertexReport {
                id: r.shared.id.clone(),
                status: r.shared.status(),
                error: r.shared.last_error.lock().unwrap().clone(),
                output: r.shared.last_output.lock().unwrap().clone(),
                would_change: r.shared.would_change.load(std::sync::atomic::Ordering::SeqCst),
            })
            .collect()
    }

    /// Stop every vertex and wait (bounded) for their tasks to end.
    pub async fn shutdown(&mut self) {
        for r in &self.running {
            r.cancel.cancel();
        }
        for c in self.lingering.drain(..) {
            c.cancel();
        }
        // File checks still queued start no write from now on.
        crate::os::atomic::refuse_writes();
        let tasks: Vec<_> = self.running.drain(..).map(|r| r.task).collect();
        let _ = tokio::time::timeout(Duration::from_secs(2), futures_join_all(tasks)).await;
        // File writes cut short by the stop leave no temp file behind.
        crate::os::atomic::stop_writes(Duration::from_secs(1)).await;
        self.graph = Graph::default();
    }
}

/// How long a vertex that a swap removed or changed runs on to converge once
/// (`meta.realize`) before it is stopped anyway.
pub const REALIZE_WAIT_MAX: Duration = Duration::from_secs(600);

impl Engine {
    /// Stop a vertex running `res`; one that was `Ok` may be resumed within the window. One
    /// with `meta.realize` that never converged runs on until it has (or cannot), bounded
    /// by [`REALIZE_WAIT_MAX`]: it is returned, for what replaces it to wait for.
    fn stop(
        &mut self,
        res: &Arc<dyn Resource>,
        shared: &Arc<VertexShared>,
        cancel: &CancellationToken,
    ) -> Option<Arc<VertexShared>> {
        if res.meta().realize && !shared.realized() {
            info!("{}: realize: runs on until it has converged once", shared.id);
            self.lingering.retain(|c| !c.is_cancelled());
            self.lingering.push(cancel.clone());
            let (was, shared, cancel) = (shared.clone(), shared.clone(), cancel.clone());
            tokio::spawn(async move {
                let done = tokio::time::timeout(REALIZE_WAIT_MAX, shared.realized_or_stuck()).await;
                if done.is_err() {
                    tracing::warn!(
                        "{}: realize: not converged within {REALIZE_WAIT_MAX:?}; stopped",
                        shared.id
                    );
                }
                cancel.cancel();
                shared.finish();
            });
            return Some(was);
        }
        cancel.cancel();
        if shared.status() == Status::Ok {
            let was = Stopped { at: Instant::now(), res: res.clone(), shared: shared.clone() };
            self.stopped.insert(shared.id.clone(), was);
        }
        None
    }
}

/// Give each vertex its links along `edges`. One whose upstream vertices changed looks
/// again: it may have been waiting on, or blocked by, one that is gone.
fn link(edges: &[graph::Edge], shared: &[Arc<VertexShared>]) {
    let mut links: Vec<Links> = (0..shared.len()).map(|_| Links::default()).collect();
    for e in edges {
        links[e.to].upstream.push(shared[e.from].clone());
        if let Some((send, recv)) = &e.send_recv {
            links[e.to].recv.push((shared[e.from].clone(), send.clone(), recv.clone()));
        }
        links[e.from].downstream.push((shared[e.to].clone(), e.notify));
    }
    for (s, l) in shared.iter().zip(links) {
        if s.set_links(l) {
            s.poke();
        }
    }
}

async fn futures_join_all(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}
