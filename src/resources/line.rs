//! `line`: a line (or a block of consecutive lines) present in a file, or absent from it.
//! The rest of the file is kept byte for byte; the file is rewritten atomically with its
//! mode and owner, and watched with inotify. `~/` and `~user/` paths are expanded at apply
//! time from `/etc/passwd`.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, AutoEdgeInfo, Change, Changes, Detail, ResResult, Resource, ResourceError, WatchCtx};
use crate::contract::path::AbsPath;
use crate::contract::{Meta, ValidationError};
use crate::os::fswatch::Scope;
use crate::os::{passwd, write_atomic};
use crate::text::diff::{Side, content_diff};

/// The largest file edited: a line belongs in a configuration file, not in a log.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The mode of a file created to hold the line, as upstream creates it.
const NEW_FILE_MODE: u32 = 0o600;

/// Whether the line must be in the file or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Exists,
    Absent,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// The file: absolute, or `~/...` (the agent's user's home) or `~user/...`.
    #[serde(default)]
    pub file: String,
    /// `exists` or `absent`; required, as upstream requires it.
    #[serde(default)]
    pub state: Option<State>,
    /// The line; several lines (separated by `\n`) are a block of consecutive lines. Empty:
    /// nothing to do.
    #[serde(default)]
    pub content: String,
    /// Trim whitespace (a trailing newline, say) from both ends of `content`.
    #[serde(default)]
    pub trim: bool,
}

impl Line {
    fn content(&self) -> &str {
        if self.trim { self.content.trim() } else { &self.content }
    }
}

/// Check a file param: absolute, or below a home directory (`~/x`, `~user/x`); a file, not
/// a directory. Pure.
pub fn validate_file(field: &'static str, file: &str) -> Result<(), ValidationError> {
    let err = |why: String| ValidationError::new(field, format!("`{}` {why}", file.escape_debug()));
    if file.is_empty() {
        return Err(ValidationError::new(field, "is required: the file to edit"));
    }
    let below = match file.strip_prefix('~') {
        Some(rest) => {
            let (user, below) = rest.split_once('/').ok_or_else(|| err("must name a file below the home".into()))?;
            if !user.is_empty() {
                validate_user(field, user)?;
            }
            format!("/{below}")
        }
        None => file.to_string(),
    };
    let path = AbsPath::parse(&below).map_err(|e| err(e.to_string()))?;
    if path.is_dir() || path.is_root() {
        return Err(err("must name a file, not a directory (no trailing `/`)".into()));
    }
    Ok(())
}

/// A user name as the shadow tools accept it: letters, digits, `.`, `_`, `-` (not first),
/// an optional final `$`, at most 32 bytes. Pure.
pub fn validate_user(field: &'static str, user: &str) -> Result<(), ValidationError> {
    let body = user.strip_suffix('$').unwrap_or(user);
    let ok = !body.is_empty()
        && user.len() <= 32
        && !body.starts_with('-')
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(ValidationError::new(field, format!("`{}` is not a valid user name", user.escape_debug()))) }
}

/// An account of `/etc/passwd`: what `~user` and file ownership need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The first account of `/etc/passwd`'s text that `want` picks. Pure.
pub fn find_account(passwd: &str, want: impl Fn(&Account) -> bool) -> Option<Account> {
    let accounts = passwd::parse_passwd(passwd).into_iter().filter(|e| e.home.starts_with('/'));
    accounts.map(|e| Account { name: e.name, uid: e.uid, gid: e.gid, home: e.home.into() }).find(|a| want(a))
}

/// Read `/etc/passwd` (bounded) and pick an account from it.
pub fn lookup_account(want: impl Fn(&Account) -> bool) -> ResResult<Option<Account>> {
    let text = passwd::read_bounded(Path::new(passwd::PASSWD))
        .map_err(|e| ResourceError::io(format!("reading {}", passwd::PASSWD), e))?;
    Ok(find_account(&text, want))
}

/// The account named `user` (`None`: the agent's own, by uid).
pub fn account(user: Option<&str>) -> ResResult<Account> {
    let found = match user {
        Some(name) => lookup_account(|a| a.name == name)?,
        None => {
            let uid = nix::unistd::getuid().as_raw();
            lookup_account(|a| a.uid == uid)?
        }
    };
    found.ok_or_else(|| match user {
        Some(name) => ResourceError::msg(format!("no user `{name}` in /etc/passwd")),
        None => ResourceError::msg("the agent's own user is not in /etc/passwd"),
    })
}

