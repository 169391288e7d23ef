//! `deploy diff [ID | FILE]`: what a deploy would change against the live one.

use anyhow::{Context, Result, bail};
use clap::Args;
use etcd_client::Client;
use serde_json::{Value, json};

use super::list::octal;
use super::{Kind, SourceArgs, build_as, client, clip};
use crate::cli::DeployArgs;
use crate::cli::status::shown;
use crate::deploy::blobs;
use crate::deploy::bundle::{FileEntry, Manifest};
use crate::deploy::diff::{FileChange, GraphDiff, ParamChange, ResourceChange, graph_diff, manifest_diff};
use crate::deploy::source::{self, Built};
use crate::deploy::store::{self, DeployKeys, DeployRecord};

/// Exit status of `deploy diff --exit-code` when there are differences.
pub const EXIT_DIFFERENT: u8 = 2;

/// The most bytes of a param's value shown in the text output.
const VALUE_MAX: usize = 120;

/// `deploy diff`'s arguments.
#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    /// A deploy ID (digits only), or the graph file to build as `deploy yaml FILE` would
    /// (at HEAD, or --commit), or the program to build as `deploy lang PATH` would (a .mcl
    /// file, or a directory with a main.mcl or metadata.yaml). Default: the live deploy's
    /// entry, in the repository at the current directory.
    pub target: Option<String>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit with 2 when there are differences, 0 when there are none.
    #[arg(long)]
    pub exit_code: bool,
}

/// One side of the comparison.
struct Side {
    /// What it is, for people: `deploy 5 (live)`, `commit 0123456789ab`, `the directory`.
    label: String,
    deploy: Option<u64>,
    commit: Option<String>,
    manifest: Manifest,
    /// The graph file's bytes.
    entry: Vec<u8>,
    /// Every file's bytes, in the manifest's order, for a program (compiled from them).
    contents: Option<Vec<Vec<u8>>>,
}

pub async fn diff(args: &DeployArgs, keys: &DeployKeys, d: &DiffArgs) -> Result<u8> {
    let by_id = d.target.as_deref().filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    if by_id.is_some() && (d.source.no_git || d.source.commit.is_some()) {
        bail!("a deploy ID is compared as it is stored; --no-git and --commit build from a graph file");
    }
    let mut c = client(args).await?;
    let head = store::head(&mut c, keys).await?;
    if let Some(why) = &head.broken {
        eprintln!("mgmt: warning: {} {why}; comparing with the newest intact deploy", keys.latest());
    }
    let live = match &head.record {
        Some(r) => {
            let mut side = stored_side(&mut c, keys, r).await?;
            let what = if head.broken.is_some() { "the newest intact" } else { "live" };
            side.label = format!("{} ({what})", side.label);
            Some(side)
        }
        None => None,
    };
    let new = match by_id {
        Some(id) => {
            let id: u64 = id.parse().context("the deploy ID is too large")?;
            let r = store::record(&mut c, keys, id).await?;
            stored_side(&mut c, keys, &r).await?
        }
        None => built_side(d, head.record.as_ref())?,
    };
    let report = Report::new(live.as_ref(), &new);
    if d.json {
        println!("{}", serde_json::to_string_pretty(&report.json(live.as_ref(), &new))?);
    } else {
        print!("{}", report.text(live.as_ref(), &new));
    }
    if let Err(e) = &report.graph {
        bail!("cannot compare the graphs: {e}");
    }
    Ok(if d.exit_code && report.different() { EXIT_DIFFERENT } else { 0 })
}

/// A published deploy: its manifest and graph file, checked against their hashes.
async fn stored_side(c: &mut Client, keys: &DeployKeys, r: &DeployRecord) -> Result<Side> {
    if r.frontend == "lang" {
        let (manifest, contents) =
            blobs::fetch_bundle(c, keys, &r.bundle).await.with_context(|| format!("deploy {}", r.id))?;
        let side = Built { manifest, contents, commit: None };
        let label = format!("deploy {}", r.id);
        return Ok(Side { deploy: Some(r.id), commit: r.commit.clone(), ..side_of(side, label)? });
    }
    let manifest =
        store::fetch_manifest(c, keys, &r.bundle).await.with_context(|| format!("deploy {}", r.id))?;
    let f = entry_of(&manifest)?.clone();
    let entry =
        store::get_blob(c, keys, &f.sha256, f.size).await.with_context(|| format!("deploy {}", r.id))?;
    manifest.verify_file(&f, &entry)?;
    Ok(Side {
        label: format!("deploy {}", r.id),
        deploy: Some(r.id),
        commit: r.commit.clone(),
        manifest,
        entry,
        contents: None,
    })
}

