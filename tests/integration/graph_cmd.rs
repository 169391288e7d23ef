//! `mgmt graph`: the graph a YAML file produces, with autoedges, printed as text, JSON or
//! dot; nothing applied; an invalid graph fails as `run` fails.

use crate::common::{Agent, Finished, TestDir};

/// A graph with an explicit edge, a notify edge and an autoedge (`file[f]` lives in the
/// directory `file[d]` manages). Its paths are below `out/`, which must never be created.
fn graph(t: &TestDir) -> String {
    format!(
        r#"graph: shown
resources:
  file:
  - name: f
    path: {out}/d/f
    content: "hello\n"
  - name: d
    path: {out}/d/
  exec:
  - name: b
    cmd: "true"
  - name: a
    cmd: "true"
edges:
- name: e1
  from: {{kind: exec, name: a}}
  to: {{kind: exec, name: b}}
- name: e2
  from: {{kind: file, name: f}}
  to: {{kind: exec, name: a}}
  notify: true
"#,
        out = t.p("out")
    )
}

const TEXT: &str = "exec[a]\nexec[b]\nfile[d]\nfile[f]\n\
                    exec[a] -> exec[b]\nfile[d] -> file[f]\nfile[f] -> exec[a]\n";

/// `mgmt graph <args>` to its end; nothing may have been applied.
fn graph_cmd(t: &TestDir, args: &[&str]) -> Finished {
    let mut argv = vec!["graph"];
    argv.extend_from_slice(args);
    let a = Agent::spawn(t, &argv);
    let status = a.wait_exit();
    assert!(!t.path("out").exists(), "`mgmt graph` applied something");
    Finished { status, stdout: a.stdout(), stderr: a.stderr() }
}

#[test]
fn text_lists_resources_then_edges_with_autoedges() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &graph(&t));
    let out = graph_cmd(&t, &["yaml", yaml.to_str().unwrap()]);
    out.assert_code(0);
    assert_eq!(out.stdout, TEXT);
}

#[test]
fn json_has_vertices_with_params_and_edges_with_notify() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &graph(&t));
    let out = graph_cmd(&t, &["--format", "json", "yaml", yaml.to_str().unwrap()]);
    out.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    let ids: Vec<String> = v["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{}[{}]", v["kind"].as_str().unwrap(), v["name"].as_str().unwrap()))
        .collect();
    assert_eq!(ids, ["exec[a]", "exec[b]", "file[d]", "file[f]"]);
    assert_eq!(v["vertices"][3]["params"]["path"], t.p("out/d/f"));
    assert_eq!(v["vertices"][3]["params"]["content"], "hello\n");
    assert_eq!(
        v["edges"],
        serde_json::json!([
            {"from": "exec[a]", "to": "exec[b]", "notify": false},
            {"from": "file[d]", "to": "file[f]", "notify": false},
            {"from": "file[f]", "to": "exec[a]", "notify": true},
        ])
    );
}

#[test]
fn dot_is_a_graphviz_digraph_with_bold_notify_edges() {
    let t = TestDir::new();
    let yaml = t.write_yaml("g.yaml", &graph(&t));
    // The flag after the frontend and its file.
    let out = graph_cmd(&t, &["yaml", yaml.to_str().unwrap(), "--format", "dot"]);
    out.assert_code(0);
    assert_eq!(
        out.stdout,
        "digraph \"shown\" {\n  \"exec[a]\";\n  \"exec[b]\";\n  \"file[d]\";\n  \"file[f]\";\n  \
         \"exec[a]\" -> \"exec[b]\";\n  \"file[d]\" -> \"file[f]\";\n  \
         \"file[f]\" -> \"exec[a]\" [style=bold];\n}\n"
    );
}

#[test]
fn a_directory_stands_for_its_graph_yaml() {
    let t = TestDir::new();
    std::fs::create_dir(t.path("app")).unwrap();
    t.write_yaml("app/graph.yaml", &graph(&t));
    let out = graph_cmd(&t, &["yaml", &t.p("app"), "--format=text"]);
    out.assert_code(0);
    assert_eq!(out.stdout, TEXT);
}

#[test]
fn relative_paths_resolve_against_the_files_directory() {
    let t = TestDir::new();
    std::fs::create_dir(t.path("app")).unwrap();
    let text = "graph: g\nresources:\n  exec:\n  - name: e\n    cmd: 'true'\n    cwd: sub\n";
    let yaml = t.write_yaml("app/g.yaml", text);
    let out = graph_cmd(&t, &["--format", "json", "yaml", yaml.to_str().unwrap()]);
    out.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let dir = t.path("app").canonicalize().unwrap().join("sub");
    assert_eq!(v["vertices"][0]["params"]["cwd"], dir.to_str().unwrap());
}

#[test]
fn an_invalid_graph_fails_with_the_error_run_gives() {
    let t = TestDir::new();
    let text = graph(&t).replace("    content: \"hello\\n\"\n", "    contnet: hi\n");
    let yaml = t.write_yaml("g.yaml", &text);
    let out = graph_cmd(&t, &["yaml", yaml.to_str().unwrap()]);
    out.assert_code(1)
        .assert_stderr_has(&format!("mgmt: error: {}:6:5: file[f]: unknown field `contnet`", yaml.display()));
    assert_eq!(out.stdout, "");
}

#[test]
fn a_graph_that_does_not_assemble_fails_naming_the_file() {
    let t = TestDir::new();
    let text = graph(&t) + "- {name: e3, from: {kind: exec, name: b}, to: {kind: exec, name: a}}\n";
    let yaml = t.write_yaml("g.yaml", &text);
    let out = graph_cmd(&t, &["yaml", yaml.to_str().unwrap()]);
    out.assert_code(1)
        .assert_stderr_has(&format!("mgmt: error: {}: the graph has a cycle: ", yaml.display()));
    assert_eq!(out.stdout, "");
}

#[test]
fn a_missing_file_and_a_bad_format_fail() {
    let t = TestDir::new();
    let missing = t.p("nope.yaml");
    graph_cmd(&t, &["yaml", &missing]).assert_code(1).assert_stderr_has("mgmt: error: ");
    let yaml = t.write_yaml("g.yaml", &graph(&t));
    graph_cmd(&t, &["--format", "svg", "yaml", yaml.to_str().unwrap()]).assert_code(2);
}
