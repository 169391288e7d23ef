//! `mgmt etcd`: start an etcd server member.
//!
//! This is the real `etcd` binary, exec'd in place of `mgmt` with the user's flags passed
//! through untouched and a default for every flag a single member needs that the user left
//! out. Exec (rather than running etcd as a child) means there is nothing in between:
//! signals reach etcd itself, and etcd's exit status is the command's.
//!
//! `--tls-dir DIR` (a `mgmt certs` directory) adds etcd's TLS flags for its certificates in
//! front of the user's ([`tls_dir_flags`]); with a server certificate the default client
//! URLs are `https://`.
//!
//! Which arguments to pass is decided by pure functions ([`etcd_command_line`],
//! [`etcd_command`], [`tls_dir_flags`]); [`run`] only looks things up (hostname, binary,
//! environment, the TLS files), creates the prefix and execs.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::EtcdArgs;

/// Environment variable naming the etcd binary to run (a path, or a name looked up in PATH).
pub const BINARY_ENV: &str = "MGMT_ETCD_BINARY";

/// Client URL used when the user gives neither listen nor advertise client URLs.
pub const DEFAULT_CLIENT_URL: &str = "http://127.0.0.1:2379";
/// [`DEFAULT_CLIENT_URL`] when etcd serves clients over TLS (`--cert-file` or `--auto-tls`).
pub const DEFAULT_TLS_CLIENT_URL: &str = "https://127.0.0.1:2379";
/// Peer URL used when the user gives neither listen nor advertise peer URLs.
pub const DEFAULT_PEER_URL: &str = "http://127.0.0.1:2380";

/// etcd's own values for the flags `--initial-cluster` is computed from, which it uses when
/// they are set to an empty string in its environment.
const ETCD_DEFAULT_NAME: &str = "default";
const ETCD_DEFAULT_PEER_URL: &str = "http://localhost:2380";

/// The flags whose value we read. All of them take a value, so in the `--flag value` form
/// the next argument is that value, whatever it looks like (as Go's flag package does).
const VALUE_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "discovery",
    "discovery-srv",
    "config-file",
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "peer-cert-file",
    "peer-key-file",
    "peer-trusted-ca-file",
];

/// What [`etcd_command_line`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdCommand {
    /// The arguments after the program name: our defaults, then the user's flags as given.
    pub args: Vec<String>,
    /// The data dir we chose because the user gave none; its parent (the prefix) must exist.
    pub default_data_dir: Option<PathBuf>,
}

/// The arguments for etcd: the user's flags, preceded by a default for each of `--name`,
/// `--data-dir`, the client and peer URLs and `--initial-cluster` that the user did not give.
///
/// Ignores etcd's environment; see [`etcd_command`].
pub fn etcd_command_line(user_flags: &[String], hostname: &str, prefix: &Path) -> Vec<String> {
    etcd_command(user_flags, &|_| None, hostname, prefix).args
}

