//! `ssh:authorized_key`: one key in a user's `~/.ssh/authorized_keys`, present (with its
//! options and comment) or absent. The key is validated when the graph is (base64 of a key
//! blob of the type named). Entries are matched by key, as sshd matches them: a key present
//! with other options or another comment is replaced in place (sshd obeys the first line with
//! a key, so a stale line beside ours would keep deciding), and `absent` removes every line
//! with the key. `.ssh` is created 0700 and the file 0600, owned by the user; the rest of
//! the file is kept, and it is rewritten atomically and watched with inotify.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use data_encoding::{BASE64, BASE64_NOPAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::line::{self, Account, Current, Edit, NewFile, State};
use super::{ApplyCtx, AutoEdgeInfo, Change, Changes, ResResult, Resource, ResourceError, WatchCtx};
use crate::contract::{Meta, ValidationError};
use crate::os::fswatch::Scope;

/// The largest key blob accepted (an RSA key of 16384 bits is about 2 KiB).
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Key types sshd accepts, and their certificates (`<type>-cert-v01@openssh.com`).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

fn is_key_type(t: &str) -> bool {
    let plain = t.strip_suffix(CERT_SUFFIX).map(|p| {
        // `sk-ssh-ed25519-cert-v01@openssh.com` is the certificate of `sk-ssh-ed25519@openssh.com`.
        if p.starts_with("sk-") { format!("{p}@openssh.com") } else { p.to_string() }
    });
    KEY_TYPES.contains(&plain.as_deref().unwrap_or(t))
}

/// One `authorized_keys` entry, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub options: Vec<String>,
    pub key_type: String,
    pub blob: Vec<u8>,
    pub comment: String,
}

impl Entry {
    /// The line, normalized: options joined by `,`, the key in padded base64.
    pub fn line(&self) -> String {
        let mut out = String::new();
        if !self.options.is_empty() {
            out.push_str(&self.options.join(","));
            out.push(' ');
        }
        out.push_str(&self.key_type);
        out.push(' ');
        out.push_str(&BASE64.encode(&self.blob));
        if !self.comment.is_empty() {
            out.push(' ');
            out.push_str(&self.comment);
        }
        out
    }

    /// The key's fingerprint as `ssh-keygen -l` shows it.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", BASE64_NOPAD.encode(&Sha256::digest(&self.blob)))
    }

    fn same_key(&self, other: &Entry) -> bool {
        self.key_type == other.key_type && self.blob == other.blob
    }
}

/// Read one length-prefixed field (`string` or `mpint` of RFC 4251) from `b`.
fn field<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let f = b.get(4..4 + len)?;
    *b = &b[4 + len..];
    Some(f)
}

/// Decode and check a key: base64 of a blob that starts with its type, `key_type`. A plain
/// key's blob is length-prefixed fields to its end (an ed25519 key's is 32 bytes). Pure.
pub fn decode_key(key_type: &str, b64: &str) -> Result<Vec<u8>, String> {
    if !is_key_type(key_type) {
        return Err(format!("`{}` is not a key type sshd accepts", key_type.escape_debug()));
    }
    if b64.len() > MAX_KEY_BYTES * 4 / 3 + 4 {
        return Err(format!("the key is longer than {MAX_KEY_BYTES} bytes"));
    }
    let blob = BASE64.decode(b64.as_bytes()).map_err(|e| format!("the key is not base64: {e}"))?;
    let mut rest = blob.as_slice();
    let inner = field(&mut rest).ok_or("the key is too short to hold its type")?;
    if inner != key_type.as_bytes() {
        return Err(format!("the key is a `{}` key, not `{key_type}`", String::from_utf8_lossy(inner).escape_debug()));
    }
    if key_type.ends_with(CERT_SUFFIX) {
        return Ok(blob);
    }
    let mut fields = Vec::new();
    while !rest.is_empty() {
        fields.push(field(&mut rest).ok_or("the key's data is cut short")?);
    }
    if key_type == "ssh-ed25519" && fields.first().is_none_or(|k| k.len() != 32) {
        return Err("an ssh-ed25519 key holds 32 bytes".into());
    }
    if fields.is_empty() {
        return Err("the key holds no key data".into());
    }
    Ok(blob)
}

