//! Where a bundle's files come from: a git commit's tree (git objects, so nothing of the work
//! tree can leak in), or a directory as it is (`--no-git`).

use std::path::{Path, PathBuf};

use crate::frontend::lang::module::{ENTRY_FILE, METADATA_FILE};
use git2::{ObjectType, Repository, Status, StatusOptions, TreeWalkMode, TreeWalkResult};

use super::bundle::{
    FileEntry, MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK, Manifest, sha256_hex, symlink_stays_inside,
};

/// Why a bundle could not be built from its source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{} is not in a git repository (use --no-git to deploy a directory)", .path.display())]
    NotInRepo { path: PathBuf, source: git2::Error },
    #[error("reading the work tree's status")]
    Status(#[source] git2::Error),
    #[error(
        "the work tree is not clean; commit or stash first, or deploy the directory as it is with --no-git:\n  {}",
        .0.join("\n  ")
    )]
    Dirty(Vec<String>),
    #[error("no commit `{spec}` in {}", .repo.display())]
    NoCommit { spec: String, repo: PathBuf, source: git2::Error },
    /// A file of the tree that cannot go into a bundle, or could not be read: the whole text.
    #[error("{0}")]
    Tree(String),
    #[error("reading the tree of commit {commit}")]
    WalkTree { commit: String, source: git2::Error },
    #[error("opening the object database")]
    Odb(#[source] git2::Error),
    #[error("adding the objects of {} (GIT_OBJECT_DIRECTORY)", .dir.display())]
    Quarantine { dir: PathBuf, source: git2::Error },
    #[error("{} is outside the work tree {}", .file.display(), .workdir.display())]
    OutsideWorkTree { file: PathBuf, workdir: PathBuf, source: std::path::StripPrefixError },
    #[error("reading {}", .path.display())]
    Walk { path: PathBuf, source: walkdir::Error },
    #[error("reading {}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is neither a file, a directory nor a symlink", .0.display())]
    NotAFile(PathBuf),
    #[error("symlink `{path}` points to `{target}`, outside the bundle")]
    SymlinkOutside { path: String, target: String },
    #[error("`{0}` is a directory without a {DEFAULT_GRAPH}; name the graph file")]
    NoGraph(String),
    #[error("`{0}` is a directory without a {ENTRY_FILE} or a {METADATA_FILE}; name the program's file")]
    NoProgram(String),
    #[error(transparent)]
    Git(#[from] git2::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Entry(#[from] walkdir::Error),
    #[error(transparent)]
    Bundle(#[from] super::bundle::BundleError),
}

type Result<T, E = SourceError> = std::result::Result<T, E>;

/// The commit a bundle was built from.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitInfo {
    pub id: String,
    pub author: String,
    /// Unix seconds.
    pub time: i64,
    /// The commit message's first line.
    pub subject: String,
}

/// A bundle ready to publish: its manifest and every file's content.
#[derive(Debug)]
pub struct Built {
    pub manifest: Manifest,
    pub contents: Vec<Vec<u8>>,
    pub commit: Option<CommitInfo>,
}

/// Files that make a work tree dirty, as `git status --short` would show them.
pub fn dirty_paths(repo: &Repository) -> Result<Vec<String>> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true).include_ignored(false);
    let statuses = repo.statuses(Some(&mut opts)).map_err(SourceError::Status)?;
    let mut out = Vec::new();
    for s in statuses.iter() {
        let st = s.status();
        if st == Status::CURRENT || st.contains(Status::IGNORED) {
            continue;
        }
        let what = if st.intersects(Status::WT_NEW) {
            "untracked"
        } else if st.intersects(
            Status::INDEX_NEW | Status::INDEX_MODIFIED | Status::INDEX_DELETED | Status::INDEX_RENAMED,
        ) {
            "staged"
        } else if st.intersects(Status::WT_DELETED) {
            "deleted"
        } else {
            "modified"
        };
        out.push(format!("{what}: {}", s.path().unwrap_or("?")));
    }
    Ok(out)
}

