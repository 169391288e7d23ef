//! `deploy` and `deploy50`: 3 (50) agents `mgmt run --seeds URL --hostname hN --tmp-prefix
//! empty` follow the deploys of a git repository whose graph manages one file; each round
//! commits a new version and times `mgmt deploy --seeds URL yaml graph.yaml` from its spawn
//! until every agent's status (`hosts/<h>` in etcd, followed by a watch in the bench) says it
//! runs the new deploy and is converged.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::deploy_round::{
    ClusterWatch, DEPLOY_PAUSE, DeployRound, STUCK_GRACE, app_content, app_yaml, cpu_all, deploy_round, git,
    host_file, init_repo, milestones, ms_or_stuck, report_stuck, round_failed, spawn_deploy_agents,
    stop_agents, time_mgmt,
};
use crate::etcd::Etcd;
use crate::logs::Log;
use crate::support::procfs::{cpu_ns, rss_hwm_kb, status_kb};
use crate::support::report::{Row, Stats, info, ms, row, stats};

/// The 3-agent deploy's latency (p50, p90), for `deploy50` to compare with when both run.
static DEPLOY3: std::sync::Mutex<Option<(Duration, Duration)>> = std::sync::Mutex::new(None);

pub fn deploy3(t: &Path) -> Result<Vec<Row>> {
    deploy_cluster(t, "deploy", 3, 5, 30)
}

pub fn deploy50(t: &Path) -> Result<Vec<Row>> {
    deploy_cluster(t, "deploy50", 50, 3, 10)
}

