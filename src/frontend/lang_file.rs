//! The mcl frontend's stream: a program (`mgmt run lang PATH`), loaded and compiled at
//! start, then followed: a change to any file it read, or to a directory it was read from
//! (a file appearing there that an edit then imports, a `metadata.yaml` created), loads and
//! compiles it again on the blocking pool, and yields the new graph or the program's errors.
//!
//! What is compared to tell a new version from the last one is the program's sources and
//! the graph they give: the same sources yield nothing new, and neither do the same errors,
//! so one bad save is reported once.

#![allow(clippy::result_large_err)] // errors are the cold path; flat ones keep the code plain

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::Notify;

use super::GraphSpec;
use super::graph_file::watched_paths;
use super::lang::eval::Evaluation;
use super::lang::eval::streams::Streams;
use super::lang::{self, HostInfo, Module};
use super::lang_streams::Watchers;
use super::source::{ProgramError, SpecError, SpecSender, SpecSource, SpecVersion};
use crate::os::fswatch::{FsWatcher, Scope, Subscription};
use crate::world::World;

/// How long the program's files must be quiet before they are read again: a directory's
/// watch also sees files being written, and an editor's save is several events.
const QUIET: Duration = Duration::from_millis(100);
/// At most this many quiet periods are waited for in a row, so that a file written without
/// pause still gets read.
const MAX_QUIET_WAITS: usize = 20;

/// What a program's watch covers: the files it read, the directories they were read from,
/// and its files directory (whose files `deploy.readfile` reads), with what is below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSet {
    pub files: BTreeSet<PathBuf>,
    pub dirs: BTreeSet<PathBuf>,
    pub trees: BTreeSet<PathBuf>,
}

impl WatchSet {
    /// Before the first load: the path given, and the directory it is (or is in).
    fn before_load(path: &Path) -> WatchSet {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut set = WatchSet::default();
        if path.is_dir() {
            set.dirs.insert(path);
        } else {
            set.dirs.insert(parent_of(&path));
            set.files.extend(watched_paths(&path));
        }
        set
    }

    fn of(module: &Module) -> WatchSet {
        let mut set = WatchSet::default();
        set.dirs.insert(module.root.clone());
        for f in &module.read {
            set.dirs.insert(parent_of(f));
            // A symlinked file follows its target, as a YAML graph file does.
            set.files.extend(watched_paths(f));
        }
        set.trees.insert(module.root.join(module.files_dir.trim_end_matches('/')));
        set
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"))
}

/// A program compiled once: its graph, and what it read.
pub struct Compiled {
    pub spec: GraphSpec,
    pub watch: WatchSet,
}

/// A program that does not compile, and what to watch from now on when it was read at all.
pub struct Failed {
    pub error: ProgramError,
    pub watch: Option<WatchSet>,
}

/// Load the program at `path` (a `.mcl` file or a module directory) and compile it for
/// `hostname`; `deploy_id` is the deploy it runs from (0: none). Its deploy root is its
/// module's directory. Blocking: it reads the program's files.
pub fn compile_at(path: &Path, hostname: &str, deploy_id: u64) -> Result<Compiled, Failed> {
    let module = lang::load(path)
        .map_err(|e| Failed { error: ProgramError::new(&e.diagnostics, &e.map), watch: None })?;
    let host = HostInfo {
        hostname: hostname.to_string(),
        deploy_root: module.root.clone(),
        files_dir: module.files_dir.clone(),
        deploy_id,
        state_dir: None,
    };
    let watch = WatchSet::of(&module);
    match lang::compile(&module, &host) {
        Ok(spec) => Ok(Compiled { spec, watch }),
        Err(diagnostics) => {
            Err(Failed { error: ProgramError::new(&diagnostics, &module.map), watch: Some(watch) })
        }
    }
}

/// The sources of a program as one text.
fn sources_of(module: &Module) -> String {
    let mut text = format!("files {}\n", module.files_dir);
    for unit in &module.units {
        text.push_str(&format!("--- {}\n{}\n", unit.path.display(), module.map.text(unit.file)));
    }
    text
}

/// The program watched, from before its first load (see [`LangFile::watch`]).
pub struct Watch {
    fs: Arc<FsWatcher>,
    changed: Arc<Notify>,
    set: WatchSet,
    _subs: Vec<Subscription>,
}

impl Watch {
    /// Watch `set`, if it is not what is watched already. The new watches' arming wakes are
    /// kept: the load they cause finds what changed while nothing watched it.
    async fn follow(&mut self, set: WatchSet) {
        if set == self.set {
            return;
        }
        let mut subs = Vec::new();
        let wake = |n: Arc<Notify>| -> crate::os::fswatch::Waker { Arc::new(move || n.notify_one()) };
        for f in &set.files {
            subs.push(self.fs.subscribe_settled(f.clone(), wake(self.changed.clone())).await);
        }
        for d in &set.dirs {
            subs.push(self.fs.subscribe(Scope::Dir(d.clone()), wake(self.changed.clone())).await);
        }
        for t in &set.trees {
            subs.push(self.fs.subscribe(Scope::Tree(t.clone()), wake(self.changed.clone())).await);
        }
        self._subs = subs;
        self.set = set;
    }

