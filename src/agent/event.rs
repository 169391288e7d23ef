//! What the agent reacts to: [`Event`]s, and the [`Sources`] they come from besides the
//! agent's own engine, world and deploy follower.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::deploy::follow::DeployEvent;
use crate::engine::Summary;
use crate::frontend::source::{SpecError, SpecSource, SpecVersion};

/// A signal that stops the agent cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupt,
    Terminate,
}

/// Something that happened, for [`Agent::handle`](super::Agent::handle) to act on.
pub enum Event {
    Signal(Stop),
    /// A new version of the graph from its frontend, or why it could not be loaded.
    Spec(Result<SpecVersion, SpecError>),
    /// News from the deploy follower.
    Deploy(DeployEvent),
    /// The resources the world collects for this host changed.
    Collected,
    /// The vertices' convergence changed.
    Convergence(Summary),
    /// Nothing was busy for `--converged-timeout` seconds.
    ConvergedTimeout,
    /// A resource asked the run to end with this exit code (the `exit` kind).
    Exit(u8),
}

/// SIGINT and SIGTERM, installed: from then on they stop the agent cleanly instead of
/// killing it (which would leave temporary files behind).
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    pub(super) async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
        }
    }
}

/// Where events come from besides the agent's own engine and world.
pub struct Sources {
    pub signals: Option<Signals>,
    /// The graph's frontend, following its input.
    pub specs: Option<SpecSource>,
}
