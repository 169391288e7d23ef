//! Loading a program: its entry file and every local file it imports, transitively, each
//! parsed into a [`Unit`], with each `import` resolved to a unit or a core module.
//!
//! A program is a `.mcl` file, or a module directory: `main.mcl` in it, or the entry its
//! `metadata.yaml` names (`main:`), with a files directory (`files:`, default `files/`).
//! `import "x.mcl"` reads a file beside the importing one; `import "dir/"` reads the module
//! directory `dir` beside it; any other name is a core module (`fmt`, `golang/strings`).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::ast::{ImportAlias, Program, StmtKind};
use super::diagnostic::{Diagnostic, Stage};
use super::funcs;
use super::span::{FileId, SourceMap, Span};

pub const ENTRY_FILE: &str = "main.mcl";
pub const METADATA_FILE: &str = "metadata.yaml";
const DEFAULT_FILES_DIR: &str = "files/";
/// Bounds what one program may pull in, so a hostile module cannot exhaust the agent.
pub const MAX_UNITS: usize = 1000;
pub const MAX_FILE_BYTES: u64 = 4 << 20;

pub type UnitId = usize;

/// A loaded program. `units[0]` is the entry.
pub struct Module {
    pub map: SourceMap,
    /// The module's directory (of the entry file, for a single file).
    pub root: PathBuf,
    /// The files directory, relative to `root`, ending in `/`.
    pub files_dir: String,
    pub units: Vec<Unit>,
    /// Every file read, metadata included: what a watcher must watch.
    pub read: Vec<PathBuf>,
}

/// One parsed file and where its imports lead.
pub struct Unit {
    pub path: PathBuf,
    pub file: FileId,
    pub program: Program,
    /// By the span of the import statement's path.
    pub imports: HashMap<Span, Import>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub target: ImportTarget,
    /// The name the import binds: its alias, or the last part of its path (`golang/strings`
    /// and `strings.mcl` give `strings`); `None` for `as *`.
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportTarget {
    Core(String),
    Unit(UnitId),
}

/// Why a program could not be loaded: its diagnostics, located in `map` (a file that could
/// not be read is reported at the import that named it, or with an empty span).
pub struct LoadError {
    pub map: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Metadata {
    main: Option<String>,
    files: Option<String>,
    #[allow(dead_code)] // module search paths: there are no remote modules to search for
    path: Option<String>,
    #[allow(dead_code)]
    license: Option<String>,
    #[allow(dead_code)]
    parentpathblock: Option<bool>,
}

/// Loads the program at `path` (a `.mcl` file or a module directory). Files are named in
/// messages relative to the current directory when they are below it.
pub fn load(path: &Path) -> Result<Module, LoadError> {
    let path = &normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
    let mut loader = Loader {
        map: SourceMap::new(),
        units: Vec::new(),
        by_path: HashMap::new(),
        read: Vec::new(),
        errors: Vec::new(),
        root: PathBuf::new(),
    };
    let (root, entry, files_dir) = match loader.entry_of(path, None) {
        Some(found) => found,
        None => return Err(loader.failed()),
    };
    loader.root = normalize(&root);
    loader.unit(&entry, None);
    if !loader.errors.is_empty() {
        return Err(loader.failed());
    }
    Ok(Module { map: loader.map, root, files_dir, units: loader.units, read: loader.read })
}

struct Loader {
    map: SourceMap,
    units: Vec<Unit>,
    by_path: HashMap<PathBuf, UnitId>,
    read: Vec<PathBuf>,
    errors: Vec<Diagnostic>,
    /// Local imports must stay below it.
    root: PathBuf,
}

impl Loader {
    fn failed(self) -> LoadError {
        LoadError { map: self.map, diagnostics: self.errors }
    }

    /// An error about a file that has no place in any loaded file yet.
    fn error(&mut self, at: Option<Span>, message: String) {
        let span = at.unwrap_or_else(|| {
            let file = self.map.add("<program>", "");
            Span::new(file, 0, 0)
        });
        self.errors.push(Diagnostic::new(Stage::Scope, span, message));
    }

    /// An import of one of upstream's core modules that this agent does not have yet.
    fn unavailable_module(&mut self, at: Span, written: &str, what: &str) {
        let message = format!("the core module `{written}` is not available in this version");
        let diagnostic = Diagnostic::new(Stage::Scope, at, message)
            .with_label("not available here")
            .with_note(format!("upstream's `{written}` {what}"));
        self.errors.push(diagnostic);
    }

    /// The module directory, entry file and files directory of a program or module path.
    fn entry_of(&mut self, path: &Path, at: Option<Span>) -> Option<(PathBuf, PathBuf, String)> {
        if !path.is_dir() {
            if !path.is_file() {
                self.error(at, format!("{}: no such file or directory", display_name(path)));
                return None;
            }
            let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
            return Some((root, path.to_path_buf(), DEFAULT_FILES_DIR.to_string()));
        }
        let metadata_path = path.join(METADATA_FILE);
        let metadata = if metadata_path.is_file() {
            let text = self.read_text(&metadata_path, at)?;
            match serde_saphyr::from_str::<Option<Metadata>>(&text) {
                Ok(meta) => meta.unwrap_or_default(),
                Err(e) => {
                    self.error(at, format!("{}: {e}", display_name(&metadata_path)));
                    return None;
                }
            }
        } else {
            Metadata::default()
        };
        let main = metadata.main.unwrap_or_else(|| ENTRY_FILE.to_string());
        let files = metadata.files.unwrap_or_else(|| DEFAULT_FILES_DIR.to_string());
        for (field, value) in [("main", &main), ("files", &files)] {
            if !is_inside(value) {
                self.error(
                    at,
                    format!(
                        "{}: `{field}: {value}` must be a relative path inside the module",
                        display_name(&metadata_path)
                    ),
                );
                return None;
            }
        }
        let files = if files.ends_with('/') { files } else { format!("{files}/") };
        Some((path.to_path_buf(), path.join(main), files))
    }

