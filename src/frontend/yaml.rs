//! The YAML graph frontend (upstream's format: `graph`, `resources`, `edges`, `collect`).
//!
//! Parsing is strict: unknown keys, unknown kinds and wrong types are errors with
//! file:line:column. Semantic checks (each kind's `validate`, duplicate names, edges to
//! missing resources) are located by a second, lazy pass that only runs when there is an
//! error to report, so a valid graph is parsed once.
#![allow(clippy::result_large_err)] // errors are the cold path; flat ones keep the code plain

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::base::{Base, Want};
use super::{CollectSpec, EdgeSpec, FrontendError, GraphSpec, check};
use crate::contract::Meta;
use crate::contract::ResId;
use crate::contract::limits::MAX_INTERVAL_SECS;
use crate::resources::{self, Resource};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlGraph {
    graph: String,
    #[serde(default)]
    #[allow(dead_code)]
    comment: Option<String>,
    #[serde(default)]
    resources: Option<YamlResources>,
    #[serde(default)]
    edges: Option<Vec<Spanned<YamlEdge>>>,
    #[serde(default)]
    collect: Option<Vec<Spanned<YamlCollect>>>,
    /// Upstream's remote execution over SSH: refused with the reason.
    #[serde(default)]
    remote: Option<Spanned<serde_json::Value>>,
}

/// One list per kind, from the kind registry ([`crate::with_kinds`]).
macro_rules! yaml_kinds {
    ($($kind:ident $(= $name:literal)? => $module:ident :: $ty:ident),* $(,)?) => {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct YamlResources {
            $(#[serde(default $(, rename = $name)?)] $kind: Option<Vec<Spanned<resources::$module::$ty>>>,)*
        }

        impl YamlResources {
            /// (kind, index within kind, location, resource) in document order per kind.
            fn into_list(self) -> Vec<(&'static str, usize, (u64, u64), Box<dyn Resource>)> {
                let mut out = Vec::new();
                $(
                    for (i, r) in self.$kind.unwrap_or_default().into_iter().enumerate() {
                        let loc = (r.referenced.line(), r.referenced.column());
                        out.push((crate::kind_name!($kind $(= $name)?), i, loc, Box::new(r.value) as Box<dyn Resource>));
                    }
                )*
                out
            }
        }
    };
}

crate::with_kinds!(yaml_kinds);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlEdge {
    #[serde(default)]
    name: String,
    from: YamlRef,
    to: YamlRef,
    #[serde(default)]
    notify: bool,
    #[serde(default)]
    send: Option<String>,
    #[serde(default)]
    recv: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlRef {
    kind: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlCollect {
    kind: String,
    #[serde(default)]
    pattern: Option<Spanned<String>>,
}

/// Strip the export marker: `@@name` is exported and also applied locally as `name`.
fn split_export(name: &str) -> (&str, bool) {
    match name.strip_prefix("@@") {
        Some(n) => (n, true),
        None => (name, false),
    }
}

/// The text of a graph file, or an error locating its first byte that is not UTF-8.
pub fn text_of<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str, FrontendError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        // The prefix is valid UTF-8, so its characters can be counted.
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() as u64 + 1;
        FrontendError {
            file: file.to_string(),
            line: good.iter().filter(|b| **b == b'\n').count() as u64 + 1,
            column,
            resource: None,
            field: None,
            message: format!(
                "invalid UTF-8 (byte 0x{:02x}); a graph file is UTF-8 text",
                bytes[e.valid_up_to()]
            ),
        }
    })
}

/// Parse and validate a YAML graph. `file` is only used in error messages. Relative paths
/// are refused: see [`parse_at`].
pub fn parse(text: &str, file: &str) -> Result<GraphSpec, FrontendError> {
    parse_at(text, file, None)
}

/// [`parse`], with the relative paths that name files of the graph's own tree (a file's
/// `source`, an exec's `cwd` and per-command cwds) resolved against `base`.
pub fn parse_at(text: &str, file: &str, base: Option<&Base>) -> Result<GraphSpec, FrontendError> {
    let err_at = |line: u64, column: u64, message: String| FrontendError {
        file: file.to_string(),
        line,
        column,
        resource: None,
        field: None,
        message,
    };
    if is_blank(text) {
        return Err(err_at(0, 0, "the graph file is empty; a graph needs at least `graph: NAME`".into()));
    }
    let strict = serde_saphyr::options! {
        reject_unsupported_tags: true,
        reject_tagged_field_names: true,
    };
    let doc: YamlGraph = match serde_saphyr::from_str_with_options(text, strict) {
        Ok(d) => d,
        Err(e) => {
            let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            let mut fe = err_at(line, column, plain_message(&e));
            // Past a parser limit the location tree would reach the same limit: name the
            // resource from the text, where a resource is what went wrong.
            let located = match innermost(&e) {
                serde_saphyr::Error::Budget { breach, .. } if !is_about_size(breach) => {
                    resource_by_text(text, line).map(|id| (id, None))
                }
                serde_saphyr::Error::Budget { .. } => None,
                _ => match loc_tree(text) {
                    Some(root) => locate_resource_at(&root, text, line, column),
                    None => resource_by_text(text, line).map(|id| (id, None)),
                },
            };
            if let Some((id, field)) = located {
                if let Some(f) = &field {
                    fe.message = with_accepted_values(&fe.message, &id.kind, f);
                }
                fe.resource = Some(id);
                fe.field = field;
            }
            return Err(fe);
        }
    };
    if doc.graph.trim().is_empty() {
        return Err(err_at(1, 1, "`graph` must name the graph".into()));
    }
    if let Some(remote) = &doc.remote {
        let message = "`remote` (upstream's agent copied to other hosts over SSH) is not supported: run an agent on each host, in one cluster";
        return Err(err_at(remote.referenced.line(), remote.referenced.column(), message.into()));
    }

    let mut resources = doc.resources.unwrap_or_default();
    if let Some(base) = base {
        resolve_relative(&mut resources, base, text, file)?;
    }
    let (spec, places) = build_spec(doc.graph, resources, doc.edges, doc.collect);
    let half_edge = places.half_edge;
    check::check(&spec).map_err(|e| places.locate(e, text, file))?;
    match half_edge {
        Some((index, line, column)) => {
            let label = check::edge_label(index, &spec.edges[index]);
            Err(err_at(line, column, format!("{label}: `send` and `recv` go together")))
        }
        None => Ok(spec),
    }
}

