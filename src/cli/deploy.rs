//! `mgmt deploy`: publish, list, show, diff and roll back deploys.
//!
//! Exit status: 0 when done (or nothing new), 1 when nothing was published,
//! [`EXIT_PUBLISHED_BUT`] when the deploy is published (its ID printed) but a step after
//! publishing failed, and [`EXIT_UNKNOWN`] when etcd failed during the append and never said
//! afterwards whether the record landed. `deploy diff --exit-code` exits
//! [`diff::EXIT_DIFFERENT`] when there are differences.

pub mod diff;
pub mod list;
pub mod rollback;
pub mod who;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use etcd_client::Client;

use super::{DeployArgs, DeployCommand};
use crate::cli::etcd_errors::{readable, readable_as};
use crate::deploy::blobs;
use crate::deploy::check::{CheckError, check_built};
use crate::deploy::source::{self, Built};
use crate::deploy::store::{self, Appended, DeployKeys, NewDeploy, Published, StoreError};
use crate::frontend::GraphSpec;
use crate::text::count;
use crate::world::backoff::Backoff;
use crate::world::etcd::{EtcdError, connect, describe};

/// Deploy records kept by default (`--keep`).
pub const DEFAULT_KEEP: u64 = 50;

/// `deploy yaml`'s arguments.
#[derive(Args, Debug, Clone)]
pub struct YamlArgs {
    /// The graph file (its path in the repository), or a directory holding graph.yaml.
    pub file: PathBuf,
    #[command(flatten)]
    pub flags: PublishFlags,
}

/// `deploy lang`'s arguments: those of `deploy yaml`, for a program.
#[derive(Args, Debug, Clone)]
pub struct LangArgs {
    /// The program (its path in the repository): a .mcl file, or a module directory (its
    /// main.mcl, or the entry its metadata.yaml names).
    pub path: PathBuf,
    #[command(flatten)]
    pub flags: PublishFlags,
}

/// The flags of every subcommand that builds and publishes a bundle (`yaml`, `lang`).
#[derive(Args, Debug, Clone, Default)]
pub struct PublishFlags {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Deploy even if the live deploy already runs this commit and bundle.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub keep: KeepArg,
    /// Build the bundle and check it as agents would (its graph, or its program compiled for
    /// this host), print what would be published, and stop: nothing is written and etcd is
    /// not contacted (no --seeds needed).
    #[arg(long)]
    pub check: bool,
}

/// Which frontend a deploy publishes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Yaml,
    Lang,
}

/// What `deploy yaml` and `deploy lang` publish, and how.
#[derive(Debug, Clone)]
struct Publish {
    kind: Kind,
    path: PathBuf,
    flags: PublishFlags,
}

impl Publish {
    fn yaml(y: &YamlArgs) -> Publish {
        Publish { kind: Kind::Yaml, path: y.file.clone(), flags: y.flags.clone() }
    }

    fn lang(l: &LangArgs) -> Publish {
        Publish { kind: Kind::Lang, path: l.path.clone(), flags: l.flags.clone() }
    }
}

/// Where a bundle is built from: a commit, or a directory.
#[derive(Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// Bundle the graph's directory as it is instead of a git commit.
    #[arg(long, conflicts_with = "commit")]
    pub no_git: bool,
    /// Use this revision instead of HEAD (no clean-tree check; works in a bare repository,
    /// with FILE relative to the repository root).
    #[arg(long, value_name = "REV")]
    pub commit: Option<String>,
}

/// Retention after a new deploy.
#[derive(Args, Debug, Clone, Default)]
pub struct KeepArg {
    /// After the deploy, keep this many deploy records (the newest, and always the live one)
    /// and delete the blobs only older ones used [default: 50].
    #[arg(long, value_name = "N", value_parser = parse_keep)]
    pub keep: Option<u64>,
}

impl KeepArg {
    pub fn get(&self) -> u64 {
        self.keep.unwrap_or(DEFAULT_KEEP)
    }
}

/// `--keep N`: a count of at least 1.
fn parse_keep(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("at least 1 deploy is kept: the live one".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a number of deploys (1 or more)")),
    }
}