    /// Wait for a change, then for the files to be quiet.
    async fn next_change(&self) {
        self.changed.notified().await;
        for _ in 0..MAX_QUIET_WAITS {
            if tokio::time::timeout(QUIET, self.changed.notified()).await.is_err() {
                return;
            }
        }
    }
}

/// An mcl program: where it is, the host it is compiled for, the running program, and the
/// version it last yielded.
pub struct LangFile {
    path: PathBuf,
    name: String,
    hostname: String,
    /// The least time between two evaluations for changed values.
    interval: Duration,
    /// The program running: the last that compiled.
    live: Option<Box<Live>>,
    /// What tells the last version yielded from the next: its errors, or its sources and
    /// the evaluation it was.
    last: Option<String>,
    /// How many good versions were yielded: each evaluation's text is its own.
    evaluations: u64,
    /// What the first load asked to watch, for [`LangFile::follow`].
    first_watch: Option<WatchSet>,
    /// The cluster `world` functions read (this host's alone without seeds).
    world: Option<Arc<dyn World>>,
    /// The deploy the program runs from (0: none).
    deploy_id: u64,
    /// The agent's prefix, where `value` resources store what `value.get_*` read.
    state_dir: Option<PathBuf>,
    /// Evaluated once, not followed (`run --no-watch`): each changing function is called once.
    once: bool,
}

/// The default of [`LangFile::with_interval`]: at most 100 evaluations a second.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);

impl LangFile {
    pub fn new(path: &Path, hostname: &str) -> LangFile {
        LangFile {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            hostname: hostname.to_string(),
            interval: DEFAULT_INTERVAL,
            live: None,
            last: None,
            evaluations: 0,
            first_watch: None,
            world: None,
            deploy_id: 0,
            state_dir: None,
            once: false,
        }
    }

    /// The program is evaluated once and not followed: a function whose value changes is
    /// called once, as `mgmt graph` calls it, instead of waiting for a watcher.
    pub fn once(mut self) -> LangFile {
        self.once = true;
        self
    }

    /// The program runs from deploy `id` (`deploy.*` functions read its bundle).
    pub fn with_deploy_id(mut self, id: u64) -> LangFile {
        self.deploy_id = id;
        self
    }

    /// The agent's prefix: `value.get_*` read the values stored there.
    pub fn with_state_dir(mut self, dir: PathBuf) -> LangFile {
        self.state_dir = Some(dir);
        self
    }

