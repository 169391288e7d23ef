//! `deploy rollback [TARGET]`: publish an earlier deploy's bundle again, as a new deploy.

use anyhow::{Context, Result, bail};
use clap::Args;
use etcd_client::Client;

use super::{EXIT_UNKNOWN, KeepArg, after_publish, append, client, clip, published, who};
use crate::cli::DeployArgs;
use crate::deploy::blobs;
use crate::deploy::store::{self, DeployKeys, DeployRecord, MAX_REASON, NewDeploy, Published};

/// `deploy rollback`'s arguments.
#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    /// What to roll back to: a deploy ID, a commit (or a unique prefix of one), or a git
    /// revision of the repository at the current directory (`HEAD~1`, a tag, a branch);
    /// a commit means its newest deploy that is not a rollback. Default: the newest deploy before the live one
    /// that runs another bundle.
    pub target: Option<String>,
    /// Roll back even when the target's bundle is the one already live.
    #[arg(long)]
    pub force: bool,
    /// Why: kept in the new deploy's record and shown by `deploy list` and `deploy show`.
    #[arg(short = 'm', long = "message", value_name = "MESSAGE", value_parser = parse_reason)]
    pub message: Option<String>,
    #[command(flatten)]
    pub keep: KeepArg,
    /// Print the outcome as one JSON object (`deploy`, `rollback_of`, `bundle`, `commit`,
    /// `published`) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Check the target's bundle and graph as agents would, and publish nothing.
    #[arg(long)]
    pub check: bool,
}

/// `-m MESSAGE`: at most [`MAX_REASON`] bytes, as every record is checked for.
fn parse_reason(s: &str) -> Result<String, String> {
    if s.len() > MAX_REASON {
        return Err(format!("{} bytes; at most {MAX_REASON} are allowed", s.len()));
    }
    Ok(s.to_string())
}

pub async fn rollback(args: &DeployArgs, keys: &DeployKeys, r: &RollbackArgs) -> Result<u8> {
    let mut c = client(args).await?;
    let history = store::history(&mut c, keys).await?;
    let head = store::head(&mut c, keys).await?;
    // With a broken `deploy/latest` nothing is surely live: the rollback repairs it.
    let live = if head.broken.is_none() { head.record } else { None };
    let to = match r.target.as_deref() {
        None => {
            let live = live.as_ref().context(
                "no deploy is live to roll back from; give a deploy ID, a commit or a git revision",
            )?;
            previous(&history, live)?
        }
        Some(target) => pick(&history, target, &git_commit)?,
    }
    .clone();
    // The bundle must still be whole, and pass the checks of this version's agents, before
    // anyone is asked to run it.
    let (m, contents) = blobs::fetch_bundle(&mut c, keys, &to.bundle)
        .await
        .with_context(|| format!("deploy {}'s bundle", to.id))?;
    let spec = super::check(&m, &contents)
        .with_context(|| format!("deploy {}'s graph would be refused by agents", to.id))?;
    if r.check {
        println!("valid {} (graph `{}`, {} resources)", m.entry, spec.name, spec.resources.len());
        println!("rollback to deploy {} (bundle {})", to.id, to.bundle);
        eprintln!("mgmt: checked only (--check): nothing was published");
        return Ok(0);
    }
    if let Some(l) = &live
        && l.bundle == to.bundle
        && !r.force
    {
        if r.json {
            print_json(l.id, &to, false);
        } else {
            println!(
                "nothing to roll back: deploy {} is live and runs bundle {}, deploy {}'s (use --force to deploy it again)",
                l.id,
                clip(&l.bundle, 12),
                to.id
            );
        }
        return Ok(0);
    }
    let new = NewDeploy {
        bundle: to.bundle.clone(),
        frontend: to.frontend.clone(),
        entry: to.entry.clone(),
        commit: to.commit.clone(),
        author: to.author.clone(),
        message: to.message.clone(),
        rollback_of: Some(to.id),
        deployer: Some(who::deployer(".".as_ref())),
        reason: r.message.clone(),
    };
    // The head was read before the bundle: its blobs were all there from then on.
    let guard = store::AppendGuard { force: true, blobs_at: Some(head.read_at), head: None };
    let restore = async |c: &mut Client| {
        let read_at = store::head(c, keys).await?.read_at;
        blobs::fetch_bundle(c, keys, &to.bundle)
            .await
            .with_context(|| format!("deploy {}'s bundle, after retention deleted blobs", to.id))?;
        Ok(read_at)
    };
    let Some(appended) = append(&mut c, keys, new, guard, restore).await? else { return Ok(EXIT_UNKNOWN) };
    let (Published::New(rec) | Published::NothingNew(rec)) = published(keys, appended);
    if r.json {
        print_json(rec.id, &to, true);
    } else {
        println!("deploy {}", rec.id);
        println!("rollback to deploy {} (bundle {})", to.id, rec.bundle);
    }
    Ok(after_publish(&mut c, keys, r.keep.get(), 0, rec.id).await)
}

/// The outcome as JSON: the deploy now live (the new one when `published`), and the one
/// whose bundle it runs.
fn print_json(live: u64, to: &DeployRecord, published: bool) {
    let out = serde_json::json!({
        "deploy": live,
        "rollback_of": to.id,
        "bundle": to.bundle,
        "commit": to.commit,
        "published": published,
    });
    println!("{out}");
}

/// The commit a git revision names in the repository at the current directory, if there
/// is one and it knows the revision.
fn git_commit(rev: &str) -> Option<String> {
    let repo = git2::Repository::discover(".").ok()?;
    let commit = repo.revparse_single(rev).ok()?.peel_to_commit().ok()?;
    Some(commit.id().to_string())
}

