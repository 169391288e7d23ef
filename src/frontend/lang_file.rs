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
use super::lang::{self, HostInfo, Module};
use super::source::{ProgramError, SpecError, SpecSender, SpecSource, SpecVersion};
use crate::os::fswatch::{FsWatcher, Scope, Subscription};

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

/// A program compiled: its graph, its sources, and what to watch.
pub struct Compiled {
    pub spec: GraphSpec,
    /// The program's sources as one text, the first part of [`Compiled::text`].
    sources: String,
    pub watch: WatchSet,
}

impl Compiled {
    /// The sources and the graph, as text: a version with the running one's is not swapped
    /// in again. Made only when asked, as it renders the whole graph.
    pub fn text(&self) -> String {
        let spec = &self.spec;
        let mut text = self.sources.clone();
        text.push_str(&format!("--- graph {}\n", spec.name));
        for r in &spec.resources {
            text.push_str(&format!("{} {}\n", r.id(), r.to_json()));
        }
        text.push_str(&format!("{:?}\n{:?}\n{:?}\n", spec.edges, spec.exports, spec.collect));
        text
    }
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
    };
    let watch = WatchSet::of(&module);
    match lang::compile(&module, &host) {
        Ok(spec) => Ok(Compiled { sources: sources_of(&module), spec, watch }),
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

/// What tells a load's outcome from another: the program and its graph, or its errors.
fn text_of(compiled: &Result<Compiled, Failed>) -> String {
    match compiled {
        Ok(c) => c.text(),
        Err(f) => format!("error\n{}", f.error.rendered),
    }
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

/// An mcl program: where it is, the host it is compiled for, and the version it last
/// yielded.
pub struct LangFile {
    path: PathBuf,
    name: String,
    hostname: String,
    /// The text of the last version yielded: its [`Compiled::text`], or its errors.
    last: Option<String>,
    /// What the first load asked to watch, for [`LangFile::follow`].
    first_watch: Option<WatchSet>,
}

impl LangFile {
    pub fn new(path: &Path, hostname: &str) -> LangFile {
        LangFile {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            hostname: hostname.to_string(),
            last: None,
            first_watch: None,
        }
    }

    /// The program as given, for messages and the host status.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Load and compile the program now (blocking: for the start, before anything runs).
    pub fn load(&mut self) -> Result<SpecVersion, SpecError> {
        let compiled = compile_at(&self.path, &self.hostname, 0);
        self.first_watch = match &compiled {
            Ok(c) => Some(c.watch.clone()),
            Err(f) => f.watch.clone(),
        };
        self.yielded(compiled)
    }

    /// The version a load gives, or `None` when it is the one yielded last.
    fn version_of(&mut self, compiled: Result<Compiled, Failed>) -> Option<Result<SpecVersion, SpecError>> {
        let text = text_of(&compiled);
        (self.last.as_ref() != Some(&text)).then(|| self.remember(compiled, text))
    }

    /// The version a load gives, remembered as the last yielded.
    fn yielded(&mut self, compiled: Result<Compiled, Failed>) -> Result<SpecVersion, SpecError> {
        let text = text_of(&compiled);
        self.remember(compiled, text)
    }

    fn remember(
        &mut self,
        compiled: Result<Compiled, Failed>,
        text: String,
    ) -> Result<SpecVersion, SpecError> {
        self.last = Some(text.clone());
        match compiled {
            Ok(c) => Ok(SpecVersion { spec: c.spec, text }),
            Err(f) => Err(SpecError::Program(f.error)),
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

    /// Yield each later version of the program, as `watch` sees its files change.
    pub fn follow(mut self, mut watch: Watch) -> SpecSource {
        SpecSource::spawn(self.name.clone(), |tx| async move {
            if let Some(set) = self.first_watch.take() {
                watch.follow(set).await;
            }
            self.yield_edits(watch, tx).await
        })
    }

    async fn yield_edits(mut self, mut watch: Watch, tx: SpecSender) {
        loop {
            watch.next_change().await;
            let (path, hostname) = (self.path.clone(), self.hostname.clone());
            let Ok(compiled) = tokio::task::spawn_blocking(move || compile_at(&path, &hostname, 0)).await
            else {
                continue;
            };
            let set = match &compiled {
                Ok(c) => Some(c.watch.clone()),
                Err(f) => f.watch.clone(),
            };
            if let Some(set) = set {
                watch.follow(set).await;
            }
            let Some(version) = self.version_of(compiled) else { continue };
            if tx.send(version).await.is_err() {
                return;
            }
        }
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
        assert!(f.version_of(compile_at(&path, "h", 0)).is_none());
        std::fs::write(&path, "$x = )\n").unwrap();
        let again = f.version_of(compile_at(&path, "h", 0));
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
