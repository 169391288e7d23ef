//! `mgmt deploy`: publish, list, show and roll back deploys.
//!
//! Exit status: 0 when done (or nothing new), 1 when nothing was published,
//! [`EXIT_PUBLISHED_BUT`] when the deploy is published (its ID printed) but a step after
//! publishing failed, and [`EXIT_UNKNOWN`] when etcd failed during the append and never said
//! afterwards whether the record landed.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::Client;

use super::{DeployArgs, DeployCommand};
use crate::deploy::source::{self, Built};
use crate::deploy::store::{self, Appended, DeployKeys, DeployRecord, NewDeploy, Published};
use crate::world::etcd::{Backoff, connect};

/// Exit status of a deploy or rollback that is published (agents will run it) although a
/// step after publishing failed: checking its blobs again, retention or compaction.
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
    let seeds = args.cluster.seeds.join(",");
    let mut c = tokio::time::timeout(Duration::from_secs(5), connect(&args.cluster.seeds))
        .await
        .map_err(|_| anyhow::anyhow!("etcd at {seeds} did not answer within 5 s"))??;
    // Fail fast on an unreachable cluster rather than at the first write.
    tokio::time::timeout(Duration::from_secs(5), c.status())
        .await
        .map_err(|_| anyhow::anyhow!("etcd at {seeds} did not answer within 5 s"))?
        .with_context(|| format!("reaching etcd at {seeds}"))?;
    Ok(c)
}

pub async fn run(args: DeployArgs) -> Result<u8> {
    let keys = DeployKeys::new(&args.cluster.etcd_namespace);
    let r = match &args.command {
        DeployCommand::Yaml { file } => yaml(&args, &keys, file).await,
        DeployCommand::List { json } => list(&args, &keys, *json).await,
        DeployCommand::Show { id } => {
            let mut c = client(&args).await?;
            let r = store::record(&mut c, &keys, *id).await?;
            let (manifest, _) = store::fetch_bundle(&mut c, &keys, &r.bundle).await?;
            let out = serde_json::json!({"record": r, "manifest": manifest});
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        DeployCommand::Rollback { target } => rollback(&args, &keys, target).await,
    };
    r.map_err(explain)
}

async fn yaml(args: &DeployArgs, keys: &DeployKeys, file: &std::path::Path) -> Result<u8> {
    let mut progress = super::progress::Progress::new("storing blobs");
    let (built, mut c) = build_and_connect(args, file).await?;
    let up = store::store_bundle_with(&mut c, keys, &built, &mut |done, total| progress.update(done, total))
        .await?;
    progress.finish();
    if up.repaired > 0 {
        eprintln!("mgmt: {} stored blobs did not match their sha256 and were stored again", up.repaired);
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
    };
    let Some(appended) = append(&mut c, keys, new, args.force).await? else { return Ok(EXIT_UNKNOWN) };
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
        "mgmt: deployed {} files ({} new blobs, {} already stored) as deploy {}",
        built.manifest.files.len(),
        up.written,
        up.present + up.repaired,
        r.id
    );
    Ok(after_publish(&mut c, keys, args.keep, r.id, Some(&built)).await)
}

