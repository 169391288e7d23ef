//! Bundles: what a deploy publishes. Pure: no I/O, so every rule is unit-tested.
//!
//! A bundle is a manifest of `(path, mode, size, sha256)` entries sorted by path, plus the
//! frontend and entry path to run. Its ID is the sha256 of the manifest's canonical JSON, so
//! the same files, modes and entry always give the same ID, whatever built them (a git tree
//! or a directory). Blobs are stored by their sha256, once, in chunks no larger than
//! [`CHUNK_SIZE`] (etcd refuses requests above 1.5 MiB by default).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest blob chunk stored under one key.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Largest file a bundle may hold. What etcd hands an agent is checked against these bounds
/// before anything is allocated for it.
pub const MAX_FILE_SIZE: u64 = 256 << 20;
/// Largest sum of the file sizes of a bundle.
pub const MAX_BUNDLE_SIZE: u64 = 1 << 30;
/// Most files a bundle may hold.
pub const MAX_FILES: usize = 100_000;
/// Largest manifest, in chunks of [`CHUNK_SIZE`].
pub const MAX_MANIFEST_CHUNKS: usize = 32;
/// Longest symlink target (`PATH_MAX` less its NUL).
pub const MAX_LINK_TARGET: u64 = 4095;

/// Git's file modes, which are the only ones a bundle carries.
pub const MODE_FILE: u32 = 0o100644;
pub const MODE_EXECUTABLE: u32 = 0o100755;
pub const MODE_SYMLINK: u32 = 0o120000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative, `/`-separated, without `.` or `..` components.
    pub path: String,
    pub mode: u32,
    pub size: u64,
    /// Hex sha256 of the content (of the link target, for a symlink).
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `yaml` or `lang`.
    pub frontend: String,
    /// The file to run, relative to the bundle root: a graph file, an mcl program's `.mcl`
    /// file, or its module's `metadata.yaml` (standing for the module's directory).
    pub entry: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("`{path}`: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("`{0}` is in the bundle twice")]
    Duplicate(String),
    #[error("`{path}` has mode {mode:o}; a bundle holds files (100644, 100755) and symlinks (120000)")]
    BadMode { path: String, mode: u32 },
    #[error("symlink `{path}` points to `{target}`, outside the bundle")]
    EscapingSymlink { path: String, target: String },
    #[error("the entry `{0}` is not a file in the bundle")]
    MissingEntry(String),
    #[error("`{path}`: content does not match its sha256 (want {want}, got {got})")]
    Corrupt { path: String, want: String, got: String },
    #[error("`{path}`: size {got} does not match the manifest's {want}")]
    WrongSize { path: String, want: u64, got: u64 },
    #[error("the manifest's sha256 is {got}, not the bundle ID {want}")]
    WrongId { want: String, got: String },
    #[error("`{path}`: {why}")]
    TooBig { path: String, why: String },
    #[error("`{path}`: its sha256 `{sha256}` is not 64 lowercase hex digits")]
    BadHash { path: String, sha256: String },
    #[error("`{path}` is below `{link}`, which is a symlink or a file of the bundle")]
    BelowNonDirectory { path: String, link: String },
    #[error("symlink `{path}` points through `{via}`, another symlink of the bundle")]
    ThroughSymlink { path: String, via: String },
    #[error("the bundle has {0} files; at most {MAX_FILES} are allowed")]
    TooManyFiles(usize),
}

/// Whether `s` is a sha256 as this crate writes them: 64 lowercase hex digits (it names
/// etcd keys and directories, so nothing else is accepted).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How many chunks a blob of `size` bytes is stored in.
pub fn chunk_count(size: u64) -> usize {
    (size.div_ceil(CHUNK_SIZE as u64) as usize).max(1)
}

