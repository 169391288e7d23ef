//! Command line: `mgmt run`, `mgmt etcd`, `mgmt status`. Errors become `anyhow` here, at
//! the edge.

pub mod deploy;
pub mod etcd;
pub mod graph_file;
pub mod prefix;
pub mod progress;
pub mod run;
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
#[command(name = "mgmt", version, about = "Real-time, closed-loop configuration management")]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "MGMT_LOG", default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an agent on a graph, repairing drift as it happens.
    Run(RunArgs),
    /// Start an etcd server member (runs the `etcd` binary; flags pass through).
    Etcd(EtcdArgs),
    /// Show the hosts of a cluster: alive, converged or not, last error.
    Status(StatusArgs),
    /// Publish a graph from git (or a directory) as a verified bundle; list, show, roll back.
    #[command(after_help = DEPLOY_EXIT_STATUS)]
    Deploy(DeployArgs),
}

const DEPLOY_EXIT_STATUS: &str = "Exit status:\n  \
    0  done (or nothing new to deploy)\n  \
    1  failed; nothing was published\n  \
    2  invalid command line\n  \
    3  published (the deploy ID is printed and agents run it), but a later step failed: \
    checking its blobs again, pruning (--keep) or compacting etcd; see the warning";

#[derive(Args, Debug, Clone)]
pub struct DeployArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// After a new deploy, keep this many deploy records (the newest) and delete the blobs
    /// only older ones used.
    #[arg(long, global = true, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    /// Bundle the graph's directory as it is instead of a git commit.
    #[arg(long, global = true, conflicts_with = "commit")]
    pub no_git: bool,
    /// Deploy this revision instead of HEAD (no clean-tree check; works in a bare
    /// repository, with FILE relative to the repository root).
    #[arg(long, global = true, value_name = "REV")]
    pub commit: Option<String>,
    /// Deploy even if the live deploy already runs this commit and bundle.
    #[arg(long, global = true)]
    pub force: bool,
    #[command(subcommand)]
    pub command: DeployCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum DeployCommand {
    /// Deploy a YAML graph: the file's commit (HEAD, or --commit) in its git repository.
    Yaml {
        /// The graph file (its path in the repository).
        file: PathBuf,
    },
    /// Every deploy, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One deploy: its record and manifest.
    Show { id: u64 },
    /// Deploy an earlier deploy's bundle again, as a new deploy (by ID or commit).
    Rollback {
        /// A deploy ID, or a commit (or a unique prefix of one).
        target: String,
    },
}

/// Where the cluster is: shared by every command that talks to etcd.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// etcd client URLs, comma-separated (e.g. http://127.0.0.1:2379). Without them an agent
    /// runs standalone. The first that answers is used; another one if it stops answering.
    #[arg(long, env = "MGMT_SEEDS", value_delimiter = ',', value_name = "URLS",
          value_parser = crate::world::etcd::parse_seed)]
    pub seeds: Vec<String>,
    /// Key prefix of everything mgmt stores in etcd.
    #[arg(long, default_value = "/_mgmt", value_name = "PREFIX")]
    pub etcd_namespace: String,
}

#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// Directory for state; etcd's data dir is `<prefix>/etcd` unless `--data-dir` is given
    /// (default: /var/lib/mgmt as root, ~/.cache/mgmt otherwise).
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
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
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// This host's name (default: the system hostname).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Directory for the agent's state (default: /var/lib/mgmt as root, ~/.cache/mgmt otherwise).
    #[arg(long, conflicts_with = "tmp_prefix")]
    pub prefix: Option<PathBuf>,
    /// Use a fresh temporary directory as prefix, removed on exit.
    #[arg(long)]
    pub tmp_prefix: bool,
    /// Change nothing; report what would change, per resource.
    #[arg(long)]
    pub noop: bool,
    /// Exit once every resource has been idle for this many seconds (0 if all are in their
    /// desired state, 1 if any failed).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(..=crate::engine::limits::MAX_INTERVAL_SECS))]
    pub converged_timeout: Option<u64>,
    /// Check and apply every resource once, watch nothing, then exit.
    #[arg(long)]
    pub no_watch: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Seconds a dead agent stays registered in the cluster (its etcd lease).
    /// At most etcd's own maximum, 9,000,000,000 seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS",
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

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Commands that print for a pipe end quietly when it closes (`mgmt deploy list | head`),
    // like other Unix tools. Not the agent: a closed pipe must not kill it.
    if matches!(cli.command, Command::Deploy(_) | Command::Status(_)) {
        // SAFETY: restoring the default disposition of a signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let filter = match log_filter(&cli.log_level) {
        Ok(f) => f,
        Err(msg) => {
            use clap::CommandFactory;
            Cli::command().error(clap::error::ErrorKind::InvalidValue, msg).exit()
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    // File checks run on the blocking pool. Its default of 512 threads makes a thousand
    // concurrent checks slower (thread creation, contention on one directory's lock, slow
    // exit), not faster: the disk is the limit. See BENCHMARKS.md.
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(32).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mgmt: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Etcd(args) => etcd::run(args),
            Command::Status(args) => status::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
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
    use super::log_filter;

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
