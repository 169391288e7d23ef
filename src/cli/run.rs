//! `mgmt run`: load the graph, run it, follow edits to the graph file and the world, and stop
//! on a signal, on convergence (`--converged-timeout`) or after one pass (`--no-watch`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::graph_file::{self, GraphFile};
use super::{Frontend, RunArgs};
use crate::deploy::follow::DeployEvent;
use crate::engine::assemble::assemble;
use crate::engine::{Engine, EngineOptions, Status};
use crate::frontend::base::Base;
use crate::frontend::{GraphSpec, yaml};
use crate::text::count;
use crate::world::etcd::{EtcdConfig, EtcdWorld};
use crate::world::local::LocalWorld;
use crate::world::{Failure, HostStatus, World};

fn load_yaml(path: &Path, base: &Base) -> Result<(String, GraphSpec)> {
    parse_yaml(&graph_file::read(path)?, path, base)
}

/// Relative paths in the graph resolve against `base`, the graph file's directory.
fn parse_yaml(bytes: &[u8], path: &Path, base: &Base) -> Result<(String, GraphSpec)> {
    let name = path.display().to_string();
    let text = yaml::text_of(bytes, &name)?.to_string();
    let spec = yaml::parse_at(&text, &name, Some(base))?;
    Ok((text, spec))
}