/// The first token of `s` (options may hold quoted spaces) and the rest, trimmed.
fn first_token(s: &str) -> Result<(&str, &str), String> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((&s[..i], s[i..].trim_start())),
            _ => {}
        }
    }
    if quoted { Err("an option's quotes are not closed".into()) } else { Ok((s, "")) }
}

/// Split options at the commas outside quotes. Pure.
fn split_options(s: &str) -> Result<Vec<String>, String> {
    let (mut out, mut cur, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if quoted {
        return Err("an option's quotes are not closed".into());
    }
    out.push(cur);
    if out.iter().any(String::is_empty) {
        return Err("an option is empty".into());
    }
    Ok(out)
}

/// Check one option as the `options` param gives it: no unquoted blank or comma, quotes
/// closed, one line. Pure.
fn check_option(o: &str) -> Result<(), String> {
    if o.is_empty() || o.contains(['\n', '\r', '\0']) {
        return Err(format!("`{}` is not an option", o.escape_debug()));
    }
    match (first_token(o)?, split_options(o)?.len()) {
        ((_, ""), 1) => Ok(()),
        _ => Err(format!("`{}` holds a blank or a comma outside quotes", o.escape_debug())),
    }
}

/// Parse an `authorized_keys` line: `[options] type base64 [comment]`. Pure.
pub fn parse_entry(line: &str) -> Result<Entry, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Err("an empty line or a comment is not a key".into());
    }
    if line.contains(['\n', '\r', '\0']) {
        return Err("a key is one line".into());
    }
    let (first, rest) = first_token(line)?;
    // As sshd does: a line is read as a key first, as options and a key otherwise.
    let (options, rest) = if is_key_type(first) { (Vec::new(), line) } else { (split_options(first)?, rest) };
    let (key_type, rest) = rest.split_once(char::is_whitespace).ok_or("no key after the type")?;
    let rest = rest.trim_start();
    let (b64, comment) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let blob = decode_key(key_type, b64)?;
    Ok(Entry { options, key_type: key_type.into(), blob, comment: comment.trim().into() })
}

/// The file's new content with `want` present (in place of any line with its key, or
/// added) or absent (every line with its key removed); `None` when it already is. Lines that
/// are not keys are kept as they are. Pure.
pub fn edit_keys(text: &[u8], want: &Entry, state: State) -> Option<Edit> {
    let (lines, ends) = split_lines(text);
    let parsed: Vec<Option<Entry>> =
        lines.iter().map(|l| std::str::from_utf8(l).ok().and_then(|l| parse_entry(l).ok())).collect();
    let with_key: Vec<usize> = (0..lines.len()).filter(|&i| parsed[i].as_ref().is_some_and(|e| e.same_key(want))).collect();
    if state == State::Exists && with_key.len() == 1 && parsed[with_key[0]].as_ref() == Some(want) {
        return None;
    }
    if state == State::Absent && with_key.is_empty() {
        return None;
    }
    if state == State::Exists && with_key.is_empty() {
        return line::edit(text, &[&want.line()], State::Exists);
    }
    let wanted = want.line();
    let mut out: Vec<&[u8]> = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        match (with_key.contains(&i), state) {
            (false, _) => out.push(l),
            (true, State::Exists) if i == with_key[0] => out.push(wanted.as_bytes()),
            (true, _) => {}
        }
    }
    let mut text = out.join(&b'\n');
    if ends && !out.is_empty() || state == State::Exists {
        text.push(b'\n');
    }
    let removed = if state == State::Absent { with_key.len() } else { 0 };
    Some(Edit { text, removed })
}

/// A file's lines without their `\n`, and whether it ended with one. Pure.
fn split_lines(text: &[u8]) -> (Vec<&[u8]>, bool) {
    if text.is_empty() {
        return (Vec::new(), false);
    }
    let ends = text.ends_with(b"\n");
    let body = if ends { &text[..text.len() - 1] } else { text };
    (body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect(), ends)
}

