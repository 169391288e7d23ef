//! `mgmt graph`: the resource graph a frontend's code produces, as `run` would run it
//! (checked, assembled, with autoedges), printed as text, JSON or Graphviz. Nothing is
//! applied. Resources collected from other hosts are not in it: it asks no world.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::contract::ResId;
use crate::engine::assemble::assemble;
use crate::engine::graph::Graph;
use crate::frontend::lang_file;
use crate::frontend::yaml_file::{self, YamlFile};

/// The flags of `mgmt graph`. Global within `graph`, so they are accepted after `yaml FILE` too.
#[derive(Args, Debug, Clone)]
pub struct GraphArgs {
    /// How to print the graph: `text` (one `kind[name]` line per resource, then one
    /// `kind[name] -> kind[name]` line per edge), `json`, or `dot` (Graphviz).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    pub format: Format,
    /// Keep following the program (`lang` only): print its graph, then, as its files or the
    /// values it reads change, each new graph (`text`: what changed, `+`/`-`/`~` per line).
    #[arg(long, global = true)]
    pub watch: bool,
    #[command(subcommand)]
    pub frontend: GraphFrontend,
}

/// What the graph is read from.
#[derive(Subcommand, Debug, Clone)]
pub enum GraphFrontend {
    /// A YAML graph file (a directory: its graph.yaml).
    Yaml {
        /// The graph file.
        file: PathBuf,
    },
    /// An mcl program (docs/lang.md).
    Lang {
        /// The program: a .mcl file, or a module directory.
        path: PathBuf,
    },
}

/// How `mgmt graph` prints.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    // Plain comments, not doc comments: help on the values would switch the command's
    // `--help` to the long layout.
    // Resources, then edges, one per line.
    Text,
    // One JSON object: `vertices` and `edges`.
    Json,
    // A Graphviz digraph.
    Dot,
}

pub async fn run(args: GraphArgs) -> Result<u8> {
    if args.watch {
        return watch(&args).await;
    }
    let (name, graph) = match &args.frontend {
        GraphFrontend::Yaml { file } => yaml_graph(file)?,
        GraphFrontend::Lang { path } => lang_graph(path)?,
    };
    let out = render(&name, &graph, args.format)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).context("writing the graph")?;
    Ok(0)
}

/// `graph --watch lang PATH`: each version of the program's graph as it changes, until
/// interrupted. Errors go to stderr, and the next good version is printed whole.
async fn watch(args: &GraphArgs) -> Result<u8> {
    let GraphFrontend::Lang { path } = &args.frontend else {
        anyhow::bail!("--watch follows an mcl program: `mgmt graph --watch lang PATH`");
    };
    let host = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    let fs = crate::os::fswatch::FsWatcher::new().context("starting the file watcher")?;
    let mut program = lang_file::LangFile::new(path, &host);
    let watch = program.watch(fs).await;
    let mut shown: Option<Shown> = None;
    let first = program.load();
    show_version(first, &host, args.format, &mut shown)?;
    let mut source = program.follow(watch);
    while let Some(version) = source.next().await {
        show_version(version, &host, args.format, &mut shown)?;
    }
    Ok(0)
}

/// What was printed last: each vertex's id with its params, and each edge.
struct Shown {
    vertices: std::collections::BTreeMap<String, String>,
    edges: std::collections::BTreeSet<String>,
}

impl Shown {
    fn of(view: &View) -> Shown {
        let vertices = view
            .vertices
            .iter()
            .map(|(id, i)| (id.to_string(), view.graph.vertices[*i].to_json().to_string()));
        let edges = view.edges.iter().map(|(from, to, _)| format!("{from} -> {to}"));
        Shown { vertices: vertices.collect(), edges: edges.collect() }
    }

