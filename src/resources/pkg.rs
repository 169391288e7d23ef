//! `pkg`: a Debian package installed, removed, at the newest version or at a given version,
//! through apt and dpkg directly. Checked against dpkg's status file (and, for `newest` and
//! versions, apt's cache through `apt-cache policy`); applied with `apt-get`; watched through
//! dpkg's status file. Packages of one state group into one apt transaction (autogrouping).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ApplyCtx, Change, Changes, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::contract::limits::{CAPTURE_MAX, OUTPUT_TAIL_MAX};
use crate::contract::{Meta, ResId};
use crate::os::fswatch::Scope;
use crate::text::tail;

/// dpkg's record of what is installed; dpkg replaces it by rename on every change.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// apt's package lists; `apt-get update` renames new ones in (the candidates move).
const APT_LISTS: &str = "/var/lib/apt/lists";
/// The largest status file read (a large installation's is a few MiB).
const STATUS_MAX: u64 = 256 * 1024 * 1024;
/// How long `apt-get` waits for another holder of dpkg's lock before failing.
const LOCK_TIMEOUT_SECS: u32 = 120;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkg {
    /// The package: `name`, or `name:arch` for one architecture.
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// `installed`, `uninstalled`, `newest`, or a version to hold (`1.2-3`).
    #[serde(default = "installed")]
    pub state: String,
    /// Let a version state install a lower version than the one installed (the other
    /// states never downgrade).
    #[serde(default)]
    pub allowdowngrade: bool,
    /// Let apt install packages from sources it cannot authenticate.
    #[serde(default)]
    pub allowuntrusted: bool,
    /// Let a package come from a non-free component (non-free, non-free-firmware,
    /// restricted, multiverse).
    #[serde(default)]
    pub allownonfree: bool,
    /// Let a package come from a component the distribution does not support (contrib,
    /// non-free, non-free-firmware, universe, multiverse).
    #[serde(default)]
    pub allowunsupported: bool,
    /// The packages grouped into this one (autogrouping); never read from a graph.
    #[serde(skip)]
    pub group: Vec<Pkg>,
}

fn installed() -> String {
    "installed".into()
}

/// A `state` read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State<'a> {
    Installed,
    Uninstalled,
    Newest,
    Version(&'a str),
}

impl<'a> State<'a> {
    fn of(s: &'a str) -> State<'a> {
        match s {
            "installed" => State::Installed,
            "uninstalled" => State::Uninstalled,
            "newest" => State::Newest,
            v => State::Version(v),
        }
    }
}

impl Pkg {
    /// A package with default params in `state`.
    pub fn new(name: &str, state: &str) -> Pkg {
        Pkg {
            name: name.into(),
            meta: Meta::default(),
            state: state.into(),
            allowdowngrade: false,
            allowuntrusted: false,
            allownonfree: false,
            allowunsupported: false,
            group: Vec::new(),
        }
    }

    /// This package and those grouped into it, in order.
    fn members(&self) -> impl Iterator<Item = &Pkg> {
        std::iter::once(self).chain(&self.group)
    }

    fn allow(&self) -> Allow {
        Allow { nonfree: self.allownonfree, unsupported: self.allowunsupported }
    }

