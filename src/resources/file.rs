//! `file`: a file or directory (path ending in `/`), its content or source, mode and owner.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::fswatch::Scope;
use super::{ApplyCtx, AutoEdgeInfo, Changes, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::engine::meta::Meta;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    #[default]
    Exists,
    Absent,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// Absolute path; a trailing `/` makes it a directory. Defaults to `name`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    /// Copy from this file (or directory, with `recurse`).
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub state: FileState,
    /// Octal permission bits as a string, e.g. "0644".
    #[serde(default)]
    pub mode: Option<String>,
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
}

pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(format!("`{s}` is not an octal mode like \"0644\""));
    }
    u32::from_str_radix(digits, 8).map_err(|e| e.to_string())
}

fn is_clean_absolute(p: &str) -> bool {
    let path = Path::new(p);
    path.is_absolute() && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

impl File {
    /// `path`, or else the name (without the `@@` that marks an exported resource).
    pub fn path_str(&self) -> &str {
        self.path.as_deref().unwrap_or_else(|| self.name.strip_prefix("@@").unwrap_or(&self.name))
    }
    pub fn is_dir(&self) -> bool {
        self.path_str().ends_with('/')
    }
    /// The path without its trailing slash.
    pub fn target(&self) -> PathBuf {
        let p = self.path_str();
        PathBuf::from(if p.len() > 1 { p.trim_end_matches('/') } else { p })
    }
    fn mode_bits(&self) -> Option<u32> {
        self.mode.as_deref().and_then(|m| parse_mode(m).ok())
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

    fn sync_check_apply(&self, recv_content: Option<&str>, apply: bool) -> ResResult<Changes> {
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
            changes.push(format!("create parent directory {}", parent.display()));
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
                    fs::create_dir(&path).map_err(|e| io("creating directory", e))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode.unwrap_or(0o755)))
                        .map_err(|e| io("chmod", e))?;
                    sync_dir(path.parent());
                }
                changes.push("create directory".into());
            }
            let mut wanted = HashSet::new();
            if let Some(src) = &self.source {
                if !apply && !is_dir {
                    changes.push(format!("copy tree from {src}"));
                } else {
                    copy_tree(Path::new(src), &path, self.force, apply, &mut wanted, &mut changes)?;
                }
            }
            if self.purge && (apply || is_dir) {
                purge(&path, &wanted, &self.keep, apply, &mut changes)?;
            }
        } else {
            let desired: Option<Vec<u8>> = match (recv_content, &self.content, &self.source) {
                (Some(c), _, _) => Some(c.as_bytes().to_vec()),
                (None, Some(c), _) => Some(c.as_bytes().to_vec()),
                (None, None, Some(src)) => {
                    Some(fs::read(src).map_err(|e| ResourceError::io(format!("reading source {src}"), e))?)
                }
                (None, None, None) => None,
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
                    let data = desired.unwrap_or_default();
                    if apply {
                        write_atomic(&path, &data, mode.unwrap_or(0o644), uid, gid)
                            .map_err(|e| io("writing", e))?;
                    }
                    changes.push(format!("create file ({} bytes)", data.len()));
                    return Ok(changes);
                }
                Some(md) if md.file_type().is_symlink() && !self.force => {
                    return Err(ResourceError::msg(format!(
                        "{} is a symlink; set `force: true` to replace it with a file",
                        path.display()
                    )));
                }
                Some(md) if md.file_type().is_symlink() => {
                    // The rename replaces the link itself, never its target; the new file gets
                    // a file's default mode, not the link's 0777.
                    let data = desired.unwrap_or_default();
                    if apply {
                        write_atomic(&path, &data, mode.unwrap_or(0o644), uid, gid)
                            .map_err(|e| io("writing", e))?;
                    }
                    changes.push(format!("replace symlink with a file ({} bytes)", data.len()));
                    return Ok(changes);
                }
                None => {
                    let data = desired.unwrap_or_default();
                    if apply {
                        write_atomic(&path, &data, mode.unwrap_or(0o644), uid, gid)
                            .map_err(|e| io("writing", e))?;
                    }
                    changes.push(format!("create file ({} bytes)", data.len()));
                    return Ok(changes);
                }
                Some(md) => {
                    if let Some(data) = desired {
                        let same = md.is_file()
                            && md.len() == data.len() as u64
                            && fs::read(&path).map_err(|e| io("reading", e))? == data;
                        if !same {
                            if apply {
                                // Keep the existing mode and owner unless params set them.
                                let m = mode.unwrap_or(md.mode() & 0o7777);
                                let u = uid.or(Some(md.uid()));
                                let g = gid.or(Some(md.gid()));
                                write_atomic(&path, &data, m, u, g).map_err(|e| io("writing", e))?;
                                return Ok(vec![format!(
                                    "replace content ({} -> {} bytes)",
                                    md.len(),
                                    data.len()
                                )]);
                            }
                            changes.push(format!("replace content ({} -> {} bytes)", md.len(), data.len()));
                        }
                    }
                }
            }
        }

        // Attributes of something that already existed (new files get them at creation).
        // Reuse the first stat when nothing was touched since.
        let now = match existing {
            Some(md) if changes.is_empty() => Ok(md),
            _ => fs::symlink_metadata(&path),
        };
        if let Ok(md) = now {
            if let Some(m) = mode
                && md.mode() & 0o7777 != m
            {
                if apply {
                    fs::set_permissions(&path, fs::Permissions::from_mode(m)).map_err(|e| io("chmod", e))?;
                }
                changes.push(format!("set mode {:04o} (was {:04o})", m, md.mode() & 0o7777));
            }
            let uid_change = uid.filter(|u| *u != md.uid());
            let gid_change = gid.filter(|g| *g != md.gid());
            if uid_change.is_some() || gid_change.is_some() {
                if apply {
                    std::os::unix::fs::lchown(&path, uid_change, gid_change).map_err(|e| io("chown", e))?;
                }
                changes.push(format!(
                    "set owner {}:{} (was {}:{})",
                    uid.unwrap_or(md.uid()),
                    gid.unwrap_or(md.gid()),
                    md.uid(),
                    md.gid()
                ));
            }
        }
        Ok(changes)
    }
}

