//! `mount`: a file system mounted (or not) at the resource's name, with its line in
//! `/etc/fstab` kept in line. Watched with inotify on `/etc/fstab` and with the kernel's
//! mount-change notification (`/proc/self/mountinfo` polls with `POLLPRI` after every mount
//! or unmount in the namespace), so an outside `umount` is repaired at once.
//!
//! The pure parts (fstab lines, mountinfo lines, what to change) are plain functions below;
//! mounting and unmounting run `mount(8)` and `umount(8)`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::{ApplyCtx, AutoEdgeInfo, Changes, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::contract::Meta;

const FSTAB: &str = "/etc/fstab";
const MOUNTINFO: &str = "/proc/self/mountinfo";
/// The most of `/etc/fstab` read: a larger one is refused, not truncated (it is rewritten).
const MAX_FSTAB: u64 = 4 * 1024 * 1024;
/// The most of the mount table read (about 100 000 mounts).
const MAX_MOUNTINFO: u64 = 32 * 1024 * 1024;
/// How long `mount` or `umount` may take (a network file system may hang).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountState {
    Exists,
    Absent,
}

fn default_options() -> BTreeMap<String, String> {
    [("defaults".to_string(), String::new())].into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// The mount point: an absolute path.
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// Required, as upstream requires it.
    #[serde(default)]
    pub state: Option<MountState>,
    /// What is mounted: a device path, `UUID=...`, `LABEL=...`, `PARTUUID=...`,
    /// `PARTLABEL=...`, or a name (`tmpfs`, `server:/export`).
    #[serde(default)]
    pub device: String,
    /// The file system type.
    #[serde(default, rename = "type")]
    pub fstype: String,
    /// Mount options, `option: value` (an empty value for a bare flag).
    #[serde(default = "default_options")]
    pub options: BTreeMap<String, String>,
    /// fstab's dump frequency.
    #[serde(default)]
    pub freq: u32,
    /// fstab's fsck order.
    #[serde(default)]
    pub passno: u32,
}

/// One fstab entry (a line that is not a comment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FstabEntry {
    pub spec: String,
    pub file: String,
    pub vfstype: String,
    pub options: BTreeMap<String, String>,
    pub freq: u32,
    pub passno: u32,
}

/// fstab's and mountinfo's escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash) undone. Pure.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let n = b[i + 1..i + 4].iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0'));
            if let Ok(byte) = u8::try_from(n) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A field with the characters fstab separates on escaped. Pure.
fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// `a,b=c` as a map. Pure.
fn parse_options(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter(|o| !o.is_empty())
        .map(|o| match o.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (o.to_string(), String::new()),
        })
        .collect()
}

/// A map as `a,b=c` (sorted, so one map has one text). Pure.
fn format_options(options: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> =
        options.iter().map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }).collect();
    if parts.is_empty() { "defaults".into() } else { parts.join(",") }
}

/// One fstab line as an entry; `None` for comments, blank and malformed lines (kept as
/// they are). Pure.
pub fn parse_fstab_line(line: &str) -> Option<FstabEntry> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let f: Vec<&str> = t.split_whitespace().collect();
    if f.len() < 3 || f.len() > 6 {
        return None;
    }
    let num = |i: usize| f.get(i).map_or(Some(0), |s| s.parse().ok());
    Some(FstabEntry {
        spec: unescape(f[0]),
        file: unescape(f[1]),
        vfstype: unescape(f[2]),
        options: parse_options(&unescape(f.get(3).copied().unwrap_or("defaults"))),
        freq: num(4)?,
        passno: num(5)?,
    })
}

/// An entry as one fstab line (no newline). Pure.
pub fn format_fstab_line(e: &FstabEntry) -> String {
    format!(
        "{} {} {} {} {} {}",
        escape(&e.spec),
        escape(&e.file),
        escape(&e.vfstype),
        escape(&format_options(&e.options)),
        e.freq,
        e.passno
    )
}

/// The mount point of an entry, as compared: without a trailing `/`. Pure.
fn same_point(a: &str, b: &str) -> bool {
    let t = |s: &str| if s.len() > 1 { s.trim_end_matches('/').to_string() } else { s.to_string() };
    t(a) == t(b)
}