fn entry_of(m: &Manifest) -> Result<&FileEntry> {
    m.files
        .iter()
        .find(|f| f.path == m.entry)
        .with_context(|| format!("the entry `{}` is not in the bundle", m.entry))
}

/// What `deploy yaml` would publish: the graph file's commit (HEAD unless --commit; a
/// dirty work tree is compared at HEAD, with a warning), or its directory (--no-git).
fn built_side(d: &DiffArgs, live: Option<&DeployRecord>) -> Result<Side> {
    let rev = d.source.commit.as_deref().unwrap_or("HEAD");
    let built = match d.target.as_deref() {
        Some(file) => {
            let file = std::path::Path::new(file);
            if !d.source.no_git && d.source.commit.is_none() {
                warn_if_dirty(file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(".".as_ref()));
            }
            build_as(kind_of(file), file, d.source.no_git, (!d.source.no_git).then_some(rev))?
        }
        None if d.source.no_git => bail!("--no-git needs the graph file: `mgmt deploy diff --no-git FILE`"),
        None => {
            // The live deploy's graph path; before the first deploy, the default one.
            let (frontend, entry) = match live {
                Some(l) => (l.frontend.as_str(), l.entry.as_str()),
                None => ("yaml", source::DEFAULT_GRAPH),
            };
            let cwd = std::env::current_dir()?;
            if d.source.commit.is_none() {
                warn_if_dirty(&cwd);
            }
            source::from_git(&cwd, frontend, entry, Some(rev))?
        }
    };
    built_to_side(built, d.source.no_git)
}

/// The frontend a target path is for: a program (a `.mcl` file, or a directory with a
/// program and no graph.yaml), or else a YAML graph.
fn kind_of(path: &std::path::Path) -> Kind {
    use crate::frontend::lang::module::{ENTRY_FILE, METADATA_FILE};
    let program_dir = path.is_dir()
        && !path.join(source::DEFAULT_GRAPH).exists()
        && (path.join(ENTRY_FILE).exists() || path.join(METADATA_FILE).exists());
    if path.extension().is_some_and(|e| e == "mcl") || program_dir { Kind::Lang } else { Kind::Yaml }
}

fn built_to_side(built: Built, no_git: bool) -> Result<Side> {
    let commit = built.commit.as_ref().map(|c| c.id.clone());
    let label = match &commit {
        Some(id) => format!("commit {}", clip(id, 12)),
        None if no_git => "the directory".to_string(),
        None => "the build".to_string(),
    };
    Ok(Side { commit, ..side_of(built, label)? })
}

/// A built or fetched bundle as a side named `label`: its entry's bytes, and every file's
/// for a program.
fn side_of(built: Built, label: String) -> Result<Side> {
    let i = built
        .manifest
        .files
        .iter()
        .position(|f| f.path == built.manifest.entry)
        .with_context(|| format!("the entry `{}` is not in the bundle", built.manifest.entry))?;
    let entry = built.contents[i].clone();
    let contents = (built.manifest.frontend == "lang").then_some(built.contents);
    Ok(Side { label, deploy: None, commit: None, manifest: built.manifest, entry, contents })
}

/// Say so when the work tree has changes that the comparison (of HEAD) leaves out.
fn warn_if_dirty(start: &std::path::Path) {
    let Ok(repo) = git2::Repository::discover(start) else { return };
    if repo.is_bare() {
        return;
    }
    if let Ok(dirty) = source::dirty_paths(&repo)
        && !dirty.is_empty()
    {
        eprintln!(
            "mgmt: warning: the work tree is not clean ({} paths); HEAD is compared, without those changes \
             (`deploy yaml` refuses to deploy until they are committed)",
            dirty.len()
        );
    }
}

/// The differences between two sides.
struct Report {
    /// The entry (frontend and path), when it changed.
    entry: Option<(String, String)>,
    files: Vec<FileChange>,
    /// The graph's differences, or why the graphs could not be compared.
    graph: Result<GraphDiff, String>,
}

impl Report {
    fn new(old: Option<&Side>, new: &Side) -> Report {
        let empty = Manifest {
            frontend: new.manifest.frontend.clone(),
            entry: new.manifest.entry.clone(),
            files: vec![],
        };
        let old_manifest = old.map(|o| &o.manifest).unwrap_or(&empty);
        let describe = |m: &Manifest| format!("{} ({})", m.entry, m.frontend);
        let entry = (old.is_some() && describe(old_manifest) != describe(&new.manifest))
            .then(|| (describe(old_manifest), describe(&new.manifest)));
        let graph = (|| {
            let new_graph = parse(new)?;
            let old_graph = match old {
                Some(o) => parse(o)?,
                None => crate::frontend::GraphSpec::default(),
            };
            Ok(graph_diff(&old_graph, &new_graph))
        })();
        Report { entry, files: manifest_diff(old_manifest, &new.manifest), graph }
    }