/// The length chunk `n` of a blob of `size` bytes must have.
pub fn chunk_len(size: u64, n: usize) -> usize {
    let start = n as u64 * CHUNK_SIZE as u64;
    size.saturating_sub(start).min(CHUNK_SIZE as u64) as usize
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A bundle path must be relative and normal: no leading `/`, no `.`/`..`/empty parts.
pub fn validate_path(path: &str) -> Result<(), BundleError> {
    let bad = |why| Err(BundleError::BadPath { path: path.to_string(), why });
    if path.is_empty() {
        return bad("empty path");
    }
    if path.starts_with('/') {
        return bad("absolute path");
    }
    if path.contains('\0') || path.contains('\\') {
        return bad("NUL or backslash in path");
    }
    for part in path.split('/') {
        match part {
            "" => return bad("empty path component"),
            "." | ".." => return bad("`.` or `..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Whether a symlink at `link` (a bundle path) pointing to `target` stays inside the bundle.
pub fn symlink_stays_inside(link: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') {
        return false;
    }
    let mut at: Vec<&str> = link.split('/').collect();
    at.pop();
    for c in Path::new(target).components() {
        match c {
            Component::Normal(p) => at.push(p.to_str().unwrap_or("\0")),
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

impl Manifest {
    /// Check and normalise: entries sorted by path, every path valid and unique, only file
    /// and symlink modes, symlinks staying inside, and the entry present (a file, or for a
    /// directory entry, some file below it).
    pub fn new(frontend: &str, entry: &str, files: Vec<FileEntry>) -> Result<Manifest, BundleError> {
        let mut m = Manifest { frontend: frontend.to_string(), entry: entry.to_string(), files };
        m.files.sort_by(|a, b| a.path.cmp(&b.path));
        m.check()?;
        Ok(m)
    }

    /// The rules of [`Manifest::new`], for a manifest read back from the cluster: also that
    /// sizes stay within the bounds above and that no path is below another entry (a file or
    /// a symlink), so unpacking never goes through a link.
    pub fn check(&self) -> Result<(), BundleError> {
        validate_path(&self.entry)?;
        if self.files.len() > MAX_FILES {
            return Err(BundleError::TooManyFiles(self.files.len()));
        }
        let mut seen = HashSet::new();
        let mut total: u64 = 0;
        for f in &self.files {
            validate_path(&f.path)?;
            if !seen.insert(f.path.as_str()) {
                return Err(BundleError::Duplicate(f.path.clone()));
            }
            if ![MODE_FILE, MODE_EXECUTABLE, MODE_SYMLINK].contains(&f.mode) {
                return Err(BundleError::BadMode { path: f.path.clone(), mode: f.mode });
            }
            if !is_sha256_hex(&f.sha256) {
                return Err(BundleError::BadHash { path: f.path.clone(), sha256: f.sha256.clone() });
            }
            check_size(f)?;
            total = total.saturating_add(f.size);
            if total > MAX_BUNDLE_SIZE {
                return Err(BundleError::TooBig {
                    path: f.path.clone(),
                    why: format!("the bundle's files add up to more than {MAX_BUNDLE_SIZE} bytes"),
                });
            }
        }
        for f in &self.files {
            let mut at = f.path.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                if seen.contains(parent) {
                    return Err(BundleError::BelowNonDirectory {
                        path: f.path.clone(),
                        link: parent.to_string(),
                    });
                }
                at = parent;
            }
        }
        if self.files.windows(2).any(|w| w[0].path >= w[1].path) {
            return Err(BundleError::BadPath {
                path: self.files[0].path.clone(),
                why: "manifest not sorted",
            });
        }
        let dir = format!("{}/", self.entry.trim_end_matches('/'));
        let entry_found = self.files.iter().any(|f| f.path == self.entry || f.path.starts_with(&dir));
        if !entry_found {
            return Err(BundleError::MissingEntry(self.entry.clone()));
        }
        Ok(())
    }

    /// The bytes the bundle ID is the hash of: compact JSON, fields in declaration order,
    /// files sorted by path.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    pub fn id(&self) -> String {
        sha256_hex(&self.canonical_json())
    }

    /// Verify one file's content against its entry (and, for a symlink, that its target
    /// stays inside the bundle).
    pub fn verify_file(&self, f: &FileEntry, content: &[u8]) -> Result<(), BundleError> {
        if content.len() as u64 != f.size {
            return Err(BundleError::WrongSize {
                path: f.path.clone(),
                want: f.size,
                got: content.len() as u64,
            });
        }
        let got = sha256_hex(content);
        if got != f.sha256 {
            return Err(BundleError::Corrupt { path: f.path.clone(), want: f.sha256.clone(), got });
        }
        if f.mode == MODE_SYMLINK {
            let target = String::from_utf8_lossy(content);
            if !symlink_stays_inside(&f.path, &target) {
                return Err(BundleError::EscapingSymlink {
                    path: f.path.clone(),
                    target: target.into_owned(),
                });
            }
            if let Some(via) = self.symlink_through(&f.path, &target) {
                return Err(BundleError::ThroughSymlink { path: f.path.clone(), via });
            }
        }
        Ok(())
    }

    /// The symlink entry a link's target goes through before its last component, if any:
    /// each link is checked to stay inside on its own, so a chain (`a -> b/..` with
    /// `b -> ..`) could otherwise lead out of the bundle.
    fn symlink_through(&self, link: &str, target: &str) -> Option<String> {
        let mut at: Vec<&str> = link.split('/').collect();
        at.pop();
        let parts: Vec<Component> = Path::new(target).components().collect();
        for (i, c) in parts.iter().enumerate() {
            match c {
                Component::Normal(p) => at.push(p.to_str().unwrap_or("\0")),
                Component::ParentDir => {
                    at.pop();
                }
                _ => {}
            }
            let later = parts[i + 1..].iter().any(|c| !matches!(c, Component::CurDir));
            let here = at.join("/");
            if later && self.files.iter().any(|e| e.mode == MODE_SYMLINK && e.path == here) {
                return Some(here);
            }
        }
        None
    }

    /// Verify a manifest read back against the bundle ID it was published under.
    pub fn verify_id(&self, id: &str) -> Result<(), BundleError> {
        let got = self.id();
        if got != id {
            return Err(BundleError::WrongId { want: id.to_string(), got });
        }
        Ok(())
    }

    /// Where a file of the bundle goes under `root`.
    pub fn local_path(root: &Path, f: &FileEntry) -> PathBuf {
        f.path.split('/').fold(root.to_path_buf(), |p, part| p.join(part))
    }
}

/// A file's size within the bounds: [`MAX_FILE_SIZE`], and [`MAX_LINK_TARGET`] for a link.
fn check_size(f: &FileEntry) -> Result<(), BundleError> {
    let max = if f.mode == MODE_SYMLINK { MAX_LINK_TARGET } else { MAX_FILE_SIZE };
    if f.size > max {
        return Err(BundleError::TooBig {
            path: f.path.clone(),
            why: format!("size {} is above the limit of {max} bytes", f.size),
        });
    }
    Ok(())
}

/// Split a blob into the chunks stored under separate keys.
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() { vec![data] } else { data.chunks(CHUNK_SIZE).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, content: &[u8]) -> FileEntry {
        FileEntry {
            path: path.into(),
            mode: MODE_FILE,
            size: content.len() as u64,
            sha256: sha256_hex(content),
        }
    }

    #[test]
    fn the_id_depends_on_content_not_on_order() {
        let a = Manifest::new("yaml", "g.yaml", vec![entry("g.yaml", b"g"), entry("a/b", b"x")]).unwrap();
        let b = Manifest::new("yaml", "g.yaml", vec![entry("a/b", b"x"), entry("g.yaml", b"g")]).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.files[0].path, "a/b");
        let c = Manifest::new("yaml", "g.yaml", vec![entry("a/b", b"y"), entry("g.yaml", b"g")]).unwrap();
        assert_ne!(a.id(), c.id());
        let mut d = a.clone();
        d.files[0].mode = MODE_EXECUTABLE;
        assert_ne!(a.id(), d.id());
        assert_eq!(a.id().len(), 64);
    }

    #[test]
    fn paths_must_be_relative_and_normal() {
        for bad in ["", "/etc/passwd", "a/../b", "../a", "./a", "a//b", "a/", "a\\b"] {
            assert!(validate_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b.yaml", ".hidden", "a..b/c"] {
            assert!(validate_path(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn manifests_refuse_duplicates_odd_modes_and_a_missing_entry() {
        let e = Manifest::new("yaml", "g.yaml", vec![entry("g.yaml", b"1"), entry("g.yaml", b"2")]);
        assert_eq!(e.unwrap_err(), BundleError::Duplicate("g.yaml".into()));
        let mut dev = entry("g.yaml", b"1");
        dev.mode = 0o040000;
        assert!(matches!(Manifest::new("yaml", "g.yaml", vec![dev]), Err(BundleError::BadMode { .. })));
        let e = Manifest::new("yaml", "main.yaml", vec![entry("g.yaml", b"1")]);
        assert_eq!(e.unwrap_err(), BundleError::MissingEntry("main.yaml".into()));
        assert!(Manifest::new("lang", "app", vec![entry("app/main.mcl", b"")]).is_ok());
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(symlink_stays_inside("a/link", "b"));
        assert!(symlink_stays_inside("a/link", "../c"));
        assert!(!symlink_stays_inside("a/link", "../../c"));
        assert!(!symlink_stays_inside("link", "/etc/passwd"));
        assert!(!symlink_stays_inside("link", ".."));
        assert!(symlink_stays_inside("link", "."));
    }

    #[test]
    fn verification_catches_tampering() {
        let m = Manifest::new("yaml", "g.yaml", vec![entry("g.yaml", b"graph: g\n")]).unwrap();
        let f = &m.files[0];
        assert!(m.verify_file(f, b"graph: g\n").is_ok());
        assert!(matches!(m.verify_file(f, b"graph: h\n"), Err(BundleError::Corrupt { .. })));
        assert!(matches!(m.verify_file(f, b"graph: gg\n"), Err(BundleError::WrongSize { .. })));
        assert!(m.verify_id(&m.id()).is_ok());
        let mut t = m.clone();
        t.entry = "x".into();
        assert!(t.verify_id(&m.id()).is_err());
        let link = FileEntry { mode: MODE_SYMLINK, ..entry("l", b"/etc/shadow") };
        assert!(matches!(m.verify_file(&link, b"/etc/shadow"), Err(BundleError::EscapingSymlink { .. })));
    }

    #[test]
    fn sizes_and_hashes_are_bounded_before_anything_is_fetched() {
        let huge = |size| FileEntry { size, ..entry("g.yaml", b"x") };
        for size in [MAX_FILE_SIZE + 1, 1 << 40, u64::MAX] {
            let m = Manifest { frontend: "yaml".into(), entry: "g.yaml".into(), files: vec![huge(size)] };
            assert!(matches!(m.check(), Err(BundleError::TooBig { .. })), "size {size} accepted");
        }
        // Many files each within the bound still add up past the bundle's.
        let files: Vec<FileEntry> =
            (0..5).map(|i| FileEntry { size: MAX_FILE_SIZE, ..entry(&format!("f{i}"), b"x") }).collect();
        let m = Manifest { frontend: "yaml".into(), entry: "f0".into(), files };
        assert!(matches!(m.check(), Err(BundleError::TooBig { .. })));
        let long_link = FileEntry { mode: MODE_SYMLINK, size: MAX_LINK_TARGET + 1, ..entry("l", b"x") };
        let m = Manifest {
            frontend: "yaml".into(),
            entry: "g.yaml".into(),
            files: vec![entry("g.yaml", b""), long_link],
        };
        assert!(matches!(m.check(), Err(BundleError::TooBig { .. })));
        let bad_hash = FileEntry { sha256: "../../deploy".into(), ..entry("g.yaml", b"x") };
        let m = Manifest { frontend: "yaml".into(), entry: "g.yaml".into(), files: vec![bad_hash] };
        assert!(matches!(m.check(), Err(BundleError::BadHash { .. })));
        assert!(is_sha256_hex(&sha256_hex(b"")));
        assert!(!is_sha256_hex(&sha256_hex(b"").to_uppercase()));
    }

    #[test]
    fn chunk_counts_and_lengths_follow_the_size() {
        assert_eq!(chunk_count(0), 1);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64 + 1), 2);
        assert_eq!(chunk_len(0, 0), 0);
        assert_eq!(chunk_len(CHUNK_SIZE as u64 + 1, 0), CHUNK_SIZE);
        assert_eq!(chunk_len(CHUNK_SIZE as u64 + 1, 1), 1);
        assert_eq!(chunk_count(MAX_FILE_SIZE), 256);
    }

    #[test]
    fn nothing_may_be_below_a_symlink_or_a_file() {
        let link = |p: &str| FileEntry { mode: MODE_SYMLINK, ..entry(p, b".") };
        let e = Manifest::new("yaml", "g.yaml", vec![entry("g.yaml", b"g"), link("x"), entry("x/y/f", b"f")]);
        assert_eq!(e.unwrap_err(), BundleError::BelowNonDirectory { path: "x/y/f".into(), link: "x".into() });
        let e = Manifest::new("yaml", "g.yaml", vec![entry("g.yaml", b"g"), entry("g.yaml/f", b"f")]);
        assert!(matches!(e, Err(BundleError::BelowNonDirectory { .. })));
        assert!(
            Manifest::new("yaml", "g.yaml", vec![entry("g.yaml", b"g"), link("xy"), entry("x/f", b"f")])
                .is_ok()
        );
    }

    #[test]
    fn a_symlink_may_not_point_through_another() {
        let link = |p: &str, t: &[u8]| FileEntry { mode: MODE_SYMLINK, ..entry(p, t) };
        let files = vec![entry("g.yaml", b"g"), link("d/x", b".."), link("l", b"d/x/..")];
        let m = Manifest::new("yaml", "g.yaml", files).unwrap();
        let l = m.files.iter().find(|f| f.path == "l").unwrap();
        assert_eq!(
            m.verify_file(l, b"d/x/.."),
            Err(BundleError::ThroughSymlink { path: "l".into(), via: "d/x".into() })
        );
        // Pointing at a link (as the last component) is fine: that link is checked itself.
        let files = vec![entry("g.yaml", b"g"), link("d/x", b".."), link("l", b"d/x")];
        let m = Manifest::new("yaml", "g.yaml", files).unwrap();
        let l = m.files.iter().find(|f| f.path == "l").unwrap();
        assert!(m.verify_file(l, b"d/x").is_ok());
    }

    #[test]
    fn blobs_are_chunked_below_the_request_limit() {
        let big = vec![7u8; CHUNK_SIZE * 2 + 5];
        let c = chunks(&big);
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|c| c.len() <= CHUNK_SIZE));
        assert_eq!(chunks(b"").len(), 1);
    }
}
