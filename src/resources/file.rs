//! `file`: a file or directory (path ending in `/`), its content or source, mode and owner.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    ApplyCtx, AutoEdgeInfo, Change, Changes, Detail, ResResult, Resource, ResourceError, ValidationError,
    WatchCtx,
};
use crate::contract::Meta;
use crate::contract::limits::DIFF_INPUT_MAX;
use crate::contract::path::{AbsPath, NAME_MAX, PATH_MAX, PathError, PathParam, normalize_path};
use crate::contract::written::{ParseParam, Written};
use crate::os::atomic::{clean_stale_temps_once, stopping, sync_dir, write_atomic_from};
use crate::os::fswatch::Scope;
use crate::text::diff::{Side, content_diff};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    #[default]
    Exists,
    Absent,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// Absolute path; a trailing `/` makes it a directory. Defaults to `name`.
    #[serde(default)]
    pub path: Option<PathParam>,
    #[serde(default)]
    pub content: Option<String>,
    /// Copy from this file (or directory, with `recurse`).
    #[serde(default)]
    pub source: Option<PathParam>,
    #[serde(default)]
    pub state: FileState,
    /// Octal permission bits, written as a string: "0644".
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Directories: copy `source` recursively and watch the whole tree.
    #[serde(default)]
    pub recurse: bool,
    /// Directories: remove entries that are neither in `source` nor managed elsewhere.
    #[serde(default)]
    pub purge: bool,
    /// Replace a file by a directory (or the reverse) and remove non-empty directories.
    #[serde(default)]
    pub force: bool,
    /// Paths managed by other resources inside this directory (purge keeps them). Set by
    /// the graph builder, not by users.
    #[serde(skip)]
    pub keep: Vec<PathBuf>,
    /// Replaces the directory part of the path (absolute, ending in `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirname: Option<String>,
    /// Replaces the last component of the path (a `/` at its end makes a directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basename: Option<String>,
    /// The content is these files, and the files directly in these directories (a path
    /// ending in `/`, its entries in name order), one after the other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fragments: Vec<String>,
    /// The path is a symbolic link to `source` (absolute or relative, need not exist).
    #[serde(default, skip_serializing_if = "is_false")]
    pub symlink: bool,
    /// Upstream's SELinux context, refused with the reason when set (see [`SELINUX_REFUSED`]).
    #[serde(default, skip_serializing)]
    pub selinux: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why `selinux` is refused.
const SELINUX_REFUSED: &str = "is not supported by this agent: writing the `security.selinux` label means \
    something only where the kernel enforces SELinux, which this agent does not check for; \
    label the file with `restorecon` or `chcon` in an `exec` instead";

/// The most bytes a content built from `fragments` may have: it is built in memory.
pub const FRAGMENTS_MAX: u64 = 16 * 1024 * 1024;

/// The most entries read from one fragment directory.
pub const FRAGMENT_DIR_ENTRIES_MAX: usize = 10_000;

/// The most bytes of a file's content recorded to undo it later (`meta.reverse`).
pub const REVERSAL_CONTENT_MAX: u64 = 1024 * 1024;

/// The most paths in `fragments`.
pub const FRAGMENTS_COUNT_MAX: usize = 1000;

/// Permission bits, from an octal mode like "0644".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeBits(pub u32);

impl ParseParam for ModeBits {
    type Error = String;
    fn parse_param(text: &str) -> Result<ModeBits, String> {
        parse_mode(text).map(ModeBits)
    }
}

/// A file's `mode` param: parsed once, kept as written.
pub type Mode = Written<ModeBits>;

impl Written<ModeBits> {
    pub fn bits(&self) -> Result<u32, &str> {
        self.parsed().map(|m| m.0).map_err(String::as_str)
    }
}

pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(format!("`{s}` is not an octal mode like \"0644\""));
    }
    u32::from_str_radix(digits, 8).map_err(|e| e.to_string())
}

/// A path's directory part (up to and with its last `/` before the final component) and
/// its final component (with the `/` of a directory): `/a/b/` is `/a/` and `b/`.
fn split_dir_base(p: &str) -> (&str, &str) {
    let body = if p.len() > 1 { p.strip_suffix('/').unwrap_or(p) } else { p };
    match body.rfind('/') {
        Some(i) => p.split_at(i + 1),
        None => ("", p),
    }
}

/// A path as quoted in error messages: bounded, NUL shown as `\0`.
fn shown(p: &str) -> String {
    let mut s: String = p.chars().take(120).collect::<String>().replace('\0', "\\0");
    if p.chars().nth(120).is_some() {
        s.push('…');
    }
    s
}

