//! Command line: `mgmt run`, `mgmt graph`, `mgmt etcd`, `mgmt status`, ... Errors become
//! `anyhow` here, at the edge.

pub mod access;
pub mod certs;
pub mod deploy;
pub mod etcd;
pub mod etcd_errors;
pub mod graph;
pub mod logfmt;
pub mod prefix;
pub mod progress;
pub mod run;
pub mod shell;
pub mod status;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The default state directory: `/var/lib/mgmt` as root, `~/.cache/mgmt` otherwise.
pub fn default_prefix() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/var/lib/mgmt")
    } else {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/mgmt"))
            .unwrap_or_else(|| PathBuf::from("/tmp/mgmt-state"))
    }
}

#[derive(Parser, Debug)]
#[command(name = "mgmt", version = shell::VERSION, about = "Real-time, closed-loop configuration management")]
pub struct Cli {
    /// Log filter: error, warn (or warning), info, debug, trace, off, or a tracing directive
    /// such as `mgmt=debug`.
    #[arg(
        long,
        global = true,
        env = "MGMT_LOG",
        default_value = "info",
        value_name = "LEVEL",
        help_heading = "Logging"
    )]
    pub log_level: String,
    /// Log line format: `text` for people (coloured on a terminal unless NO_COLOR is set), `json`
    /// for one JSON object per line with the event's fields as keys.
    #[arg(long, global = true, env = "MGMT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text,
          value_name = "FORMAT", help_heading = "Logging")]
    pub log_format: LogFormat,
    /// Connection flags given before the subcommand (`mgmt --seeds URL status`); they may also
    /// come after it, where they take precedence.
    #[command(flatten)]
    pub leading: LeadingClusterArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    // Plain comments, not doc comments: help on the values would switch every command's
    // `--help` to the long layout.
    // One line per event: time, level, message and fields; coloured on a terminal unless
    // `NO_COLOR` is set.
    Text,
    // One JSON object per line, with the event's fields (a resource's `kind`, `name`, ...)
    // as keys.
    Json,
}

/// `--seeds` and `--etcd-namespace` before the subcommand. Without an environment variable or
/// a default: those belong to the subcommand's own [`ClusterArgs`], so that the help of each
/// subcommand that talks to etcd shows them.
#[derive(Args, Debug, Clone, Default)]
pub struct LeadingClusterArgs {
    /// etcd client URLs, comma-separated (also accepted after the subcommand).
    #[arg(long = "seeds", id = "leading_seeds", value_delimiter = ',', value_name = "URLS",
          value_parser = crate::world::etcd::parse_seed)]
    pub seeds: Option<Vec<String>>,
    /// Key prefix of everything mgmt stores in etcd (also accepted after the subcommand).
    #[arg(long = "etcd-namespace", id = "leading_etcd_namespace", value_name = "PREFIX")]
    pub etcd_namespace: Option<String>,
    #[command(flatten)]
    pub secure: access::LeadingSecureArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an agent on a graph, repairing drift as it happens.
    Run(RunArgs),
    /// Print the resource graph a graph file or mcl program produces, with autoedges; apply
    /// nothing.
    Graph(graph::GraphArgs),
    /// Start an etcd server member (runs the `etcd` binary; flags pass through).
    Etcd(EtcdArgs),
    /// Make a CA, etcd's server certificate and client certificates for a locked-down cluster.
    Certs(certs::CertsArgs),
    /// Show the hosts of a cluster: alive, converged or not, last error.
    #[command(after_help = STATUS_EXIT_STATUS)]
    Status(StatusArgs),
    /// Publish a graph or mcl program from git (or a directory) as a verified bundle; list,
    /// show, diff, roll back.
    #[command(after_help = DEPLOY_EXIT_STATUS)]
    Deploy(DeployArgs),
    /// Print a shell completion script on stdout (try it: `source <(mgmt completion bash)`).
    Completion(shell::CompletionArgs),
    /// Write the man pages into a directory (used by `make install`).
    #[command(hide = true)]
    Manpages(shell::ManpagesArgs),
    /// Hold an SSH login for other commands (started by --ssh-control-persist).
    #[command(hide = true)]
    SshControl(access::SshControlArgs),
}

