//! What /proc says about a process: CPU time, memory, threads.

use std::collections::HashMap;
use std::fs;

use anyhow::{Context, Result};

#[derive(Clone, Copy, Debug, Default)]
pub struct ProcTimes {
    /// utime + stime from /proc/PID/stat (all threads, dead ones included), in clock ticks.
    pub ticks: u64,
}

/// Clock ticks per second, the unit of [`ProcTimes`].
pub fn clk_tck() -> u64 {
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as u64
}

/// The CPU time a process has used so far.
pub fn proc_times(pid: i32) -> Result<ProcTimes> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &s[s.rfind(')').context("bad stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f[11].parse()?;
    let stime: u64 = f[12].parse()?;
    Ok(ProcTimes { ticks: utime + stime })
}

/// Per-thread on-CPU nanoseconds (/proc/PID/task/TID/schedstat) and context switches.
pub fn thread_stats(pid: i32) -> HashMap<u32, (u64, u64)> {
    let mut out = HashMap::new();
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let ns = fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or(0);
        let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let switches: u64 = status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches")
            })
            .filter_map(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        out.insert(tid, (ns, switches));
    }
    out
}

/// (on-CPU ns, context switches) accumulated between two `thread_stats` snapshots; threads
/// that exited in between are not counted.
pub fn thread_delta(a: &HashMap<u32, (u64, u64)>, b: &HashMap<u32, (u64, u64)>) -> (u64, u64) {
    b.iter().fold((0, 0), |(ns, sw), (tid, (bn, bs))| {
        let (an, as_) = a.get(tid).copied().unwrap_or((0, 0));
        (ns + bn.saturating_sub(an), sw + bs.saturating_sub(as_))
    })
}

/// A `VmXxx:` line of /proc/PID/status, in kB.
pub fn status_kb(pid: i32, key: &str) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let l = s.lines().find(|l| l.starts_with(key)).with_context(|| format!("no {key} in status"))?;
    Ok(l.split_whitespace().nth(1).context("bad status line")?.parse()?)
}

/// CPU time of a process in nanoseconds (0 if it cannot be read); see [`proc_times`].
pub fn cpu_ns(pid: i32) -> u64 {
    proc_times(pid).map(|t| t.ticks * (1_000_000_000 / clk_tck())).unwrap_or(0)
}

/// VmRSS and VmHWM in kB, 0 where they cannot be read.
pub fn rss_hwm_kb(pid: i32) -> (u64, u64) {
    (status_kb(pid, "VmRSS:").unwrap_or(0), status_kb(pid, "VmHWM:").unwrap_or(0))
}
