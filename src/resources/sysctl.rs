//! `sysctl`: a kernel parameter, set at run time (`/proc/sys/...`) and/or persisted for the
//! next boot (a file in `/etc/sysctl.d/`). The persisted file is watched with inotify;
//! `/proc/sys` cannot be (the kernel sends no inotify events for it), so a run-time value
//! changed from outside is repaired on the next check: a refresh, a graph swap, or every
//! `meta.poll` seconds when that is set.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, AutoEdgeInfo, Changes, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::contract::Meta;

/// Where persisted values go unless `path` says otherwise.
const CONF_DIR: &str = "/etc/sysctl.d/";
/// The prefix of the file chosen when `path` is unset (read last, so it wins).
const CONF_PREFIX: &str = "99-";
/// The most a kernel parameter's value or a persisted file is read (they are tiny).
const MAX_READ: u64 = 64 * 1024;

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    /// The parameter, dotted: `net.ipv4.ip_forward`.
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// The value, as the kernel prints it back (several numbers are separated by spaces).
    #[serde(default)]
    pub value: String,
    /// Set it now, in `/proc/sys`.
    #[serde(default = "yes")]
    pub runtime: bool,
    /// Write it to a file read at boot.
    #[serde(default = "yes")]
    pub persist: bool,
    /// The persisted file; unset: `/etc/sysctl.d/99-<name>.conf`.
    #[serde(default)]
    pub path: Option<String>,
}

/// Why `name` is not a dotted kernel parameter name, if it is not. Strict, because it
/// becomes a path under `/proc/sys`: no `/`, no empty component (so no `..`), only the
/// characters parameter and interface names use. Pure.
fn bad_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.contains('/') {
        return Some(format!("`{name}` contains `/`: use the dotted form (net.ipv4.ip_forward)"));
    }
    if name.split('.').any(str::is_empty) {
        return Some(format!("`{name}` has an empty component (a leading, trailing or doubled `.`)"));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@' | '+');
    if let Some(c) = name.chars().find(|c| !ok(*c)) {
        return Some(format!("`{}` contains {c:?}, which no kernel parameter name has", name.escape_debug()));
    }
    None
}