/// [`etcd_command_line`], also counting a flag as given when etcd's environment sets it
/// (`ETCD_NAME` for `--name`, ...; `env` looks a variable up). etcd reads those variables
/// itself, and refuses to start when one is also given as a flag, so a default must never be
/// added for them.
pub fn etcd_command(
    user_flags: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    hostname: &str,
    prefix: &Path,
) -> EtcdCommand {
    let given = Given::new(user_flags, env);
    let user = || user_flags.to_vec();

    // With a config file etcd ignores every other flag and variable, so ours would only make
    // the logged command line lie. Asking for help or the version starts nothing.
    if given.config_file() || ["version", "help", "h"].iter().any(|f| given.is_true(f)) {
        return EtcdCommand { args: user(), default_data_dir: None };
    }

    let mut args = Vec::new();
    let mut add = |flag: &str, value: &str| args.push(format!("--{flag}={value}"));

    let name = given.value_or("name", ETCD_DEFAULT_NAME).unwrap_or_else(|| {
        let n = if hostname.is_empty() { ETCD_DEFAULT_NAME } else { hostname };
        add("name", n);
        n.to_string()
    });

    let mut default_data_dir = None;
    if !given.has("data-dir") {
        let dir = prefix.join("etcd");
        add("data-dir", &dir.to_string_lossy());
        default_data_dir = Some(dir);
    }

    // A listen/advertise pair defaults together: given one, the other takes the same URLs
    // (advertising a port nothing listens on is never what was meant); given neither, both
    // are loopback.
    let mut pair = |listen: &str, advertise: &str, default: &str, etcd_default: &str| -> String {
        match (given.value_or(listen, etcd_default), given.value_or(advertise, etcd_default)) {
            (Some(_), Some(adv)) => adv,
            (Some(l), None) => {
                add(advertise, &l);
                l
            }
            (None, Some(adv)) => {
                add(listen, &adv);
                adv
            }
            (None, None) => {
                add(listen, default);
                add(advertise, default);
                default.to_string()
            }
        }
    };
    // With a server certificate, the default URLs are TLS ones: plain http would leave the
    // certificate unused and every client in the clear.
    let tls = given.value_or("cert-file", "").is_some_and(|f| !f.is_empty()) || given.is_true("auto-tls");
    let client_default = if tls { DEFAULT_TLS_CLIENT_URL } else { DEFAULT_CLIENT_URL };
    pair("listen-client-urls", "advertise-client-urls", client_default, "http://localhost:2379");
    let peer_urls =
        pair("listen-peer-urls", "initial-advertise-peer-urls", DEFAULT_PEER_URL, ETCD_DEFAULT_PEER_URL);

    // A one-member cluster of this member, under the name and peer URLs it really uses, unless
    // the user says how to find the cluster.
    if !["initial-cluster", "discovery", "discovery-srv"].iter().any(|f| given.has(f)) {
        let cluster: Vec<String> =
            peer_urls.split(',').filter(|u| !u.is_empty()).map(|u| format!("{name}={u}")).collect();
        add("initial-cluster", &cluster.join(","));
    }

    args.extend(user());
    EtcdCommand { args, default_data_dir }
}

/// The TLS flags for the certificates of a `mgmt certs` directory, to go before the user's
/// flags (which win, coming later): clients must present a certificate signed by its CA. The
/// peer flags are added only when the user's peer URLs are https (the default peer URL is
/// plain loopback, where they would only be ignored with a warning).
pub fn tls_dir_flags(dir: &Path, user_flags: &[String], env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (ca, cert, key) = (file("ca.crt"), file("server.crt"), file("server.key"));
    let mut flags = vec![
        format!("--cert-file={cert}"),
        format!("--key-file={key}"),
        format!("--trusted-ca-file={ca}"),
        "--client-cert-auth".to_string(),
    ];
    let given = Given::new(user_flags, env);
    let https_peers = ["listen-peer-urls", "initial-advertise-peer-urls"]
        .iter()
        .any(|f| given.value_or(f, "").is_some_and(|u| u.contains("https://")));
    if https_peers {
        flags.extend([
            format!("--peer-cert-file={cert}"),
            format!("--peer-key-file={key}"),
            format!("--peer-trusted-ca-file={ca}"),
            "--peer-client-cert-auth".to_string(),
        ]);
    }
    flags
}

/// The files of a `mgmt certs` directory that `mgmt etcd --tls-dir` uses.
pub const TLS_DIR_FILES: [&str; 3] = ["ca.crt", "server.crt", "server.key"];

