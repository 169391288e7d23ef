//! `deploy list` and `deploy show`: the history, which deploy is live and which hosts run
//! what. What anyone who can write etcd put in a record is shown escaped (no terminal
//! control sequences, one line per record) and bounded.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::Args;
use etcd_client::{Client, GetOptions};
use serde::Serialize;

use super::{client, clip, utc};
use crate::cli::DeployArgs;
use crate::cli::status::shown;
use crate::deploy::blobs;
use crate::deploy::bundle::{FileEntry, Manifest};
use crate::deploy::store::{self, DeployKeys, DeployRecord, Listed};
use crate::world::HostStatus;
use crate::world::etcd::Keys;

/// `deploy list`'s arguments.
#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Print JSON (an array of deploys, oldest first, each with `live` and `hosts`) instead
    /// of a table.
    #[arg(long)]
    pub json: bool,
    /// Only the newest N deploys.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
}

/// `deploy show`'s arguments.
#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    /// The deploy's ID (see `mgmt deploy list`).
    pub id: u64,
    /// Print JSON (the record, whether it is live, and the manifest) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One line of `deploy list --json`.
#[derive(Debug, Serialize)]
pub struct ListEntry<'a> {
    #[serde(flatten)]
    pub listed: &'a Listed,
    /// Whether `deploy/latest` names this deploy: the one agents run.
    pub live: bool,
    /// How many registered hosts report running this deploy.
    pub hosts: usize,
}

/// The deploy `deploy/latest` soundly names, if any: what agents run.
pub async fn live_id(c: &mut Client, keys: &DeployKeys) -> Result<Option<u64>> {
    let head = store::head(c, keys).await?;
    Ok(if head.broken.is_some() { None } else { head.record.map(|r| r.id) })
}

/// How many registered hosts run each deploy, from their `hosts/<name>` statuses. A value
/// that is not a status is skipped (`mgmt status` reports it).
pub async fn hosts_per_deploy(c: &mut Client, namespace: &str) -> Result<BTreeMap<u64, usize>> {
    let r = c
        .get(Keys::new(namespace).hosts(), Some(GetOptions::new().with_prefix()))
        .await
        .context("reading the hosts' statuses")?;
    let mut counts = BTreeMap::new();
    for kv in r.kvs() {
        if let Ok(HostStatus { deploy: Some(id), .. }) = serde_json::from_slice::<HostStatus>(kv.value()) {
            *counts.entry(id).or_default() += 1;
        }
    }
    Ok(counts)
}