/// The flags of `yaml` and `rollback` given before the subcommand
/// (`mgmt deploy --commit REV yaml FILE`), as push hooks of earlier versions call it.
/// Hidden: each subcommand's help shows its own.
#[derive(Args, Debug, Clone, Default)]
pub struct FlagsBefore {
    /// Same as `yaml --keep` and `rollback --keep`.
    #[arg(long = "keep", hide = true, value_name = "N", value_parser = parse_keep)]
    pub keep: Option<u64>,
    /// Same as `yaml --no-git`.
    #[arg(long = "no-git", hide = true)]
    pub no_git: bool,
    /// Same as `yaml --commit`.
    #[arg(long = "commit", hide = true, value_name = "REV")]
    pub commit: Option<String>,
    /// Same as `yaml --force` and `rollback --force`.
    #[arg(long = "force", hide = true)]
    pub force: bool,
    /// Same as `yaml --check` and `rollback --check`.
    #[arg(long = "check", hide = true)]
    pub check: bool,
}

impl FlagsBefore {
    /// The subcommand with the flags given before it merged in; a flag it does not take
    /// is an error.
    pub fn merge_into(&self, command: DeployCommand) -> Result<DeployCommand> {
        let builds =
            matches!(command, DeployCommand::Yaml(_) | DeployCommand::Lang(_) | DeployCommand::Diff(_));
        let publishes =
            matches!(command, DeployCommand::Yaml(_) | DeployCommand::Lang(_) | DeployCommand::Rollback(_));
        let misplaced = [
            ("no-git", self.no_git, builds, "`deploy yaml`, `deploy lang` or `deploy diff`"),
            ("commit", self.commit.is_some(), builds, "`deploy yaml`, `deploy lang` or `deploy diff`"),
            ("force", self.force, publishes, "`deploy yaml`, `deploy lang` or `deploy rollback`"),
            ("keep", self.keep.is_some(), publishes, "`deploy yaml`, `deploy lang` or `deploy rollback`"),
            ("check", self.check, publishes, "`deploy yaml`, `deploy lang` or `deploy rollback`"),
        ];
        if let Some((name, _, _, takes)) = misplaced.iter().find(|(_, given, takes, _)| *given && !*takes) {
            bail!("`--{name}` goes with {takes}, after the subcommand");
        }
        Ok(match command {
            DeployCommand::Yaml(mut y) => {
                self.merge_publish(&mut y.flags)?;
                DeployCommand::Yaml(y)
            }
            DeployCommand::Lang(mut l) => {
                self.merge_publish(&mut l.flags)?;
                DeployCommand::Lang(l)
            }
            DeployCommand::Diff(mut d) => {
                self.merge_source(&mut d.source)?;
                DeployCommand::Diff(d)
            }
            DeployCommand::Rollback(mut r) => {
                r.force |= self.force;
                r.check |= self.check;
                r.keep.keep = r.keep.keep.or(self.keep);
                DeployCommand::Rollback(r)
            }
            other => other,
        })
    }

    fn merge_publish(&self, flags: &mut PublishFlags) -> Result<()> {
        self.merge_source(&mut flags.source)?;
        flags.force |= self.force;
        flags.check |= self.check;
        flags.keep.keep = flags.keep.keep.or(self.keep);
        Ok(())
    }

    fn merge_source(&self, source: &mut SourceArgs) -> Result<()> {
        source.no_git |= self.no_git;
        source.commit = source.commit.take().or_else(|| self.commit.clone());
        if source.no_git && source.commit.is_some() {
            bail!("`--no-git` and `--commit` cannot be used together");
        }
        Ok(())
    }
}

/// Exit status of a deploy or rollback that is published (agents will run it) although a
/// step after publishing failed: retention or compaction.
pub const EXIT_PUBLISHED_BUT: u8 = 3;

/// Exit status when etcd failed during the append transaction and could not be asked
/// afterwards whether the record was stored: the deploy may or may not be published.
pub const EXIT_UNKNOWN: u8 = 4;

/// How long to keep asking etcd whether a record whose append failed in transit is stored.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the steps after publishing may take together.
const AFTER_PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);

/// What etcd says when its database has reached its quota.
const NOSPACE: &str = "database space exceeded";

async fn client(args: &DeployArgs) -> Result<Client> {
    if args.cluster.seeds.is_empty() {
        bail!("--seeds (or MGMT_SEEDS) is needed: the etcd endpoints of the cluster");
    }
    let access = args.cluster.access()?;
    // `connect` has asked the member for its status (and leader) already: an unreachable
    // cluster fails here, not at the first write.
    let c = tokio::time::timeout(Duration::from_secs(5), connect(&access))
        .await
        .map_err(|_| EtcdError::unreachable(&access.label(), "no answer within 5 s"))??;
    Ok(c)
}