/// Write `data` to `path` atomically: temp file in the same directory, mode and owner set,
/// fsync, rename over the target, then fsync the directory. A reader (or a crash) sees the
/// old content or the new, never a mix.
pub fn write_atomic(
    path: &Path,
    data: &[u8],
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{base}."))
        .rand_bytes(TEMP_RANDOM_LEN)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    let f = tmp.as_file();
    // chown before chmod: chown clears the setuid and setgid bits.
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(f, uid, gid)?;
    }
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(Some(dir));
    Ok(())
}

/// Remove the temp files a killed agent left behind for `path`
/// (`.<name>.<random letters and digits>.mgmt-tmp` beside it), once per path per process,
/// before the first write. Only this path's: other temp files in the directory belong to
/// other resources, which may be writing right now. Each directory is listed once (before
/// this process writes anything there), not once per file in it.
fn clean_stale_temps_once(path: &Path) {
    #[derive(Default)]
    struct Stale {
        /// Directory -> temp files found when it was first listed, not yet removed.
        by_dir: HashMap<PathBuf, Vec<String>>,
        cleaned: HashSet<PathBuf>,
    }
    static STALE: std::sync::Mutex<Option<Stale>> = std::sync::Mutex::new(None);
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else { return };
    let base = base.to_string_lossy();
    let mine: Vec<String> = {
        let mut guard = STALE.lock().unwrap_or_else(|e| e.into_inner());
        let stale = guard.get_or_insert_with(Stale::default);
        if !stale.cleaned.insert(path.to_path_buf()) {
            return;
        }
        let found = stale.by_dir.entry(dir.to_path_buf()).or_insert_with(|| {
            fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n.ends_with(TEMP_SUFFIX))
                .collect()
        });
        let (mine, rest): (Vec<String>, Vec<String>) =
            std::mem::take(found).into_iter().partition(|n| is_temp_of(n, &base));
        *found = rest;
        mine
    };
    for name in mine {
        let _ = fs::remove_file(dir.join(name));
    }
}