/// The file's directory, if it is a `.ssh`.
fn ssh_dir(file: &Path) -> Option<&Path> {
    file.parent().filter(|d| d.file_name().is_some_and(|n| n == ".ssh"))
}

fn default_mkdir() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshAuthorizedKey {
    /// The entry, when neither `content` nor `type` and `key` give it.
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// `exists` or `absent`; required, as upstream requires it.
    #[serde(default)]
    pub state: Option<State>,
    /// The file; by default `~user/.ssh/authorized_keys` (`~/` without `user`).
    #[serde(default)]
    pub file: String,
    /// Whose file it is: its home, and the owner of what is created.
    #[serde(default)]
    pub user: String,
    /// The whole entry, `[options] type key [comment]`.
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default, rename = "type")]
    pub key_type: String,
    /// The key, base64 as in a `.pub` file.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub comment: String,
    /// Create the `.ssh` directory (0700, the user's) when it is missing and the home exists.
    #[serde(default = "default_mkdir")]
    pub mkdir: bool,
}

impl SshAuthorizedKey {
    /// The entry this resource wants, and the param it comes from. Pure.
    pub fn entry(&self) -> Result<Entry, ValidationError> {
        if !self.content.is_empty() {
            return parse_entry(&self.content).map_err(|e| ValidationError::new("content", e));
        }
        if self.key_type.is_empty() && self.key.is_empty() {
            return parse_entry(&self.name).map_err(|e| ValidationError::new("name", e));
        }
        for o in &self.options {
            check_option(o).map_err(|e| ValidationError::new("options", e))?;
        }
        if self.comment.contains(['\n', '\r', '\0']) {
            return Err(ValidationError::new("comment", "must be one line"));
        }
        let blob = decode_key(&self.key_type, &self.key).map_err(|e| {
            ValidationError::new(if is_key_type(&self.key_type) { "key" } else { "type" }, e)
        })?;
        Ok(Entry {
            options: self.options.clone(),
            key_type: self.key_type.clone(),
            blob,
            comment: self.comment.trim().to_string(),
        })
    }

    fn user(&self) -> Option<&str> {
        (!self.user.is_empty()).then_some(self.user.as_str())
    }

    /// The file and the user's account, looked up now.
    fn target(&self) -> ResResult<(PathBuf, Option<Account>)> {
        let account = self.user().map(|u| line::account(Some(u))).transpose()?;
        let file = match (&self.file, &account) {
            (f, _) if !f.is_empty() => line::expand_file(f)?,
            (_, Some(a)) => a.home.join(".ssh/authorized_keys"),
            (_, None) => line::account(None)?.home.join(".ssh/authorized_keys"),
        };
        Ok((file, account))
    }

