//! `mgmt status`: the hosts of a cluster, from their `hosts/<hostname>` keys.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::GetOptions;

use super::StatusArgs;
use crate::text::head;
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
    // Another host wrote these: what is shown of them is bounded (and escaped, in the table).
    let mut hosts: Vec<HostStatus> = Vec::new();
    for kv in resp.kvs() {
        match serde_json::from_slice::<HostStatus>(kv.value()) {
            Ok(h) => hosts.push(h.bounded()),
            Err(e) => eprintln!(
                "mgmt: warning: {} is not a host status: {}",
                shown(&String::from_utf8_lossy(kv.key()), LONG_CELL),
                shown(&e.to_string(), LONG_CELL)
            ),
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

/// The most bytes of a short cell of the table (host, graph, deploy, version).
const SHORT_CELL: usize = 64;
/// The most bytes of the last error shown in the table.
const LONG_CELL: usize = 200;

/// Whether `c` could break a line or fool a terminal: control characters (newlines,
/// escapes) and the invisible marks that reorder or hide text.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// Text another host published, as one bounded line: every unsafe character escaped
/// (`\n`, `\u{1b}`), then cut to `max` bytes with a marker.
pub fn shown(text: &str, max: usize) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    head(&line, max).into_owned()
}

/// The table `mgmt status` prints; pure, for tests.
pub fn table(hosts: &[HostStatus], now: u64) -> String {
    let header =
        ["HOST", "CONVERGED", "RESOURCES", "FAILED", "GRAPH", "DEPLOY", "VERSION", "UP", "LAST ERROR"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for h in hosts {
        rows.push(vec![
            shown(&h.hostname, SHORT_CELL),
            if h.converged { "yes".into() } else { "no".into() },
            h.resources.to_string(),
            h.failed_total().to_string(),
            shown(&h.graph, SHORT_CELL),
            match (h.deploy, &h.deploy_error) {
                (Some(d), None) => d.to_string(),
                (Some(d), Some(_)) => format!("{d} (latest refused)"),
                (None, Some(_)) => "refused".into(),
                (None, None) => "-".into(),
            },
            shown(&h.version, SHORT_CELL),
            age(now, h.started),
            // A multi-line error reads best on one line with its breaks as spaces.
            shown(
                &h.last_error
                    .as_deref()
                    .or(h.deploy_error.as_deref())
                    .unwrap_or("-")
                    .replace(['\n', '\r'], " "),
                LONG_CELL,
            ),
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
    fn what_a_host_published_is_shown_on_one_bounded_line() {
        let evil = HostStatus {
            hostname: "evil\nfake      yes".into(),
            graph: "g\r\x1b[2J".into(),
            version: "v".repeat(10_000),
            last_error: Some(format!("line one\nline two\u{202e}{}", "e".repeat(1_000_000))),
            ..Default::default()
        };
        let t = table(&[evil], 0);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[1].starts_with("evil\\nfake      yes  no"), "{t}");
        assert!(lines[1].contains("g\\r\\u{1b}[2J"), "{t}");
        assert!(lines[1].contains("line one line two\\u{202e}eee"), "{t}");
        assert!(!t.contains(['\x1b', '\r', '\u{202e}']), "{t}");
        assert!(lines[1].len() < 3 * SHORT_CELL + LONG_CELL + 100, "{} bytes", lines[1].len());
        assert!(lines[1].ends_with(" more bytes]"), "{t}");
    }

    #[test]
    fn shown_text_keeps_plain_text_and_bounds_the_rest() {
        assert_eq!(shown("web-1 é", 64), "web-1 é");
        assert_eq!(shown("a\tb\0", 64), "a\\tb\\u{0}");
        let long = shown(&"x".repeat(1000), 64);
        assert!(long.len() <= 64 && long.ends_with(" more bytes]"), "{long}");
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
