//! What the results depend on besides the code: the machine, its load and the file system of
//! the temporary directory.

use std::fs;
use std::path::Path;

/// Print the CPUs, kernel, load, the file system holding `tmp` and the binary under test.
pub fn print_machine(tmp: &Path) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel =
        fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    // The mount holding the temp dir: longest mount point that is a prefix of it.
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let fs_type = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && tmp.starts_with(f[1])).then(|| {
                // An ext4 journal shows up as /proc/fs/jbd2/<device>-<n>.
                let dev =
                    Path::new(f[0]).file_name().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
                let journal = fs::read_dir("/proc/fs/jbd2")
                    .map(|rd| {
                        rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&format!("{dev}-")))
                    })
                    .unwrap_or(false);
                let journal = if f[2] != "ext4" {
                    ""
                } else if journal {
                    ", journal"
                } else {
                    ", NO journal"
                };
                (f[1].len(), format!("{} on {} ({}{journal}; {})", f[2], f[1], f[0], f[3]))
            })
        })
        .max()
        .map(|(_, s)| s)
        .unwrap_or_else(|| "?".into());
    println!("machine: {cpus} CPUs, {model}, Linux {kernel}; load average {}", load.join(" "));
    println!("temp dir: {} on {fs_type}", tmp.display());
    println!("binary: {}", super::bin());
}
