//! `bigtree`: `mgmt deploy` of a tree of 1,000 files, cold (every blob new) and after a change
//! of one file (the rest deduplicated), with one agent; `bigtree10k`: the same with 10,000
//! files.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::deploy_round::{
    ClusterWatch, DeployRound, app_content, app_yaml, deploy_round, deployed_counts, git, host_file,
    milestones, ms_or_stuck, report_stuck, round_failed, spawn_deploy_agents, stop_agents, time_mgmt,
};
use crate::etcd::{Etcd, free_ports};
use crate::logs::Log;
use crate::support::procfs::rss_hwm_kb;
use crate::support::report::{Row, info, ms, row, stats};

/// A big-tree benchmark: `dirs` directories of 100 files, `cold` deploys with every blob new,
/// then `dedup` deploys with one file changed; the targets apply to `bigtree` (1,000 files).
struct BigTree {
    bench: &'static str,
    dirs: usize,
    cold: usize,
    dedup: usize,
    targets: bool,
}

const BIG_FILES_PER_DIR: usize = 100;
/// Targets of `bigtree`: the command's wall time cold and with one file changed, and
/// `deploy/latest` published -> the agent converged, with one file changed.
const BIG_COLD_TARGET: Duration = Duration::from_millis(200);
const BIG_DEDUP_TARGET: Duration = Duration::from_millis(50);
const BIG_CONVERGED_TARGET: Duration = Duration::from_millis(100);

fn big_file(d: usize, f: usize, tree: usize, edit: usize) -> String {
    let mut s = format!("# d{d}/f{f:03}.txt, tree {tree}, edit {edit}\n");
    for k in 0..5 {
        s.push_str(&format!("setting_{k} = some value of a typical configuration line {k}\n"));
    }
    s
}

/// Write every file of the big tree (`tree` makes every content new) and the graph.
fn write_big_tree(repo: &Path, dirs: usize, tree: usize) -> Result<()> {
    for d in 0..dirs {
        let dir = repo.join(format!("d{d}"));
        fs::create_dir_all(&dir)?;
        for f in 0..BIG_FILES_PER_DIR {
            fs::write(dir.join(format!("f{f:03}.txt")), big_file(d, f, tree, 0))?;
        }
    }
    fs::write(repo.join("graph.yaml"), app_yaml(tree))?;
    Ok(())
}

pub fn bigtree(t: &Path) -> Result<Vec<Row>> {
    big_tree(t, &BigTree { bench: "bigtree", dirs: 10, cold: 3, dedup: 5, targets: true })
}

pub fn bigtree10k(t: &Path) -> Result<Vec<Row>> {
    big_tree(t, &BigTree { bench: "bigtree10k", dirs: 100, cold: 2, dedup: 3, targets: false })
}

