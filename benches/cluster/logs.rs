//! The agents' logs, read back by their timestamps.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch of an RFC 3339 UTC timestamp as tracing-subscriber
/// writes it (`2025-01-02T03:04:05.678901Z`).
fn parse_ts(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let frac6: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    let us: i64 = frac6.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + us)
}

pub fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// An agent's log: (us since the epoch, line), in order.
pub struct Log(pub Vec<(i64, String)>);

impl Log {
    pub fn read(path: &Path) -> Log {
        let text = fs::read_to_string(path).unwrap_or_default();
        let mut v: Vec<(i64, String)> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next().and_then(parse_ts).map(|t| (t, l.to_string())))
            .collect();
        v.sort_by_key(|(t, _)| *t);
        Log(v)
    }

    /// Index of the first line at or after time `t`.
    pub fn at(&self, t: i64) -> usize {
        self.0.partition_point(|(x, _)| *x < t)
    }

    /// The first line from index `from` on, before time `until`, that contains every needle:
    /// its index and time.
    pub fn find(&self, from: usize, until: i64, needles: &[&str]) -> Option<(usize, i64)> {
        self.0
            .iter()
            .enumerate()
            .skip(from)
            .take_while(|(_, (t, _))| *t < until)
            .find(|(_, (_, l))| needles.iter().all(|n| l.contains(n)))
            .map(|(i, (t, _))| (i, *t))
    }
}
