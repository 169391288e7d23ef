//! `user`: a local account (`/etc/passwd`), present with its uid, primary group, supplementary
//! groups, home and shell, or absent. Checked by reading `/etc/passwd` and `/etc/group`
//! directly (no NSS: exactly what the shadow tools manage, in microseconds); changed with
//! `useradd`, `usermod` and `userdel`; watched with inotify on both files, which the shadow
//! tools replace by rename.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, Changes, NamedEdges, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::contract::Meta;
use crate::os::passwd::{self, Accounts, PasswdEntry};

/// Whether an account (user or group) must exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountState {
    #[default]
    Exists,
    Absent,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The login name.
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default)]
    pub state: AccountState,
    /// Unset: any (a new user gets the next free one).
    #[serde(default)]
    pub uid: Option<u32>,
    /// The primary group by id (or `group` by name; not both).
    #[serde(default)]
    pub gid: Option<u32>,
    /// The primary group by name.
    #[serde(default)]
    pub group: Option<String>,
    /// The supplementary groups, exactly (unset: leave them alone; empty: none).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// The home directory, ending in `/` (stored without it, as `/etc/passwd` has it).
    #[serde(default)]
    pub homedir: Option<String>,
    /// The login shell.
    #[serde(default)]
    pub shell: Option<String>,
    /// Let `uid` be shared with another user (`--non-unique`).
    #[serde(default)]
    pub allowduplicateuid: bool,
}

/// The longest account name the shadow tools accept.
const MAX_NAME: usize = 32;

/// Why `name` is not a portable user or group name: 1 to 32 of `A-Z a-z 0-9 _ . -`, not
/// starting with `-`, not all digits (it would read as an id), an optional final `$`
/// (machine accounts). Pure.
pub fn bad_account_name(name: &str) -> Option<String> {
    let body = name.strip_suffix('$').unwrap_or(name);
    if body.is_empty() || name.len() > MAX_NAME {
        return Some(format!("`{}` must be 1 to {MAX_NAME} characters", name.escape_debug()));
    }
    if let Some(c) = body.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Some(format!("`{}` contains {c:?}; use only A-Z a-z 0-9 _ . - (and a final $)", name.escape_debug()));
    }
    if body.starts_with('-') {
        return Some(format!("`{name}` must not start with `-`"));
    }
    if body.bytes().all(|b| b.is_ascii_digit()) || body == "." || body == ".." {
        return Some(format!("`{name}` would be read as an id or a path; use a name"));
    }
    None
}

/// Why a passwd field (home, shell) cannot be stored: `/etc/passwd` separates fields with
/// `:` and entries with newlines. Pure.
fn bad_passwd_path(value: &str) -> Option<String> {
    if !value.starts_with('/') {
        Some(format!("`{}` must be an absolute path", value.escape_debug()))
    } else if value.contains(':') || value.chars().any(char::is_control) {
        Some(format!("`{}` must not contain `:` or control characters", value.escape_debug()))
    } else {
        None
    }
}

/// A home directory as `/etc/passwd` stores it: normal form, no trailing `/` (but `/`).
fn home_key(home: &str) -> String {
    let normal = crate::contract::path::normalize_path(home).unwrap_or_else(|_| home.to_string());
    if normal.len() > 1 { normal.trim_end_matches('/').to_string() } else { normal }
}

/// `a,b` or `none`.
fn list(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(",") }
}

/// What to run to make the accounts match, and the changes it makes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `useradd`, `usermod`, `userdel` (or the group tools); `None`: nothing to do.
    pub tool: Option<&'static str>,
    pub args: Vec<String>,
    pub changes: Vec<String>,
}

impl User {
    fn wanted_groups(&self) -> Option<Vec<String>> {
        self.groups.as_ref().map(|g| {
            let mut g = g.clone();
            g.sort();
            g.dedup();
            g
        })
    }

    /// Refuse a uid another user has, unless sharing is allowed.
    fn check_uid_free(&self, acc: &Accounts) -> Result<(), String> {
        match self.uid.and_then(|uid| acc.users.iter().find(|u| u.uid == uid && u.name != self.name)) {
            Some(other) if !self.allowduplicateuid => Err(format!(
                "uid {} belongs to user {}; set allowduplicateuid to share it",
                other.uid, other.name
            )),
            _ => Ok(()),
        }
    }