const DEPLOY_EXIT_STATUS: &str = "Exit status:\n  \
    0  done (or nothing new to deploy)\n  \
    1  failed; nothing was published\n  \
    2  invalid command line\n  \
    3  published (the deploy ID is printed and agents run it), but a later step failed: \
    pruning (--keep) or compacting etcd; see the warning\n  \
    `deploy diff --exit-code`: 0 no differences, 2 differences, 1 failed";

const STATUS_EXIT_STATUS: &str = "Exit status:\n  \
    0  every host runs the latest deploy and none is failing (with --wait: and has converged)\n  \
    1  a host is failing or not on the latest deploy (with --wait: a host failed, or refused \
    the latest deploy)\n  \
    2  invalid command line\n  \
    3  etcd cannot be asked: unreachable, or refusing the request\n  \
    4  --wait ran out of time";

#[derive(Args, Debug, Clone)]
pub struct DeployArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub before: deploy::FlagsBefore,
    #[command(subcommand)]
    pub command: DeployCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum DeployCommand {
    /// Deploy a YAML graph: the file's commit (HEAD, or --commit) in its git repository.
    Yaml(deploy::YamlArgs),
    /// The deploys, oldest first: which one is live and how many hosts run each.
    List(deploy::list::ListArgs),
    /// One deploy: its record and manifest.
    Show(deploy::list::ShowArgs),
    /// Deploy an earlier deploy's bundle again, as a new deploy (default: the previous one).
    Rollback(deploy::rollback::RollbackArgs),
    /// What a deploy would change against the live one: files of the bundle, and resources
    /// and edges of the graph.
    Diff(deploy::diff::DiffArgs),
    /// Deploy an mcl program: its module (a .mcl file's directory, or a module directory) at
    /// its commit (HEAD, or --commit) in its git repository.
    Lang(deploy::LangArgs),
}

/// Where the cluster is: shared by every command that talks to etcd. Global within its
/// command, so these flags are accepted after any of its subcommands too.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// etcd client URLs, comma-separated (e.g. http://127.0.0.1:2379). The first that answers
    /// is used, and another one if it stops answering.
    #[arg(long, global = true, env = "MGMT_SEEDS", value_delimiter = ',', value_name = "URLS",
          value_parser = crate::world::etcd::parse_seed)]
    pub seeds: Vec<String>,
    /// Key prefix of everything mgmt stores in etcd.
    #[arg(long, global = true, env = "MGMT_ETCD_NAMESPACE", default_value = "/_mgmt", value_name = "PREFIX")]
    pub etcd_namespace: String,
    #[command(flatten)]
    pub secure: access::SecureArgs,
}

impl ClusterArgs {
    /// How to reach etcd: the seeds, secured as the flags say.
    pub fn access(&self) -> anyhow::Result<crate::world::access::EtcdAccess> {
        self.secure.access(&self.seeds)
    }
}

#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// Directory for state; etcd's data dir is `<prefix>/etcd` unless `--data-dir` is given
    /// (default: /var/lib/mgmt as root, ~/.cache/mgmt otherwise).
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
    /// A directory made by `mgmt certs`: serve clients over TLS with its server.crt and accept
    /// only client certificates signed by its ca.crt (etcd's --cert-file, --key-file,
    /// --trusted-ca-file and --client-cert-auth); clients are served on https://127.0.0.1:2379
    /// unless etcd's flags say otherwise.
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Flags for etcd, passed through as given (e.g. --listen-client-urls=...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ETCD FLAGS")]
    pub etcd_flags: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print JSON (one object per host, in an array) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show only this host: its state and each failing resource with its last error.
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
    /// Wait until every host runs the latest deploy and has converged, with progress on
    /// stderr; TIMEOUT (90, 30s, 5m, 1h) bounds the wait, which is unbounded without it.
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          value_parser = status::parse_timeout)]
    pub wait: Option<Option<std::time::Duration>>,
}

