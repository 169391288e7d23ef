//! The source keeps its layers: each top-level module of `src/` imports only modules of the
//! layers below it, and no two files import each other, directly or around a circle. Read
//! from the source text, so a new import that breaks a layer fails here, naming the line.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first (ARCHITECTURE.md draws them).
const LAYERS: &[&str] =
    &["contract", "text", "os", "world", "resources", "frontend", "engine", "deploy", "agent", "cli"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path: `src/engine/vertex.rs` -> `engine::vertex`, `src/os/mod.rs` -> `os`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments and its unit tests (whose `super::` is the file
/// itself).
fn code_of(text: &str) -> String {
    let body = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    body.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every path written with `crate::` (or `$crate::`) or `super::` in `code`, as the module
/// segments it starts with, with the line it is on.
fn paths_in(code: &str, module: &[String]) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        for (start, base) in
            [("crate::", Vec::new()), ("super::", module[..module.len().saturating_sub(1)].to_vec())]
        {
            let mut rest = line;
            while let Some(i) = rest.find(start) {
                let before = &rest[..i];
                rest = &rest[i + start.len()..];
                if start == "super::" && before.ends_with("::") {
                    continue;
                }
                let mut base = base.clone();
                // `super::super::x` is the grandparent's `x`.
                while start == "super::" && rest.starts_with("super::") {
                    rest = &rest["super::".len()..];
                    base.pop();
                }
                let mut segs = base;
                for seg in rest.split("::") {
                    let ident: String =
                        seg.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if ident.is_empty() || ident.len() != seg.len() {
                        if !ident.is_empty() && !seg[ident.len()..].starts_with('!') {
                            segs.push(ident);
                        }
                        break;
                    }
                    segs.push(ident);
                }
                // `{a, b}` groups: each name is a module or an item of the module before it.
                if let Some(group) = rest
                    .find('{')
                    .filter(|g| rest[..*g].chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                {
                    let inner: String = rest[group + 1..].chars().take_while(|c| *c != '}').collect();
                    for name in inner.split(',') {
                        let name = name.trim().split("::").next().unwrap_or("").trim();
                        if !name.is_empty() && name != "self" {
                            let mut s = segs.clone();
                            s.push(name.to_string());
                            out.push((s, n + 1));
                        }
                    }
                }
                out.push((segs, n + 1));
            }
        }
    }
    out
}

struct Tree {
    /// Module path -> file.
    files: BTreeMap<Vec<String>, PathBuf>,
}

impl Tree {
    fn read() -> Tree {
        let mut all = Vec::new();
        rust_files(&src(), &mut all);
        Tree { files: all.into_iter().map(|f| (module_of(&f), f)).collect() }
    }
    /// The file a path lands in: its longest prefix that is a module with a file.
    fn file_of(&self, segs: &[String]) -> Option<&Vec<String>> {
        (1..=segs.len()).rev().find_map(|k| self.files.get_key_value(&segs[..k]).map(|(m, _)| m))
    }
}

fn layer(module: &[String]) -> Option<usize> {
    LAYERS.iter().position(|l| module.first().is_some_and(|m| m == l))
}

#[test]
fn every_top_level_module_has_a_layer() {
    let tree = Tree::read();
    let tops: BTreeSet<&String> = tree.files.keys().filter_map(|m| m.first()).collect();
    for top in tops {
        assert!(
            LAYERS.contains(&top.as_str()),
            "src/{top} is in no layer: add it to LAYERS and ARCHITECTURE.md"
        );
    }
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let tree = Tree::read();
    let mut wrong = Vec::new();
    for (module, file) in &tree.files {
        let Some(own) = layer(module) else { continue };
        let text = fs::read_to_string(file).unwrap();
        for (path, line) in paths_in(&text, module) {
            let Some(theirs) = layer(&path) else { continue };
            if theirs > own {
                wrong.push(format!(
                    "{}:{line}: {} imports {}",
                    file.display(),
                    module.join("::"),
                    path.join("::")
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that go up a layer:\n{}", wrong.join("\n"));
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let tree = Tree::read();
    let mut edges: BTreeMap<&Vec<String>, BTreeSet<&Vec<String>>> = BTreeMap::new();
    for (module, file) in &tree.files {
        let code = code_of(&fs::read_to_string(file).unwrap());
        for (path, _) in paths_in(&code, module) {
            if let Some(target) = tree.file_of(&path).filter(|t| *t != module && !module.starts_with(t)) {
                edges.entry(module).or_default().insert(target);
            }
        }
    }
    // Depth-first search for a circle.
    fn visit<'a>(
        m: &'a Vec<String>,
        edges: &BTreeMap<&'a Vec<String>, BTreeSet<&'a Vec<String>>>,
        stack: &mut Vec<&'a Vec<String>>,
        done: &mut BTreeSet<&'a Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| *s == m) {
            return Some(stack[i..].iter().chain([&m]).map(|s| s.join("::")).collect());
        }
        if !done.insert(m) {
            return None;
        }
        stack.push(m);
        for next in edges.get(m).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, stack, done) {
                return Some(circle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in tree.files.keys() {
        if let Some(circle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("a circle of imports: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_reader_sees_imports_and_their_layers() {
    let module = vec!["engine".to_string(), "vertex".to_string()];
    let code = "use crate::contract::ResId;\nuse super::rate::RateLimiter;\nuse crate::resources::{ApplyCtx, file::File};\nfn f() { crate::with_kinds!(x); }\n";
    let paths: Vec<String> = paths_in(code, &module).into_iter().map(|(p, _)| p.join("::")).collect();
    for want in [
        "contract::ResId",
        "engine::rate::RateLimiter",
        "resources::ApplyCtx",
        "resources::file",
        "resources",
    ] {
        assert!(paths.contains(&want.to_string()), "{want} in {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.starts_with("with_kinds")), "{paths:?}");
    assert_eq!(layer(&["cli".to_string()]), Some(LAYERS.len() - 1));
    // `super::super::x` is the grandparent's `x`, never the parent's.
    let deep: Vec<String> = ["frontend", "lang", "funcs", "args"].map(String::from).to_vec();
    let paths: Vec<String> =
        paths_in("use super::super::value::{Val};\n", &deep).into_iter().map(|(p, _)| p.join("::")).collect();
    assert_eq!(paths, ["frontend::lang::value::Val", "frontend::lang::value"]);
}

#[test]
fn anyhow_is_used_only_at_the_edge() {
    let tree = Tree::read();
    let mut below = Vec::new();
    for (module, file) in &tree.files {
        if module.first().is_none_or(|m| m == "cli") {
            continue;
        }
        let text = fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains("anyhow") && !line.trim_start().starts_with("//") {
                below.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(below.is_empty(), "anyhow below src/cli (errors are typed there):\n{}", below.join("\n"));
}