    /// What changed from `self` to `new`: `+ line`, `- line`, and `~ kind[name]` for a
    /// vertex whose params changed.
    fn diff(&self, new: &Shown) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (id, params) in &new.vertices {
            match self.vertices.get(id) {
                None => writeln!(out, "+ {id}"),
                Some(old) if old != params => writeln!(out, "~ {id}"),
                Some(_) => Ok(()),
            }
            .ok();
        }
        for id in self.vertices.keys().filter(|id| !new.vertices.contains_key(*id)) {
            writeln!(out, "- {id}").ok();
        }
        for edge in new.edges.difference(&self.edges) {
            writeln!(out, "+ {edge}").ok();
        }
        for edge in self.edges.difference(&new.edges) {
            writeln!(out, "- {edge}").ok();
        }
        out
    }
}

fn show_version(
    version: Result<crate::frontend::source::SpecVersion, crate::frontend::source::SpecError>,
    host: &str,
    format: Format,
    shown: &mut Option<Shown>,
) -> Result<()> {
    let spec = match version {
        Ok(v) => v.spec,
        Err(crate::frontend::source::SpecError::Program(e)) => {
            eprint!("{}", e.rendered);
            eprintln!("mgmt: {e}");
            return Ok(());
        }
        Err(e) => {
            eprintln!("mgmt: {e}");
            return Ok(());
        }
    };
    let graph = match assemble(&spec, host, &[]) {
        Ok(assembled) => assembled.graph,
        Err(e) => {
            eprintln!("mgmt: {e}");
            return Ok(());
        }
    };
    let view = View::of(&graph);
    let now = Shown::of(&view);
    let out = match (format, shown.as_ref()) {
        (Format::Text, Some(before)) if !before.vertices.is_empty() => {
            format!("--- changed\n{}", before.diff(&now))
        }
        _ => render(&spec.name, &graph, format)?,
    };
    *shown = Some(now);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).context("writing the graph")?;
    Ok(())
}

/// The graph file's name and its graph, assembled as `run` assembles it, with the same
/// errors (`FILE:LINE:COL: ...`, `FILE: the graph has a cycle: ...`).
fn yaml_graph(arg: &std::path::Path) -> Result<(String, Graph)> {
    let file = yaml_file::graph_arg(arg)?;
    let mut yaml = YamlFile::new(&file)?;
    let spec = yaml.load()?.spec;
    // The host only names exports, which are not shown.
    let host = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    let assembled = assemble(&spec, &host, &[]).map_err(|e| anyhow::anyhow!("{}: {e}", yaml.name()))?;
    Ok((spec.name, assembled.graph))
}

/// The program's name and its graph, compiled for this host and assembled as `run` does.
/// A program with errors prints them, each with its excerpt, on stderr.
fn lang_graph(path: &std::path::Path) -> Result<(String, Graph)> {
    let host = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    let spec = lang_file::compile_at(path, &host, 0)
        .map_err(|f| program_failed(&f.error, &path.display().to_string(), "nothing to show"))?
        .spec;
    let assembled = assemble(&spec, &host, &[]).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((spec.name, assembled.graph))
}

/// A program's errors on stderr, and the error that ends the command: the program `name`
/// has them, and what that means (`outcome`).
pub fn program_failed(e: &crate::frontend::source::ProgramError, name: &str, outcome: &str) -> anyhow::Error {
    eprint!("{}", e.rendered);
    let errors = crate::text::count(e.count, "error");
    anyhow::anyhow!("{name}: {errors}; {outcome}")
}

/// The graph printed in `format`; `name` is the graph's (for `dot`).
pub fn render(name: &str, graph: &Graph, format: Format) -> Result<String> {
    let view = View::of(graph);
    Ok(match format {
        Format::Text => view.text(),
        Format::Json => serde_json::to_string_pretty(&view.json())? + "\n",
        Format::Dot => view.dot(name),
    })
}

/// A graph's vertices and edges in print order: vertices by kind then name; edges by their
/// ends, one per pair of ends (notify if any edge between them notifies).
struct View<'g> {
    graph: &'g Graph,
    /// Each vertex's id and its index in the graph: params are rendered only for `json`.
    vertices: Vec<(ResId, usize)>,
    edges: Vec<(ResId, ResId, bool)>,
}

#[derive(Serialize)]
struct JsonGraph {
    vertices: Vec<JsonVertex>,
    edges: Vec<JsonEdge>,
}

