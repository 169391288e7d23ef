//! The YAML frontend's stream: a graph file (`mgmt run yaml FILE`), read and parsed at
//! start, then followed: each finished edit is read on the blocking pool and parsed, and
//! yielded as a new version of the graph.

#![allow(clippy::result_large_err)] // errors are the cold path; flat ones keep the code plain

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::Notify;

use super::base::Base;
use super::graph_file::{self, GraphFileError, WatchedFile};
use super::source::{SpecError, SpecSender, SpecSource, SpecVersion};
use super::{FrontendError, yaml};
use crate::os::fswatch::FsWatcher;

/// The graph file a `yaml` argument naming a directory stands for.
pub const DEFAULT_GRAPH: &str = "graph.yaml";

/// A `yaml` argument that names a directory without a [`DEFAULT_GRAPH`].
#[derive(Debug, thiserror::Error)]
#[error("`{}` is a directory without a {DEFAULT_GRAPH}; name the graph file", .0.display())]
pub struct NoGraphInDir(pub PathBuf);

/// The graph file a `yaml` argument names: the file itself, or the [`DEFAULT_GRAPH`] in a
/// directory.
pub fn graph_arg(arg: &Path) -> Result<PathBuf, NoGraphInDir> {
    if !arg.is_dir() {
        return Ok(arg.to_path_buf());
    }
    let graph = arg.join(DEFAULT_GRAPH);
    if !graph.exists() {
        return Err(NoGraphInDir(arg.to_path_buf()));
    }
    Ok(graph)
}

/// The directory relative paths in the graph file `path` resolve against: its own, as an
/// absolute path without links or `..` (which paths in a graph may not hold).
fn base_of(path: &Path) -> Result<Base, GraphFileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir =
        dir.canonicalize().map_err(|error| GraphFileError::Io { path: path.display().to_string(), error })?;
    Ok(Base::dir(dir))
}

/// A YAML graph file: its path, the directory its relative paths resolve against (taken
/// once, at start) and the bytes it last yielded.
/// The graph file watched, from before its first read (see [`YamlFile::watch`]).
pub struct Watch {
    file: WatchedFile,
    changed: Arc<Notify>,
}

pub struct YamlFile {
    path: PathBuf,
    name: String,
    base: Base,
    /// The bytes of the last version yielded (good or bad); `None` after a failed read.
    last: Option<Vec<u8>>,
}

impl YamlFile {
    pub fn new(path: &Path) -> Result<YamlFile, GraphFileError> {
        let base = base_of(path)?;
        Ok(YamlFile { path: path.to_path_buf(), name: path.display().to_string(), base, last: None })
    }

    /// The file as given, for messages and the host status.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Read and parse the file now (blocking: for the start, before anything runs).
    pub fn load(&mut self) -> Result<SpecVersion, SpecError> {
        let read = graph_file::read(&self.path);
        self.version_of(read)
    }

    /// The version a read gives, or `None` when it read the very bytes yielded last.
    fn next_version(
        &mut self,
        read: Result<Vec<u8>, GraphFileError>,
    ) -> Option<Result<SpecVersion, SpecError>> {
        match &read {
            Ok(bytes) if self.last.as_ref() == Some(bytes) => None,
            _ => Some(self.version_of(read)),
        }
    }

    /// The version a read gives; its bytes, valid or not, are the last yielded.
    fn version_of(&mut self, read: Result<Vec<u8>, GraphFileError>) -> Result<SpecVersion, SpecError> {
        let bytes = read.inspect_err(|_| self.last = None)?;
        let version = self.parse(&bytes);
        self.last = Some(bytes);
        Ok(version?)
    }

    /// Relative paths in the graph resolve against the graph file's directory.
    fn parse(&self, bytes: &[u8]) -> Result<SpecVersion, FrontendError> {
        let text = yaml::text_of(bytes, &self.name)?;
        let spec = yaml::parse_at(text, &self.name, Some(&self.base))?;
        Ok(SpecVersion { spec, text: text.to_string() })
    }