/// The file a (validated) file param names, its `~` expanded.
pub fn expand_file(file: &str) -> ResResult<PathBuf> {
    let Some(rest) = file.strip_prefix('~') else { return Ok(PathBuf::from(file)) };
    let (user, below) = rest.split_once('/').unwrap_or((rest, ""));
    let home = account((!user.is_empty()).then_some(user))?.home;
    Ok(home.join(below))
}

/// Watch a file below a home directory: `/etc/passwd` too, since the user may not exist yet
/// (a `user` of the same graph makes it) or its home may move; on each change of it the file
/// is looked up again.
pub async fn watch_in_home(ctx: &WatchCtx, resolve: impl Fn() -> ResResult<PathBuf>) -> ResResult<()> {
    let passwd_changed = Arc::new(tokio::sync::Notify::new());
    let (notify, wake) = (passwd_changed.clone(), ctx.waker.clone());
    let on_passwd: crate::os::fswatch::Waker = Arc::new(move || {
        notify.notify_one();
        wake();
    });
    let _passwd = ctx.fs.subscribe(Scope::File(PathBuf::from("/etc/passwd")), on_passwd).await;
    loop {
        // A bounded read of a small file: not worth a blocking thread.
        let _file = match resolve() {
            Ok(file) => Some(ctx.fs.subscribe(Scope::File(file), ctx.waker.clone()).await),
            Err(_) => None, // the check says why; looked up again when /etc/passwd changes
        };
        ctx.event();
        passwd_changed.notified().await;
    }
}

/// A file's lines without their `\n` (the last line may lack one), and whether it ended
/// with one. Pure.
fn split_lines(text: &[u8]) -> (Vec<&[u8]>, bool) {
    if text.is_empty() {
        return (Vec::new(), false);
    }
    let ends = text.ends_with(b"\n");
    let body = if ends { &text[..text.len() - 1] } else { text };
    (body.split(|&b| b == b'\n').collect(), ends)
}

/// Whether a file's line is the wanted one: a `\r` before the newline does not count.
fn same_line(have: &[u8], want: &str) -> bool {
    have.strip_suffix(b"\r").unwrap_or(have) == want.as_bytes()
}

/// Whether `block` starts at `lines[i]`.
fn block_at(lines: &[&[u8]], block: &[&str], i: usize) -> bool {
    lines.len() - i >= block.len() && block.iter().zip(&lines[i..]).all(|(w, h)| same_line(h, w))
}

/// What editing a file for a line does.
#[derive(Debug, PartialEq, Eq)]
pub struct Edit {
    pub text: Vec<u8>,
    /// Blocks removed (0 when the block was added).
    pub removed: usize,
}

/// The file's new content so that `block` (its lines) is in it (added at the end, after a
/// newline if the file lacks a final one) or absent from it (every occurrence removed, the
/// rest kept as it was); `None` when it already is. Pure.
pub fn edit(text: &[u8], block: &[&str], state: State) -> Option<Edit> {
    let (lines, ends) = split_lines(text);
    if block.is_empty() {
        return None;
    }
    match state {
        State::Exists => {
            if (0..lines.len()).any(|i| block_at(&lines, block, i)) {
                return None;
            }
            let mut out = text.to_vec();
            if !text.is_empty() && !ends {
                out.push(b'\n');
            }
            out.extend_from_slice(block.join("\n").as_bytes());
            out.push(b'\n');
            Some(Edit { text: out, removed: 0 })
        }
        State::Absent => {
            let (mut kept, mut removed, mut i) = (Vec::with_capacity(lines.len()), 0, 0);
            while i < lines.len() {
                if block_at(&lines, block, i) {
                    removed += 1;
                    i += block.len();
                } else {
                    kept.push(lines[i]);
                    i += 1;
                }
            }
            if removed == 0 {
                return None;
            }
            let mut out = kept.join(&b'\n');
            if ends && !kept.is_empty() {
                out.push(b'\n');
            }
            Some(Edit { text: out, removed })
        }
    }
}