/// A line and column in the text, 1-based.
type Loc = (u64, u64);

/// Where each part of a [`GraphSpec`] came from in the text, to locate what `check` finds.
#[derive(Default)]
struct Places {
    /// Per resource: kind, index within its kind's list, location, name as written.
    resources: Vec<(&'static str, usize, Loc, String)>,
    edges: Vec<Loc>,
    /// Per collect entry: its location and its pattern's.
    collect: Vec<(Loc, Option<Loc>)>,
    /// The first edge with `send` or `recv` but not both: `(index, line, column)`. The spec
    /// then stops at that edge (kept without send/recv) and has no collect entries, so that
    /// `check` reports what comes before it in the file first.
    half_edge: Option<(usize, u64, u64)>,
}

impl Places {
    fn locate(&self, e: check::SpecError, text: &str, file: &str) -> FrontendError {
        let at = |(line, column): (u64, u64), resource, field: Option<&str>| FrontendError {
            file: file.to_string(),
            line,
            column,
            resource,
            field: field.map(str::to_string),
            message: e.message.clone(),
        };
        match e.place {
            check::Place::Resource { index, field } => {
                let (kind, i, loc, written) = &self.resources[index];
                let loc = field.and_then(|f| field_location(text, kind, *i, f)).unwrap_or(*loc);
                at(loc, Some(ResId::new(*kind, written.as_str())), field)
            }
            check::Place::Edge(index) => at(self.edges[index], None, None),
            check::Place::Collect { index, pattern } => {
                let (loc, pattern_loc) = self.collect[index];
                at(if pattern { pattern_loc.unwrap_or(loc) } else { loc }, None, None)
            }
            check::Place::Graph => at((0, 0), None, None),
        }
    }
}

/// The spec as written: `@@` names exported, edge ends named without it.
fn build_spec(
    name: String,
    resources: YamlResources,
    edges: Option<Vec<Spanned<YamlEdge>>>,
    collect: Option<Vec<Spanned<YamlCollect>>>,
) -> (GraphSpec, Places) {
    let mut spec = GraphSpec { name, ..GraphSpec::default() };
    let mut places = Places::default();
    for (kind, index, loc, mut res) in resources.into_list() {
        let written = res.name().to_string();
        let (plain, exported) = split_export(&written);
        if exported {
            res.set_name(plain.to_string());
            spec.exports.insert(res.id());
        }
        places.resources.push((kind, index, loc, written));
        spec.resources.push_back(res.into());
    }
    let end = |r: YamlRef| ResId::new(r.kind, split_export(&r.name).0);
    for (index, e) in edges.unwrap_or_default().into_iter().enumerate() {
        let loc = (e.referenced.line(), e.referenced.column());
        let edge = e.value;
        let send_recv = match (edge.send, edge.recv) {
            (Some(s), Some(r)) => Some((s, r)),
            (None, None) => None,
            _ => {
                places.half_edge = Some((index, loc.0, loc.1));
                None
            }
        };
        places.edges.push(loc);
        spec.edges.push(EdgeSpec {
            name: edge.name,
            from: end(edge.from),
            to: end(edge.to),
            notify: edge.notify,
            send_recv,
        });
        if places.half_edge.is_some() {
            return (spec, places);
        }
    }
    for c in collect.unwrap_or_default() {
        let loc = (c.referenced.line(), c.referenced.column());
        let pattern_loc = c.value.pattern.as_ref().map(|p| (p.referenced.line(), p.referenced.column()));
        places.collect.push((loc, pattern_loc));
        spec.collect.push(CollectSpec {
            kind: c.value.kind,
            // Upstream writes `pattern: ''` for no pattern.
            pattern: c.value.pattern.map(|p| p.value).filter(|p| !p.is_empty()),
            ..Default::default()
        });
    }
    (spec, places)
}

/// Turn the relative paths that name files of the graph's tree into absolute ones below
/// `base`; absolute ones are left to each kind's `validate`.
fn resolve_relative(r: &mut YamlResources, base: &Base, text: &str, file: &str) -> Result<(), FrontendError> {
    let err = |kind: &str, index: usize, name: &str, field: &str, message: String| {
        let (line, column) = field_location(text, kind, index, field).unwrap_or((0, 0));
        FrontendError {
            file: file.to_string(),
            line,
            column,
            resource: Some(ResId::new(kind, split_export(name).0)),
            field: Some(field.to_string()),
            message,
        }
    };
    let relative = |p: Option<&str>| p.filter(|p| !p.starts_with('/')).map(str::to_string);
    for (i, f) in r.file.iter_mut().flatten().enumerate() {
        let f = &mut f.value;
        // A symlink's `source` is the link's text, kept as written.
        if let Some(rel) = relative(f.source.as_deref()).filter(|_| !f.symlink) {
            let want = if f.is_dir() { Want::Dir } else { Want::File };
            let abs = base.resolve(&rel, want).map_err(|m| err("file", i, &f.name, "source", m))?;
            f.source = Some(abs.into());
        }
    }
    for (i, x) in r.exec.iter_mut().flatten().enumerate() {
        let x = &mut x.value;
        let name = x.name.clone();
        for (field, cwd) in [
            ("cwd", &mut x.cwd),
            ("watchcwd", &mut x.watchcwd),
            ("ifcwd", &mut x.ifcwd),
            ("nifcwd", &mut x.nifcwd),
            ("donecwd", &mut x.donecwd),
        ] {
            if let Some(rel) = relative(cwd.as_deref()) {
                let abs = base.resolve(&rel, Want::Dir).map_err(|m| err("exec", i, &name, field, m))?;
                *cwd = Some(abs);
            }
        }
    }
    Ok(())
}

/// No YAML content at all: only blank lines, comments and document markers.
fn is_blank(text: &str) -> bool {
    text.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
}

/// The error itself, without the wrappers that carry snippets and alias locations.
fn innermost(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::AliasError { error, .. } | serde_saphyr::Error::WithSnippet { error, .. } =
        e
    {
        e = error;
    }
    e
}

/// Whether a limit is about the whole graph's size (no one resource is to blame).
fn is_about_size(breach: &serde_saphyr::budget::BudgetBreach) -> bool {
    use serde_saphyr::budget::BudgetBreach as B;
    matches!(breach, B::Nodes { .. } | B::Events { .. } | B::ScalarBytes { .. } | B::Documents { .. })
}

/// A parser limit that was reached, in plain words with the limit.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let b = serde_saphyr::Budget::default();
    match breach {
        B::Nodes { .. } => format!(
            "the graph is too big: it has more than {} YAML nodes (every key, value, list and mapping counts); split it into smaller graphs",
            b.max_nodes
        ),
        B::Events { .. } => {
            format!(
                "the graph is too big: more than {} YAML parser events; split it into smaller graphs",
                b.max_events
            )
        }
        B::Depth { .. } => format!("nested more than {} levels deep", b.max_depth),
        B::ScalarBytes { .. } => {
            format!("the graph is too big: more than {} MiB of text values", b.max_total_scalar_bytes >> 20)
        }
        B::Documents { .. } => format!("more than {} YAML documents", b.max_documents),
        B::Aliases { .. } => format!("more than {} aliases (`*name`)", b.max_aliases),
        B::Anchors { .. } => format!("more than {} anchors (`&name`)", b.max_anchors),
        B::AliasAnchorRatio { .. } | B::RecordedAnchorEvents { .. } | B::RecordedAnchorBytes { .. } => {
            "aliases (`*name`) expand to too much: the document grows far beyond its text".into()
        }
        _ => "the graph exceeds a YAML parser limit".into(),
    }
}