    /// `apt-get`'s flags for this package's params.
    fn apt_flags(&self) -> Vec<String> {
        let mut flags: Vec<String> = vec!["-y".into(), "-q".into()];
        for o in [
            format!("DPkg::Lock::Timeout={LOCK_TIMEOUT_SECS}"),
            // Changed configuration files are kept, never asked about.
            "Dpkg::Options::=--force-confdef".into(),
            "Dpkg::Options::=--force-confold".into(),
        ] {
            flags.extend(["-o".into(), o]);
        }
        if self.allowdowngrade && matches!(State::of(&self.state), State::Version(_)) {
            flags.push("--allow-downgrades".into());
        }
        if self.allowuntrusted {
            flags.push("--allow-unauthenticated".into());
        }
        flags
    }
}

/// Why `name` is not a Debian package name (`name` or `name:arch`), if it is not. Pure.
fn bad_name(name: &str) -> Option<String> {
    let (pkg, arch) = name.split_once(':').map_or((name, None), |(p, a)| (p, Some(a)));
    let pkg_ok = pkg.len() >= 2
        && pkg.len() <= 128
        && pkg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && pkg.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !pkg_ok {
        return Some(format!(
            "`{}` is not a Debian package name (lower-case letters, digits, `+`, `-`, `.`; at least 2, starting with a letter or digit)",
            name.escape_debug()
        ));
    }
    let arch_ok = |a: &str| {
        !a.is_empty() && a.len() <= 32 && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match arch {
        Some(a) if !arch_ok(a) => Some(format!("`{}` is not an architecture", a.escape_debug())),
        _ => None,
    }
}

/// Why `v` is not a Debian version, if it is not. Pure.
fn bad_version(v: &str) -> Option<String> {
    if v.is_empty() {
        return Some("must not be empty: installed, uninstalled, newest, or a version".into());
    }
    if v == "latest" {
        return Some("`latest` is not a state: did you mean `newest`?".into());
    }
    let ok = v.len() <= 256
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c));
    (!ok).then(|| {
        format!(
            "`{}` is not installed, uninstalled, newest, or a Debian version (a digit first, then letters, digits and `.+~:-`)",
            v.escape_debug()
        )
    })
}

// ----- dpkg's status file -----

/// One package as dpkg's status file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgEntry {
    pub arch: String,
    pub version: String,
    /// Whether dpkg's status is `installed` (not `config-files`, `half-installed`, ...).
    pub installed: bool,
}

/// The entries of dpkg's status file for the packages named in `wanted` (names without
/// an architecture), by name. Lines are taken as they come; a stanza without a `Package`
/// line is skipped. Pure; linear in the text.
pub fn parse_dpkg_status(text: &str, wanted: &HashSet<&str>) -> HashMap<String, Vec<DpkgEntry>> {
    let mut found: HashMap<String, Vec<DpkgEntry>> = HashMap::new();
    let mut stanza = Stanza::default();
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let Some((name, entry)) = stanza.take().filter(|(n, _)| wanted.contains(n.as_str())) {
                found.entry(name).or_default().push(entry);
            }
            continue;
        }
        let Some((field, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match field {
            "Package" => stanza.package = Some(value.to_string()),
            "Status" => stanza.installed = value.split_whitespace().nth(2) == Some("installed"),
            "Version" => stanza.version = value.to_string(),
            "Architecture" => stanza.arch = value.to_string(),
            _ => {}
        }
    }
    found
}

#[derive(Default)]
struct Stanza {
    package: Option<String>,
    arch: String,
    version: String,
    installed: bool,
}

impl Stanza {
    fn take(&mut self) -> Option<(String, DpkgEntry)> {
        let s = std::mem::take(self);
        Some((s.package?, DpkgEntry { arch: s.arch, version: s.version, installed: s.installed }))
    }
}

/// The installed version of `name` (`name:arch` for one architecture), if it is installed.
fn installed_version<'a>(status: &'a HashMap<String, Vec<DpkgEntry>>, name: &str) -> Option<&'a str> {
    let (pkg, arch) = name.split_once(':').map_or((name, None), |(p, a)| (p, Some(a)));
    // An `all` package is installed for every architecture.
    let fits = |e: &DpkgEntry| arch.is_none_or(|a| a == e.arch || e.arch == "all");
    status.get(pkg)?.iter().find(|e| e.installed && fits(e)).map(|e| e.version.as_str())
}

/// `name` without its architecture.
fn bare(name: &str) -> &str {
    name.split_once(':').map_or(name, |(p, _)| p)
}

// ----- apt's cache -----

/// What `apt-cache policy` says of one package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The version `apt-get install` would choose.
    pub candidate: Option<String>,
    /// Every version apt knows, with the components of the sources offering it (`main`;
    /// `""` for a flat repository; none for the installed one only).
    pub versions: Vec<(String, Vec<String>)>,
}

