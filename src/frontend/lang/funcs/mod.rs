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

mod args;
mod convert;
mod core;
mod datetime;
mod deploy;
mod encoding;
mod example;
mod files;
mod fmt;
mod func_value;
mod golang_math;
mod golang_os;
mod golang_path;
mod golang_strconv;
mod golang_strings;
mod iter;
mod list;
mod map;
mod math;
mod net;
pub mod operators;
mod os;
mod regexp;
mod signature;
mod strings;
mod sys;
mod template;
#[cfg(test)]
pub(crate) mod testing;
mod unavailable;
mod value;
mod world;

pub use func_value::func_value;
pub use signature::fixed_type;
pub use unavailable::unavailable;

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
    /// How its value changes over time in a running program; `None`: it never does.
    pub changes: Option<Changes>,
}

/// How a function's value changes while the program runs: what its watcher follows. A
/// program compiled once (`mgmt graph`, a deploy's check) calls it once.
#[derive(Clone, Copy, Debug)]
pub enum Changes {
    /// The call again, when the file the function finds from its arguments changes
    /// (written, created, removed).
    File(fn(&HostInfo, &[Val]) -> Option<std::path::PathBuf>),
    /// The call again, every this many seconds, on the second.
    Tick(u64),
    /// Each line the shell command (the first argument) prints; unknown until the first.
    Lines,
    /// The value under `kv/<first argument>` in the cluster's key store (its value and the
    /// host that wrote it; `None`: unset), as this function gives it; unknown until read.
    Kv(fn(Option<(&str, &str)>) -> Val),
    /// The resources of the kind (the first argument) the other hosts export, as (name,
    /// host), as this function gives them; unknown until read.
    Exports(fn(&[(&str, &str)]) -> Val),
}

impl Builtin {
    /// The function, whose value changes as `changes` says.
    pub const fn changing(mut self, changes: Changes) -> Builtin {
        self.changes = Some(changes);
        self
    }
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
    /// The agent's prefix, where `value` resources store their values (`value.get_*` read
    /// them); `None` when no agent runs the program (`mgmt graph`, a deploy's check).
    pub state_dir: Option<PathBuf>,
}

/// Every module's functions. Each module file adds its slice here.
const MODULES: &[&[Builtin]] = &[
    core::FUNCS,
    fmt::FUNCS,
    strings::FUNCS,
    golang_strings::FUNCS,
    math::FUNCS,
    convert::FUNCS,
    list::FUNCS,
    map::FUNCS,
    iter::FUNCS,
    sys::FUNCS,
    os::FUNCS,
    datetime::FUNCS,
    deploy::FUNCS,
    template::FUNCS,
    regexp::FUNCS,
    encoding::FUNCS,
    net::FUNCS,
    example::FUNCS,
    golang_strconv::FUNCS,
    golang_math::FUNCS,
    golang_path::FUNCS,
    golang_os::FUNCS,
    world::FUNCS,
    value::FUNCS,
];

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

    /// The reference in docs/lang.md lists every function, with the operators.
    #[test]
    fn the_docs_list_every_function() {
        let docs = include_str!("../../../../docs/lang.md");
        let library = &docs[docs.find("## Core library").expect("docs/lang.md has a Core library section")..];
        let missing: Vec<String> = all()
            .map(
                |b| if b.module.is_empty() { b.name.to_string() } else { format!("{}.{}", b.module, b.name) },
            )
            .chain(operators::ALL.iter().map(|b| b.name.to_string()))
            .filter(|name| !library.contains(&format!("| `{name}` | ")))
            .collect();
        assert!(missing.is_empty(), "not in docs/lang.md: {missing:?}");
    }

    /// The functions upstream's examples and tests call most are all here, by their names.
    #[test]
    fn the_functions_programs_use_most_are_registered() {
        let used = "fmt.printf golang.template math.mod iter.map datetime.now deploy.readfile os.readfile \
            iter.range deploy.readfileabs deploy.abspath sys.getenv iter.reduce sys.load sys.hostname \
            os.is_family_debian list.lookup iter.flatten math.fortytwo iter.zip sys.env net.url_parser \
            iter.filter encoding.decode_json strings.trim_space os.file_exists os.args map.lookup \
            encoding.decode_json_flexible deploy.directory datetime.weekday convert.str_to_int \
            golang/strings.trim_space golang/strings.join golang/html.unescape_string golang/os.getenv \
            golang/os/exec.look_path sys.hasenv sys.uptime sys.cpu_count strings.substr regexp.match \
            math.pow map.values map.keys list.concat encoding.base64_encode datetime.format \
            convert.int_to_str datetime.print util.hostname_mapper example.answer .len .contains .concat .panic";
        for name in used.split_whitespace() {
            let (module, func) = name.rsplit_once('.').unwrap();
            assert!(lookup(module, func).is_some(), "{name} is not registered");
        }
    }

    #[test]
    fn each_function_is_registered_once() {
        let count = all().count();
        assert_eq!(INDEX.len(), count);
    }
}

/// Every function, called with arguments of every shape and count, answers a value or a
/// `CallError`: none panics.
#[cfg(test)]
mod no_panics {
    use super::super::value::{CallError, Val};
    use super::testing::{call, func_val, s};

    fn echo(args: Vec<Val>) -> Result<Val, CallError> {
        args.into_iter().next().ok_or_else(|| CallError::new("no argument"))
    }

    fn values() -> Vec<Val> {
        vec![
            Val::Int(i64::MAX),
            Val::Int(i64::MIN),
            Val::Int(-1),
            Val::Int(3),
            Val::Float(f64::NAN),
            Val::Float(-0.0),
            Val::Float(1e300),
            s(""),
            s("é%x{{ .A }}%"),
            s("/files/../x"),
            Val::Bool(true),
            Val::List(vec![]),
            Val::List(vec![Val::Int(1), s("a")]),
            Val::map_of([(s("k"), Val::Int(1))]),
            Val::Struct(vec![("a".into(), Val::Int(1))]),
            func_val(echo),
        ]
    }

    #[test]
    fn any_arguments_give_a_value_or_an_error() {
        let pool = values();
        let small = &pool[..8];
        for b in super::all().chain(super::operators::ALL.iter().copied()) {
            let _ = call(b, vec![]);
            for a in &pool {
                let _ = call(b, vec![a.clone()]);
                for c in &pool {
                    let _ = call(b, vec![a.clone(), c.clone()]);
                }
            }
            for a in small {
                for c in small {
                    for d in small {
                        let _ = call(b, vec![a.clone(), c.clone(), d.clone()]);
                    }
                }
            }
        }
    }
}