impl File {
    /// `path`, or else the name, as written.
    pub fn path_str(&self) -> &str {
        self.path.as_ref().map_or(&self.name, PathParam::written)
    }
    /// `dirname` and `basename` when set and not empty (an empty one is unset, as upstream
    /// reads it).
    fn overrides(&self) -> (Option<&str>, Option<&str>) {
        fn set(o: &Option<String>) -> Option<&str> {
            o.as_deref().filter(|s| !s.is_empty())
        }
        (set(&self.dirname), set(&self.basename))
    }
    /// The path managed, as written: `path` or the name, with `dirname` and `basename`
    /// replacing its parts.
    pub fn full_path(&self) -> Cow<'_, str> {
        let p = self.path_str();
        match self.overrides() {
            (None, None) => Cow::Borrowed(p),
            (dir, base) => {
                let (d, b) = split_dir_base(p);
                Cow::Owned(format!("{}{}", dir.unwrap_or(d), base.unwrap_or(b)))
            }
        }
    }
    /// `path` as parsed when it was read, or else the name (a resource's identity, not a
    /// param) parsed now; with `dirname` or `basename`, the whole path parsed now.
    fn abs_path(&self) -> Result<Cow<'_, AbsPath>, PathError> {
        match (&self.path, self.overrides()) {
            (_, (Some(_), _) | (_, Some(_))) => AbsPath::parse(&self.full_path()).map(Cow::Owned),
            (Some(p), _) => p.parsed().map(Cow::Borrowed).map_err(Clone::clone),
            (None, _) => AbsPath::parse(&self.name).map(Cow::Owned),
        }
    }
    pub fn is_dir(&self) -> bool {
        self.abs_path().is_ok_and(|p| p.is_dir())
    }
    /// The path without its directory mark; as written if it does not parse, which
    /// validation refuses.
    pub fn target(&self) -> PathBuf {
        self.abs_path().map_or_else(|_| PathBuf::from(self.path_str()), |p| p.target())
    }
    /// The `source` without its directory mark.
    fn source_path(&self) -> Option<PathBuf> {
        self.source.as_ref().map(PathParam::target)
    }
    fn mode_bits(&self) -> Option<u32> {
        self.mode.as_ref().and_then(|m| m.bits().ok())
    }

    fn ids(&self) -> ResResult<(Option<u32>, Option<u32>)> {
        let uid = match &self.owner {
            None => None,
            Some(o) => Some(match o.parse::<u32>() {
                Ok(n) => n,
                Err(_) => nix::unistd::User::from_name(o)
                    .map_err(|e| ResourceError::msg(format!("looking up user `{o}`: {e}")))?
                    .ok_or_else(|| ResourceError::msg(format!("no such user `{o}`")))?
                    .uid
                    .as_raw(),
            }),
        };
        let gid = match &self.group {
            None => None,
            Some(g) => Some(match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => nix::unistd::Group::from_name(g)
                    .map_err(|e| ResourceError::msg(format!("looking up group `{g}`: {e}")))?
                    .ok_or_else(|| ResourceError::msg(format!("no such group `{g}`")))?
                    .gid
                    .as_raw(),
            }),
        };
        Ok((uid, gid))
    }

    /// Whether this file's content must not be shown: `meta.sensitive`, or a mode (desired,
    /// or of the file there now) without the world-read bit.
    fn is_sensitive(&self, existing: Option<&fs::Metadata>) -> bool {
        let private = |m: u32| m & 0o004 == 0;
        self.meta.sensitive
            || self.mode_bits().is_some_and(private)
            || existing.is_some_and(|md| md.is_file() && private(md.mode()))
    }

    /// `dirname`: absolute, a directory; `basename`: one path component.
    fn validate_overrides(&self) -> Result<(), ValidationError> {
        let (dir, base) = self.overrides();
        if let Some(d) = dir
            && (!d.starts_with('/') || !d.ends_with('/') || d.contains('\0'))
        {
            return Err(ValidationError::new(
                "dirname",
                format!("`{}` must be an absolute directory: start and end with `/`", shown(d)),
            ));
        }
        if let Some(b) = base {
            let name = b.strip_suffix('/').unwrap_or(b);
            if name.is_empty() || name.contains('/') || name.contains('\0') || matches!(name, "." | "..") {
                return Err(ValidationError::new(
                    "basename",
                    format!("`{}` must be one file name (a `/` at its end for a directory)", shown(b)),
                ));
            }
        }
        Ok(())
    }

    /// A symlink: a file path, a `source` to point to, nothing a link cannot have.
    fn validate_symlink(&self) -> Result<(), ValidationError> {
        if self.is_dir() {
            return Err(ValidationError::new("symlink", "the path of a symlink must not end in `/`"));
        }
        if self.content.is_some() || !self.fragments.is_empty() || self.recurse || self.purge {
            return Err(ValidationError::new(
                "symlink",
                "cannot be set with `content`, `fragments`, `recurse` or `purge`",
            ));
        }
        if self.mode.is_some() {
            return Err(ValidationError::new(
                "mode",
                "a symlink has no mode of its own (Linux shows 0777 for every link); leave it unset",
            ));
        }
        match self.source.as_ref().map(|s| s.written()) {
            None if self.state == FileState::Exists => Err(ValidationError::new(
                "source",
                "a symlink (`symlink: true`) needs `source`, the path it points to",
            )),
            Some(t) if t.is_empty() || t.contains('\0') || t.len() > PATH_MAX => Err(ValidationError::new(
                "source",
                format!("the target of a symlink must be a path of 1 to {PATH_MAX} bytes without NUL"),
            )),
            _ => Ok(()),
        }
    }

    /// Each fragment absolute, none holding the file itself, and a file to hold them.
    fn validate_fragments(&self, path: &AbsPath) -> Result<(), ValidationError> {
        if self.fragments.is_empty() {
            return Ok(());
        }
        if self.fragments.len() > FRAGMENTS_COUNT_MAX {
            return Err(ValidationError::new("fragments", format!("at most {FRAGMENTS_COUNT_MAX} are allowed")));
        }
        if path.is_dir() || self.state == FileState::Absent {
            return Err(ValidationError::new(
                "fragments",
                "make a file's content: the path must not end in `/`, and `state` must not be absent",
            ));
        }
        for f in &self.fragments {
            let frag = AbsPath::parse(f)
                .map_err(|e| ValidationError::new("fragments", format!("`{}` {e}", shown(f))))?;
            let inside = if frag.is_dir() {
                path.as_str().starts_with(frag.as_str())
            } else {
                frag.as_str() == path.as_str()
            };
            if inside {
                return Err(ValidationError::new(
                    "fragments",
                    format!("`{}` holds the file itself, which would be built from its own content", shown(f)),
                ));
            }
        }
        Ok(())
    }

    /// Check and, with `apply`, repair a symlink (`symlink: true`): the path is a link whose
    /// text is exactly `source`; with `state: absent`, no link is there. Anything else at the
    /// path is replaced (or removed) only with `force`.
    fn sync_symlink(&self, apply: bool) -> ResResult<Changes> {
        let path = self.target();
        let io = |what: &str, e: io::Error| ResourceError::io(format!("{what} {}", path.display()), e);
        let existing = match fs::symlink_metadata(&path) {
            Ok(md) => Some(md),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("reading", e)),
        };
        let kind = existing.as_ref().map_or("nothing", describe);
        let is_link = existing.as_ref().is_some_and(|md| md.file_type().is_symlink());
        let mut changes: Changes = Vec::new();
        let target = self.source.as_ref().map(|s| s.written()).filter(|_| self.state == FileState::Exists);
        let Some(target) = target else {
            if let Some(md) = &existing {
                if !is_link && !self.force {
                    return Err(ResourceError::msg(format!(
                        "{} is a {kind}, not a symlink; set `force: true` to remove it",
                        path.display()
                    )));
                }
                if apply {
                    remove_node(&path, md).map_err(|e| io("removing", e))?;
                }
                changes.push(format!("remove {kind}").into());
            }
            return Ok(changes);
        };
        let now = if is_link { Some(fs::read_link(&path).map_err(|e| io("reading link", e))?) } else { None };
        let shown_target = shown(target);
        match (&existing, now) {
            (Some(_), Some(now)) if now.as_os_str().as_bytes() == target.as_bytes() => {}
            (Some(_), Some(now)) => {
                if apply {
                    link_atomic(target, &path).map_err(|e| io("linking", e))?;
                }
                let was = shown(&now.to_string_lossy());
                changes.push(format!("point symlink to {shown_target} (was {was})").into());
            }
            (Some(md), None) => {
                if !self.force {
                    return Err(ResourceError::msg(format!(
                        "{} is a {kind}; set `force: true` to replace it with a symlink",
                        path.display()
                    )));
                }
                if apply {
                    if md.is_dir() {
                        fs::remove_dir_all(&path).map_err(|e| io("removing", e))?;
                    }
                    link_atomic(target, &path).map_err(|e| io("linking", e))?;
                }
                changes.push(format!("replace {kind} with a symlink to {shown_target}").into());
            }
            (None, _) => {
                if let Some(parent) = path.parent().filter(|p| !p.exists()) {
                    if apply {
                        fs::create_dir_all(parent).map_err(|e| io("creating parent of", e))?;
                    }
                    changes.push(format!("create parent directory {}", parent.display()).into());
                }
                if apply {
                    link_atomic(target, &path).map_err(|e| io("linking", e))?;
                }
                changes.push(format!("create symlink to {shown_target}").into());
            }
        }
        self.sync_link_owner(&path, apply, &mut changes)?;
        Ok(changes)
    }

    /// The owner and group of the link itself (`lchown`), never of what it points to.
    fn sync_link_owner(&self, path: &Path, apply: bool, changes: &mut Changes) -> ResResult<()> {
        let (uid, gid) = self.ids()?;
        if uid.is_none() && gid.is_none() {
            return Ok(());
        }
        let md = match fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !apply => return Ok(()),
            Err(e) => return Err(ResourceError::io(format!("reading {}", path.display()), e)),
        };
        let uid_change = uid.filter(|u| *u != md.uid());
        let gid_change = gid.filter(|g| *g != md.gid());
        if (uid_change.is_some() || gid_change.is_some()) && apply {
            std::os::unix::fs::lchown(path, uid_change, gid_change)
                .map_err(|e| ResourceError::io(format!("chown {}", path.display()), e))?;
        }
        if let Some(u) = uid_change {
            changes.push(format!("set owner {} -> {u}", md.uid()).into());
        }
        if let Some(g) = gid_change {
            changes.push(format!("set group {} -> {g}", md.gid()).into());
        }
        Ok(())
    }

    /// What undoes this file (`meta.reverse`), from what is at its path now: nothing there
    /// is undone by removing what this resource makes; a file, a link or a directory is
    /// put back as it is now (a file's content only where this resource may change it).
    fn reversal_of_now(&self) -> ResResult<Option<File>> {
        let path = self.target();
        let io = |what: &str, e: io::Error| ResourceError::io(format!("{what} {} to undo later", path.display()), e);
        let full = self.abs_path().map_or_else(|_| self.full_path().into_owned(), |p| p.as_str().to_string());
        let meta = Meta { sensitive: self.meta.sensitive, ..Meta::default() };
        let base = File { name: self.name.clone(), meta, path: Some(full.into()), ..File::default() };
        let md = match fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let absent = File { state: FileState::Absent, symlink: self.symlink, ..base };
                return Ok((self.state == FileState::Exists).then_some(absent));
            }
            Err(e) => return Err(io("reading", e)),
        };
        let now = File {
            mode: (!md.file_type().is_symlink()).then(|| Mode::from(format!("{:04o}", md.mode() & 0o7777))),
            owner: Some(md.uid().to_string()),
            group: Some(md.gid().to_string()),
            ..base
        };
        let t = md.file_type();
        if t.is_symlink() {
            let text = fs::read_link(&path).map_err(|e| io("reading link", e))?;
            let text = text.to_str().ok_or_else(|| {
                ResourceError::msg(format!("{}: the link's text is not UTF-8 and cannot be recorded", path.display()))
            })?;
            let force = !self.symlink;
            return Ok(Some(File { symlink: true, source: Some(text.into()), force, ..now }));
        }
        if t.is_dir() {
            if self.is_dir() && !self.recurse && !self.purge && self.state == FileState::Exists {
                let mut dir = now;
                dir.path = dir.path.map(|p| format!("{}/", p.written().trim_end_matches('/')).into());
                return Ok(Some(dir));
            }
            return Err(ResourceError::msg(format!(
                "{} is a directory: what it holds cannot be recorded to undo this resource",
                path.display()
            )));
        }
        if !t.is_file() {
            return Err(ResourceError::msg(format!("{} is not a regular file: it cannot be recorded", path.display())));
        }
        let mut content = String::new();
        let file = open_source(&path).map_err(|e| io("reading", e))?;
        file.take(REVERSAL_CONTENT_MAX + 1).read_to_string(&mut content).map_err(|e| io("reading", e))?;
        if content.len() as u64 > REVERSAL_CONTENT_MAX {
            return Err(ResourceError::msg(format!(
                "{} is over {REVERSAL_CONTENT_MAX} bytes: too large to record to undo this resource",
                path.display()
            )));
        }
        let force = self.symlink || self.is_dir();
        Ok(Some(File { content: Some(content), force, ..now }))
    }

    /// Check and, with `apply`, repair; with `detail`, content changes carry a diff.
    fn sync_check_apply(&self, recv_content: Option<&str>, apply: bool, detail: bool) -> ResResult<Changes> {
        if stopping() {
            return Err(ResourceError::msg("the agent is stopping"));
        }
        if self.symlink {
            return self.sync_symlink(apply);
        }
        let path = self.target();
        let mut changes = Vec::new();
        let io = |what: &str, e: io::Error| ResourceError::io(format!("{what} {}", path.display()), e);
        let existing = match fs::symlink_metadata(&path) {
            Ok(md) => Some(md),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("reading", e)),
        };

        if self.state == FileState::Absent {
            if let Some(md) = existing {
                if md.is_dir() {
                    if !self.force && fs::read_dir(&path).map_err(|e| io("listing", e))?.next().is_some() {
                        return Err(ResourceError::msg(format!(
                            "{} is a non-empty directory; set `force: true` to remove it recursively",
                            path.display()
                        )));
                    }
                    if apply {
                        fs::remove_dir_all(&path).map_err(|e| io("removing", e))?;
                    }
                    changes.push("remove directory".into());
                } else {
                    if apply {
                        fs::remove_file(&path).map_err(|e| io("removing", e))?;
                        sync_dir(path.parent());
                    }
                    changes.push("remove file".into());
                }
            }
            return Ok(changes);
        }

        let (uid, gid) = self.ids()?;
        let mode = self.mode_bits();
        if apply {
            clean_stale_temps_once(&path);
        }
        // Only a missing path can have a missing parent.
        if existing.is_none()
            && let Some(parent) = path.parent()
            && !parent.exists()
        {
            if apply {
                fs::create_dir_all(parent).map_err(|e| io("creating parent of", e))?;
            }
            changes.push(format!("create parent directory {}", parent.display()).into());
        }

        if self.is_dir() {
            let is_dir = existing.as_ref().is_some_and(|m| m.is_dir());
            if existing.is_some() && !is_dir {
                if !self.force {
                    return Err(ResourceError::msg(format!(
                        "{} exists and is not a directory; set `force: true` to replace it",
                        path.display()
                    )));
                }
                if apply {
                    fs::remove_file(&path).map_err(|e| io("removing", e))?;
                }
                changes.push("remove file to make room for a directory".into());
            }
            if !is_dir {
                if apply {
                    create_dir_with_mode(&path, mode.unwrap_or(0o755), uid, gid)
                        .map_err(|e| io("creating directory", e))?;
                    sync_dir(path.parent());
                }
                changes.push("create directory".into());
            }
            let mut wanted = HashSet::new();
            if let Some(src) = self.source_path() {
                if !apply && !is_dir {
                    changes.push(format!("copy tree from {}", src.display()).into());
                } else {
                    copy_tree(&src, &path, self.force, apply, &mut wanted, &mut changes)?;
                }
            }
            if self.purge && (apply || is_dir) {
                purge(&path, &wanted, &self.keep, apply, &mut changes)?;
            }
            if !apply && !is_dir {
                return Ok(changes);
            }
        } else {
            let built = match recv_content.is_none() && !self.fragments.is_empty() {
                true => Some(fragments_content(&self.fragments)?),
                false => None,
            };
            let mut desired = match (recv_content, &self.content, self.source_path()) {
                (Some(c), _, _) => Some(Content::Bytes(c.as_bytes())),
                (None, Some(c), _) => Some(Content::Bytes(c.as_bytes())),
                (None, None, _) if built.is_some() => built.as_deref().map(Content::Bytes),
                (None, None, Some(src)) => Some(Content::Source(
                    open_source(&src)
                        .map_err(|e| ResourceError::io(format!("reading source {}", src.display()), e))?,
                )),
                (None, None, None) => None,
            };
            let sensitive = self.is_sensitive(existing.as_ref());
            let create = |what: &str, desired: Option<Content>| -> ResResult<Change> {
                let mut data = desired.unwrap_or(Content::Bytes(b""));
                let diff = detail.then(|| content_detail(&path, None, &mut data, sensitive));
                if apply {
                    write_atomic_from(
                        &path,
                        &mut data.reader().map_err(|e| io("reading source for", e))?,
                        mode.unwrap_or(0o644),
                        uid,
                        gid,
                    )
                    .map_err(|e| io("writing", e))?;
                }
                let size = if sensitive { "sensitive".to_string() } else { format!("{} bytes", data.len()) };
                Ok(Change::new(format!("{what} ({size})")).with(diff))
            };
            match &existing {
                Some(md) if md.is_dir() => {
                    if !self.force {
                        return Err(ResourceError::msg(format!(
                            "{} is a directory; set `force: true` to replace it with a file",
                            path.display()
                        )));
                    }
                    if apply {
                        fs::remove_dir_all(&path).map_err(|e| io("removing", e))?;
                    }
                    changes.push("remove directory to make room for a file".into());
                    changes.push(create("create file", desired)?);
                    return Ok(changes);
                }
                Some(md) if md.file_type().is_symlink() && !self.force => {
                    return Err(ResourceError::msg(format!(
                        "{} is a symlink; set `force: true` to replace it with a file",
                        path.display()
                    )));
                }
                // The rename replaces the link itself, never its target; the new file gets a
                // file's default mode, not the link's 0777.
                Some(md) if md.file_type().is_symlink() => {
                    changes.push(create("replace symlink with a file", desired)?);
                    return Ok(changes);
                }
                None => {
                    changes.push(create("create file", desired)?);
                    return Ok(changes);
                }
                Some(md) => {
                    if let Some(data) = desired.as_mut()
                        && !(md.is_file()
                            && same_content(&path, md.len(), data).map_err(|e| io("reading", e))?)
                    {
                        let line = if sensitive {
                            "replace content (sensitive)".to_string()
                        } else {
                            format!("replace content ({} -> {} bytes)", md.len(), data.len())
                        };
                        let diff = detail.then(|| {
                            content_detail(&path, md.is_file().then_some(md.len()), data, sensitive)
                        });
                        let change = Change::new(line).with(diff);
                        if !apply {
                            changes.push(change);
                        } else {
                            // Keep the existing mode and owner unless params set them.
                            let m = mode.unwrap_or(md.mode() & 0o7777);
                            let u = uid.or(Some(md.uid()));
                            let g = gid.or(Some(md.gid()));
                            let mut r = data.reader().map_err(|e| io("reading source for", e))?;
                            write_atomic_from(&path, &mut r, m, u, g).map_err(|e| io("writing", e))?;
                            return Ok(vec![change]);
                        }
                    }
                }
            }
        }

        // Attributes of something that already existed (new files get them at creation),
        // changed through a descriptor of the final component: a symlink swapped in after
        // the first look is refused, never followed.
        if mode.is_none() && uid.is_none() && gid.is_none() {
            return Ok(changes);
        }
        let node = match Node::open(&path) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !apply => return Ok(changes),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(ResourceError::msg(format!(
                    "{} became a symlink; it is not followed",
                    path.display()
                )));
            }
            Err(e) => return Err(io("opening", e)),
        };
        let md = node.metadata().map_err(|e| io("reading", e))?;
        let uid_change = uid.filter(|u| *u != md.uid());
        let gid_change = gid.filter(|g| *g != md.gid());
        if uid_change.is_some() || gid_change.is_some() {
            if apply {
                node.chown(uid_change, gid_change).map_err(|e| io("chown", e))?;
            }
            if let Some(u) = uid_change {
                changes.push(format!("set owner {} -> {u}", md.uid()).into());
            }
            if let Some(g) = gid_change {
                changes.push(format!("set group {} -> {g}", md.gid()).into());
            }
        }
        // After chown, which clears the setuid and setgid bits.
        let now = if apply && !changes.is_empty() {
            node.metadata().map_err(|e| io("reading", e))?
        } else {
            md.clone()
        };
        if let Some(m) = mode
            && now.mode() & 0o7777 != m
        {
            if apply {
                node.chmod(m).map_err(|e| io("chmod", e))?;
            }
            if md.mode() & 0o7777 != m {
                changes.push(format!("set mode {:04o} -> {m:04o}", md.mode() & 0o7777).into());
            }
        }
        Ok(changes)
    }
}

