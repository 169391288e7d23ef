//! Scope resolution: what each name in a program refers to, decided once, before types and
//! evaluation, so both read the same answer ([`Resolution`]) instead of each keeping its own
//! rules.
//!
//! The rules are upstream's. Variables, functions and classes are three separate namespaces.
//! Within one block, order does not matter: a bind may be used above the line that makes it.
//! An inner block (a class, an `if` or `for` body, a function) may shadow an outer name; one
//! block may not define a name twice. Nothing may depend on itself, directly or through
//! others. An imported file sees only the predeclared names and its own imports, and may
//! only define (bind, func, class, import): it has nothing to apply. A class inside another
//! (in its body, or `outer:inner` beside it) sees the outer class's names, and is included
//! from outside through an instance of the outer class (`include inst.inner`).

mod cycles;
mod nested;

use std::collections::HashMap;

use super::ast::{
    Block, Callee, EdgeHalf, Expr, ExprKind, Func, Ident, InterpPart, Param, ResEntryKind, Stmt, StmtKind,
};
use super::diagnostic::{Diagnostic, Stage};
use super::funcs::{self, Builtin};
use super::module::{ImportTarget, Module, UnitId};
use super::span::Span;
use super::value::Val;

/// What one name refers to.
#[derive(Debug, Clone)]
pub enum Def<'m> {
    Bind {
        name: &'m Ident,
        ty: Option<&'m super::ast::Type>,
        value: &'m Expr,
    },
    /// A parameter of a `func` statement (owner: the statement's span), a lambda (the lambda
    /// expression's span) or a class (the class statement's span).
    Param {
        owner: Span,
        index: usize,
        param: &'m Param,
    },
    /// The variables of `for` (0: the index, 1: the value) and `forkv` (0: key, 1: value).
    LoopVar {
        stmt: &'m Stmt,
        index: usize,
    },
    Func {
        name: &'m Ident,
        func: &'m Func,
    },
    /// A `StmtKind::Class` statement.
    Class {
        stmt: &'m Stmt,
    },
    /// `$inst.x`, where `include c as inst`: the bind `x` of that inclusion of `c`.
    IncludeBind {
        include: &'m Stmt,
        name: &'m Ident,
        value: &'m Expr,
    },
    Builtin(&'static Builtin),
    /// The predeclared `$hostname`.
    Hostname,
    /// A predeclared constant, `$const.res.file.state.exists`.
    Const(Val),
}

/// Every name use of a program and what it refers to.
#[derive(Debug, Default)]
pub struct Resolution<'m> {
    /// By the span of the use: an `ExprKind::Var` or `InterpPart::Var` ident, a
    /// `Callee::Name` or `Callee::Var` ident, an `Include`'s name.
    pub uses: HashMap<Span, Def<'m>>,
    /// `include inst.inner`: by the include's name span, the `include ... as inst` statement
    /// whose instance the nested class is included in.
    pub through: HashMap<Span, &'m Stmt>,
    /// By a class statement's span: the `outer:inner` classes written beside it, which are
    /// in its body's scope as if written there.
    pub beside: HashMap<Span, Vec<&'m Stmt>>,
}

impl<'m> Resolution<'m> {
    pub fn get(&self, use_span: Span) -> Option<&Def<'m>> {
        self.uses.get(&use_span)
    }

    /// The `include ... as inst` statement an `include inst.inner` goes through, by the
    /// include's name span.
    pub fn through(&self, name_span: Span) -> Option<&'m Stmt> {
        self.through.get(&name_span).copied()
    }
}

/// Resolves every name of every unit of `module`; all scope errors at once.
pub fn resolve(module: &Module) -> Result<Resolution<'_>, Vec<Diagnostic>> {
    let mut resolver = Resolver::new(module);
    for unit in 0..module.units.len() {
        resolver.unit(unit);
    }
    resolver.errors.extend(resolver.deps.cycles());
    if resolver.errors.is_empty() {
        Ok(Resolution { uses: resolver.uses, through: resolver.through, beside: resolver.nesting.beside })
    } else {
        resolver.errors.sort_by_key(|e| (e.span.file, e.span.start));
        Err(resolver.errors)
    }
}