/// Build from git: the repository is found from `start` (a work tree or a bare repository);
/// `entry` is the graph's path relative to the repository root; `rev` defaults to `HEAD`,
/// whose work tree must be clean.
pub fn from_git(start: &Path, frontend: &str, entry: &str, rev: Option<&str>) -> Result<Built> {
    let repo = Repository::discover(start)
        .map_err(|source| SourceError::NotInRepo { path: start.to_path_buf(), source })?;
    add_quarantine(&repo)?;
    if rev.is_none() && !repo.is_bare() {
        let dirty = dirty_paths(&repo)?;
        if !dirty.is_empty() {
            return Err(SourceError::Dirty(dirty));
        }
    }
    let spec = rev.unwrap_or("HEAD");
    let commit = repo.revparse_single(spec).and_then(|o| o.peel_to_commit()).map_err(|source| {
        SourceError::NoCommit { spec: spec.to_string(), repo: repo.path().to_path_buf(), source }
    })?;
    let tree = commit.tree()?;
    let mut files = Vec::new();
    let mut contents = Vec::new();
    let mut problem: Option<String> = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |dir, e| {
        let Ok(name) = std::str::from_utf8(e.name_bytes()) else {
            problem = Some(not_utf8(&format!("{dir}{}", escape_name(e.name_bytes()))));
            return TreeWalkResult::Abort;
        };
        let path = format!("{dir}{name}");
        let mode = e.filemode() as u32;
        match e.kind() {
            Some(ObjectType::Tree) => return TreeWalkResult::Ok,
            Some(ObjectType::Blob) if [MODE_FILE, MODE_EXECUTABLE, MODE_SYMLINK].contains(&mode) => {}
            // 100664 is an old git mode for plain files.
            Some(ObjectType::Blob) if mode == 0o100664 => {}
            _ => {
                problem = Some(format!(
                    "`{path}` is neither a file nor a symlink (a submodule?); bundles hold files"
                ));
                return TreeWalkResult::Abort;
            }
        }
        let blob = match repo.find_blob(e.id()) {
            Ok(b) => b,
            Err(err) => {
                problem = Some(format!("reading `{path}`: {err}"));
                return TreeWalkResult::Abort;
            }
        };
        let data = blob.content().to_vec();
        let mode = if mode == 0o100664 { MODE_FILE } else { mode };
        files.push(FileEntry { path, mode, size: data.len() as u64, sha256: sha256_hex(&data) });
        contents.push(data);
        TreeWalkResult::Ok
    });
    // An aborted walk is an error from git2 that says only that the callback stopped it.
    if let Some(p) = problem {
        return Err(SourceError::Tree(p));
    }
    walked.map_err(|source| SourceError::WalkTree { commit: commit.id().to_string(), source })?;
    check_symlinks(&files, &contents)?;
    let manifest = build_manifest(frontend, entry, files, &mut contents)?;
    let author = commit.author();
    let info = CommitInfo {
        id: commit.id().to_string(),
        author: format!("{} <{}>", author.name().unwrap_or("?"), author.email().unwrap_or("?")),
        time: commit.time().seconds(),
        subject: commit.summary().unwrap_or("").to_string(),
    };
    Ok(Built { manifest, contents, commit: Some(info) })
}

/// In a pre-receive hook the pushed objects are not in the repository yet, but in a
/// quarantine directory that git names in `GIT_OBJECT_DIRECTORY` (with the repository's own
/// objects in `GIT_ALTERNATE_OBJECT_DIRECTORIES`). libgit2 reads neither variable, so they
/// are added as alternates of the object database.
fn add_quarantine(repo: &Repository) -> Result<()> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("GIT_OBJECT_DIRECTORY").map(PathBuf::from).into_iter().collect();
    if let Some(alt) = std::env::var_os("GIT_ALTERNATE_OBJECT_DIRECTORIES") {
        dirs.extend(std::env::split_paths(&alt));
    }
    let dirs: Vec<PathBuf> = dirs.into_iter().filter(|d| d.is_dir()).collect();
    if dirs.is_empty() {
        return Ok(());
    }
    let odb = repo.odb().map_err(SourceError::Odb)?;
    for d in dirs {
        let d = d.canonicalize().unwrap_or(d);
        odb.add_disk_alternate(&d.to_string_lossy())
            .map_err(|source| SourceError::Quarantine { dir: d.clone(), source })?;
    }
    Ok(())
}