/// The content `fragments` make: each file, and each regular file directly in each
/// directory (a fragment ending in `/`) in name order, subdirectories skipped; at most
/// [`FRAGMENTS_MAX`] bytes in all.
fn fragments_content(fragments: &[String]) -> ResResult<Vec<u8>> {
    let mut out = Vec::new();
    for frag in fragments {
        let path = PathBuf::from(frag);
        if !frag.ends_with('/') {
            append_fragment(&path, &mut out)?;
            continue;
        }
        let list = |e| ResourceError::io(format!("listing fragment directory {}", path.display()), e);
        let mut names = Vec::new();
        for entry in fs::read_dir(&path).map_err(list)? {
            names.push(entry.map_err(list)?.file_name());
            if names.len() > FRAGMENT_DIR_ENTRIES_MAX {
                return Err(ResourceError::msg(format!(
                    "fragment directory {} has more than {FRAGMENT_DIR_ENTRIES_MAX} entries",
                    path.display()
                )));
            }
        }
        names.sort();
        for name in names {
            let entry = path.join(name);
            if fs::metadata(&entry).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            append_fragment(&entry, &mut out)?;
        }
    }
    Ok(out)
}

/// Append the regular file at `path` to `out`, failing past [`FRAGMENTS_MAX`] bytes.
fn append_fragment(path: &Path, out: &mut Vec<u8>) -> ResResult<()> {
    let err = |e| ResourceError::io(format!("reading fragment {}", path.display()), e);
    let file = open_source(path).map_err(err)?;
    let room = FRAGMENTS_MAX + 1 - out.len() as u64;
    file.take(room).read_to_end(out).map_err(err)?;
    if out.len() as u64 > FRAGMENTS_MAX {
        return Err(ResourceError::msg(format!("the fragments make more than {FRAGMENTS_MAX} bytes")));
    }
    Ok(())
}

