//! Resource identity: kind plus name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identity of a resource in a graph: kind plus name. Graph swap keys vertices by this.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResId {
    pub kind: String,
    pub name: String,
}

impl ResId {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        ResId { kind: kind.into(), name: name.into() }
    }
}

impl fmt::Display for ResId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.kind, self.name)
    }
}
