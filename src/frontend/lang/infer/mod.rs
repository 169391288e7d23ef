//! Type checking by unification. Every expression gets a type, with variables for what is
//! not known yet; constraints between them are solved as they come ([`unify`]), and those
//! that need a type to be known first (indexing, a field, a polymorphic builtin's own
//! inference, a resource name that is `str` or `[]str`) wait in [`deferred`] until it is.
//!
//! Binds are order-independent: binds and functions outside classes are typed first, each
//! after those it uses ([`order`]); anything else is typed on its first use. Unlike upstream,
//! which types a bind only where it is used, an unused bind is checked too, and one whose type
//! nothing decides is an error. A `func` statement is typed once and generalized: each use gets fresh
//! copies of its generic variables (upstream copies the function per call site, to the same
//! effect). A class body is typed once per `include`, as upstream copies it per include; each
//! include is an [`Instance`], and types inside a class are found per instance. Includes of
//! one class whose arguments have the same known types, in the same instance, share one
//! instance: typing the body again would add the same constraints.

mod deferred;
mod errors;
mod expr;
mod kinds;
mod library;
mod order;
mod places;
mod stmt;
mod unify;

use std::collections::HashMap;

use super::ast::{self, Func};
use super::diagnostic::Diagnostic;
use super::module::Module;
use super::span::Span;
use super::types::Type;
use deferred::Deferred;
use errors::Origin;
use unify::{Unifier, show};

use super::scope::{Def, Resolution};

pub use library::{Core, Library};

/// One typing of a class body: the program itself ([`ROOT`]), or an `include` of a class.
pub type Instance = u32;
pub const ROOT: Instance = 0;

/// The solved types of a program.
#[derive(Debug, Default)]
pub struct Types {
    exprs: HashMap<(Instance, Span), Type>,
    calls: HashMap<(Instance, Span), Type>,
    includes: HashMap<(Instance, Span), Instance>,
    /// The first instance's type of each span, for callers that do not follow instances.
    any_expr: HashMap<Span, Type>,
    any_call: HashMap<Span, Type>,
}

impl Types {
    /// The type of the expression at `span` (in the first include, inside a class).
    pub fn expr_type(&self, span: Span) -> Option<&Type> {
        self.exprs.get(&(ROOT, span)).or_else(|| self.any_expr.get(&span))
    }

    /// The function type of the call at `span`, as solved: `func(int, str) str`.
    pub fn call_type(&self, span: Span) -> Option<&Type> {
        self.calls.get(&(ROOT, span)).or_else(|| self.any_call.get(&span))
    }

    pub fn expr_type_in(&self, instance: Instance, span: Span) -> Option<&Type> {
        self.exprs.get(&(instance, span))
    }

    pub fn call_type_in(&self, instance: Instance, span: Span) -> Option<&Type> {
        self.calls.get(&(instance, span))
    }

    /// The instance of the class body included by the `include` statement at `span`, made
    /// from `instance` (the include's own).
    pub fn included(&self, instance: Instance, include: Span) -> Option<Instance> {
        self.includes.get(&(instance, include)).copied()
    }
}

/// Type-checks a program whose names are resolved.
pub fn check(module: &Module, res: &Resolution) -> Result<Types, Vec<Diagnostic>> {
    check_with(module, res, &Core)
}

/// [`check`] with the operators of `library`.
pub fn check_with(
    module: &Module,
    res: &Resolution,
    library: &dyn Library,
) -> Result<Types, Vec<Diagnostic>> {
    let programs: Vec<&ast::Program> = module.units.iter().map(|u| &u.program).collect();
    check_programs(&programs, res, library)
}

