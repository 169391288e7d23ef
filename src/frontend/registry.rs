//! The frontends a deploy can name in its manifest (`Manifest::frontend`), by name: the one
//! place that says which frontend parses a deployed bundle's entry.

#![allow(clippy::result_large_err)] // errors are the cold path; flat ones keep the code plain

use super::base::Base;
use super::{FrontendError, GraphSpec, yaml};

/// A frontend that can run a deployed bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFrontend {
    Yaml,
}

/// Every frontend a bundle may name, with its name.
const FRONTENDS: [(&str, BundleFrontend); 1] = [("yaml", BundleFrontend::Yaml)];

/// A bundle names a frontend this agent does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this agent runs {} deploys, not `{name}`", known())]
pub struct UnknownFrontend {
    pub name: String,
}

/// The frontends' names, as a message lists them.
fn known() -> String {
    FRONTENDS.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(" or ")
}

impl BundleFrontend {
    pub fn named(name: &str) -> Result<BundleFrontend, UnknownFrontend> {
        FRONTENDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| UnknownFrontend { name: name.to_string() })
    }

    /// Parse a bundle's entry `entry` (its bytes `text`), its relative paths resolved
    /// against `base` (`Base::bundle`).
    pub fn parse_entry(self, text: &[u8], entry: &str, base: &Base) -> Result<GraphSpec, FrontendError> {
        match self {
            BundleFrontend::Yaml => yaml::parse_at(yaml::text_of(text, entry)?, entry, Some(base)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_frontend_is_found_by_its_name() {
        assert_eq!(BundleFrontend::named("yaml"), Ok(BundleFrontend::Yaml));
        let e = BundleFrontend::named("mcl").unwrap_err();
        assert_eq!(e.to_string(), "this agent runs `yaml` deploys, not `mcl`");
    }

    #[test]
    fn the_yaml_frontend_parses_an_entry() {
        let base = Base::bundle(std::path::Path::new("/b"), "g.yaml", [("g.yaml", false)]);
        let spec = BundleFrontend::Yaml.parse_entry(b"graph: g\n", "g.yaml", &base).unwrap();
        assert_eq!(spec.name, "g");
        let e = BundleFrontend::Yaml.parse_entry(b"graph: [g\n", "g.yaml", &base).unwrap_err();
        assert!(e.to_string().starts_with("g.yaml:1:"), "{e}");
    }
}