    fn different(&self) -> bool {
        self.entry.is_some() || !self.files.is_empty() || self.graph.as_ref().is_ok_and(|g| !g.is_empty())
    }

    fn text(&self, old: Option<&Side>, new: &Side) -> String {
        let from = match old {
            Some(o) => o.label.clone(),
            None => "nothing (no deploy yet)".to_string(),
        };
        let mut out = format!("{from} -> {}\n", new.label);
        if !self.different() && self.graph.is_ok() {
            out.push_str("no differences\n");
            return out;
        }
        if let Some((a, b)) = &self.entry {
            out.push_str(&format!("entry: {} -> {}\n", shown(a, 400), shown(b, 400)));
        }
        if !self.files.is_empty() {
            out.push_str("files:\n");
            for f in &self.files {
                out.push_str(&file_line(f));
            }
        }
        if let Ok(g) = &self.graph {
            out.push_str(&graph_text(g));
        }
        out
    }

    fn json(&self, old: Option<&Side>, new: &Side) -> Value {
        let side = |s: &Side| json!({"deploy": s.deploy, "commit": s.commit, "bundle": s.manifest.id(), "entry": s.manifest.entry});
        let file = |f: &FileEntry| json!({"mode": octal(f.mode), "size": f.size, "sha256": f.sha256});
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|c| match c {
                FileChange::Added(f) => json!({"path": f.path, "change": "added", "new": file(f)}),
                FileChange::Removed(f) => json!({"path": f.path, "change": "removed", "old": file(f)}),
                FileChange::Changed { old, new } => {
                    json!({"path": new.path, "change": "changed", "old": file(old), "new": file(new)})
                }
            })
            .collect();
        json!({
            "from": old.map(side),
            "to": side(new),
            "differences": self.different(),
            "entry": self.entry.as_ref().map(|(a, b)| json!({"old": a, "new": b})),
            "files": files,
            "graph": self.graph.as_ref().ok().map(graph_json),
            "graph_error": self.graph.as_ref().err(),
        })
    }
}

fn parse(s: &Side) -> Result<crate::frontend::GraphSpec, String> {
    if crate::frontend::registry::BundleFrontend::named(&s.manifest.frontend).is_err() {
        return Err(format!("{}: frontend `{}` cannot be compared", s.label, s.manifest.frontend));
    }
    if let Some(contents) = &s.contents {
        // Compiled as `deploy lang` checks it: for this host, from a copy of the bundle.
        let host = nix::unistd::gethostname().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let root = std::path::Path::new(super::CHECKED_AT);
        return crate::deploy::check::check_built(&s.manifest, contents, &host, root)
            .map_err(|e| format!("{}: {e}", s.label));
    }
    // Parsed and checked as agents do, so relative paths resolve in the bundle (shown
    // below the same stand-in root on both sides).
    let root = std::path::Path::new(super::CHECKED_AT);
    crate::deploy::check::check_entry(
        &s.manifest.frontend,
        &s.entry,
        &s.manifest.entry,
        &s.manifest.files,
        root,
    )
    .map_err(|e| format!("{}: {e}", s.label))
}

/// A file's line: `+`, `-` or `~`, its path, and its mode and short hash (both, for a
/// change).
fn file_line(c: &FileChange) -> String {
    let at = |f: &FileEntry| format!("{} {}", octal(f.mode), clip(&f.sha256, 12));
    let path = shown(c.path(), 4096);
    match c {
        FileChange::Added(f) => format!("  + {path}  {}\n", at(f)),
        FileChange::Removed(f) => format!("  - {path}  {}\n", at(f)),
        FileChange::Changed { old, new } => format!("  ~ {path}  {} -> {}\n", at(old), at(new)),
    }
}

/// The graph part of the text output (pure).
fn graph_text(g: &GraphDiff) -> String {
    let mut out = String::new();
    if let Some((a, b)) = &g.name {
        out.push_str(&format!("graph: {} -> {}\n", shown(a, 200), shown(b, 200)));
    }
    if !g.resources.is_empty() {
        out.push_str("resources:\n");
    }
    for r in &g.resources {
        let id = shown(&r.id().to_string(), 400);
        match r {
            ResourceChange::Added(_) => out.push_str(&format!("  + {id}\n")),
            ResourceChange::Removed(_) => out.push_str(&format!("  - {id}\n")),
            ResourceChange::Changed(_, params) => {
                out.push_str(&format!("  ~ {id}\n"));
                for p in params {
                    if p.hidden {
                        out.push_str(&format!("      {}: changed (not shown: a private file)\n", p.param));
                    } else {
                        out.push_str(&format!("      {}: {} -> {}\n", p.param, value(&p.old), value(&p.new)));
                    }
                }
            }
        }
    }
    for (title, added, removed) in
        [("edges", &g.edges_added, &g.edges_removed), ("collect", &g.collect_added, &g.collect_removed)]
    {
        if added.is_empty() && removed.is_empty() {
            continue;
        }
        out.push_str(&format!("{title}:\n"));
        for e in added {
            out.push_str(&format!("  + {}\n", shown(e, 400)));
        }
        for e in removed {
            out.push_str(&format!("  - {}\n", shown(e, 400)));
        }
    }
    out
}