/// What a node is, in words: `symlink`, `directory` or `file`.
fn describe(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else {
        "file"
    }
}

/// Remove a node: a directory with all it holds, anything else (a link itself) unlinked.
fn remove_node(path: &Path, md: &fs::Metadata) -> io::Result<()> {
    if md.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) }?;
    sync_dir(path.parent());
    Ok(())
}

/// Make `path` a symlink to `target`, replacing what is there (not a directory) in one
/// rename, so that there is never a moment without a link. The link is made beside it first,
/// under a name of its own; a name too long for that is replaced in two steps.
fn link_atomic(target: &str, path: &Path) -> io::Result<()> {
    let base = path.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
    let mut temp = b".".to_vec();
    temp.extend_from_slice(base);
    temp.extend_from_slice(b".mgmt-link");
    if temp.len() > NAME_MAX {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::os::unix::fs::symlink(target, path)?;
    } else {
        let temp = path.with_file_name(OsStr::from_bytes(&temp));
        let _ = fs::remove_file(&temp);
        std::os::unix::fs::symlink(target, &temp)?;
        if let Err(e) = fs::rename(&temp, path) {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
    }
    sync_dir(path.parent());
    Ok(())
}

/// What a file's content should be.
enum Content<'a> {
    Bytes(&'a [u8]),
    /// An open regular file, streamed (never read whole into memory).
    Source(fs::File),
}

impl Content<'_> {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Source(f) => f.metadata().map(|m| m.len()).unwrap_or(0),
        }
    }
    /// A reader from the start (a source may have been read by a comparison already).
    fn reader(&mut self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match self {
            Content::Bytes(b) => Box::new(*b),
            Content::Source(f) => {
                f.seek(SeekFrom::Start(0))?;
                Box::new(&*f)
            }
        })
    }
}