pub async fn list(args: &DeployArgs, keys: &DeployKeys, l: &ListArgs) -> Result<u8> {
    let mut c = client(args).await?;
    let (mut listed, live) = store::listing(&mut c, keys).await?;
    let hosts = hosts_per_deploy(&mut c, &args.cluster.etcd_namespace).await?;
    if let Some(n) = l.last {
        listed.drain(..listed.len().saturating_sub(n));
    }
    if l.json {
        let entries: Vec<ListEntry> = listed
            .iter()
            .map(|listed| ListEntry {
                listed,
                live: Some(listed.key) == live,
                hosts: hosts.get(&listed.key).copied().unwrap_or(0),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", table(&listed, live, &hosts));
    }
    Ok(0)
}

/// The table `deploy list` prints (pure): `*` marks the live deploy.
pub fn table(listed: &[Listed], live: Option<u64>, hosts: &BTreeMap<u64, usize>) -> String {
    let mut out = format!(
        "{:<6} {:<4} {:<5} {:<19} {:<12} {:<12} {:<24} {:<24} MESSAGE\n",
        "ID", "LIVE", "HOSTS", "TIME (UTC)", "COMMIT", "BUNDLE", "AUTHOR", "BY"
    );
    for l in listed {
        let Some(r) = &l.record else {
            let problem = l.problem.as_deref().unwrap_or("not a valid record");
            out.push_str(&format!("deploy/{}: {}\n", l.key, shown(problem, 400)));
            continue;
        };
        out.push_str(&format!(
            "{:<6} {:<4} {:<5} {:<19} {:<12} {:<12} {:<24} {:<24} {}\n",
            r.id,
            if Some(r.id) == live { "*" } else { "" },
            hosts.get(&r.id).copied().unwrap_or(0),
            utc(r.time),
            shown(r.commit.as_deref().map(|c| clip(c, 12)).unwrap_or("-"), 64),
            shown(clip(&r.bundle, 12), 64),
            person(r.author.as_deref()),
            person(r.deployer.as_deref()),
            shown(&message(r), 200),
        ));
        if let Some(problem) = &l.problem {
            out.push_str(&format!("  ! {}\n", shown(problem, 400)));
        }
    }
    out
}

/// The width of the AUTHOR and BY cells, in characters.
const PERSON_CELL: usize = 24;

/// An AUTHOR or BY cell: the name of `Name <email>` (the whole text otherwise), escaped
/// and cut to [`PERSON_CELL`] characters (`deploy show` has it whole).
fn person(who: Option<&str>) -> String {
    let who = who.unwrap_or("-");
    let name = match who.split_once(" <") {
        Some((name, _)) if who.ends_with('>') && !name.trim().is_empty() => name,
        _ => who,
    };
    let cell = shown(name, 256);
    if cell.chars().count() <= PERSON_CELL {
        return cell;
    }
    format!("{}…", clip(&cell, PERSON_CELL - 1))
}

/// A record's MESSAGE cell: the commit's subject, or what a rollback went back to and why.
fn message(r: &DeployRecord) -> String {
    match (r.rollback_of, &r.reason) {
        (Some(x), Some(why)) => format!("rollback to deploy {x}: {why}"),
        (Some(x), None) => format!("rollback to deploy {x}"),
        (None, Some(why)) => format!("{}: {why}", r.message.as_deref().unwrap_or_default()),
        (None, None) => r.message.clone().unwrap_or_default(),
    }
}

/// A git mode as git prints it: `100644`, `100755`, `120000`.
pub fn octal(mode: u32) -> String {
    format!("{mode:06o}")
}

/// A manifest entry as `deploy show --json` prints it: the mode in octal.
#[derive(Debug, Serialize)]
struct ShownFile<'a> {
    path: &'a str,
    mode: String,
    size: u64,
    sha256: &'a str,
}

fn shown_files(m: &Manifest) -> Vec<ShownFile<'_>> {
    m.files
        .iter()
        .map(|f: &FileEntry| ShownFile {
            path: &f.path,
            mode: octal(f.mode),
            size: f.size,
            sha256: &f.sha256,
        })
        .collect()
}

