//! What the agent needs from the operating system, below every resource kind: file watching
//! (one inotify hub per process), atomic writes and starting commands.

pub mod atomic;
pub mod fswatch;
pub mod passwd;
pub mod spawn;

pub use atomic::{write_atomic, write_atomic_from};
pub use fswatch::FsWatcher;

/// Seconds since the epoch, by the system clock (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