/// Open a `source`: it may be reached through symlinks, but must be a regular file. A FIFO
/// or a device (`/dev/zero`) would block the check or never end; `O_NONBLOCK` makes the
/// open itself return at once so the type can be checked.
fn open_source(src: &Path) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(src)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(f)
}

/// The diff of a content change for the log (see [`content_diff`]): from the file at `path`
/// (`current` is its length; `None`: there is no regular file, whose content could be read
/// without blocking) to `desired`. Sensitive content is
/// not read, nor is content over [`DIFF_INPUT_MAX`]. A read that fails is said in the
/// detail: the diff is only for the log, so it does not fail the check.
fn content_detail(path: &Path, current: Option<u64>, desired: &mut Content, sensitive: bool) -> Detail {
    let shown = path.display().to_string();
    if sensitive {
        return Detail::Diff(content_diff(&shown, None, Side::unread(0), true));
    }
    let text = read_and_diff(&shown, path, current, desired)
        .unwrap_or_else(|e| format!("content changed (no diff: reading it failed: {e})"));
    Detail::Diff(text)
}

/// [`content_diff`] of what is at `path` (`current` long, if there is anything) and
/// `desired`, each read unless it is too large.
fn read_and_diff(
    shown: &str,
    path: &Path,
    current: Option<u64>,
    desired: &mut Content,
) -> io::Result<String> {
    let old = match current {
        None => None,
        Some(len) => {
            let node = Node::open(path)?;
            if node.by_path {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            Some((len, read_for_diff(len, &mut &node.file)?))
        }
    };
    let new_len = desired.len();
    let new = read_for_diff(new_len, &mut desired.reader()?)?;
    let old = old.as_ref().map(|(len, b)| diff_side(*len, b.as_deref()));
    Ok(content_diff(shown, old, diff_side(new_len, new.as_deref()), false))
}

/// A side of a diff: `len` bytes long, read as `bytes` if they were (a file may have grown
/// since its length was taken).
fn diff_side(len: u64, bytes: Option<&[u8]>) -> Side<'_> {
    match bytes {
        Some(b) => Side { len: len.max(b.len() as u64), bytes: Some(b) },
        None => Side::unread(len),
    }
}