fn check_programs<'r>(
    programs: &[&'r ast::Program],
    res: &'r Resolution<'r>,
    library: &'r dyn Library,
) -> Result<Types, Vec<Diagnostic>> {
    let mut checker = Checker::new(res, library);
    for program in programs {
        places::enclosing_classes(&program.stmts, None, &mut checker.enclosing);
    }
    for program in programs {
        checker.type_in_order(&program.stmts);
    }
    for program in programs {
        checker.walk(&program.stmts);
    }
    checker.finish()
}

/// What a `func` statement's uses copy: its type, and the constraints on its generic
/// variables that wait for a use to know them.
#[derive(Clone)]
struct Scheme {
    ty: Type,
    deferred: Vec<Deferred>,
}

/// A class, the instance it is included in, and its arguments' types, all known.
type ClassShape = (Span, Instance, Vec<Type>);

struct InstanceInfo {
    class: Option<Span>,
    parent: Option<Instance>,
}

struct Checker<'r> {
    res: &'r Resolution<'r>,
    library: &'r dyn Library,
    unifier: Unifier,
    /// Where new variables are made: 0 outside functions, 1 in a `func` statement's body.
    level: u32,
    instance: Instance,
    instances: Vec<InstanceInfo>,
    /// The class statement each definition inside a class is in, by the definition's span.
    enclosing: HashMap<Span, Span>,
    /// By instance and the bind's name span.
    binds: HashMap<(Instance, Span), Type>,
    /// The values of binds, for messages: value span -> bind name.
    bind_values: HashMap<Span, String>,
    params: HashMap<(Instance, Span), Type>,
    loops: HashMap<(Instance, Span), (Type, Type)>,
    funcs: HashMap<(Instance, Span), Scheme>,
    includes: HashMap<(Instance, Span), Instance>,
    class_instances: HashMap<Span, Vec<Instance>>,
    /// The instance typed for each class, enclosing instance and argument types.
    typed_classes: HashMap<ClassShape, Instance>,
    /// The classes being typed, innermost last: a class that includes itself never ends.
    including: Vec<Span>,
    /// The include statements being typed, innermost last, named in errors inside classes.
    include_sites: Vec<Span>,
    deferred: Vec<Deferred>,
    exprs: Vec<((Instance, Span), Type)>,
    /// Variable uses: their type is decided where they are defined, and reported there.
    var_uses: std::collections::HashSet<Span>,
    /// The value each bound variable's use takes its type from, for messages.
    var_values: HashMap<Span, Span>,
    calls: Vec<((Instance, Span), Type)>,
    errors: Vec<Diagnostic>,
    /// How many errors there were before unknown types were reported: those are the ones
    /// an unknown type may be a consequence of.
    errors_before_unknowns: usize,
}

impl<'r> Checker<'r> {
    fn new(res: &'r Resolution<'r>, library: &'r dyn Library) -> Self {
        Checker {
            res,
            library,
            unifier: Unifier::new(),
            level: 0,
            instance: ROOT,
            instances: vec![InstanceInfo { class: None, parent: None }],
            enclosing: HashMap::new(),
            binds: HashMap::new(),
            bind_values: HashMap::new(),
            params: HashMap::new(),
            loops: HashMap::new(),
            funcs: HashMap::new(),
            includes: HashMap::new(),
            class_instances: HashMap::new(),
            typed_classes: HashMap::new(),
            including: Vec::new(),
            include_sites: Vec::new(),
            deferred: Vec::new(),
            exprs: Vec::new(),
            var_uses: Default::default(),
            var_values: HashMap::new(),
            calls: Vec::new(),
            errors: Vec::new(),
            errors_before_unknowns: usize::MAX,
        }
    }

    fn fresh(&mut self) -> Type {
        self.unifier.fresh(self.level)
    }

    fn record(&mut self, span: Span, ty: &Type) {
        self.exprs.push(((self.instance, span), ty.clone()));
    }

    fn record_call(&mut self, span: Span, ty: Type) {
        self.calls.push(((self.instance, span), ty));
    }

