//! The agent: runs one graph at a time, and swaps in each new one.
//!
//! Everything that can change what runs arrives as an [`Event`]: a signal, a new version of
//! the graph from its frontend (or one that failed to load), news from the deploy
//! follower, a change of the resources the world collects, a change of convergence.
//! [`Agent::run`] only turns its sources into events; [`Agent::handle`] decides. Every new
//! graph takes one path, `Agent::apply`: assemble it with the collected resources, export
//! (not in noop mode), swap, report. A graph that fails to assemble leaves the running one
//! as it is.

mod change;
mod ending;
mod event;
mod status;

#[cfg(test)]
mod tests;

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use change::{Change, swapped_line};
pub use ending::Ending;
pub use event::{Event, Signals, Sources, Stop};
pub use status::unix_now;

use crate::deploy::follow::{self, DeployEvent, Rememberer};
use crate::engine::assemble::{self, Assembled, assemble};
use crate::engine::{Engine, EngineOptions, GraphError, Summary};
use crate::frontend::GraphSpec;
use crate::frontend::lang_file::LangFile;
use crate::frontend::registry::lang_program;
use crate::frontend::source::{SpecError, SpecSource, SpecVersion};
use crate::os::FsWatcher;
use crate::text::count;
use crate::world::access::EtcdAccess;
use crate::world::{Exported, World};

/// How the agent runs, from its flags.
pub struct AgentConfig {
    pub hostname: String,
    /// Where the agent keeps its state (locked by the caller).
    pub prefix: PathBuf,
    pub noop: bool,
    /// Apply once, then end.
    pub no_watch: bool,
    /// End once nothing was busy for this many seconds.
    pub converged_timeout: Option<u64>,
    pub ending: Ending,
    /// Publish the host status: in a cluster (standalone, nobody reads it).
    pub report_status: bool,
    /// Follow the cluster's deploys (`empty`), through this access in this namespace.
    pub follow: Option<(EtcdAccess, String)>,
    /// When the agent started (unix seconds), for its status.
    pub started: u64,
}

/// The graph an agent starts with.
pub struct FirstGraph {
    pub spec: GraphSpec,
    /// The text it was parsed from (empty when there is none).
    pub text: String,
    /// Where it came from, for messages and the host status.
    pub source: String,
}

