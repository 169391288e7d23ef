//! How a run that ends on its own (`--no-watch`, `--converged-timeout`) picks its exit code,
//! and what it says about the resources on the way out.

use tracing::{error, info};

use crate::engine::{Engine, Status, VertexReport};
use crate::text::count;

/// How a run that ends on its own picks its exit code.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// `--detailed-exitcodes`: 0, 2 (changes), 4 (failures) or 6 (both), from
    /// [`Engine::outcome`], instead of 0 or 1 from the resources' state at the end.
    pub detailed: bool,
}

/// Summarise failures and pick the exit code for a run that ended on its own.
pub fn finish(engine: &Engine, how: &str, ending: Ending) -> u8 {
    let code = summarise(engine, how);
    if !ending.detailed {
        return code;
    }
    let outcome = engine.outcome();
    info!("{how}: {} changes, {} failed checks", outcome.changes, outcome.failures);
    outcome.detailed_exit_code()
}

/// Log what would change and what failed; 0 if every resource is in its desired state,
/// else 1.
fn summarise(engine: &Engine, how: &str) -> u8 {
    let report = engine.report();
    let bad: Vec<_> = report.iter().filter(|r| r.status != Status::Ok).collect();
    let would: Vec<_> = report.iter().filter(|r| r.would_change).map(|r| r.id.to_string()).collect();
    if !would.is_empty() {
        info!(
            "{how} (noop): {} of {} would change: {}",
            would.len(),
            count(report.len(), "resource"),
            would.join(", ")
        );
    }
    if bad.is_empty() {
        if would.is_empty() {
            match report.len() {
                0 => info!("{how}: the graph is empty"),
                1 => info!("{how}: its one resource is in its desired state"),
                n => info!("{how}: all {n} resources are in their desired state"),
            }
        }
        0
    } else {
        for r in &bad {
            error!("{how}: {} is not in its desired state: {}", r.id, why_not_ok(r));
        }
        1
    }
}

/// Why a vertex is not in its desired state, in words.
fn why_not_ok(r: &VertexReport) -> String {
    match (&r.status, &r.error) {
        (Status::Blocked, _) => "blocked by a failed dependency".to_string(),
        (_, Some(e)) => e.clone(),
        (s, None) => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ResId;

    fn vertex(status: Status, error: Option<&str>) -> VertexReport {
        VertexReport {
            id: ResId { kind: "file".into(), name: "f".into() },
            status,
            error: error.map(str::to_string),
            output: None,
            would_change: false,
        }
    }

    #[test]
    fn a_blocked_vertex_is_blamed_on_its_dependency() {
        assert_eq!(why_not_ok(&vertex(Status::Blocked, Some("x"))), "blocked by a failed dependency");
        assert_eq!(why_not_ok(&vertex(Status::Failed, Some("no space"))), "no space");
        assert_eq!(why_not_ok(&vertex(Status::Pending, None)), "Pending");
    }
}