    /// `found`, the type of the expression at `at`, must be `expected`.
    fn expect(&mut self, found: &Type, expected: &Type, at: Span, origin: Origin) {
        let before = (self.unifier.resolve(expected), self.unifier.resolve(found));
        if let Err(conflict) = self.unifier.unify(found, expected) {
            let mut diagnostic = errors::mismatch(conflict, &before.0, &before.1, at, origin);
            if let Some(value) =
                self.var_values.get(&at).filter(|v| v.file != at.file || v.end < at.start || v.start > at.end)
            {
                let shown = unify::show(&before.1);
                diagnostic = diagnostic.with_secondary(*value, format!("`{shown}` because of this value"));
            }
            if let Some(site) = self.include_sites.last() {
                diagnostic = diagnostic.with_secondary(*site, "in the class included here");
            }
            self.errors.push(diagnostic);
        }
    }

    /// Whether an error was already reported inside `span` or around it (or names a place
    /// there): a type left unknown there is most likely its consequence.
    fn near_an_error(&self, span: Span) -> bool {
        let inside = |a: Span, b: Span| a.file == b.file && b.start <= a.start && a.end <= b.end;
        let near = |a: Span| inside(a, span) || inside(span, a);
        let before = self.errors_before_unknowns.min(self.errors.len());
        self.errors[..before].iter().any(|e| near(e.span) || e.secondary.iter().any(|(s, _)| near(*s)))
    }

    /// Switches to typing inside `instance` at `level`; returns what [`Checker::leave`] restores.
    fn enter(&mut self, instance: Instance, level: u32) -> (Instance, u32) {
        let saved = (self.instance, self.level);
        self.instance = instance;
        self.level = level;
        saved
    }

    fn leave(&mut self, saved: (Instance, u32)) {
        (self.instance, self.level) = saved;
    }

    /// The instance a definition at `span` is typed in, seen from the current one: the
    /// nearest enclosing typing of its class.
    fn instance_for(&self, span: Span) -> Instance {
        let Some(class) = self.enclosing.get(&span).copied() else { return ROOT };
        let mut at = Some(self.instance);
        while let Some(i) = at {
            let info = &self.instances[i as usize];
            if info.class == Some(class) {
                return i;
            }
            at = info.parent;
        }
        self.class_instances.get(&class).and_then(|v| v.last()).copied().unwrap_or(ROOT)
    }

    /// A value found by key in the current instance or the nearest one around it.
    fn lookup_up<T: Clone>(&self, map: &HashMap<(Instance, Span), T>, span: Span) -> Option<T> {
        let mut at = Some(self.instance);
        while let Some(i) = at {
            if let Some(found) = map.get(&(i, span)) {
                return Some(found.clone());
            }
            at = self.instances[i as usize].parent;
        }
        None
    }

    fn new_instance(&mut self, class: Span, parent: Instance) -> Instance {
        self.instances.push(InstanceInfo { class: Some(class), parent: Some(parent) });
        let id = self.instances.len() as Instance - 1;
        self.class_instances.entry(class).or_default().push(id);
        id
    }

    /// The type a user writes, as the checker speaks of it.
    fn ast_type(&self, ty: &ast::Type) -> Type {
        match &ty.kind {
            ast::TypeKind::Bool => Type::Bool,
            ast::TypeKind::Str => Type::Str,
            ast::TypeKind::Int => Type::Int,
            ast::TypeKind::Float => Type::Float,
            ast::TypeKind::Variant => Type::Variant,
            ast::TypeKind::List(t) => Type::list(self.ast_type(t)),
            ast::TypeKind::Map(k, v) => Type::map(self.ast_type(k), self.ast_type(v)),
            ast::TypeKind::Struct(fields) => {
                Type::Struct(fields.iter().map(|(n, t)| (n.name.clone(), self.ast_type(t))).collect())
            }
            ast::TypeKind::Func(args, ret) => {
                Type::func(args.iter().map(|(_, t)| self.ast_type(t)).collect(), self.ast_type(ret))
            }
        }
    }