/// The flags of `mgmt run`. Global within `run`, so they are accepted after `yaml FILE` too.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// This host's name (default: the system hostname).
    #[arg(long, global = true, env = "MGMT_HOSTNAME", value_name = "NAME")]
    pub hostname: Option<String>,
    /// Directory for the agent's state (default: /var/lib/mgmt as root, ~/.cache/mgmt otherwise).
    #[arg(long, global = true, env = "MGMT_PREFIX", conflicts_with = "tmp_prefix", value_name = "DIR")]
    pub prefix: Option<PathBuf>,
    /// Use a fresh temporary directory as prefix, removed on exit.
    #[arg(long, global = true)]
    pub tmp_prefix: bool,
    /// Change nothing; report what would change, per resource.
    #[arg(long, global = true)]
    pub noop: bool,
    /// Exit once every resource has been idle for this many seconds (0 if all are in their
    /// desired state, 1 if any failed).
    #[arg(long, global = true, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(..=crate::contract::limits::MAX_INTERVAL_SECS))]
    pub converged_timeout: Option<u64>,
    /// Check and apply every resource once, watch nothing, then exit.
    #[arg(long, global = true)]
    pub no_watch: bool,
    /// Exit with 0 if nothing changed, 2 if something changed (with --noop: would change),
    /// 4 if a check failed, 6 if both, counted over the whole run (needs --no-watch or
    /// --converged-timeout).
    #[arg(long, global = true)]
    pub detailed_exitcodes: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Seconds a dead agent stays registered in the cluster (its etcd lease).
    /// At most etcd's own maximum, 9,000,000,000 seconds.
    #[arg(long, global = true, env = "MGMT_LEASE_TTL", default_value_t = 10, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(2..=crate::world::etcd::MAX_LEASE_TTL))]
    pub lease_ttl: u64,
    #[command(subcommand)]
    pub frontend: Frontend,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Frontend {
    /// A YAML graph file; edits to it are swapped in live.
    Yaml {
        /// The graph file.
        file: PathBuf,
    },
    /// Run the cluster's newest deploy and each later one (needs --seeds).
    Empty,
    /// An mcl program (docs/lang.md); edits to any of its files are swapped in live, and so
    /// is each new graph its changing values (files it reads, the time, commands) give.
    Lang {
        /// The program: a .mcl file, or a module directory (its main.mcl, or the entry its
        /// metadata.yaml names).
        path: PathBuf,
        /// The least time between two evaluations for changed values: a value that changes
        /// without pause is evaluated at most 1000/MS times a second, always ending on its
        /// newest value.
        #[arg(long, value_name = "MS", default_value_t = 10)]
        coalesce_ms: u64,
    },
}

/// The log filter for `--log-level`: a level (`warning` is `warn`), or a tracing directive
/// (`mgmt=debug,info`, anything with `=`). Any other word is an error, not a target filter
/// that silently hides everything.
pub fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let word = level.trim().to_ascii_lowercase();
    let word = if word == "warning" { "warn".to_string() } else { word };
    let invalid = |why: &str| {
        format!(
            "invalid value '{level}' for '--log-level <LOG_LEVEL>'{why}\n  [possible values: error, warn (or warning), info, debug, trace, off, or a directive such as `mgmt=debug`]"
        )
    };
    if LEVELS.contains(&word.as_str()) {
        return Ok(tracing_subscriber::EnvFilter::new(word));
    }
    if !word.contains('=') {
        return Err(invalid(""));
    }
    tracing_subscriber::EnvFilter::try_new(level).map_err(|e| invalid(&format!(": {e}")))
}

/// Parses the command line, exiting with clap's message (status 2) on an error.
pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Clap's parse, then the connection flags given before the subcommand merged into the
/// subcommand's own: a flag after the subcommand wins, and either beats the environment.
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let sub = matches.subcommand().map(|(_, m)| m);
    cli.merge_leading(sub)
        .map_err(|msg| Cli::command().error(clap::error::ErrorKind::ArgumentConflict, msg))?;
    Ok(cli)
}

impl Cli {
    fn cluster_mut(&mut self) -> Option<&mut ClusterArgs> {
        match &mut self.command {
            Command::Run(a) => Some(&mut a.cluster),
            Command::Status(a) => Some(&mut a.cluster),
            Command::Deploy(a) => Some(&mut a.cluster),
            Command::Etcd(_)
            | Command::Graph(_)
            | Command::Certs(_)
            | Command::Completion(_)
            | Command::Manpages(_)
            | Command::SshControl(_) => None,
        }
    }

