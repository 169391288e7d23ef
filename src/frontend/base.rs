//! Where a graph's relative paths point: the graph file's directory (for a deployed graph,
//! its directory in the unpacked bundle). Pure: paths are joined as text, and whether a path
//! names something is asked of the bundle's file list, never of the file system.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The directory a graph's relative paths are resolved against.
#[derive(Debug, Clone)]
pub struct Base {
    dir: PathBuf,
    tree: Option<Tree>,
}

/// What a relative path must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    File,
    Dir,
}

impl Base {
    /// Relative paths resolve against `dir`, which must be absolute; nothing says whether
    /// they exist (`mgmt run yaml FILE`: that is found out when the graph runs).
    pub fn dir(dir: impl Into<PathBuf>) -> Base {
        Base { dir: dir.into(), tree: None }
    }

    /// The graph `entry` of a bundle unpacked at `root`, whose entries are `paths` (relative
    /// to its root, each with whether it is a symlink): relative paths resolve against the
    /// entry's directory, and must name something in the bundle.
    pub fn bundle<'a>(root: &Path, entry: &str, paths: impl IntoIterator<Item = (&'a str, bool)>) -> Base {
        let entry_dir = entry.rsplit_once('/').map_or("", |(d, _)| d);
        let dir = if entry_dir.is_empty() { root.to_path_buf() } else { root.join(entry_dir) };
        Base { dir, tree: Some(Tree::new(paths, entry_dir)) }
    }

    /// The absolute path for `rel`, a path relative to the graph's directory that names a
    /// `want`; or why it cannot be used.
    pub fn resolve(&self, rel: &str, want: Want) -> Result<String, String> {
        let normal = normal_relative(rel)?;
        if let Some(tree) = &self.tree
            && !tree.has(&normal, want)
        {
            let what = match want {
                Want::File => "file",
                Want::Dir => "directory",
            };
            return Err(format!("`{}` is not a {what} of the deployed bundle", shown(rel)));
        }
        let dir = self.dir.to_string_lossy();
        let dir = dir.trim_end_matches('/');
        Ok(if normal.is_empty() { format!("{dir}/") } else { format!("{dir}/{normal}") })
    }
}

/// A bundle's files and directories, by their path relative to the graph's directory (the
/// ones outside it cannot be named).
#[derive(Debug, Clone, Default)]
struct Tree {
    files: HashSet<String>,
    links: HashSet<String>,
    dirs: HashSet<String>,
}

impl Tree {
    fn new<'a>(paths: impl IntoIterator<Item = (&'a str, bool)>, entry_dir: &str) -> Tree {
        let mut t = Tree::default();
        t.dirs.insert(String::new());
        let below = format!("{entry_dir}/");
        for (p, link) in paths {
            let Some(p) = (if entry_dir.is_empty() { Some(p) } else { p.strip_prefix(&below) }) else {
                continue;
            };
            t.dirs.extend(p.match_indices('/').map(|(i, _)| p[..i].to_string()));
            if link { &mut t.links } else { &mut t.files }.insert(p.to_string());
        }
        t
    }

    /// A link is taken for either: it stays inside the bundle (checked when it is built).
    fn has(&self, path: &str, want: Want) -> bool {
        self.links.contains(path)
            || match want {
                Want::Dir => self.dirs.contains(path),
                Want::File => self.files.contains(path),
            }
    }
}

/// `p` relative and in normal form (`a/b`, or `` for the directory itself): `.` and empty
/// components dropped. A path that could leave the directory (`..`) is refused, as is a NUL
/// and `~` (which nothing expands).
pub fn normal_relative(p: &str) -> Result<String, String> {
    if p.is_empty() {
        return Err("must not be empty".into());
    }
    if p.contains('\0') {
        return Err("must not contain a NUL byte".into());
    }
    if p.starts_with('/') {
        return Err(format!("`{}` is not a relative path", shown(p)));
    }
    if p.starts_with('~') {
        return Err(format!(
            "`{}`: `~` is not expanded; give a path relative to the graph's directory",
            shown(p)
        ));
    }
    let mut parts = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "`{}` must stay inside the graph's directory: `..` is not allowed",
                    shown(p)
                ));
            }
            name => parts.push(name),
        }
    }
    Ok(parts.join("/"))
}

/// A path as quoted in error messages: bounded.
fn shown(p: &str) -> String {
    crate::text::head(p, 120).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_normalised_and_never_leave_the_directory() {
        assert_eq!(normal_relative("files/app.conf").unwrap(), "files/app.conf");
        assert_eq!(normal_relative("./files//./app.conf").unwrap(), "files/app.conf");
        assert_eq!(normal_relative(".").unwrap(), "");
        assert_eq!(normal_relative("files/").unwrap(), "files");
        for bad in ["../x", "files/../../x", "a/..", "..", "", "~/x", "/abs", "a\0b"] {
            assert!(normal_relative(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normal_relative("a/../b").unwrap_err().contains("`..` is not allowed"));
    }

    #[test]
    fn a_plain_directory_resolves_anything_relative_below_it() {
        let b = Base::dir("/srv/app/");
        assert_eq!(b.resolve("files/app.conf", Want::File).unwrap(), "/srv/app/files/app.conf");
        assert_eq!(b.resolve(".", Want::Dir).unwrap(), "/srv/app/");
        assert!(b.resolve("../etc/passwd", Want::File).is_err());
    }

    #[test]
    fn in_a_bundle_paths_are_relative_to_the_entry_and_must_be_in_it() {
        let files = [
            ("deploy/graph.yaml", false),
            ("deploy/files/app.conf", false),
            ("deploy/link", true),
            ("top.conf", false),
        ];
        let b = Base::bundle(Path::new("/p/deploys/abc"), "deploy/graph.yaml", files);
        assert_eq!(b.resolve("files/app.conf", Want::File).unwrap(), "/p/deploys/abc/deploy/files/app.conf");
        assert_eq!(b.resolve("files", Want::Dir).unwrap(), "/p/deploys/abc/deploy/files");
        assert_eq!(b.resolve(".", Want::Dir).unwrap(), "/p/deploys/abc/deploy/");
        assert!(b.resolve("link", Want::Dir).is_ok() && b.resolve("link", Want::File).is_ok());
        let e = b.resolve("files/missing.conf", Want::File).unwrap_err();
        assert_eq!(e, "`files/missing.conf` is not a file of the deployed bundle");
        // A directory is not a file, a file is not a directory, and the bundle's root is
        // out of reach from `deploy/`.
        assert!(b.resolve("files", Want::File).is_err());
        assert!(b.resolve("files/app.conf/", Want::Dir).is_err());
        assert!(b.resolve("top.conf", Want::File).is_err());
        let root =
            Base::bundle(Path::new("/b"), "graph.yaml", [("graph.yaml", false), ("files/app.conf", false)]);
        assert_eq!(root.resolve("files/app.conf", Want::File).unwrap(), "/b/files/app.conf");
    }
}