pub async fn run(args: DeployArgs) -> Result<u8> {
    let keys = DeployKeys::new(&args.cluster.etcd_namespace);
    // A misplaced flag is a command-line error (exit 2), like any other.
    let command = args.before.merge_into(args.command.clone()).unwrap_or_else(|e| {
        use clap::CommandFactory;
        super::Cli::command().error(clap::error::ErrorKind::ArgumentConflict, e).exit()
    });
    let r = match &command {
        DeployCommand::Yaml(y) => publish(&args, &keys, &Publish::yaml(y)).await,
        DeployCommand::Lang(l) => publish(&args, &keys, &Publish::lang(l)).await,
        DeployCommand::List(l) => list::list(&args, &keys, l).await,
        DeployCommand::Show(s) => list::show(&args, &keys, s).await,
        DeployCommand::Rollback(r) => rollback::rollback(&args, &keys, r).await,
        DeployCommand::Diff(d) => diff::diff(&args, &keys, d).await,
    };
    r.map_err(|e| {
        // Only on failure: naming the user reads the client certificate again.
        let seeds = args.cluster.seeds.join(",");
        let user = args.cluster.access().ok().and_then(|a| a.user_name());
        explain(readable_as(e, &seeds, user.as_deref()), &seeds)
    })
}

async fn publish(args: &DeployArgs, keys: &DeployKeys, y: &Publish) -> Result<u8> {
    if y.flags.check {
        let built = build_as(y.kind, &y.path, y.flags.source.no_git, y.flags.source.commit.as_deref())?;
        let spec = check(&built.manifest, &built.contents)?;
        print_checked(&built, &spec);
        return Ok(0);
    }
    let mut progress = super::progress::Progress::new("storing blobs");
    let (built, mut c) = build_and_connect(args, y).await?;
    // The head of the history is read while the blobs are listed: it says which need no
    // reading back, and it is where the record goes.
    let mut head = None;
    let mut reader = c.clone();
    let trusted = async {
        let (trusted, h) = live_blobs(&mut reader, keys).await;
        head = h;
        trusted
    };
    let up = blobs::store_bundle_with(&mut c, keys, &built, trusted, &mut |done, total| {
        progress.update(done, total)
    })
    .await?;
    progress.finish();
    if up.repaired > 0 {
        match up.repaired {
            1 => eprintln!("mgmt: 1 stored blob did not match its sha256 and was stored again"),
            n => eprintln!("mgmt: {n} stored blobs did not match their sha256 and were stored again"),
        }
    }
    let info = built.commit.clone();
    let new = NewDeploy {
        bundle: built.manifest.id(),
        frontend: built.manifest.frontend.clone(),
        entry: built.manifest.entry.clone(),
        commit: info.as_ref().map(|i| i.id.clone()),
        author: info.as_ref().map(|i| i.author.clone()),
        message: info.as_ref().map(|i| i.subject.clone()),
        rollback_of: None,
        // The graph's repository says who deploys it, wherever the command runs.
        deployer: Some(who::deployer(
            y.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(".".as_ref()),
        )),
        reason: None,
    };
    let records = head.as_ref().map_or(0, |h| h.intact);
    let guard = store::AppendGuard { force: y.flags.force, blobs_at: Some(up.read_at), head };
    let restore = async |c: &mut Client| {
        let (restored, read_at) = blobs::ensure_bundle(c, keys, &built).await?;
        if restored > 0 {
            eprintln!(
                "mgmt: retention deleted {} of this deploy meanwhile; stored again",
                count(restored, "blob")
            );
        }
        Ok(read_at)
    };
    let Some(appended) = append(&mut c, keys, new, guard, restore).await? else { return Ok(EXIT_UNKNOWN) };
    let r = match published(keys, appended) {
        Published::New(r) => r,
        Published::NothingNew(r) => {
            println!(
                "nothing new: deploy {} already runs bundle {} (use --force to deploy it again)",
                r.id, r.bundle
            );
            return Ok(0);
        }
    };
    // From here on the deploy is live: its ID is printed before anything else can fail.
    println!("deploy {}", r.id);
    println!("commit {}", r.commit.as_deref().unwrap_or("none (--no-git)"));
    println!("bundle {}", r.bundle);
    eprintln!(
        "mgmt: deployed {} ({}, {} already stored) as deploy {}",
        count(built.manifest.files.len(), "file"),
        count(up.written, "new blob"),
        up.present + up.repaired,
        r.id
    );
    Ok(after_publish(&mut c, keys, y.flags.keep.get(), records + 1, r.id).await)
}