/// Whether `name` is one of `write_atomic`'s temp files for a file called `base`.
fn is_temp_of(name: &str, base: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(base))
        .and_then(|n| n.strip_prefix('.'))
        .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

const TEMP_RANDOM_LEN: usize = 6;
const TEMP_SUFFIX: &str = ".mgmt-tmp";

/// Make a rename or unlink in `dir` durable. Best effort: some filesystems refuse fsync on
/// directories.
///
/// Group commit: concurrent writers in one directory share an fsync, as long as it started
/// after their own change (an fsync already under way may have missed it). A thousand files
/// in one directory then cost a handful of directory fsyncs instead of a thousand.
fn sync_dir(dir: Option<&Path>) {
    let Some(dir) = dir else { return };
    let group = {
        static GROUPS: std::sync::Mutex<Option<HashMap<PathBuf, Arc<DirSync>>>> = std::sync::Mutex::new(None);
        let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        groups.get_or_insert_with(HashMap::new).entry(dir.to_path_buf()).or_default().clone()
    };
    group.sync(dir);
}

#[derive(Default)]
struct DirSync {
    state: std::sync::Mutex<DirSyncState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct DirSyncState {
    /// Number of fsyncs started / finished.
    started: u64,
    finished: u64,
    running: bool,
}

impl DirSync {
    fn sync(&self, dir: &Path) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The first fsync to start from now on covers our change.
        let needed = st.started + 1;
        loop {
            if st.finished >= needed {
                return;
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.running = true;
            st.started += 1;
            let this = st.started;
            drop(st);
            if let Ok(f) = fs::File::open(dir) {
                let _ = f.sync_all();
            }
            st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.finished = this;
            st.running = false;
            self.done.notify_all();
        }
    }
}

fn copy_tree(
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
        let entry = entry.map_err(|e| ResourceError::io(format!("listing source {}", src.display()), e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        wanted.insert(to.clone());
        let smd = fs::symlink_metadata(&from)
            .map_err(|e| ResourceError::io(format!("reading {}", from.display()), e))?;
        let dmd = fs::symlink_metadata(&to).ok();
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
                    fs::remove_file(&to)
                        .map_err(|e| ResourceError::io(format!("removing {}", to.display()), e))?;
                }
            }
            if dmd.as_ref().is_none_or(|d| !d.is_dir()) {
                if apply {
                    fs::create_dir(&to)
                        .map_err(|e| ResourceError::io(format!("creating {}", to.display()), e))?;
                    fs::set_permissions(&to, fs::Permissions::from_mode(smd.mode() & 0o7777))
                        .map_err(|e| ResourceError::io(format!("chmod {}", to.display()), e))?;
                }
                changes.push(format!("create directory {}", to.display()));
            }
            if apply || dmd.as_ref().is_some_and(|d| d.is_dir()) {
                copy_tree(&from, &to, force, apply, wanted, changes)?;
            }
        } else if smd.is_file() {
            let data =
                fs::read(&from).map_err(|e| ResourceError::io(format!("reading {}", from.display()), e))?;
            let same = match &dmd {
                Some(d) if d.is_file() => {
                    d.len() == data.len() as u64 && fs::read(&to).ok().as_deref() == Some(&data[..])
                }
                Some(d) if d.is_dir() => {
                    if !force {
                        return Err(ResourceError::msg(format!(
                            "{} is a directory; set `force: true`",
                            to.display()
                        )));
                    }
                    if apply {
                        fs::remove_dir_all(&to)
                            .map_err(|e| ResourceError::io(format!("removing {}", to.display()), e))?;
                    }
                    false
                }
                _ => false,
            };
            if !same {
                if apply {
                    write_atomic(&to, &data, smd.mode() & 0o7777, None, None)
                        .map_err(|e| ResourceError::io(format!("writing {}", to.display()), e))?;
                }
                changes.push(format!("copy {} ({} bytes)", to.display(), data.len()));
            } else if let Some(d) = &dmd
                && d.mode() & 0o7777 != smd.mode() & 0o7777
            {
                if apply {
                    fs::set_permissions(&to, fs::Permissions::from_mode(smd.mode() & 0o7777))
                        .map_err(|e| ResourceError::io(format!("chmod {}", to.display()), e))?;
                }
                changes.push(format!("set mode {:04o} on {}", smd.mode() & 0o7777, to.display()));
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
        changes.push(format!("purge {}", p.display()));
    }
    Ok(())
}

#[async_trait]
impl Resource for File {
    crate::resource_common!("file");

