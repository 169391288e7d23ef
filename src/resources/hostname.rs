//! `hostname`: the static, transient and pretty hostnames, through systemd-hostnamed
//! (`org.freedesktop.hostname1` on the system bus). Watched through hostnamed's
//! `PropertiesChanged` signal, inotify on the files it keeps them in (`/etc/hostname`,
//! `/etc/machine-info`) and the kernel's notification of a new hostname.

use std::path::PathBuf;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use zbus_systemd::hostname1::HostnamedProxy;
use zbus_systemd::zbus;

use super::{ApplyCtx, Changes, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::contract::Meta;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hostname {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// The value of each of the three that is not set (empty: the name).
    #[serde(default)]
    pub hostname: String,
    /// Free-form, for people (`/etc/machine-info`); empty: leave it alone.
    #[serde(default)]
    pub pretty_hostname: Option<String>,
    /// `/etc/hostname`; empty: leave it alone.
    #[serde(default)]
    pub static_hostname: Option<String>,
    /// The kernel's hostname; empty: leave it alone.
    #[serde(default)]
    pub transient_hostname: Option<String>,
}

/// The three hostnames hostnamed keeps, in the order they are applied: the static one first,
/// since setting it sets the kernel's too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Static,
    Transient,
    Pretty,
}

impl Which {
    const ALL: [Which; 3] = [Which::Static, Which::Transient, Which::Pretty];
    fn param(self) -> &'static str {
        match self {
            Which::Static => "static_hostname",
            Which::Transient => "transient_hostname",
            Which::Pretty => "pretty_hostname",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Which::Static => "static hostname",
            Which::Transient => "transient hostname",
            Which::Pretty => "pretty hostname",
        }
    }
}

/// The longest hostname the kernel keeps (`HOST_NAME_MAX`).
const HOST_NAME_MAX: usize = 64;
/// The longest pretty hostname this kind sets.
const PRETTY_MAX: usize = 255;

/// Why `h` is not a hostname hostnamed accepts: 1 to 64 of `A-Z a-z 0-9 - _ .`, dots only
/// between labels. Pure.
pub fn bad_hostname(h: &str) -> Option<String> {
    if h.len() > HOST_NAME_MAX {
        return Some(format!("`{}` is longer than {HOST_NAME_MAX} bytes", h.escape_debug()));
    }
    if let Some(c) = h.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Some(format!("`{}` contains {c:?}; a hostname has only A-Z a-z 0-9 - _ .", h.escape_debug()));
    }
    if h.starts_with('.') || h.ends_with('.') || h.contains("..") {
        return Some(format!("`{h}` has an empty label (dots only go between labels)"));
    }
    None
}

impl Hostname {
    /// What each hostname should be (`None`: leave it alone), and the param it comes from.
    /// Pure.
    pub fn wanted(&self, which: Which) -> Option<(&str, &'static str)> {
        let own = match which {
            Which::Static => &self.static_hostname,
            Which::Transient => &self.transient_hostname,
            Which::Pretty => &self.pretty_hostname,
        };
        let (value, field) = match own {
            Some(v) => (v.as_str(), which.param()),
            None if !self.hostname.is_empty() => (self.hostname.as_str(), "hostname"),
            None => (self.name.as_str(), "name"),
        };
        (!value.is_empty()).then_some((value, field))
    }
}

/// The system bus, one connection per process.
async fn bus() -> ResResult<zbus::Connection> {
    static SYSTEM: OnceCell<zbus::Connection> = OnceCell::const_new();
    SYSTEM
        .get_or_try_init(zbus::Connection::system)
        .await
        .cloned()
        .map_err(|e| ResourceError::msg(format!("no hostnamed: cannot connect to the system bus: {e}")))
}

fn dbus(what: &'static str) -> impl Fn(zbus::Error) -> ResourceError {
    move |e| ResourceError::msg(format!("{what}: {e}"))
}

