//! What the agent tells the cluster about itself: its [`HostStatus`].

use crate::engine::converged::Summary;
use crate::engine::{Engine, Status, VertexReport};
use crate::frontend::GraphSpec;
use crate::world::{Failure, HostStatus};

pub use crate::os::unix_now;

/// What this agent tells the cluster about itself: the running graph `spec`, from `source`.
pub fn host_status(
    engine: &Engine,
    spec: &GraphSpec,
    source: &str,
    hostname: &str,
    started: u64,
) -> HostStatus {
    let mut s = status_of(&engine.report(), engine.convergence().summary(), spec, source, hostname, started);
    s.changes = engine.recent_changes();
    s
}

fn status_of(
    report: &[VertexReport],
    summary: Summary,
    spec: &GraphSpec,
    source: &str,
    hostname: &str,
    started: u64,
) -> HostStatus {
    let failed: Vec<String> = report
        .iter()
        .filter(|r| matches!(r.status, Status::Failed | Status::Blocked))
        .map(|r| r.id.to_string())
        .collect();
    let last_error = report.iter().find_map(|r| r.status_error());
    // Failed ones first: they hold the errors; blocked ones only wait for them.
    let failures = report
        .iter()
        .filter(|r| r.status == Status::Failed)
        .chain(report.iter().filter(|r| r.status == Status::Blocked))
        .map(failure)
        .collect();
    HostStatus {
        hostname: hostname.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        graph: spec.name.clone(),
        source: source.to_string(),
        deploy: None,
        deploy_error: None,
        converged: summary.converged() && failed.is_empty(),
        resources: report.len(),
        failed,
        last_error,
        started,
        updated: unix_now(),
        follows_deploys: false,
        refused_deploy: None,
        idle: summary.idle(),
        failures,
        failures_more: 0,
        changes: Vec::new(),
    }
}

/// A vertex that is not in its desired state, as published: its error with the tail of a
/// failed command's output (cut by [`HostStatus::bounded`]).
fn failure(r: &VertexReport) -> Failure {
    Failure {
        kind: r.id.kind.clone(),
        name: r.id.name.clone(),
        state: if r.status == Status::Blocked { "blocked" } else { "failed" }.to_string(),
        error: r.error.as_ref().map(|e| match &r.output {
            Some(o) => format!("{e}: {}", crate::text::tail(o, 512)),
            None => e.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ResId;

    fn vertex(name: &str, status: Status, error: Option<&str>, output: Option<&str>) -> VertexReport {
        VertexReport {
            id: ResId { kind: "exec".into(), name: name.into() },
            status,
            error: error.map(str::to_string),
            output: output.map(str::to_string),
            would_change: false,
        }
    }

    #[test]
    fn failed_vertices_come_before_blocked_ones() {
        let report = [
            vertex("b", Status::Blocked, None, None),
            vertex("ok", Status::Ok, None, None),
            vertex("f", Status::Failed, Some("exit 1"), Some("boom")),
        ];
        let summary = Summary { vertices: 3, busy: 0, bad: 2 };
        let spec = GraphSpec { name: "g".into(), ..GraphSpec::default() };
        let s = status_of(&report, summary, &spec, "g.yaml", "h1", 7);
        assert_eq!(
            (s.graph.as_str(), s.source.as_str(), s.hostname.as_str(), s.started),
            ("g", "g.yaml", "h1", 7)
        );
        assert_eq!(s.failed, ["exec[b]", "exec[f]"]);
        let order: Vec<_> = s.failures.iter().map(|f| (f.name.as_str(), f.state.as_str())).collect();
        assert_eq!(order, [("f", "failed"), ("b", "blocked")]);
        assert_eq!(s.failures[0].error.as_deref(), Some("exit 1: boom"));
        assert_eq!(s.last_error.as_deref(), Some("exec[f]: exit 1: boom"));
        assert!(s.idle && !s.converged);
        assert_eq!(s.resources, 3);
    }

    #[test]
    fn an_idle_graph_without_failures_is_converged() {
        let report = [vertex("ok", Status::Ok, None, None)];
        let spec = GraphSpec::default();
        let s = status_of(&report, Summary { vertices: 1, busy: 0, bad: 0 }, &spec, "x", "h", 0);
        assert!(s.converged && s.failures.is_empty());
        let busy = status_of(&report, Summary { vertices: 1, busy: 1, bad: 0 }, &spec, "x", "h", 0);
        assert!(!busy.converged && !busy.idle);
    }
}