/// `LC_ALL=C apt-cache policy NAMES...`'s output, by package as apt names it. A package apt
/// does not know is absent. Pure.
pub fn parse_policy(text: &str) -> HashMap<String, Policy> {
    let mut out: HashMap<String, Policy> = HashMap::new();
    let mut current: Option<&mut Policy> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            current = trimmed.strip_suffix(':').map(|name| out.entry(name.to_string()).or_default());
            continue;
        }
        let Some(p) = current.as_deref_mut() else { continue };
        if let Some(c) = trimmed.strip_prefix("Candidate:") {
            p.candidate = Some(c.trim()).filter(|c| *c != "(none)").map(str::to_string);
        } else if let Some(row) = line.strip_prefix(" *** ") {
            p.versions.push((row.split_whitespace().next().unwrap_or("").to_string(), vec![]));
        } else if indent >= 8 {
            if let (Some(last), Some(component)) = (p.versions.last_mut(), origin_component(trimmed)) {
                last.1.push(component);
            }
        } else if indent >= 4 && !trimmed.ends_with(':') && !trimmed.starts_with("Installed:") {
            p.versions.push((trimmed.split_whitespace().next().unwrap_or("").to_string(), vec![]));
        }
    }
    out
}

/// The component of a version's source line (`500 http://host/debian bookworm/main amd64
/// Packages` -> `main`; `500 file:/repo ./ Packages` -> ``); `None` for dpkg's own record.
fn origin_component(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().skip(1);
    let _url = words.next()?;
    let dist = words.next()?;
    Some(dist.split_once('/').map_or("", |(_, c)| c).to_string())
}

/// The components allowed by `allownonfree` and `allowunsupported`.
#[derive(Debug, Clone, Copy, Default)]
struct Allow {
    nonfree: bool,
    unsupported: bool,
}

impl Allow {
    /// Why a version offered only from `components` may not be installed, if it may not.
    fn refuses(&self, components: &[String]) -> Option<&'static str> {
        const NONFREE: &[&str] = &["non-free", "non-free-firmware", "restricted", "multiverse"];
        const UNSUPPORTED: &[&str] = &["contrib", "non-free", "non-free-firmware", "universe", "multiverse"];
        let ok = |c: &String| {
            (self.nonfree || !NONFREE.contains(&c.as_str()))
                && (self.unsupported || !UNSUPPORTED.contains(&c.as_str()))
        };
        if components.is_empty() || components.iter().any(ok) {
            return None;
        }
        Some(if !self.nonfree && components.iter().all(|c| NONFREE.contains(&c.as_str())) {
            "allownonfree"
        } else {
            "allowunsupported"
        })
    }
}

// ----- what to change -----

/// One package to change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `apt-get install TARGET` (`name` or `name=version`).
    Install { target: String, line: String },
    /// `apt-get remove NAME`.
    Remove { name: String, line: String },
}

impl Step {
    fn install_target(&self) -> Option<&str> {
        match self {
            Step::Install { target, .. } => Some(target),
            Step::Remove { .. } => None,
        }
    }
    fn removed(&self) -> Option<&str> {
        match self {
            Step::Remove { name, .. } => Some(name),
            Step::Install { .. } => None,
        }
    }
    fn line(&self) -> &str {
        match self {
            Step::Install { line, .. } | Step::Remove { line, .. } => line,
        }
    }
}

/// Whether deciding needs apt's cache: a newest or version state, or a package to install
/// (to name its version and check where it comes from). Pure.
fn needs_policy(wants: &[&Pkg], status: &HashMap<String, Vec<DpkgEntry>>) -> bool {
    wants.iter().any(|w| match State::of(&w.state) {
        State::Installed => installed_version(status, &w.name).is_none(),
        State::Uninstalled => false,
        State::Newest | State::Version(_) => true,
    })
}

/// What to change to bring `wants` to their states. Pure.
fn decide(
    wants: &[&Pkg],
    status: &HashMap<String, Vec<DpkgEntry>>,
    policy: &HashMap<String, Policy>,
    allow: Allow,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for w in wants {
        let have = installed_version(status, &w.name);
        let name = w.name.as_str();
        let step = match (State::of(&w.state), have) {
            (State::Installed, Some(_)) | (State::Uninstalled, None) => continue,
            (State::Uninstalled, Some(v)) => {
                Step::Remove { name: name.into(), line: format!("remove {name} (version {v})") }
            }
            (State::Installed | State::Newest, have) => {
                let p = known(policy, name)?;
                let Some(cand) = &p.candidate else {
                    return Err(format!("package {name} has no installable version in apt's sources"));
                };
                if have == Some(cand.as_str()) {
                    continue;
                }
                offered(p, cand, name, allow)?;
                let line = match have {
                    Some(v) => format!("upgrade {name} ({v} -> {cand})"),
                    None => format!("install {name} (version {cand})"),
                };
                Step::Install { target: name.into(), line }
            }
            (State::Version(want), have) => {
                if have == Some(want) {
                    continue;
                }
                offered(known(policy, name)?, want, name, allow)?;
                let line = match have {
                    Some(v) => format!("change {name} version ({v} -> {want})"),
                    None => format!("install {name} (version {want})"),
                };
                Step::Install { target: format!("{name}={want}"), line }
            }
        };
        steps.push(step);
    }
    Ok(steps)
}