    fn validate(&self) -> Result<(), ValidationError> {
        let field = if self.path.is_some() { "path" } else { "name" };
        let p = self.path_str();
        if !is_clean_absolute(p) {
            return Err(ValidationError::new(field, format!("`{p}` must be an absolute path without `..`")));
        }
        if p == "/" {
            return Err(ValidationError::new(field, "refusing to manage `/`"));
        }
        if self.content.is_some() && self.source.is_some() {
            return Err(ValidationError::new("source", "`content` and `source` cannot both be set"));
        }
        if let Some(s) = &self.source
            && !is_clean_absolute(s)
        {
            return Err(ValidationError::new(
                "source",
                format!("`{s}` must be an absolute path without `..`"),
            ));
        }
        if let Some(m) = &self.mode {
            parse_mode(m).map_err(|e| ValidationError::new("mode", e))?;
        }
        for (field, v) in [("owner", &self.owner), ("group", &self.group)] {
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(ValidationError::new(field, "must not be empty"));
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
        let _src = match &self.source {
            Some(s) if self.recurse => Some(ctx.fs.subscribe(Scope::Tree(PathBuf::from(s)), waker).await),
            Some(s) => Some(ctx.fs.subscribe(Scope::File(PathBuf::from(s)), waker).await),
            None => None,
        };
        ctx.event();
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let this = self.clone();
        let recv = ctx.recv.get("content").cloned();
        tokio::task::spawn_blocking(move || this.sync_check_apply(recv.as_deref(), apply))
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
            requires.push(PathBuf::from(s));
        }
        AutoEdgeInfo { provides: vec![provides], requires }
    }

    fn recv_fields(&self) -> &'static [&'static str] {
        &["content"]
    }

    fn collect_pattern(&mut self, pattern: &str) -> Result<(), ValidationError> {
        if !is_clean_absolute(pattern) {
            return Err(ValidationError::new(
                "pattern",
                format!("`{pattern}` must be an absolute directory"),
            ));
        }
        let base = self.target().file_name().map(|s| s.to_os_string()).unwrap_or_default();
        let mut p = PathBuf::from(pattern).join(base);
        if self.is_dir() {
            p.push("");
        }
        self.path = Some(p.to_string_lossy().into_owned());
        Ok(())
    }
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
        }
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
    fn collect_pattern_moves_into_directory() {
        let mut f = file("/tmp/mgmtA/fA");
        f.collect_pattern("/tmp/mgmtB/").unwrap();
        assert_eq!(f.path.as_deref(), Some("/tmp/mgmtB/fA"));
    }

    #[test]
    fn an_exported_name_is_a_path_without_its_marker() {
        let f = File { name: "@@/tmp/a".into(), path: None, ..file("/unused") };
        assert_eq!(f.target(), PathBuf::from("/tmp/a"));
        assert!(f.validate().is_ok());
    }

    #[test]
    fn temp_names_match_only_their_own_file() {
        assert!(is_temp_of(".a.Xy12Z9.mgmt-tmp", "a"));
        assert!(!is_temp_of(".a.b.Xy12Z9.mgmt-tmp", "a"));
        assert!(!is_temp_of(".a..mgmt-tmp", "a"));
        assert!(!is_temp_of(".ab.Xy12Z9.mgmt-tmp", "a"));
        assert!(is_temp_of(".a.b.Xy12Z9.mgmt-tmp", "a.b"));
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
}
