//! A small resolver of one file's names, for evaluation's tests until scope resolution is
//! in place: binds, functions, classes, params, loop variables, `$inst.x`, `$hostname` and
//! the core library.

use std::collections::HashMap;

use super::super::ast::*;
use super::super::funcs;
use super::super::span::Span;
use super::resolution::{Def, Resolution};

#[derive(Clone, Copy)]
enum Name<'m> {
    Bind(&'m Ident, &'m Expr),
    Param(Span, usize, &'m Param),
    Loop(&'m Stmt, usize),
    Func(&'m Ident, &'m Func),
    Class(&'m Stmt),
    Instance(&'m Stmt, &'m Stmt),
}

#[derive(Default)]
struct Scope<'m> {
    vars: HashMap<String, Name<'m>>,
    funcs: HashMap<String, Name<'m>>,
    classes: HashMap<String, Name<'m>>,
}

pub struct Resolver<'m> {
    scopes: Vec<Scope<'m>>,
    pub resolution: Resolution<'m>,
}

pub fn resolve(program: &Program) -> Resolution<'_> {
    let mut r = Resolver { scopes: Vec::new(), resolution: Resolution::default() };
    r.block(&program.stmts);
    r.resolution
}

impl<'m> Resolver<'m> {
    fn find(&self, pick: impl Fn(&Scope<'m>) -> Option<Name<'m>>) -> Option<Name<'m>> {
        self.scopes.iter().rev().find_map(pick)
    }