/// A value as the kernel prints several of them (tab-separated) or as a user writes them
/// (spaces): the words, one space apart. Pure.
fn normalized(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The persisted file's content. Pure.
fn conf_content(name: &str, value: &str) -> String {
    format!("{name} = {value}\n")
}

fn read_bounded(path: &std::path::Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    match std::fs::File::open(path) {
        Ok(f) => {
            let mut s = String::new();
            f.take(MAX_READ).read_to_string(&mut s)?;
            Ok(Some(s))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Sysctl {
    /// `/proc/sys/` plus the name with dots as slashes.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from("/proc/sys").join(self.name.replace('.', "/"))
    }

    pub fn conf_path(&self) -> PathBuf {
        match &self.path {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(format!("{CONF_DIR}{CONF_PREFIX}{}.conf", self.name)),
        }
    }

    fn runtime_check_apply(&self, apply: bool) -> ResResult<Option<String>> {
        let path = self.proc_path();
        let have = read_bounded(&path).map_err(|e| ResourceError::io(format!("reading {}", path.display()), e))?;
        let Some(have) = have else {
            return Err(ResourceError::msg(format!("no kernel parameter {} ({} does not exist)", self.name, path.display())));
        };
        let have = normalized(&have);
        if have == normalized(&self.value) {
            return Ok(None);
        }
        if apply {
            std::fs::write(&path, format!("{}\n", self.value))
                .map_err(|e| ResourceError::io(format!("writing {} to {}", self.value, path.display()), e))?;
        }
        Ok(Some(format!("set {} to {} (was {have})", self.name, self.value)))
    }

    fn persist_check_apply(&self, apply: bool) -> ResResult<Option<String>> {
        let path = self.conf_path();
        let want = conf_content(&self.name, &self.value);
        let have = read_bounded(&path).map_err(|e| ResourceError::io(format!("reading {}", path.display()), e))?;
        if have.as_deref() == Some(want.as_str()) {
            return Ok(None);
        }
        if apply {
            crate::os::write_atomic(&path, want.as_bytes(), 0o644, None, None)
                .map_err(|e| ResourceError::io(format!("writing {}", path.display()), e))?;
        }
        let verb = if have.is_some() { "rewrite" } else { "create" };
        Ok(Some(format!("{verb} {} ({} = {})", path.display(), self.name, self.value)))
    }
}

#[async_trait]
impl Resource for Sysctl {
    crate::resource_common!("sysctl");

    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(why) = bad_name(&self.name) {
            return Err(ValidationError::new("name", why));
        }
        if self.value.is_empty() {
            return Err(ValidationError::new("value", "must not be empty"));
        }
        if self.value.trim() != self.value || self.value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ValidationError::new("value", "must not begin or end with whitespace, nor hold a line break"));
        }
        if !self.runtime && !self.persist {
            return Err(ValidationError::new("runtime", "`runtime` and `persist` are both false: nothing to do"));
        }
        if let Some(p) = &self.path {
            if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
                return Err(ValidationError::new("path", format!("`{p}` must be absolute, without `..`")));
            }
            if !p.ends_with(".conf") {
                return Err(ValidationError::new("path", format!("`{p}` must end with .conf (sysctl reads only those)")));
            }
        }
        Ok(())
    }

    /// The persisted file, with inotify. `/proc/sys` sends no events: see the module doc.
    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let _conf =
            if self.persist { Some(ctx.fs.subscribe_settled(self.conf_path(), ctx.waker.clone()).await) } else { None };
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, _ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let mut changes = Vec::new();
        // The run-time value first: a value the kernel refuses is then never persisted.
        if self.runtime
            && let Some(c) = self.runtime_check_apply(apply)?
        {
            changes.push(c.into());
        }
        if self.persist
            && let Some(c) = self.persist_check_apply(apply)?
        {
            changes.push(c.into());
        }
        Ok(changes)
    }

    fn autoedges(&self) -> AutoEdgeInfo {
        if !self.persist {
            return AutoEdgeInfo::default();
        }
        let conf = self.conf_path();
        let mut dir = conf.parent().map(PathBuf::from).unwrap_or_default();
        dir.push("");
        AutoEdgeInfo { provides: vec![conf], requires: vec![dir] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(name: &str, value: &str) -> Sysctl {
        Sysctl { name: name.into(), meta: Meta::default(), value: value.into(), runtime: true, persist: true, path: None }
    }

    #[test]
    fn names_map_to_proc_sys_and_are_checked_strictly() {
        assert_eq!(sysctl("net.ipv4.ip_forward", "1").proc_path(), PathBuf::from("/proc/sys/net/ipv4/ip_forward"));
        assert!(sysctl("net.ipv4.conf.lo.rp_filter", "1").validate().is_ok());
        assert!(sysctl("net.ipv6.conf.eth0-1.forwarding", "1").validate().is_ok());
        for bad in ["", "net/ipv4/ip_forward", "net..ipv4", ".net", "net.", "net.ipv4.ip forward", "a=b", "net.*"] {
            assert_eq!(sysctl(bad, "1").validate().unwrap_err().field, "name", "{bad}");
        }
    }

    #[test]
    fn values_and_paths_are_checked() {
        assert_eq!(sysctl("a.b", "").validate().unwrap_err().field, "value");
        assert_eq!(sysctl("a.b", " 1").validate().unwrap_err().field, "value");
        assert_eq!(sysctl("a.b", "1\n2").validate().unwrap_err().field, "value");
        let mut s = sysctl("a.b", "1");
        s.path = Some("/etc/sysctl.d/x.txt".into());
        assert_eq!(s.validate().unwrap_err().field, "path");
        s.path = Some("/etc/sysctl.d/../x.conf".into());
        assert_eq!(s.validate().unwrap_err().field, "path");
        s.path = None;
        s.runtime = false;
        s.persist = false;
        assert_eq!(s.validate().unwrap_err().field, "runtime");
    }

    #[test]
    fn values_compare_by_words_and_persist_as_upstream_writes_them() {
        assert_eq!(normalized("4096\t87380\t6291456\n"), normalized("4096 87380  6291456"));
        assert_eq!(conf_content("net.ipv4.ip_forward", "1"), "net.ipv4.ip_forward = 1\n");
        assert_eq!(sysctl("net.ipv4.ip_forward", "1").conf_path(), PathBuf::from("/etc/sysctl.d/99-net.ipv4.ip_forward.conf"));
    }
}
