//! `svc`: a systemd service kept running or stopped, enabled or disabled, over systemd's D-Bus
//! API (no `systemctl`). Watched through systemd's signals: a service stopped or disabled
//! from outside is repaired at once. A changed unit file (systemd's `NeedDaemonReload`) makes
//! the next check reload systemd and restart the service; so does a refresh.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use zbus_systemd::systemd1::{ManagerProxy, ServiceProxy, UnitProxy};
use zbus_systemd::zbus;

use super::{ApplyCtx, AutoEdgeInfo, Changes, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::contract::Meta;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SvcState {
    Running,
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Startup {
    Enabled,
    Disabled,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Svc {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// Unset: leave it alone.
    #[serde(default)]
    pub state: Option<SvcState>,
    /// Unset: leave it alone.
    #[serde(default)]
    pub startup: Option<Startup>,
    /// The user's session bus (`systemctl --user`) instead of the system bus.
    #[serde(default)]
    pub session: bool,
}

/// One connection per bus per process, shared by every svc resource.
pub(crate) async fn bus(session: bool) -> ResResult<zbus::Connection> {
    static SYSTEM: OnceCell<zbus::Connection> = OnceCell::const_new();
    static SESSION: OnceCell<zbus::Connection> = OnceCell::const_new();
    let (cell, which) = if session { (&SESSION, "session") } else { (&SYSTEM, "system") };
    cell.get_or_try_init(|| async {
        if session { zbus::Connection::session().await } else { zbus::Connection::system().await }
    })
    .await
    .cloned()
    .map_err(|e| ResourceError::msg(format!("no systemd: cannot connect to the {which} bus: {e}")))
}

/// systemd's manager on the system (or session) bus; an error where no systemd is there.
pub(crate) async fn manager(session: bool) -> ResResult<ManagerProxy<'static>> {
    let conn = bus(session).await?;
    let m = ManagerProxy::new(&conn).await.map_err(dbus("systemd manager"))?;
    // Fails where the bus has no systemd on it.
    m.version().await.map_err(|e| ResourceError::msg(format!("no systemd on the bus: {e}")))?;
    Ok(m)
}

pub(crate) fn dbus(what: &str) -> impl Fn(zbus::Error) -> ResourceError + '_ {
    move |e| ResourceError::msg(format!("{what}: {e}"))
}

impl Svc {
    /// The unit name, `.service` implied.
    pub fn unit(&self) -> String {
        if self.name.contains('.') { self.name.clone() } else { format!("{}.service", self.name) }
    }

    /// Where systemd looks for the unit file.
    fn unit_file_paths(&self) -> Vec<PathBuf> {
        let dirs: &[&str] = if self.session {
            &["/etc/systemd/user", "/usr/lib/systemd/user", "/lib/systemd/user"]
        } else {
            &["/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"]
        };
        dirs.iter().map(|d| PathBuf::from(d).join(self.unit())).collect()
    }

    async fn manager(&self) -> ResResult<ManagerProxy<'static>> {
        manager(self.session).await
    }

    async fn unit_proxy(&self, m: &ManagerProxy<'static>) -> ResResult<UnitProxy<'static>> {
        let path = m.load_unit(self.unit()).await.map_err(dbus("loading the unit"))?;
        UnitProxy::builder(m.inner().connection())
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(dbus("unit proxy"))
    }

    /// Run a job (start, stop, restart) and wait for its end (see [`unit_job`]).
    async fn job(&self, m: &ManagerProxy<'static>, verb: &str) -> ResResult<()> {
        unit_job(m, &self.unit(), self.session, verb).await
    }
}

impl Svc {
    /// systemd's `Result` of the service (`exit-code`, `timeout`, `start-limit-hit`, ...).
    async fn result(&self, m: &ManagerProxy<'static>) -> Option<String> {
        service_result(m, &self.unit()).await
    }
}

/// Run a job (start, stop, restart) on `unit` and wait for its end; a failed job is an error
/// with systemd's result and the unit's last journal lines.
pub(crate) async fn unit_job(
    m: &ManagerProxy<'static>,
    unit: &str,
    session: bool,
    verb: &str,
) -> ResResult<()> {
    let mut removed = m.receive_job_removed().await.map_err(dbus("watching jobs"))?;
    let unit = unit.to_string();
    let job = match verb {
        "start" => m.start_unit(unit.clone(), "replace".into()).await,
        "stop" => m.stop_unit(unit.clone(), "replace".into()).await,
        _ => m.restart_unit(unit.clone(), "replace".into()).await,
    }
    .map_err(dbus(verb))?;
    let result = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(sig) = removed.next().await {
            if let Ok(args) = sig.args()
                && args.job.as_str() == job.as_str()
            {
                return Some(args.result.to_string());
            }
        }
        None
    })
    .await
    .map_err(|_| ResourceError::msg(format!("{verb} {unit}: no answer from systemd within 90 s")))?;
    let path = m.load_unit(unit.clone()).await.map_err(dbus("loading the unit"))?;
    let u = UnitProxy::builder(m.inner().connection())
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(dbus("unit proxy"))?;
    let state = u.active_state().await.unwrap_or_default();
    // A simple service's start job is done once its process is forked; one that dies at
    // once is already `failed` here.
    let failed_now = verb != "stop" && state == "failed";
    match result.as_deref() {
        Some("done") if !failed_now => Ok(()),
        Some(r) => {
            let why = service_result(m, &unit).await.unwrap_or_else(|| state.clone());
            let journal = journal_tail(&unit, session).await;
            Err(ResourceError::msg(format!(
                "{verb} {unit} failed: job {r}, unit {state} ({why}){}",
                journal.map(|j| format!("; journal: {j}")).unwrap_or_default()
            )))
        }
        None => Err(ResourceError::msg(format!("{verb} {unit}: lost the connection to systemd"))),
    }
}

