//! Result rows, the results table and statistics of samples, as every benchmark reports them.

use std::time::Duration;

/// One line of the results table.
pub struct Row {
    pub bench: &'static str,
    pub metric: String,
    pub value: String,
    pub target: &'static str,
    /// None: informational, no target.
    pub pass: Option<bool>,
}

pub fn row(
    bench: &'static str,
    metric: impl Into<String>,
    value: impl Into<String>,
    target: &'static str,
    pass: Option<bool>,
) -> Row {
    Row { bench, metric: metric.into(), value: value.into(), target, pass }
}

/// A row with no target: information.
pub fn info(bench: &'static str, metric: impl Into<String>, value: impl Into<String>) -> Row {
    row(bench, metric, value, "", None)
}

pub fn print_table(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let w = |f: &dyn Fn(&Row) -> usize, h: &str| rows.iter().map(f).max().unwrap_or(0).max(h.len());
    let (wb, wm, wv, wt) = (
        w(&|r| r.bench.len(), "bench"),
        w(&|r| r.metric.len(), "metric"),
        w(&|r| r.value.len(), "result"),
        w(&|r| r.target.len(), "target"),
    );
    println!("\n== results ==");
    println!("| {:wb$} | {:wm$} | {:wv$} | {:wt$} | status |", "bench", "metric", "result", "target");
    println!(
        "|{}|{}|{}|{}|--------|",
        "-".repeat(wb + 2),
        "-".repeat(wm + 2),
        "-".repeat(wv + 2),
        "-".repeat(wt + 2)
    );
    for r in rows {
        let status = match r.pass {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "",
        };
        println!("| {:wb$} | {:wm$} | {:wv$} | {:wt$} | {status:6} |", r.bench, r.metric, r.value, r.target);
    }
}

pub fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1e3;
    if m < 10.0 {
        format!("{m:.3} ms")
    } else if m < 1000.0 {
        format!("{m:.1} ms")
    } else {
        format!("{:.2} s", m / 1e3)
    }
}

pub struct Stats {
    pub n: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

/// Nearest-rank percentiles.
pub fn stats(samples: &[Duration]) -> Stats {
    let mut s = samples.to_vec();
    s.sort();
    let n = s.len();
    let pct = |p: f64| s[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    Stats {
        n,
        min: s[0],
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: s[n - 1],
        mean: s.iter().sum::<Duration>() / n as u32,
    }
}

impl Stats {
    pub fn line(&self) -> String {
        format!(
            "n={} min {} p50 {} p90 {} p99 {} max {} mean {}",
            self.n,
            ms(self.min),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            ms(self.mean)
        )
    }
    pub fn p50_p99_max(&self) -> String {
        format!("{} / {} / {}", ms(self.p50), ms(self.p99), ms(self.max))
    }
    pub fn median_range(&self) -> String {
        format!("{} ({}..{})", ms(self.p50), ms(self.min), ms(self.max))
    }
    pub fn p50_p90_p99_max(&self) -> String {
        format!("{} / {} / {} / {}", ms(self.p50), ms(self.p90), ms(self.p99), ms(self.max))
    }
    pub fn p50_p90_max(&self) -> String {
        format!("{} / {} / {}", ms(self.p50), ms(self.p90), ms(self.max))
    }
}