/// The predeclared constants, by their name after `$const.`.
fn constant(name: &str) -> Option<Val> {
    let value = match name {
        "res.file.state.exists" => "exists",
        "res.file.state.absent" => "absent",
        _ => return int_constant(name).map(Val::Int),
    };
    Some(Val::Str(value.to_string()))
}

/// Upstream's numbered params: `tar`'s formats and `gzip`'s levels (Go's numbers).
fn int_constant(name: &str) -> Option<i64> {
    Some(match name {
        "res.tar.format.unknown" => 0,
        "res.tar.format.ustar" => 2,
        "res.tar.format.pax" => 4,
        "res.tar.format.gnu" => 8,
        "res.gzip.level.no_compression" => 0,
        "res.gzip.level.best_speed" => 1,
        "res.gzip.level.best_compression" => 9,
        "res.gzip.level.default_compression" => -1,
        "res.gzip.level.huffman_only" => -2,
        _ => return None,
    })
}

/// The names one block defines.
#[derive(Default)]
struct Frame<'m> {
    vars: HashMap<String, Def<'m>>,
    funcs: HashMap<String, Def<'m>>,
    classes: HashMap<String, Def<'m>>,
    imports: HashMap<String, ImportTarget>,
    /// `import "x" as *`: their names join this block's.
    stars: Vec<ImportTarget>,
    /// `include c as inst`: the include statement and the class statement.
    includes: HashMap<String, (&'m Stmt, &'m Stmt)>,
}

/// The place that defines a bind, function or class, for cycle detection.
type DefKey = Span;

struct Resolver<'m> {
    module: &'m Module,
    /// Each unit's top-level names, built once: an import reads them.
    unit_frames: Vec<Frame<'m>>,
    frames: Vec<Frame<'m>>,
    unit: UnitId,
    uses: HashMap<Span, Def<'m>>,
    /// The definitions being walked, innermost last: a use inside one depends on it.
    within: Vec<DefKey>,
    deps: cycles::Deps,
    nesting: nested::Nesting<'m>,
    through: HashMap<Span, &'m Stmt>,
    errors: Vec<Diagnostic>,
}

/// A class an `include` names, and the aliased include it goes through if it is nested.
type FoundClass<'m> = (&'m Stmt, Option<&'m Stmt>);

