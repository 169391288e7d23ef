//! The graph corpus: each `tests/lang/graph/<case>.mcl` with `<case>.graph` (the graph it
//! gives: its vertices sorted, `exported` after those it exports, its edges sorted, with
//! send/recv fields and `notify`, then each vertex's params as JSON) or
//! `<case>.err` (its errors, rendered). With `MCL_BLESS=1` in the environment, missing or
//! different expectations are written instead.

use std::path::Path;

use super::super::diagnostic::{Diagnostic, render_all};
use super::super::funcs::HostInfo;
use super::super::module::{self, Module};
use crate::frontend::GraphSpec;

fn host() -> HostInfo {
    HostInfo { hostname: "h1".into(), ..HostInfo::default() }
}

fn compile(module: &Module) -> Result<GraphSpec, Vec<Diagnostic>> {
    super::super::compile(module, &host())
}

/// The graph as text: what the corpus compares.
pub fn graph_text(spec: &GraphSpec) -> String {
    let exported = |id: &crate::contract::ResId| if spec.exports.contains(id) { " exported" } else { "" };
    let mut vertices: Vec<String> =
        spec.resources.iter().map(|r| format!("{}{}", r.id(), exported(&r.id()))).collect();
    vertices.sort();
    let mut edges: Vec<String> = spec
        .edges
        .iter()
        .map(|e| {
            let mut line = match &e.send_recv {
                Some((send, recv)) => format!("{}.{send} -> {}.{recv}", e.from, e.to),
                None => format!("{} -> {}", e.from, e.to),
            };
            if e.notify {
                line.push_str(" notify");
            }
            line
        })
        .collect();
    edges.sort();
    let mut params: Vec<String> =
        spec.resources.iter().map(|r| format!("{} {}", r.id(), r.to_json())).collect();
    params.sort();
    [vertices, edges, params].concat().iter().map(|l| format!("{l}\n")).collect()
}

fn outcome(path: &Path) -> (String, &'static str) {
    let module = match module::load(path) {
        Ok(m) => m,
        Err(e) => return (render_all(&e.diagnostics, &e.map), "err"),
    };
    match compile(&module) {
        Ok(spec) => (graph_text(&spec), "graph"),
        Err(errors) => (render_all(&errors, &module.map), "err"),
    }
}

#[test]
fn every_case_gives_its_graph() {
    use super::super::corpus;
    corpus::check_cases("graph", 40, &["graph", "err"], "evaluation", |case| outcome(corpus::relative(case)));
}

#[test]
fn the_test_kind_is_written_in_yaml_too() {
    let text = "graph: g\nresources:\n  test:\n  - name: t\n    int8: -8\n    validate_error: \"\"\n    mapintfloat: {1: 1.5}\n    mixedstruct: {somestr: x}\n";
    let spec = crate::frontend::yaml::parse(text, "g.yaml").unwrap();
    let json = spec.resources[0].to_json();
    assert_eq!((json["int8"].as_i64(), json["mapintfloat"]["1"].as_f64()), (Some(-8), Some(1.5)));
    assert_eq!(json["mixedstruct"]["somestr"], "x");
    let refused = "graph: g\nresources:\n  test:\n  - name: t\n    validatebool: true\n";
    let e = crate::frontend::yaml::parse(refused, "g.yaml").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("validatebool"), "{e}");
}