/// The flags the user set, on etcd's command line or in its environment.
struct Given<'a> {
    /// Flag name (without dashes) to its last value on the command line; `None` for a flag
    /// written without `=` whose value we do not read.
    flags: HashMap<String, Option<String>>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Given<'a> {
    /// Scans the flags the way Go's flag package (which etcd uses) reads them: `-flag`,
    /// `--flag`, `-flag=value`, `--flag=value`, `-flag value` and `--flag value`, up to `--`.
    fn new(user_flags: &[String], env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        let mut flags = HashMap::new();
        let mut it = user_flags.iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                break;
            }
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                // Not a flag: the value of a flag we do not know, or a stray word etcd rejects.
                continue;
            };
            let (flag, value) = match stripped.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None if VALUE_FLAGS.contains(&stripped) => (stripped, it.next().cloned()),
                None => (stripped, None),
            };
            if !flag.is_empty() {
                flags.insert(flag.to_string(), value);
            }
        }
        Given { flags, env }
    }

    /// etcd's variable for a flag: `ETCD_` and the name in upper case, `-` as `_`.
    fn env_var(flag: &str) -> String {
        format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.contains_key(flag) || (self.env)(&Self::env_var(flag)).is_some()
    }

    /// Whether etcd reads a config file (it ignores an empty `ETCD_CONFIG_FILE`).
    fn config_file(&self) -> bool {
        self.flags.contains_key("config-file")
            || (self.env)(&Self::env_var("config-file")).is_some_and(|v| !v.is_empty())
    }

    /// The flag's value if it is given (`None` if not): the command line's, else the
    /// environment's; an empty variable leaves etcd on its own default, `etcd_default`.
    fn value_or(&self, flag: &str, etcd_default: &str) -> Option<String> {
        match self.flags.get(flag) {
            Some(v) => Some(v.clone().unwrap_or_default()),
            None => (self.env)(&Self::env_var(flag))
                .map(|v| if v.is_empty() { etcd_default.to_string() } else { v }),
        }
    }

    /// Whether a boolean flag is set and not to false (Go's `strconv.ParseBool` spellings).
    fn is_true(&self, flag: &str) -> bool {
        match self.flags.get(flag) {
            Some(Some(v)) => !matches!(v.as_str(), "0" | "f" | "F" | "false" | "FALSE" | "False"),
            Some(None) => true,
            None => false,
        }
    }
}

/// Which of mgmt's own flags (`--prefix`, `--tls-dir`) ended up among etcd's: clap hands
/// everything after the first etcd flag to etcd, which would reject it with a less helpful
/// message.
fn misplaced_flag(user_flags: &[String]) -> Option<&'static str> {
    ["--prefix", "--tls-dir"].into_iter().find(|ours| {
        user_flags
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| a == ours || a.strip_prefix(ours).is_some_and(|rest| rest.starts_with('=')))
    })
}

/// The etcd binary: `$MGMT_ETCD_BINARY` (a path, or a name looked up in PATH), else `etcd`
/// in PATH.
fn find_binary(configured: Option<OsString>, path: Option<OsString>) -> Result<PathBuf> {
    // execvp's search path when PATH is unset.
    let path = path.unwrap_or_else(|| "/bin:/usr/bin".into());
    match configured.filter(|c| !c.is_empty()) {
        Some(c) if c.as_bytes().contains(&b'/') => {
            let p = PathBuf::from(&c);
            if is_executable(&p) {
                Ok(p)
            } else {
                bail!("{BINARY_ENV}={}: not an executable file", p.display())
            }
        }
        Some(c) => search_path(&c, &path)
            .with_context(|| format!("{BINARY_ENV}={}: no such executable in PATH", Path::new(&c).display())),
        None => search_path(Path::new("etcd").as_os_str(), &path).context(
            "no etcd binary found in PATH; install one (Debian/Ubuntu: apt install etcd-server) \
             or set MGMT_ETCD_BINARY to its path",
        ),
    }
}

fn search_path(name: &std::ffi::OsStr, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        // An empty PATH entry is the current directory; spelled `.` so exec does not search.
        .map(|dir| if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir })
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

