//! `mgmt run`: check the flags, load the first graph, set up the prefix and the world, then
//! hand over to the [`Agent`] until it ends (on a signal, on convergence with
//! `--converged-timeout`, or after one pass with `--no-watch`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Frontend, RunArgs};
use crate::agent::{Agent, AgentConfig, Ending, FirstGraph, Signals, Sources};
use crate::frontend::lang_file::{self, LangFile};
use crate::frontend::source::{SpecError, SpecSource, SpecVersion};
use crate::frontend::yaml_file::{self, YamlFile};
use crate::os::FsWatcher;
use crate::world::World;
use crate::world::access::EtcdAccess;
use crate::world::etcd::{EtcdConfig, EtcdWorld};
use crate::world::local::LocalWorld;

/// The graph's input: a YAML file or an mcl program.
enum Input {
    Yaml(YamlFile),
    Lang(LangFile),
}

/// An input watched from before its first load.
enum Watching {
    Yaml(yaml_file::Watch),
    Lang(lang_file::Watch),
}

impl Input {
    /// The input `frontend` names, `file` being a YAML argument's graph file; a program run
    /// with `--no-watch` (`once`) is evaluated once.
    fn new(
        frontend: &Frontend,
        file: Option<&std::path::Path>,
        hostname: &str,
        once: bool,
        prefix: &std::path::Path,
    ) -> Result<Option<Input>> {
        Ok(match (frontend, file) {
            (Frontend::Yaml { .. }, Some(file)) => Some(Input::Yaml(YamlFile::new(file)?)),
            (Frontend::Lang { path, coalesce_ms }, _) => {
                let program = LangFile::new(path, hostname)
                    .with_interval(std::time::Duration::from_millis(*coalesce_ms))
                    .with_state_dir(prefix.to_path_buf());
                Some(Input::Lang(if once { program.once() } else { program }))
            }
            _ => None,
        })
    }

    fn name(&self) -> &str {
        match self {
            Input::Yaml(y) => y.name(),
            Input::Lang(l) => l.name(),
        }
    }

    async fn watch(&self, fs: Arc<FsWatcher>) -> Result<Watching> {
        Ok(match self {
            Input::Yaml(y) => Watching::Yaml(y.watch(fs).await?),
            Input::Lang(l) => Watching::Lang(l.watch(fs).await),
        })
    }

    /// The first version; a program's errors are shown whole on stderr.
    fn load(&mut self) -> Result<SpecVersion> {
        let loaded = match self {
            Input::Yaml(y) => y.load(),
            Input::Lang(l) => l.load(),
        };
        match loaded {
            Err(SpecError::Program(e)) => {
                Err(super::graph::program_failed(&e, self.name(), "nothing was applied"))
            }
            other => Ok(other?),
        }
    }

    /// Follow the input's changes; a program's `world` functions read `world`.
    fn follow(self, watch: Watching, world: Arc<dyn World>) -> Option<SpecSource> {
        match (self, watch) {
            (Input::Yaml(y), Watching::Yaml(w)) => Some(y.follow(w)),
            (Input::Lang(l), Watching::Lang(w)) => Some(l.with_world(world).follow(w)),
            _ => None,
        }
    }
}