/// fstab with the lines for `point` made to be `want` (one line, where the first was, or
/// appended) or removed (`want` is `None`); every other line kept as it is. `None` when
/// nothing changes. Pure.
pub fn fstab_update(text: &str, point: &str, want: Option<&FstabEntry>) -> Option<String> {
    let mut out = Vec::new();
    let mut placed = false;
    let mut changed = false;
    for line in text.lines() {
        match parse_fstab_line(line) {
            Some(e) if same_point(&e.file, point) => match want {
                Some(w) if !placed => {
                    placed = true;
                    if &e == w {
                        out.push(line.to_string());
                    } else {
                        out.push(format_fstab_line(w));
                        changed = true;
                    }
                }
                _ => changed = true,
            },
            _ => out.push(line.to_string()),
        }
    }
    if let (Some(w), false) = (want, placed) {
        out.push(format_fstab_line(w));
        changed = true;
    }
    changed.then(|| out.join("\n") + "\n")
}

/// One mount of the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    pub point: String,
    /// The per-mount options (`rw,nosuid,relatime`).
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
}

/// One line of `/proc/self/mountinfo`: `id parent maj:min root point options [optional
/// fields...] - fstype source superoptions`. Pure.
pub fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let f: Vec<&str> = line.split(' ').collect();
    let sep = f.iter().position(|x| *x == "-")?;
    if sep < 6 || f.len() < sep + 3 {
        return None;
    }
    Some(MountInfo {
        point: unescape(f[4]),
        options: f[5].split(',').map(str::to_string).collect(),
        fstype: unescape(f[sep + 1]),
        source: unescape(f[sep + 2]),
    })
}

/// The mount visible at `point`: the last one listed there (the top of a stack). Pure.
pub fn mounted_at(table: &str, point: &str) -> Option<MountInfo> {
    table.lines().filter_map(parse_mountinfo_line).rfind(|m| same_point(&m.point, point))
}

/// The generic (VFS) flags an option list asks for, by the flag each option sets, as the
/// mount table lists them: `ro` or `rw`, and the `nosuid`, `nodev`, `noexec` and atime
/// flags. Options of the file system itself (`size=`, `mode=`) are not in this list. Pure.
fn vfs_flags_wanted(options: &BTreeMap<String, String>) -> Vec<(&'static str, bool)> {
    let mut want = Vec::new();
    for k in options.keys() {
        let flag = match k.as_str() {
            "ro" => ("ro", true),
            "rw" => ("ro", false),
            "nosuid" => ("nosuid", true),
            "suid" => ("nosuid", false),
            "nodev" => ("nodev", true),
            "dev" => ("nodev", false),
            "noexec" => ("noexec", true),
            "exec" => ("noexec", false),
            "noatime" => ("noatime", true),
            "relatime" => ("relatime", true),
            "strictatime" => ("strictatime", true),
            "nodiratime" => ("nodiratime", true),
            _ => continue,
        };
        want.push(flag);
    }
    want
}

/// The flags of `options` the mount does not have, as `flag` or `!flag`. Pure.
fn flags_differing(options: &BTreeMap<String, String>, mounted: &MountInfo) -> Vec<String> {
    vfs_flags_wanted(options)
        .into_iter()
        .filter_map(|(flag, on)| {
            let has = if flag == "ro" { mounted.options.iter().any(|o| o == "ro") } else { mounted.options.iter().any(|o| o == flag) };
            (has != on).then(|| if on { flag.to_string() } else { format!("!{flag}") })
        })
        .collect()
}

/// Why an option cannot be managed here, if it cannot. Pure.
fn unsupported_option(option: &str) -> Option<String> {
    match option {
        "bind" | "rbind" => Some(format!(
            "`{option}` is not supported: the mount table names a bind mount by the device beneath it, so it could never be seen to match"
        )),
        "move" | "remount" => Some(format!("`{option}` is an action, not a state a mount can be kept in")),
        _ => None,
    }
}