/// Where a bundle is taken to be unpacked while it is checked: the check depends on which
/// files the bundle holds, not on where they are.
pub(crate) const CHECKED_AT: &str = "/bundle";

/// The bundle's entry parsed and checked as agents check it before they run it; a program
/// is compiled for this host. A program's errors are shown whole on stderr.
fn check(m: &crate::deploy::bundle::Manifest, contents: &[Vec<u8>]) -> Result<GraphSpec> {
    let host = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    match check_built(m, contents, &host, std::path::Path::new(CHECKED_AT)) {
        Err(CheckError::Program(e)) => {
            Err(super::graph::program_failed(&e, &m.entry, "nothing was published"))
        }
        other => Ok(other?),
    }
}

/// What `--check` found: what would be published.
fn print_checked(built: &Built, spec: &GraphSpec) {
    let m = &built.manifest;
    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
    println!("valid {} (graph `{}`, {} resources)", m.entry, spec.name, spec.resources.len());
    println!("commit {}", built.commit.as_ref().map_or("none (--no-git)", |c| c.id.as_str()));
    println!("bundle {}", m.id());
    println!("files {} ({bytes} bytes)", m.files.len());
    eprintln!("mgmt: checked only (--check): nothing was published");
}

/// The live deploy's blobs, verified when it was published, which need not be read back
/// unless their keys changed since (see [`blobs::Trusted`]), and the head of the history.
/// Nothing is trusted when there is no live deploy, `deploy/latest` is broken, or its
/// manifest does not verify.
async fn live_blobs(c: &mut Client, keys: &DeployKeys) -> (blobs::Trusted, Option<store::Head>) {
    let Ok(h) = store::head(c, keys).await else { return (blobs::Trusted::default(), None) };
    let (Some(live), None) = (&h.record, &h.broken) else { return (blobs::Trusted::default(), Some(h)) };
    let trusted = match store::fetch_manifest(c, keys, &live.bundle).await {
        Ok(m) => blobs::Trusted::live(&m, &live.bundle, h.latest_revision()),
        Err(_) => blobs::Trusted::default(),
    };
    (trusted, Some(h))
}

/// Build the bundle and check its graph as agents will (blocking work, on its own thread)
/// while connecting to etcd. A build or check error comes first, without waiting for etcd:
/// nothing is published that agents would refuse.
async fn build_and_connect(args: &DeployArgs, y: &Publish) -> Result<(Built, Client)> {
    let (kind, file, no_git, commit) =
        (y.kind, y.path.clone(), y.flags.source.no_git, y.flags.source.commit.clone());
    let mut building = tokio::task::spawn_blocking(move || -> Result<Built> {
        let built = build_as(kind, &file, no_git, commit.as_deref())?;
        check(&built.manifest, &built.contents)?;
        Ok(built)
    });
    let mut connecting = std::pin::pin!(client(args));
    tokio::select! {
        built = &mut building => {
            let built = built.context("building the bundle")??;
            Ok((built, connecting.await?))
        }
        c = &mut connecting => {
            let built = building.await.context("building the bundle")??;
            Ok((built, c?))
        }
    }
}

/// How many times a deploy's blobs are stored again because retention deleted some of them
/// meanwhile, before it gives up.
const PRUNED_RETRIES: usize = 5;