/// Up to [`DIFF_INPUT_MAX`] bytes and one more, for a diff; nothing for a content whose
/// length is over it.
fn read_for_diff(len: u64, r: &mut dyn Read) -> io::Result<Option<Vec<u8>>> {
    if len > DIFF_INPUT_MAX {
        return Ok(None);
    }
    let mut buf = Vec::new();
    r.take(DIFF_INPUT_MAX + 1).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

/// Bytes compared at a time.
const COMPARE_CHUNK: usize = 64 * 1024;

/// Whether the regular file at `path` (never followed if it is a symlink) holds exactly
/// `want`, compared in bounded chunks.
fn same_content(path: &Path, len: u64, want: &mut Content) -> io::Result<bool> {
    if len != want.len() {
        return Ok(false);
    }
    let mut have = match Node::open(path) {
        Ok(n) if n.by_path => return Err(io::Error::from_raw_os_error(libc::EACCES)),
        Ok(n) if n.metadata()?.is_file() => n.file,
        Ok(_) => return Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut want = want.reader()?;
    // Buffers no bigger than the file: most managed files are small, and checks run on many
    // threads at once (each thread's allocator keeps what it freed).
    let size = usize::try_from(len).unwrap_or(usize::MAX).clamp(1, COMPARE_CHUNK);
    let (mut a, mut b) = (vec![0u8; size], vec![0u8; size]);
    loop {
        let n = read_full(&mut have, &mut a)?;
        let m = read_full(&mut want, &mut b)?;
        if a[..n] != b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fill `buf` as far as the reader goes; returns how much was read (less only at the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A descriptor on the final component of a path, opened with `O_NOFOLLOW`: mode and owner
/// changes go through it (`fchmod`, `fchown`), so a symlink put there after the first look is
/// refused instead of followed. Parent directories are resolved as usual (a symlinked parent
/// such as `/var/run -> /run` is followed).
struct Node {
    file: fs::File,
    /// Opened with `O_PATH` (the agent may not read it): changes go through
    /// `/proc/self/fd`, which names exactly this inode.
    by_path: bool,
}

impl Node {
    fn open(path: &Path) -> io::Result<Node> {
        let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
        match fs::OpenOptions::new().read(true).custom_flags(flags).open(path) {
            Ok(file) => Ok(Node { file, by_path: false }),
            // Not readable by the agent, or a socket: a path-only descriptor still names it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::ENXIO)) => {
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
                    .open(path)?;
                // O_PATH with O_NOFOLLOW opens a symlink itself instead of failing.
                if file.metadata()?.file_type().is_symlink() {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                Ok(Node { file, by_path: true })
            }
            Err(e) => Err(e),
        }
    }
    fn metadata(&self) -> io::Result<fs::Metadata> {
        self.file.metadata()
    }
    fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
    fn chmod(&self, mode: u32) -> io::Result<()> {
        let perms = fs::Permissions::from_mode(mode);
        if self.by_path {
            fs::set_permissions(self.proc_path(), perms)
        } else {
            self.file.set_permissions(perms)
        }
    }
    fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        if self.by_path {
            std::os::unix::fs::chown(self.proc_path(), uid, gid)
        } else {
            std::os::unix::fs::fchown(&self.file, uid, gid)
        }
    }
}

/// Create the directory `path` with `mode` from the start (never wider for a moment), then
/// owner and the bits the umask took, through an `O_NOFOLLOW` descriptor.
fn create_dir_with_mode(path: &Path, mode: u32, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    fs::DirBuilder::new().mode(mode & 0o777).create(path)?;
    let node = Node::open(path)?;
    if uid.is_some() || gid.is_some() {
        node.chown(uid, gid)?;
    }
    if node.metadata()?.mode() & 0o7777 != mode {
        node.chmod(mode)?;
    }
    Ok(())
}

fn copy_tree(
    src: &Path,
    dst: &Path,
    force: bool,
    apply: bool,
    wanted: &mut HashSet<PathBuf>,
    changes: &mut Changes,
) -> ResResult<()> {
    let md =
        fs::metadata(src).map_err(|e| ResourceError::io(format!("reading source {}", src.display()), e))?;
    if !md.is_dir() {
        return Err(ResourceError::msg(format!("source {} is not a directory", src.display())));
    }
    copy_dir(src, dst, force, apply, wanted, changes)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    force: bool,
    apply: bool,
    wanted: &mut HashSet<PathBuf>,
    changes: &mut Changes,
) -> ResResult<()> {
    let entries =
        fs::read_dir(src).map_err(|e| ResourceError::io(format!("listing source {}", src.display()), e))?;
    for entry in entries {
        if stopping() {
            return Err(ResourceError::msg("the agent is stopping"));
        }
        let entry = entry.map_err(|e| ResourceError::io(format!("listing source {}", src.display()), e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        wanted.insert(to.clone());
        let smd = fs::symlink_metadata(&from)
            .map_err(|e| ResourceError::io(format!("reading {}", from.display()), e))?;
        let dmd = fs::symlink_metadata(&to).ok();
        let err =
            |what: &str, p: &Path, e: io::Error| ResourceError::io(format!("{what} {}", p.display()), e);
        if smd.is_dir() {
            if let Some(d) = &dmd
                && !d.is_dir()
            {
                if !force {
                    return Err(ResourceError::msg(format!(
                        "{} is not a directory; set `force: true`",
                        to.display()
                    )));
                }
                if apply {
                    fs::remove_file(&to).map_err(|e| err("removing", &to, e))?;
                }
            }
            if dmd.as_ref().is_none_or(|d| !d.is_dir()) {
                if apply {
                    create_dir_with_mode(&to, smd.mode() & 0o7777, None, None)
                        .map_err(|e| err("creating", &to, e))?;
                }
                changes.push(format!("create directory {}", to.display()).into());
            }
            if apply || dmd.as_ref().is_some_and(|d| d.is_dir()) {
                copy_dir(&from, &to, force, apply, wanted, changes)?;
            }
        } else if smd.is_file() {
            // Swapped for a FIFO or a device since the listing: refused, not read.
            let mut data = Content::Source(open_source(&from).map_err(|e| err("reading", &from, e))?);
            let same = match &dmd {
                Some(d) if d.is_file() => same_content(&to, d.len(), &mut data).unwrap_or(false),
                Some(d) if d.is_dir() => {
                    if !force {
                        return Err(ResourceError::msg(format!(
                            "{} is a directory; set `force: true`",
                            to.display()
                        )));
                    }
                    if apply {
                        fs::remove_dir_all(&to).map_err(|e| err("removing", &to, e))?;
                    }
                    false
                }
                _ => false,
            };
            if !same {
                if apply {
                    let mut r = data.reader().map_err(|e| err("reading", &from, e))?;
                    write_atomic_from(&to, &mut r, smd.mode() & 0o7777, None, None)
                        .map_err(|e| err("writing", &to, e))?;
                }
                changes.push(format!("copy {} ({} bytes)", to.display(), data.len()).into());
            } else if let Some(d) = &dmd
                && d.mode() & 0o7777 != smd.mode() & 0o7777
            {
                if apply {
                    Node::open(&to)
                        .and_then(|n| n.chmod(smd.mode() & 0o7777))
                        .map_err(|e| err("chmod", &to, e))?;
                }
                changes.push(format!("set mode {:04o} on {}", smd.mode() & 0o7777, to.display()).into());
            }
        }
    }
    Ok(())
}

fn purge(
    dir: &Path,
    wanted: &HashSet<PathBuf>,
    keep: &[PathBuf],
    apply: bool,
    changes: &mut Changes,
) -> ResResult<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let p = entry.path();
        if wanted.contains(&p) || keep.iter().any(|k| k == &p || k.starts_with(&p)) {
            if p.is_dir() && !p.is_symlink() && wanted.contains(&p) {
                purge(&p, wanted, keep, apply, changes)?;
            }
            continue;
        }
        if apply {
            let r = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(|e| ResourceError::io(format!("purging {}", p.display()), e))?;
        }
        changes.push(format!("purge {}", p.display()).into());
    }
    Ok(())
}

#[async_trait]
impl Resource for File {
    crate::resource_common!("file");

    fn validate(&self) -> Result<(), ValidationError> {
        if self.selinux.is_some() {
            return Err(ValidationError::new("selinux", SELINUX_REFUSED));
        }
        self.validate_overrides()?;
        let field = if self.path.is_some() { "path" } else { "name" };
        let p = self.full_path();
        let path = self.abs_path().map_err(|e| ValidationError::new(field, format!("`{}` {e}", shown(&p))))?;
        if path.is_root() {
            return Err(ValidationError::new(field, format!("refusing to manage `/` (`{}`)", shown(&p))));
        }
        if self.content.is_some() && self.source.is_some() {
            return Err(ValidationError::new("source", "`content` and `source` cannot both be set"));
        }
        if !self.fragments.is_empty() && (self.content.is_some() || self.source.is_some()) {
            return Err(ValidationError::new("fragments", "cannot be set with `content` or `source`"));
        }
        if self.symlink {
            self.validate_symlink()?;
        } else if let Some(s) = &self.source {
            let shown_s = shown(s.written());
            let source = s.parsed().map_err(|e| ValidationError::new("source", format!("`{shown_s}` {e}")))?;
            if source.is_root() {
                return Err(ValidationError::new("source", format!("refusing to copy `/` (`{shown_s}`)")));
            }
        }
        self.validate_fragments(&path)?;
        if let Some(m) = &self.mode {
            m.bits().map_err(|e| ValidationError::new("mode", e))?;
        }
        for (field, v) in [("owner", &self.owner), ("group", &self.group)] {
            let Some(v) = v.as_deref() else { continue };
            if v.trim().is_empty() {
                return Err(ValidationError::new(field, "must not be empty"));
            }
            if v.contains('\0') {
                return Err(ValidationError::new(field, "must not contain a NUL byte"));
            }
            // (uid_t)-1 and (gid_t)-1 mean "leave unchanged" to chown: never an id.
            if v.parse::<u32>() == Ok(u32::MAX) {
                return Err(ValidationError::new(field, format!("{} is not a valid id", u32::MAX)));
            }
        }
        if self.is_dir() {
            if self.content.is_some() {
                return Err(ValidationError::new(
                    "content",
                    "a directory (path ending in `/`) has no content",
                ));
            }
            if self.source.is_some() && !self.recurse {
                return Err(ValidationError::new(
                    "recurse",
                    "copying a directory `source` needs `recurse: true`",
                ));
            }
        } else {
            if self.recurse {
                return Err(ValidationError::new(
                    "recurse",
                    "only directories (path ending in `/`) can recurse",
                ));
            }
            if self.purge {
                return Err(ValidationError::new("purge", "only directories (path ending in `/`) can purge"));
            }
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let target = self.target();
        let scope = match (self.is_dir(), self.recurse) {
            (false, _) => Scope::File(target),
            (true, false) => Scope::Dir(target),
            (true, true) => Scope::Tree(target),
        };
        let waker = ctx.waker.clone();
        let _sub = ctx.fs.subscribe(scope, waker.clone()).await;
        let _src = match self.source_path() {
            // A link's text is all that is managed: what it points to is not watched.
            Some(_) if self.symlink => None,
            Some(s) if self.recurse => Some(ctx.fs.subscribe(Scope::Tree(s), waker.clone()).await),
            Some(s) => Some(ctx.fs.subscribe(Scope::File(s), waker.clone()).await),
            None => None,
        };
        let mut _fragments = Vec::with_capacity(self.fragments.len());
        for f in &self.fragments {
            let scope = match AbsPath::parse(f) {
                Ok(p) if p.is_dir() => Scope::Dir(p.target()),
                _ => Scope::File(PathBuf::from(f)),
            };
            _fragments.push(ctx.fs.subscribe(scope, waker.clone()).await);
        }
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let this = self.clone();
        let recv = ctx.recv.get("content").map(|v| v.as_text().into_owned());
        let detail = ctx.detail;
        tokio::task::spawn_blocking(move || this.sync_check_apply(recv.as_deref(), apply, detail))
            .await
            .map_err(|e| ResourceError::msg(format!("file check panicked: {e}")))?
    }

    fn autoedges(&self) -> AutoEdgeInfo {
        let target = self.target();
        let mut provides = self.target();
        if self.is_dir() {
            provides.push("");
        }
        let mut requires = Vec::new();
        if let Some(parent) = target.parent() {
            let mut p = parent.to_path_buf();
            p.push("");
            requires.push(p);
        }
        if let Some(s) = self.source.as_ref().filter(|_| !self.symlink) {
            requires.push(PathBuf::from(s.parsed().map_or(s.written(), AbsPath::as_str)));
        }
        for f in &self.fragments {
            requires.push(PathBuf::from(AbsPath::parse(f).as_ref().map_or(f.as_str(), AbsPath::as_str)));
        }
        AutoEdgeInfo { provides: vec![provides], requires }
    }

    fn recv_fields(&self) -> &'static [&'static str] {
        &["content"]
    }

    fn reversible(&self) -> bool {
        true
    }

    fn reversal(&self) -> ResResult<Option<Box<dyn Resource>>> {
        Ok(self.reversal_of_now()?.map(|f| Box::new(f) as Box<dyn Resource>))
    }

    /// A peer's file lands in the collector's `pattern` directory, under the last component
    /// of the path the peer exported (checked before anything is rewritten), and keeps only
    /// its content and its mode without setuid, setgid and sticky bits. Nothing else a peer
    /// chose is taken: no `source` (it would copy the collector's own files), no owner or
    /// group, no `purge`, `recurse` or `force`, no `state: absent`, no meta params.
    fn collected(&mut self, pattern: Option<&str>) -> Result<(), ValidationError> {
        let Some(pattern) = pattern else {
            return Err(ValidationError::new(
                "pattern",
                "collecting files needs a `pattern`, the directory to put them in",
            ));
        };
        let dir = normalize_path(pattern)
            .map_err(|e| ValidationError::new("pattern", format!("`{}` {e}", shown(pattern))))?;
        let full = self.full_path().into_owned();
        let (name, is_dir) = exported_name(&full)?;
        let mut path = dir.trim_end_matches('/').to_string();
        path.push('/');
        path.push_str(name);
        if is_dir {
            path.push('/');
        }
        let mode = match &self.mode {
            Some(m) => {
                let bits = m.bits().map_err(|e| ValidationError::new("mode", e))?;
                Some(Mode::from(format!("{:04o}", bits & 0o777)))
            }
            None => None,
        };
        // `sensitive` only hides content from the log: a peer may ask for that.
        let meta = Meta { sensitive: self.meta.sensitive, ..Meta::default() };
        *self = File {
            name: std::mem::take(&mut self.name),
            meta,
            path: Some(path.into()),
            content: self.content.take(),
            mode,
            ..File::default()
        };
        Ok(())
    }
}

/// The last component of a path a peer exported, and whether it names a directory. The
/// whole path must be valid, and its last component a plain name: never `.`, `..` or empty.
fn exported_name(p: &str) -> Result<(&str, bool), ValidationError> {
    let bad = |why: String| ValidationError::new("path", format!("exported path `{}` {why}", shown(p)));
    normalize_path(p).map_err(|e| bad(e.to_string()))?;
    let (body, is_dir) = match p.strip_suffix('/') {
        Some(b) => (b, true),
        None => (p, false),
    };
    let name = body.rsplit('/').next().unwrap_or("");
    if matches!(name, "" | "." | "..") {
        return Err(bad("does not end in a file name".into()));
    }
    Ok((name, is_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> File {
        File {
            name: "f".into(),
            meta: Meta::default(),
            path: Some(path.into()),
            content: None,
            source: None,
            state: FileState::Exists,
            mode: None,
            owner: None,
            group: None,
            recurse: false,
            purge: false,
            force: false,
            keep: vec![],
            ..File::default()
        }
    }

    #[test]
    fn selinux_is_refused_with_the_reason() {
        let f = File { selinux: Some("system_u:object_r:etc_t:s0".into()), ..file("/tmp/x") };
        let e = f.validate().unwrap_err();
        assert_eq!(e.field, "selinux");
        assert!(e.message.contains("restorecon"), "{}", e.message);
    }

    #[test]
    fn dirname_and_basename_replace_the_parts_of_the_path() {
        assert_eq!(split_dir_base("/a/b"), ("/a/", "b"));
        assert_eq!(split_dir_base("/a/b/"), ("/a/", "b/"));
        assert_eq!(split_dir_base("/b"), ("/", "b"));
        let with = |d: Option<&str>, b: Option<&str>| File {
            dirname: d.map(Into::into),
            basename: b.map(Into::into),
            ..file("/etc/app/conf")
        };
        assert_eq!(with(Some("/srv/"), None).target(), PathBuf::from("/srv/conf"));
        assert_eq!(with(None, Some("other")).target(), PathBuf::from("/etc/app/other"));
        assert_eq!(with(Some("/srv/"), Some("d/")).full_path(), "/srv/d/");
        assert!(with(Some("/srv/"), Some("d/")).is_dir());
        assert_eq!(with(Some(""), Some("")).full_path(), "/etc/app/conf", "empty is unset");
        for bad in ["srv/", "/srv", "/s\0/"] {
            assert_eq!(with(Some(bad), None).validate().unwrap_err().field, "dirname", "{bad}");
        }
        for bad in ["/x", "a/b", "..", "./", "a\0"] {
            assert_eq!(with(None, Some(bad)).validate().unwrap_err().field, "basename", "{bad}");
        }
        assert!(with(Some("/srv/"), Some("x")).validate().is_ok());
        let edges = with(Some("/srv/"), None).autoedges();
        assert_eq!(edges.provides, vec![PathBuf::from("/srv/conf")]);
        assert_eq!(edges.requires, vec![PathBuf::from("/srv/")]);
    }

    #[test]
    fn a_symlink_needs_a_target_and_nothing_a_link_cannot_have() {
        let link = |src: Option<&str>| File { symlink: true, source: src.map(Into::into), ..file("/tmp/l") };
        assert!(link(Some("../relative/target")).validate().is_ok(), "a relative target");
        assert!(link(Some("/abs/target/")).validate().is_ok(), "a directory target");
        assert_eq!(link(None).validate().unwrap_err().field, "source");
        assert!(File { state: FileState::Absent, ..link(None) }.validate().is_ok());
        assert_eq!(link(Some("")).validate().unwrap_err().field, "source");
        assert_eq!(File { mode: Some("0644".into()), ..link(Some("/t")) }.validate().unwrap_err().field, "mode");
        assert_eq!(File { content: Some("x".into()), ..link(None) }.validate().unwrap_err().field, "symlink");
        let dir = File { symlink: true, source: Some("/t".into()), ..file("/tmp/d/") };
        assert_eq!(dir.validate().unwrap_err().field, "symlink");
        assert!(link(Some("/t")).autoedges().requires.iter().all(|r| r != Path::new("/t")), "no edge to the target");
    }

    #[test]
    fn fragments_are_absolute_and_never_hold_the_file() {
        let frags = |p: &str, f: &[&str]| File { fragments: f.iter().map(|s| s.to_string()).collect(), ..file(p) };
        assert!(frags("/etc/out", &["/etc/a", "/etc/parts/"]).validate().is_ok());
        assert_eq!(frags("/etc/out", &["rel"]).validate().unwrap_err().field, "fragments");
        assert_eq!(frags("/etc/parts/out", &["/etc/parts/"]).validate().unwrap_err().field, "fragments");
        assert_eq!(frags("/etc/out", &["/etc/out"]).validate().unwrap_err().field, "fragments");
        assert_eq!(frags("/etc/d/", &["/etc/a"]).validate().unwrap_err().field, "fragments");
        let with_content = File { content: Some("x".into()), ..frags("/etc/out", &["/etc/a"]) };
        assert_eq!(with_content.validate().unwrap_err().field, "fragments");
        let edges = frags("/etc/out", &["/etc/a", "/etc/parts/"]).autoedges();
        assert!(edges.requires.contains(&PathBuf::from("/etc/a")));
        assert!(edges.requires.contains(&PathBuf::from("/etc/parts/")));
    }

    #[test]
    fn fragments_are_joined_in_order_with_directory_entries_by_name() {
        let dir = std::env::temp_dir().join(format!("mgmt-frag-{}", std::process::id()));
        let parts = dir.join("parts");
        fs::create_dir_all(parts.join("sub")).unwrap();
        fs::write(dir.join("head"), "head\n").unwrap();
        fs::write(parts.join("b"), "b\n").unwrap();
        fs::write(parts.join("a"), "a\n").unwrap();
        fs::write(parts.join("sub/skipped"), "no\n").unwrap();
        let list = vec![dir.join("head").display().to_string(), format!("{}/", parts.display())];
        let got = fragments_content(&list);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(String::from_utf8(got.unwrap()).unwrap(), "head\na\nb\n");
        assert!(fragments_content(&["/nonexistent/mgmt-frag".into()]).is_err());
    }

    #[test]
    fn modes_parse_as_octal_strings_only() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert!(parse_mode("0x644").is_err());
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn validation_names_fields() {
        assert_eq!(file("relative/x").validate().unwrap_err().field, "path");
        assert_eq!(file("/a/../b").validate().unwrap_err().field, "path");
        let mut f = file("/tmp/x");
        f.purge = true;
        assert_eq!(f.validate().unwrap_err().field, "purge");
        let mut f = file("/tmp/x/");
        f.source = Some("/src".into());
        assert_eq!(f.validate().unwrap_err().field, "recurse");
        let mut f = file("/tmp/x");
        f.mode = Some("abc".into());
        assert_eq!(f.validate().unwrap_err().field, "mode");
        assert!(file("/tmp/x/").validate().is_ok());
    }

    #[test]
    fn a_collected_file_moves_into_the_pattern_directory() {
        let mut f = file("/tmp/mgmtA/fA");
        f.collected(Some("/tmp/mgmtB/")).unwrap();
        assert_eq!(f.path.as_deref(), Some("/tmp/mgmtB/fA"));
        let mut d = file("/tmp/mgmtA/d/");
        d.collected(Some("/tmp//mgmtB/./")).unwrap();
        assert_eq!(d.path.as_deref(), Some("/tmp/mgmtB/d/"));
        assert!(file("/x/f").collected(None).is_err_and(|e| e.field == "pattern"));
        assert!(file("/x/f").collected(Some("rel/")).is_err_and(|e| e.field == "pattern"));
    }

    #[test]
    fn a_collected_file_keeps_only_content_and_plain_mode() {
        let mut f = File {
            content: Some("x".into()),
            source: Some("/etc/shadow".into()),
            mode: Some("6755".into()),
            owner: Some("root".into()),
            group: Some("0".into()),
            force: true,
            state: FileState::Absent,
            meta: Meta { noop: true, ..Meta::default() },
            ..file("/a/shell")
        };
        f.collected(Some("/in/")).unwrap();
        let want = File {
            name: "f".into(),
            path: Some("/in/shell".into()),
            content: Some("x".into()),
            mode: Some("0755".into()),
            ..File::default()
        };
        assert_eq!(f, want);
        let mut d = File { purge: true, recurse: true, source: Some("/".into()), ..file("/a/d/") };
        d.collected(Some("/in")).unwrap();
        assert_eq!(d, File { name: "f".into(), path: Some("/in/d/".into()), ..File::default() });
    }

    #[test]
    fn a_collected_file_stays_sensitive() {
        let mut f = File { meta: Meta { sensitive: true, retry: 5, ..Meta::default() }, ..file("/a/key") };
        f.collected(Some("/in/")).unwrap();
        assert_eq!(f.meta, Meta { sensitive: true, ..Meta::default() });
    }

    #[test]
    fn an_exported_path_without_a_file_name_is_not_collected() {
        for p in ["/a/..", "/a/.", "/", "//", "/a//", "", "a/b", "/a/\0b", "/.."] {
            let err = file(p).collected(Some("/in/")).expect_err(p);
            assert_eq!(err.field, "path", "{p}");
        }
    }

    #[test]
    fn anything_that_is_root_is_refused() {
        for p in ["/", "/.", "/./", "//", "///././/"] {
            for f in [
                File { state: FileState::Absent, force: true, ..file(p) },
                File { purge: true, ..file(p) },
                File { recurse: true, source: Some("/src/".into()), ..file(p) },
                file(p),
            ] {
                let err = f.validate().expect_err(p);
                assert_eq!(err.field, "path");
                assert!(err.message.contains("refusing to manage `/`"), "{}", err.message);
            }
        }
        let f = File { path: None, name: "/.".into(), ..file("") };
        assert_eq!(f.validate().unwrap_err().field, "name");
        let f = File { source: Some("//".into()), recurse: true, ..file("/d/") };
        assert_eq!(f.validate().unwrap_err().field, "source");
    }

    #[test]
    fn bad_paths_and_ids_are_refused_naming_the_field() {
        assert_eq!(file("/tmp/a\0b").validate().unwrap_err().field, "path");
        assert_eq!(file(&format!("/tmp/{}", "n".repeat(256))).validate().unwrap_err().field, "path");
        assert!(file(&format!("/tmp/{}", "n".repeat(255))).validate().is_ok());
        let f = File { source: Some("/s\0".into()), ..file("/tmp/a") };
        assert_eq!(f.validate().unwrap_err().field, "source");
        let f = File { owner: Some("4294967295".into()), ..file("/tmp/a") };
        assert_eq!(f.validate().unwrap_err().field, "owner");
        let f = File { group: Some("4294967295".into()), ..file("/tmp/a") };
        assert_eq!(f.validate().unwrap_err().field, "group");
        assert!(File { owner: Some("4294967294".into()), ..file("/tmp/a") }.validate().is_ok());
    }

    #[test]
    fn a_normalised_path_is_the_one_managed() {
        let f = file("/tmp//a/./b/.");
        assert!(f.is_dir());
        assert_eq!(f.target(), PathBuf::from("/tmp/a/b"));
        assert_eq!(f.autoedges().provides, vec![PathBuf::from("/tmp/a/b/")]);
    }

    #[test]
    fn autoedges_require_parent_directory() {
        let f = file("/tmp/a/b");
        let info = f.autoedges();
        assert_eq!(info.provides, vec![PathBuf::from("/tmp/a/b")]);
        assert_eq!(info.requires, vec![PathBuf::from("/tmp/a/")]);
        let d = file("/tmp/a/");
        assert_eq!(d.autoedges().provides, vec![PathBuf::from("/tmp/a/")]);
    }

    proptest::proptest! {
        /// Any input: no panic; a normal form is absolute, has no `.`, `..` or empty
        /// component, is its own normal form, and names the same directory-ness.
        #[test]
        fn the_normal_form_is_stable(p in "(/|\\.|\\.\\.|a|b\\x00|~)*", raw in proptest::prelude::any::<String>()) {
            for input in [p.as_str(), raw.as_str()] {
                let Ok(n) = normalize_path(input) else { continue };
                proptest::prop_assert!(n.starts_with('/'));
                proptest::prop_assert!(!n.contains("//") && !n.contains('\0'));
                proptest::prop_assert!(n.split('/').all(|c| c != "." && c != ".."));
                proptest::prop_assert_eq!(normalize_path(&n), Ok(n.clone()));
                if input.ends_with('/') {
                    proptest::prop_assert!(n.ends_with('/'));
                }
            }
        }
    }
}