/// apt's view of `name`, or why there is none.
fn known<'a>(policy: &'a HashMap<String, Policy>, name: &str) -> Result<&'a Policy, String> {
    policy
        .get(name)
        .or_else(|| policy.get(bare(name)))
        .filter(|p| !p.versions.is_empty() || p.candidate.is_some())
        .ok_or_else(|| format!("package {name} is not known to apt (not in its sources; is `apt-get update` needed?)"))
}

/// Whether `version` of `name` may be installed: offered by a source, from a component
/// the params allow.
fn offered(p: &Policy, version: &str, name: &str, allow: Allow) -> Result<(), String> {
    let Some((_, components)) = p.versions.iter().find(|(v, _)| v == version) else {
        let all: Vec<&str> = p.versions.iter().map(|(v, _)| v.as_str()).take(10).collect();
        return Err(format!("version {version} of {name} is not in apt's sources (known: {})", all.join(", ")));
    };
    if components.is_empty() && p.candidate.as_deref() != Some(version) {
        return Err(format!("version {version} of {name} is installed but offered by no source"));
    }
    match allow.refuses(components) {
        Some(param) => Err(format!(
            "{name} {version} comes from {} only; set `{param}: true` to allow it",
            components.join(", ")
        )),
        None => Ok(()),
    }
}

// ----- running apt -----

/// A command's exit code and the bounded tail of its stdout and stderr.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Whether stdout was longer than kept.
    cut: bool,
}

/// Read `r` to its end, keeping the last `max` bytes.
async fn read_tail(r: Option<impl AsyncRead + Unpin>, max: usize) -> (Vec<u8>, bool) {
    let (mut buf, mut cut) = (Vec::new(), false);
    let Some(mut r) = r else { return (buf, cut) };
    let mut chunk = [0u8; 8192];
    while let Ok(n @ 1..) = r.read(&mut chunk).await {
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * max {
            buf.drain(..buf.len() - max);
            cut = true;
        }
    }
    if buf.len() > max {
        buf.drain(..buf.len() - max);
        cut = true;
    }
    (buf, cut)
}