#[derive(Serialize)]
struct JsonVertex {
    kind: String,
    name: String,
    params: serde_json::Value,
    /// The resources autogrouped into this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    grouped: Vec<String>,
}

#[derive(Serialize)]
struct JsonEdge {
    from: String,
    to: String,
    notify: bool,
}

impl<'g> View<'g> {
    fn of(graph: &'g Graph) -> View<'g> {
        let mut vertices: Vec<_> = graph.vertices.iter().enumerate().map(|(i, v)| (v.id(), i)).collect();
        vertices.sort_by(|a, b| a.0.cmp(&b.0));
        let mut edges: std::collections::BTreeMap<(ResId, ResId), bool> = Default::default();
        for e in &graph.edges {
            let ends = (graph.vertices[e.from].id(), graph.vertices[e.to].id());
            *edges.entry(ends).or_default() |= e.notify;
        }
        let edges = edges.into_iter().map(|((from, to), notify)| (from, to, notify)).collect();
        View { graph, vertices, edges }
    }

    /// The ids of the resources autogrouped into vertex `index`.
    fn grouped(&self, index: usize) -> Vec<String> {
        self.graph.vertices[index].grouped().iter().map(ToString::to_string).collect()
    }

    fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (id, index) in &self.vertices {
            match self.grouped(*index) {
                members if members.is_empty() => writeln!(out, "{id}"),
                members => writeln!(out, "{id} (grouped: {})", members.join(", ")),
            }
            .ok();
        }
        for (from, to, _) in &self.edges {
            let _ = writeln!(out, "{from} -> {to}");
        }
        out
    }

    fn json(&self) -> JsonGraph {
        let vertices = self.vertices.iter().map(|(id, index)| JsonVertex {
            kind: id.kind.clone(),
            name: id.name.clone(),
            params: self.graph.vertices[*index].to_json(),
            grouped: self.grouped(*index),
        });
        let edges = self.edges.iter().map(|(from, to, notify)| JsonEdge {
            from: from.to_string(),
            to: to.to_string(),
            notify: *notify,
        });
        JsonGraph { vertices: vertices.collect(), edges: edges.collect() }
    }

    /// A Graphviz digraph; edges that notify are bold.
    fn dot(&self, name: &str) -> String {
        let mut out = format!("digraph {} {{\n", dot_quoted(name));
        for (id, index) in &self.vertices {
            let members = self.grouped(*index);
            let label = match members.is_empty() {
                true => String::new(),
                false => format!(" [label={}]", dot_quoted(&format!("{id}\n+ {}", members.join("\n+ ")))),
            };
            out.push_str(&format!("  {}{label};\n", dot_quoted(&id.to_string())));
        }
        for (from, to, notify) in &self.edges {
            let style = if *notify { " [style=bold]" } else { "" };
            let (from, to) = (dot_quoted(&from.to_string()), dot_quoted(&to.to_string()));
            out.push_str(&format!("  {from} -> {to}{style};\n"));
        }
        out.push_str("}\n");
        out
    }
}

/// A Graphviz double-quoted string: `"` and `\` escaped, line breaks as `\n`.
fn dot_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::yaml;

    /// An explicit edge, a notify edge, and an autoedge (a file inside a managed directory).
    const GRAPH: &str = r#"
graph: g
resources:
  file:
  - name: f
    path: /srv/d/f
    content: "x\n"
  - name: d
    path: /srv/d/
  exec:
  - name: b
    cmd: "true"
  - name: a
    cmd: "true"
  noop:
  - name: z
edges:
- name: e1
  from: {kind: exec, name: a}
  to: {kind: exec, name: b}
- name: e2
  from: {kind: file, name: f}
  to: {kind: exec, name: a}
  notify: true