pub async fn run(args: RunArgs) -> Result<u8> {
    let hostname = hostname(&args)?;
    let file: Option<PathBuf> = match &args.frontend {
        Frontend::Yaml { file } => Some(yaml_file::graph_arg(file)?),
        Frontend::Lang { .. } | Frontend::Empty => None,
    };
    let has_input = !matches!(args.frontend, Frontend::Empty);
    if !has_input && args.cluster.seeds.is_empty() {
        bail!("`empty` runs the cluster's deploys: it needs --seeds");
    }
    if args.detailed_exitcodes && !args.no_watch && args.converged_timeout.is_none() {
        bail!(
            "--detailed-exitcodes needs --no-watch or --converged-timeout: an agent that watches exits only on a signal"
        );
    }
    // Where the agent's state will be (made once the first graph is valid): `value.get_*`
    // read the values stored there.
    let (prefix, _tmp_prefix) = prefix(&args)?;
    let mut input = Input::new(&args.frontend, file.as_deref(), &hostname, args.no_watch, &prefix)?;
    // One file watcher for the graph's files and the engine's resources.
    let fs = FsWatcher::new().context("starting the file watcher")?;
    let watch = match (&input, args.no_watch) {
        (Some(i), false) => Some(i.watch(fs.clone()).await?),
        _ => None,
    };
    let first = match &mut input {
        Some(i) => {
            let v = i.load()?;
            FirstGraph { spec: v.spec, text: v.text, source: i.name().to_string() }
        }
        None => FirstGraph::empty(),
    };

    // The prefix holds agent state; a temporary one is removed on exit.
    super::prefix::create(&prefix)?;
    // Held until the agent ends: a second agent on this prefix refuses to start.
    let _prefix_lock = super::prefix::lock(&prefix)?;

    let started = crate::agent::unix_now();
    // One access for the world and the deploy follower: they share its SSH connection.
    let access = if args.cluster.seeds.is_empty() { None } else { Some(args.cluster.access()?) };
    let (world, cluster) = world(&args, &hostname, &prefix, access.as_ref()).await?;
    let cfg = AgentConfig {
        hostname,
        prefix,
        noop: args.noop,
        no_watch: args.no_watch,
        converged_timeout: args.converged_timeout,
        ending: Ending { detailed: args.detailed_exitcodes },
        // Standalone, nobody reads the status.
        report_status: cluster.is_some(),
        // Without an input, there are seeds (checked above): follow the cluster's deploys.
        follow: access.filter(|_| !has_input).map(|a| (a, args.cluster.etcd_namespace.clone())),
        started,
    };
    let planned = Agent::plan(cfg, world.clone(), first)?;
    // From here on: a signal during the first apply is a clean stop too, not
    // the default disposition's instant death (which would leave temp files behind).
    let signals = Signals::install()?;
    let agent = planned.start(fs).await?;
    // Follow edits to the graph's files.
    let specs = match (watch, input) {
        (Some(w), Some(i)) => i.follow(w, world),
        _ => None,
    };
    let code = agent.run(Sources { signals: Some(signals), specs }).await?;
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    Ok(code)
}

fn hostname(args: &RunArgs) -> Result<String> {
    Ok(match &args.hostname {
        Some(h) if h.trim().is_empty() => bail!("--hostname must not be empty"),
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    })
}

/// The prefix to use, and the temporary directory that holds it with `--tmp-prefix`
/// (removed when dropped).
fn prefix(args: &RunArgs) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    if !args.tmp_prefix {
        return Ok((args.prefix.clone().unwrap_or_else(super::default_prefix), None));
    }
    let t = tempfile::Builder::new()
        .prefix("mgmt-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(super::prefix::PREFIX_MODE))
        .tempdir()
        .context("creating a temporary prefix")?;
    Ok((t.path().to_path_buf(), Some(t)))
}

/// The world: etcd's with seeds (also returned, to be shut down at the end), else this
/// host's alone.
async fn world(
    args: &RunArgs,
    hostname: &str,
    prefix: &std::path::Path,
    access: Option<&EtcdAccess>,
) -> Result<(Arc<dyn World>, Option<Arc<EtcdWorld>>)> {
    let Some(access) = access else { return Ok((Arc::new(LocalWorld::new(hostname)), None)) };
    let cfg = EtcdConfig {
        access: access.clone(),
        namespace: args.cluster.etcd_namespace.clone(),
        hostname: hostname.to_string(),
        lease_ttl: args.lease_ttl,
        lease_file: (!args.tmp_prefix).then(|| prefix.join("etcd-lease")),
    };
    let w = EtcdWorld::start(cfg, Duration::from_secs(5)).await?;
    Ok((w.clone(), Some(w)))
}
