//! The core library: every function a program can call by name, with its type and its
//! implementation, found by module and name ([`lookup`]). Operators are functions here too
//! ([`operators`]), so the type checker and the evaluator share one definition of each.
//!
//! A function's type is written as mcl writes types, with `?N` for "any type, the same one
//! wherever N appears" (`func([]?1) int`). A function whose type depends on more than that
//! (`fmt.printf`, whose argument types follow its format string) also has an `infer`, which
//! sees the call's argument types as far as they are known and its constant arguments.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use super::types::Type;
use super::value::{CallError, Val};

/// One function of the core library.
pub struct Builtin {
    /// The module it is imported from (`fmt`, `golang/strings`); empty for the functions
    /// every program has without an import (`len`).
    pub module: &'static str,
    pub name: &'static str,
    /// Its type (see the module docs). For a function with `infer`, the type as the docs
    /// show it, and `Type::parse` need not read it.
    pub sig: &'static str,
    pub infer: Option<Infer>,
    pub call: fn(&CallCtx, Vec<Val>) -> Result<Val, CallError>,
    /// One line for `docs/lang.md`.
    pub doc: &'static str,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.module {
            "" => write!(f, "{}", self.name),
            module => write!(f, "{module}.{}", self.name),
        }
    }
}

/// Decides a polymorphic function's type at one call: `Ok(Some(func type))` once it can,
/// `Ok(None)` while it needs more of the argument types, `Err(why)` when no type fits.
pub type Infer = fn(&CallSite) -> Result<Option<Type>, String>;

/// A call as the type checker sees it.
pub struct CallSite<'a> {
    /// The argument types as far as they are known (`Type::Var` where not yet).
    pub args: &'a [Type],
    /// The arguments whose value is known before running (literals): printf's format.
    pub consts: &'a [Option<Val>],
    /// The result type as far as the context knows it.
    pub ret: &'a Type,
}

/// What a call may use at run time besides its arguments.
pub struct CallCtx<'a> {
    /// The call's type, solved: a function that must know its result type (an empty list
    /// of what?) finds it here.
    pub sig: &'a Type,
    pub host: &'a HostInfo,
}

/// What the program may know of the host and of its deploy.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    pub hostname: String,
    /// The directory of the program's module (or of the unpacked deploy): `deploy.readfile`
    /// reads below it, and never outside it.
    pub deploy_root: PathBuf,
    /// The module's files directory, below `deploy_root` (`files/` unless its
    /// `metadata.yaml` names another).
    pub files_dir: String,
    /// The deploy's id, 0 when the program is not running from a deploy.
    pub deploy_id: u64,
}

/// Every module's functions. Each module file adds its slice here.
const MODULES: &[&[Builtin]] = &[];

static INDEX: LazyLock<HashMap<(&'static str, &'static str), &'static Builtin>> =
    LazyLock::new(|| MODULES.iter().flat_map(|m| m.iter()).map(|b| ((b.module, b.name), b)).collect());

/// The function `name` of `module` (`""` for the functions without a module).
pub fn lookup(module: &str, name: &str) -> Option<&'static Builtin> {
    INDEX.get(&(module, name)).copied()
}

/// Whether `import "module"` names a core module.
pub fn is_module(module: &str) -> bool {
    !module.is_empty() && all().any(|b| b.module == module)
}

/// Every function, in module order.
pub fn all() -> impl Iterator<Item = &'static Builtin> {
    MODULES.iter().flat_map(|m| m.iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_signature_reads_as_a_function_type() {
        for b in all().filter(|b| b.infer.is_none()) {
            let ty = Type::parse(b.sig).unwrap_or_else(|e| panic!("{}.{}: {e}", b.module, b.name));
            assert!(matches!(ty, Type::Func(..)), "{}.{}: {ty}", b.module, b.name);
        }
    }

    #[test]
    fn each_function_is_registered_once() {
        let count = all().count();
        assert_eq!(INDEX.len(), count);
    }
}