    /// The options for `useradd`/`usermod` that set what differs (`have: None`: everything
    /// asked for), with one change line each for an existing user, or what is set (`uid
    /// 1500`) for a new one. Pure.
    fn differences(&self, acc: &Accounts, have: Option<&PasswdEntry>) -> (Vec<String>, Vec<String>) {
        let (mut args, mut changes) = (Vec::new(), Vec::new());
        let mut set = |opt: &str, value: String, change: Option<String>| {
            let shown = if value.is_empty() { "none" } else { &value };
            let asked = format!("{} {shown}", opt.trim_start_matches("--"));
            args.extend([opt.to_string(), value]);
            changes.push(change.unwrap_or(asked));
        };
        if let Some(uid) = self.uid.filter(|u| have.is_none_or(|h| h.uid != *u)) {
            set("--uid", uid.to_string(), have.map(|h| format!("uid {} -> {uid}", h.uid)));
        }
        if let Some(gid) = self.gid.filter(|g| have.is_none_or(|h| h.gid != *g)) {
            set("--gid", gid.to_string(), have.map(|h| format!("primary group gid {} -> {gid}", h.gid)));
        }
        if let Some(group) = &self.group {
            let current = have.map(|h| acc.group_by_gid(h.gid).map_or(format!("gid {}", h.gid), |g| g.name.clone()));
            if current.as_ref() != Some(group) {
                set("--gid", group.clone(), current.map(|c| format!("primary group {c} -> {group}")));
            }
        }
        if let Some(want) = self.wanted_groups() {
            let current = have.map(|h| acc.supplementary_groups(h));
            if current.as_ref() != Some(&want) {
                let change = current.map(|c| format!("groups {} -> {}", list(&c), list(&want)));
                set("--groups", want.join(","), change);
            }
        }
        if let Some(home) = self.homedir.as_deref().map(home_key)
            && have.is_none_or(|h| home_key(&h.home) != home)
        {
            set("--home", home.clone(), have.map(|h| format!("home {} -> {home}", h.home)));
        }
        if let Some(shell) = self.shell.as_ref().filter(|s| have.is_none_or(|h| h.shell != **s)) {
            set("--shell", shell.clone(), have.map(|h| format!("shell {} -> {shell}", h.shell)));
        }
        if self.allowduplicateuid && args.first().is_some_and(|a| a == "--uid") {
            args.insert(0, "--non-unique".into());
        }
        (args, changes)
    }

    /// What makes the accounts match this resource. Pure.
    pub fn plan(&self, acc: &Accounts) -> Result<Plan, String> {
        let have = acc.user(&self.name);
        match (self.state, have) {
            (AccountState::Absent, None) => Ok(Plan::default()),
            (AccountState::Absent, Some(h)) => Ok(Plan {
                tool: Some("userdel"),
                args: vec![self.name.clone()],
                changes: vec![format!("remove user {} (uid {})", self.name, h.uid)],
            }),
            (AccountState::Exists, None) => {
                self.check_uid_free(acc)?;
                let (mut args, what) = self.differences(acc, None);
                // `usermod --home` is `useradd --home-dir`.
                for a in args.iter_mut().filter(|a| *a == "--home") {
                    *a = "--home-dir".into();
                }
                let detail = if what.is_empty() { String::new() } else { format!(" ({})", what.join(", ")) };
                args.push(self.name.clone());
                Ok(Plan { tool: Some("useradd"), args, changes: vec![format!("add user {}{detail}", self.name)] })
            }
            (AccountState::Exists, Some(h)) => {
                let (mut args, changes) = self.differences(acc, Some(h));
                if changes.is_empty() {
                    return Ok(Plan::default());
                }
                self.check_uid_free(acc)?;
                args.push(self.name.clone());
                Ok(Plan { tool: Some("usermod"), args, changes })
            }
        }
    }
}

/// Read `/etc/passwd` and `/etc/group` off the async threads.
pub(crate) async fn accounts() -> ResResult<Accounts> {
    tokio::task::spawn_blocking(passwd::read_accounts)
        .await
        .map_err(|e| ResourceError::msg(format!("reading the account files panicked: {e}")))?
        .map_err(|e| ResourceError::io("reading /etc/passwd and /etc/group", e))
}