    fn merge_leading(&mut self, sub: Option<&clap::ArgMatches>) -> Result<(), String> {
        let LeadingClusterArgs { seeds, etcd_namespace, secure } = std::mem::take(&mut self.leading);
        if seeds.is_none() && etcd_namespace.is_none() && secure.is_empty() {
            return Ok(());
        }
        let given_after =
            |id: &str| sub.and_then(|m| m.value_source(id)) == Some(clap::parser::ValueSource::CommandLine);
        let Some(cluster) = self.cluster_mut() else {
            let which = match self.command {
                Command::Etcd(_) => "`mgmt etcd` (give etcd's own flags after `etcd`)",
                _ => "this command",
            };
            return Err(format!("connection flags (--seeds, --etcd-*, --ssh-*) do not apply to {which}"));
        };
        secure.merge_into(&mut cluster.secure, &given_after);
        if let Some(seeds) = seeds.filter(|_| !given_after("seeds")) {
            cluster.seeds = seeds;
        }
        if let Some(ns) = etcd_namespace.filter(|_| !given_after("etcd_namespace")) {
            cluster.etcd_namespace = ns;
        }
        Ok(())
    }
}

/// Whether log lines may carry colour: on a terminal, unless `NO_COLOR` is set to anything
/// but the empty string (no-color.org).
fn log_colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

fn init_logging(cli: &Cli) {
    let filter = match log_filter(&cli.log_level) {
        Ok(f) => f,
        Err(msg) => {
            use clap::CommandFactory;
            Cli::command().error(clap::error::ErrorKind::InvalidValue, msg).exit()
        }
    };
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => {
            fmt.fmt_fields(logfmt::TextFields).with_target(false).with_ansi(log_colour()).init()
        }
        LogFormat::Json => {
            fmt.json().flatten_event(true).with_current_span(false).with_span_list(false).init()
        }
    }
}