/// [`store::append`] of a record whose blobs were all stored at revision `blobs_at`. When
/// retention deleted blobs since, `restore` makes sure of them again and says from which
/// revision, and the append is tried again. When etcd fails during the append transaction
/// itself, find out whether the record landed by reading it back: published (go on as
/// usual), not published (an error), or unknown when etcd does not answer within
/// [`SETTLE_TIMEOUT`] (said so on stderr; `None`).
async fn append(
    c: &mut Client,
    keys: &DeployKeys,
    new: NewDeploy,
    mut guard: store::AppendGuard,
    mut restore: impl AsyncFnMut(&mut Client) -> Result<i64>,
) -> Result<Option<Appended>> {
    let mut restored = 0;
    let e = loop {
        let again = store::AppendGuard { head: guard.head.take(), ..guard };
        match store::append(c, keys, new.clone(), again).await {
            Ok(a) => return Ok(Some(a)),
            Err(StoreError::BlobsPruned(_)) if restored < PRUNED_RETRIES => {
                restored += 1;
                guard.blobs_at = Some(restore(c).await?);
            }
            Err(e) => break e,
        }
    };
    let StoreError::Unsettled(u) = e else { return Err(e.into()) };
    let u = *u;
    let id = u.rec.id;
    match stored_after_failure(c, keys, id).await {
        Some(stored) if store::settle(stored.as_deref(), &u.bytes) => {
            eprintln!(
                "mgmt: etcd failed while appending deploy {id} ({}), but its record is stored",
                describe(&u.source)
            );
            Ok(Some(Appended { published: Published::New(u.rec), repaired: u.repaired }))
        }
        Some(_) => Err(anyhow::Error::from(u).context("nothing was published")),
        None => {
            eprintln!(
                "mgmt: error: cannot tell whether deploy {id} was published: etcd failed while appending it ({}) and did not answer within {} s after; `mgmt deploy list` shows whether deploy {id} exists",
                describe(&u.source),
                SETTLE_TIMEOUT.as_secs()
            );
            Ok(None)
        }
    }
}

/// What `deploy/<id>` holds, asked again while etcd does not answer, for up to
/// [`SETTLE_TIMEOUT`]; `None` when it never answered.
async fn stored_after_failure(c: &mut Client, keys: &DeployKeys, id: u64) -> Option<Option<Vec<u8>>> {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    let mut backoff = Backoff::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, store::record_raw(c, keys, id)).await {
            Ok(Ok(stored)) => return Some(stored),
            Ok(Err(_)) if left > Duration::ZERO => {
                tokio::time::sleep(backoff.next_delay().min(left)).await;
            }
            _ => return None,
        }
    }
}

/// Report a repaired `deploy/latest` and hand back what was published.
fn published(keys: &DeployKeys, a: Appended) -> Published {
    if let Some((from, why)) = a.repaired {
        let from =
            from.map(|id| format!("deploy {id}, the newest intact record")).unwrap_or("no record".into());
        let now = match &a.published {
            Published::New(r) => format!("; it now names deploy {}", r.id),
            Published::NothingNew(_) => String::new(),
        };
        eprintln!("mgmt: warning: {} {why}; continuing from {from}{now}", keys.latest());
    }
    a.published
}

/// The steps after a record is published: retention, when there are more than `keep` of
/// the `records` known (counting the new one; 0: not known). A failure does not undo the
/// deploy, so it is a warning and the exit status is [`EXIT_PUBLISHED_BUT`].
async fn after_publish(c: &mut Client, keys: &DeployKeys, keep: u64, records: usize, id: u64) -> u8 {
    if records > 0 && records as u64 <= keep {
        // Concurrent deploys may have added more: the next deploy's retention sees them.
        return 0;
    }
    let mut step = "pruning old deploys (--keep)";
    // Bounded, so that an etcd gone away cannot hold a push hook for ever.
    let r = tokio::time::timeout(AFTER_PUBLISH_TIMEOUT, async {
        let p = store::prune(c, keys, keep as usize).await?;
        if p.records > 0 || p.blobs > 0 {
            eprintln!(
                "mgmt: pruned {} old deploy records and {} unused blobs (--keep {keep})",
                p.records, p.blobs
            );
            step = "compacting etcd to free the pruned space";
            store::compact(c, p.revision).await?;
        }
        anyhow::Ok(())
    })
    .await
    .unwrap_or_else(|_| {
        Err(anyhow::anyhow!("etcd did not answer within {} s", AFTER_PUBLISH_TIMEOUT.as_secs()))
    });
    match r {
        Ok(()) => 0,
        Err(e) => {
            let e = explain(e, "");
            eprintln!("mgmt: warning: deploy {id} is published, but {step} failed: {e:#}");
            EXIT_PUBLISHED_BUT
        }
    }
}