/// Where `file` is relative to the root of the repository's work tree.
pub fn path_in_repo(file: &Path) -> Result<(PathBuf, String)> {
    let abs = std::path::absolute(file)?;
    let repo = Repository::discover(abs.parent().unwrap_or(Path::new("/")))
        .map_err(|source| SourceError::NotInRepo { path: file.to_path_buf(), source })?;
    let Some(workdir) = repo.workdir() else {
        // A bare repository: paths are already relative to its root.
        return Ok((std::env::current_dir()?, file.to_string_lossy().trim_start_matches("./").to_string()));
    };
    let workdir = workdir.canonicalize()?;
    let canon = abs
        .parent()
        .map(|p| p.canonicalize())
        .transpose()?
        .unwrap_or_default()
        .join(abs.file_name().unwrap_or_default());
    let rel = canon.strip_prefix(&workdir).map_err(|source| SourceError::OutsideWorkTree {
        file: file.to_path_buf(),
        workdir: workdir.clone(),
        source,
    })?;
    Ok((workdir.clone(), rel.to_string_lossy().into_owned()))
}

/// Build from a directory as it is. Symlinks are kept as links (and must stay inside);
/// anything but files, directories and symlinks is refused; `.git` is skipped.
pub fn from_dir(root: &Path, frontend: &str, entry: &str) -> Result<Built> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    let mut contents = Vec::new();
    let walker = walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name().into_iter();
    for e in walker.filter_entry(|e| e.file_name() != ".git") {
        use std::os::unix::ffi::OsStrExt;
        let e = e.map_err(|source| SourceError::Walk { path: root.to_path_buf(), source })?;
        let rel = e.path().strip_prefix(root).expect("below root").as_os_str();
        let Some(rel) = rel.to_str().map(str::to_string) else {
            return Err(SourceError::Tree(not_utf8(&escape_name(rel.as_bytes()))));
        };
        let ft = e.file_type();
        let (mode, data) = if ft.is_dir() {
            continue;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(e.path())?;
            (MODE_SYMLINK, target.to_string_lossy().into_owned().into_bytes())
        } else if ft.is_file() {
            let md = e.metadata()?;
            let mode = if md.permissions().mode() & 0o111 != 0 { MODE_EXECUTABLE } else { MODE_FILE };
            let read = std::fs::read(e.path());
            (mode, read.map_err(|source| SourceError::Read { path: e.path().to_path_buf(), source })?)
        } else {
            return Err(SourceError::NotAFile(e.path().to_path_buf()));
        };
        files.push(FileEntry { path: rel, mode, size: data.len() as u64, sha256: sha256_hex(&data) });
        contents.push(data);
    }
    check_symlinks(&files, &contents)?;
    let manifest = build_manifest(frontend, entry, files, &mut contents)?;
    Ok(Built { manifest, contents, commit: None })
}