    fn sync_check_apply(&self, apply: bool, detail: bool) -> ResResult<Changes> {
        let want = self.entry().map_err(|e| ResourceError::msg(e.message))?;
        let Some(state) = self.state else { return Ok(vec![]) };
        let (file, account) = self.target()?;
        let owner = NewFile { mode: 0o600, uid: account.as_ref().map(|a| a.uid), gid: account.as_ref().map(|a| a.gid) };
        let mut changes = Vec::new();
        if let Some(dir) = ssh_dir(&file)
            && fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(ResourceError::msg(format!("{} is a symlink: refusing to follow it", dir.display())));
        }
        if state == State::Exists && self.mkdir {
            self.make_ssh_dir(&file, owner, apply, &mut changes)?;
        }
        let _editing = line::EDITING.lock().unwrap_or_else(|e| e.into_inner());
        let current = Current::read(&file)?;
        let Some(edit) = edit_keys(&current.text, &want, state) else { return Ok(changes) };
        let what = format!("{} key {}", want.key_type, want.fingerprint());
        let line = match (state, current.meta.is_none(), edit.removed) {
            (State::Exists, true, _) => format!("create {} with {what}", file.display()),
            (State::Exists, false, _) => format!("set {what} in {}", file.display()),
            (State::Absent, _, n) => format!("remove {what} from {} ({})", file.display(), crate::text::count(n, "line")),
        };
        let mut change = Change::new(line);
        if detail {
            change = change.with(Some(current.detail(&edit.text, self.meta.sensitive)));
        }
        if apply {
            current.write(&edit.text, owner)?;
        }
        changes.push(change);
        Ok(changes)
    }

    /// `.ssh` (the file's directory, if it is named so) made 0700 for the user when missing
    /// and its parent, the home, exists.
    fn make_ssh_dir(&self, file: &Path, owner: NewFile, apply: bool, changes: &mut Changes) -> ResResult<()> {
        let Some(dir) = ssh_dir(file) else { return Ok(()) };
        match fs::symlink_metadata(dir) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(ResourceError::io(format!("looking at {}", dir.display()), e));
            }
            Err(_) => {}
        }
        if !dir.parent().is_some_and(Path::is_dir) {
            return Ok(());
        }
        if apply {
            let io_err = |e| ResourceError::io(format!("creating {}", dir.display()), e);
            fs::DirBuilder::new().mode(0o700).create(dir).map_err(io_err)?;
            if owner.uid.is_some() {
                std::os::unix::fs::chown(dir, owner.uid, owner.gid).map_err(io_err)?;
            }
        }
        changes.push(format!("create {} (0700)", dir.display()).into());
        Ok(())
    }
}

#[async_trait]
impl Resource for SshAuthorizedKey {
    crate::resource_common!("ssh:authorized_key");

    fn validate(&self) -> Result<(), ValidationError> {
        if self.state.is_none() {
            return Err(ValidationError::new("state", "is required: `exists` or `absent`"));
        }
        if let Some(u) = self.user() {
            line::validate_user("user", u)?;
        }
        if !self.file.is_empty() {
            line::validate_file("file", &self.file)?;
        }
        if !self.content.is_empty() {
            let also = [
                ("options", !self.options.is_empty()),
                ("type", !self.key_type.is_empty()),
                ("key", !self.key.is_empty()),
                ("comment", !self.comment.is_empty()),
            ];
            if let Some((field, _)) = also.iter().find(|(_, set)| *set) {
                return Err(ValidationError::new(field, "cannot be set with `content`, which holds the whole entry"));
            }
        }
        match (self.key_type.is_empty(), self.key.is_empty()) {
            (false, true) => return Err(ValidationError::new("key", "is required with `type`")),
            (true, false) => return Err(ValidationError::new("type", "is required with `key`")),
            _ => {}
        }
        self.entry().map(|_| ())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        if self.file.starts_with('/') {
            let _sub = ctx.fs.subscribe(Scope::File(PathBuf::from(&self.file)), ctx.waker.clone()).await;
            return ctx.first_event_then_wait().await;
        }
        line::watch_in_home(&ctx, || self.target().map(|(file, _)| file)).await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let (this, detail) = (self.clone(), ctx.detail);
        tokio::task::spawn_blocking(move || this.sync_check_apply(apply, detail))
            .await
            .map_err(|e| ResourceError::msg(format!("ssh:authorized_key check panicked: {e}")))?
    }