    /// A function's type: its params (annotated or fresh), its body, its return annotation.
    fn function(&mut self, func: &Func) -> Type {
        let mut params = Vec::with_capacity(func.params.len());
        for param in &func.params {
            let ty = match &param.ty {
                Some(t) => self.ast_type(t),
                None => self.fresh(),
            };
            self.params.insert((self.instance, param.span), ty.clone());
            params.push(ty);
        }
        let body = self.infer(&func.body);
        let ret = match &func.ret {
            Some(annotation) => {
                let ret = self.ast_type(annotation);
                let origin = Some((annotation.span, format!("the return type is `{}`", show(&ret))));
                self.expect(&body, &ret, func.body.span, origin);
                ret
            }
            None => body,
        };
        Type::func(params, ret)
    }

    /// Solves what waits, reports what is still unknown, and hands out the solved types.
    fn finish(mut self) -> Result<Types, Vec<Diagnostic>> {
        self.solve();
        self.apply_defaults();
        self.solve();
        self.errors_before_unknowns = self.errors.len();
        let reported = self.report_unsolved();
        self.report_undetermined(&reported);
        if !self.errors.is_empty() {
            return Err(dedup(self.errors));
        }
        let mut types = Types {
            includes: std::mem::take(&mut self.includes),
            exprs: HashMap::with_capacity(self.exprs.len()),
            calls: HashMap::with_capacity(self.calls.len()),
            ..Types::default()
        };
        // A span outside classes is typed in the root instance, found there first.
        for (key, ty) in std::mem::take(&mut self.exprs) {
            let ty = self.unifier.resolve(&ty);
            if key.0 != ROOT {
                types.any_expr.entry(key.1).or_insert_with(|| ty.clone());
            }
            types.exprs.insert(key, ty);
        }
        for (key, ty) in std::mem::take(&mut self.calls) {
            let ty = self.unifier.resolve(&ty);
            if key.0 != ROOT {
                types.any_call.entry(key.1).or_insert_with(|| ty.clone());
            }
            types.calls.insert(key, ty);
        }
        Ok(types)
    }

    /// Each expression whose type has an unknown part nothing will ever decide, innermost
    /// only, and not where an unsolved constraint was already reported.
    fn report_undetermined(&mut self, reported: &[Span]) {
        let mut unknown: Vec<(Span, Type)> = Vec::new();
        for (key, ty) in &self.exprs {
            if self.var_uses.contains(&key.1) {
                continue;
            }
            let ty = self.unifier.resolve(ty);
            let vars = self.unifier.free_vars(&ty);
            if vars.iter().any(|v| !self.unifier.is_generic(*v)) {
                unknown.push((key.1, ty));
            }
        }
        unknown.sort_by_key(|(s, _)| (s.file, s.start, std::cmp::Reverse(s.end)));
        unknown.dedup_by_key(|(s, _)| *s);
        let inside = |a: Span, b: Span| a.file == b.file && b.start <= a.start && a.end <= b.end;
        for (k, (span, ty)) in unknown.iter().enumerate() {
            // Sorted by start, longest first: a span inside this one comes right after it.
            let has_inner = unknown.get(k + 1).is_some_and(|(next, _)| inside(*next, *span));
            let overlaps = reported.iter().any(|r| inside(*r, *span) || inside(*span, *r));
            if !has_inner && !overlaps && !self.near_an_error(*span) {
                let bind = self.bind_values.get(span).map(String::as_str);
                self.errors.push(errors::undetermined(ty, *span, bind));
            }
        }
    }
}

/// The same error found twice (a generic function's body, checked at each use) once.
fn dedup(errors: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = std::collections::HashSet::new();
    errors.into_iter().filter(|e| seen.insert((e.span, e.message.clone()))).collect()
}

#[cfg(test)]
mod tests;