/// The deploy `rollback` goes back to without a target (pure): the newest deploy before
/// the live one whose bundle differs from the live one's.
pub fn previous<'a>(history: &'a [DeployRecord], live: &DeployRecord) -> Result<&'a DeployRecord> {
    history.iter().rev().find(|r| r.id < live.id && r.bundle != live.bundle).with_context(|| {
        format!("no deploy before the live deploy {} runs another bundle; nothing to roll back to", live.id)
    })
}

/// The shortest all-digit target that is also tried as a commit prefix (git's shortest
/// abbreviation).
const MIN_DIGITS_COMMIT_PREFIX: usize = 4;

/// The deploy a rollback target names (pure but for `git`, which resolves a revision to a
/// full commit id): a deploy ID; else a commit, or a prefix of one that only one commit
/// has; else a git revision. A commit names its newest deploy that is not itself a
/// rollback (the one that first published its bundle), or else its newest.
pub fn pick<'a>(
    history: &'a [DeployRecord],
    target: &str,
    git: &dyn Fn(&str) -> Option<String>,
) -> Result<&'a DeployRecord> {
    let target = target.trim();
    if target.is_empty() {
        bail!("rollback needs a deploy ID, a commit (or a unique prefix of one) or a git revision");
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
    if let Some(r) = of_commit(&matching) {
        return Ok(r);
    }
    let Some(commit) = git(target) else {
        bail!("no deploy `{target}` in the history (by ID, commit or git revision)")
    };
    let matching: Vec<&DeployRecord> =
        history.iter().filter(|r| r.commit.as_deref() == Some(&commit)).collect();
    of_commit(&matching)
        .with_context(|| format!("`{target}` is commit {commit}, which no deploy in the history runs"))
}

/// Of the deploys of one commit (oldest first), the newest that is not a rollback, or else
/// the newest.
fn of_commit<'a>(deploys: &[&'a DeployRecord]) -> Option<&'a DeployRecord> {
    deploys.iter().rev().find(|r| r.rollback_of.is_none()).or(deploys.last()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, commit: Option<&str>) -> DeployRecord {
        DeployRecord {
            id,
            commit: commit.map(String::from),
            bundle: format!("{id:064}"),
            frontend: "yaml".into(),
            entry: "g.yaml".into(),
            ..Default::default()
        }
    }

    fn no_git(_: &str) -> Option<String> {
        None
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
        let pick = |t: &str| pick(&h, t, &no_git);
        assert_eq!(pick("2").unwrap().id, 2);
        // The newest deploy of a commit; case does not matter.
        assert_eq!(pick("abcd1").unwrap().id, 3);
        assert_eq!(pick("ABCD2").unwrap().id, 2);
        for empty in ["", "  "] {
            assert!(pick(empty).unwrap_err().to_string().contains("needs a deploy ID"), "{empty:?}");
        }
        let e = pick("abcd").unwrap_err().to_string();
        assert!(e.contains("`abcd` matches 2 commits"), "{e}");
        assert!(e.contains("abcd1111 (deploy 1, 3)") && e.contains("abcd2222 (deploy 2)"), "{e}");
        // A pruned deploy's ID is not a prefix of the commit that starts with it.
        assert!(pick("9").unwrap_err().to_string().contains("no deploy 9"));
        assert!(pick("9fff").is_ok_and(|r| r.id == 5));
        assert!(pick("abc").is_err());
        assert!(pick("ff").is_err());
    }

    #[test]
    fn a_commit_names_the_deploy_that_published_it_rather_than_a_rollback_to_it() {
        let h = [
            rec(1, Some("abcd1111")),
            rec(2, Some("eeee2222")),
            DeployRecord { rollback_of: Some(1), bundle: rec(1, None).bundle, ..rec(3, Some("abcd1111")) },
        ];
        assert_eq!(pick(&h, "abcd", &no_git).unwrap().id, 1);
        assert_eq!(pick(&h, "3", &no_git).unwrap().id, 3);
    }

    #[test]
    fn a_git_revision_names_the_newest_deploy_of_its_commit() {
        let h = [rec(1, Some("abcd1111")), rec(2, Some("eeee2222")), rec(3, Some("abcd1111"))];
        let git = |rev: &str| match rev {
            "HEAD~1" | "v1" => Some("abcd1111".to_string()),
            "v9" => Some("99999999".to_string()),
            _ => None,
        };
        assert_eq!(pick(&h, "HEAD~1", &git).unwrap().id, 3);
        assert_eq!(pick(&h, "v1", &git).unwrap().id, 3);
        let e = pick(&h, "v9", &git).unwrap_err().to_string();
        assert_eq!(e, "`v9` is commit 99999999, which no deploy in the history runs");
        let e = pick(&h, "nope", &git).unwrap_err().to_string();
        assert_eq!(e, "no deploy `nope` in the history (by ID, commit or git revision)");
    }

    #[test]
    fn no_target_is_the_newest_earlier_deploy_of_another_bundle() {
        let same = |id| DeployRecord { bundle: rec(3, None).bundle, ..rec(id, None) };
        let h = [rec(1, None), rec(2, None), same(3), same(4), rec(5, None)];
        assert_eq!(previous(&h, &h[3]).unwrap().id, 2);
        assert_eq!(previous(&h, &h[4]).unwrap().id, 4);
        let e = previous(&h, &h[0]).unwrap_err().to_string();
        assert!(e.contains("no deploy before the live deploy 1 runs another bundle"), "{e}");
    }
}