/// A file name as text: valid UTF-8 as it is, other bytes as `\xNN`.
pub fn escape_name(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn not_utf8(escaped: &str) -> String {
    format!("`{escaped}` is not a UTF-8 file name; bundles hold UTF-8 paths only (rename it)")
}

fn check_symlinks(files: &[FileEntry], contents: &[Vec<u8>]) -> Result<()> {
    for (f, c) in files.iter().zip(contents) {
        if f.mode == MODE_SYMLINK && !symlink_stays_inside(&f.path, &String::from_utf8_lossy(c)) {
            return Err(SourceError::SymlinkOutside {
                path: f.path.clone(),
                target: String::from_utf8_lossy(c).into_owned(),
            });
        }
    }
    Ok(())
}

/// The graph file a `yaml` entry naming a directory stands for.
pub use crate::frontend::yaml_file::DEFAULT_GRAPH;

/// A YAML entry that names a directory of the tree (`.` or `` for its root) stands for the
/// [`DEFAULT_GRAPH`] in it; one without it is refused here rather than by every agent.
fn yaml_entry(entry: &str, files: &[FileEntry]) -> Result<String> {
    let Some((below, shown)) = entry_dir(entry, files) else { return Ok(entry.to_string()) };
    let graph = format!("{below}{DEFAULT_GRAPH}");
    if !files.iter().any(|f| f.path == graph) {
        return Err(SourceError::NoGraph(shown));
    }
    Ok(graph)
}

/// The directory an entry names, if it names one of the tree (`.` or `` for its root):
/// as a prefix of the paths below it (`` or `dir/`), and as it is shown (`.` or `dir`).
fn entry_dir(entry: &str, files: &[FileEntry]) -> Option<(String, String)> {
    let dir = entry.trim_start_matches("./").trim_end_matches('/');
    let dir = if dir == "." { "" } else { dir };
    let below = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    let is_dir = dir.is_empty()
        || (!files.iter().any(|f| f.path == dir) && files.iter().any(|f| f.path.starts_with(&below)));
    is_dir.then(|| (below, if dir.is_empty() { ".".to_string() } else { dir.to_string() }))
}

/// An mcl entry that names a module directory stands for its [`METADATA_FILE`] (which names
/// the module's entry and files directory) or, without one, its [`ENTRY_FILE`]: a bundle's
/// entry is a file. One with neither is refused here rather than by every agent.
fn lang_entry(entry: &str, files: &[FileEntry]) -> Result<String> {
    let Some((below, shown)) = entry_dir(entry, files) else { return Ok(entry.to_string()) };
    [METADATA_FILE, ENTRY_FILE]
        .iter()
        .map(|name| format!("{below}{name}"))
        .find(|path| files.iter().any(|f| &f.path == path))
        .ok_or(SourceError::NoProgram(shown))
}

/// The entry of a bundle of `frontend`: a directory stands for the file that frontend runs
/// in it.
fn entry_of(frontend: &str, entry: &str, files: &[FileEntry]) -> Result<String> {
    match frontend {
        "yaml" => yaml_entry(entry, files),
        "lang" => lang_entry(entry, files),
        _ => Ok(entry.to_string()),
    }
}

/// Sort files and contents together, then check the manifest.
fn build_manifest(
    frontend: &str,
    entry: &str,
    files: Vec<FileEntry>,
    contents: &mut Vec<Vec<u8>>,
) -> Result<Manifest> {
    let entry = entry_of(frontend, entry, &files)?;
    let entry = entry.as_str();
    let mut pairs: Vec<(FileEntry, Vec<u8>)> = files.into_iter().zip(std::mem::take(contents)).collect();
    pairs.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let (files, data): (Vec<FileEntry>, Vec<Vec<u8>>) = pairs.into_iter().unzip();
    *contents = data;
    Ok(Manifest::new(frontend, entry, files)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<FileEntry> {
        let entry =
            |p: &&str| FileEntry { path: p.to_string(), mode: MODE_FILE, size: 0, sha256: sha256_hex(b"") };
        paths.iter().map(entry).collect()
    }

    #[test]
    fn a_lang_directory_stands_for_its_metadata_or_its_main() {
        let tree =
            files(&["main.mcl", "app/metadata.yaml", "app/x.mcl", "lib/main.mcl", "lib/files/f", "docs/a"]);
        assert_eq!(lang_entry(".", &tree).unwrap(), "main.mcl");
        assert_eq!(lang_entry("", &tree).unwrap(), "main.mcl");
        assert_eq!(lang_entry("app/", &tree).unwrap(), "app/metadata.yaml");
        assert_eq!(lang_entry("./lib", &tree).unwrap(), "lib/main.mcl");
        assert_eq!(lang_entry("app/x.mcl", &tree).unwrap(), "app/x.mcl");
        assert_eq!(
            lang_entry("docs", &tree).unwrap_err().to_string(),
            "`docs` is a directory without a main.mcl or a metadata.yaml; name the program's file"
        );
        assert_eq!(entry_of("yaml", ".", &files(&["graph.yaml"])).unwrap(), "graph.yaml");
    }

    #[test]
    fn names_keep_their_valid_text_and_escape_the_rest() {
        assert_eq!(super::escape_name(b"caf\xe9"), "caf\\xe9");
        assert_eq!(super::escape_name("dé/x".as_bytes()), "dé/x");
        assert_eq!(super::escape_name(b"\xff\xfe"), "\\xff\\xfe");
    }
}