    /// The world the program's `world` functions read once it follows (at its first load,
    /// before the world is there, their values are not known yet).
    pub fn with_world(mut self, world: Arc<dyn World>) -> LangFile {
        self.world = Some(world);
        self
    }

    /// Evaluates for changed values at most once per `interval`: a burst of changes is one
    /// evaluation of the newest values, `interval` after the one before.
    pub fn with_interval(mut self, interval: Duration) -> LangFile {
        self.interval = interval;
        self
    }

    /// The program as given, for messages and the host status.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Load and compile the program now (blocking: for the start, before anything runs). A
    /// program waiting for a changing value's first value starts with an empty graph.
    pub fn load(&mut self) -> Result<SpecVersion, SpecError> {
        if self.once {
            let compiled = compile_at(&self.path, &self.hostname, self.deploy_id);
            let text = format!("{} once\n", self.name);
            return compiled
                .map(|c| SpecVersion { spec: c.spec, text })
                .map_err(|f| SpecError::Program(f.error));
        }
        let loaded =
            Live::load(&self.path, &self.hostname, self.deploy_id, self.state_dir.clone()).map(|mut live| {
                let step = live.step();
                (live, step)
            });
        let (live, step) = match loaded {
            Ok(loaded) => loaded,
            Err(f) => {
                self.first_watch = f.watch;
                self.last = Some(error_text(&f.error));
                return Err(SpecError::Program(f.error));
            }
        };
        self.first_watch = Some(live.watch.clone());
        let name = lang::eval::graph_name(&live.module);
        self.live = Some(Box::new(live));
        self.yielded(step.map(|spec| spec.unwrap_or_else(|| GraphSpec { name, ..GraphSpec::default() })))
    }

    /// The version an evaluation gives: `None` when there is nothing new to yield (no new
    /// graph, or the errors yielded last).
    fn version_of(&mut self, step: Step) -> Option<Result<SpecVersion, SpecError>> {
        match step {
            Ok(None) => None,
            Err(error) if self.last.as_ref() == Some(&error_text(&error)) => None,
            Ok(Some(spec)) => Some(self.yielded(Ok(spec))),
            Err(error) => Some(self.yielded(Err(error))),
        }
    }

    /// The version yielded for a graph or errors, remembered as the last.
    fn yielded(&mut self, step: Result<GraphSpec, ProgramError>) -> Result<SpecVersion, SpecError> {
        match step {
            Ok(spec) => {
                self.evaluations += 1;
                let sources = self.live.as_ref().map(|l| l.sources.as_str()).unwrap_or_default();
                let text = format!("{sources}--- evaluation {}\n", self.evaluations);
                self.last = Some(text.clone());
                Ok(SpecVersion { spec, text })
            }
            Err(error) => {
                self.last = Some(error_text(&error));
                Err(SpecError::Program(error))
            }
        }
    }

    /// Watch the program's path and its directory, before the first load: a change made
    /// after that load is never missed. Call it before [`LangFile::load`].
    pub async fn watch(&self, fs: Arc<FsWatcher>) -> Watch {
        let changed = Arc::new(Notify::new());
        let mut watch = Watch { fs, changed: changed.clone(), set: WatchSet::default(), _subs: Vec::new() };
        watch.follow(WatchSet::before_load(&self.path)).await;
        // The arming wakes are spent here: the load that follows is the look they ask for.
        let _ = changed.notified().now_or_never();
        watch
    }

    /// Yield each later version of the program, as `watch` sees its files change, and as
    /// the values it reads change.
    pub fn follow(mut self, mut watch: Watch) -> SpecSource {
        SpecSource::spawn(self.name.clone(), |tx| async move {
            if let Some(set) = self.first_watch.take() {
                watch.follow(set).await;
            }
            self.yield_changes(watch, tx).await
        })
    }

