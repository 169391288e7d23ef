//! `file`: a file or directory (path ending in `/`), its content or source, mode and owner.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
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
use crate::contract::path::{AbsPath, PathError, PathParam, normalize_path};
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
    /// Upstream's params this kind does not implement yet, refused with the reason when
    /// set (see [`NOT_YET`]).
    #[serde(default, skip_serializing)]
    pub dirname: Option<String>,
    #[serde(default, skip_serializing)]
    pub basename: Option<String>,
    #[serde(default, skip_serializing)]
    pub fragments: Option<Vec<String>>,
    #[serde(default, skip_serializing)]
    pub symlink: Option<bool>,
    #[serde(default, skip_serializing)]
    pub selinux: Option<String>,
}

/// Upstream's file params not implemented here, and what to write instead.
const NOT_YET: [(&str, &str); 5] = [
    ("dirname", "give the whole `path` instead"),
    ("basename", "give the whole `path` instead"),
    ("fragments", "build the content in the graph (in mcl, read the fragments and join them)"),
    ("symlink", "symbolic links are not managed yet"),
    ("selinux", "SELinux contexts are not managed"),
];

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
    /// `path` as parsed when it was read, or else the name (a resource's identity, not a
    /// param) parsed now.
    fn abs_path(&self) -> Result<Cow<'_, AbsPath>, PathError> {
        match &self.path {
            Some(p) => p.parsed().map(Cow::Borrowed).map_err(Clone::clone),
            None => AbsPath::parse(&self.name).map(Cow::Owned),
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

    /// Check and, with `apply`, repair; with `detail`, content changes carry a diff.
    fn sync_check_apply(&self, recv_content: Option<&str>, apply: bool, detail: bool) -> ResResult<Changes> {
        if stopping() {
            return Err(ResourceError::msg("the agent is stopping"));
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
            let mut desired = match (recv_content, &self.content, self.source_path()) {
                (Some(c), _, _) => Some(Content::Bytes(c.as_bytes())),
                (None, Some(c), _) => Some(Content::Bytes(c.as_bytes())),
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
        let set = [
            self.dirname.is_some(),
            self.basename.is_some(),
            self.fragments.is_some(),
            self.symlink == Some(true),
            self.selinux.is_some(),
        ];
        if let Some(((field, instead), _)) = NOT_YET.iter().zip(set).find(|(_, set)| *set) {
            return Err(ValidationError::new(field, format!("is not supported by this agent yet; {instead}")));
        }
        let field = if self.path.is_some() { "path" } else { "name" };
        let p = self.path_str();
        let path = self.abs_path().map_err(|e| ValidationError::new(field, format!("`{}` {e}", shown(p))))?;
        if path.is_root() {
            return Err(ValidationError::new(field, format!("refusing to manage `/` (`{}`)", shown(p))));
        }
        if self.content.is_some() && self.source.is_some() {
            return Err(ValidationError::new("source", "`content` and `source` cannot both be set"));
        }
        if let Some(s) = &self.source {
            let shown_s = shown(s.written());
            let source = s.parsed().map_err(|e| ValidationError::new("source", format!("`{shown_s}` {e}")))?;
            if source.is_root() {
                return Err(ValidationError::new("source", format!("refusing to copy `/` (`{shown_s}`)")));
            }
        }
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
            Some(s) if self.recurse => Some(ctx.fs.subscribe(Scope::Tree(s), waker).await),
            Some(s) => Some(ctx.fs.subscribe(Scope::File(s), waker).await),
            None => None,
        };
        ctx.event();
        std::future::pending::<()>().await;
        Ok(())
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
        if let Some(s) = &self.source {
            requires.push(PathBuf::from(s.parsed().map_or(s.written(), AbsPath::as_str)));
        }
        AutoEdgeInfo { provides: vec![provides], requires }
    }

    fn recv_fields(&self) -> &'static [&'static str] {
        &["content"]
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
        let (name, is_dir) = exported_name(self.path_str())?;
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
    fn upstream_params_not_implemented_are_refused_with_what_to_do() {
        let f = File { symlink: Some(true), ..file("/tmp/x") };
        let e = f.validate().unwrap_err();
        assert_eq!(e.field, "symlink");
        assert!(e.message.contains("not supported by this agent yet"), "{}", e.message);
        let f = File { fragments: Some(vec!["/etc/a".into()]), ..file("/tmp/x") };
        assert_eq!(f.validate().unwrap_err().field, "fragments");
        assert!(File { symlink: Some(false), ..file("/tmp/x") }.validate().is_ok(), "the usual value");
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