/// serde-saphyr's message without its own location suffix and snippet, and without words
/// meant for Rust programmers.
fn plain_message(e: &serde_saphyr::Error) -> String {
    if let serde_saphyr::Error::Budget { breach, .. } = innermost(e) {
        return budget_message(breach);
    }
    let mut opts = serde_saphyr::RenderOptions::default();
    opts.snippets = serde_saphyr::SnippetMode::Off;
    let s = e.render_with_options(opts);
    let first = s.lines().next().unwrap_or("").trim();
    // Drop a trailing " at line X column Y": we print the location in front.
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // The library's advice to its own callers means nothing to someone editing a graph.
    if let Some(key) = first.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        return format!("duplicate key `{key}`");
    }
    if first.starts_with("multiple YAML documents detected") {
        return "a graph file holds one YAML document; this one has more (`---`)".into();
    }
    if first.starts_with("cannot deserialize null into string")
        || first.starts_with("invalid char: cannot deserialize null")
    {
        return "expected a text value, found null (`~` or nothing); quote it (`\"~\"`) if it is meant as text".into();
    }
    if let Some(tag) = first.strip_prefix("unsupported tag ") {
        return format!("unknown YAML tag {tag}; tags are not used in graph files");
    }
    if let Some(rest) = first.strip_prefix("tag ")
        && let Some(tag) = rest.strip_suffix(" on a struct field name is not allowed by configured policy")
    {
        return format!("unknown YAML tag {tag} on a key; tags are not used in graph files");
    }
    if let Some(kind) = unknown_kind(first) {
        return resources::upstream::explain_unknown_kind(plain_types(first), kind);
    }
    if first == "cannot deserialize tagged scalar into string" {
        return "a tagged value (`!!int`, `!name`, ...) where text is expected; tags are not used in graph files"
            .into();
    }
    plain_types(first)
}