pub async fn show(args: &DeployArgs, keys: &DeployKeys, s: &ShowArgs) -> Result<u8> {
    let mut c = client(args).await?;
    let r = store::record(&mut c, keys, s.id).await?;
    // Every blob is fetched and checked: `show` says whether the bundle is still whole.
    let (manifest, _) = blobs::fetch_bundle(&mut c, keys, &r.bundle).await?;
    let live = live_id(&mut c, keys).await? == Some(r.id);
    if s.json {
        let out = serde_json::json!({
            "record": r,
            "live": live,
            "manifest": {
                "frontend": manifest.frontend,
                "entry": manifest.entry,
                "files": shown_files(&manifest),
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", show_text(&r, live, &manifest));
    }
    Ok(0)
}

/// `deploy show` as text (pure): the record's fields, then one line per file.
pub fn show_text(r: &DeployRecord, live: bool, m: &Manifest) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("deploy", format!("{}{}", r.id, if live { " (live)" } else { "" })),
        ("time", format!("{} UTC", utc(r.time))),
        ("commit", r.commit.clone().unwrap_or_else(|| "none (--no-git)".into())),
        ("author", r.author.clone().unwrap_or_else(|| "-".into())),
        ("message", r.message.clone().unwrap_or_default()),
        ("deployer", r.deployer.clone().unwrap_or_else(|| "-".into())),
    ];
    if let Some(x) = r.rollback_of {
        fields.push(("rollback of", format!("deploy {x}")));
    }
    if let Some(why) = &r.reason {
        fields.push(("reason", why.clone()));
    }
    fields.extend([
        ("bundle", r.bundle.clone()),
        ("entry", format!("{} ({})", r.entry, r.frontend)),
        ("parent", r.parent.clone().unwrap_or_else(|| "none (the first deploy)".into())),
        ("files", m.files.len().to_string()),
    ]);
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!("{k:<12} {}\n", shown(&v, 400)));
    }
    out.push('\n');
    for f in &m.files {
        out.push_str(&format!("{} {}  {}\n", octal(f.mode), clip(&f.sha256, 12), shown(&f.path, 4096)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::bundle::{MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK};

    fn rec(id: u64) -> DeployRecord {
        DeployRecord {
            id,
            bundle: "b".repeat(64),
            frontend: "yaml".into(),
            entry: "graph.yaml".into(),
            message: Some(format!("set {id}")),
            ..Default::default()
        }
    }

    fn listed(r: DeployRecord) -> Listed {
        Listed { key: r.id, record: Some(r), problem: None }
    }

    #[test]
    fn the_table_marks_the_live_deploy_and_counts_its_hosts_with_times_in_utc() {
        let rollback = DeployRecord {
            rollback_of: Some(1),
            reason: Some("bad config".into()),
            deployer: Some("Bob <bob@example.com>".into()),
            ..rec(3)
        };
        let all = [listed(rec(1)), listed(rec(2)), listed(rollback)];
        let t = table(&all, Some(3), &BTreeMap::from([(3, 2), (2, 1)]));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("TIME (UTC)"), "{t}");
        let cells = |i: usize| lines[i].split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        assert_eq!(cells(1), "1 0 1970-01-01");
        assert_eq!(cells(2), "2 1 1970-01-01");
        assert_eq!(cells(3), "3 * 2");
        assert!(lines[3].contains(" Bob "), "{t}");
        assert!(lines[3].ends_with("rollback to deploy 1: bad config"), "{t}");
    }

    #[test]
    fn people_are_shown_by_name_within_their_column() {
        assert_eq!(person(Some("Ada Lovelace <ada@example.com>")), "Ada Lovelace");
        assert_eq!(person(Some("<ada@example.com>")), "<ada@example.com>");
        assert_eq!(person(Some("ops@web1")), "ops@web1");
        assert_eq!(person(None), "-");
        assert_eq!(person(Some(&"é".repeat(40))), format!("{}…", "é".repeat(23)));
        assert_eq!(person(Some("a\u{1b}[2J <x>")), "a\\u{1b}[2J");
    }

    #[test]
    fn show_prints_modes_in_octal_with_short_hashes() {
        let files = [("a.sh", MODE_EXECUTABLE), ("b.conf", MODE_FILE), ("c", MODE_SYMLINK)]
            .map(|(p, mode)| FileEntry {
                path: p.into(),
                mode,
                size: 1,
                sha256: "0123456789abcdef".repeat(4),
            })
            .to_vec();
        let m = Manifest { frontend: "yaml".into(), entry: "b.conf".into(), files };
        let t = show_text(&rec(4), true, &m);
        assert!(t.starts_with("deploy       4 (live)\n"), "{t}");
        assert!(
            t.contains("\n100755 0123456789ab  a.sh\n100644 0123456789ab  b.conf\n120000 0123456789ab  c\n"),
            "{t}"
        );
        let json = serde_json::to_value(shown_files(&m)).unwrap();
        assert_eq!(json[0]["mode"], "100755");
        assert_eq!(json[2]["mode"], "120000");
    }
}