/// Options only fstab and `mount(8)` understand (not the kernel): left out of a remount.
fn userspace_only(option: &str) -> bool {
    matches!(option, "defaults" | "auto" | "noauto" | "nofail" | "user" | "nouser" | "users" | "owner" | "group" | "_netdev")
        || option.starts_with("x-")
        || option.starts_with("comment=")
}

impl Mount {
    fn state(&self) -> MountState {
        self.state.unwrap_or(MountState::Exists)
    }

    fn entry(&self) -> FstabEntry {
        FstabEntry {
            spec: self.device.clone(),
            file: self.name.clone(),
            vfstype: self.fstype.clone(),
            options: self.options.clone(),
            freq: self.freq,
            passno: self.passno,
        }
    }

    /// The device a mounted source should be: a `UUID=`-style spec through its
    /// `/dev/disk/by-*` link, a path canonicalized, anything else as written.
    fn resolved_device(&self) -> String {
        let by = |dir: &str, v: &str| PathBuf::from(format!("/dev/disk/{dir}/{v}"));
        let path = match self.device.split_once('=') {
            Some(("UUID", v)) => by("by-uuid", v),
            Some(("LABEL", v)) => by("by-label", v),
            Some(("PARTUUID", v)) => by("by-partuuid", v),
            Some(("PARTLABEL", v)) => by("by-partlabel", v),
            _ if self.device.starts_with('/') => PathBuf::from(&self.device),
            _ => return self.device.clone(),
        };
        std::fs::canonicalize(&path).map_or(self.device.clone(), |p| p.to_string_lossy().into_owned())
    }

    /// Whether the mounted source is our device (a loop device by its backing file).
    fn source_matches(&self, source: &str) -> bool {
        let want = self.resolved_device();
        if source == want || source == self.device {
            return true;
        }
        if let Some(loop_name) = source.strip_prefix("/dev/")
            && loop_name.starts_with("loop")
            && !loop_name.contains('/')
        {
            let backing = format!("/sys/block/{loop_name}/loop/backing_file");
            if let Ok(b) = std::fs::read_to_string(backing) {
                return b.trim() == want;
            }
        }
        false
    }

    fn fstab_check_apply(&self, apply: bool) -> ResResult<Option<String>> {
        let text = read_limited(Path::new(FSTAB), MAX_FSTAB)?.unwrap_or_default();
        let entry = self.entry();
        let want = (self.state() == MountState::Exists).then_some(&entry);
        let Some(new) = fstab_update(&text, &self.name, want) else { return Ok(None) };
        if apply {
            let meta = std::fs::metadata(FSTAB).ok();
            use std::os::unix::fs::MetadataExt;
            let mode = meta.as_ref().map_or(0o644, |m| m.mode() & 0o7777);
            crate::os::write_atomic(Path::new(FSTAB), new.as_bytes(), mode, meta.as_ref().map(|m| m.uid()), meta.as_ref().map(|m| m.gid()))
                .map_err(|e| ResourceError::io(format!("writing {FSTAB}"), e))?;
        }
        Ok(Some(match want {
            Some(e) => format!("set {FSTAB} line: {}", format_fstab_line(e)),
            None => format!("remove {} from {FSTAB}", self.name),
        }))
    }

    async fn mount_check_apply(&self, apply: bool) -> ResResult<Option<String>> {
        let table = read_limited(Path::new(MOUNTINFO), MAX_MOUNTINFO)?.unwrap_or_default();
        let mounted = mounted_at(&table, &self.name);
        match (self.state(), mounted) {
            (MountState::Absent, None) => Ok(None),
            (MountState::Absent, Some(m)) => {
                if apply {
                    run(&["umount", &self.name]).await?;
                }
                Ok(Some(format!("unmount {} ({} {})", self.name, m.fstype, m.source)))
            }
            (MountState::Exists, None) => {
                if apply {
                    if !Path::new(&self.name).is_dir() {
                        return Err(ResourceError::msg(format!(
                            "mount point {} is not a directory (a file resource can make it)",
                            self.name
                        )));
                    }
                    let opts = format_options(&self.options);
                    run(&["mount", "-t", &self.fstype, "-o", &opts, &self.device, &self.name]).await?;
                }
                Ok(Some(format!("mount {} {} at {}", self.fstype, self.device, self.name)))
            }
            (MountState::Exists, Some(m)) => self.mounted_check_apply(&m, apply).await,
        }
    }