/// How long a shadow tool may take (it waits for the account files' lock).
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Run a shadow tool (`useradd`, `groupmod`, ...) to its end. A failure is an error whose
/// message has the tool's first line of complaint (`usermod: group 'x' does not exist`), and
/// whose output is the bounded tail of what it printed.
pub(crate) async fn run_shadow_tool(tool: &str, args: &[String]) -> ResResult<()> {
    // Found in /usr/sbin even when the agent's PATH lacks it.
    let path = ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| PathBuf::from(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(tool));
    let mut cmd = tokio::process::Command::new(&path);
    cmd.args(args).env("LC_ALL", "C").stdin(std::process::Stdio::null()).kill_on_drop(true);
    let what = format!("{tool} {}", args.join(" "));
    let out = tokio::time::timeout(TOOL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| ResourceError::msg(format!("{what}: no end within {} s", TOOL_TIMEOUT.as_secs())))?
        .map_err(|e| ResourceError::io(format!("running {}", path.display()), e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message");
    let text = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    Err(ResourceError::Output {
        message: format!("{what} failed ({}): {}", out.status, crate::text::head(first.trim(), 300)),
        output: crate::text::tail(&text, 2048).into_owned(),
    })
}

/// Wake on every finished change to these account files (the shadow tools rename a new copy
/// into place); never returns.
pub(crate) async fn watch_files(ctx: &WatchCtx, files: &[&str]) -> ResResult<()> {
    let mut subs = Vec::new();
    for f in files {
        subs.push(ctx.fs.subscribe_settled(PathBuf::from(f), ctx.waker.clone()).await);
    }
    let waited = ctx.first_event_then_wait().await;
    drop(subs);
    waited
}

/// Apply a plan (with `apply`) and return its changes.
pub(crate) async fn carry_out(plan: Plan, apply: bool) -> ResResult<Changes> {
    if let (Some(tool), true) = (plan.tool, apply) {
        run_shadow_tool(tool, &plan.args).await?;
    }
    Ok(plan.changes.into_iter().map(Into::into).collect())
}

impl User {
    fn validate_groups(&self) -> Result<(), ValidationError> {
        if self.gid.is_some() && self.group.is_some() {
            return Err(ValidationError::new("group", "set either gid or group (the primary group), not both"));
        }
        if let Some(why) = self.group.as_deref().and_then(bad_account_name) {
            return Err(ValidationError::new("group", why));
        }
        for g in self.groups.iter().flatten() {
            if let Some(why) = bad_account_name(g) {
                return Err(ValidationError::new("groups", why));
            }
            if self.group.as_ref() == Some(g) {
                return Err(ValidationError::new("groups", format!("`{g}` is the primary group (group); list it once")));
            }
            if *g == self.name {
                return Err(ValidationError::new(
                    "groups",
                    format!("`{g}` is the user's own name; a user's own group is its primary group (group)"),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Resource for User {
    crate::resource_common!("user");

    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(why) = bad_account_name(&self.name) {
            return Err(ValidationError::new("name", why));
        }
        if self.uid == Some(u32::MAX) {
            return Err(ValidationError::new("uid", "4294967295 means \"no user\" to the kernel"));
        }
        if self.gid == Some(u32::MAX) {
            return Err(ValidationError::new("gid", "4294967295 means \"no group\" to the kernel"));
        }
        self.validate_groups()?;
        if let Some(home) = &self.homedir {
            if let Some(why) = bad_passwd_path(home) {
                return Err(ValidationError::new("homedir", why));
            }
            if !home.ends_with('/') {
                return Err(ValidationError::new("homedir", format!("`{home}` must end with `/` (a directory)")));
            }
            if let Err(e) = crate::contract::path::normalize_path(home) {
                return Err(ValidationError::new("homedir", format!("`{home}` {e}")));
            }
        }
        if let Some(why) = self.shell.as_deref().and_then(bad_passwd_path) {
            return Err(ValidationError::new("shell", why));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        // Supplementary groups live in /etc/group (`gpasswd -a` touches only that).
        watch_files(&ctx, &[passwd::PASSWD, passwd::GROUP]).await
    }

    async fn check_apply(&self, _ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let plan = self.plan(&accounts().await?).map_err(ResourceError::Msg)?;
        carry_out(plan, apply).await
    }

    fn named_edges(&self) -> NamedEdges {
        let mut names: Vec<String> = self.gid.map(|g| format!("gid:{g}")).into_iter().collect();
        names.extend(self.group.iter().chain(self.groups.iter().flatten()).map(|g| format!("group:{g}")));
        match self.state {
            // Its groups first; removed before its groups are.
            AccountState::Exists => NamedEdges { after: names, ..Default::default() },
            AccountState::Absent => NamedEdges { before: names, ..Default::default() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        alice:x:1500:1500::/home/alice:/bin/bash\n\
        bob:x:1501:100::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:\nalice:x:1500:\nwheel:x:10:alice\naudio:x:29:\n";

    fn acc() -> Accounts {
        Accounts::parse(PASSWD, GROUP)
    }

    fn user(j: serde_json::Value) -> User {
        let mut base = serde_json::json!({"name": "alice"});
        base.as_object_mut().unwrap().extend(j.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn a_matching_user_needs_nothing() {
        let u = user(serde_json::json!({"uid": 1500, "gid": 1500, "groups": ["wheel"], "homedir": "/home/alice/", "shell": "/bin/bash"}));
        assert_eq!(u.plan(&acc()).unwrap(), Plan::default());
        let by_name = user(serde_json::json!({"group": "alice"}));
        assert_eq!(by_name.plan(&acc()).unwrap(), Plan::default());
    }

    #[test]
    fn only_what_differs_is_modified() {
        let u = user(serde_json::json!({"uid": 1500, "shell": "/bin/sh", "groups": ["audio", "wheel"]}));
        let p = u.plan(&acc()).unwrap();
        assert_eq!(p.tool, Some("usermod"));
        assert_eq!(p.args, ["--groups", "audio,wheel", "--shell", "/bin/sh", "alice"]);
        assert_eq!(p.changes, ["groups wheel -> audio,wheel", "shell /bin/bash -> /bin/sh"]);
        let p = user(serde_json::json!({"group": "users", "homedir": "/srv/alice/"})).plan(&acc()).unwrap();
        assert_eq!(p.changes, ["primary group alice -> users", "home /home/alice -> /srv/alice"]);
        let p = user(serde_json::json!({"groups": []})).plan(&acc()).unwrap();
        assert_eq!(p.args, ["--groups", "", "alice"]);
        assert_eq!(p.changes, ["groups wheel -> none"]);
    }

    #[test]
    fn a_new_user_gets_everything_asked_and_a_gone_one_is_removed() {
        let u = User {
            name: "carol".into(),
            ..user(serde_json::json!({"uid": 1600, "shell": "/bin/sh", "homedir": "/srv/carol/"}))
        };
        let p = u.plan(&acc()).unwrap();
        assert_eq!(p.tool, Some("useradd"));
        assert_eq!(p.args, ["--uid", "1600", "--home-dir", "/srv/carol", "--shell", "/bin/sh", "carol"]);
        assert_eq!(p.changes, ["add user carol (uid 1600, home /srv/carol, shell /bin/sh)"]);
        let gone = user(serde_json::json!({"state": "absent"}));
        let p = gone.plan(&acc()).unwrap();
        assert_eq!((p.tool, p.args.as_slice()), (Some("userdel"), ["alice".to_string()].as_slice()));
        assert_eq!(p.changes, ["remove user alice (uid 1500)"]);
        let never = User { name: "nobody2".into(), ..gone };
        assert_eq!(never.plan(&acc()).unwrap(), Plan::default());
    }

    #[test]
    fn a_taken_uid_is_refused_unless_shared() {
        let u = user(serde_json::json!({"uid": 1501}));
        assert!(u.plan(&acc()).unwrap_err().contains("belongs to user bob"));
        let shared = user(serde_json::json!({"uid": 1501, "allowduplicateuid": true}));
        assert_eq!(shared.plan(&acc()).unwrap().args, ["--non-unique", "--uid", "1501", "alice"]);
    }

    #[test]
    fn bad_params_are_refused_with_the_field() {
        let field = |j: serde_json::Value| user(j).validate().unwrap_err().field;
        assert_eq!(field(serde_json::json!({"name": "-x"})), "name");
        assert_eq!(field(serde_json::json!({"name": "a:b"})), "name");
        assert_eq!(field(serde_json::json!({"name": "1234"})), "name");
        assert_eq!(field(serde_json::json!({"gid": 1, "group": "users"})), "group");
        assert_eq!(field(serde_json::json!({"group": "users", "groups": ["users"]})), "groups");
        assert_eq!(field(serde_json::json!({"groups": ["alice"]})), "groups");
        assert_eq!(field(serde_json::json!({"homedir": "/home/alice"})), "homedir");
        assert_eq!(field(serde_json::json!({"homedir": "home/"})), "homedir");
        assert_eq!(field(serde_json::json!({"shell": "/bin/sh:x"})), "shell");
        assert_eq!(field(serde_json::json!({"uid": 4294967295u32})), "uid");
        assert!(user(serde_json::json!({"name": "host$", "groups": ["a.b-c_d"]})).validate().is_ok());
        let unknown = serde_json::from_value::<User>(serde_json::json!({"name": "a", "home": "/x/"}));
        assert!(unknown.unwrap_err().to_string().contains("home"));
    }

    #[test]
    fn groups_come_first_unless_the_user_goes() {
        let u = user(serde_json::json!({"gid": 10, "groups": ["audio"]}));
        assert_eq!(u.named_edges().after, ["gid:10", "group:audio"]);
        let gone = user(serde_json::json!({"state": "absent", "group": "users"}));
        assert_eq!(gone.named_edges().before, ["group:users"]);
        assert!(gone.named_edges().after.is_empty());
    }
}