"#;

    fn graph(text: &str) -> Graph {
        let spec = yaml::parse(text, "g.yaml").unwrap();
        assemble(&spec, "h", &[]).unwrap().graph
    }

    fn shown(text: &str, format: Format) -> String {
        render("g", &graph(text), format).unwrap()
    }

    #[test]
    fn text_lists_sorted_vertices_then_sorted_edges() {
        assert_eq!(
            shown(GRAPH, Format::Text),
            "exec[a]\nexec[b]\nfile[d]\nfile[f]\nnoop[z]\n\
             exec[a] -> exec[b]\nfile[d] -> file[f]\nfile[f] -> exec[a]\n"
        );
    }

    #[test]
    fn json_has_params_and_notify_in_the_same_order() {
        let v: serde_json::Value = serde_json::from_str(&shown(GRAPH, Format::Json)).unwrap();
        let names: Vec<_> = v["vertices"].as_array().unwrap().iter().map(|v| v["name"].clone()).collect();
        assert_eq!(names, ["a", "b", "d", "f", "z"]);
        assert_eq!(v["vertices"][3]["kind"], "file");
        assert_eq!(v["vertices"][3]["params"]["path"], "/srv/d/f");
        assert_eq!(v["vertices"][3]["params"]["content"], "x\n");
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
    fn dot_quotes_every_name_and_makes_notify_edges_bold() {
        assert_eq!(
            shown(GRAPH, Format::Dot),
            "digraph \"g\" {\n  \"exec[a]\";\n  \"exec[b]\";\n  \"file[d]\";\n  \"file[f]\";\n  \"noop[z]\";\n  \
             \"exec[a]\" -> \"exec[b]\";\n  \"file[d]\" -> \"file[f]\";\n  \
             \"file[f]\" -> \"exec[a]\" [style=bold];\n}\n"
        );
    }

    #[test]
    fn dot_escapes_quotes_backslashes_and_line_breaks() {
        assert_eq!(dot_quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(dot_quoted("x\ny"), r#""x\ny""#);
        let g = "graph: 'my \"g\"'\nresources:\n  noop:\n  - name: 'say \"hi\"'\n";
        let spec = yaml::parse(g, "g.yaml").unwrap();
        let out = render(&spec.name, &assemble(&spec, "h", &[]).unwrap().graph, Format::Dot).unwrap();
        assert_eq!(out, "digraph \"my \\\"g\\\"\" {\n  \"noop[say \\\"hi\\\"]\";\n}\n");
    }

    #[test]
    fn edges_between_the_same_ends_print_once_and_notify_if_any_does() {
        let text = "graph: g\nresources:\n  noop:\n  - name: a\n  - name: b\nedges:\n\
                    - {name: e1, from: {kind: noop, name: a}, to: {kind: noop, name: b}}\n\
                    - {name: e2, from: {kind: noop, name: a}, to: {kind: noop, name: b}, notify: true}\n";
        assert_eq!(shown(text, Format::Text), "noop[a]\nnoop[b]\nnoop[a] -> noop[b]\n");
        assert!(shown(text, Format::Dot).contains("\"noop[a]\" -> \"noop[b]\" [style=bold];\n"));
    }

    #[test]
    fn an_empty_graph_prints_empty_lists() {
        let text = "graph: g\n";
        assert_eq!(shown(text, Format::Text), "");
        let v: serde_json::Value = serde_json::from_str(&shown(text, Format::Json)).unwrap();
        assert_eq!(v, serde_json::json!({"vertices": [], "edges": []}));
        assert_eq!(shown(text, Format::Dot), "digraph \"g\" {\n}\n");
    }
    #[test]
    fn grouped_pkgs_print_as_one_vertex_naming_its_members() {
        let text = "graph: g\nresources:\n  pkg:\n  - name: aa\n  - name: bb\n  - name: cc\n    meta:\n      autogroup: false\n";
        assert_eq!(shown(text, Format::Text), "pkg[aa] (grouped: pkg[bb])\npkg[cc]\n");
        let v: serde_json::Value = serde_json::from_str(&shown(text, Format::Json)).unwrap();
        assert_eq!(v["vertices"][0]["grouped"], serde_json::json!(["pkg[bb]"]));
        assert!(v["vertices"][1].get("grouped").is_none());
        assert!(shown(text, Format::Dot).contains("  \"pkg[aa]\" [label=\"pkg[aa]\\n+ pkg[bb]\"];\n"));
    }
}
