//! `mgmt deploy`: publish, list, show and roll back deploys.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::Client;

use super::{DeployArgs, DeployCommand};
use crate::deploy::source::{self, Built};
use crate::deploy::store::{self, DeployKeys, NewDeploy, Published};
use crate::world::etcd::connect;

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
    match &args.command {
        DeployCommand::Yaml { file } => {
            let built = build(file, args.no_git, args.commit.as_deref())?;
            let mut c = client(&args).await?;
            let (written, present) = store::store_bundle(&mut c, &keys, &built).await?;
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
            match store::append(&mut c, &keys, new, args.force).await? {
                Published::New(r) => {
                    // A garbage collection by a concurrent deploy may have raced the upload.
                    let restored = store::ensure_bundle(&mut c, &keys, &built).await?;
                    if restored > 0 {
                        eprintln!(
                            "mgmt: {restored} blobs were collected while uploading and are stored again"
                        );
                    }
                    println!("deploy {}", r.id);
                    println!("commit {}", r.commit.as_deref().unwrap_or("none (--no-git)"));
                    println!("bundle {}", r.bundle);
                    eprintln!(
                        "mgmt: deployed {} files ({written} new blobs, {present} already stored) as deploy {}",
                        built.manifest.files.len(),
                        r.id
                    );
                    prune(&mut c, &keys, args.keep).await;
                }
                Published::NothingNew(r) => {
                    println!(
                        "nothing new: deploy {} already runs bundle {} (use --force to deploy it again)",
                        r.id, r.bundle
                    );
                }
            }
            Ok(0)
        }
        DeployCommand::List { json } => {
            let mut c = client(&args).await?;
            let records = store::history(&mut c, &keys).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                println!(
                    "{:<6} {:<20} {:<12} {:<30} {:<12} MESSAGE",
                    "ID", "TIME", "COMMIT", "AUTHOR", "BUNDLE"
                );
                for r in &records {
                    println!(
                        "{:<6} {:<20} {:<12} {:<30} {:<12} {}",
                        r.id,
                        utc(r.time),
                        r.commit.as_deref().map(|c| &c[..12.min(c.len())]).unwrap_or("-"),
                        r.author.as_deref().unwrap_or("-"),
                        &r.bundle[..12.min(r.bundle.len())],
                        match r.rollback_of {
                            Some(x) => format!("rollback to deploy {x}"),
                            None => r.message.clone().unwrap_or_default(),
                        }
                    );
                }
            }
            Ok(0)
        }
        DeployCommand::Show { id } => {
            let mut c = client(&args).await?;
            let r = store::record(&mut c, &keys, *id).await?;
            let (manifest, _) = store::fetch_bundle(&mut c, &keys, &r.bundle).await?;
            let out = serde_json::json!({"record": r, "manifest": manifest});
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        DeployCommand::Rollback { target } => {
            let mut c = client(&args).await?;
            let history = store::history(&mut c, &keys).await?;
            let to = match target.parse::<u64>() {
                Ok(id) => history.iter().find(|r| r.id == id),
                Err(_) => history
                    .iter()
                    .rev()
                    .find(|r| r.commit.as_deref().is_some_and(|c| c.starts_with(target.as_str()))),
            }
            .with_context(|| format!("no deploy {target} (by id or commit) in the history"))?
            .clone();
            // The bundle must still be whole before anyone is asked to run it.
            store::fetch_bundle(&mut c, &keys, &to.bundle)
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
            match store::append(&mut c, &keys, new, true).await? {
                Published::New(r) | Published::NothingNew(r) => {
                    println!("deploy {}", r.id);
                    println!("rollback to deploy {} (bundle {})", to.id, r.bundle);
                }
            }
            prune(&mut c, &keys, args.keep).await;
            Ok(0)
        }
    }
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

/// Retention after a deploy; a failure here does not undo the deploy, so it is a warning.
async fn prune(c: &mut Client, keys: &DeployKeys, keep: u64) {
    match store::prune(c, keys, keep as usize).await {
        Ok(p) if p.records > 0 || p.blobs > 0 => {
            eprintln!(
                "mgmt: pruned {} old deploy records and {} unused blobs (--keep {keep})",
                p.records, p.blobs
            )
        }
        Ok(_) => {}
        Err(e) => eprintln!("mgmt: warning: pruning old deploys: {e:#}"),
    }
}

fn build(file: &std::path::Path, no_git: bool, commit: Option<&str>) -> Result<Built> {
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
            (std::env::current_dir()?, file.to_string_lossy().trim_start_matches("./").to_string())
        }
        _ => source::path_in_repo(file)?,
    };
    source::from_git(&start, "yaml", &entry, commit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(1_795_388_462), "2026-11-22 23:01:02");
    }
}