pub fn run(args: EtcdArgs) -> Result<u8> {
    if let Some(flag) = misplaced_flag(&args.etcd_flags) {
        bail!(
            "{flag} is a flag of mgmt, not of etcd: give it before etcd's flags (mgmt etcd {flag} DIR ...)"
        );
    }
    let binary = find_binary(std::env::var_os(BINARY_ENV), std::env::var_os("PATH"))?;
    let hostname = nix::unistd::gethostname().context("reading the hostname")?.to_string_lossy().into_owned();
    let prefix = args.prefix.unwrap_or_else(super::default_prefix);
    let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    let mut flags = args.etcd_flags;
    if let Some(dir) = &args.tls_dir {
        let dir = check_tls_dir(dir)?;
        flags = tls_dir_flags(&dir, &flags, &env).into_iter().chain(flags).collect();
    }
    let cmd = etcd_command(&flags, &env, &hostname, &prefix);

    if let Some(dir) = &cmd.default_data_dir {
        if prefix.to_str().is_none() {
            bail!("prefix {} is not valid UTF-8; give etcd a --data-dir", prefix.display());
        }
        // etcd creates its data dir (mode 0700) itself; the prefix is ours to create. It holds
        // the cluster's data, so it is its owner's only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&prefix)
            .with_context(|| format!("creating prefix {} for {}", prefix.display(), dir.display()))?;
    }

    let mut argv = vec![binary.to_string_lossy().into_owned()];
    argv.extend(cmd.args);
    let shown = argv.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ");
    let mut from_env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("ETCD_"))
        .collect();
    from_env.sort();
    if from_env.is_empty() {
        tracing::info!("starting etcd: {shown}");
    } else {
        tracing::info!(
            "starting etcd: {shown} (etcd also reads {} from the environment)",
            from_env.join(", ")
        );
    }

    let c_argv = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .context("an argument contains a NUL byte")?;
    let c_binary =
        CString::new(binary.as_os_str().as_bytes()).context("the etcd path contains a NUL byte")?;
    reset_signals();
    let err = nix::unistd::execvp(&c_binary, &c_argv).unwrap_err();
    bail!("cannot execute {}: {err}", binary.display())
}

/// The `--tls-dir` directory, absolute (etcd may be started elsewhere, and the logged
/// command line should work from anywhere), with every file it needs readable.
fn check_tls_dir(dir: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(dir).with_context(|| format!("--tls-dir {}", dir.display()))?;
    for name in TLS_DIR_FILES {
        let f = abs.join(name);
        std::fs::File::open(&f).with_context(|| {
            format!(
                "--tls-dir: cannot read {} (make the directory with `mgmt certs {}`)",
                f.display(),
                dir.display()
            )
        })?;
    }
    Ok(abs)
}

/// `a` as the shell would need it typed. Unlike `shlex`, leaves `=` and `,` unquoted: they
/// are harmless inside a word, and every `--flag=value` in quotes would be hard to read.
fn shell_word(a: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"+-./:@_=,".contains(&b);
    if !a.is_empty() && !a.starts_with('=') && a.bytes().all(plain) {
        a.into()
    } else {
        shlex::try_quote(a).unwrap_or_else(|_| a.into())
    }
}

