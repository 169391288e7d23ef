//! A new graph, by where it comes from, and the line its swap logs.

use std::path::PathBuf;

use crate::deploy::follow::LastRun;
use crate::deploy::store::DeployRecord;
use crate::engine::SwapPlan;
use crate::frontend::GraphSpec;
use crate::frontend::source::SpecVersion;

/// A new graph, by where it comes from: that decides what is exported, what is logged and
/// what the agent records.
pub(super) enum Change {
    /// A new version of the graph file.
    File(SpecVersion),
    /// A verified deploy.
    Deploy { record: Box<DeployRecord>, spec: Box<GraphSpec>, dir: PathBuf, ran: Box<LastRun> },
    /// The collected resources changed: the running graph again, with them.
    Collected,
}

impl Change {
    /// The new spec, or `None` for the running one.
    pub(super) fn spec(&self) -> Option<&GraphSpec> {
        match self {
            Change::File(v) => Some(&v.spec),
            Change::Deploy { spec, .. } => Some(spec),
            Change::Collected => None,
        }
    }

    /// Exports depend on the spec alone: the collected resources do not change them.
    pub(super) fn exports(&self) -> bool {
        !matches!(self, Change::Collected)
    }
}

/// A swap's counts, as logged.
fn counts(plan: &SwapPlan) -> String {
    format!("{} kept, {} started, {} stopped", plan.keep.len(), plan.start.len(), plan.stop.len())
}

/// The line logged when `change` was swapped in, if any.
pub(super) fn swapped_line(change: &Change, plan: &SwapPlan) -> Option<String> {
    match change {
        Change::File(_) => Some(format!("graph swapped: {}", counts(plan))),
        Change::Deploy { record, dir, .. } => Some(format!(
            "running deploy {} (commit {}, bundle {}, from {}): {}",
            record.id,
            record.commit.as_deref().unwrap_or("none"),
            record.bundle,
            dir.display(),
            counts(plan)
        )),
        Change::Collected if plan.start.is_empty() && plan.stop.is_empty() => None,
        Change::Collected => Some(format!("collected resources changed: {}", counts(plan))),
    }
}
