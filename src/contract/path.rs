//! Absolute paths in normal form: the lexical rules every layer applies to a path param
//! (no I/O, no symlink resolved).

use std::path::PathBuf;

use super::written::{ParseParam, Written};

/// Longest file name the kernel accepts (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest path the kernel accepts (`PATH_MAX`, without its NUL).
pub const PATH_MAX: usize = 4095;

/// Why a path param is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("must be an absolute path without `..`")]
    NotAbsolute,
    #[error("must not contain a NUL byte")]
    Nul,
    #[error("must be an absolute path without `..`")]
    DotDot,
    #[error("has a component longer than {NAME_MAX} bytes")]
    NameTooLong,
    #[error("is longer than {PATH_MAX} bytes")]
    TooLong,
}

/// Lexical normal form of an absolute path: `.` and empty components (`//`) dropped, a
/// trailing `/` kept as the mark of a directory (`/a/.` is the directory `/a/`). Pure: no
/// symlink is resolved, which is why `..` is refused rather than folded.
pub fn normalize_path(p: &str) -> Result<String, PathError> {
    let Some(rest) = p.strip_prefix('/') else { return Err(PathError::NotAbsolute) };
    if p.contains('\0') {
        return Err(PathError::Nul);
    }
    if p.len() > PATH_MAX {
        return Err(PathError::TooLong);
    }
    let mut out = String::with_capacity(p.len());
    let mut dir = false;
    for part in rest.split('/') {
        dir = matches!(part, "" | ".");
        match part {
            "" | "." => {}
            ".." => return Err(PathError::DotDot),
            name if name.len() > NAME_MAX => return Err(PathError::NameTooLong),
            name => {
                out.push('/');
                out.push_str(name);
            }
        }
    }
    if out.is_empty() || dir {
        out.push('/');
    }
    Ok(out)
}

/// An absolute path in normal form: what [`normalize_path`] gives, as a type. A trailing `/`
/// makes it a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsPath {
    normal: String,
}

impl AbsPath {
    pub fn parse(p: &str) -> Result<AbsPath, PathError> {
        normalize_path(p).map(|normal| AbsPath { normal })
    }
    /// The normal form, with its trailing `/` for a directory.
    pub fn as_str(&self) -> &str {
        &self.normal
    }
    pub fn is_dir(&self) -> bool {
        self.normal.ends_with('/')
    }
    pub fn is_root(&self) -> bool {
        self.normal == "/"
    }
    /// The path without its directory mark (`/` stays `/`).
    pub fn target(&self) -> PathBuf {
        PathBuf::from(if self.normal.len() > 1 { self.normal.trim_end_matches('/') } else { &self.normal })
    }
}

impl ParseParam for AbsPath {
    type Error = PathError;
    fn parse_param(text: &str) -> Result<AbsPath, PathError> {
        AbsPath::parse(text)
    }
}

/// A path param (a file's `path`, `source`): parsed once, kept as written.
pub type PathParam = Written<AbsPath>;

impl Written<AbsPath> {
    /// The path without its directory mark; as written if it does not parse (which
    /// validation refuses).
    pub fn target(&self) -> PathBuf {
        self.parsed().map_or_else(|_| PathBuf::from(self.written()), AbsPath::target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_lexically() {
        let n = |p: &str| normalize_path(p);
        assert_eq!(n("/"), Ok("/".into()));
        assert_eq!(n("/."), Ok("/".into()));
        assert_eq!(n("/./"), Ok("/".into()));
        assert_eq!(n("//"), Ok("/".into()));
        assert_eq!(n("/a//b/./c"), Ok("/a/b/c".into()));
        assert_eq!(n("/a/b/"), Ok("/a/b/".into()));
        assert_eq!(n("/a/b/."), Ok("/a/b/".into()));
        assert_eq!(n("/a/b//"), Ok("/a/b/".into()));
        assert_eq!(n("/a/.b"), Ok("/a/.b".into()));
        assert_eq!(n("/a/..b/"), Ok("/a/..b/".into()));
        assert_eq!(n(""), Err(PathError::NotAbsolute));
        assert_eq!(n("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(n("~/a"), Err(PathError::NotAbsolute));
        assert_eq!(n("/a/../b"), Err(PathError::DotDot));
        assert_eq!(n("/a/.."), Err(PathError::DotDot));
        assert_eq!(n("/a\0b"), Err(PathError::Nul));
        assert_eq!(n(&format!("/{}", "x".repeat(NAME_MAX))), Ok(format!("/{}", "x".repeat(NAME_MAX))));
        assert_eq!(n(&format!("/{}", "x".repeat(NAME_MAX + 1))), Err(PathError::NameTooLong));
        assert_eq!(n(&"/x".repeat(PATH_MAX)), Err(PathError::TooLong));
    }
}

#[cfg(test)]
mod param_tests {
    use super::*;

    #[test]
    fn a_path_param_is_parsed_once_and_written_back_as_it_was() {
        let p = PathParam::from("/a//b/./");
        assert_eq!(p.parsed().map(AbsPath::as_str), Ok("/a/b/"));
        assert!(p.parsed().unwrap().is_dir());
        assert_eq!(p.target(), PathBuf::from("/a/b"));
        assert_eq!(serde_json::to_value(&p).unwrap(), serde_json::json!("/a//b/./"));
        let back: PathParam = serde_json::from_value(serde_json::json!("/a//b/./")).unwrap();
        assert_eq!(back, p);
        let bad = PathParam::from("rel/x");
        assert_eq!(bad.parsed(), Err(&PathError::NotAbsolute));
        assert_eq!(bad.target(), PathBuf::from("rel/x"));
        assert!(AbsPath::parse("/.").unwrap().is_root());
        assert_eq!(AbsPath::parse("/").unwrap().target(), PathBuf::from("/"));
    }
}