/// Run `argv` in the C locale, without a terminal or questions, stdout and stderr bounded.
async fn run(argv: &[String], stdout_max: usize) -> ResResult<Ran> {
    let mut c = tokio::process::Command::new(&argv[0]);
    c.args(&argv[1..])
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("APT_LISTCHANGES_FRONTEND", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c.spawn().map_err(|e| ResourceError::io(format!("starting `{}`", argv[0]), e))?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let ((stdout, cut), (stderr, _)) = tokio::join!(read_tail(out, stdout_max), read_tail(err, CAPTURE_MAX));
    let status = child.wait().await.map_err(|e| ResourceError::io(format!("running `{}`", argv[0]), e))?;
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    Ok(Ran { code: status.code(), stdout: text(stdout), stderr: text(stderr), cut })
}

/// The last lines of a failed command's output, on one line, bounded.
fn last_lines(ran: &Ran) -> String {
    let both = format!("{}\n{}", ran.stdout.trim_end(), ran.stderr.trim_end());
    let lines: Vec<&str> = both.lines().filter(|l| !l.trim().is_empty()).collect();
    tail(&lines[lines.len().saturating_sub(6)..].join(" | "), OUTPUT_TAIL_MAX).into_owned()
}

fn exit_text(code: Option<i32>) -> String {
    code.map_or("killed by a signal".into(), |c| format!("exit {c}"))
}

/// `apt-cache policy` of `names`.
async fn apt_policy(names: &[&str]) -> ResResult<HashMap<String, Policy>> {
    let mut argv = vec!["apt-cache".to_string(), "policy".into()];
    argv.extend(names.iter().map(|n| n.to_string()));
    // About 300 bytes a version and source; a group of thousands fits.
    let ran = run(&argv, 64 * CAPTURE_MAX).await?;
    if ran.code != Some(0) || ran.cut {
        let why = if ran.cut { "printed more than it may".to_string() } else { exit_text(ran.code) };
        return Err(ResourceError::Output { message: format!("apt-cache policy failed ({why})"), output: last_lines(&ran) });
    }
    Ok(parse_policy(&ran.stdout))
}

/// Read and parse dpkg's status file for `names`.
fn read_status(path: &Path, names: &[&str]) -> ResResult<HashMap<String, Vec<DpkgEntry>>> {
    let io = |e| ResourceError::io(format!("reading {}", path.display()), e);
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > STATUS_MAX {
        return Err(ResourceError::msg(format!(
            "{} is {size} bytes; more than the {STATUS_MAX} read",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let wanted: HashSet<&str> = names.iter().map(|n| bare(n)).collect();
    Ok(parse_dpkg_status(&String::from_utf8_lossy(&bytes), &wanted))
}

/// Run `apt-get VERB TARGETS...` with `pkg`'s flags.
async fn apt_get(pkg: &Pkg, verb: &str, targets: &[&str]) -> ResResult<()> {
    let mut argv = vec!["apt-get".to_string()];
    argv.extend(pkg.apt_flags());
    argv.push(verb.into());
    argv.extend(targets.iter().map(|t| t.to_string()));
    let ran = run(&argv, CAPTURE_MAX).await?;
    if ran.code == Some(0) {
        return Ok(());
    }
    Err(ResourceError::Output {
        message: format!("apt-get {verb} {} failed ({})", targets.join(" "), exit_text(ran.code)),
        output: last_lines(&ran),
    })
}

#[async_trait]
impl Resource for Pkg {
    crate::resource_common!("pkg");

    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(why) = bad_name(&self.name) {
            return Err(ValidationError::new("name", why));
        }
        if let State::Version(v) = State::of(&self.state)
            && let Some(why) = bad_version(v)
        {
            return Err(ValidationError::new("state", why));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let _status = ctx.fs.subscribe_settled(PathBuf::from(DPKG_STATUS), ctx.waker.clone()).await;
        // New candidates arrive with `apt-get update`: they matter to newest and versions.
        let follows_apt = self.members().any(|m| matches!(State::of(&m.state), State::Newest | State::Version(_)));
        let _lists = match follows_apt {
            true => Some(ctx.fs.subscribe(Scope::Dir(PathBuf::from(APT_LISTS)), ctx.waker.clone()).await),
            false => None,
        };
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, _ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let wants: Vec<&Pkg> = self.members().collect();
        let names: Vec<&str> = wants.iter().map(|w| w.name.as_str()).collect();
        let status = read_status(Path::new(DPKG_STATUS), &names)?;
        let policy = match needs_policy(&wants, &status) {
            true => apt_policy(&names).await?,
            false => HashMap::new(),
        };
        let steps = decide(&wants, &status, &policy, self.allow()).map_err(ResourceError::msg)?;
        if apply {
            let installs: Vec<&str> = steps.iter().filter_map(Step::install_target).collect();
            let removes: Vec<&str> = steps.iter().filter_map(Step::removed).collect();
            if !installs.is_empty() {
                apt_get(self, "install", &installs).await?;
            }
            if !removes.is_empty() {
                apt_get(self, "remove", &removes).await?;
            }
        }
        Ok(steps.iter().map(|s| Change::new(s.line())).collect())
    }

    fn group_key(&self) -> Option<String> {
        // Versions are held one by one; the other states group when every param matches.
        if matches!(State::of(&self.state), State::Version(_)) {
            return None;
        }
        let Pkg { state, allowdowngrade, allowuntrusted, allownonfree, allowunsupported, .. } = self;
        Some(format!("{state} {allowdowngrade} {allowuntrusted} {allownonfree} {allowunsupported}"))
    }

    fn absorb(&mut self, member: &dyn Resource) -> bool {
        let Some(m) = member.as_any().downcast_ref::<Pkg>() else { return false };
        if m.group_key().is_none() || m.group_key() != self.group_key() {
            return false;
        }
        self.group.extend(m.members().map(|p| Pkg { group: Vec::new(), ..p.clone() }));
        true
    }

    fn grouped(&self) -> Vec<ResId> {
        self.group.iter().map(|p| p.id()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: bash
Essential: yes
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b8
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 Package: notreal

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.36-9

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u1
";

    fn status() -> HashMap<String, Vec<DpkgEntry>> {
        let wanted: HashSet<&str> = ["bash", "gone", "libc6", "notreal", "absent"].into();
        parse_dpkg_status(STATUS, &wanted)
    }

    #[test]
    fn dpkg_status_gives_installed_versions_per_architecture() {
        let s = status();
        assert_eq!(installed_version(&s, "bash"), Some("5.2.15-2+b8"));
        assert_eq!(installed_version(&s, "gone"), None, "config-files is not installed");
        assert_eq!(installed_version(&s, "notreal"), None, "a continuation line is no field");
        assert_eq!(installed_version(&s, "absent"), None);
        assert_eq!(installed_version(&s, "libc6:amd64"), Some("2.36-9+deb12u1"));
        assert_eq!(installed_version(&s, "libc6:i386"), Some("2.36-9"));
        assert_eq!(installed_version(&s, "libc6:arm64"), None);
        let all = HashMap::from([(
            "tzdata".to_string(),
            vec![DpkgEntry { arch: "all".into(), version: "2024a".into(), installed: true }],
        )]);
        assert_eq!(installed_version(&all, "tzdata:amd64"), Some("2024a"));
        assert!(installed_version(&s, "libc6").is_some());
    }

    #[test]
    fn dpkg_status_keeps_only_the_wanted_and_survives_garbage() {
        let wanted: HashSet<&str> = ["bash"].into();
        assert_eq!(parse_dpkg_status(STATUS, &wanted).len(), 1);
        let junk = "Package\n:::\n\n\nStatus: install\nVersion:\0\u{fffd}\nPackage: bash\n";
        let parsed = parse_dpkg_status(junk, &wanted);
        assert!(!parsed["bash"][0].installed);
        assert!(parse_dpkg_status("", &wanted).is_empty());
    }

    const POLICY: &str = "\
bash:
  Installed: 5.2.15-2+b8
  Candidate: 5.2.15-2+b13
  Version table:
     5.2.15-2+b13 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
 *** 5.2.15-2+b8 100
        100 /var/lib/dpkg/status
tiny:
  Installed: (none)
  Candidate: 2.0
  Version table:
     2.0 500
        500 file:/srv/repo ./ Packages
     1.0 500
        500 file:/srv/repo ./ Packages
firmware-x:
  Installed: (none)
  Candidate: 3
  Version table:
     3 500
        500 http://deb.debian.org/debian bookworm/non-free-firmware amd64 Packages
virtual:
  Installed: (none)
  Candidate: (none)
  Version table:
";

    #[test]
    fn apt_policy_gives_candidates_versions_and_components() {
        let p = parse_policy(POLICY);
        assert_eq!(p["bash"].candidate.as_deref(), Some("5.2.15-2+b13"));
        assert_eq!(
            p["bash"].versions,
            [("5.2.15-2+b13".to_string(), vec!["main".to_string()]), ("5.2.15-2+b8".into(), vec![])]
        );
        assert_eq!(p["tiny"].versions.len(), 2);
        assert_eq!(p["tiny"].versions[1], ("1.0".to_string(), vec![String::new()]));
        assert_eq!(p["virtual"].candidate, None);
        assert!(!p.contains_key("absent"));
    }

    fn steps(wants: &[Pkg]) -> Result<Vec<String>, String> {
        let refs: Vec<&Pkg> = wants.iter().collect();
        let mut status = status();
        status.insert(
            "tiny".into(),
            vec![DpkgEntry { arch: "all".into(), version: "1.0".into(), installed: true }],
        );
        let policy = parse_policy(POLICY);
        let allow = wants[0].allow();
        Ok(decide(&refs, &status, &policy, allow)?.iter().map(|s| format!("{s:?}")).collect())
    }

    #[test]
    fn each_state_decides_its_step() {
        let p = Pkg::new;
        assert_eq!(steps(&[p("bash", "installed"), p("gone", "uninstalled")]).unwrap(), Vec::<String>::new());
        assert_eq!(
            steps(&[p("bash", "newest")]).unwrap(),
            [r#"Install { target: "bash", line: "upgrade bash (5.2.15-2+b8 -> 5.2.15-2+b13)" }"#]
        );
        assert_eq!(steps(&[p("tiny", "newest"), p("tiny", "1.0")]).unwrap().len(), 1);
        assert_eq!(
            steps(&[p("tiny", "2.0")]).unwrap(),
            [r#"Install { target: "tiny=2.0", line: "change tiny version (1.0 -> 2.0)" }"#]
        );
        assert_eq!(
            steps(&[p("bash", "uninstalled")]).unwrap(),
            [r#"Remove { name: "bash", line: "remove bash (version 5.2.15-2+b8)" }"#]
        );
    }

    #[test]
    fn unknown_packages_versions_and_refused_components_are_errors() {
        let p = Pkg::new;
        let e = steps(&[p("absent", "installed")]).unwrap_err();
        assert!(e.contains("not known to apt"), "{e}");
        let e = steps(&[p("tiny", "9.9")]).unwrap_err();
        assert!(e.contains("9.9") && e.contains("known: 2.0, 1.0"), "{e}");
        let e = steps(&[p("virtual", "installed")]).unwrap_err();
        assert!(e.contains("no installable version") || e.contains("not known"), "{e}");
        let e = steps(&[p("firmware-x", "installed")]).unwrap_err();
        assert!(e.contains("allownonfree: true"), "{e}");
        let mut both = p("firmware-x", "installed");
        both.allownonfree = true;
        let e = steps(&[both.clone()]).unwrap_err();
        assert!(e.contains("allowunsupported: true"), "{e}");
        both.allowunsupported = true;
        assert_eq!(steps(&[both]).unwrap().len(), 1);
    }

    #[test]
    fn apt_cache_is_asked_only_when_something_may_be_installed() {
        let s = status();
        let (a, b, c) = (Pkg::new("bash", "installed"), Pkg::new("gone", "uninstalled"), Pkg::new("gone", "installed"));
        assert!(!needs_policy(&[&a, &b], &s));
        assert!(needs_policy(&[&a, &c], &s));
        assert!(needs_policy(&[&Pkg::new("bash", "newest")], &s));
    }

    #[test]
    fn names_states_and_flags_are_validated() {
        let check = |name: &str, state: &str| Pkg::new(name, state).validate().map_err(|e| e.to_string());
        assert!(check("bash", "installed").is_ok());
        assert!(check("libc6:amd64", "2.36-9+deb12u1").is_ok());
        assert!(check("g++", "1:2.0~rc1").is_ok());
        for bad in ["-o", "Bash", "a", "x y", "a;b", "pkg:AMD"] {
            assert!(check(bad, "installed").unwrap_err().contains("name"), "{bad}");
        }
        assert!(check("bash", "latest").unwrap_err().contains("did you mean `newest`"));
        assert!(check("bash", "").unwrap_err().contains("state"));
        assert!(check("bash", "v1").unwrap_err().contains("not installed, uninstalled, newest"));
    }

    #[test]
    fn apt_get_gets_the_flags_the_params_ask_for() {
        let mut p = Pkg::new("bash", "1.0");
        assert!(!p.apt_flags().iter().any(|f| f.starts_with("--allow")));
        p.allowdowngrade = true;
        p.allowuntrusted = true;
        let flags = p.apt_flags();
        assert!(flags.contains(&"--allow-downgrades".to_string()));
        assert!(flags.contains(&"--allow-unauthenticated".to_string()));
    }

    #[test]
    fn a_group_absorbs_pkgs_of_its_key_only() {
        let mut a = Pkg::new("aa", "installed");
        assert!(a.absorb(&Pkg::new("bb", "installed")));
        assert!(!a.absorb(&Pkg::new("cc", "uninstalled")));
        assert!(!a.absorb(&Pkg::new("dd", "1.0")));
        assert_eq!(a.grouped(), [ResId::new("pkg", "bb")]);
        assert_eq!(Pkg::new("x1", "1.0").group_key(), None);
        let names: Vec<&str> = a.members().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["aa", "bb"]);
    }
}