/// systemd's `Result` of a service (`exit-code`, `timeout`, `start-limit-hit`, ...).
async fn service_result(m: &ManagerProxy<'static>, unit: &str) -> Option<String> {
    let path = m.load_unit(unit.to_string()).await.ok()?;
    let s = ServiceProxy::builder(m.inner().connection())
        .destination("org.freedesktop.systemd1")
        .path(path)
        .build()
        .await
        .ok()?;
    s.result().await.ok()
}

/// Watch `unit` through systemd's signals (its state, unit files, reloads) and its unit
/// `files` through inotify, calling `ctx.event()` on each change; ends only with the
/// connection.
pub(crate) async fn watch_unit(
    ctx: &WatchCtx,
    m: &ManagerProxy<'static>,
    unit: &str,
    unit_files: Vec<PathBuf>,
) -> ResResult<()> {
    // One subscription per connection, and the connection is shared by every svc.
    match m.subscribe().await {
        Ok(()) => {}
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
        Err(e) => return Err(dbus("subscribing to systemd")(e)),
    }
    let mut files = m.receive_unit_files_changed().await.map_err(dbus("watching unit files"))?;
    let mut reloading = m.receive_reloading().await.map_err(dbus("watching reloads"))?;
    // Every property change of the unit (ActiveState, SubState, NeedDaemonReload, ...).
    let path = m.load_unit(unit.to_string()).await.map_err(dbus("loading the unit"))?;
    let props = zbus::fdo::PropertiesProxy::builder(m.inner().connection())
        .destination("org.freedesktop.systemd1")
        .path(path)
        .build()
        .await
        .map_err(dbus("properties proxy"))?;
    let mut changes = props.receive_properties_changed().await.map_err(dbus("watching the unit"))?;
    // Unit files appearing, changing or going away (systemd itself only notices on a
    // reload).
    let mut _file_subs = Vec::new();
    for p in unit_files {
        _file_subs.push(ctx.fs.subscribe(crate::os::fswatch::Scope::File(p), ctx.waker.clone()).await);
    }
    ctx.event();
    // Only the state this resource manages; a job coming and going (its own failed
    // start attempts, say) must not wake it again. (Nor does `UnitNew`: every check loads
    // the unit, and systemd unloads inactive units, so it would fire after each check.)
    const WATCHED: &[&str] = &["ActiveState", "LoadState", "UnitFileState", "NeedDaemonReload"];
    let mut seen: std::collections::HashMap<String, String> = Default::default();
    loop {
        tokio::select! {
            s = changes.next() => {
                let Some(s) = s else { break };
                let Ok(args) = s.args() else { continue };
                let mut moved = false;
                for (k, v) in args.changed_properties() {
                    if WATCHED.contains(k) {
                        let v = format!("{v:?}");
                        if seen.insert(k.to_string(), v.clone()).as_ref() != Some(&v) {
                            moved = true;
                        }
                    }
                }
                if !moved { continue }
            }
            s = files.next() => { if s.is_none() { break } }
            s = reloading.next() => { if s.is_none() { break } }
        }
        ctx.event();
    }
    Err(ResourceError::msg("the connection to systemd ended"))
}

/// The unit's last journal lines, when journalctl is there (best effort, for messages).
async fn journal_tail(unit: &str, session: bool) -> Option<String> {
    let mut c = tokio::process::Command::new("journalctl");
    if session {
        c.arg("--user");
    }
    c.args(["-u", unit, "-n", "3", "--no-pager", "-o", "cat"]);
    let out = tokio::time::timeout(Duration::from_secs(2), c.output()).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().replace('\n', " | ");
    (!text.is_empty()).then_some(text)
}

#[async_trait]
impl Resource for Svc {
    crate::resource_common!("svc");