/// hostnamed's proxy; reading its static hostname fails clearly where hostnamed is not
/// there (not installed, or no systemd to start it).
async fn hostnamed() -> ResResult<HostnamedProxy<'static>> {
    let p = HostnamedProxy::builder(&bus().await?)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(dbus("hostnamed proxy"))?;
    p.static_hostname()
        .await
        .map_err(|e| ResourceError::msg(format!("no hostnamed (org.freedesktop.hostname1) on the system bus: {e}")))?;
    Ok(p)
}

async fn read(p: &HostnamedProxy<'static>, which: Which) -> ResResult<String> {
    match which {
        Which::Static => p.static_hostname().await,
        Which::Transient => p.hostname().await,
        Which::Pretty => p.pretty_hostname().await,
    }
    .map_err(|e| ResourceError::msg(format!("reading the {}: {e}", which.label())))
}

async fn set(p: &HostnamedProxy<'static>, which: Which, value: &str) -> ResResult<()> {
    let value = value.to_string();
    match which {
        Which::Static => p.set_static_hostname(value, false).await,
        Which::Transient => p.set_hostname(value, false).await,
        Which::Pretty => p.set_pretty_hostname(value, false).await,
    }
    .map_err(|e| ResourceError::msg(format!("setting the {}: {e}", which.label())))
}

/// Why hostnamed will not keep this transient hostname: while a static hostname is set, the
/// kernel's hostname is the static one. Pure.
fn transient_blocked(want: &str, static_now: &str) -> Option<String> {
    (!static_now.is_empty() && static_now != want).then(|| {
        format!(
            "the transient hostname `{want}` cannot be kept: hostnamed keeps the kernel's hostname at the static hostname `{static_now}` while one is set"
        )
    })
}

/// Wakes the watcher when the kernel's hostname changes (`sethostname`, even bypassing
/// hostnamed), via `poll` on `/proc/sys/kernel/hostname`, from a thread of its own; the
/// thread ends when this is dropped.
struct KernelHostnameWatch {
    /// The write end of a pipe the thread also polls: dropping it (a hang-up) ends the thread.
    _stop: std::os::fd::OwnedFd,
}

impl KernelHostnameWatch {
    fn start(wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> Option<Self> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/proc/sys/kernel/hostname").ok()?;
        // Close-on-exec: a command started meanwhile must not hold the write end open.
        let (stop_rx, stop) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        std::thread::Builder::new()
            .name("hostname-watch".into())
            .spawn(move || {
                loop {
                    // The kernel reports a change once per open file (each report re-arms it).
                    let mut fds = [
                        libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLPRI | libc::POLLERR, revents: 0 },
                        libc::pollfd { fd: stop_rx.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                    ];
                    // SAFETY: two valid pollfds, alive for the call.
                    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                    if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    if n < 0 || fds[1].revents != 0 {
                        return;
                    }
                    if fds[0].revents != 0 {
                        wake();
                    }
                }
            })
            .ok()?;
        Some(KernelHostnameWatch { _stop: stop })
    }
}

#[async_trait]
impl Resource for Hostname {
    crate::resource_common!("hostname");