/// The key of an ``unknown field `KEY`, expected one of`` error about `resources`' keys,
/// whose expected names are the kinds.
fn unknown_kind(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, expected) = rest.split_once("`, expected one of ")?;
    (expected == resources::KINDS.join(", ")).then_some(key)
}

/// Rust's number types in words; a narrower range goes before a wider one it starts with.
const TYPE_WORDS: [(&str, &str); 10] = [
    ("u8", "a whole number from 0 to 255"),
    ("u16", "a whole number from 0 to 65535"),
    ("u32", "a whole number from 0 to 4294967295"),
    ("u64", "a whole number of 0 or more"),
    ("usize", "a whole number of 0 or more"),
    ("i32", "a whole number"),
    ("i16", "a whole number"),
    ("i64", "a whole number"),
    ("f32", "a number"),
    ("f64", "a number"),
];

/// `expected u64` and the like, in words.
fn plain_types(message: &str) -> String {
    let mut out = message.replace("expected string scalar", "expected a text value");
    for (rust, words) in TYPE_WORDS {
        for (from, to) in [
            (format!("expected {rust}"), format!("expected {words}")),
            (format!("into {rust}"), format!("into {words}")),
        ] {
            if let Some(i) = out.find(&from)
                && !out[i + from.len()..].starts_with(|c: char| c.is_alphanumeric())
            {
                out.replace_range(i..i + from.len(), &to);
            }
        }
        if out == format!("invalid {rust}") {
            out = format!("expected {words}");
        }
    }
    out
}

/// What a numeric field of `kind` accepts, in words, where that is narrower than its type.
fn accepted_values(kind: &str, field: &str) -> Option<String> {
    match (kind, field) {
        ("timer", "interval") | ("exec", "timeout") => {
            Some(format!("a whole number of seconds from 1 to {MAX_INTERVAL_SECS} (ten years)"))
        }
        _ => Meta::accepted_values(field),
    }
}

/// A type error about `field` with the values the field accepts instead of the range of the
/// type that holds it (`meta.burst` is a u32 but must be at least 1), or of a string where a
/// number is wanted (for a list or mapping in its place).
fn with_accepted_values(message: &str, kind: &str, field: &str) -> String {
    let Some(accepted) = accepted_values(kind, field) else { return message.to_string() };
    // The parser says "string" for any scalar it wanted where it found a list or mapping.
    let types = TYPE_WORDS.iter().map(|(_, w)| *w).chain(["a text value"]);
    for words in types {
        let from = format!("expected {words}");
        if let Some(i) = message.find(&from) {
            let mut out = message.to_string();
            out.replace_range(i..i + from.len(), &format!("expected {accepted}"));
            return out;
        }
    }
    message.to_string()
}

/// Which resource an error at `line` is in, from the text alone: the innermost list entry
/// (`- ...`) enclosing it whose list is a kind's in `resources`, named by its `name` in
/// block style (`- name: x`) or flow style (`- {name: x, ...}`). For errors the location
/// tree cannot be built for (a parser limit, deep nesting).
fn resource_by_text(text: &str, line: u64) -> Option<ResId> {
    let lines: Vec<&str> = text.lines().take(line as usize).collect();
    // The smallest indentation between a candidate entry and the error: the entry encloses
    // the error only if everything after its `- ` is indented deeper.
    let mut inner = usize::MAX;
    for (i, l) in lines.iter().enumerate().rev() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let dash = indent(l);
        if dash < inner && (t.starts_with("- ") || t == "-") {
            // An entry of some other list (`args`) is inside the resource: keep looking.
            if let Some(kind) = list_key(&lines[..i], dash).filter(|k| resources::KINDS.contains(k)) {
                let start = text.split_inclusive('\n').take(i).map(str::len).sum::<usize>() + dash + 1;
                let name = entry_name_by_text(text.get(start..)?, dash)?;
                return Some(ResId::new(kind, split_export(&name).0));
            }
        }
        inner = inner.min(dash);
        if dash == 0 {
            return None;
        }
    }
    None
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// The key (`exec`) of the list whose entry is a `- ` at indentation `dash` below `above`.
fn list_key<'a>(above: &[&'a str], dash: usize) -> Option<&'a str> {
    let parent = above.iter().rev().find(|l| {
        let t = l.trim();
        !(t.is_empty() || t.starts_with('#'))
            && (indent(l) < dash || (indent(l) == dash && !t.starts_with('-')))
    })?;
    without_comment(parent).trim().strip_suffix(':')
}

/// A line without its trailing comment (`# ...` after a blank).
fn without_comment(l: &str) -> &str {
    match l.match_indices('#').find(|(i, _)| *i > 0 && l[..*i].ends_with([' ', '\t'])) {
        Some((i, _)) => &l[..i],
        None => l,
    }
}

