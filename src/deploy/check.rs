//! The check a deploy passes before it is published (`mgmt deploy`, `mgmt deploy yaml
//! --check`, the pre-receive hook) and again before an agent runs it: the same function, so
//! that what is published is what agents run. Pure: the bundle's files are known from its
//! file list, not from the disk.

use std::path::Path;

use super::bundle::{FileEntry, MODE_SYMLINK};
use crate::engine::assemble::assemble;
use crate::engine::graph::GraphError;
use crate::frontend::base::Base;
use crate::frontend::registry::{BundleFrontend, UnknownFrontend};
use crate::frontend::{FrontendError, GraphSpec};

/// The host a graph is assembled for when it is checked without one: an export's size
/// barely depends on the host's name.
const CHECK_HOST: &str = "check";

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the entry `{0}` is not a file of the bundle")]
    NoEntry(String),
    #[error(transparent)]
    Graph(Box<FrontendError>),
    #[error("{file}: {source}")]
    Assemble { file: String, source: GraphError },
    #[error(transparent)]
    Frontend(#[from] UnknownFrontend),
}

impl From<FrontendError> for CheckError {
    fn from(e: FrontendError) -> CheckError {
        CheckError::Graph(Box::new(e))
    }
}

/// The entry `entry` of a bundle (its bytes `text`; the bundle's files `files`), parsed and
/// validated as an agent runs it: the frontend the bundle names (`frontend`) with relative
/// paths resolved against the entry's directory in the bundle unpacked at `root` (and
/// required to be in the bundle), then assembled into a graph (duplicates, edges, cycles,
/// exports).
pub fn check_entry(
    frontend: &str,
    text: &[u8],
    entry: &str,
    files: &[FileEntry],
    root: &Path,
) -> Result<GraphSpec, CheckError> {
    if !files.iter().any(|f| f.path == entry && f.mode != MODE_SYMLINK) {
        return Err(CheckError::NoEntry(entry.to_string()));
    }
    let frontend = BundleFrontend::named(frontend)?;
    let base = Base::bundle(root, entry, files.iter().map(|f| (f.path.as_str(), f.mode == MODE_SYMLINK)));
    let spec = frontend.parse_entry(text, entry, &base)?;
    assemble(&spec, CHECK_HOST, &[])
        .map_err(|source| CheckError::Assemble { file: entry.to_string(), source })?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::bundle::MODE_FILE;

    fn file(path: &str) -> FileEntry {
        FileEntry { path: path.into(), mode: MODE_FILE, size: 0, sha256: String::new() }
    }

    #[test]
    fn a_graph_is_checked_as_agents_run_it() {
        let files = [file("app/graph.yaml"), file("app/files/app.conf")];
        let good = "graph: g\nresources:\n  file:\n  - name: /etc/app.conf\n    source: files/app.conf\n";
        let spec = check_entry("yaml", good.as_bytes(), "app/graph.yaml", &files, Path::new("/d")).unwrap();
        assert_eq!(spec.resources.len(), 1);

        let e = check_entry("yaml", b"this: [is broken\n", "app/graph.yaml", &files, Path::new("/d"))
            .unwrap_err();
        assert!(e.to_string().starts_with("app/graph.yaml:1:"), "{e}");

        let missing = good.replace("files/app.conf", "files/gone.conf");
        let e =
            check_entry("yaml", missing.as_bytes(), "app/graph.yaml", &files, Path::new("/d")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "app/graph.yaml:5:13: file[/etc/app.conf]: field `source`: `files/gone.conf` is not a file of the deployed bundle"
        );

        let cycle = "graph: g\nresources:\n  noop:\n  - name: a\n  - name: b\nedges:\n\
                     - from: {kind: noop, name: a}\n  to: {kind: noop, name: b}\n\
                     - from: {kind: noop, name: b}\n  to: {kind: noop, name: a}\n";
        let e = check_entry("yaml", cycle.as_bytes(), "app/graph.yaml", &files, Path::new("/d")).unwrap_err();
        assert!(e.to_string().starts_with("app/graph.yaml: the graph has a cycle"), "{e}");

        let e = check_entry("yaml", good.as_bytes(), "graph.yaml", &files, Path::new("/d")).unwrap_err();
        assert_eq!(e.to_string(), "the entry `graph.yaml` is not a file of the bundle");

        let e = check_entry("mcl", good.as_bytes(), "app/graph.yaml", &files, Path::new("/d")).unwrap_err();
        assert_eq!(e.to_string(), "this agent runs `yaml` deploys, not `mcl`");
    }
}
