//! What the agent needs from the operating system, below every resource kind: file watching
//! (one inotify hub per process), atomic writes and starting commands.

pub mod atomic;
pub mod fswatch;
pub mod passwd;
pub mod spawn;

pub use atomic::{write_atomic, write_atomic_from};
pub use fswatch::FsWatcher;
