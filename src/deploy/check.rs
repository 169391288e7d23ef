//! The check a deploy passes before it is published (`mgmt deploy`, `mgmt deploy yaml
//! --check`, the pre-receive hook) and again before an agent runs it: the same function, so
//! that what is published is what agents run. A YAML entry is checked purely: the bundle's
//! files are known from its file list, not from the disk. An mcl program reads the files it
//! imports, so it is compiled from the unpacked bundle (a temporary copy before publishing).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::bundle::{FileEntry, MODE_SYMLINK, Manifest};
use crate::engine::assemble::assemble;
use crate::engine::graph::GraphError;
use crate::frontend::base::Base;
use crate::frontend::registry::{self, BundleFrontend, UnknownFrontend};
use crate::frontend::source::ProgramError;
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
    /// The bundle's mcl program does not compile.
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// An mcl program's imports are not in its entry's text: it is checked unpacked.
    #[error("a `lang` program is checked from its files, not from its entry's text")]
    NotFromText,
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
    if BundleFrontend::named(frontend)? == BundleFrontend::Lang {
        return Err(CheckError::NotFromText);
    }
    let base = Base::bundle(root, entry, files.iter().map(|f| (f.path.as_str(), f.mode == MODE_SYMLINK)));
    let spec = BundleFrontend::parse_entry(text, entry, &base)?;
    assembled(spec, entry, CHECK_HOST)
}

/// `spec`, once it is known to assemble for `host`.
fn assembled(spec: GraphSpec, entry: &str, host: &str) -> Result<GraphSpec, CheckError> {
    assemble(&spec, host, &[]).map_err(|source| CheckError::Assemble { file: entry.to_string(), source })?;
    Ok(spec)
}

/// The bundle `m` unpacked at `dir`, checked as an agent runs it: its entry parsed (YAML,
/// with relative paths in the bundle) or its program compiled for `hostname` from deploy
/// `deploy_id` (mcl), then assembled. Reads the entry, or the program's files, from `dir`.
pub fn check_unpacked(
    m: &Manifest,
    dir: &Path,
    hostname: &str,
    deploy_id: u64,
) -> Result<GraphSpec, CheckError> {
    let io = |what: String| move |source| CheckError::Io { what, source };
    // Paths in a graph are absolute and without `..`, whatever `--prefix` was given.
    let root = dir.canonicalize().map_err(io(format!("resolving {}", dir.display())))?;
    let entry = m.files.iter().find(|f| f.path == m.entry && f.mode != MODE_SYMLINK);
    let entry = entry.ok_or_else(|| CheckError::NoEntry(m.entry.clone()))?;
    match BundleFrontend::named(&m.frontend)? {
        BundleFrontend::Yaml => {
            let path = Manifest::local_path(&root, entry);
            let text = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
            check_entry(&m.frontend, &text, &m.entry, &m.files, &root)
        }
        BundleFrontend::Lang => {
            let spec = registry::compile_lang(&root, &m.entry, hostname, deploy_id)?;
            assembled(spec, &m.entry, hostname)
        }
    }
}

/// A bundle about to be published (its manifest and every file's content), checked as
/// agents will run it: a YAML entry purely, as if unpacked at `yaml_root`; an mcl program
/// compiled for `hostname` in a temporary copy of the bundle.
pub fn check_built(
    m: &Manifest,
    contents: &[Vec<u8>],
    hostname: &str,
    yaml_root: &Path,
) -> Result<GraphSpec, CheckError> {
    if BundleFrontend::named(&m.frontend)? == BundleFrontend::Yaml {
        let i = m
            .files
            .iter()
            .position(|f| f.path == m.entry)
            .ok_or_else(|| CheckError::NoEntry(m.entry.clone()))?;
        return check_entry(&m.frontend, &contents[i], &m.entry, &m.files, yaml_root);
    }
    let io = |what: &str| {
        let what = what.to_string();
        move |source| CheckError::Io { what, source }
    };
    let tmp = tempfile::Builder::new()
        .prefix("mgmt-check-")
        .tempdir()
        .map_err(io("making a directory to check the bundle in"))?;
    unpack(tmp.path(), m, contents).map_err(io("unpacking the bundle to check it"))?;
    check_unpacked(m, tmp.path(), hostname, 0)
}

/// Write the bundle's files below `root` (symlinks as symlinks; the manifest's rules keep
/// every path below `root`).
fn unpack(root: &Path, m: &Manifest, contents: &[Vec<u8>]) -> std::io::Result<()> {
    for (f, data) in m.files.iter().zip(contents) {
        let path = Manifest::local_path(root, f);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if f.mode == MODE_SYMLINK {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(data), &path)?;
        } else {
            std::fs::write(&path, data)?;
        }
    }
    Ok(())
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
        assert_eq!(e.to_string(), "this agent runs `yaml` or `lang` deploys, not `mcl`");
    }

    fn built(files: &[(&str, &str)]) -> (Manifest, Vec<Vec<u8>>) {
        let entries = files
            .iter()
            .map(|(p, c)| FileEntry {
                path: p.to_string(),
                mode: MODE_FILE,
                size: c.len() as u64,
                sha256: crate::deploy::bundle::sha256_hex(c.as_bytes()),
            })
            .collect();
        let m = Manifest::new("lang", files[0].0, entries).unwrap();
        let contents =
            m.files.iter().map(|f| files.iter().find(|(p, _)| *p == f.path).unwrap().1.into()).collect();
        (m, contents)
    }

    #[test]
    fn a_program_is_compiled_from_a_copy_of_the_bundle_and_its_errors_name_bundle_paths() {
        let (m, contents) = built(&[("app/main.mcl", "import \"lib.mcl\"\n"), ("app/lib.mcl", "$x = \n")]);
        let Err(CheckError::Program(e)) = check_built(&m, &contents, "h", Path::new("/d")) else {
            panic!("compiled")
        };
        assert!(e.to_string().starts_with("app/lib.mcl:1:6: parse error: "), "{e}");
        assert!(e.rendered.contains("--> app/lib.mcl:1:6"), "{}", e.rendered);
        let (m, contents) = built(&[("main.mcl", "import \"gone.mcl\"\n")]);
        let Err(CheckError::Program(e)) = check_built(&m, &contents, "h", Path::new("/d")) else {
            panic!("compiled")
        };
        assert!(e.to_string().starts_with("main.mcl:1:8: scope error: gone.mcl: "), "{e}");
        let e = check_entry("lang", b"", "main.mcl", &m.files, Path::new("/d")).unwrap_err();
        assert!(matches!(e, CheckError::NotFromText), "{e}");
    }
}