    /// Something is mounted at the point: ours, with the wrong flags (remounted), or not
    /// ours (an error: unmounting what another owner mounted is not this resource's call).
    async fn mounted_check_apply(&self, m: &MountInfo, apply: bool) -> ResResult<Option<String>> {
        if m.fstype != self.fstype || !self.source_matches(&m.source) {
            return Err(ResourceError::msg(format!(
                "{} {} is mounted at {}, not {} {}: unmount it first",
                m.fstype, m.source, self.name, self.fstype, self.device
            )));
        }
        let differ = flags_differing(&self.options, m);
        if differ.is_empty() {
            return Ok(None);
        }
        if apply {
            let kernel: BTreeMap<String, String> =
                self.options.iter().filter(|(k, _)| !userspace_only(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            let opts = if kernel.is_empty() { "remount".to_string() } else { format!("remount,{}", format_options(&kernel)) };
            run(&["mount", "-o", &opts, &self.name]).await?;
        }
        Ok(Some(format!("remount {} ({})", self.name, differ.join(", "))))
    }
}

/// A file read whole up to `max` bytes; larger is an error, absent is `None`.
fn read_limited(path: &Path, max: u64) -> ResResult<Option<String>> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ResourceError::io(format!("reading {}", path.display()), e)),
    };
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf).map_err(|e| ResourceError::io(format!("reading {}", path.display()), e))?;
    if buf.len() as u64 > max {
        return Err(ResourceError::msg(format!("{} is larger than {max} bytes", path.display())));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Run `mount` or `umount`; its output is the error when it fails.
async fn run(argv: &[&str]) -> ResResult<()> {
    let mut c = tokio::process::Command::new(argv[0]);
    c.args(&argv[1..]).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(COMMAND_TIMEOUT, c.output())
        .await
        .map_err(|_| ResourceError::msg(format!("{} did not end within {COMMAND_TIMEOUT:?}", argv.join(" "))))?
        .map_err(|e| ResourceError::io(format!("running {}", argv[0]), e))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr).trim().chars().take(2000).collect::<String>();
    Err(ResourceError::Output { message: format!("{} failed ({})", argv.join(" "), out.status), output: text })
}

/// Best effort: systemd generates mount units from fstab, and reloads them only when asked.
async fn reload_systemd() {
    let reload = async { super::svc::manager(false).await.ok()?.reload().await.ok() };
    if tokio::time::timeout(Duration::from_secs(10), reload).await.ok().flatten().is_none() {
        debug!("no systemd to reload after changing {FSTAB}");
    }
}

/// Wait for the kernel's next mount-table change: `/proc/self/mountinfo` reports
/// `POLLPRI` after each, until it is read again. Calls `wake` on each.
async fn watch_mount_table(wake: &(dyn Fn() + Send + Sync)) -> ResResult<()> {
    use std::io::{Read, Seek};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    let file = std::fs::File::open(MOUNTINFO).map_err(|e| ResourceError::io(format!("opening {MOUNTINFO}"), e))?;
    // SAFETY: the AsyncFd owns the file, and the file is never replaced or closed while it
    // does (only rewound and read through `get_mut`).
    let mut fd = unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) }
        .map_err(|e| ResourceError::io(format!("watching {MOUNTINFO}"), e.into()))?;
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        // Reading to the end re-arms the notification.
        let f = fd.get_mut();
        f.rewind().map_err(|e| ResourceError::io(format!("reading {MOUNTINFO}"), e))?;
        let mut total = 0u64;
        while let Ok(n) = f.read(&mut sink) {
            total += n as u64;
            if n == 0 || total > MAX_MOUNTINFO {
                break;
            }
        }
        let mut guard =
            fd.ready_mut(Interest::PRIORITY).await.map_err(|e| ResourceError::io(format!("watching {MOUNTINFO}"), e))?;
        guard.clear_ready();
        wake();
    }
}

