//! `mgmt status`: the hosts of a cluster, from their `hosts/<hostname>` keys.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::GetOptions;

use super::StatusArgs;
use crate::world::HostStatus;
use crate::world::etcd::{Keys, connect};

pub async fn run(args: StatusArgs) -> Result<u8> {
    if args.cluster.seeds.is_empty() {
        bail!("--seeds (or MGMT_SEEDS) is needed: the etcd endpoints of the cluster");
    }
    let seeds = args.cluster.seeds.join(",");
    let keys = Keys::new(&args.cluster.etcd_namespace);
    let read = async {
        let mut c = connect(&args.cluster.seeds).await?;
        let resp = c.get(keys.hosts(), Some(GetOptions::new().with_prefix())).await?;
        anyhow::Ok(resp)
    };
    let resp = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| anyhow::anyhow!("etcd at {seeds} did not answer within 5 s"))?
        .with_context(|| format!("reading hosts from etcd at {seeds}"))?;
    let mut hosts: Vec<HostStatus> = Vec::new();
    for kv in resp.kvs() {
        match serde_json::from_slice::<HostStatus>(kv.value()) {
            Ok(h) => hosts.push(h),
            Err(e) => {
                eprintln!("mgmt: warning: {} is not a host status: {e}", String::from_utf8_lossy(kv.key()))
            }
        }
    }
    hosts.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hosts)?);
    } else {
        print!("{}", table(&hosts, unix_now()));
    }
    Ok(0)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn age(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// The table `mgmt status` prints; pure, for tests.
pub fn table(hosts: &[HostStatus], now: u64) -> String {
    let header =
        ["HOST", "CONVERGED", "RESOURCES", "FAILED", "GRAPH", "DEPLOY", "VERSION", "UP", "LAST ERROR"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for h in hosts {
        rows.push(vec![
            h.hostname.clone(),
            if h.converged { "yes".into() } else { "no".into() },
            h.resources.to_string(),
            h.failed_total().to_string(),
            h.graph.clone(),
            match (h.deploy, &h.deploy_error) {
                (Some(d), None) => d.to_string(),
                (Some(d), Some(_)) => format!("{d} (latest refused)"),
                (None, Some(_)) => "refused".into(),
                (None, None) => "-".into(),
            },
            h.version.clone(),
            age(now, h.started),
            h.last_error
                .clone()
                .or_else(|| h.deploy_error.clone())
                .unwrap_or_else(|| "-".into())
                .replace('\n', " "),
        ]);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| if i + 1 == r.len() { c.clone() } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if hosts.is_empty() {
        out.push_str("(no hosts registered)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_header_and_a_line_per_host() {
        let hosts = vec![
            HostStatus {
                hostname: "h1".into(),
                converged: true,
                resources: 3,
                started: 90,
                ..Default::default()
            },
            HostStatus {
                hostname: "host-two".into(),
                resources: 2,
                failed: vec!["exec[x]".into()],
                last_error: Some("exec[x]: boom".into()),
                started: 0,
                ..Default::default()
            },
        ];
        let t = table(&hosts, 100);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("HOST      CONVERGED"));
        assert!(lines[1].starts_with("h1        yes"));
        assert!(lines[2].starts_with("host-two  no"));
        assert!(lines[2].ends_with("exec[x]: boom"));
        assert!(lines[1].contains("10s"));
    }

    #[test]
    fn failed_counts_the_resources_a_bounded_status_leaves_out() {
        let h = HostStatus {
            hostname: "h".into(),
            failed: (0..250).map(|i| format!("file[{i}]")).collect(),
            ..Default::default()
        }
        .bounded();
        let t = table(&[h], 0);
        let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[3], "250", "{t}");
    }
}