pub fn main() -> std::process::ExitCode {
    let cli = parse();
    // Commands that print for a pipe end quietly when it closes (`mgmt deploy list | head`),
    // like other Unix tools. Not the agent: a closed pipe must not kill it.
    if matches!(
        cli.command,
        Command::Deploy(_) | Command::Status(_) | Command::Graph(_) | Command::Completion(_)
    ) {
        // SAFETY: restoring the default disposition of a signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_logging(&cli);
    // File checks run on the blocking pool. Its default of 512 threads makes a thousand
    // concurrent checks slower (thread creation, contention on one directory's lock, slow
    // exit), not faster: the disk is the limit. See BENCHMARKS.md.
    // Sockets are written by the runtime's threads, some with writev, which raises SIGPIPE
    // when etcd closes a connection (a refused TLS client certificate): blocked there, it is
    // an error to report, not the end of a command that restored its default above.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(32)
        .on_thread_start(|| {
            let _ = nix::sys::signal::SigSet::from(nix::sys::signal::Signal::SIGPIPE).thread_block();
        })
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mgmt: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Graph(args) => graph::run(args).await,
            Command::Etcd(args) => etcd::run(args),
            Command::Certs(args) => certs::run(args),
            Command::Status(args) => status::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Completion(args) => shell::completion(args),
            Command::Manpages(args) => shell::manpages(args),
            Command::SshControl(args) => access::ssh_control(args).await,
        }
    });
    // Detached blocking work (a file write already under way) must not delay exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(50));
    match code {
        Ok(c) => std::process::ExitCode::from(c),
        Err(e) => {
            eprintln!("mgmt: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Command, DeployCommand, Frontend, log_filter, try_parse_from};

    fn parse(line: &str) -> Result<super::Cli, clap::Error> {
        try_parse_from(line.split_whitespace())
    }

    fn seeds_and_namespace(line: &str) -> (Vec<String>, String) {
        let cli = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let c = match cli.command {
            Command::Run(a) => a.cluster,
            Command::Status(a) => a.cluster,
            Command::Deploy(a) => a.cluster,
            _ => panic!("{line}: no cluster flags"),
        };
        (c.seeds, c.etcd_namespace)
    }

    #[test]
    fn connection_flags_are_accepted_before_or_after_any_subcommand() {
        let want = (vec!["http://127.0.0.1:1".to_string()], "/ns".to_string());
        for line in [
            "mgmt --seeds http://127.0.0.1:1 --etcd-namespace /ns status",
            "mgmt status --seeds http://127.0.0.1:1 --etcd-namespace /ns",
            "mgmt --seeds http://127.0.0.1:1 deploy list --etcd-namespace /ns",
            "mgmt deploy list --seeds http://127.0.0.1:1 --etcd-namespace /ns",
            "mgmt deploy --seeds http://127.0.0.1:1 show 3 --etcd-namespace /ns",
            "mgmt --etcd-namespace /ns run yaml g.yaml --seeds http://127.0.0.1:1",
            "mgmt run --seeds http://127.0.0.1:1 empty --etcd-namespace /ns",
        ] {
            assert_eq!(seeds_and_namespace(line), want, "{line}");
        }
    }

    #[test]
    fn a_flag_after_the_subcommand_wins_over_one_before_it() {
        let (seeds, ns) = seeds_and_namespace(
            "mgmt --seeds http://127.0.0.1:1 --etcd-namespace /a status --seeds http://127.0.0.1:2",
        );
        assert_eq!((seeds, ns.as_str()), (vec!["http://127.0.0.1:2".to_string()], "/a"));
    }

    #[test]
    fn connection_flags_do_not_apply_to_mgmt_etcd() {
        let e = parse("mgmt --seeds http://127.0.0.1:1 etcd").unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(e.to_string().contains("do not apply to `mgmt etcd`"), "{e}");
    }

    #[test]
    fn run_flags_are_accepted_after_the_frontend_and_its_file() {
        let cli = parse("mgmt run yaml g.yaml --noop --no-watch --hostname h1 --tmp-prefix").unwrap();
        let Command::Run(a) = cli.command else { panic!() };
        assert!(a.noop && a.no_watch && a.tmp_prefix);
        assert_eq!(a.hostname.as_deref(), Some("h1"));
        assert!(matches!(a.frontend, Frontend::Yaml { .. }));
    }

    #[test]
    fn graph_format_is_accepted_before_or_after_the_frontend() {
        use super::graph::{Format, GraphFrontend};
        for (line, want) in [
            ("mgmt graph yaml g.yaml", Format::Text),
            ("mgmt graph --format json yaml g.yaml", Format::Json),
            ("mgmt graph yaml g.yaml --format dot", Format::Dot),
        ] {
            let Command::Graph(a) = parse(line).unwrap().command else { panic!("{line}") };
            assert_eq!(a.format, want, "{line}");
            assert!(matches!(a.frontend, GraphFrontend::Yaml { .. }), "{line}");
        }
        assert_eq!(parse("mgmt graph --format svg yaml g.yaml").unwrap_err().exit_code(), 2);
        for line in ["mgmt graph --format json lang m.mcl", "mgmt graph lang m.mcl --format json"] {
            let Command::Graph(a) = parse(line).unwrap().command else { panic!("{line}") };
            assert_eq!(a.format, Format::Json, "{line}");
            assert!(matches!(a.frontend, GraphFrontend::Lang { .. }), "{line}");
        }
    }

    #[test]
    fn run_flags_are_accepted_before_or_after_lang_and_its_path() {
        for line in [
            "mgmt run --noop --no-watch --hostname h1 --tmp-prefix lang app/",
            "mgmt run lang app/ --noop --no-watch --hostname h1 --tmp-prefix",
        ] {
            let Command::Run(a) = parse(line).unwrap().command else { panic!("{line}") };
            assert!(a.noop && a.no_watch && a.tmp_prefix, "{line}");
            assert_eq!(a.hostname.as_deref(), Some("h1"), "{line}");
            assert!(
                matches!(&a.frontend, Frontend::Lang { path, .. } if path.as_os_str() == "app/"),
                "{line}"
            );
        }
    }

    #[test]
    fn log_flags_are_accepted_anywhere_and_bad_seeds_are_usage_errors() {
        let cli = parse("mgmt deploy list --log-level debug --log-format json").unwrap();
        assert_eq!((cli.log_level.as_str(), cli.log_format), ("debug", super::LogFormat::Json));
        assert!(matches!(cli.command, Command::Deploy(d) if matches!(d.command, DeployCommand::List { .. })));
        for bad in [
            "mgmt status --seeds htp://x:1",
            "mgmt --seeds http://h:99999 status",
            "mgmt --log-format xml status",
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    /// Every flag and argument of every command explains itself in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && !a.is_hide_set() && a.get_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = <super::Cli as clap::CommandFactory>::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "mgmt", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn log_levels_and_directives_are_accepted() {
        for ok in [
            "error",
            "warn",
            "warning",
            "WARNING",
            "info",
            "debug",
            "trace",
            "off",
            "mgmt=debug",
            "info,mgmt=trace",
        ] {
            assert!(log_filter(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn unknown_levels_are_refused_with_the_valid_ones() {
        for bad in ["verbose", "warnings", "", "mgmt=loud"] {
            let e = log_filter(bad).unwrap_err();
            assert!(e.contains("possible values: error, warn (or warning), info, debug, trace"), "{e}");
        }
    }
}