/// Give etcd the signal state a shell would: Rust's runtime ignores SIGPIPE, and an ignored
/// signal stays ignored across exec; a blocked one would stay blocked.
fn reset_signals() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, signal};
    // SAFETY: installs the default disposition, no handler code; nothing else in this process
    // handles SIGPIPE.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    fn line(args: &[&str]) -> Vec<String> {
        etcd_command_line(&s(args), "h1", Path::new("/p"))
    }

    const DEFAULTS: &[&str] = &[
        "--name=h1",
        "--data-dir=/p/etcd",
        "--listen-client-urls=http://127.0.0.1:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=h1=http://127.0.0.1:2380",
    ];

    #[test]
    fn no_flags_gives_every_default() {
        assert_eq!(line(&[]), s(DEFAULTS));
        let cmd = etcd_command(&[], &|_| None, "h1", Path::new("/p"));
        assert_eq!(cmd.default_data_dir, Some(PathBuf::from("/p/etcd")));
    }

    #[test]
    fn guide_long_form_keeps_user_flags_as_given() {
        let user = [
            "--listen-client-urls=http://0.0.0.0:2379",
            "--advertise-client-urls=http://0.0.0.0:2379",
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=10h",
            "--quota-backend-bytes=8589934592",
        ];
        let mut want = s(&[
            "--name=h1",
            "--data-dir=/p/etcd",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=h1=http://127.0.0.1:2380",
        ]);
        want.extend(s(&user));
        assert_eq!(line(&user), want);
    }

    #[test]
    fn flags_are_recognised_in_every_form() {
        for user in [
            s(&["--name=n", "--data-dir=/d"]),
            s(&["--name", "n", "--data-dir", "/d"]),
            s(&["-name=n", "-data-dir=/d"]),
            s(&["-name", "n", "-data-dir", "/d"]),
        ] {
            let got = etcd_command_line(&user, "h1", Path::new("/p"));
            let ours = &got[..got.len() - user.len()];
            assert!(
                !ours.iter().any(|a| a.starts_with("--name=") || a.starts_with("--data-dir=")),
                "{got:?}"
            );
            assert!(got.contains(&"--initial-cluster=n=http://127.0.0.1:2380".to_string()), "{got:?}");
            assert!(got.ends_with(&user), "{got:?}");
        }
    }

    #[test]
    fn a_value_is_never_taken_for_a_flag() {
        // `--name` consumes the next argument, as in Go, even when it looks like a flag.
        let got = line(&["--name", "--data-dir"]);
        assert!(got.contains(&"--data-dir=/p/etcd".to_string()), "{got:?}");
        // An unknown flag's value is skipped, and the flags after it are still seen.
        let got = line(&["--log-level", "debug", "--name", "n"]);
        assert!(got.contains(&"--initial-cluster=n=http://127.0.0.1:2380".to_string()), "{got:?}");
        assert!(!got.contains(&"--name=h1".to_string()), "{got:?}");
    }

    #[test]
    fn nothing_after_double_dash_is_a_flag() {
        let got = line(&["--", "--name=n"]);
        assert_eq!(&got[..DEFAULTS.len()], &s(DEFAULTS)[..]);
    }

    #[test]
    fn a_given_url_is_used_for_both_sides_of_its_pair() {
        let got = line(&["--listen-client-urls=http://127.0.0.1:5000"]);
        assert!(got.contains(&"--advertise-client-urls=http://127.0.0.1:5000".to_string()), "{got:?}");
        assert!(!got.iter().any(|a| a.starts_with("--listen-client-urls=http://127.0.0.1:2379")), "{got:?}");

        let got = line(&["--initial-advertise-peer-urls", "http://10.0.0.1:7000"]);
        assert!(got.contains(&"--listen-peer-urls=http://10.0.0.1:7000".to_string()), "{got:?}");
        assert!(got.contains(&"--initial-cluster=h1=http://10.0.0.1:7000".to_string()), "{got:?}");
    }

    #[test]
    fn initial_cluster_follows_the_name_and_peer_urls_used() {
        let got = line(&[
            "--name=a",
            "--listen-peer-urls=http://0.0.0.0:7000",
            "--initial-advertise-peer-urls=http://10.0.0.1:7000,http://10.0.0.2:7000",
        ]);
        assert_eq!(got[0], "--data-dir=/p/etcd");
        assert!(
            got.contains(&"--initial-cluster=a=http://10.0.0.1:7000,a=http://10.0.0.2:7000".to_string()),
            "{got:?}"
        );
    }

    #[test]
    fn no_initial_cluster_when_the_user_says_how_to_find_the_cluster() {
        for user in [
            &["--initial-cluster=a=http://10.0.0.1:2380,b=http://10.0.0.2:2380"][..],
            &["--discovery", "https://discovery.etcd.io/x"],
            &["-discovery-srv=example.com"],
        ] {
            let got = line(user);
            let ours = &got[..got.len() - user.len()];
            assert!(!ours.iter().any(|a| a.starts_with("--initial-cluster")), "{got:?}");
        }
    }

    #[test]
    fn config_file_version_and_help_get_the_user_flags_only() {
        for user in [&["--config-file", "/etc/etcd.yml"][..], &["--version"], &["-version=true"], &["-h"]] {
            let cmd = etcd_command(&s(user), &|_| None, "h1", Path::new("/p"));
            assert_eq!(cmd.args, s(user));
            assert_eq!(cmd.default_data_dir, None);
        }
        assert_eq!(line(&["--version=false"])[..DEFAULTS.len()], s(DEFAULTS)[..]);
    }

    #[test]
    fn flags_set_in_etcds_environment_are_given() {
        let env = |k: &str| match k {
            "ETCD_NAME" => Some("e".to_string()),
            "ETCD_DATA_DIR" => Some("/var/lib/etcd".to_string()),
            "ETCD_LISTEN_PEER_URLS" => Some(String::new()),
            _ => None,
        };
        let cmd = etcd_command(&[], &env, "h1", Path::new("/p"));
        assert_eq!(
            cmd.args,
            s(&[
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                // An empty variable leaves etcd on its own default.
                "--initial-advertise-peer-urls=http://localhost:2380",
                "--initial-cluster=e=http://localhost:2380",
            ])
        );
        assert_eq!(cmd.default_data_dir, None);

        let config = |v: &'static str| move |k: &str| (k == "ETCD_CONFIG_FILE").then(|| v.to_string());
        assert!(etcd_command(&[], &config("/etc/etcd.yml"), "h1", Path::new("/p")).args.is_empty());
        assert_eq!(etcd_command(&[], &config(""), "h1", Path::new("/p")).args, s(DEFAULTS));
    }

    #[test]
    fn empty_hostname_falls_back_to_etcds_default_name() {
        let got = etcd_command_line(&[], "", Path::new("/p"));
        assert_eq!(got[0], "--name=default");
        assert_eq!(got[6], "--initial-cluster=default=http://127.0.0.1:2380");
    }

    #[test]
    fn mgmt_flags_after_etcd_flags_are_caught() {
        assert_eq!(misplaced_flag(&s(&["--name", "x", "--prefix", "/p"])), Some("--prefix"));
        assert_eq!(misplaced_flag(&s(&["--prefix=/p"])), Some("--prefix"));
        assert_eq!(misplaced_flag(&s(&["--name", "x", "--", "--prefix", "/p"])), None);
        assert_eq!(misplaced_flag(&s(&["--prefixes=1"])), None);
        assert_eq!(misplaced_flag(&s(&["--name", "x", "--tls-dir", "/c"])), Some("--tls-dir"));
        assert_eq!(misplaced_flag(&s(&["--tls-dir=/c"])), Some("--tls-dir"));
        assert_eq!(misplaced_flag(&s(&["--tls-dirs=/c"])), None);
    }

    #[test]
    fn a_server_certificate_makes_the_default_client_urls_https() {
        let tls_defaults = |got: &[String]| {
            got.contains(&"--listen-client-urls=https://127.0.0.1:2379".to_string())
                && got.contains(&"--advertise-client-urls=https://127.0.0.1:2379".to_string())
        };
        for user in [
            &["--cert-file=/c/s.crt", "--key-file=/c/s.key"][..],
            &["--cert-file", "/c/s.crt", "--key-file", "/c/s.key"],
            &["--auto-tls"],
        ] {
            assert!(tls_defaults(&line(user)), "{user:?}: {:?}", line(user));
        }
        // Peers stay plain loopback: their TLS is the peer flags' business.
        assert!(line(&["--cert-file=/c"]).contains(&"--listen-peer-urls=http://127.0.0.1:2380".to_string()));
        // Given client URLs are the user's choice, whatever they are.
        let got = line(&["--cert-file=/c", "--listen-client-urls=http://10.0.0.1:2379"]);
        assert!(got.contains(&"--advertise-client-urls=http://10.0.0.1:2379".to_string()), "{got:?}");
        assert!(!line(&["--auto-tls=false"]).iter().any(|a| a.contains("https")));
        // From etcd's environment too; an empty variable is no certificate.
        let env = |v: &'static str| move |k: &str| (k == "ETCD_CERT_FILE").then(|| v.to_string());
        assert!(tls_defaults(&etcd_command(&[], &env("/c/s.crt"), "h1", Path::new("/p")).args));
        assert_eq!(etcd_command(&[], &env(""), "h1", Path::new("/p")).args, s(DEFAULTS));
    }

    #[test]
    fn a_tls_dir_gives_etcd_its_certificates_and_client_certificate_auth() {
        let flags = tls_dir_flags(Path::new("/pki"), &[], &|_| None);
        assert_eq!(
            flags,
            s(&[
                "--cert-file=/pki/server.crt",
                "--key-file=/pki/server.key",
                "--trusted-ca-file=/pki/ca.crt",
                "--client-cert-auth",
            ])
        );
        // Then the defaults are TLS ones, and the user's own flags come last (they win).
        let user = s(&["--client-cert-auth=false"]);
        let all: Vec<String> = flags.iter().cloned().chain(user.clone()).collect();
        let got = etcd_command_line(&all, "h1", Path::new("/p"));
        assert!(got.contains(&"--listen-client-urls=https://127.0.0.1:2379".to_string()), "{got:?}");
        assert!(got.ends_with(&[flags.clone(), user].concat()), "{got:?}");

        // https peers get the same certificates.
        for user in [
            &["--listen-peer-urls=https://10.0.0.1:2380"][..],
            &["--initial-advertise-peer-urls", "https://e:2380"],
        ] {
            let got = tls_dir_flags(Path::new("/pki"), &s(user), &|_| None);
            assert!(got.contains(&"--peer-cert-file=/pki/server.crt".to_string()), "{got:?}");
            assert!(got.contains(&"--peer-trusted-ca-file=/pki/ca.crt".to_string()), "{got:?}");
            assert!(got.contains(&"--peer-client-cert-auth".to_string()), "{got:?}");
        }
        let got =
            tls_dir_flags(Path::new("/pki"), &s(&["--listen-peer-urls=http://10.0.0.1:2380"]), &|_| None);
        assert!(!got.iter().any(|f| f.starts_with("--peer-")), "{got:?}");
    }

    #[test]
    fn logged_words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_word("--initial-cluster=a=http://10.0.0.1:2380,b=http://[::1]:2380"),
            "'--initial-cluster=a=http://10.0.0.1:2380,b=http://[::1]:2380'"
        );
        assert_eq!(
            shell_word("--initial-cluster=a=http://10.0.0.1:2380,b=http://10.0.0.2:2380"),
            "--initial-cluster=a=http://10.0.0.1:2380,b=http://10.0.0.2:2380"
        );
        assert_eq!(shell_word("--data-dir=/my dir/etcd"), "'--data-dir=/my dir/etcd'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn binary_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let etcd = dir.path().join("etcd");
        std::fs::write(&etcd, "#!/bin/sh\n").unwrap();
        let empty = tempfile::tempdir().unwrap();
        let path = |dirs: &[&Path]| Some(std::env::join_paths(dirs).unwrap());

        // Not executable yet.
        assert!(find_binary(None, path(&[dir.path()])).is_err());
        std::fs::set_permissions(&etcd, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        assert_eq!(find_binary(None, path(&[empty.path(), dir.path()])).unwrap(), etcd);

        let err = find_binary(None, path(&[empty.path()])).unwrap_err().to_string();
        assert!(err.contains("apt install etcd-server") && err.contains("MGMT_ETCD_BINARY"), "{err}");

        // The variable wins over PATH; a bare name is looked up in PATH.
        assert_eq!(find_binary(Some(etcd.clone().into()), path(&[empty.path()])).unwrap(), etcd);
        assert_eq!(find_binary(Some("etcd".into()), path(&[dir.path()])).unwrap(), etcd);
        let err = find_binary(Some(empty.path().join("etcd").into()), path(&[dir.path()])).unwrap_err();
        assert!(err.to_string().contains("MGMT_ETCD_BINARY="), "{err}");
        // Set but empty counts as unset.
        assert_eq!(find_binary(Some("".into()), path(&[dir.path()])).unwrap(), etcd);
    }
}