pub async fn run(args: RunArgs) -> Result<u8> {
    let hostname = match &args.hostname {
        Some(h) if h.trim().is_empty() => bail!("--hostname must not be empty"),
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    let file: Option<PathBuf> = match &args.frontend {
        Frontend::Yaml { file } => Some(graph_file::graph_arg(file)?),
        Frontend::Empty => None,
        Frontend::Lang(u) => u.refuse(),
    };
    let file = file.as_ref();
    if file.is_none() && args.cluster.seeds.is_empty() {
        bail!("`empty` runs the cluster's deploys: it needs --seeds");
    }
    if args.detailed_exitcodes && !args.no_watch && args.converged_timeout.is_none() {
        bail!(
            "--detailed-exitcodes needs --no-watch or --converged-timeout: an agent that watches exits only on a signal"
        );
    }
    let ending = Ending { detailed: args.detailed_exitcodes };
    let base = file.map(|f| graph_file::base_of(f)).transpose()?;
    let (mut text, mut spec) = match (file, &base) {
        (Some(f), Some(b)) => load_yaml(f, b)?,
        _ => (String::new(), GraphSpec { name: "empty".into(), ..GraphSpec::default() }),
    };
    // Where the running graph came from, for messages and the host status.
    let mut source = match file {
        Some(f) => f.display().to_string(),
        None => "no deploy yet".to_string(),
    };
    let mut deploy: Option<u64> = None;
    // Why the newest deploy was refused, and its id when known.
    let mut deploy_error: Option<(Option<u64>, String)> = None;

    // The prefix holds agent state; a temporary one is removed on exit.
    let _tmp_prefix;
    let prefix = if args.tmp_prefix {
        let t = tempfile::Builder::new()
            .prefix("mgmt-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(super::prefix::PREFIX_MODE))
            .tempdir()
            .context("creating a temporary prefix")?;
        let p = t.path().to_path_buf();
        _tmp_prefix = Some(t);
        p
    } else {
        _tmp_prefix = None;
        args.prefix.clone().unwrap_or_else(super::default_prefix)
    };
    super::prefix::create(&prefix)?;
    // Held until the agent ends: a second agent on this prefix refuses to start.
    let _prefix_lock = super::prefix::lock(&prefix)?;

    let started = unix_now();
    // One access for the world and the deploy follower: they share its SSH connection.
    let access = if args.cluster.seeds.is_empty() { None } else { Some(args.cluster.access()?) };
    let (world, cluster): (Arc<dyn World>, Option<Arc<EtcdWorld>>) = if let Some(access) = &access {
        let cfg = EtcdConfig {
            access: access.clone(),
            namespace: args.cluster.etcd_namespace.clone(),
            hostname: hostname.clone(),
            lease_ttl: args.lease_ttl,
            lease_file: (!args.tmp_prefix).then(|| prefix.join("etcd-lease")),
        };
        let w = EtcdWorld::start(cfg, Duration::from_secs(5)).await?;
        (w.clone(), Some(w))
    } else {
        (Arc::new(LocalWorld::new(hostname.clone())), None)
    };
    let mut collected = world.collected();
    let now_collected = collected.borrow_and_update().clone();
    let assembled =
        assemble(&spec, &hostname, &now_collected).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    for w in &assembled.warnings {
        warn!("{w}");
    }
    // From here on: a signal during the first apply is a clean stop too, not
    // the default disposition's instant death (which would leave temp files behind).
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut engine = Engine::new(EngineOptions { noop: args.noop, no_watch: args.no_watch }, world.clone())
        .context("starting the file watcher")?;
    // Exporting changes the cluster, which noop mode must not do.
    let export = |exports| {
        let world = world.clone();
        async move { if args.noop { Ok(()) } else { world.export(exports).await } }
    };
    info!(
        "running graph `{}` from {source} on host {hostname} ({}, prefix {}){}",
        spec.name,
        count(assembled.graph.vertices.len(), "resource"),
        prefix.display(),
        if args.noop { ", noop" } else { "" }
    );
    export(assembled.exports).await?;
    engine.swap(assembled.graph);
    // Standalone, nobody reads the status; in a cluster it is built only when it can differ.
    let report = |engine: &Engine,
                  spec: &GraphSpec,
                  source: &str,
                  deploy: Option<u64>,
                  deploy_error: &Option<(Option<u64>, String)>| {
        if cluster.is_some() {
            let mut s = host_status(engine, spec, source, &hostname, started);
            s.deploy = deploy;
            s.follows_deploys = file.is_none();
            s.refused_deploy = deploy_error.as_ref().and_then(|e| e.0);
            s.deploy_error = deploy_error.as_ref().map(|e| e.1.clone());
            world.report(s)
        }
    };
    report(&engine, &spec, &source, deploy, &deploy_error);

    let rememberer = crate::deploy::follow::Rememberer::spawn(prefix.clone());
    // Follow the cluster's deploys.
    let (deploy_tx, mut deploy_rx) = tokio::sync::mpsc::channel(4);
    let follow_cancel = tokio_util::sync::CancellationToken::new();
    // Without a file, there are seeds (checked above): follow the cluster's deploys.
    if let (None, Some(access)) = (&file, &access) {
        crate::deploy::follow::spawn(
            access.clone(),
            args.cluster.etcd_namespace.clone(),
            prefix.clone(),
            deploy_tx,
            follow_cancel.clone(),
        );
    }

    // Follow edits to the graph file.
    let graph_changed = Arc::new(Notify::new());
    let mut followed = match (args.no_watch, file) {
        (false, Some(f)) => Some(GraphFile::watch(engine.fs(), f, graph_changed.clone()).await?),
        _ => None,
    };
    // A read of the graph file under way on the blocking pool.
    let mut reading: Option<tokio::task::JoinHandle<graph_file::Loaded>> = None;

    let convergence = engine.convergence();
    let mut conv_rx = convergence.subscribe();
    // The graph may have settled before this subscription: look at least once.
    conv_rx.mark_changed();
    let mut idle_since: Option<Instant> = convergence.summary().idle().then(Instant::now);

    // The text of the last graph file that failed to load, so one bad save is reported once.
    let mut last_bad: Option<Vec<u8>> = None;
    let mut last_reported = (false, usize::MAX);
    let code = loop {
        // A graph can be idle before the first change is ever published.
        if args.no_watch && convergence.summary().idle() {
            break finish(&engine, "applied once", ending);
        }
        let deadline = match (args.converged_timeout, idle_since) {
            (Some(n), Some(t)) => Some(t + Duration::from_secs(n)),
            _ => None,
        };
        tokio::select! {
            _ = sigint.recv() => { info!("interrupted; stopping"); break 0; }
            _ = sigterm.recv() => { info!("terminated; stopping"); break 0; }
            _ = graph_changed.notified(), if followed.is_some() && reading.is_none() => {
                reading = followed.as_ref().map(GraphFile::load);
            }
            loaded = async { reading.as_mut().expect("reading").await }, if reading.is_some() => {
                reading = None;
                let (Ok(loaded), Some(gf), Some(file), Some(base)) = (loaded, followed.as_mut(), file, &base) else { continue };
                gf.follow(loaded.watched).await;
                let now = loaded.bytes.as_ref().ok().cloned();
                if now.is_some() && now == last_bad {
                    continue;
                }
                match loaded.bytes.map_err(anyhow::Error::from).and_then(|b| parse_yaml(&b, file, base)) {
                    Ok((t, _)) if t == text => {
                        // Back to the running graph's text after a bad edit: say the error is over.
                        if last_bad.take().is_some() {
                            info!("{}: valid again, the running graph's text; nothing to swap", file.display());
                        }
                    }
                    Ok((t, s)) => {
                        let c = collected.borrow().clone();
                        match assemble(&s, &hostname, &c) {
                        Ok(a) => {
                            for w in &a.warnings { warn!("{w}"); }
                            export(a.exports).await?;
                            let plan = engine.swap(a.graph);
                            info!("graph swapped: {} kept, {} started, {} stopped", plan.keep.len(), plan.start.len(), plan.stop.len());
                            text = t;
                            spec = s;
                            last_bad = None;
                            report(&engine, &spec, &source, deploy, &deploy_error);
                        }
                        Err(e) => {
                            error!("{}: {e}; keeping the running graph", file.display());
                            last_bad = now;
                        }
                    }},
                    Err(e) => {
                        error!("{e:#}; keeping the running graph");
                        last_bad = now;
                    }
                }
            }
            Some(ev) = deploy_rx.recv() => {
                let mut ran_now = None;
                match ev {
                    DeployEvent::Ready { record, spec: s, dir, ran } => {
                        let c = collected.borrow().clone();
                        match assemble(&s, &hostname, &c) {
                            Ok(a) => {
                                for w in &a.warnings { warn!("{w}"); }
                                export(a.exports).await?;
                                let plan = engine.swap(a.graph);
                                info!(
                                    "running deploy {} (commit {}, bundle {}, from {}): {} kept, {} started, {} stopped",
                                    record.id,
                                    record.commit.as_deref().unwrap_or("none"),
                                    record.bundle,
                                    dir.display(),
                                    plan.keep.len(), plan.start.len(), plan.stop.len()
                                );
                                ran_now = Some(ran);
                                spec = *s;
                                deploy = Some(record.id);
                                deploy_error = None;
                                source = format!("deploy {}", record.id);
                            }
                            Err(e) => {
                                error!("deploy {} refused: {e}; keeping the running graph", record.id);
                                deploy_error = Some((Some(record.id), format!("deploy {}: {e}", record.id)));
                            }
                        }
                    }
                    DeployEvent::Refused { id, error: e } => {
                        error!("deploy {id} refused: {e}; keeping the running graph");
                        deploy_error = Some((Some(id), format!("deploy {id}: {e}")));
                    }
                    DeployEvent::Unreadable { error: e } => {
                        error!("{e}; keeping the running graph");
                        deploy_error = Some((None, e));
                    }
                }
                report(&engine, &spec, &source, deploy, &deploy_error);
                // Remembered for a start without etcd, in the background: the loop does not
                // wait for the disk.
                if let Some(ran) = ran_now {
                    rememberer.remember(*ran);
                }
            }
            Ok(()) = collected.changed() => {
                let c = collected.borrow_and_update().clone();
                match assemble(&spec, &hostname, &c) {
                    Ok(a) => {
                        for w in &a.warnings { warn!("{w}"); }
                        let plan = engine.swap(a.graph);
                        if !(plan.start.is_empty() && plan.stop.is_empty()) {
                            info!(
                                "collected resources changed: {} kept, {} started, {} stopped",
                                plan.keep.len(), plan.start.len(), plan.stop.len()
                            );
                        }
                        report(&engine, &spec, &source, deploy, &deploy_error);
                    }
                    Err(e) => error!("collected resources: {e}; keeping the running graph"),
                }
            }
            Ok(()) = conv_rx.changed() => {
                let s = *conv_rx.borrow_and_update();
                // Only idle/busy flips and failure counts change the status; per-vertex
                // busy counts during a big apply do not.
                // Every settle is reported too: a swap reports `busy` right away, and the
                // settle after it may look like no change from here. (Identical statuses are
                // not written again.)
                if s.idle() || (s.idle(), s.bad) != last_reported {
                    last_reported = (s.idle(), s.bad);
                    report(&engine, &spec, &source, deploy, &deploy_error);
                }
                if s.idle() {
                    idle_since.get_or_insert_with(Instant::now);
                    if args.no_watch {
                        break finish(&engine, "applied once", ending);
                    }
                } else {
                    idle_since = None;
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap().into()).await }, if deadline.is_some() => {
                break finish(&engine, "converged", ending);
            }
        }
    };
    follow_cancel.cancel();
    rememberer.finish(Duration::from_secs(2)).await;
    engine.shutdown().await;
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    Ok(code)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What this agent tells the cluster about itself.
fn host_status(engine: &Engine, spec: &GraphSpec, source: &str, hostname: &str, started: u64) -> HostStatus {
    let report = engine.report();
    let summary = engine.convergence().summary();
    let failed: Vec<String> = report
        .iter()
        .filter(|r| matches!(r.status, Status::Failed | Status::Blocked))
        .map(|r| r.id.to_string())
        .collect();
    let last_error = report.iter().find_map(|r| r.status_error());
    // Failed ones first: they hold the errors; blocked ones only wait for them.
    let failures = report
        .iter()
        .filter(|r| r.status == Status::Failed)
        .chain(report.iter().filter(|r| r.status == Status::Blocked))
        .map(failure)
        .collect();
    HostStatus {
        hostname: hostname.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        graph: spec.name.clone(),
        source: source.to_string(),
        deploy: None,
        deploy_error: None,
        converged: summary.converged() && failed.is_empty(),
        resources: report.len(),
        failed,
        last_error,
        started,
        updated: unix_now(),
        follows_deploys: false,
        refused_deploy: None,
        idle: summary.idle(),
        failures,
        failures_more: 0,
    }
}

/// A vertex that is not in its desired state, as published: its error with the tail of a
/// failed command's output (cut by [`HostStatus::bounded`]).
fn failure(r: &crate::engine::VertexReport) -> Failure {
    Failure {
        kind: r.id.kind.clone(),
        name: r.id.name.clone(),
        state: if r.status == Status::Blocked { "blocked" } else { "failed" }.to_string(),
        error: r.error.as_ref().map(|e| match &r.output {
            Some(o) => format!("{e}: {}", crate::text::tail(o, 512)),
            None => e.clone(),
        }),
    }
}

/// How a run that ends on its own picks its exit code.
#[derive(Clone, Copy)]
struct Ending {
    /// `--detailed-exitcodes`: 0, 2 (changes), 4 (failures) or 6 (both), from
    /// [`Engine::outcome`], instead of 0 or 1 from the resources' state at the end.
    detailed: bool,
}

/// Summarise failures and pick the exit code for a run that ended on its own.
fn finish(engine: &Engine, how: &str, ending: Ending) -> u8 {
    let code = summarise(engine, how);
    if !ending.detailed {
        return code;
    }
    let outcome = engine.outcome();
    info!("{how}: {} changes, {} failed checks", outcome.changes, outcome.failures);
    outcome.detailed_exit_code()
}

/// Log what would change and what failed; 0 if every resource is in its desired state,
/// else 1.
fn summarise(engine: &Engine, how: &str) -> u8 {
    let report = engine.report();
    let bad: Vec<_> = report.iter().filter(|r| r.status != Status::Ok).collect();
    let would: Vec<_> = report.iter().filter(|r| r.would_change).map(|r| r.id.to_string()).collect();
    if !would.is_empty() {
        info!(
            "{how} (noop): {} of {} would change: {}",
            would.len(),
            count(report.len(), "resource"),
            would.join(", ")
        );
    }
    if bad.is_empty() {
        if would.is_empty() {
            match report.len() {
                0 => info!("{how}: the graph is empty"),
                1 => info!("{how}: its one resource is in its desired state"),
                n => info!("{how}: all {n} resources are in their desired state"),
            }
        }
        0
    } else {
        for r in &bad {
            let why = match (&r.status, &r.error) {
                (Status::Blocked, _) => "blocked by a failed dependency".to_string(),
                (_, Some(e)) => e.clone(),
                (s, None) => format!("{s:?}"),
            };
            error!("{how}: {} is not in its desired state: {why}", r.id);
        }
        1
    }
}