/// Held while a file is read and rewritten for a line or a key: two resources editing one
/// file (two lines in one config) must not each write over what the other just wrote.
/// Edits are short (files are bounded), so one lock for all of them is enough.
pub(crate) static EDITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How a file is rewritten: its mode and owner kept, or, for a new one, these.
#[derive(Clone, Copy, Debug)]
pub struct NewFile {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Default for NewFile {
    fn default() -> Self {
        NewFile { mode: NEW_FILE_MODE, uid: None, gid: None }
    }
}

/// A file read for editing: its content, and its metadata when it exists. The path's last
/// component is never followed: a symlink there is refused, so a link planted in a user's
/// directory cannot point an agent running as root at another file.
pub struct Current {
    pub path: PathBuf,
    pub text: Vec<u8>,
    pub meta: Option<fs::Metadata>,
}

impl Current {
    pub fn read(path: &Path) -> ResResult<Current> {
        let io_err = |e| ResourceError::io(format!("reading {}", path.display()), e);
        // O_NONBLOCK: a FIFO put there must not wedge the check (it is refused below).
        let opened = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Current { path: path.to_path_buf(), text: Vec::new(), meta: None });
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(ResourceError::msg(format!("{} is a symlink: refusing to follow it", path.display())));
            }
            Err(e) => return Err(io_err(e)),
        };
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(ResourceError::msg(format!("{} is not a regular file", path.display())));
        }
        let mut text = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut text).map_err(io_err)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(ResourceError::msg(format!("{} is larger than {MAX_FILE_BYTES} bytes", path.display())));
        }
        Ok(Current { path: path.to_path_buf(), text, meta: Some(meta) })
    }

    /// Replace the content atomically, keeping mode and owner (or giving a new file `new`'s).
    pub fn write(&self, text: &[u8], new: NewFile) -> ResResult<()> {
        let (mode, uid, gid) = match &self.meta {
            Some(m) => (m.mode() & 0o7777, Some(m.uid()), Some(m.gid())),
            None => (new.mode, new.uid, new.gid),
        };
        write_atomic(&self.path, text, mode, uid, gid)
            .map_err(|e| ResourceError::io(format!("writing {}", self.path.display()), e))
    }

    /// The diff of a change, unless the file is sensitive (not world-readable, or said so).
    pub fn detail(&self, new: &[u8], sensitive: bool) -> Detail {
        let hidden = sensitive || self.meta.as_ref().is_none_or(|m| m.mode() & 0o004 == 0);
        let current = self.meta.as_ref().map(|_| Side::read(&self.text));
        Detail::Diff(content_diff(&self.path.display().to_string(), current, Side::read(new), hidden))
    }
}

/// The change line of an edit of `path` for a block of `n` lines.
pub fn edit_line(path: &Path, edit: &Edit, n: usize, created: bool) -> String {
    let lines = crate::text::count(n, "line");
    match (edit.removed, created) {
        (0, true) => format!("create {} with {lines}", path.display()),
        (0, false) => format!("add {lines} to {}", path.display()),
        (1, _) => format!("remove {lines} from {}", path.display()),
        (k, _) => format!("remove {lines} from {} ({k} times)", path.display()),
    }
}

impl Line {
    fn sync_check_apply(&self, apply: bool, detail: bool) -> ResResult<Changes> {
        let Some(state) = self.state else { return Ok(vec![]) };
        let content = self.content();
        if content.is_empty() {
            return Ok(vec![]);
        }
        let block: Vec<&str> = content.split('\n').collect();
        let _editing = EDITING.lock().unwrap_or_else(|e| e.into_inner());
        let current = Current::read(&expand_file(&self.file)?)?;
        let Some(edit) = edit(&current.text, &block, state) else { return Ok(vec![]) };
        let mut change = Change::new(edit_line(&current.path, &edit, block.len(), current.meta.is_none()));
        if detail {
            change = change.with(Some(current.detail(&edit.text, self.meta.sensitive)));
        }
        if apply {
            current.write(&edit.text, NewFile::default())?;
        }
        Ok(vec![change])
    }
}

#[async_trait]
impl Resource for Line {
    crate::resource_common!("line");