    /// An absolute `file`'s resource is applied first; a home is known only at apply time.
    fn autoedges(&self) -> AutoEdgeInfo {
        let requires = if self.file.starts_with('/') { vec![PathBuf::from(&self.file)] } else { Vec::new() };
        AutoEdgeInfo { provides: Vec::new(), requires }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ed25519 public key (of no one).
    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn res(j: serde_json::Value) -> SshAuthorizedKey {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn keys_are_base64_of_a_blob_of_their_type() {
        assert_eq!(decode_key("ssh-ed25519", ED).unwrap().len(), 51);
        assert!(decode_key("ssh-rsa", ED).unwrap_err().contains("is a `ssh-ed25519` key"));
        assert!(decode_key("ssh-ed25519", "AAAA!").unwrap_err().contains("not base64"));
        assert!(decode_key("ssh-ed25519", &ED[..ED.len() - 8]).is_err());
        assert!(decode_key("ssh-foo", ED).unwrap_err().contains("not a key type"));
        let short = BASE64.encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x01x");
        assert!(decode_key("ssh-ed25519", &short).unwrap_err().contains("32 bytes"));
    }

    #[test]
    fn entries_parse_with_options_and_comments_and_normalize() {
        let e = parse_entry(&format!("  ssh-ed25519   {ED}   al@host  ")).unwrap();
        assert_eq!((e.options.len(), e.comment.as_str()), (0, "al@host"));
        assert_eq!(e.line(), format!("ssh-ed25519 {ED} al@host"));
        let e = parse_entry(&format!("no-pty,command=\"echo a, b\" ssh-ed25519 {ED}")).unwrap();
        assert_eq!(e.options, ["no-pty", "command=\"echo a, b\""]);
        assert_eq!(e.line(), format!("no-pty,command=\"echo a, b\" ssh-ed25519 {ED}"));
        for bad in ["", "# c", "ssh-ed25519", "no-pty ssh-ed25519", "command=\"x ssh-ed25519 AAAA"] {
            assert!(parse_entry(bad).is_err(), "{bad}");
        }
        assert!(e.fingerprint().starts_with("SHA256:") && e.fingerprint().len() == 50);
    }

    #[test]
    fn a_key_is_matched_by_key_and_replaced_in_place() {
        let want = parse_entry(&format!("ssh-ed25519 {ED} new")).unwrap();
        let other = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAAQC7 x\n";
        let text = format!("# keys\n{other}no-pty ssh-ed25519 {ED} old\nssh-ed25519 {ED} again\n");
        let e = edit_keys(text.as_bytes(), &want, State::Exists).unwrap();
        assert_eq!(String::from_utf8(e.text.clone()).unwrap(), format!("# keys\n{other}{}\n", want.line()));
        assert_eq!(edit_keys(&e.text, &want, State::Exists), None);
        let gone = edit_keys(text.as_bytes(), &want, State::Absent).unwrap();
        assert_eq!((String::from_utf8(gone.text).unwrap(), gone.removed), (format!("# keys\n{other}"), 2));
        assert_eq!(edit_keys(b"# keys\n", &want, State::Absent), None);
        let added = edit_keys(b"# keys", &want, State::Exists).unwrap();
        assert_eq!(String::from_utf8(added.text).unwrap(), format!("# keys\n{}\n", want.line()));
    }

    #[test]
    fn params_are_exclusive_as_upstream_has_them() {
        let base = |extra: serde_json::Value| {
            let mut j = serde_json::json!({"name": "k", "state": "exists"});
            j.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            res(j).validate()
        };
        assert!(base(serde_json::json!({"type": "ssh-ed25519", "key": ED, "options": ["no-pty"]})).is_ok());
        assert!(base(serde_json::json!({"content": format!("ssh-ed25519 {ED}")})).is_ok());
        let field = |extra| base(extra).unwrap_err().field;
        assert_eq!(field(serde_json::json!({"content": format!("ssh-ed25519 {ED}"), "comment": "c"})), "comment");
        assert_eq!(field(serde_json::json!({"type": "ssh-ed25519"})), "key");
        assert_eq!(field(serde_json::json!({"key": ED})), "type");
        assert_eq!(field(serde_json::json!({"type": "ssh-rsa", "key": ED})), "key");
        assert_eq!(field(serde_json::json!({"type": "ssh-ed25519", "key": ED, "options": ["a b"]})), "options");
        assert_eq!(field(serde_json::json!({})), "name", "the name is the entry");
        assert_eq!(field(serde_json::json!({"user": "bad user", "content": format!("ssh-ed25519 {ED}")})), "user");
        let no_state = res(serde_json::json!({"name": format!("ssh-ed25519 {ED}")}));
        assert_eq!(no_state.validate().unwrap_err().field, "state");
        assert!(no_state.mkdir, "mkdir defaults to true");
    }
}
