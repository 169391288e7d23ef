//! `meta.reverse`: what undoes a resource once it has left the graph. Before a resource
//! with `reverse` first applies, its kind works out the resource that undoes it (from the
//! state it finds) and that is recorded under the agent's prefix, one file per resource,
//! written atomically. Every new graph gets, as vertices of their own, the recorded
//! reversals of the resources it no longer has; one that applies is forgotten. The records
//! are on disk, so a resource that left the graph while the agent was stopped is undone
//! when it starts again.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::graph::Graph;
use crate::contract::ResId;
use crate::os::atomic::write_atomic;
use crate::resources::{self, ResResult, Resource, ResourceError, managed_key};

/// The most bytes of one record: a file's content (1 MiB) escaped as JSON, and its params.
pub const RECORD_MAX: u64 = 8 * 1024 * 1024;

/// The most records read at once.
pub const RECORDS_MAX: usize = 10_000;

/// The records of one agent: `<prefix>/reverse/<sha256 of kind and name>.json`.
#[derive(Debug, Clone)]
pub struct Reversals {
    dir: PathBuf,
}

/// One record: the resource that undoes another, by the id of the one it undoes.
#[derive(Serialize, Deserialize)]
struct Record {
    kind: String,
    name: String,
    params: serde_json::Value,
}

impl Reversals {
    pub fn new(prefix: &Path) -> Reversals {
        Reversals { dir: prefix.join("reverse") }
    }

    fn file_of(&self, id: &ResId) -> PathBuf {
        let mut h = Sha256::new();
        h.update(id.kind.as_bytes());
        h.update([0]);
        h.update(id.name.as_bytes());
        self.dir.join(format!("{}.json", hex::encode(h.finalize())))
    }

    /// Record what undoes `res` unless a record is there already: the first holds the state
    /// from before the resource changed anything, which a restart or a change of its
    /// params must not replace by the state it made.
    pub fn record(&self, res: &dyn Resource) -> ResResult<()> {
        let file = self.file_of(&res.id());
        if file.exists() {
            return Ok(());
        }
        let Some(undo) = res.reversal()? else { return Ok(()) };
        let record = Record { kind: undo.kind().into(), name: undo.name().into(), params: undo.to_json() };
        let bytes = serde_json::to_vec(&record).map_err(|e| ResourceError::msg(format!("encoding: {e}")))?;
        if bytes.len() as u64 > RECORD_MAX {
            return Err(ResourceError::msg(format!("what undoes it is over {RECORD_MAX} bytes")));
        }
        let io = |e| ResourceError::io(format!("recording what undoes it in {}", self.dir.display()), e);
        fs::create_dir_all(&self.dir).map_err(io)?;
        write_atomic(&file, &bytes, 0o600, None, None).map_err(io)
    }

    /// Forget the record of `id`: its reversal applied.
    pub fn forget(&self, id: &ResId) {
        let file = self.file_of(id);
        if let Err(e) = fs::remove_file(&file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!("{id}: removing {}: {e}", file.display());
        }
    }

    /// Every record that reads and decodes; the others are logged and left on disk.
    fn all(&self) -> Vec<Box<dyn Resource>> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .take(RECORDS_MAX)
            .collect();
        paths.sort();
        paths
            .iter()
            .filter_map(|p| decode(p).map_err(|e| warn!("reversal {}: {e}", p.display())).ok())
            .collect()
    }

    /// Add to `graph`, as vertices without edges, the reversals of the resources it does
    /// not have. One whose resource is back, or that would manage a path the graph
    /// manages, is left for later. Returns the ids added.
    pub fn add_pending(&self, graph: &mut Graph) -> Vec<ResId> {
        let managed: std::collections::HashSet<PathBuf> =
            graph.vertices.iter().flat_map(|v| v.autoedges().provides).map(|p| managed_key(&p)).collect();
        let mut added = Vec::new();
        for undo in self.all() {
            let id = undo.id();
            if graph.index.contains_key(&id)
                || undo.autoedges().provides.iter().any(|p| managed.contains(&managed_key(p)))
            {
                continue;
            }
            graph.index.insert(id.clone(), graph.vertices.len());
            graph.vertices.push(Arc::from(undo));
            added.push(id);
        }
        added
    }
}

/// A record read back: bounded, decoded by its kind, validated.
fn decode(path: &Path) -> Result<Box<dyn Resource>, String> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(RECORD_MAX + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > RECORD_MAX {
        return Err(format!("over {RECORD_MAX} bytes"));
    }
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let mut res = resources::from_json(&record.kind, record.params)?;
    res.set_name(record.name);
    // A reversal is never undone in turn.
    res.meta_mut().reverse = false;
    resources::validate_resource(res.as_ref()).map_err(|e| e.to_string())?;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::file::{File, FileState};

    #[test]
    fn a_record_is_kept_until_forgotten_and_added_only_once_its_resource_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("made");
        let r = Reversals::new(dir.path());
        let mut made =
            File { name: "made".into(), path: Some(target.display().to_string().into()), ..File::default() };
        made.meta.reverse = true;
        r.record(&made).unwrap();
        // The file appears; a second record would see it, but the first stays.
        fs::write(&target, "x").unwrap();
        r.record(&made).unwrap();
        let made: Arc<dyn Resource> = Arc::new(made);
        let mut with = Graph::build(vec![made.clone()], &[]).unwrap();
        assert!(r.add_pending(&mut with).is_empty(), "its resource is in the graph");
        let mut without = Graph::default();
        assert_eq!(r.add_pending(&mut without), vec![made.id()]);
        let undo = without.vertices[0].as_any().downcast_ref::<File>().unwrap();
        assert_eq!(undo.state, FileState::Absent, "it did not exist before");
        assert!(!undo.meta.reverse);
        r.forget(&made.id());
        assert!(r.add_pending(&mut Graph::default()).is_empty());
    }

    #[test]
    fn a_bad_record_is_skipped_and_left() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reversals::new(dir.path());
        fs::create_dir_all(dir.path().join("reverse")).unwrap();
        fs::write(dir.path().join("reverse/x.json"), "{not json").unwrap();
        assert!(r.add_pending(&mut Graph::default()).is_empty());
        assert!(dir.path().join("reverse/x.json").exists());
    }
}