    async fn yield_changes(mut self, mut watch: Watch, tx: SpecSender) {
        let mut watchers: Option<Watchers> = None;
        let mut last_evaluation = tokio::time::Instant::now();
        loop {
            if let Some(live) = &self.live {
                let w = watchers.get_or_insert_with(|| {
                    Watchers::new(
                        live.streams.clone(),
                        watch.fs.clone(),
                        live.host.clone(),
                        self.world.clone(),
                    )
                });
                w.reconcile();
            }
            let streams = self.live.as_ref().map(|l| l.streams.clone());
            let version = tokio::select! {
                _ = watch.next_change() => {
                    let Some((version, set, replaced)) = self.recompile().await else { continue };
                    if replaced {
                        watchers = None;
                    }
                    if let Some(set) = set {
                        watch.follow(set).await;
                    }
                    version
                }
                _ = value_changed(streams) => {
                    tokio::time::sleep_until(last_evaluation + self.interval).await;
                    last_evaluation = tokio::time::Instant::now();
                    self.reevaluate().await
                }
            };
            let Some(version) = version else { continue };
            if tx.send(version).await.is_err() {
                return;
            }
        }
    }

    /// Loads and compiles the program again after an edit: its version, what to watch, and
    /// whether the running program was replaced (a program that fails keeps the last).
    async fn recompile(
        &mut self,
    ) -> Option<(Option<Result<SpecVersion, SpecError>>, Option<WatchSet>, bool)> {
        let (path, hostname, deploy_id) = (self.path.clone(), self.hostname.clone(), self.deploy_id);
        let state_dir = self.state_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            Live::load(&path, &hostname, deploy_id, state_dir).map(|mut live| {
                let step = live.step();
                (live, step)
            })
        })
        .await
        .ok()?;
        Some(match loaded {
            // The same sources: the running program, whose changing values are watched, goes on.
            Ok((live, _)) if self.live.as_ref().is_some_and(|running| running.sources == live.sources) => {
                (None, Some(live.watch.clone()), false)
            }
            Ok((live, step)) => {
                let set = Some(live.watch.clone());
                self.live = Some(Box::new(live));
                (self.version_of(step), set, true)
            }
            Err(f) => (self.version_of(Err(f.error)), f.watch, false),
        })
    }

    /// Runs the program again for the values that changed.
    async fn reevaluate(&mut self) -> Option<Result<SpecVersion, SpecError>> {
        let mut live = self.live.take()?;
        let (live, step) = tokio::task::spawn_blocking(move || {
            let step = live.step();
            (live, step)
        })
        .await
        .ok()?;
        self.live = Some(live);
        self.version_of(step)
    }
}

/// Waits for a changing value of the running program to change (forever without one).
async fn value_changed(streams: Option<Arc<Streams>>) {
    match streams {
        Some(streams) => streams.changed.notified().await,
        None => std::future::pending().await,
    }
}

fn error_text(error: &ProgramError) -> String {
    format!("error\n{}", error.rendered)
}

/// What an evaluation gives: a new graph, nothing new, or the program's errors.
type Step = Result<Option<GraphSpec>, ProgramError>;

/// A program running: its module, its function graph, its changing values, and what to
/// watch of its files.
struct Live {
    module: Module,
    evaluation: Evaluation,
    streams: Arc<Streams>,
    host: Arc<HostInfo>,
    sources: String,
    watch: WatchSet,
}

impl Live {
    /// Loads and compiles the program at `path` for `hostname`, to run (blocking).
    fn load(path: &Path, hostname: &str, deploy_id: u64, state_dir: Option<PathBuf>) -> Result<Live, Failed> {
        let module = lang::load(path)
            .map_err(|e| Failed { error: ProgramError::new(&e.diagnostics, &e.map), watch: None })?;
        let host = Arc::new(HostInfo {
            hostname: hostname.to_string(),
            deploy_root: module.root.clone(),
            files_dir: module.files_dir.clone(),
            deploy_id,
            state_dir,
        });
        let watch = WatchSet::of(&module);
        let streams = Streams::new();
        match lang::compile::compile_live(&module, &host, streams.clone()) {
            Ok(evaluation) => {
                let sources = sources_of(&module);
                Ok(Live { module, evaluation, streams, host, sources, watch })
            }
            Err(diagnostics) => {
                Err(Failed { error: ProgramError::new(&diagnostics, &module.map), watch: Some(watch) })
            }
        }
    }