    fn validate(&self) -> Result<(), ValidationError> {
        let n = &self.name;
        if n.is_empty() {
            return Err(ValidationError::new("name", "must not be empty"));
        }
        if n.contains('/') || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::new("name", format!("`{n}` is not a unit name")));
        }
        if n.contains('.') && !n.ends_with(".service") {
            return Err(ValidationError::new(
                "name",
                format!("`{n}` is not a service (use the name without `.service`)"),
            ));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let m = self.manager().await?;
        watch_unit(&ctx, &m, &self.unit(), self.unit_file_paths()).await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let m = self.manager().await?;
        let unit_name = self.unit();
        let u = self.unit_proxy(&m).await?;
        let mut changes = Vec::new();

        let load = u.load_state().await.map_err(dbus("reading LoadState"))?;
        let mut need_reload = u.need_daemon_reload().await.unwrap_or(false);
        if load == "not-found" && self.unit_file_paths().iter().any(|p| p.exists()) {
            // A unit file written a moment ago is not known before a reload. (Without a file
            // a reload would find nothing, and each reload would wake this resource again.)
            need_reload = true;
        }
        if need_reload {
            if apply {
                m.reload().await.map_err(dbus("reloading systemd"))?;
            }
            changes.push("reload systemd (unit file changed)".into());
        }
        let u = if need_reload && apply { self.unit_proxy(&m).await? } else { u };
        if apply && u.load_state().await.map_err(dbus("reading LoadState"))? == "not-found" {
            return Err(ResourceError::msg(format!("unit {unit_name} not found")));
        }

        if let Some(want) = self.startup {
            let have = m.get_unit_file_state(unit_name.clone()).await.unwrap_or_default();
            let enabled =
                matches!(have.as_str(), "enabled" | "enabled-runtime" | "static" | "alias" | "indirect");
            let is_static = matches!(have.as_str(), "static" | "indirect" | "alias");
            match want {
                Startup::Enabled if !enabled => {
                    if apply {
                        m.enable_unit_files(vec![unit_name.clone()], false, true)
                            .await
                            .map_err(dbus("enabling"))?;
                        m.reload().await.map_err(dbus("reloading systemd"))?;
                    }
                    changes.push(format!("enable (was {have})").into());
                }
                Startup::Disabled if enabled && !is_static => {
                    if apply {
                        m.disable_unit_files(vec![unit_name.clone()], false)
                            .await
                            .map_err(dbus("disabling"))?;
                        m.reload().await.map_err(dbus("reloading systemd"))?;
                    }
                    changes.push(format!("disable (was {have})").into());
                }
                _ => {}
            }
        }

        let active = u.active_state().await.map_err(dbus("reading ActiveState"))?;
        let running = matches!(active.as_str(), "active" | "activating" | "reloading");
        match self.state {
            Some(SvcState::Running) if !running => {
                let result = if active == "failed" {
                    self.result(&m).await.unwrap_or_default()
                } else {
                    String::new()
                };
                // systemd refuses to start it again for a while: asking would only fail, and
                // each failure would wake this resource again.
                if result == "start-limit-hit" {
                    let journal = journal_tail(&unit_name, self.session).await;
                    return Err(ResourceError::msg(format!(
                        "{unit_name} failed too often and hit systemd's start limit{}",
                        journal.map(|j| format!("; journal: {j}")).unwrap_or_default()
                    )));
                }
                let was = if active == "failed" { format!("failed: {result}") } else { active.clone() };
                if apply {
                    self.job(&m, "start").await?;
                }
                changes.push(format!("start (was {was})").into());
            }
            Some(SvcState::Running) if need_reload || ctx.trigger.refresh => {
                if apply {
                    self.job(&m, "restart").await?;
                }
                changes.push(if ctx.trigger.refresh {
                    "restart (refresh)".into()
                } else {
                    "restart (unit file changed)".into()
                });
            }
            Some(SvcState::Stopped) if running => {
                if apply {
                    self.job(&m, "stop").await?;
                }
                changes.push(format!("stop (was {active})").into());
            }
            _ => {}
        }
        Ok(changes)
    }

    fn autoedges(&self) -> AutoEdgeInfo {
        // The unit file, wherever a file resource manages it, is applied first.
        let unit = self.unit();
        let dirs: &[&str] = if self.session {
            &["/etc/systemd/user", "/usr/lib/systemd/user", "/lib/systemd/user"]
        } else {
            &["/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"]
        };
        AutoEdgeInfo {
            provides: vec![],
            requires: dirs.iter().map(|d| PathBuf::from(d).join(&unit)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str) -> Svc {
        Svc { name: name.into(), meta: Meta::default(), state: None, startup: None, session: false }
    }

    #[test]
    fn names_imply_service() {
        assert_eq!(svc("nginx").unit(), "nginx.service");
        assert_eq!(svc("nginx.service").unit(), "nginx.service");
        assert!(svc("a/b").validate().is_err());
        assert!(svc("x.socket").validate().is_err());
        assert!(svc("").validate().is_err());
        assert!(svc("getty@tty1").validate().is_ok());
    }

    #[test]
    fn the_unit_file_comes_first() {
        let info = svc("mgmt-test").autoedges();
        assert!(info.requires.contains(&PathBuf::from("/etc/systemd/system/mgmt-test.service")));
    }
}