impl<'m> Resolver<'m> {
    fn new(module: &'m Module) -> Self {
        let mut resolver = Resolver {
            module,
            unit_frames: Vec::new(),
            frames: Vec::new(),
            unit: 0,
            uses: HashMap::new(),
            within: Vec::new(),
            deps: cycles::Deps::default(),
            nesting: nested::Nesting::default(),
            through: HashMap::new(),
            errors: Vec::new(),
        };
        for (id, unit) in module.units.iter().enumerate() {
            resolver.nesting.add(&unit.program.stmts, &mut resolver.errors);
            resolver.unit = id;
            let frame = resolver.frame_of(&unit.program.stmts);
            resolver.unit_frames.push(frame);
        }
        resolver
    }

    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.report(Diagnostic::new(Stage::Scope, span, message));
    }

    fn report(&mut self, diagnostic: Diagnostic) {
        self.errors.push(diagnostic);
    }

    fn unit(&mut self, unit: UnitId) {
        self.unit = unit;
        let program = &self.module.units[unit].program;
        if unit > 0 {
            self.only_definitions(&program.stmts);
        }
        let mut universe = Frame::default();
        universe.vars.insert("hostname".into(), Def::Hostname);
        self.frames = vec![universe, std::mem::take(&mut self.unit_frames[unit])];
        self.include_aliases(&program.stmts);
        self.stmts(&program.stmts);
        let top = self.frames.pop().expect("the unit's frame");
        self.unit_frames[unit] = top;
    }

    /// An imported file may only define names: whatever else it held would be applied by
    /// every program that imports it.
    fn only_definitions(&mut self, stmts: &[Stmt]) {
        for stmt in stmts {
            if !matches!(
                stmt.kind,
                StmtKind::Bind { .. }
                    | StmtKind::Func { .. }
                    | StmtKind::Class { .. }
                    | StmtKind::Import { .. }
            ) {
                self.report(
                    Diagnostic::new(
                        Stage::Scope,
                        stmt.span,
                        "an imported file may only define binds, functions and classes",
                    )
                    .with_label("not a definition")
                    .with_note("put it in a class, and `include` that class where it should apply"),
                );
            }
        }
    }

    /// The names `stmts` define, each once.
    fn frame_of(&mut self, stmts: &'m [Stmt]) -> Frame<'m> {
        let mut frame = Frame::default();
        let mut seen: HashMap<(u8, String), Span> = HashMap::new();
        for stmt in stmts {
            let (space, name, def) = match &stmt.kind {
                StmtKind::Bind { name, ty, value } => (0, name, Def::Bind { name, ty: ty.as_ref(), value }),
                StmtKind::Func { name, func } => (1, name, Def::Func { name, func }),
                StmtKind::Class { name, .. } => (2, name, Def::Class { stmt }),
                StmtKind::Import { path, .. } => {
                    self.import(&mut frame, path.span);
                    continue;
                }
                _ => continue,
            };
            if let Some(first) = seen.insert((space, name.name.clone()), name.span) {
                let what = ["variable", "function", "class"][space as usize];
                let message =
                    format!("the {what} `{}` is defined twice in this scope", shown(space, &name.name));
                self.report(
                    Diagnostic::new(Stage::Scope, name.span, message)
                        .with_label("defined again here")
                        .with_secondary(first, "first defined here"),
                );
                continue;
            }
            let map = match space {
                0 => &mut frame.vars,
                1 => &mut frame.funcs,
                _ => &mut frame.classes,
            };
            map.insert(name.name.clone(), def);
        }
        frame
    }

    fn import(&mut self, frame: &mut Frame<'m>, path_span: Span) {
        // The loader reported the imports it could not resolve.
        let Some(import) = self.module.units[self.unit].imports.get(&path_span) else { return };
        match &import.name {
            Some(name) => {
                frame.imports.insert(name.clone(), import.target.clone());
            }
            None => frame.stars.push(import.target.clone()),
        }
    }

    /// Registers `include c as inst` of a block, once its frame is pushed. An include may go
    /// through an alias registered after it (`include a.inner as b` above `include c as a`),
    /// so this repeats until nothing more is found.
    fn include_aliases(&mut self, stmts: &'m [Stmt]) {
        loop {
            let mut found = false;
            for stmt in stmts {
                let StmtKind::Include { name, alias: Some(alias), .. } = &stmt.kind else { continue };
                let known = self.frames.last().is_some_and(|f| f.includes.contains_key(&alias.name));
                if let (false, Ok((class, _))) = (known, self.find_class(&name.name)) {
                    let frame = self.frames.last_mut().expect("a block's frame");
                    frame.includes.insert(alias.name.clone(), (stmt, class));
                    found = true;
                }
            }
            if !found {
                return;
            }
        }
    }

    /// Walks a block in a frame of its own.
    fn block(&mut self, block: &'m Block, extra: Frame<'m>) {
        self.frames.push(extra);
        let frame = self.frame_of(&block.stmts);
        self.frames.push(frame);
        self.include_aliases(&block.stmts);
        self.stmts(&block.stmts);
        self.frames.pop();
        self.frames.pop();
    }

    fn stmts(&mut self, stmts: &'m [Stmt]) {
        for stmt in stmts {
            self.stmt(stmt);
        }
    }

    fn stmt(&mut self, stmt: &'m Stmt) {
        match &stmt.kind {
            StmtKind::Bind { name, value, .. } => {
                self.within(name.span, &format!("${}", name.name), |r| r.expr(value))
            }
            StmtKind::Resource(res) => {
                self.expr(&res.name);
                for entry in &res.entries {
                    if let Some(cond) = &entry.cond {
                        self.expr(cond);
                    }
                    match &entry.kind {
                        ResEntryKind::Param { value, .. } | ResEntryKind::Meta { value, .. } => {
                            self.expr(value)
                        }
                        ResEntryKind::MetaStruct { value } => self.expr(value),
                        ResEntryKind::Edge { target, .. } => self.edge_half(target),
                    }
                }
            }
            StmtKind::Edge(halves) => halves.iter().for_each(|h| self.edge_half(h)),
            StmtKind::If { cond, then, otherwise } => {
                self.expr(cond);
                self.block(then, Frame::default());
                if let Some(otherwise) = otherwise {
                    self.block(otherwise, Frame::default());
                }
            }
            StmtKind::For { index, value, list: over, body }
            | StmtKind::ForKv { key: index, value, map: over, body } => {
                self.expr(over);
                let mut vars = Frame::default();
                vars.vars.insert(index.name.clone(), Def::LoopVar { stmt, index: 0 });
                vars.vars.insert(value.name.clone(), Def::LoopVar { stmt, index: 1 });
                if index.name == value.name {
                    self.error(value.span, format!("`${}` names both loop variables", value.name));
                }
                self.block(body, vars);
            }
            StmtKind::Func { name, func } => {
                let key = name.span;
                self.within(key, &format!("{}()", name.name), |r| r.func(stmt.span, func));
            }
            StmtKind::Class { name, params, body } => {
                let frame = params_frame(stmt.span, params.as_deref().unwrap_or(&[]));
                self.within(name.span, &format!("class {}", name.name), |r| r.class(stmt, body, frame));
            }
            StmtKind::Include { name, args, .. } => {
                match self.find_class(&name.name) {
                    Ok((class, through)) => {
                        self.record(name.span, Def::Class { stmt: class });
                        if let Some(through) = through {
                            self.through.insert(name.span, through);
                        }
                    }
                    Err(Some(message)) => self.report(
                        Diagnostic::new(Stage::Scope, name.span, message).with_label("no class by this name"),
                    ),
                    Err(None) => self.unknown(name, "class", self.class_names()),
                }
                args.iter().flatten().for_each(|a| self.expr(a));
            }
            StmtKind::Import { .. } => {}
            StmtKind::Panic { args } => args.iter().for_each(|a| self.expr(a)),
        }
    }

    fn edge_half(&mut self, half: &'m EdgeHalf) {
        self.expr(&half.name);
    }

    /// A class body. An `outer:inner` class sees the names of the classes it is inside, as
    /// if it were written in their bodies.
    fn class(&mut self, stmt: &'m Stmt, body: &'m Block, params: Frame<'m>) {
        let ancestors = self.nesting.ancestors(stmt.span);
        for ancestor in &ancestors {
            let StmtKind::Class { params, body, .. } = &ancestor.kind else { continue };
            let mut outer = params_frame(ancestor.span, params.as_deref().unwrap_or(&[]));
            self.add_beside(ancestor.span, &mut outer);
            self.frames.push(outer);
            // Its duplicates were reported where it is walked itself.
            let reported = self.errors.len();
            let frame = self.frame_of(&body.stmts);
            self.errors.truncate(reported);
            self.frames.push(frame);
            self.include_aliases(&body.stmts);
        }
        let mut params = params;
        self.add_beside(stmt.span, &mut params);
        self.block(body, params);
        self.frames.truncate(self.frames.len() - 2 * ancestors.len());
    }

    /// The `outer:inner` classes of `class`, by their short names, into its body's scope.
    fn add_beside(&self, class: Span, frame: &mut Frame<'m>) {
        for inner in self.nesting.beside.get(&class).into_iter().flatten() {
            if let StmtKind::Class { name, .. } = &inner.kind {
                let short = name.name.rsplit_once(':').map_or(name.name.as_str(), |(_, s)| s);
                frame.classes.insert(short.to_string(), Def::Class { stmt: inner });
            }
        }
    }

    /// Walks the body of a definition, noting what it depends on.
    fn within(&mut self, key: DefKey, shown: &str, walk: impl FnOnce(&mut Self)) {
        self.deps.name(key, shown);
        self.within.push(key);
        walk(self);
        self.within.pop();
    }

    fn func(&mut self, owner: Span, func: &'m Func) {
        self.frames.push(params_frame(owner, &func.params));
        self.expr(&func.body);
        self.frames.pop();
    }

    fn expr(&mut self, expr: &'m Expr) {
        match &expr.kind {
            ExprKind::Bool(_) | ExprKind::Str(_) | ExprKind::Int(_) | ExprKind::Float(_) => {}
            ExprKind::Interp(parts) => {
                for part in parts {
                    if let InterpPart::Var(ident) = part {
                        self.var(ident);
                    }
                }
            }
            ExprKind::List(items) => items.iter().for_each(|e| self.expr(e)),
            ExprKind::Map(entries) => entries.iter().for_each(|e| {
                self.expr(&e.key);
                self.expr(&e.value);
            }),
            ExprKind::Struct(fields) => fields.iter().for_each(|f| self.expr(&f.value)),
            ExprKind::Var(ident) => self.var(ident),
            ExprKind::Call { callee, args } => {
                match callee {
                    Callee::Name(name) => self.call(name),
                    Callee::Var(ident) => self.var(ident),
                    Callee::Lambda(lambda) => self.expr(lambda),
                }
                args.iter().for_each(|a| self.expr(a));
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            ExprKind::Not(inner) => self.expr(inner),
            ExprKind::Index { base, index } => {
                self.expr(base);
                self.expr(index);
            }
            ExprKind::Field { base, .. } => self.expr(base),
            ExprKind::Except { expr, fallback } => {
                self.expr(expr);
                self.expr(fallback);
            }
            ExprKind::If { cond, then, otherwise } => {
                self.expr(cond);
                self.expr(then);
                self.expr(otherwise);
            }
            ExprKind::Func(func) => self.func(expr.span, func),
        }
    }

    /// Records a use, and the dependency of the definition being walked on what it uses.
    fn record(&mut self, use_span: Span, def: Def<'m>) {
        if let Some(key) = def_key(&def)
            && let Some(&from) = self.within.last()
        {
            self.deps.edge(from, key, use_span);
        }
        self.uses.insert(use_span, def);
    }

    fn var(&mut self, ident: &'m Ident) {
        match self.find_var(&ident.name) {
            Ok(def) => self.record(ident.span, def),
            Err(None) => self.unknown(ident, "variable", self.var_names()),
            Err(Some(message)) => {
                self.error(ident.span, message);
            }
        }
    }

    fn call(&mut self, name: &'m Ident) {
        match self.find_func(&name.name) {
            Some(def) => self.record(name.span, def),
            None => self.unknown(name, "function", self.func_names()),
        }
    }

    fn unknown(&mut self, ident: &Ident, what: &str, known: Vec<String>) {
        let written = if what == "variable" { format!("${}", ident.name) } else { ident.name.clone() };
        let mut diagnostic = Diagnostic::new(Stage::Scope, ident.span, format!("unknown {what} `{written}`"))
            .with_label("not found in this scope");
        if let Some(close) = closest(&ident.name, &known) {
            let close = if what == "variable" { format!("${close}") } else { close };
            diagnostic = diagnostic.with_note(format!("did you mean `{close}`?"));
        } else if what == "function" && ident.name.contains('.') {
            let module = ident.name.rsplit_once('.').map_or("", |(m, _)| m);
            diagnostic = diagnostic.with_note(format!("is `{module}` imported? (`import \"{module}\"`)"));
        }
        self.report(diagnostic);
    }

    /// A variable by name: `x`, `mod.x`, `inst.x`, `const.a.b`. `Err(Some(why))` when the
    /// prefix was found and the rest was not.
    fn find_var(&self, name: &str) -> Result<Def<'m>, Option<String>> {
        if let Some(rest) = name.strip_prefix("const.") {
            return constant(rest)
                .map(Def::Const)
                .ok_or_else(|| Some(format!("there is no constant `$const.{rest}`")));
        }
        let Some((head, rest)) = name.split_once('.') else {
            return self.find_plain_var(name).ok_or(None);
        };
        for frame in self.frames.iter().rev() {
            if let Some((include, class)) = frame.includes.get(head) {
                return include_bind(include, class, rest)
                    .ok_or_else(|| Some(format!("the class included as `{head}` has no bind `${rest}`")));
            }
            if let Some(target) = frame.imports.get(head) {
                return match target {
                    ImportTarget::Unit(unit) => self.unit_var(*unit, rest).ok_or_else(|| {
                        Some(format!("the module imported as `{head}` has no variable `${rest}`"))
                    }),
                    ImportTarget::Core(module) => {
                        Err(Some(format!("the core module `{module}` has no variables")))
                    }
                };
            }
        }
        Err(None)
    }

    /// A variable of the scope, or of a file imported `as *` into it.
    fn find_plain_var(&self, name: &str) -> Option<Def<'m>> {
        self.frames.iter().rev().find_map(|f| {
            f.vars.get(name).cloned().or_else(|| {
                f.stars.iter().find_map(|t| match t {
                    ImportTarget::Unit(unit) => self.unit_var(*unit, name),
                    ImportTarget::Core(_) => None,
                })
            })
        })
    }

    fn unit_var(&self, unit: UnitId, name: &str) -> Option<Def<'m>> {
        let frame = if unit == self.unit { self.frames.get(1) } else { self.unit_frames.get(unit) };
        frame?.vars.get(name).cloned()
    }

    /// A function by name: user functions of the scope, then `as *` imports, then the
    /// functions every program has; `mod.f` in an imported module.
    fn find_func(&self, name: &str) -> Option<Def<'m>> {
        if let Some((head, rest)) = name.split_once('.') {
            let target = self.frames.iter().rev().find_map(|f| f.imports.get(head))?;
            return self.func_in(target, rest);
        }
        for frame in self.frames.iter().rev() {
            if let Some(def) = frame.funcs.get(name) {
                return Some(def.clone());
            }
            if let Some(def) = frame.stars.iter().find_map(|t| self.func_in(t, name)) {
                return Some(def);
            }
        }
        funcs::lookup("", name).map(Def::Builtin)
    }

    fn func_in(&self, target: &ImportTarget, name: &str) -> Option<Def<'m>> {
        match target {
            ImportTarget::Core(module) => match name.rsplit_once('.') {
                // `golang.strings.to_upper` after `import "golang"`.
                Some((sub, f)) => funcs::lookup(&format!("{module}/{}", sub.replace('.', "/")), f),
                None => funcs::lookup(module, name),
            }
            .map(Def::Builtin),
            ImportTarget::Unit(unit) => {
                let frame = if *unit == self.unit { self.frames.get(1) } else { self.unit_frames.get(*unit) };
                frame?.funcs.get(name).cloned()
            }
        }
    }

    /// A class by name: `c`, `mod.c` in an imported module, or `inst.inner`, a class nested
    /// in the class included as `inst`. `Err(Some(why))` when a dotted name's head was not
    /// what it needs to be.
    fn find_class(&self, name: &str) -> Result<FoundClass<'m>, Option<String>> {
        let Some((head, rest)) = name.split_once('.') else {
            return self.find_plain_class(name).map(|class| (class, None)).ok_or(None);
        };
        for frame in self.frames.iter().rev() {
            if let Some(&(include, class)) = frame.includes.get(head) {
                let nested = self.nesting.children.get(&class.span).and_then(|c| c.get(rest));
                return nested.map(|inner| (*inner, Some(include))).ok_or_else(|| {
                    Some(format!(
                        "the class `{}` included as `{head}` has no class `{rest}`",
                        class_name(class)
                    ))
                });
            }
            if let Some(target) = frame.imports.get(head) {
                let ImportTarget::Unit(unit) = target else {
                    return Err(Some(format!("the core module `{head}` has no classes")));
                };
                let frame = if *unit == self.unit { self.frames.get(1) } else { self.unit_frames.get(*unit) };
                return match frame.and_then(|f| f.classes.get(rest)) {
                    Some(Def::Class { stmt }) => Ok((*stmt, None)),
                    _ => Err(None),
                };
            }
        }
        Err(Some(format!(
            "`{head}` is not the alias of an include (`include c as {head}`) nor an imported module, so it has no class `{rest}`"
        )))
    }

    fn find_plain_class(&self, name: &str) -> Option<&'m Stmt> {
        let def = self.frames.iter().rev().find_map(|f| {
            f.classes.get(name).cloned().or_else(|| {
                f.stars.iter().find_map(|t| match t {
                    ImportTarget::Unit(unit) => self.unit_frames.get(*unit)?.classes.get(name).cloned(),
                    ImportTarget::Core(_) => None,
                })
            })
        });
        match def {
            Some(Def::Class { stmt }) => Some(stmt),
            _ => None,
        }
    }

    fn var_names(&self) -> Vec<String> {
        self.frames.iter().flat_map(|f| f.vars.keys().cloned()).collect()
    }

    fn func_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.frames.iter().flat_map(|f| f.funcs.keys().cloned()).collect();
        for frame in &self.frames {
            for (alias, target) in &frame.imports {
                if let ImportTarget::Core(module) = target {
                    names.extend(
                        funcs::all().filter(|b| b.module == module).map(|b| format!("{alias}.{}", b.name)),
                    );
                }
            }
        }
        names.extend(funcs::all().filter(|b| b.module.is_empty()).map(|b| b.name.to_string()));
        names
    }

    fn class_names(&self) -> Vec<String> {
        self.frames.iter().flat_map(|f| f.classes.keys().cloned()).collect()
    }
}