/// `n` agents follow the deploys of a one-file graph; each round commits a new version and
/// times `mgmt deploy` until every agent reports it converged.
fn deploy_cluster(t: &Path, bench: &'static str, n: usize, warmup: usize, iters: usize) -> Result<Vec<Row>> {
    let names: Vec<String> = (1..=n).map(|i| format!("h{i}")).collect();
    let files: Vec<PathBuf> = names.iter().map(|h| host_file(t, h)).collect();
    let repo = t.join("repo");
    init_repo(&repo)?;
    let etcd = Etcd::start(t)?;
    let mut w = ClusterWatch::new(&etcd.url)?;
    let limit = Duration::from_secs(if n > 10 { 60 } else { 30 });

    let t0 = Instant::now();
    let mut agents = spawn_deploy_agents(t, &etcd.url, &names)?;
    let registered =
        w.wait("agents registered", Duration::from_secs(60), |s| names.iter().all(|h| s.contains_key(h)));
    if let Err(e) = registered {
        for a in &mut agents {
            a.ensure_alive()?;
        }
        return Err(e);
    }
    println!("{n} agents started, all registered in etcd after {}", ms(t0.elapsed()));
    let first = deploy_round(&mut w, &etcd.url, &repo, &names, &files, &app_content(0), 1, limit)
        .map_err(|e| round_failed(e, &mut agents, &names, &etcd, bench))?;
    println!(
        "deploy 1 (version 0, every agent's first): mgmt deploy {}, all {n} converged on it after {}",
        ms(first.command),
        ms_or_stuck(first.all())
    );
    std::thread::sleep(Duration::from_secs(1));

    let mut rounds: Vec<(u64, DeployRound)> = Vec::new();
    let (mut cpu0, mut cpu_etcd0, mut m0) = (0, 0, None);
    for i in 1..=warmup + iters {
        let record = i > warmup;
        fs::write(repo.join("graph.yaml"), app_yaml(i))?;
        git(&repo, &["commit", "-q", "-a", "-m", &format!("version {i}")])?;
        std::thread::sleep(DEPLOY_PAUSE);
        if i == warmup + 1 {
            cpu0 = cpu_all(&agents);
            cpu_etcd0 = cpu_ns(etcd.process.pid());
            m0 = Some(etcd.metrics());
        }
        let id = i as u64 + 1;
        let r = deploy_round(&mut w, &etcd.url, &repo, &names, &files, &app_content(i), id, limit)
            .map_err(|e| round_failed(e, &mut agents, &names, &etcd, bench))?;
        println!(
            "{} deploy {id}: mgmt deploy {}, published {}, first host converged {}, all {n} {}",
            if record { "round" } else { "warm-up" },
            ms(r.command),
            ms(r.published),
            ms(r.first()),
            ms_or_stuck(r.all()),
        );
        if !r.stuck.is_empty() {
            report_stuck(&r, id, &agents, &names);
        }
        if record {
            rounds.push((id, r));
        }
    }
    let cpu1 = cpu_all(&agents);
    let cpu_etcd1 = cpu_ns(etcd.process.pid());
    let m1 = etcd.metrics();
    let m0 = m0.context("no metrics")?;
    let rss: Vec<(u64, u64)> = agents.iter().map(|a| rss_hwm_kb(a.pid())).collect();
    let threads: Vec<u64> = agents.iter().map(|a| status_kb(a.pid(), "Threads:").unwrap_or(0)).collect();
    let etcd_rss = status_kb(etcd.process.pid(), "VmRSS:").unwrap_or(0);
    let deploys_dirs = fs::read_dir(t.join("prefix"))
        .map(|rd| {
            rd.flatten().filter_map(|e| fs::read_dir(e.path().join("deploys")).ok()).map(|d| d.count()).max()
        })
        .ok()
        .flatten()
        .unwrap_or(0);

    // Baselines of the command alone (3 agents only): the process, and the process with
    // etcd round trips but nothing written.
    let mut base: Vec<(String, Stats)> = Vec::new();
    if n <= 3 {
        for (what, args) in [
            ("`mgmt --version` (process start and exit)", vec!["--version"]),
            (
                "`mgmt deploy list` (+ connect, status, one range read)",
                vec!["deploy", "--seeds", &etcd.url, "list"],
            ),
            (
                "`mgmt deploy yaml graph.yaml`, nothing new (+ git, blob checks, no write)",
                vec!["deploy", "--seeds", &etcd.url, "yaml", "graph.yaml"],
            ),
        ] {
            let s = stats(&time_mgmt(&repo, &args, 10, |out| {
                ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                Ok(())
            })?);
            println!("{what}: {}", s.line());
            base.push((what.to_string(), s));
        }
    }

    // Nothing went wrong on the way?
    for a in &mut agents {
        a.ensure_alive()?;
    }
    for (f, h) in files.iter().zip(&names) {
        ensure!(fs::read(f)? == app_content(warmup + iters), "{h}'s file does not have the last version");
    }
    stop_agents(&mut agents, &etcd, bench)?;
    let logs: Vec<Log> = agents.iter().map(|a| Log::read(&a.log)).collect();
    drop(etcd);

    // Report.
    let all: Vec<Duration> = rounds.iter().filter_map(|(_, r)| r.all()).collect();
    ensure!(!all.is_empty(), "a host got stuck in every round");
    let s_all = stats(&all);
    let stuck_rounds = rounds.iter().filter(|(_, r)| !r.stuck.is_empty()).count();
    let names_ref = &names;
    let stuck_hosts: Vec<String> = rounds
        .iter()
        .flat_map(|(id, r)| r.stuck.iter().map(move |k| format!("{} in deploy {id}", names_ref[*k])))
        .collect();
    let s_cmd = stats(&rounds.iter().map(|(_, r)| r.command).collect::<Vec<_>>());
    let s_pub = stats(&rounds.iter().map(|(_, r)| r.published).collect::<Vec<_>>());
    let s_first = stats(&rounds.iter().map(|(_, r)| r.first()).collect::<Vec<_>>());
    let per_host: Vec<Duration> =
        rounds.iter().flat_map(|(_, r)| r.converged.iter().flatten().copied()).collect();
    let s_host = stats(&per_host);
    let early: usize = rounds.iter().map(|(_, r)| r.early).sum();
    let two_writes: usize = rounds
        .iter()
        .map(|(_, r)| r.named.iter().zip(&r.converged).filter(|(a, b)| b.is_some_and(|b| **a < b)).count())
        .sum();
    println!("mgmt deploy start -> all {n} hosts converged on it: {}", s_all.line());
    println!("mgmt deploy start -> its exit: {}", s_cmd.line());
    let mut rows = Vec::new();
    let target = Duration::from_millis(250);
    rows.push(row(
        bench,
        format!("`mgmt deploy` start -> all {n} hosts report it converged: p50/p90/max (n={})", all.len()),
        s_all.p50_p90_max(),
        "< 0.25 s",
        Some(s_all.max < target),
    ));
    rows.push(row(
        bench,
        format!("rounds with a host stuck at `converged: false` (file right, {STUCK_GRACE:?} after)"),
        if stuck_hosts.is_empty() {
            format!("0 of {iters}")
        } else {
            format!("{stuck_rounds} of {iters} ({})", stuck_hosts.join(", "))
        },
        "0",
        Some(stuck_rounds == 0),
    ));
    if n > 3
        && let Some((p50, p90)) = *DEPLOY3.lock().unwrap_or_else(|e| e.into_inner())
    {
        rows.push(info(
            bench,
            "the same with 3 agents (this run): p50 / p90; growth of the p50",
            format!("{} / {}; x{:.1}", ms(p50), ms(p90), s_all.p50.as_secs_f64() / p50.as_secs_f64()),
        ));
    }
    if n <= 3 {
        *DEPLOY3.lock().unwrap_or_else(|e| e.into_inner()) = Some((s_all.p50, s_all.p90));
    }
    rows.push(info(bench, "`mgmt deploy` start -> its exit (wall time)", s_cmd.p50_p90_max()));
    rows.push(info(bench, "`mgmt deploy` start -> bench's watch sees deploy/latest", s_pub.p50_p90_max()));
    rows.push(info(bench, "start -> first host converged", s_first.p50_p90_max()));
    rows.push(info(
        bench,
        format!("start -> a host converged (each of {n} hosts, n={})", per_host.len()),
        s_host.p50_p90_max(),
    ));
    // Where the time goes, from the agents' logs.
    let m = milestones(&rounds, &logs);
    let mut add = |what: &str, v: &[Duration]| {
        if !v.is_empty() {
            let s = stats(v);
            println!("{what}: {}", s.line());
            rows.push(info(bench, format!("{what} (n={})", s.n), s.p50_p90_max()));
        }
    };
    add("log: start -> agent logs `deploy N: fetching bundle`", &m.fetching);
    add("log: start -> agent logs `running deploy N`", &m.running);
    add("log: start -> agent logs its file written", &m.file);
    add(
        "step: deploy/latest published -> `fetching bundle` (watch event, record read)",
        &m.published_to_fetching,
    );
    add(
        "step: `fetching bundle` -> `running deploy` (fetch, verify, unpack, parse, swap)",
        &m.fetching_to_running,
    );
    add("step: `running deploy` -> file written", &m.running_to_file);
    add("step: file written -> its converged status seen by the bench", &m.file_to_status);
    for (what, s) in &base {
        rows.push(info(bench, format!("baseline: {what}"), s.p50_p90_max()));
    }
    rows.push(info(
        bench,
        "statuses naming the new deploy before its converged one; converged before the file was right",
        format!("{two_writes} of {}; {early}", per_host.len()),
    ));
    let proposals =
        m1.get("etcd_server_proposals_committed_total") - m0.get("etcd_server_proposals_committed_total");
    let (_, fsync_ms) = m1.hist_since(&m0, "etcd_disk_wal_fsync_duration_seconds");
    rows.push(info(
        bench,
        "etcd: writes per deploy, WAL fsync mean",
        format!("{:.1}, {fsync_ms:.2} ms", proposals / iters as f64),
    ));
    let cpu_agents = cpu1.saturating_sub(cpu0) as f64 / 1e6 / iters as f64;
    let cpu_etcd = cpu_etcd1.saturating_sub(cpu_etcd0) as f64 / 1e6 / iters as f64;
    rows.push(info(
        bench,
        "CPU per deploy, ms (all agents together; etcd)",
        format!("{cpu_agents:.1} ({:.2} per agent); etcd {cpu_etcd:.1}", cpu_agents / n as f64),
    ));
    let mb = |kb: u64| kb as f64 / 1024.0;
    let mut r_sorted: Vec<u64> = rss.iter().map(|r| r.0).collect();
    r_sorted.sort();
    let hwm_max = rss.iter().map(|r| r.1).max().unwrap_or(0);
    rows.push(row(
        bench,
        "VmRSS after the run, MB: h1 (VmHWM); median, max of all agents; etcd",
        format!(
            "{:.1} ({:.1}); {:.1}, {:.1} (VmHWM max {:.1}); etcd {:.1}",
            mb(rss[0].0),
            mb(rss[0].1),
            mb(r_sorted[r_sorted.len() / 2]),
            mb(*r_sorted.last().unwrap_or(&0)),
            mb(hwm_max),
            mb(etcd_rss)
        ),
        "",
        None,
    ));
    println!(
        "threads per agent: {:?}; unpacked bundles kept in one agent's prefix: {deploys_dirs}",
        threads.iter().take(5).collect::<Vec<_>>()
    );
    Ok(rows)
}
