//! mgmt: a real-time, closed-loop configuration management agent.
//!
//! Data flows one way: `frontend` (user code) -> `engine::graph` -> `engine` (vertex tasks)
//! -> `resources` (I/O), with the `world` beside them. See ARCHITECTURE.md.

pub mod agent;
pub mod cli;
pub mod contract;
pub mod deploy;
pub mod engine;
pub mod frontend;
pub mod os;
pub mod resources;
pub mod text;
pub mod world;