    fn def(&self, name: Name<'m>) -> Option<Def<'m>> {
        Some(match name {
            Name::Bind(name, value) => Def::Bind { name, ty: None, value },
            Name::Param(owner, index, param) => Def::Param { owner, index, param },
            Name::Loop(stmt, index) => Def::LoopVar { stmt, index },
            Name::Func(name, func) => Def::Func { name, func },
            Name::Class(stmt) => Def::Class { stmt },
            Name::Instance(..) => return None,
        })
    }

    fn use_var(&mut self, ident: &'m Ident) {
        let def = if ident.name == "hostname" {
            Some(Def::Hostname)
        } else if let Some((inst, field)) = ident.name.split_once('.') {
            match self.find(|s| s.vars.get(inst).copied()) {
                Some(Name::Instance(include, class)) => instance_bind(include, class, field),
                _ => None,
            }
        } else {
            self.find(|s| s.vars.get(&ident.name).copied()).and_then(|n| self.def(n))
        };
        if let Some(def) = def {
            self.resolution.uses.insert(ident.span, def);
        }
    }

    fn use_func(&mut self, ident: &'m Ident) {
        let def = match self.find(|s| s.funcs.get(&ident.name).copied()) {
            Some(name) => self.def(name),
            None => {
                let (module, name) = ident.name.rsplit_once('.').unwrap_or(("", &ident.name));
                funcs::lookup(module, name).map(Def::Builtin)
            }
        };
        if let Some(def) = def {
            self.resolution.uses.insert(ident.span, def);
        }
    }

    fn block(&mut self, stmts: &'m [Stmt]) {
        let mut scope = Scope::default();
        for stmt in stmts {
            match &stmt.kind {
                StmtKind::Bind { name, value, .. } => {
                    scope.vars.insert(name.name.clone(), Name::Bind(name, value));
                }
                StmtKind::Func { name, func } => {
                    scope.funcs.insert(name.name.clone(), Name::Func(name, func));
                }
                StmtKind::Class { name, .. } => {
                    scope.classes.insert(name.name.clone(), Name::Class(stmt));
                }
                _ => {}
            }
        }
        self.scopes.push(scope);
        for stmt in stmts {
            self.stmt(stmt);
        }
        self.scopes.pop();
    }

    fn with_params(&mut self, owner: Span, params: &'m [Param]) {
        let mut scope = Scope::default();
        for (i, p) in params.iter().enumerate() {
            scope.vars.insert(p.name.name.clone(), Name::Param(owner, i, p));
        }
        self.scopes.push(scope);
    }

    fn stmt(&mut self, stmt: &'m Stmt) {
        match &stmt.kind {
            StmtKind::Bind { value, .. } => self.expr(value),
            StmtKind::Func { func, .. } => self.func(stmt.span, func),
            StmtKind::Class { params, body, .. } => {
                self.with_params(stmt.span, params.as_deref().unwrap_or_default());
                self.block(&body.stmts);
                self.scopes.pop();
            }
            StmtKind::Resource(res) => {
                self.expr(&res.name);
                for entry in &res.entries {
                    if let Some(cond) = &entry.cond {
                        self.expr(cond);
                    }
                    match &entry.kind {
                        ResEntryKind::Param { value, .. }
                        | ResEntryKind::Meta { value, .. }
                        | ResEntryKind::MetaStruct { value } => self.expr(value),
                        ResEntryKind::Edge { target, .. } => self.expr(&target.name),
                    }
                }
            }
            StmtKind::Edge(halves) => halves.iter().for_each(|h| self.expr(&h.name)),
            StmtKind::If { cond, then, otherwise } => {
                self.expr(cond);
                self.block(&then.stmts);
                if let Some(o) = otherwise {
                    self.block(&o.stmts);
                }
            }
            StmtKind::For { index, value, list: over, body }
            | StmtKind::ForKv { key: index, value, map: over, body } => {
                self.expr(over);
                let mut scope = Scope::default();
                scope.vars.insert(index.name.clone(), Name::Loop(stmt, 0));
                scope.vars.insert(value.name.clone(), Name::Loop(stmt, 1));
                self.scopes.push(scope);
                self.block(&body.stmts);
                self.scopes.pop();
            }
            StmtKind::Include { name, args, alias } => {
                args.iter().flatten().for_each(|a| self.expr(a));
                if let Some(Name::Class(class)) = self.find(|s| s.classes.get(&name.name).copied()) {
                    self.resolution.uses.insert(name.span, Def::Class { stmt: class });
                    if let (Some(alias), Some(scope)) = (alias, self.scopes.last_mut()) {
                        scope.vars.insert(alias.name.clone(), Name::Instance(stmt, class));
                    }
                }
            }
            StmtKind::Import { .. } => {}
            StmtKind::Panic { args } => args.iter().for_each(|a| self.expr(a)),
        }
    }

    fn func(&mut self, owner: Span, func: &'m Func) {
        self.with_params(owner, &func.params);
        self.expr(&func.body);
        self.scopes.pop();
    }

    fn expr(&mut self, expr: &'m Expr) {
        match &expr.kind {
            ExprKind::Bool(_) | ExprKind::Str(_) | ExprKind::Int(_) | ExprKind::Float(_) => {}
            ExprKind::Interp(parts) => {
                for part in parts {
                    if let InterpPart::Var(ident) = part {
                        self.use_var(ident);
                    }
                }
            }
            ExprKind::List(items) => items.iter().for_each(|e| self.expr(e)),
            ExprKind::Map(entries) => entries.iter().for_each(|e| {
                self.expr(&e.key);
                self.expr(&e.value);
            }),
            ExprKind::Struct(fields) => fields.iter().for_each(|f| self.expr(&f.value)),
            ExprKind::Var(ident) => self.use_var(ident),
            ExprKind::Call { callee, args } => {
                match callee {
                    Callee::Name(ident) => self.use_func(ident),
                    Callee::Var(ident) => self.use_var(ident),
                    Callee::Lambda(lambda) => self.expr(lambda),
                }
                args.iter().for_each(|a| self.expr(a));
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            ExprKind::Not(e) => self.expr(e),
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
}

fn instance_bind<'m>(include: &'m Stmt, class: &'m Stmt, field: &str) -> Option<Def<'m>> {
    let StmtKind::Class { body, .. } = &class.kind else { return None };
    body.stmts.iter().find_map(|s| match &s.kind {
        StmtKind::Bind { name, value, .. } if name.name == field => {
            Some(Def::IncludeBind { include, name, value })
        }
        _ => None,
    })
}