/// The `name` of the list entry whose text (after the `-`) starts `entry`, the `-` being at
/// indentation `dash`: a key of a flow mapping, or a block key at the entry's key column.
fn entry_name_by_text(entry: &str, dash: usize) -> Option<String> {
    let first = entry.lines().next()?;
    // Tags and anchors (`!t`, `&a`) before the mapping.
    let mut rest = first.trim_start();
    while rest.starts_with(['!', '&']) {
        rest = rest.split_once([' ', '\t']).map_or("", |(_, r)| r).trim_start();
    }
    if rest.starts_with('{') {
        return flow_name(&entry[first.len() - rest.len()..]);
    }
    let column = dash + 1 + (first.len() - rest.len());
    let keys = std::iter::once(rest).chain(
        entry
            .lines()
            .skip(1)
            .take_while(|l| l.trim().is_empty() || l.trim().starts_with('#') || indent(l) > dash)
            .filter(|l| indent(l) == column)
            .map(str::trim_start),
    );
    keys.filter_map(|k| k.strip_prefix("name:")).find_map(|v| scalar_text(v, false))
}

/// The `name` value of the flow mapping at the start of `s` (`{cmd: echo, name: a}`), which
/// may span lines.
fn flow_name(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 1;
    loop {
        i += skip_blanks(&s[i..]);
        let rest = &s[i..];
        let (key, len) = match *b.get(i)? {
            b'}' => return None,
            b'"' | b'\'' => {
                let end = quoted_end(rest)?;
                (scalar_text(&rest[..end], true)?, end)
            }
            _ => {
                let end = rest.find([':', ',', '}'])?;
                (rest[..end].trim().to_string(), end)
            }
        };
        i += len;
        i += skip_blanks(&s[i..]);
        if b.get(i) == Some(&b':') {
            i += 1;
            if key == "name" {
                return scalar_text(&s[i..], true);
            }
        }
        i += value_len(&s[i..])?;
    }
}

/// How far the value of a flow mapping entry reaches: past its `,`, or up to the `}` that
/// closes the mapping. Quotes, nested collections and comments are skipped whole.
fn value_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (mut i, mut depth, mut prev) = (0, 0usize, b':');
    while i < b.len() {
        let c = b[i];
        match c {
            // A quote starts a quoted scalar only where a token starts (`it's` is plain).
            b'"' | b'\'' if matches!(prev, b':' | b',' | b'[' | b'{') => {
                i += quoted_end(&s[i..])?;
                prev = c;
                continue;
            }
            b'#' if i > 0 && b[i - 1].is_ascii_whitespace() => {
                i += s[i..].find('\n').unwrap_or(s.len() - i);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return Some(i),
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => return Some(i + 1),
            _ => {}
        }
        if !c.is_ascii_whitespace() {
            prev = c;
        }
        i += 1;
    }
    None
}

/// Whitespace, line breaks and comments at the start of `s`.
fn skip_blanks(s: &str) -> usize {
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        if c == '#' {
            i += s[i..].find('\n').unwrap_or(s.len() - i);
        } else if c.is_whitespace() {
            i += c.len_utf8();
        } else {
            break;
        }
    }
    i
}

/// The length of the quoted scalar that starts `s` (with `"` or `'`), quotes included.
fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let q = *b.first()?;
    let mut i = 1;
    while i < b.len() {
        // An escape in double quotes (`\"`), a doubled quote in single ones (`''`).
        let escaped = if q == b'"' { b[i] == b'\\' } else { b[i] == q && b.get(i + 1) == Some(&q) };
        if escaped {
            i += 2;
        } else if b[i] == q {
            return Some(i + 1);
        } else {
            i += 1;
        }
    }
    None
}

/// The scalar at the start of `s` (after blanks): a quoted one, decoded, or a plain one up
/// to a comment or the end of the line and, in flow style, a `,`, `}` or `]`.
fn scalar_text(s: &str, flow: bool) -> Option<String> {
    let s = s.trim_start_matches([' ', '\t']);
    let value = match s.as_bytes().first()? {
        b'"' => serde_saphyr::from_str::<String>(&s[..quoted_end(s)?]).ok()?,
        b'\'' => s[1..quoted_end(s)? - 1].replace("''", "'"),
        b'#' => return None,
        _ => {
            let line = without_comment(s.lines().next()?);
            let end = if flow { line.find([',', '}', ']']).unwrap_or(line.len()) } else { line.len() };
            line[..end].trim_end().to_string()
        }
    };
    (!value.is_empty()).then_some(value)
}

/// Location tree of a document, parsed only when an error must be located.
#[derive(Default)]
struct LocMap(BTreeMap<String, Spanned<LocNode>>);

enum LocNode {
    Map(LocMap),
    Seq(Vec<Spanned<LocNode>>),
    /// A scalar; its value when it is a string (others are read from the text).
    Leaf(Option<String>),
}

