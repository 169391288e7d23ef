//! Statements: binds, resources and edges, `if`, loops, functions and includes.

use super::super::ast::{
    EdgeHalf, Expr, Ident, Param, ResEntry, ResEntryKind, Resource, Stmt, StmtKind, Type as AstType,
};
use super::super::span::Span;
use super::super::types::Type;
use super::deferred::Deferred;
use super::errors;
use super::kinds;
use super::unify::show;
use super::{Checker, ClassShape, Def, Instance};

/// What a resource or edge name may be.
const NAME: &str = "a resource name: `str` or `[]str`";

impl Checker<'_> {
    pub(super) fn walk(&mut self, stmts: &[Stmt]) {
        for stmt in stmts {
            self.stmt(stmt);
        }
    }

    fn stmt(&mut self, stmt: &Stmt) {
        match &stmt.kind {
            StmtKind::Bind { name, ty, value } => {
                self.bind_type(name, ty.as_ref(), value);
            }
            StmtKind::Resource(resource) => self.resource(resource),
            StmtKind::Edge(halves) => halves.iter().for_each(|h| self.edge_half(h)),
            StmtKind::If { cond, then, otherwise } => {
                self.condition(cond);
                self.walk(&then.stmts);
                if let Some(otherwise) = otherwise {
                    self.walk(&otherwise.stmts);
                }
            }
            StmtKind::For { body, .. } | StmtKind::ForKv { body, .. } => {
                self.loop_types(stmt);
                self.walk(&body.stmts);
            }
            StmtKind::Func { name, func } => {
                self.func_scheme(name, func);
            }
            StmtKind::Include { .. } => {
                self.include(stmt);
            }
            StmtKind::Panic { args } => {
                for arg in args {
                    let ty = self.infer(arg);
                    self.defer(Deferred::OneOf {
                        ty,
                        options: vec![Type::Bool, Type::Str],
                        default: None,
                        at: arg.span,
                        what: "a `panic` argument: `bool` or `str`",
                    });
                }
            }
            StmtKind::Class { .. } | StmtKind::Import { .. } => {}
        }
    }

    fn condition(&mut self, cond: &Expr) {
        let ty = self.infer(cond);
        self.expect(&ty, &Type::Bool, cond.span, None);
    }

    /// A bind's type, typed on its first use (or where it stands, if that comes first).
    pub(super) fn bind_type(&mut self, name: &Ident, annotation: Option<&AstType>, value: &Expr) -> Type {
        let key = (self.instance_for(name.span), name.span);
        if let Some(ty) = self.binds.get(&key) {
            return ty.clone();
        }
        let saved = self.enter(key.0, 0);
        let ty = self.fresh();
        self.binds.insert(key, ty.clone());
        self.bind_values.insert(value.span, format!("${}", name.name));
        let found = self.infer(value);
        match annotation {
            Some(annotation) => {
                let expected = self.ast_type(annotation);
                let origin =
                    Some((annotation.span, format!("expected `{}` because of this type", show(&expected))));
                self.expect(&found, &expected, value.span, origin);
                let _ = self.unifier.unify(&ty, &expected);
            }
            None => {
                let _ = self.unifier.unify(&ty, &found);
            }
        }
        self.leave(saved);
        ty
    }

    /// The types of a `for` loop's index and value, or a `forkv` loop's key and value.
    pub(super) fn loop_types(&mut self, stmt: &Stmt) -> (Type, Type) {
        if let Some(found) = self.lookup_up(&self.loops, stmt.span) {
            return found;
        }
        let key = (self.instance_for(stmt.span), stmt.span);
        let saved = self.enter(key.0, 0);
        let types = match &stmt.kind {
            StmtKind::For { list, .. } => {
                let elem = self.fresh();
                let ty = self.infer(list);
                self.expect(&ty, &Type::list(elem.clone()), list.span, None);
                (Type::Int, elem)
            }
            StmtKind::ForKv { map, .. } => {
                let (k, v) = (self.fresh(), self.fresh());
                let ty = self.infer(map);
                self.expect(&ty, &Type::map(k.clone(), v.clone()), map.span, None);
                (k, v)
            }
            _ => (self.fresh(), self.fresh()),
        };
        self.leave(saved);
        self.loops.insert(key, types.clone());
        types
    }

    fn name_is_str_or_list(&mut self, name: &Expr) {
        let ty = self.infer(name);
        self.defer(Deferred::OneOf {
            ty,
            options: vec![Type::Str, Type::list(Type::Str)],
            default: Some(Type::list(Type::Str)),
            at: name.span,
            what: NAME,
        });
    }

    fn resource(&mut self, resource: &Resource) {
        if resource.collect {
            self.infer(&resource.name);
        } else {
            self.name_is_str_or_list(&resource.name);
        }
        for entry in &resource.entries {
            self.res_entry(&resource.kind.name, entry);
        }
    }

    fn res_entry(&mut self, kind: &str, entry: &ResEntry) {
        if let Some(cond) = &entry.cond {
            self.condition(cond);
        }
        match &entry.kind {
            ResEntryKind::Param { name, value } => {
                let ty = self.infer(value);
                match kinds::param_type(kind, &name.name) {
                    Ok(Some(expected)) => {
                        let origin =
                            Some((name.span, format!("`{kind}` param `{}` is `{expected}`", name.name)));
                        self.expect(&ty, &expected, value.span, origin);
                    }
                    Ok(None) => {}
                    Err(names) => self.errors.push(
                        errors::plain(name.span, format!("`{kind}` has no param `{}`", name.name))
                            .with_label("unknown param")
                            .with_note(format!("its params are: {}", names.join(", "))),
                    ),
                }
            }
            ResEntryKind::Meta { name, value } => {
                let ty = self.infer(value);
                match kinds::meta_type(&name.name) {
                    Ok(expected) => {
                        let origin = Some((name.span, format!("`Meta:{}` is `{expected}`", name.name)));
                        self.expect(&ty, &expected, value.span, origin);
                    }
                    Err(names) => self.errors.push(
                        errors::plain(name.span, format!("there is no meta param `Meta:{}`", name.name))
                            .with_label("unknown meta param")
                            .with_note(format!("the meta params are: {}", names.join(", "))),
                    ),
                }
            }
            ResEntryKind::MetaStruct { value } => {
                let ty = self.infer(value);
                self.expect(&ty, &kinds::meta_struct(), value.span, None);
            }
            ResEntryKind::Edge { target, .. } => self.edge_half(target),
        }
    }

    fn edge_half(&mut self, half: &EdgeHalf) {
        self.name_is_str_or_list(&half.name);
    }

    /// Types the class body an `include` statement includes, once per include (and per
    /// instance the include is in); the new instance.
    pub(super) fn include(&mut self, stmt: &Stmt) -> Option<Instance> {
        let StmtKind::Include { name, args, .. } = &stmt.kind else { return None };
        let here = self.instance_for(stmt.span);
        if let Some(&done) = self.includes.get(&(here, stmt.span)) {
            return Some(done);
        }
        let class = match self.res.get(name.span) {
            Some(Def::Class { stmt }) => *stmt,
            Some(_) => {
                self.errors.push(errors::plain(name.span, format!("`{}` is not a class", name.name)));
                return None;
            }
            None => return None,
        };
        let StmtKind::Class { name: class_name, params, body } = &class.kind else { return None };
        if self.including.contains(&class.span) {
            let message = format!("class `{}` includes itself", class_name.name);
            self.errors.push(
                errors::plain(stmt.span, message).with_secondary(class_name.span, "class defined here"),
            );
            return None;
        }
        let saved = self.enter(here, 0);
        let Some(parent) = self.include_parent(name, class) else {
            self.leave(saved);
            return None;
        };
        let params = params.as_deref().unwrap_or(&[]);
        let args = args.as_deref().unwrap_or(&[]);
        let arg_types: Vec<Type> = args.iter().map(|arg| self.infer(arg)).collect();
        let shape = self.ground_shape(class.span, parent, &arg_types).filter(|_| params.len() == args.len());
        if let Some(&shared) = shape.as_ref().and_then(|shape| self.typed_classes.get(shape)) {
            self.class_args(shared, class_name, params, args, &arg_types);
            self.includes.insert((here, stmt.span), shared);
            self.leave(saved);
            return Some(shared);
        }
        let child = self.new_instance(class.span, parent);
        self.includes.insert((here, stmt.span), child);
        if let Some(shape) = shape {
            self.typed_classes.insert(shape, child);
        }
        if params.len() != args.len() {
            let what = format!("class `{}`", class_name.name);
            let origin = Some((class_name.span, "class defined here".to_string()));
            self.errors.push(errors::arity(&what, params.len(), args.len(), stmt.span, origin));
        }
        self.class_args(child, class_name, params, args, &arg_types);
        self.including.push(class.span);
        self.include_sites.push(stmt.span);
        self.instance = child;
        self.walk(&body.stmts);
        self.include_sites.pop();
        self.including.pop();
        self.leave(saved);
        Some(child)
    }

    /// The instance a class body included by `name` is typed inside: that of the include
    /// an `include inst.inner` goes through, else the nearest typing of the class's own
    /// enclosing class.
    fn include_parent(&mut self, name: &Ident, class: &Stmt) -> Option<Instance> {
        match self.res.through(name.span) {
            Some(through) => self.include(through),
            None => Some(self.instance_for(class.span)),
        }
    }

    /// The key under which an include shares the typing of an earlier include of the same
    /// class: its arguments' types, when they are fully known. A class body typed with the
    /// same argument types, inside the same instance, adds the same constraints again, so
    /// 10,000 includes of one class with arguments of one shape are typed once.
    fn ground_shape(&self, class: Span, parent: Instance, arg_types: &[Type]) -> Option<ClassShape> {
        let resolved: Vec<Type> = arg_types.iter().map(|t| self.unifier.resolve(t)).collect();
        let ground = resolved.iter().all(|t| self.unifier.free_vars(t).is_empty());
        ground.then_some((class, parent, resolved))
    }

    /// The include's arguments (typed as `arg_types`) against the class's params, in the
    /// instance `child`: new, or shared with an earlier include whose params are typed.
    fn class_args(
        &mut self,
        child: Instance,
        class: &Ident,
        params: &[Param],
        args: &[Expr],
        arg_types: &[Type],
    ) {
        for ((arg, arg_ty), param) in args.iter().zip(arg_types).zip(params) {
            let param_ty = match self.params.get(&(child, param.span)) {
                Some(shared) => shared.clone(),
                None => {
                    let ty = match &param.ty {
                        Some(t) => self.ast_type(t),
                        None => self.fresh(),
                    };
                    self.params.insert((child, param.span), ty.clone());
                    ty
                }
            };
            let origin =
                Some((param.span, format!("parameter `${}` of class `{}`", param.name.name, class.name)));
            self.expect(arg_ty, &param_ty, arg.span, origin);
        }
        for param in params.iter().skip(args.len()) {
            let ty = self.fresh();
            self.params.entry((child, param.span)).or_insert(ty);
        }
    }

    /// `$inst.x`: the bind `x` of the class body included as `inst`.
    pub(super) fn include_bind(&mut self, include: &Stmt, name: &Ident, value: &Expr) -> Type {
        let Some(child) = self.include(include) else { return self.fresh() };
        if let Some(ty) = self.binds.get(&(child, name.span)) {
            return ty.clone();
        }
        let saved = self.enter(child, 0);
        let ty = self.infer(value);
        self.leave(saved);
        ty
    }
}