    /// Runs what changed since the last step.
    fn step(&mut self) -> Step {
        if !self.evaluation.run() {
            return Ok(None);
        }
        self.evaluation.spec(&self.module).map_err(|d| ProgramError::new(&d, &self.module.map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_fails_to_load_and_names_the_path() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("nope.mcl");
        let Err(f) = compile_at(&path, "h", 0) else { panic!("compiled") };
        assert!(f.error.to_string().contains("nope.mcl"), "{}", f.error);
        assert!(f.watch.is_none());
    }

    #[test]
    fn the_same_errors_are_yielded_once() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("main.mcl");
        std::fs::write(&path, "$x = \n").unwrap();
        let mut f = LangFile::new(&path, "h");
        assert!(matches!(f.load(), Err(SpecError::Program(_))));
        let failed = |path: &Path| Err(Live::load(path, "h", 0, None).err().expect("fails").error);
        assert!(f.version_of(failed(&path)).is_none());
        std::fs::write(&path, "$x = )\n").unwrap();
        let again = f.version_of(failed(&path));
        assert!(matches!(again, Some(Err(SpecError::Program(_)))));
    }

    #[test]
    fn a_module_watches_its_files_their_directories_and_its_files_directory() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("lib")).unwrap();
        std::fs::write(root.join("main.mcl"), "import \"lib/\"\n").unwrap();
        std::fs::write(root.join("lib/main.mcl"), "$x = 1\n").unwrap();
        let module =
            lang::load(&root).unwrap_or_else(|e| panic!("{}", lang::render_all(&e.diagnostics, &e.map)));
        let set = WatchSet::of(&module);
        assert!(set.files.contains(&root.join("main.mcl")) && set.files.contains(&root.join("lib/main.mcl")));
        assert!(set.dirs.contains(&root) && set.dirs.contains(&root.join("lib")));
        assert_eq!(set.trees.iter().collect::<Vec<_>>(), [&root.join("files")]);
        let before = WatchSet::before_load(&root.join("main.mcl"));
        assert_eq!(before.dirs.iter().collect::<Vec<_>>(), [&root]);
    }

    /// The next version the source yields, within a bound.
    async fn next(source: &mut SpecSource) -> Result<SpecVersion, SpecError> {
        let next = tokio::time::timeout(Duration::from_secs(15), source.next()).await;
        next.expect("a version within 15 s").expect("the source runs")
    }

    fn error_of(version: Result<SpecVersion, SpecError>) -> String {
        match version {
            Err(SpecError::Program(e)) => e.rendered,
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        }
    }

    #[tokio::test]
    async fn a_file_created_after_the_edit_that_imports_it_is_read_and_then_watched() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::write(root.join("main.mcl"), "import \"lib.mcl\"\n").unwrap();
        let mut f = LangFile::new(&root.join("main.mcl"), "h");
        let watch = f.watch(FsWatcher::new().unwrap()).await;
        let first = error_of(f.load());
        assert!(first.contains("lib.mcl: "), "{first}");
        let mut source = f.follow(watch);
        std::fs::write(root.join("lib.mcl"), "$x = 1\n").unwrap();
        let found = error_of(next(&mut source).await);
        assert!(!found.contains("lib.mcl: "), "{found}");
        std::fs::write(root.join("lib.mcl"), "$x = \n").unwrap();
        let broken = error_of(next(&mut source).await);
        assert!(broken.contains("parse error") && broken.contains("lib.mcl:1:6"), "{broken}");
    }
}