impl<'de> Deserialize<'de> for LocNode {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LocNode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<LocNode, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = m.next_key::<KeyString>()? {
                    let v = m.next_value::<Spanned<LocNode>>()?;
                    out.insert(k.0, v);
                }
                Ok(LocNode::Map(LocMap(out)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<LocNode, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<Spanned<LocNode>>()? {
                    out.push(v);
                }
                Ok(LocNode::Seq(out))
            }
            fn visit_bool<E>(self, _: bool) -> Result<LocNode, E> {
                Ok(LocNode::Leaf(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<LocNode, E> {
                Ok(LocNode::Leaf(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<LocNode, E> {
                Ok(LocNode::Leaf(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<LocNode, E> {
                Ok(LocNode::Leaf(None))
            }
            fn visit_str<E>(self, v: &str) -> Result<LocNode, E> {
                Ok(LocNode::Leaf(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<LocNode, E> {
                Ok(LocNode::Leaf(None))
            }
            fn visit_none<E>(self) -> Result<LocNode, E> {
                Ok(LocNode::Leaf(None))
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<LocNode, D::Error> {
                LocNode::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}

/// Map keys of any scalar type, as text.
struct KeyString(String);
impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for LocMap {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match LocNode::deserialize(d)? {
            LocNode::Map(m) => Ok(m),
            _ => Ok(LocMap::default()),
        }
    }
}

fn loc_of(n: &Spanned<LocNode>) -> (u64, u64) {
    (n.referenced.line(), n.referenced.column())
}

/// The location tree of a document. Duplicate keys are allowed here: this pass only locates
/// an error the strict pass found (which may be that very duplicate).
fn loc_tree(text: &str) -> Option<LocMap> {
    // Non-finite floats (`.nan`) are kept so that a param holding one can be located.
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::LastWins,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    };
    serde_saphyr::from_str_with_options(text, options).ok()
}

/// Where `resources.<kind>[index].<field>` (field may be dotted: `meta.limit`) is.
fn field_location(text: &str, kind: &str, index: usize, field: &str) -> Option<(u64, u64)> {
    let root = loc_tree(text)?;
    let LocNode::Map(kinds) = &root.0.get("resources")?.value else { return None };
    let LocNode::Seq(entries) = &kinds.0.get(kind)?.value else { return None };
    let mut node = entries.get(index)?;
    for part in field.split('.') {
        match &node.value {
            LocNode::Map(m) => match m.0.get(part) {
                Some(n) => node = n,
                None => return Some(loc_of(node)),
            },
            _ => return Some(loc_of(node)),
        }
    }
    Some(loc_of(node))
}

/// Which resource entry, and which field of it if one starts exactly there, a parse error at
/// (line, column) falls in.
fn locate_resource_at(root: &LocMap, text: &str, line: u64, column: u64) -> Option<(ResId, Option<String>)> {
    if line == 0 {
        return None;
    }
    // Only inside `resources`: the top-level value that starts last before the error.
    let section = root.0.iter().filter(|(_, v)| loc_of(v) <= (line, column)).max_by_key(|(_, v)| loc_of(v));
    if section.is_none_or(|(k, _)| k != "resources") {
        return None;
    }
    let LocNode::Map(kinds) = &root.0.get("resources")?.value else { return None };
    let mut best: Option<((u64, u64), ResId, Option<String>)> = None;
    for (kind, node) in &kinds.0 {
        let LocNode::Seq(entries) = &node.value else { continue };
        for entry in entries {
            let at = loc_of(entry);
            if at <= (line, column) && column >= at.1 && best.as_ref().is_none_or(|(b, _, _)| at > *b) {
                let name = match &entry.value {
                    LocNode::Map(m) if m.0.contains_key("name") => entry_name(text, m.0.get("name")?),
                    _ => None,
                };
                let field = field_at(entry, (line, column)).map(|f| f.trim_start_matches('.').to_string());
                best = Some((at, ResId::new(kind.as_str(), name.unwrap_or_else(|| "?".into())), field));
            }
        }
    }
    // The error must also be inside the resources section (after its start).
    let start = loc_of(root.0.get("resources")?);
    best.filter(|(at, _, _)| *at >= start).map(|(_, id, field)| (id, field))
}

/// The dotted path (`meta.retry`, `args[1]`) of the deepest value that starts at `at` under
/// `node`.
fn field_at(node: &Spanned<LocNode>, at: (u64, u64)) -> Option<String> {
    let children: Vec<(String, &Spanned<LocNode>)> = match &node.value {
        LocNode::Map(m) => m.0.iter().map(|(k, v)| (format!(".{k}"), v)).collect(),
        LocNode::Seq(items) => items.iter().enumerate().map(|(i, v)| (format!("[{i}]"), v)).collect(),
        LocNode::Leaf(_) => return None,
    };
    children.into_iter().find_map(|(step, v)| match field_at(v, at) {
        Some(sub) => Some(format!("{step}{sub}")),
        None if loc_of(v) == at => Some(step),
        None => None,
    })
}

/// The value of a resource's `name` as the parser read it (for naming the resource in a
/// parse error): a string's value, or a number's or boolean's text as written, which is
/// what the name becomes (`name: 0x10` is `0x10`).
fn entry_name(text: &str, node: &Spanned<LocNode>) -> Option<String> {
    let name = match &node.value {
        LocNode::Leaf(Some(s)) => s.as_str(),
        LocNode::Leaf(None) => {
            let span = node.defined.span();
            let start = usize::try_from(span.byte_offset()?).ok()?;
            let len = usize::try_from(span.byte_len()?).ok()?;
            text.get(start..start.checked_add(len)?)?
        }
        _ => return None,
    };
    Some(split_export(name).0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_at_at_name_is_exported_under_its_plain_name() {
        let text = "graph: g\nresources:\n  file:\n  - name: \"@@/tmp/a\"\n  noop:\n  - name: b\nedges:\n- from: {kind: noop, name: b}\n  to: {kind: file, name: \"@@/tmp/a\"}\n";
        let spec = parse(text, "g.yaml").unwrap();
        let names: Vec<String> = spec.resources.iter().map(|r| r.id().to_string()).collect();
        assert_eq!(names, ["file[/tmp/a]", "noop[b]"]);
        assert_eq!(spec.exports.iter().map(ToString::to_string).collect::<Vec<_>>(), ["file[/tmp/a]"]);
        assert_eq!(spec.edges[0].to, ResId::new("file", "/tmp/a"));
    }

    #[test]
    fn an_empty_collect_pattern_is_no_pattern_as_upstream_writes_it() {
        let text = "graph: g\nresources:\n  noop:\n  - name: n\ncollect:\n- kind: file\n  pattern: ''\n";
        let spec = parse(text, "g.yaml").unwrap();
        assert_eq!(spec.collect[0].pattern, None);
    }

    #[test]
    fn an_upstream_kind_that_is_not_here_is_explained() {
        let e = parse("graph: g\nresources:\n  virt:\n  - name: v\n", "g.yaml").unwrap_err();
        assert!(e.message.starts_with("unknown field `virt`, expected one of cron, exec"), "{}", e.message);
        assert!(e.message.contains("upstream's `virt` kind is left out: virtualisation"), "{}", e.message);
        let e = parse("graph: g\nresources:\n  noop:\n  - name: v\n    virt: 1\n", "g.yaml").unwrap_err();
        assert!(!e.message.contains("upstream's"), "a param is not a kind: {}", e.message);
    }

    #[test]
    fn upstreams_remote_is_refused_with_the_reason_at_its_place() {
        let text = "graph: g\nresources:\n  noop:\n  - name: n\nremote: \"ssh://root@h:22\"\n";
        let e = parse(text, "g.yaml").unwrap_err();
        assert_eq!((e.line, e.column), (5, 9));
        assert!(e.message.contains("run an agent on each host"), "{}", e.message);
    }

    #[test]
    fn check_errors_are_located_in_the_text_with_the_name_as_written() {
        let text = "graph: g\nresources:\n  noop:\n  - name: ok\n  - name: \"@@ok\"\n";
        let e = parse(text, "g.yaml").unwrap_err();
        assert_eq!(e.to_string(), "g.yaml:5:11: noop[@@ok]: field `name`: duplicate resource noop[ok]");
    }

    #[test]
    fn an_edge_with_half_a_send_recv_pair_is_reported_after_what_comes_before_it() {
        let base = "graph: g\nresources:\n  noop:\n  - name: a\nedges:\n";
        let missing = "- from: {kind: noop, name: a}\n  to: {kind: noop, name: zz}\n";
        let half = "- from: {kind: noop, name: a}\n  to: {kind: noop, name: a}\n  send: x\n";
        let e = parse(&format!("{base}{missing}{half}"), "g.yaml").unwrap_err();
        assert!(e.message.contains("names noop[zz], which is not in the graph"), "{e}");
        let e = parse(&format!("{base}{half}{missing}"), "g.yaml").unwrap_err();
        assert_eq!(e.message, "edge #1: `send` and `recv` go together");
    }

    #[test]
    fn invalid_utf8_is_located_by_line_and_character() {
        let e = text_of(b"graph: x\nname: \xc3\xa9\xff\n", "g.yaml").unwrap_err();
        assert_eq!((e.line, e.column), (2, 8), "{e}");
        assert!(e.message.starts_with("invalid UTF-8 (byte 0xff)"), "{e}");
        assert_eq!(text_of(b"graph: x\n", "g.yaml").unwrap(), "graph: x\n");
    }

    #[test]
    fn blank_files_are_empty() {
        assert!(is_blank(""));
        assert!(is_blank("\n# comment\n---\n"));
        assert!(!is_blank("graph: x\n"));
    }

    #[test]
    fn rust_types_are_named_in_words() {
        assert_eq!(plain_types("invalid u64"), "expected a whole number of 0 or more");
        assert_eq!(
            plain_types("invalid type: string \"x\", expected u32"),
            "invalid type: string \"x\", expected a whole number from 0 to 4294967295"
        );
        assert_eq!(plain_types("expected u8s"), "expected u8s");
        assert_eq!(plain_types("expected string scalar"), "expected a text value");
    }

    #[test]
    fn the_enclosing_resource_is_found_from_indentation() {
        let text = "graph: g\nresources:\n  noop:\n  - name: a\n  exec:\n  - name: \"@@e\"\n    cmd: echo\n    env:\n      A: [\n  fiel:\nedges: []\n";
        assert_eq!(resource_by_text(text, 9), Some(ResId::new("exec", "e")));
        assert_eq!(resource_by_text(text, 7), Some(ResId::new("exec", "e")));
        assert_eq!(resource_by_text(text, 6), Some(ResId::new("exec", "e")));
        assert_eq!(resource_by_text(text, 4), Some(ResId::new("noop", "a")));
        // A kind key, a top-level key: in no resource.
        assert_eq!(resource_by_text(text, 10), None);
        assert_eq!(resource_by_text(text, 11), None);
        assert_eq!(resource_by_text(text, 3), None);
    }

    #[test]
    fn flow_style_entries_are_named_by_their_name_value() {
        let text = "graph: g\nresources:\n  exec:\n  - {name: a, cmd: echo, args: [a, b, c, ~]}\n  - !baz {name: x}\n  - &n {cmd: \"it's, {\", args: ['a,}', [1, {b: c}]], # name: no\n     name: \"@@q \\\" r\" }\n  - {'name': 'x,y', cmd: it's}\n  - {cmd: e, name: p q # c\n    }\n  - {cmd: e}\n";
        assert_eq!(resource_by_text(text, 4), Some(ResId::new("exec", "a")));
        assert_eq!(resource_by_text(text, 5), Some(ResId::new("exec", "x")));
        assert_eq!(resource_by_text(text, 7), Some(ResId::new("exec", "q \" r")));
        assert_eq!(resource_by_text(text, 8), Some(ResId::new("exec", "x,y")));
        assert_eq!(resource_by_text(text, 10), Some(ResId::new("exec", "p q")));
        assert_eq!(resource_by_text(text, 11), None);
    }

    #[test]
    fn cut_or_broken_flow_entries_never_panic() {
        let text = "graph: g\nresources:\n  exec:\n  - &n {cmd: \"it's, {\\\"\", args: ['a,}', [1, {b: c}]], # é\n     name: \"@@q \\\" r\" }\n  - {]: x, ,: y, name: 'é''s'}\n  -\n  - {'name\n";
        for (cut, _) in text.char_indices() {
            for line in 0..12 {
                let _ = resource_by_text(&text[..cut], line);
            }
        }
        assert_eq!(resource_by_text(text, 6), Some(ResId::new("exec", "é's")));
    }

    #[test]
    fn block_entries_are_named_by_their_name_key_anywhere() {
        let text = "graph: g\nresources:\n  exec:\n  - cmd: echo\n    args:\n    - a\n    - b\n    name: 'it''s' # c\n  -   name: \"e\"\n      cmd: x\n";
        assert_eq!(resource_by_text(text, 6), Some(ResId::new("exec", "it's")));
        assert_eq!(resource_by_text(text, 4), Some(ResId::new("exec", "it's")));
        assert_eq!(resource_by_text(text, 10), Some(ResId::new("exec", "e")));
    }

    #[test]
    fn scalars_are_read_as_yaml_reads_them() {
        assert_eq!(scalar_text(" \"a\\tb\" # c", false).as_deref(), Some("a\tb"));
        assert_eq!(scalar_text("'a''b', x", true).as_deref(), Some("a'b"));
        assert_eq!(scalar_text(" a, b # c", false).as_deref(), Some("a, b"));
        assert_eq!(scalar_text(" a, b}", true).as_deref(), Some("a"));
        assert_eq!(scalar_text(" a#b", false).as_deref(), Some("a#b"));
        assert_eq!(scalar_text(" \"unclosed", false), None);
        assert_eq!(scalar_text("  # c", false), None);
    }

    #[test]
    fn numeric_fields_say_what_they_accept() {
        let m = with_accepted_values("expected a whole number from 0 to 4294967295", "noop", "meta.burst");
        assert_eq!(m, "expected a whole number from 0 to 4294967295 (at least 1 with a `limit`)");
        let m = with_accepted_values("expected a text value", "timer", "interval");
        assert_eq!(m, "expected a whole number of seconds from 1 to 315360000 (ten years)");
        let m = with_accepted_values("expected a text value", "exec", "cmd");
        assert_eq!(m, "expected a text value");
        let m = with_accepted_values("invalid type: string \"x\", expected a number", "noop", "meta.limit");
        assert_eq!(m, "invalid type: string \"x\", expected a positive number of events per second, or .inf");
    }

    #[test]
    fn the_format_docs_list_every_kind() {
        let doc = include_str!("../../docs/yaml.md");
        let listed = doc.split("keys are kinds: ").nth(1).and_then(|r| r.split(';').next()).unwrap();
        let listed: Vec<&str> = listed.split(", ").map(|k| k.trim_matches('`')).collect();
        assert_eq!(listed, resources::KINDS);
    }

    #[test]
    fn parser_limits_name_their_value() {
        use serde_saphyr::budget::BudgetBreach;
        let m = budget_message(&BudgetBreach::Nodes { nodes: 250_001 });
        assert!(m.contains("more than 250000 YAML nodes"), "{m}");
        let m = budget_message(&BudgetBreach::Depth { depth: 65 });
        assert_eq!(m, "nested more than 64 levels deep");
    }
}
