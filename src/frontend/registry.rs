//! The frontends a deploy can name in its manifest (`Manifest::frontend`), by name: the one
//! place that says which frontend parses a deployed bundle's entry. A `yaml` entry is
//! parsed from its text alone; a `lang` program is loaded from the unpacked bundle, since
//! it reads the files it imports.

#![allow(clippy::result_large_err)] // errors are the cold path; flat ones keep the code plain

use std::path::{Path, PathBuf};

use super::base::Base;
use super::lang::module::METADATA_FILE;
use super::lang_file;
use super::source::ProgramError;
use super::{FrontendError, GraphSpec, yaml};

/// A frontend that can run a deployed bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFrontend {
    Yaml,
    /// mcl: the entry is the program's `.mcl` file, or its module's `metadata.yaml`.
    Lang,
}

/// Every frontend a bundle may name, with its name.
const FRONTENDS: [(&str, BundleFrontend); 2] =
    [("yaml", BundleFrontend::Yaml), ("lang", BundleFrontend::Lang)];

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

    /// Parse a YAML bundle's entry `entry` (its bytes `text`), its relative paths resolved
    /// against `base` (`Base::bundle`).
    pub fn parse_entry(text: &[u8], entry: &str, base: &Base) -> Result<GraphSpec, FrontendError> {
        yaml::parse_at(yaml::text_of(text, entry)?, entry, Some(base))
    }
}

/// The program a `lang` bundle unpacked at `root` runs: a module's `metadata.yaml` stands
/// for the module's directory; any other entry (a `.mcl` file, a directory) is the program.
pub fn lang_program(root: &Path, entry: &str) -> PathBuf {
    let path = entry.split('/').fold(root.to_path_buf(), |p, part| p.join(part));
    let is_metadata = entry.rsplit('/').next() == Some(METADATA_FILE);
    match path.parent() {
        Some(dir) if is_metadata => dir.to_path_buf(),
        _ => path,
    }
}

/// Compile the `lang` bundle unpacked at `root` (its entry `entry`) for `hostname`, from
/// deploy `deploy_id`. Its imports stay below the module's directory, inside the bundle.
/// Errors name its files by their path in the bundle.
pub fn compile_lang(
    root: &Path,
    entry: &str,
    hostname: &str,
    deploy_id: u64,
) -> Result<GraphSpec, ProgramError> {
    let compiled = lang_file::compile_at(&lang_program(root, entry), hostname, deploy_id);
    compiled.map(|c| c.spec).map_err(|f| f.error.relative_to(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_frontend_is_found_by_its_name() {
        assert_eq!(BundleFrontend::named("yaml"), Ok(BundleFrontend::Yaml));
        assert_eq!(BundleFrontend::named("lang"), Ok(BundleFrontend::Lang));
        let e = BundleFrontend::named("mcl").unwrap_err();
        assert_eq!(e.to_string(), "this agent runs `yaml` or `lang` deploys, not `mcl`");
    }

    #[test]
    fn the_yaml_frontend_parses_an_entry() {
        let base = Base::bundle(std::path::Path::new("/b"), "g.yaml", [("g.yaml", false)]);
        let spec = BundleFrontend::parse_entry(b"graph: g\n", "g.yaml", &base).unwrap();
        assert_eq!(spec.name, "g");
        let e = BundleFrontend::parse_entry(b"graph: [g\n", "g.yaml", &base).unwrap_err();
        assert!(e.to_string().starts_with("g.yaml:1:"), "{e}");
    }

    #[test]
    fn a_lang_entry_is_its_program_and_metadata_stands_for_its_module() {
        let root = Path::new("/b");
        assert_eq!(lang_program(root, "main.mcl"), Path::new("/b/main.mcl"));
        assert_eq!(lang_program(root, "app/x.mcl"), Path::new("/b/app/x.mcl"));
        assert_eq!(lang_program(root, "metadata.yaml"), Path::new("/b"));
        assert_eq!(lang_program(root, "app/metadata.yaml"), Path::new("/b/app"));
        assert_eq!(lang_program(root, "app"), Path::new("/b/app"));
    }
}