    fn read_text(&mut self, path: &Path, at: Option<Span>) -> Option<String> {
        let result = std::fs::metadata(path).and_then(|meta| {
            if meta.len() > MAX_FILE_BYTES {
                Err(std::io::Error::other(format!("larger than {MAX_FILE_BYTES} bytes")))
            } else {
                std::fs::read_to_string(path)
            }
        });
        match result {
            Ok(text) => {
                self.read.push(path.to_path_buf());
                Some(text)
            }
            Err(e) => {
                self.error(at, format!("{}: {e}", display_name(path)));
                None
            }
        }
    }

    /// Loads the file at `path` once, and what it imports; its unit id.
    fn unit(&mut self, path: &Path, at: Option<Span>) -> Option<UnitId> {
        if let Some(&id) = self.by_path.get(path) {
            return Some(id);
        }
        if self.units.len() >= MAX_UNITS {
            self.error(at, format!("a program may load at most {MAX_UNITS} files"));
            return None;
        }
        let text = self.read_text(path, at)?;
        let file = self.map.add(display_name(path), text);
        let (program, errors) = super::parse_file(&self.map, file);
        self.errors.extend(errors);
        let id = self.units.len();
        self.by_path.insert(path.to_path_buf(), id);
        let imports = import_statements(&program);
        self.units.push(Unit { path: path.to_path_buf(), file, program, imports: HashMap::new() });
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for (span, written, alias) in imports {
            if let Some(import) = self.import(&dir, &written, alias, span) {
                self.units[id].imports.insert(span, import);
            }
        }
        Some(id)
    }

    fn import(
        &mut self,
        dir: &Path,
        written: &str,
        alias: Option<Option<String>>,
        at: Span,
    ) -> Option<Import> {
        let default_name = default_import_name(written);
        let name = match alias {
            None => Some(default_name),
            Some(named) => named,
        };
        if written.contains("://") {
            self.error(Some(at), format!("`{written}`: remote modules are not supported; copy the module into a local directory and import it by path"));
            return None;
        }
        let target = if written.ends_with(".mcl") || written.ends_with('/') {
            let local = normalize(&dir.join(written));
            if Path::new(written).is_absolute() || !local.starts_with(&self.root) {
                self.error(
                    Some(at),
                    format!("`{written}`: a local import is a relative path inside the module"),
                );
                return None;
            }
            let entry = if written.ends_with('/') { self.entry_of(&local, Some(at))?.1 } else { local };
            ImportTarget::Unit(self.unit(&entry, Some(at))?)
        } else if funcs::is_module(written) {
            ImportTarget::Core(written.to_string())
        } else if let Some(what) = funcs::unavailable(written) {
            self.unavailable_module(at, written, what);
            return None;
        } else {
            self.error(
                Some(at),
                format!("`{written}` is not a core module, and a local import ends in `.mcl` or `/`"),
            );
            return None;
        };
        Some(Import { target, name })
    }
}

/// The imports of a file: the span and text of each path, and its alias (`Some(None)` for
/// `as *`).
fn import_statements(program: &Program) -> Vec<(Span, String, Option<Option<String>>)> {
    program
        .stmts
        .iter()
        .filter_map(|stmt| match &stmt.kind {
            StmtKind::Import { path, alias } => {
                let alias = alias.as_ref().map(|a| match a {
                    ImportAlias::Name(name) => Some(name.name.clone()),
                    ImportAlias::Star(_) => None,
                });
                Some((path.span, path.name.clone(), alias))
            }
            _ => None,
        })
        .collect()
}

/// `golang/strings` → `strings`, `lib/util.mcl` → `util`, `mod1/` → `mod1`.
pub fn default_import_name(written: &str) -> String {
    let trimmed = written.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    last.strip_suffix(".mcl").unwrap_or(last).to_string()
}

/// How a file is named in messages: relative to the current directory when below it.
fn display_name(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd).unwrap_or(path).display().to_string()
}

/// The path with `.` and `..` taken out as written (symlinks are not followed).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A relative path that stays inside its directory.
fn is_inside(path: &str) -> bool {
    let path = Path::new(path);
    path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_names_are_the_last_part_of_the_path() {
        assert_eq!(default_import_name("golang/strings"), "strings");
        assert_eq!(default_import_name("lib/util.mcl"), "util");
        assert_eq!(default_import_name("mod1/"), "mod1");
        assert_eq!(default_import_name("fmt"), "fmt");
    }

    #[test]
    fn upstream_modules_not_here_yet_are_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.mcl");
        std::fs::write(&main, "import \"local\"\nimport \"nowhere\"\n").unwrap();
        let errors = load(&main).map(|_| ()).unwrap_err().diagnostics;
        let messages: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "the core module `local` is not available in this version",
                "`nowhere` is not a core module, and a local import ends in `.mcl` or `/`",
            ]
        );
        assert!(
            errors[0].notes.iter().any(|n| n.contains("keeps state on this host")),
            "{:?}",
            errors[0].notes
        );
    }

    #[test]
    fn module_paths_must_stay_inside() {
        assert!(is_inside("main.mcl") && is_inside("files/") && is_inside("./a/b.mcl"));
        assert!(!is_inside("../x.mcl") && !is_inside("/etc/passwd") && !is_inside("a/../../b"));
    }
}