/// An etcd error as one line with the URL (`seeds`) and a hint; when etcd's database is
/// full, also what deploys can do about it.
fn explain(e: anyhow::Error, seeds: &str) -> anyhow::Error {
    let e = readable(e, seeds);
    if !e.chain().any(|c| c.to_string().contains(NOSPACE)) {
        return e;
    }
    anyhow::anyhow!("{e:#}\nhint: keep fewer deploys (--keep) once space is freed")
}

/// At most `n` characters of `s`, cut on a character boundary.
pub fn clip(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map(|(i, _)| &s[..i]).unwrap_or(s)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC), by the civil-from-days algorithm.
pub fn utc(t: u64) -> String {
    let (days, secs) = ((t / 86400) as i64, t % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// The bundle `deploy yaml FILE` or `deploy lang PATH` publishes.
fn build_as(kind: Kind, file: &std::path::Path, no_git: bool, commit: Option<&str>) -> Result<Built> {
    if kind == Kind::Lang {
        return build_lang(file, no_git, commit);
    }
    // A directory stands for its graph.yaml; with --commit, the commit's tree decides.
    let joined;
    let file = if file.is_dir() {
        joined = file.join(source::DEFAULT_GRAPH);
        if commit.is_none() && !joined.exists() {
            bail!(
                "`{}` is a directory without a {}; name the graph file",
                file.display(),
                source::DEFAULT_GRAPH
            );
        }
        joined.as_path()
    } else {
        file
    };
    if no_git {
        let abs = std::path::absolute(file)?;
        let root = abs.parent().context("the graph file has no directory")?;
        let entry = abs.file_name().context("the graph file has no name")?.to_string_lossy().into_owned();
        if !abs.is_file() {
            bail!("{} is not a file", file.display());
        }
        return Ok(source::from_dir(root, "yaml", &entry)?);
    }
    let (start, entry) = match commit {
        // With --commit the file need not exist in the work tree (or there may be none).
        Some(_) if !file.exists() => {
            let cwd = std::env::current_dir()?;
            let entry = entry_at_commit(&cwd, file)?;
            (cwd, entry)
        }
        _ => source::path_in_repo(file)?,
    };
    Ok(source::from_git(&start, "yaml", &entry, commit)?)
}

/// The bundle of a program: with --no-git, its module's directory as it is (a directory
/// argument, or a file's directory); else the commit's tree, with the program's path in it as
/// the entry (a directory stands for its metadata.yaml or main.mcl).
fn build_lang(path: &std::path::Path, no_git: bool, commit: Option<&str>) -> Result<Built> {
    if no_git {
        let abs = std::path::absolute(path)?;
        let (root, entry) = if abs.is_dir() {
            (abs.clone(), ".".to_string())
        } else if abs.is_file() {
            let root = abs.parent().context("the program has no directory")?.to_path_buf();
            (root, abs.file_name().context("the program has no name")?.to_string_lossy().into_owned())
        } else {
            bail!("{} is neither a .mcl file nor a module directory", path.display());
        };
        return Ok(source::from_dir(&root, "lang", &entry)?);
    }
    let (start, entry) = match commit {
        Some(_) if !path.exists() => {
            let cwd = std::env::current_dir()?;
            let entry = entry_at_commit(&cwd, path)?;
            (cwd, entry)
        }
        _ if path.is_dir() => dir_in_repo(path)?,
        _ => source::path_in_repo(path)?,
    };
    Ok(source::from_git(&start, "lang", &entry, commit)?)
}

/// Where the directory `dir` is relative to the root of its repository's work tree (`.` for
/// the root itself).
fn dir_in_repo(dir: &std::path::Path) -> Result<(PathBuf, String)> {
    let abs = std::path::absolute(dir)?.canonicalize()?;
    let repo = git2::Repository::discover(&abs)?;
    let Some(workdir) = repo.workdir() else {
        return Ok((std::env::current_dir()?, dir.to_string_lossy().trim_start_matches("./").to_string()));
    };
    let workdir = workdir.canonicalize()?;
    let rel = abs
        .strip_prefix(&workdir)
        .with_context(|| format!("{} is outside the work tree {}", dir.display(), workdir.display()))?;
    let rel = rel.to_string_lossy();
    Ok((workdir.clone(), if rel.is_empty() { ".".to_string() } else { rel.into_owned() }))
}

/// The graph's path inside the commit's tree, for a FILE that is not in the work tree (or
/// with no work tree at all: a bare repository). An absolute FILE inside the work tree of
/// the repository at `cwd` is taken relative to it; any other absolute FILE cannot name a
/// path in a tree, and the error says what to give instead.
fn entry_at_commit(cwd: &std::path::Path, file: &std::path::Path) -> Result<String> {
    if !file.is_absolute() {
        return Ok(file.to_string_lossy().trim_start_matches("./").to_string());
    }
    let workdir = git2::Repository::discover(cwd).ok().and_then(|r| r.workdir().map(|w| w.to_path_buf()));
    if let Some(rel) = workdir.as_deref().and_then(|w| file.strip_prefix(w).ok()) {
        return Ok(rel.to_string_lossy().into_owned());
    }
    bail!(
        "`{}` is an absolute path; with --commit, FILE is the graph's path inside the repository, \
         relative to its root (for example `graph.yaml` or `deploy/graph.yaml`)",
        file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(args: &[&str]) -> Result<DeployCommand> {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        let crate::cli::Command::Deploy(d) = cli.command else { panic!("not deploy") };
        d.before.merge_into(d.command)
    }

    #[test]
    fn flags_before_the_subcommand_go_to_it_or_are_refused() {
        let Ok(DeployCommand::Yaml(y)) =
            merged(&["mgmt", "deploy", "--commit", "v1", "--keep", "3", "--force", "yaml", "g"])
        else {
            panic!("not yaml")
        };
        assert_eq!(
            (y.flags.source.commit.as_deref(), y.flags.keep.get(), y.flags.force),
            (Some("v1"), 3, true)
        );
        let Ok(DeployCommand::Yaml(y)) = merged(&["mgmt", "deploy", "yaml", "g"]) else { panic!("not yaml") };
        assert_eq!((y.flags.source.commit, y.flags.keep.get(), y.flags.force), (None, DEFAULT_KEEP, false));
        let Ok(DeployCommand::Diff(d)) = merged(&["mgmt", "deploy", "--no-git", "diff", "g"]) else {
            panic!("not diff")
        };
        assert!(d.source.no_git);
        let Ok(DeployCommand::Lang(l)) =
            merged(&["mgmt", "deploy", "--no-git", "--check", "--keep", "4", "lang", "app/", "--force"])
        else {
            panic!("not lang")
        };
        assert!(l.flags.source.no_git && l.flags.check && l.flags.force && l.flags.keep.get() == 4);
        assert_eq!(l.path, PathBuf::from("app/"));
        let Ok(DeployCommand::Rollback(r)) = merged(&["mgmt", "deploy", "--keep", "2", "rollback"]) else {
            panic!("not rollback")
        };
        assert_eq!(r.keep.get(), 2);
        let e = |args: &[&str]| merged(args).unwrap_err().to_string();
        assert_eq!(
            e(&["mgmt", "deploy", "--force", "list"]),
            "`--force` goes with `deploy yaml`, `deploy lang` or `deploy rollback`, after the subcommand"
        );
        assert_eq!(
            e(&["mgmt", "deploy", "--commit", "x", "rollback"]),
            "`--commit` goes with `deploy yaml`, `deploy lang` or `deploy diff`, after the subcommand"
        );
        assert_eq!(
            e(&["mgmt", "deploy", "--no-git", "yaml", "--commit", "x", "g"]),
            "`--no-git` and `--commit` cannot be used together"
        );
    }

    #[test]
    fn clip_cuts_on_character_boundaries() {
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("ab", 12), "ab");
        assert_eq!(clip("aéééééééééééé", 12), "aééééééééééé");
        assert_eq!(clip("日本語", 2), "日本");
        assert_eq!(clip("", 12), "");
    }

    #[test]
    fn etcd_errors_are_one_line_and_only_nospace_gets_the_deploy_hint() {
        let full = anyhow::Error::from(etcd_client::Error::Internal(
            "etcdserver: mvcc: database space exceeded".into(),
        ))
        .context("storing a blob");
        let e = format!("{:#}", explain(full, "http://h:1"));
        assert!(e.starts_with("storing a blob: etcd is out of space at http://h:1"), "{e}");
        assert!(e.contains("alarm disarm") && e.ends_with("(--keep) once space is freed"), "{e}");
        let other = format!("{:#}", explain(anyhow::anyhow!("connection refused"), "http://h:1"));
        assert_eq!(other, "connection refused");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(1_795_388_462), "2026-11-22 23:01:02");
    }
}