    /// Watch the file and its links, before the first read: a change made after that read is
    /// never missed, and none made before it is read twice. Call it before [`YamlFile::load`].
    pub async fn watch(&self, fs: Arc<FsWatcher>) -> std::io::Result<Watch> {
        let changed = Arc::new(Notify::new());
        let file = WatchedFile::watch(fs, &self.path, changed.clone()).await?;
        // Arming the watch wakes it, in case a change was missed while nothing watched. Nothing
        // was read yet: the read that follows (`load`) is that look, so this wake is spent
        // here, and only changes made from now on make the source read the file again.
        let _ = changed.notified().now_or_never();
        Ok(Watch { file, changed })
    }

    /// Yield each later version of the file, as `watch` sees it change: every finished edit
    /// that changed what it reads.
    pub fn follow(self, watch: Watch) -> SpecSource {
        SpecSource::spawn(self.name.clone(), |tx| self.yield_edits(watch.file, watch.changed, tx))
    }

    async fn yield_edits(mut self, mut file: WatchedFile, changed: Arc<Notify>, tx: SpecSender) {
        loop {
            changed.notified().await;
            let Ok(loaded) = file.load().await else { continue };
            file.follow(loaded.watched).await;
            let Some(version) = self.next_version(loaded.bytes) else { continue };
            if tx.send(version).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml_file(dir: &Path) -> YamlFile {
        YamlFile::new(&dir.join("g.yaml")).unwrap()
    }

    fn read_error() -> Result<Vec<u8>, GraphFileError> {
        Err(GraphFileError::TooBig { path: "g.yaml".into() })
    }

    #[test]
    fn a_version_is_yielded_once_until_a_read_fails() {
        let t = tempfile::tempdir().unwrap();
        let mut f = yaml_file(t.path());
        let good = b"graph: g\n".to_vec();
        assert_eq!(f.next_version(Ok(good.clone())).unwrap().unwrap().spec.name, "g");
        assert!(f.next_version(Ok(good.clone())).is_none());
        let bad = b"graph: [g\n".to_vec();
        assert!(matches!(f.next_version(Ok(bad.clone())), Some(Err(SpecError::Invalid(_)))));
        // One report per bad save.
        assert!(f.next_version(Ok(bad.clone())).is_none());
        assert!(matches!(f.next_version(read_error()), Some(Err(SpecError::Read(_)))));
        // After a failed read, the same bytes are news again.
        assert!(matches!(f.next_version(Ok(bad)), Some(Err(SpecError::Invalid(_)))));
        assert!(f.next_version(Ok(good)).unwrap().is_ok());
    }

    #[test]
    fn relative_paths_resolve_in_the_files_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("g.yaml"),
            "graph: g\nresources:\n  exec:\n  - name: e\n    cmd: 'true'\n    cwd: sub\n",
        )
        .unwrap();
        let mut f = yaml_file(t.path());
        let v = f.load().unwrap();
        let json = v.spec.resources[0].to_json().to_string();
        let dir = t.path().canonicalize().unwrap().join("sub");
        assert!(json.contains(&dir.display().to_string()), "{json}");
        assert_eq!(v.text, std::fs::read_to_string(t.path().join("g.yaml")).unwrap());
    }

    #[test]
    fn a_directory_stands_for_its_graph_yaml() {
        let t = tempfile::tempdir().unwrap();
        let e = graph_arg(t.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("`{}` is a directory without a graph.yaml; name the graph file", t.path().display())
        );
        std::fs::write(t.path().join("graph.yaml"), "graph: g\n").unwrap();
        assert_eq!(graph_arg(t.path()).unwrap(), t.path().join("graph.yaml"));
        assert_eq!(graph_arg(&t.path().join("x.yaml")).unwrap(), t.path().join("x.yaml"));
    }

    #[tokio::test]
    async fn a_finished_edit_is_yielded() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("g.yaml");
        std::fs::write(&path, "graph: one\n").unwrap();
        let mut f = YamlFile::new(&path).unwrap();
        let watch = f.watch(FsWatcher::new().unwrap()).await.unwrap();
        assert_eq!(f.load().unwrap().spec.name, "one");
        let mut source = f.follow(watch);
        assert_eq!(source.name(), path.display().to_string());
        std::fs::write(&path, "graph: two\n").unwrap();
        let next = tokio::time::timeout(std::time::Duration::from_secs(15), source.next()).await;
        assert_eq!(next.unwrap().unwrap().unwrap().spec.name, "two");
    }
}