fn big_tree(t: &Path, b: &BigTree) -> Result<Vec<Row>> {
    let (bench, big_cold, big_dedup) = (b.bench, b.cold, b.dedup);
    let repo = t.join("repo");
    fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    let names = vec!["h1".to_string()];
    let files = vec![host_file(t, "h1")];
    let etcd = Etcd::start(t)?;
    let mut w = ClusterWatch::new(&etcd.url)?;
    let mut agents = spawn_deploy_agents(t, &etcd.url, &names)?;
    let registered = w.wait("agent registered", Duration::from_secs(30), |s| s.contains_key("h1"));
    if let Err(e) = registered {
        agents[0].ensure_alive()?;
        return Err(e);
    }
    let limit = Duration::from_secs(300);
    let n_files = b.dirs * BIG_FILES_PER_DIR;
    let mut cold: Vec<(u64, DeployRound)> = Vec::new();
    let mut dedup: Vec<(u64, DeployRound)> = Vec::new();
    let mut counts: Vec<(u64, u64, u64)> = Vec::new();
    for r in 0..big_cold + big_dedup {
        let id = r as u64 + 1;
        let is_cold = r < big_cold;
        let version = if is_cold { r } else { big_cold - 1 };
        if is_cold {
            write_big_tree(&repo, b.dirs, r)?;
            git(&repo, &["add", "-A"])?;
            git(&repo, &["commit", "-q", "-m", &format!("tree {r}")])?;
        } else {
            let p = repo.join("d3/f042.txt");
            fs::write(&p, big_file(3, 42, big_cold - 1, r))?;
            git(&repo, &["commit", "-q", "-a", "-m", &format!("edit {r}")])?;
        }
        std::thread::sleep(Duration::from_secs(1));
        let round = deploy_round(&mut w, &etcd.url, &repo, &names, &files, &app_content(version), id, limit)
            .map_err(|e| round_failed(e, &mut agents, &names, &etcd, bench))?;
        let c = deployed_counts(&round.stderr).with_context(|| format!("no summary in: {}", round.stderr))?;
        println!(
            "{} deploy {id}: mgmt deploy {} ({} files, {} new blobs, {} already stored), published {}, agent converged {}",
            if is_cold { "cold" } else { "1 file changed:" },
            ms(round.command),
            c.0,
            c.1,
            c.2,
            ms(round.published),
            ms_or_stuck(round.all())
        );
        if !round.stuck.is_empty() {
            report_stuck(&round, id, &agents, &names);
        }
        counts.push(c);
        if is_cold {
            cold.push((id, round));
        } else {
            dedup.push((id, round));
        }
    }
    // The same commit again: git, every blob checked, nothing written.
    let again = time_mgmt(&repo, &["deploy", "--seeds", &etcd.url, "yaml", "graph.yaml"], 3, |out| {
        let said = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success() && said.starts_with("nothing new"), "{said}");
        Ok(())
    })?;
    // The bundle built from git alone: the command stops at the first etcd request, on a port
    // nothing listens on (connection refused at once).
    let dead = format!("http://127.0.0.1:{}", free_ports(1)?[0]);
    let build = time_mgmt(&repo, &["deploy", "--seeds", &dead, "yaml", "graph.yaml"], 3, |out| {
        let said = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success() && said.contains("cannot reach etcd"), "{said}");
        Ok(())
    })?;
    let (rss, hwm) = rss_hwm_kb(agents[0].pid());
    stop_agents(&mut agents, &etcd, bench)?;
    let logs: Vec<Log> = agents.iter().map(|a| Log::read(&a.log)).collect();
    drop(etcd);

    let mut rows = Vec::new();
    let range = |v: &[Duration]| stats(v).median_range();
    let blobs = |c: &[(u64, u64, u64)]| {
        let mut v: Vec<String> = c.iter().map(|(_, n, _)| n.to_string()).collect();
        v.dedup();
        let stored: Vec<String> = c.iter().map(|(_, _, s)| s.to_string()).collect::<Vec<_>>();
        format!("{} new, {} already stored", v.join("/"), stored.first().cloned().unwrap_or_default())
    };
    let targets = |cmd: Duration, conv: Option<Duration>| b.targets.then_some((cmd, conv));
    for (what, set, c, target) in [
        (
            format!("cold: {} files, every blob new", n_files + 1),
            &cold,
            &counts[..big_cold],
            targets(BIG_COLD_TARGET, None),
        ),
        (
            "1 file changed: the rest deduplicated".to_string(),
            &dedup,
            &counts[big_cold..],
            targets(BIG_DEDUP_TARGET, Some(BIG_CONVERGED_TARGET)),
        ),
    ] {
        let cmd: Vec<Duration> = set.iter().map(|(_, r)| r.command).collect();
        let pubd: Vec<Duration> = set.iter().map(|(_, r)| r.published).collect();
        let conv: Vec<Duration> = set.iter().filter_map(|(_, r)| r.all()).collect();
        let stuck = set.iter().filter(|(_, r)| !r.stuck.is_empty()).count();
        if stuck > 0 {
            rows.push(row(
                bench,
                format!("{what}: rounds where the agent's status stuck at `converged: false`"),
                format!("{stuck} of {}", set.len()),
                "0",
                Some(false),
            ));
        }
        let m = milestones(set, &logs);
        let (cmd_target, cmd_ok) = match target {
            Some((t, _)) => {
                (if t == BIG_COLD_TARGET { "< 0.2 s" } else { "< 50 ms" }, Some(stats(&cmd).p50 < t))
            }
            None => ("", None),
        };
        rows.push(row(
            bench,
            format!("{what}: `mgmt deploy` wall time, median (min..max of {})", set.len()),
            range(&cmd),
            cmd_target,
            cmd_ok,
        ));
        rows.push(info(bench, format!("{what}: blobs the command reported"), blobs(c)));
        let after: Vec<Duration> = set.iter().map(|(_, r)| r.command.saturating_sub(r.published)).collect();
        rows.push(info(bench, format!("{what}: start -> deploy/latest published"), range(&pubd)));
        rows.push(info(
            bench,
            format!("{what}: published -> command exit (retention when over --keep)"),
            range(&after),
        ));
        rows.push(info(bench, format!("{what}: start -> 1 agent converged on it"), range(&conv)));
        let pub_conv: Vec<Duration> =
            set.iter().filter_map(|(_, r)| Some(r.all()?.saturating_sub(r.published))).collect();
        let (conv_target, conv_ok) = match target.and_then(|t| t.1) {
            Some(t) if !pub_conv.is_empty() => ("< 100 ms", Some(stats(&pub_conv).p50 < t)),
            _ => ("", None),
        };
        if !pub_conv.is_empty() {
            rows.push(row(
                bench,
                format!("{what}: deploy/latest published -> 1 agent converged on it"),
                range(&pub_conv),
                conv_target,
                conv_ok,
            ));
        }
        if !m.fetching_to_running.is_empty() {
            rows.push(info(
                bench,
                format!("{what}: agent `fetching bundle` -> `running deploy` (fetch, verify, unpack)"),
                range(&m.fetching_to_running),
            ));
        }
    }
    rows.push(info(
        bench,
        "baseline: the same commit again (`nothing new`: git, every blob checked, no write)",
        range(&again),
    ));
    rows.push(info(
        bench,
        "baseline: process + bundle built from git (etcd refuses the connection)",
        range(&build),
    ));
    let mb = |kb: u64| kb as f64 / 1024.0;
    rows.push(info(
        bench,
        "agent VmRSS after the run, MB (VmHWM)",
        format!("{:.1} ({:.1})", mb(rss), mb(hwm)),
    ));
    Ok(rows)
}