    fn validate(&self) -> Result<(), ValidationError> {
        validate_file("file", &self.file)?;
        if self.state.is_none() {
            return Err(ValidationError::new("state", "is required: `exists` or `absent`"));
        }
        if self.content.contains('\0') {
            return Err(ValidationError::new("content", "must not contain a NUL byte"));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        if self.file.starts_with('~') {
            return watch_in_home(&ctx, || expand_file(&self.file)).await;
        }
        let _sub = ctx.fs.subscribe(Scope::File(PathBuf::from(&self.file)), ctx.waker.clone()).await;
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let (this, detail) = (self.clone(), ctx.detail);
        tokio::task::spawn_blocking(move || this.sync_check_apply(apply, detail))
            .await
            .map_err(|e| ResourceError::msg(format!("line check panicked: {e}")))?
    }

    /// The file's own resource (or its directory's) is applied first. A `~` path is known
    /// only at apply time: it has no autoedge.
    fn autoedges(&self) -> AutoEdgeInfo {
        let requires = if self.file.starts_with('/') { vec![PathBuf::from(&self.file)] } else { Vec::new() };
        AutoEdgeInfo { provides: Vec::new(), requires }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edited(text: &str, block: &[&str], state: State) -> Option<(String, usize)> {
        edit(text.as_bytes(), block, state).map(|e| (String::from_utf8(e.text).unwrap(), e.removed))
    }

    #[test]
    fn a_line_is_added_at_the_end_once() {
        use State::Exists;
        assert_eq!(edited("", &["a"], Exists), Some(("a\n".into(), 0)));
        assert_eq!(edited("x\n", &["a"], Exists), Some(("x\na\n".into(), 0)));
        assert_eq!(edited("x", &["a"], Exists), Some(("x\na\n".into(), 0)), "never glued to the last line");
        assert_eq!(edited("x\na\ny", &["a"], Exists), None);
        assert_eq!(edited("a\r\n", &["a"], Exists), None, "a CRLF line is the same line");
        assert_eq!(edited("a\nc\nb\n", &["a", "b"], Exists), Some(("a\nc\nb\na\nb\n".into(), 0)));
        assert_eq!(edited("x\na\nb\n", &["a", "b"], Exists), None);
        assert_eq!(edited("x\n", &[], Exists), None);
    }

    #[test]
    fn every_occurrence_is_removed_and_the_rest_kept() {
        use State::Absent;
        assert_eq!(edited("a\nx\na\n", &["a"], Absent), Some(("x\n".into(), 2)));
        assert_eq!(edited("x\na", &["a"], Absent), Some(("x".into(), 1)));
        assert_eq!(edited("a\n", &["a"], Absent), Some(("".into(), 1)));
        assert_eq!(edited("x\ny\n", &["a"], Absent), None);
        assert_eq!(edited("a\nb\na\nc\n", &["a", "b"], Absent), Some(("a\nc\n".into(), 1)));
        assert_eq!(edited("p\r\na\r\nq\r\n", &["a"], Absent), Some(("p\r\nq\r\n".into(), 1)));
    }

    #[test]
    fn other_bytes_are_kept_as_they_are() {
        let text = b"\xff\xfe\nkeep me\n";
        let e = edit(text, &["keep me"], State::Absent).unwrap();
        assert_eq!(e.text, b"\xff\xfe\n");
    }

    #[test]
    fn a_symlink_is_refused_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (target, link) = (dir.path().join("t"), dir.path().join("l"));
        fs::write(&target, "x\n").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(Current::read(&link).err().unwrap().to_string().contains("symlink"));
        assert_eq!(Current::read(&target).unwrap().text, b"x\n");
        let missing = Current::read(&dir.path().join("m")).unwrap();
        assert!(missing.meta.is_none() && missing.text.is_empty());
    }

    #[test]
    fn passwd_lines_give_accounts_and_anything_else_nothing() {
        let text = "root:x:0:0:root:/root:/bin/bash\n# c\n+nis::::::\nbad:x:y:0::/h:/bin/sh\nal:x:1500:1600:A, L:/home/al:/bin/sh\nshort:x:1\n";
        let al = find_account(text, |a| a.name == "al").unwrap();
        assert_eq!((al.uid, al.gid, al.home.as_path()), (1500, 1600, Path::new("/home/al")));
        assert_eq!(find_account(text, |a| a.uid == 0).unwrap().name, "root");
        assert!(find_account(text, |a| a.name == "bad" || a.name == "short" || a.name.starts_with('+')).is_none());
    }

    #[test]
    fn files_are_absolute_or_below_a_home() {
        for ok in ["/etc/x", "~/.profile", "~al/.ssh/authorized_keys"] {
            assert!(validate_file("file", ok).is_ok(), "{ok}");
        }
        for bad in ["", "etc/x", "/etc/", "/", "~", "~/", "~bad user/x", "/a/../b", "~al"] {
            assert_eq!(validate_file("file", bad).unwrap_err().field, "file", "{bad}");
        }
    }

    #[test]
    fn state_is_required_and_spelled_as_upstream() {
        let line = |j: serde_json::Value| serde_json::from_value::<Line>(j);
        let no_state = line(serde_json::json!({"name": "l", "file": "/tmp/f", "content": "x"})).unwrap();
        assert_eq!(no_state.validate().unwrap_err().field, "state");
        assert!(line(serde_json::json!({"name": "l", "file": "/f", "state": "present"})).is_err());
        let ok = line(serde_json::json!({"name": "l", "file": "/f", "state": "absent", "trim": true})).unwrap();
        assert!(ok.validate().is_ok());
        assert_eq!(ok.autoedges().requires, vec![PathBuf::from("/f")]);
    }
}