/// Build the bundle (blocking work, on its own thread) while connecting to etcd. A build
/// error comes first, without waiting for etcd.
async fn build_and_connect(args: &DeployArgs, file: &std::path::Path) -> Result<(Built, Client)> {
    let (file, no_git, commit) = (file.to_path_buf(), args.no_git, args.commit.clone());
    let mut building = tokio::task::spawn_blocking(move || build(&file, no_git, commit.as_deref()));
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

/// [`store::append`], and when etcd fails during the append transaction itself, find out
/// whether the record landed by reading it back: published (go on as usual), not published
/// (an error), or unknown when etcd does not answer within [`SETTLE_TIMEOUT`] (said so on
/// stderr; `None`).
async fn append(c: &mut Client, keys: &DeployKeys, new: NewDeploy, force: bool) -> Result<Option<Appended>> {
    let u = match store::append(c, keys, new, force).await {
        Ok(a) => return Ok(Some(a)),
        Err(e) => e.downcast::<store::AppendUnsettled>()?,
    };
    let id = u.rec.id;
    match stored_after_failure(c, keys, id).await {
        Some(stored) if store::settle(stored.as_deref(), &u.bytes) => {
            eprintln!(
                "mgmt: etcd failed while appending deploy {id} ({}), but its record is stored",
                u.source
            );
            Ok(Some(Appended { published: Published::New(u.rec), repaired: u.repaired }))
        }
        Some(_) => Err(anyhow::Error::from(u).context("nothing was published")),
        None => {
            eprintln!(
                "mgmt: error: cannot tell whether deploy {id} was published: etcd failed while appending                  it ({}) and did not answer within {} s after; `mgmt deploy list` shows whether deploy                  {id} exists",
                u.source,
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

/// The steps after a record is published. A failure does not undo the deploy, so it is a
/// warning and the exit status is [`EXIT_PUBLISHED_BUT`].
async fn after_publish(c: &mut Client, keys: &DeployKeys, keep: u64, id: u64, built: Option<&Built>) -> u8 {
    let mut step = "checking its blobs again";
    // Bounded, so that an etcd gone away cannot hold a push hook for ever.
    let r = tokio::time::timeout(AFTER_PUBLISH_TIMEOUT, async {
        if let Some(built) = built {
            // A garbage collection by a concurrent deploy may have raced the upload.
            let restored = store::ensure_bundle(c, keys, built).await?;
            if restored > 0 {
                eprintln!("mgmt: {restored} blobs were collected while uploading and are stored again");
            }
        }
        step = "pruning old deploys (--keep)";
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
            let e = explain(e);
            eprintln!("mgmt: warning: deploy {id} is published, but {step} failed: {e:#}");
            EXIT_PUBLISHED_BUT
        }
    }
}

/// What anyone who can write etcd put in a record is shown escaped (no terminal control
/// sequences, one line per record) and bounded.
async fn list(args: &DeployArgs, keys: &DeployKeys, json: bool) -> Result<u8> {
    use super::status::shown;
    let mut c = client(args).await?;
    let listed = store::listing(&mut c, keys).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(0);
    }
    println!("{:<6} {:<20} {:<12} {:<30} {:<12} MESSAGE", "ID", "TIME", "COMMIT", "AUTHOR", "BUNDLE");
    for l in &listed {
        let Some(r) = &l.record else {
            println!(
                "deploy/{}: {}",
                l.key,
                shown(l.problem.as_deref().unwrap_or("not a valid record"), 400)
            );
            continue;
        };
        println!(
            "{:<6} {:<20} {:<12} {:<30} {:<12} {}",
            r.id,
            utc(r.time),
            shown(r.commit.as_deref().map(|c| clip(c, 12)).unwrap_or("-"), 64),
            shown(r.author.as_deref().unwrap_or("-"), 64),
            shown(clip(&r.bundle, 12), 64),
            match r.rollback_of {
                Some(x) => format!("rollback to deploy {x}"),
                None => shown(r.message.as_deref().unwrap_or_default(), 200),
            }
        );
        if let Some(problem) = &l.problem {
            println!("  ! {}", shown(problem, 400));
        }
    }
    Ok(0)
}

async fn rollback(args: &DeployArgs, keys: &DeployKeys, target: &str) -> Result<u8> {
    let mut c = client(args).await?;
    let history = store::history(&mut c, keys).await?;
    let to = pick(&history, target)?.clone();
    // The bundle must still be whole before anyone is asked to run it.
    store::fetch_bundle(&mut c, keys, &to.bundle)
        .await
        .with_context(|| format!("deploy {}'s bundle", to.id))?;
    let new = NewDeploy {
        bundle: to.bundle.clone(),
        frontend: to.frontend.clone(),
        entry: to.entry.clone(),
        commit: to.commit.clone(),
        author: to.author.clone(),
        message: to.message.clone(),
        rollback_of: Some(to.id),
    };
    let Some(appended) = append(&mut c, keys, new, true).await? else { return Ok(EXIT_UNKNOWN) };
    let (Published::New(r) | Published::NothingNew(r)) = published(keys, appended);
    println!("deploy {}", r.id);
    println!("rollback to deploy {} (bundle {})", to.id, r.bundle);
    Ok(after_publish(&mut c, keys, args.keep, r.id, None).await)
}

/// The shortest all-digit target that is also tried as a commit prefix (git's shortest
/// abbreviation).
const MIN_DIGITS_COMMIT_PREFIX: usize = 4;

/// The deploy a rollback target names: a deploy ID, or else a commit or a prefix of one that
/// only one commit has (the newest deploy of that commit). Pure.
pub fn pick<'a>(history: &'a [DeployRecord], target: &str) -> Result<&'a DeployRecord> {
    let target = target.trim();
    if target.is_empty() {
        bail!("rollback needs a deploy ID or a commit (or a unique prefix of one)");
    }
    if let Ok(id) = target.parse::<u64>()
        && let Some(r) = history.iter().find(|r| r.id == id)
    {
        return Ok(r);
    }
    // Digits name a deploy. Only a long run of them may also be a commit prefix, so a pruned
    // deploy's ID is never taken for a commit that happens to start with it.
    if target.bytes().all(|b| b.is_ascii_digit()) && target.len() < MIN_DIGITS_COMMIT_PREFIX {
        bail!("no deploy {target} in the history");
    }
    let prefix = target.to_ascii_lowercase();
    let matching: Vec<&DeployRecord> =
        history.iter().filter(|r| r.commit.as_deref().is_some_and(|c| c.starts_with(&prefix))).collect();
    let mut commits: Vec<&str> = matching.iter().filter_map(|r| r.commit.as_deref()).collect();
    commits.sort_unstable();
    commits.dedup();
    if commits.len() > 1 {
        let listed: Vec<String> = commits
            .iter()
            .map(|c| {
                let ids: Vec<String> = matching
                    .iter()
                    .filter(|r| r.commit.as_deref() == Some(c))
                    .map(|r| r.id.to_string())
                    .collect();
                format!("{c} (deploy {})", ids.join(", "))
            })
            .collect();
        bail!("`{target}` matches {} commits; give more of one:\n  {}", commits.len(), listed.join("\n  "));
    }
    matching.last().copied().with_context(|| format!("no deploy {target} (by id or commit) in the history"))
}

/// Add what to do when etcd's database is full: its NOSPACE error alone does not say.
fn explain(e: anyhow::Error) -> anyhow::Error {
    if !e.chain().any(|c| c.to_string().contains(NOSPACE)) {
        return e;
    }
    anyhow::anyhow!(
        "etcd is out of space (its --quota-backend-bytes is reached): {e:#}\n\
         hint: free it with `etcdctl compact <current revision>`, `etcdctl defrag` and \
         `etcdctl alarm disarm`, and keep fewer deploys (--keep); see docs/etcd.md"
    )
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

fn build(file: &std::path::Path, no_git: bool, commit: Option<&str>) -> Result<Built> {
    if file.is_dir() {
        bail!("`{}` is a directory, not a graph file", file.display());
    }
    if no_git {
        let abs = std::path::absolute(file)?;
        let root = abs.parent().context("the graph file has no directory")?;
        let entry = abs.file_name().context("the graph file has no name")?.to_string_lossy().into_owned();
        if !abs.is_file() {
            bail!("{} is not a file", file.display());
        }
        return source::from_dir(root, "yaml", &entry);
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
    source::from_git(&start, "yaml", &entry, commit)
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

    fn rec(id: u64, commit: Option<&str>) -> DeployRecord {
        DeployRecord {
            id,
            commit: commit.map(String::from),
            bundle: format!("b{id}"),
            frontend: "yaml".into(),
            entry: "g.yaml".into(),
            parent: None,
            author: None,
            time: 0,
            message: None,
            rollback_of: None,
        }
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
    fn rollback_targets_are_ids_or_commits_of_one_commit_only() {
        let h = [
            rec(1, Some("abcd1111")),
            rec(2, Some("abcd2222")),
            rec(3, Some("abcd1111")),
            rec(4, None),
            rec(5, Some("9fff0000")),
        ];
        assert_eq!(pick(&h, "2").unwrap().id, 2);
        // The newest deploy of a commit; case does not matter.
        assert_eq!(pick(&h, "abcd1").unwrap().id, 3);
        assert_eq!(pick(&h, "ABCD2").unwrap().id, 2);
        for empty in ["", "  "] {
            assert!(pick(&h, empty).unwrap_err().to_string().contains("needs a deploy ID"), "{empty:?}");
        }
        let e = pick(&h, "abcd").unwrap_err().to_string();
        assert!(e.contains("`abcd` matches 2 commits"), "{e}");
        assert!(e.contains("abcd1111 (deploy 1, 3)") && e.contains("abcd2222 (deploy 2)"), "{e}");
        // A pruned deploy's ID is not a prefix of the commit that starts with it.
        assert!(pick(&h, "9").unwrap_err().to_string().contains("no deploy 9"));
        assert!(pick(&h, "9fff").is_ok_and(|r| r.id == 5));
        assert!(pick(&h, "abc").is_err());
        assert!(pick(&h, "ff").is_err());
    }

    #[test]
    fn only_nospace_gets_the_hint() {
        let full = anyhow::anyhow!("etcdserver: mvcc: database space exceeded").context("storing a blob");
        let e = format!("{:#}", explain(full));
        assert!(e.starts_with("etcd is out of space") && e.contains("alarm disarm"), "{e}");
        let other = format!("{:#}", explain(anyhow::anyhow!("connection refused")));
        assert_eq!(other, "connection refused");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(1_795_388_462), "2026-11-22 23:01:02");
    }
}