impl FirstGraph {
    /// What an agent that follows deploys runs before the first one arrives.
    pub fn empty() -> FirstGraph {
        let spec = GraphSpec { name: "empty".into(), ..GraphSpec::default() };
        FirstGraph { spec, text: String::new(), source: "no deploy yet".into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The first graph does not assemble: nothing was started.
    #[error("{source_name}: {error}")]
    FirstGraph { source_name: String, error: GraphError },
    /// This host's exports could not be published: the agent ends.
    #[error(transparent)]
    Export(crate::world::WorldError),
}

/// Whether a convergence change is worth a status: an idle/busy flip or another failure
/// count; per-vertex busy counts during a big apply are not. Every settle is reported too:
/// a swap reports `busy` right away, and the settle after it may look like no change from
/// here (identical statuses are not written again).
fn worth_reporting(s: &Summary, last: (bool, usize)) -> bool {
    s.idle() || (s.idle(), s.bad) != last
}

/// When `--converged-timeout` ends the run, if the graph stays idle.
fn deadline(timeout: Option<u64>, idle_since: Option<Instant>) -> Option<Instant> {
    match (timeout, idle_since) {
        (Some(n), Some(t)) => Some(t + Duration::from_secs(n)),
        _ => None,
    }
}

/// An error with its causes, as `anyhow`'s alternate form shows it.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// The first graph, assembled: nothing runs yet. An invalid first graph ends the agent
/// before its engine exists.
pub struct Planned {
    cfg: AgentConfig,
    world: Arc<dyn World>,
    collected: watch::Receiver<Vec<Exported>>,
    first: FirstGraph,
    assembled: Assembled,
}

pub struct Agent {
    cfg: AgentConfig,
    engine: Engine,
    world: Arc<dyn World>,
    collected: watch::Receiver<Vec<Exported>>,
    convergence: watch::Receiver<Summary>,
    /// The exit code a resource asked the run to end with (the `exit` kind).
    exit: watch::Receiver<Option<u8>>,
    /// The running graph, its text, and where it came from.
    spec: GraphSpec,
    text: String,
    source: String,
    /// The deploy running, if any.
    deploy: Option<u64>,
    /// Why the newest deploy was refused, and its id when known.
    deploy_error: Option<(Option<u64>, String)>,
    /// The graph file's last version failed to parse or to assemble (and was reported).
    file_bad: bool,
    /// (idle, failures) as last reported on a convergence change.
    last_reported: (bool, usize),
    idle_since: Option<Instant>,
    deploys: Option<mpsc::Receiver<DeployEvent>>,
    /// The running deploy's mcl program, followed live: its later graphs as its values change.
    program: Option<SpecSource>,
    fs: Arc<FsWatcher>,
    follow_cancel: CancellationToken,
    rememberer: Rememberer,
}

impl Agent {
    /// Assemble the first graph with what the world collects now.
    pub fn plan(cfg: AgentConfig, world: Arc<dyn World>, first: FirstGraph) -> Result<Planned, AgentError> {
        let mut collected = world.collected();
        let now = collected.borrow_and_update().clone();
        let assembled = assemble(&first.spec, &cfg.hostname, &now)
            .map_err(|error| AgentError::FirstGraph { source_name: first.source.clone(), error })?;
        for w in &assembled.warnings {
            warn!("{w}");
        }
        Ok(Planned { cfg, world, collected, first, assembled })
    }
}

impl Planned {
    /// Start the engine with the first graph, and follow the cluster's deploys if asked.
    /// Start the first graph, its files watched through `fs` (the frontend's watcher too).
    pub async fn start(self, fs: Arc<FsWatcher>) -> Result<Agent, AgentError> {
        let Planned { cfg, world, collected, first, assembled } = self;
        let opts =
            EngineOptions { noop: cfg.noop, no_watch: cfg.no_watch, state_dir: Some(cfg.prefix.clone()) };
        let reversals = crate::engine::reverse::Reversals::new(&cfg.prefix);
        let engine = Engine::new(opts, world.clone(), fs.clone()).with_reversals(reversals);
        info!(
            "running graph `{}` from {} on host {} ({}, prefix {}){}",
            first.spec.name,
            first.source,
            cfg.hostname,
            count(assembled.graph.vertices.len(), "resource"),
            cfg.prefix.display(),
            if cfg.noop { ", noop" } else { "" }
        );
        let convergence = engine.convergence();
        let mut agent = Agent {
            exit: engine.exit_requests(),
            rememberer: Rememberer::spawn(cfg.prefix.clone()),
            follow_cancel: CancellationToken::new(),
            deploys: None,
            program: None,
            fs,
            convergence: convergence.subscribe(),
            idle_since: None,
            last_reported: (false, usize::MAX),
            file_bad: false,
            deploy_error: None,
            deploy: None,
            spec: first.spec,
            text: first.text,
            source: first.source,
            collected,
            world,
            engine,
            cfg,
        };
        agent.export(assembled.exports).await?;
        agent.engine.swap(assembled.graph);
        agent.report();
        agent.follow_deploys();
        // The graph may have settled before this subscription: look at least once.
        agent.convergence.mark_changed();
        agent.idle_since = convergence.summary().idle().then(Instant::now);
        Ok(agent)
    }
}

impl Agent {
    fn follow_deploys(&mut self) {
        let Some((access, namespace)) = self.cfg.follow.clone() else { return };
        let (tx, rx) = mpsc::channel(4);
        let (prefix, host) = (self.cfg.prefix.clone(), self.cfg.hostname.clone());
        follow::spawn(access, namespace, prefix, host, tx, self.follow_cancel.clone());
        self.deploys = Some(rx);
    }

    /// Handle events until one ends the agent; then stop everything it started, and give
    /// the exit code.
    pub async fn run(mut self, mut sources: Sources) -> Result<u8, AgentError> {
        let code = self.until_end(&mut sources).await?;
        self.stop().await;
        Ok(code)
    }

    /// Handle events until one ends the agent, and give its exit code.
    async fn until_end(&mut self, sources: &mut Sources) -> Result<u8, AgentError> {
        loop {
            // A graph can be idle before the first change is ever published.
            if self.cfg.no_watch && self.engine.convergence().summary().idle() {
                return Ok(self.finish("applied once"));
            }
            let event = self.next_event(sources).await;
            if let Some(code) = self.handle(event).await? {
                return Ok(code);
            }
        }
    }

    /// Wait for the next event from any source.
    async fn next_event(&mut self, sources: &mut Sources) -> Event {
        let deadline = deadline(self.cfg.converged_timeout, self.idle_since);
        let signals = sources.signals.as_mut();
        let specs = sources.specs.as_mut();
        let deploys = self.deploys.as_mut();
        let program = self.program.as_mut();
        tokio::select! {
            stop = async {
                match signals {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => Event::Signal(stop),
            Some(v) = async { specs?.next().await } => Event::Spec(v),
            Some(ev) = async { deploys?.recv().await } => Event::Deploy(ev),
            Some(v) = async { program?.next().await } => Event::Spec(v),
            Ok(()) = self.collected.changed() => Event::Collected,
            Ok(()) = self.convergence.changed() => Event::Convergence(*self.convergence.borrow_and_update()),
            Ok(()) = self.exit.changed() => Event::Exit(self.exit.borrow_and_update().unwrap_or(0)),
            _ = async { tokio::time::sleep_until(deadline.unwrap().into()).await }, if deadline.is_some() => {
                Event::ConvergedTimeout
            }
        }
    }

    /// Act on `event`; `Some(exit code)` when it ends the agent.
    pub async fn handle(&mut self, event: Event) -> Result<Option<u8>, AgentError> {
        match event {
            Event::Signal(Stop::Interrupt) => {
                info!("interrupted; stopping");
                return Ok(Some(0));
            }
            Event::Signal(Stop::Terminate) => {
                info!("terminated; stopping");
                return Ok(Some(0));
            }
            Event::Spec(version) => self.new_version(version).await?,
            Event::Deploy(ev) => self.deploy_event(ev).await?,
            Event::Collected => self.apply(Change::Collected).await?,
            Event::Convergence(s) => return Ok(self.converging(s)),
            Event::ConvergedTimeout => return Ok(Some(self.finish("converged"))),
            Event::Exit(code) => {
                info!("a resource asked the run to end with exit code {code}; stopping");
                return Ok(Some(code));
            }
        }
        Ok(None)
    }

    async fn new_version(&mut self, version: Result<SpecVersion, SpecError>) -> Result<(), AgentError> {
        match version {
            // A program's errors are shown whole, each with its excerpt, below the line.
            Err(SpecError::Program(e)) => {
                error!(output = %e.rendered.trim_end(), "{e}; keeping the running graph");
                self.file_bad = true;
            }
            Err(e) => {
                error!("{}; keeping the running graph", with_causes(&e));
                // A read that failed read nothing: the next good read is news either way.
                self.file_bad = matches!(e, SpecError::Invalid(_));
            }
            // Back to the running graph's text after a bad edit: say the error is over.
            Ok(v) if v.text == self.text => {
                if std::mem::take(&mut self.file_bad) {
                    info!("{}: valid again, the running graph's text; nothing to swap", self.source);
                }
            }
            Ok(v) => self.apply(Change::File(v)).await?,
        }
        Ok(())
    }

    async fn deploy_event(&mut self, ev: DeployEvent) -> Result<(), AgentError> {
        match ev {
            DeployEvent::Ready { record, spec, dir, ran } => {
                let id = record.id;
                let program =
                    (ran.manifest.frontend == "lang").then(|| lang_program(&dir, &ran.manifest.entry));
                self.apply(Change::Deploy { record, spec, dir, ran }).await?;
                if self.deploy == Some(id) {
                    self.program = match program {
                        Some(path) => self.follow_program(&path, id).await,
                        None => None,
                    };
                }
            }
            DeployEvent::Refused { id, error } => self.refuse_deploy(id, &error),
            DeployEvent::Unreadable { error } => {
                error!("{error}; keeping the running graph");
                self.deploy_error = Some((None, error));
                self.report();
            }
        }
        Ok(())
    }

    /// Follow the deploy's mcl program at `path` live, from its graph as the deploy gave it:
    /// what its changing values (files, the time, the cluster's keys and exports) change
    /// arrives as new versions.
    async fn follow_program(&mut self, path: &std::path::Path, deploy: u64) -> Option<SpecSource> {
        let program = LangFile::new(path, &self.cfg.hostname)
            .with_deploy_id(deploy)
            .with_world(self.world.clone())
            .with_state_dir(self.cfg.prefix.clone());
        let watch = program.watch(self.fs.clone()).await;
        // Its first version is the graph the deploy applied, compiled again (on the blocking
        // pool) to follow its values: what changes from here on is yielded.
        let loaded = tokio::task::spawn_blocking(move || {
            let mut program = program;
            let _ = program.load();
            program
        })
        .await;
        match loaded {
            Ok(program) => Some(program.follow(watch)),
            Err(e) => {
                error!("deploy {deploy}: following its program failed: {e}");
                None
            }
        }
    }

    /// The one path from a new graph to a running one: assemble it with the collected
    /// resources, export (not in noop mode), swap, report. If it does not assemble, the
    /// running graph stays. Only a failed export is an error: it ends the agent.
    async fn apply(&mut self, change: Change) -> Result<(), AgentError> {
        // Only some resources' params changed: those vertices are replaced, and the rest of
        // the graph (its shape, the collected resources, the exports) stays as it is.
        if let Some(spec) = change.spec()
            && let Some(changes) = assemble::changed_in_place(&self.spec, spec, self.engine.graph())
        {
            let plan = self.engine.replace(changes);
            if let Some(line) = swapped_line(&change, &plan) {
                info!("{line}");
            }
            self.swapped(change);
            return Ok(());
        }
        let collected = match change {
            Change::Collected => self.collected.borrow_and_update().clone(),
            _ => self.collected.borrow().clone(),
        };
        let assembled = match assemble(change.spec().unwrap_or(&self.spec), &self.cfg.hostname, &collected) {
            Ok(a) => a,
            Err(e) => {
                self.refused(change, &e);
                return Ok(());
            }
        };
        for w in &assembled.warnings {
            warn!("{w}");
        }
        if change.exports() {
            self.export(assembled.exports).await?;
        }
        let plan = self.engine.swap(assembled.graph);
        if let Some(line) = swapped_line(&change, &plan) {
            info!("{line}");
        }
        self.swapped(change);
        Ok(())
    }

    /// `change` did not assemble: say so and remember it; the running graph stays.
    fn refused(&mut self, change: Change, e: &GraphError) {
        match change {
            Change::File(_) => {
                error!("{}: {e}; keeping the running graph", self.source);
                self.file_bad = true;
            }
            Change::Deploy { record, .. } => self.refuse_deploy(record.id, e),
            Change::Collected => error!("collected resources: {e}; keeping the running graph"),
        }
    }

    fn refuse_deploy(&mut self, id: u64, e: &dyn Display) {
        error!("deploy {id} refused: {e}; keeping the running graph");
        self.deploy_error = Some((Some(id), format!("deploy {id}: {e}")));
        self.report();
    }

    /// `change` runs now: record it and report.
    fn swapped(&mut self, change: Change) {
        match change {
            Change::File(v) => {
                self.spec = v.spec;
                self.text = v.text;
                self.file_bad = false;
                self.report();
            }
            Change::Deploy { record, spec, ran, .. } => {
                self.spec = *spec;
                self.deploy = Some(record.id);
                self.deploy_error = None;
                self.source = format!("deploy {}", record.id);
                self.report();
                // Remembered for a start without etcd, in the background: the agent does
                // not wait for the disk.
                self.rememberer.remember(*ran);
            }
            Change::Collected => self.report(),
        }
    }

    /// Exporting changes the cluster, which noop mode must not do.
    async fn export(&self, exports: Vec<Exported>) -> Result<(), AgentError> {
        if self.cfg.noop {
            return Ok(());
        }
        self.world.export(exports).await.map_err(AgentError::Export)
    }

    /// Publish this host's status (in a cluster: standalone, nobody reads it).
    fn report(&self) {
        if !self.cfg.report_status {
            return;
        }
        let mut s =
            status::host_status(&self.engine, &self.spec, &self.source, &self.cfg.hostname, self.cfg.started);
        s.deploy = self.deploy;
        s.follows_deploys = self.cfg.follow.is_some();
        s.refused_deploy = self.deploy_error.as_ref().and_then(|e| e.0);
        s.deploy_error = self.deploy_error.as_ref().map(|e| e.1.clone());
        self.world.report(s)
    }

    fn converging(&mut self, s: Summary) -> Option<u8> {
        if worth_reporting(&s, self.last_reported) {
            self.last_reported = (s.idle(), s.bad);
            self.report();
        }
        if !s.idle() {
            self.idle_since = None;
            return None;
        }
        self.idle_since.get_or_insert_with(Instant::now);
        self.cfg.no_watch.then(|| self.finish("applied once"))
    }

    /// The exit code of a run that ends on its own; a resource's request to end with a code
    /// (seen here first when the graph settled in the same moment) wins.
    fn finish(&self, how: &str) -> u8 {
        if let Some(code) = *self.exit.borrow() {
            info!("a resource asked the run to end with exit code {code}; stopping");
            return code;
        }
        ending::finish(&self.engine, how, self.cfg.ending)
    }

    /// Stop following deploys, write the deploy to remember, stop the vertices.
    async fn stop(self) {
        let Agent { follow_cancel, rememberer, mut engine, .. } = self;
        follow_cancel.cancel();
        rememberer.finish(Duration::from_secs(2)).await;
        engine.shutdown().await;
    }
}