/// A param's value on one line, as JSON, bounded; `(unset)` when it is not set.
fn value(v: &Option<Value>) -> String {
    match v {
        Some(v) => shown(&v.to_string(), VALUE_MAX),
        None => "(unset)".to_string(),
    }
}

fn graph_json(g: &GraphDiff) -> Value {
    let params = |ps: &[ParamChange]| -> Vec<Value> {
        ps.iter().map(|p| json!({"param": p.param, "old": p.old, "new": p.new, "hidden": p.hidden})).collect()
    };
    let resources: Vec<Value> = g
        .resources
        .iter()
        .map(|r| {
            let id = r.id();
            let (change, ps) = match r {
                ResourceChange::Added(_) => ("added", vec![]),
                ResourceChange::Removed(_) => ("removed", vec![]),
                ResourceChange::Changed(_, ps) => ("changed", params(ps)),
            };
            json!({"id": id.to_string(), "kind": id.kind, "name": id.name, "change": change, "params": ps})
        })
        .collect();
    json!({
        "name": g.name.as_ref().map(|(a, b)| json!({"old": a, "new": b})),
        "resources": resources,
        "edges": {"added": g.edges_added, "removed": g.edges_removed},
        "collect": {"added": g.collect_added, "removed": g.collect_removed},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_program_or_a_graph_by_its_name_and_what_its_directory_holds() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(kind_of(&t.path().join("main.mcl")), Kind::Lang);
        assert_eq!(kind_of(&t.path().join("g.yaml")), Kind::Yaml);
        assert_eq!(kind_of(t.path()), Kind::Yaml);
        std::fs::write(t.path().join("main.mcl"), "").unwrap();
        assert_eq!(kind_of(t.path()), Kind::Lang);
        std::fs::write(t.path().join("graph.yaml"), "").unwrap();
        assert_eq!(kind_of(t.path()), Kind::Yaml);
    }
    use crate::contract::ResId;
    use crate::deploy::bundle::{MODE_EXECUTABLE, MODE_FILE};

    #[test]
    fn the_text_shows_each_change_on_its_own_line() {
        let f = |mode, sha: char| FileEntry {
            path: "run.sh".into(),
            mode,
            size: 1,
            sha256: sha.to_string().repeat(64),
        };
        assert_eq!(
            file_line(&FileChange::Changed { old: f(MODE_FILE, 'a'), new: f(MODE_EXECUTABLE, 'b') }),
            "  ~ run.sh  100644 aaaaaaaaaaaa -> 100755 bbbbbbbbbbbb\n"
        );
        assert_eq!(file_line(&FileChange::Added(f(MODE_FILE, 'a'))), "  + run.sh  100644 aaaaaaaaaaaa\n");
        let g = GraphDiff {
            resources: vec![
                ResourceChange::Added(ResId::new("file", "new")),
                ResourceChange::Changed(
                    ResId::new("file", "conf"),
                    vec![
                        ParamChange {
                            param: "content".into(),
                            old: Some("one\n".into()),
                            new: Some("two\n".into()),
                            hidden: false,
                        },
                        ParamChange {
                            param: "mode".into(),
                            old: None,
                            new: Some("0600".into()),
                            hidden: false,
                        },
                        ParamChange {
                            param: "x".into(),
                            old: Some("y".repeat(1000).into()),
                            new: None,
                            hidden: false,
                        },
                        ParamChange { param: "content".into(), old: None, new: None, hidden: true },
                    ],
                ),
            ],
            edges_removed: vec!["file[conf] -> exec[run]".into()],
            ..Default::default()
        };
        let t = graph_text(&g);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0..5],
            [
                "resources:",
                "  + file[new]",
                "  ~ file[conf]",
                "      content: \"one\\n\" -> \"two\\n\"",
                "      mode: (unset) -> \"0600\"",
            ]
        );
        assert!(lines[5].len() < 2 * VALUE_MAX && lines[5].ends_with("-> (unset)"), "{t}");
        assert_eq!(lines[6], "      content: changed (not shown: a private file)");
        assert_eq!(lines[7..], ["edges:", "  - file[conf] -> exec[run]"]);
    }
}