    fn validate(&self) -> Result<(), ValidationError> {
        if Which::ALL.iter().all(|w| self.wanted(*w).is_none()) {
            return Err(ValidationError::new("hostname", "nothing to manage: every hostname is empty"));
        }
        for which in [Which::Static, Which::Transient] {
            if let Some((h, field)) = self.wanted(which)
                && let Some(why) = bad_hostname(h)
            {
                return Err(ValidationError::new(field, format!("as the {}: {why}", which.label())));
            }
        }
        if let Some((p, field)) = self.wanted(Which::Pretty)
            && (p.len() > PRETTY_MAX || p.chars().any(char::is_control))
        {
            return Err(ValidationError::new(
                field,
                format!("as the pretty hostname: at most {PRETTY_MAX} bytes, without control characters"),
            ));
        }
        if let (Some((s, _)), Some((t, _))) = (self.wanted(Which::Static), self.wanted(Which::Transient))
            && s != t
        {
            return Err(ValidationError::new("transient_hostname", transient_blocked(t, s).unwrap_or_default()));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let conn = bus().await?;
        // Any sender: hostnamed comes and goes (it exits when idle), and a spurious wake only
        // re-checks.
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path("/org/freedesktop/hostname1")
            .build()
            .map_err(dbus("the hostnamed signal rule"))?;
        let mut signals =
            zbus::MessageStream::for_match_rule(rule, &conn, None).await.map_err(dbus("watching hostnamed"))?;
        let mut _files = Vec::new();
        for f in ["/etc/hostname", "/etc/machine-info"] {
            _files.push(ctx.fs.subscribe_settled(PathBuf::from(f), ctx.waker.clone()).await);
        }
        let _kernel = KernelHostnameWatch::start(ctx.waker.clone());
        ctx.event();
        while signals.next().await.is_some() {
            ctx.event();
        }
        Err(ResourceError::msg("the connection to the system bus ended"))
    }

    async fn check_apply(&self, _ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let p = hostnamed().await?;
        let mut changes = Vec::new();
        for which in Which::ALL {
            let Some((want, _)) = self.wanted(which) else { continue };
            let have = read(&p, which).await?;
            if have == want {
                continue;
            }
            if which == Which::Transient {
                // Without apply, the static hostname this check would have set.
                let static_now = match (apply, self.wanted(Which::Static)) {
                    (false, Some((s, _))) => s.to_string(),
                    _ => read(&p, Which::Static).await?,
                };
                if let Some(why) = transient_blocked(want, &static_now) {
                    return Err(ResourceError::msg(why));
                }
            }
            if apply {
                set(&p, which, want).await?;
            }
            changes.push(format!("{} {have:?} -> {want:?}", which.label()).into());
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(j: serde_json::Value) -> Hostname {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn hostname_and_name_fill_in_what_is_not_set() {
        let h = host(serde_json::json!({"name": "web1", "pretty_hostname": "Web one"}));
        assert_eq!(h.wanted(Which::Static), Some(("web1", "name")));
        assert_eq!(h.wanted(Which::Pretty), Some(("Web one", "pretty_hostname")));
        let h = host(serde_json::json!({"name": "Some Watcher", "hostname": "db.example.com", "transient_hostname": ""}));
        assert_eq!(h.wanted(Which::Static), Some(("db.example.com", "hostname")));
        assert_eq!(h.wanted(Which::Transient), None, "empty: left alone");
        assert!(h.validate().is_ok());
    }

    #[test]
    fn bad_hostnames_are_refused_with_the_field_they_come_from() {
        let e = host(serde_json::json!({"name": "Hostname Watcher"})).validate().unwrap_err();
        assert_eq!(e.field, "name");
        let e = host(serde_json::json!({"name": "x", "static_hostname": "a..b"})).validate().unwrap_err();
        assert_eq!(e.field, "static_hostname");
        let long = "a".repeat(65);
        assert!(bad_hostname(&long).is_some());
        assert!(bad_hostname(&"a".repeat(64)).is_none());
        assert!(bad_hostname("under_score-1.example").is_none());
        let e = host(serde_json::json!({"name": "x", "pretty_hostname": "a\nb"})).validate().unwrap_err();
        assert_eq!(e.field, "pretty_hostname");
        let empty = serde_json::json!({"name": "", "static_hostname": "", "transient_hostname": "", "pretty_hostname": ""});
        assert_eq!(host(empty).validate().unwrap_err().field, "hostname");
    }

    #[test]
    fn a_transient_hostname_other_than_the_static_one_is_refused() {
        let e = host(serde_json::json!({"name": "a", "transient_hostname": "b"})).validate().unwrap_err();
        assert_eq!(e.field, "transient_hostname");
        assert!(e.message.contains("static hostname `a`"), "{}", e.message);
        assert!(host(serde_json::json!({"name": "a", "static_hostname": "", "transient_hostname": "b"})).validate().is_ok());
        assert!(transient_blocked("b", "").is_none());
        assert!(transient_blocked("b", "b").is_none());
        assert!(transient_blocked("b", "a").is_some());
    }
}