#[async_trait]
impl Resource for Mount {
    crate::resource_common!("mount");

    fn validate(&self) -> Result<(), ValidationError> {
        let n = &self.name;
        if !n.starts_with('/') || n.contains("//") || n.split('/').any(|c| c == "." || c == "..") {
            return Err(ValidationError::new("name", format!("`{n}` must be an absolute path without `//`, `.` or `..`")));
        }
        if n.trim_end_matches('/').is_empty() {
            return Err(ValidationError::new("name", "the root file system is not managed by a mount resource"));
        }
        if n.chars().any(char::is_control) {
            return Err(ValidationError::new("name", "must not hold control characters"));
        }
        let Some(state) = self.state else {
            return Err(ValidationError::new("state", "must be `exists` or `absent`"));
        };
        if state == MountState::Absent {
            return Ok(());
        }
        if self.device.is_empty() || self.device.chars().any(char::is_control) {
            return Err(ValidationError::new("device", "must be set (a device, UUID=..., or a name such as tmpfs), without control characters"));
        }
        if self.fstype.is_empty() || !self.fstype.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c)) {
            return Err(ValidationError::new("type", format!("`{}` is not a file system type (see /proc/filesystems)", self.fstype.escape_debug())));
        }
        if let Some(why) = self.options.keys().find_map(|k| unsupported_option(k)) {
            return Err(ValidationError::new("options", why));
        }
        for (k, v) in &self.options {
            let bad = |s: &str| s.contains(',') || s.chars().any(|c| c.is_whitespace() || c.is_control());
            if k.is_empty() || k.contains('=') || bad(k) || bad(v) {
                return Err(ValidationError::new("options", format!("`{k}: {v}` is not a mount option (no `,`, `=` in the name, or spaces)")));
            }
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let _fstab = ctx.fs.subscribe_settled(PathBuf::from(FSTAB), ctx.waker.clone()).await;
        let waker = ctx.waker.clone();
        ctx.event();
        watch_mount_table(&*waker).await
    }

    async fn check_apply(&self, _ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let mut changes = Vec::new();
        // fstab first: a mount made from a line that is there survives a reboot.
        if let Some(c) = self.fstab_check_apply(apply)? {
            if apply {
                reload_systemd().await;
            }
            changes.push(c.into());
        }
        if let Some(c) = self.mount_check_apply(apply).await? {
            changes.push(c.into());
        }
        Ok(changes)
    }

    fn autoedges(&self) -> AutoEdgeInfo {
        let mut point = PathBuf::from(&self.name);
        point.push("");
        let mut requires = vec![point];
        if self.device.starts_with('/') {
            requires.push(PathBuf::from(&self.device));
        }
        AutoEdgeInfo { provides: vec![], requires }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(file: &str) -> FstabEntry {
        FstabEntry {
            spec: "tmpfs".into(),
            file: file.into(),
            vfstype: "tmpfs".into(),
            options: parse_options("size=1m,noexec"),
            freq: 0,
            passno: 0,
        }
    }

    #[test]
    fn fstab_lines_parse_and_format_with_escapes() {
        let e = parse_fstab_line("UUID=ab /mnt/my\\040disk ext4 defaults,noatime 0 2").unwrap();
        assert_eq!(e.spec, "UUID=ab");
        assert_eq!(e.file, "/mnt/my disk");
        assert_eq!(e.options, parse_options("noatime,defaults"));
        assert_eq!(e.passno, 2);
        assert_eq!(format_fstab_line(&e), "UUID=ab /mnt/my\\040disk ext4 defaults,noatime 0 2");
        assert_eq!(parse_fstab_line("proc /proc proc").unwrap().freq, 0);
        for skip in ["", "  # comment", "only two", "a b c d x y"] {
            assert_eq!(parse_fstab_line(skip), None, "{skip}");
        }
    }

    #[test]
    fn an_update_keeps_every_other_line_and_reports_no_change_when_in_line() {
        let text = "# comment\n/dev/sda1 / ext4 defaults 0 1\ntmpfs /mnt/x tmpfs size=1m 0 0\n/dev/sdb /srv xfs defaults 0 0\n";
        let want = entry("/mnt/x");
        let new = fstab_update(text, "/mnt/x", Some(&want)).unwrap();
        assert_eq!(new, "# comment\n/dev/sda1 / ext4 defaults 0 1\ntmpfs /mnt/x tmpfs noexec,size=1m 0 0\n/dev/sdb /srv xfs defaults 0 0\n");
        assert_eq!(fstab_update(&new, "/mnt/x/", Some(&want)), None);
        let gone = fstab_update(&new, "/mnt/x", None).unwrap();
        assert_eq!(gone, "# comment\n/dev/sda1 / ext4 defaults 0 1\n/dev/sdb /srv xfs defaults 0 0\n");
        assert_eq!(fstab_update(&gone, "/mnt/x", None), None);
        assert_eq!(fstab_update("", "/mnt/y", Some(&entry("/mnt/y"))).unwrap(), "tmpfs /mnt/y tmpfs noexec,size=1m 0 0\n");
    }

    #[test]
    fn duplicate_lines_for_one_point_collapse_to_one() {
        let text = "tmpfs /mnt/x tmpfs noexec,size=1m 0 0\ntmpfs /mnt/x tmpfs ro 0 0\n";
        assert_eq!(fstab_update(text, "/mnt/x", Some(&entry("/mnt/x"))).unwrap(), "tmpfs /mnt/x tmpfs noexec,size=1m 0 0\n");
    }

    #[test]
    fn mountinfo_lines_parse_with_optional_fields() {
        let table = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                     90 22 0:50 / /mnt/my\\040x rw,nosuid,noexec shared:5 master:2 - tmpfs tmpfs rw,size=1024k\n\
                     91 90 0:51 / /mnt/my\\040x ro,relatime - tmpfs other rw\n";
        let m = mounted_at(table, "/mnt/my x").unwrap();
        assert_eq!((m.fstype.as_str(), m.source.as_str()), ("tmpfs", "other"));
        assert_eq!(m.options, vec!["ro", "relatime"]);
        assert_eq!(mounted_at(table, "/mnt").map(|m| m.point), None);
        assert_eq!(parse_mountinfo_line("garbage"), None);
        assert_eq!(parse_mountinfo_line("1 2 3 4 5 - x"), None);
    }

    #[test]
    fn only_generic_flags_are_compared_with_the_mount_table() {
        let m = parse_mountinfo_line("90 22 0:50 / /mnt/x rw,nosuid,relatime - tmpfs tmpfs rw,size=1024k").unwrap();
        assert!(flags_differing(&parse_options("size=1m,nosuid,rw"), &m).is_empty());
        assert_eq!(flags_differing(&parse_options("defaults,noexec,ro"), &m), vec!["noexec", "ro"]);
        assert_eq!(flags_differing(&parse_options("suid"), &m), vec!["!nosuid"]);
    }

    #[test]
    fn params_are_checked() {
        let mut m = Mount {
            name: "/mnt/x".into(),
            meta: Meta::default(),
            state: Some(MountState::Exists),
            device: "tmpfs".into(),
            fstype: "tmpfs".into(),
            options: default_options(),
            freq: 0,
            passno: 0,
        };
        assert!(m.validate().is_ok());
        for bad in ["mnt", "/", "/mnt//x", "/mnt/../etc"] {
            m.name = bad.into();
            assert_eq!(m.validate().unwrap_err().field, "name", "{bad}");
        }
        m.name = "/mnt/x".into();
        m.fstype = "ext4 rw".into();
        assert_eq!(m.validate().unwrap_err().field, "type");
        m.fstype = "tmpfs".into();
        m.options.insert("a,b".into(), String::new());
        assert_eq!(m.validate().unwrap_err().field, "options");
        m.options = parse_options("bind");
        assert!(m.validate().unwrap_err().message.contains("not supported"));
        m.state = None;
        assert_eq!(m.validate().unwrap_err().field, "state");
        let absent = Mount { state: Some(MountState::Absent), device: String::new(), fstype: String::new(), ..m };
        assert!(absent.validate().is_ok());
    }
}
