//! Frontends turn user code into a [`GraphSpec`]: resources, edges and collect requests.
//! Parsing is a pure function of the text; [`check::check`] then holds every rule that is not
//! syntax, the same for every frontend. A frontend yields its graphs as a stream
//! ([`source::SpecSource`]): reading and watching its files (`graph_file`, `yaml_file`,
//! `lang_file`) is its only I/O.

pub mod base;
pub mod check;
pub mod graph_file;
pub mod lang;
pub mod lang_file;
pub mod lang_streams;
pub mod registry;
pub mod source;
pub mod yaml;
pub mod yaml_file;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::contract::ResId;
use crate::resources::Resource;

/// A graph as written by the user, before exports and collected resources are merged in.
#[derive(Debug, Default, Clone)]
pub struct GraphSpec {
    pub name: String,
    /// A persistent vector: a spec made from the last one by replacing some resources shares
    /// the rest with it, and copying it costs nothing.
    pub resources: imbl::Vector<Arc<dyn Resource>>,
    /// The resources this host also offers to the others (`@@name` in YAML): exported to the
    /// world, and applied here like the rest.
    pub exports: BTreeSet<ResId>,
    /// The hosts an export is for, when not every host (mcl's `Meta:export => ["h1"]`).
    pub export_to: std::collections::BTreeMap<ResId, Vec<String>>,
    pub edges: Vec<EdgeSpec>,
    pub collect: Vec<CollectSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSpec {
    pub name: String,
    pub from: ResId,
    pub to: ResId,
    /// Send a refresh to `to` when `from` changed something.
    pub notify: bool,
    /// Send/recv: `from`'s output field `send` becomes `to`'s param `recv`.
    pub send_recv: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectSpec {
    pub kind: String,
    /// Kind-specific filter/target (file: the directory collected files are written into).
    pub pattern: Option<String>,
    /// Only these exports, by name and (when given) exporting host; `None`: every one of
    /// the kind.
    pub names: Option<Vec<(String, Option<String>)>>,
    /// Params the collector sets on each collected resource, over what the peer exported
    /// and the collector's policy kept.
    pub overrides: serde_json::Map<String, serde_json::Value>,
}

/// An error in user code, located as precisely as the frontend can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FrontendError {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: u64,
    pub column: u64,
    pub resource: Option<ResId>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for FrontendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": ")?;
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}