/// The frame of a function's or class's parameters.
fn params_frame<'m>(owner: Span, params: &'m [Param]) -> Frame<'m> {
    let mut frame = Frame::default();
    for (index, param) in params.iter().enumerate() {
        frame.vars.insert(param.name.name.clone(), Def::Param { owner, index, param });
    }
    frame
}

fn class_name(class: &Stmt) -> &str {
    match &class.kind {
        StmtKind::Class { name, .. } => &name.name,
        _ => "",
    }
}

fn include_bind<'m>(include: &'m Stmt, class: &'m Stmt, name: &str) -> Option<Def<'m>> {
    let StmtKind::Class { body, .. } = &class.kind else { return None };
    body.stmts.iter().find_map(|stmt| match &stmt.kind {
        StmtKind::Bind { name: bound, value, .. } if bound.name == name => {
            Some(Def::IncludeBind { include, name: bound, value })
        }
        _ => None,
    })
}

/// The definition a use depends on, for cycle detection.
fn def_key(def: &Def) -> Option<DefKey> {
    match def {
        Def::Bind { name, .. } | Def::Func { name, .. } | Def::IncludeBind { name, .. } => Some(name.span),
        Def::Class { stmt } => match &stmt.kind {
            StmtKind::Class { name, .. } => Some(name.span),
            _ => None,
        },
        _ => None,
    }
}

fn shown(space: u8, name: &str) -> String {
    match space {
        0 => format!("${name}"),
        1 => format!("{name}()"),
        _ => name.to_string(),
    }
}

/// The known name closest to a misspelled one, if it is close.
fn closest(name: &str, known: &[String]) -> Option<String> {
    let limit = name.chars().count().div_ceil(3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, k)| k.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = if ca == *cb { prev } else { prev + 1 };
            prev = row[j + 1];
            row[j + 1] = cost.min(row[j] + 1).min(prev + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
