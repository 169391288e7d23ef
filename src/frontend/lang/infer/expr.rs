//! The type of each expression, and the constraints it puts on its parts.

use std::collections::HashMap;

use super::super::ast::{Callee, Expr, ExprKind, FieldInit, Func, Ident, InterpPart};
use super::super::funcs::Builtin;
use super::super::span::Span;
use super::super::types::Type;
use super::super::value::Val;
use super::deferred::Deferred;
use super::errors::{self, Origin};
use super::unify::show;
use super::{Checker, Def, Scheme};

impl Checker<'_> {
    /// The type of `expr`, recorded for its span.
    pub(super) fn infer(&mut self, expr: &Expr) -> Type {
        let ty = self.infer_kind(expr);
        self.record(expr.span, &ty);
        ty
    }

    fn infer_kind(&mut self, expr: &Expr) -> Type {
        match &expr.kind {
            ExprKind::Bool(_) => Type::Bool,
            ExprKind::Str(_) => Type::Str,
            ExprKind::Int(_) => Type::Int,
            ExprKind::Float(_) => Type::Float,
            ExprKind::Interp(parts) => self.interpolation(parts),
            ExprKind::List(items) => Type::list(self.same_types(items.iter(), "list element")),
            ExprKind::Map(entries) => {
                let key = self.same_types(entries.iter().map(|e| &e.key), "map key");
                Type::map(key, self.same_types(entries.iter().map(|e| &e.value), "map value"))
            }
            ExprKind::Struct(fields) => self.structure(fields),
            ExprKind::Var(ident) => self.var_use(expr.span, ident),
            ExprKind::Call { callee, args } => self.call(expr.span, callee, args),
            ExprKind::Binary { op, op_span, lhs, rhs } => match self.library.binary(*op) {
                Some(b) => {
                    let args = [lhs.as_ref(), rhs.as_ref()];
                    self.builtin_call(b, format!("operator `{}`", op.symbol()), *op_span, &args, expr.span)
                }
                None => self.unknown_operator(op.symbol(), *op_span),
            },
            ExprKind::Not(inner) => match self.library.not() {
                Some(b) => {
                    self.builtin_call(b, "operator `not`".into(), expr.span, &[inner.as_ref()], expr.span)
                }
                None => self.unknown_operator("not", expr.span),
            },
            ExprKind::Index { base, index } => self.index(base, index),
            ExprKind::Field { base, field } => self.field(expr.span, base, field, None),
            ExprKind::Except { expr: main, fallback } => self.except(main, fallback),
            ExprKind::If { cond, then, otherwise } => self.if_expr(cond, then, otherwise),
            ExprKind::Func(func) => self.function(func),
        }
    }

    fn structure(&mut self, fields: &[FieldInit]) -> Type {
        let mut out: Vec<(String, Type)> = Vec::with_capacity(fields.len());
        for field in fields {
            let ty = self.infer(&field.value);
            if out.iter().any(|(name, _)| *name == field.name.name) {
                let message = format!("field `{}` is given twice", field.name.name);
                self.errors.push(errors::plain(field.name.span, message));
            }
            out.push((field.name.name.clone(), ty));
        }
        Type::Struct(out)
    }

    fn var_use(&mut self, at: Span, ident: &Ident) -> Type {
        self.var_uses.insert(at);
        if let Some(Def::Bind { value, .. } | Def::IncludeBind { value, .. }) = self.res.get(ident.span) {
            self.var_values.insert(at, value.span);
        }
        self.var_type(ident)
    }

    fn index(&mut self, base: &Expr, index: &Expr) -> Type {
        let (base_ty, index_ty, result) = (self.infer(base), self.infer(index), self.fresh());
        self.defer(Deferred::Index {
            base: base_ty,
            index: index_ty,
            result: result.clone(),
            base_at: base.span,
            index_at: index.span,
        });
        result
    }

    fn if_expr(&mut self, cond: &Expr, then: &Expr, otherwise: &Expr) -> Type {
        let cond_ty = self.infer(cond);
        self.expect(&cond_ty, &Type::Bool, cond.span, None);
        let then_ty = self.infer(then);
        let other_ty = self.infer(otherwise);
        let origin = Some((then.span, format!("this branch is `{}`", self.shown_now(&then_ty))));
        self.expect(&other_ty, &then_ty, otherwise.span, origin);
        then_ty
    }

    fn shown_now(&self, ty: &Type) -> String {
        show(&self.unifier.resolve(ty))
    }

    fn unknown_operator(&mut self, symbol: &str, at: Span) -> Type {
        self.errors.push(errors::plain(at, format!("the operator `{symbol}` is not in the core library")));
        self.fresh()
    }

    /// The parts of an interpolated string are concatenated, so each is a `str`; but a
    /// string that is only `${x}` is `$x` itself, of any type, as upstream has it.
    fn interpolation(&mut self, parts: &[InterpPart]) -> Type {
        let mut written = parts.iter().filter(|p| !matches!(p, InterpPart::Lit(l) if l.is_empty()));
        if let (Some(InterpPart::Var(ident)), None) = (written.next(), written.next()) {
            let ty = self.var_type(ident);
            self.record(ident.span, &ty);
            self.var_uses.insert(ident.span);
            return ty;
        }
        for part in parts {
            if let InterpPart::Var(ident) = part {
                let ty = self.var_type(ident);
                self.record(ident.span, &ty);
                self.var_uses.insert(ident.span);
                let before = self.errors.len();
                self.expect(&ty, &Type::Str, ident.span, None);
                if let Some(e) = self.errors.get_mut(before) {
                    e.notes.push("interpolated values are joined as `str`; convert others first".into());
                }
            }
        }
        Type::Str
    }

    /// The one type of a list's elements (or a map's keys or values): the first one's.
    fn same_types<'e>(&mut self, items: impl Iterator<Item = &'e Expr>, what: &str) -> Type {
        let mut first: Option<(Type, Span)> = None;
        for item in items {
            let ty = self.infer(item);
            match &first {
                None => first = Some((ty, item.span)),
                Some((expected, at)) => {
                    let origin = Some((*at, format!("the first {what} is `{}`", self.shown_now(expected))));
                    let expected = expected.clone();
                    self.expect(&ty, &expected, item.span, origin);
                }
            }
        }
        first.map(|(t, _)| t).unwrap_or_else(|| self.fresh())
    }

    /// `$s->f`, or `$s->f <|> fallback` when `fallback` is given (its type).
    fn field(&mut self, at: Span, base: &Expr, field: &Ident, fallback: Option<(Type, Span)>) -> Type {
        let base_ty = self.infer(base);
        let result = match &fallback {
            Some((ty, _)) => ty.clone(),
            None => self.fresh(),
        };
        self.record(at, &result);
        self.defer(Deferred::Field {
            base: base_ty,
            field: field.name.trim_start_matches('$').to_string(),
            result: result.clone(),
            at,
            field_at: field.span,
            fallback: fallback.map(|(_, span)| span),
        });
        result
    }

    fn except(&mut self, main: &Expr, fallback: &Expr) -> Type {
        if let ExprKind::Field { base, field } = &main.kind {
            let fallback_ty = self.infer(fallback);
            return self.field(main.span, base, field, Some((fallback_ty, fallback.span)));
        }
        let main_ty = self.infer(main);
        let fallback_ty = self.infer(fallback);
        let origin = Some((main.span, format!("the other side is `{}`", self.shown_now(&main_ty))));
        self.expect(&fallback_ty, &main_ty, fallback.span, origin);
        main_ty
    }

    /// The type of a name's use.
    pub(super) fn var_type(&mut self, ident: &Ident) -> Type {
        let Some(def) = self.res.get(ident.span) else { return self.fresh() };
        match def {
            Def::Bind { name, ty, value } => self.bind_type(name, *ty, value),
            Def::Param { param, .. } => match self.lookup_up(&self.params, param.span) {
                Some(ty) => ty,
                None => self.fresh(),
            },
            Def::LoopVar { stmt, index } => {
                let (first, second) = self.loop_types(stmt);
                if *index == 0 { first } else { second }
            }
            Def::Func { name, func } => {
                let scheme = self.func_scheme(name, func);
                self.instantiate(&scheme)
            }
            Def::Class { .. } => {
                let message = format!("`${}` is a class, not a value", ident.name);
                self.errors
                    .push(errors::plain(ident.span, message).with_note("a class is used with `include`"));
                self.fresh()
            }
            Def::IncludeBind { include, name, value } => self.include_bind(include, name, value),
            Def::Builtin(builtin) => self.builtin_value(builtin, ident),
            Def::Hostname => Type::Str,
            Def::Const(val) => self.value_type(val),
        }
    }

    fn builtin_value(&mut self, builtin: &Builtin, ident: &Ident) -> Type {
        match Type::parse(builtin.sig) {
            Ok(sig) if builtin.infer.is_none() => self.unifier.fresh_signature(&sig, self.level),
            _ => {
                let message =
                    format!("`{}` decides its type at each call, so it must be called here", ident.name);
                self.errors.push(errors::plain(ident.span, message));
                self.fresh()
            }
        }
    }

    fn value_type(&mut self, val: &Val) -> Type {
        match val {
            Val::Bool(_) => Type::Bool,
            Val::Str(_) => Type::Str,
            Val::Int(_) => Type::Int,
            Val::Float(_) => Type::Float,
            Val::List(items) => match items.first() {
                Some(first) => Type::list(self.value_type(first)),
                None => Type::list(self.fresh()),
            },
            Val::Map(pairs) => match pairs.first() {
                Some((k, v)) => Type::map(self.value_type(k), self.value_type(v)),
                None => Type::map(self.fresh(), self.fresh()),
            },
            Val::Struct(fields) => {
                Type::Struct(fields.iter().map(|(n, v)| (n.clone(), self.value_type(v))).collect())
            }
            Val::Func(_) => self.fresh(),
        }
    }

    /// A `func` statement's type, typed (and generalized) on its first use.
    pub(super) fn func_scheme(&mut self, name: &Ident, func: &Func) -> Scheme {
        let key = (self.instance_for(name.span), name.span);
        if let Some(scheme) = self.funcs.get(&key) {
            return scheme.clone();
        }
        let placeholder = self.unifier.fresh(0);
        self.funcs.insert(key, Scheme { ty: placeholder.clone(), deferred: Vec::new() });
        let saved = self.enter(key.0, 1);
        let ty = self.function(func);
        self.solve();
        self.leave(saved);
        self.unifier.generalize(&ty, 0);
        let (generic, rest): (Vec<Deferred>, Vec<Deferred>) =
            std::mem::take(&mut self.deferred).into_iter().partition(|d| self.mentions_generic(d));
        self.deferred = rest;
        let scheme = Scheme { ty, deferred: generic };
        let _ = self.unifier.unify(&placeholder, &scheme.ty);
        self.funcs.insert(key, scheme.clone());
        scheme
    }

    fn mentions_generic(&self, d: &Deferred) -> bool {
        d.types().iter().any(|t| self.unifier.free_vars(t).iter().any(|v| self.unifier.is_generic(*v)))
    }

    /// A fresh copy of a generic function's type, with its waiting constraints.
    fn instantiate(&mut self, scheme: &Scheme) -> Type {
        let mut copies = HashMap::new();
        let level = self.level;
        let ty = self.unifier.instantiate(&scheme.ty, level, &mut copies);
        for d in &scheme.deferred {
            let copy = d.map_types(&mut |t| self.unifier.instantiate(t, level, &mut copies));
            self.deferred.push(copy);
        }
        ty
    }

    fn call(&mut self, at: Span, callee: &Callee, args: &[Expr]) -> Type {
        let args: Vec<&Expr> = args.iter().collect();
        let args = &args[..];
        match callee {
            Callee::Name(ident) => match self.res.get(ident.span) {
                Some(Def::Builtin(builtin)) => {
                    self.builtin_call(builtin, format!("`{}`", ident.name), ident.span, args, at)
                }
                Some(Def::Func { name, func }) => self.user_call(name, func, args, (at, ident.span)),
                _ => {
                    let ty = self.var_type(ident);
                    self.apply(ty, args, at, (format!("`{}`", ident.name), ident.span), Vec::new())
                }
            },
            Callee::Var(ident) => {
                let ty = self.var_type(ident);
                self.record(ident.span, &ty);
                self.var_uses.insert(ident.span);
                self.apply(ty, args, at, (format!("`${}`", ident.name), ident.span), Vec::new())
            }
            Callee::Lambda(lambda) => {
                let ty = self.infer(lambda);
                self.apply(ty, args, at, ("this function".into(), lambda.span), Vec::new())
            }
        }
    }

    /// A call of a `func` statement: a copy of its type, and of the constraints its body
    /// left waiting, tried at once; an error they find in the body names this call too.
    fn user_call(
        &mut self,
        name: &Ident,
        func: &Func,
        args: &[&Expr],
        (at, callee_at): (Span, Span),
    ) -> Type {
        let scheme = self.func_scheme(name, func);
        let (errors_before, waiting_before) = (self.errors.len(), self.deferred.len());
        let ty = self.instantiate(&scheme);
        let origins = func.params.iter().map(|p| Some((p.span, param_label(p, &name.name)))).collect();
        let what = format!("function `{}`", name.name);
        let ret = self.apply(ty, args, at, (what, callee_at), origins);
        for copy in self.deferred.split_off(waiting_before) {
            self.defer(copy);
        }
        let label = format!("in this call of `{}`", name.name);
        for error in &mut self.errors[errors_before..] {
            let outside =
                error.span.file != at.file || error.span.end <= at.start || error.span.start >= at.end;
            if outside {
                error.secondary.push((at, label.clone()));
            }
        }
        ret
    }

    /// A call of a function of type `callee`: arity, then each argument against its param.
    fn apply(
        &mut self,
        callee: Type,
        args: &[&Expr],
        at: Span,
        (what, callee_at): (String, Span),
        origins: Vec<Origin>,
    ) -> Type {
        let arg_types: Vec<Type> = args.iter().map(|a| self.infer(a)).collect();
        let ret = match self.unifier.shallow(&callee) {
            Type::Func(params, ret) => {
                if params.len() != args.len() {
                    let origin =
                        origins.first().cloned().flatten().map(|(s, _)| (s, "defined here".to_string()));
                    self.errors.push(errors::arity(&what, params.len(), args.len(), at, origin));
                }
                // With too few or too many, those given still meet their params: the
                // function's body learns its types from them.
                for (i, (param, arg)) in params.iter().zip(&arg_types).enumerate() {
                    let origin = origins.get(i).cloned().flatten().unwrap_or_else(|| {
                        (callee_at, format!("{what} takes `{}` here", self.shown_now(param)))
                    });
                    self.expect(arg, param, args[i].span, Some(origin));
                }
                *ret
            }
            Type::Var(_) => {
                let ret = self.fresh();
                let wanted = Type::func(arg_types.clone(), ret.clone());
                self.expect(&callee, &wanted, callee_at, None);
                ret
            }
            other => {
                let other = self.unifier.resolve(&other);
                self.errors.push(errors::not_a("a function to call", &other, callee_at));
                self.fresh()
            }
        };
        self.record_call(at, Type::func(arg_types, ret.clone()));
        ret
    }

    /// A call of a core library function (or operator) `builtin`.
    fn builtin_call(
        &mut self,
        builtin: &'static Builtin,
        what: String,
        callee_at: Span,
        args: &[&Expr],
        at: Span,
    ) -> Type {
        if builtin.infer.is_none() {
            let sig = match Type::parse(builtin.sig) {
                Ok(sig) => self.unifier.fresh_signature(&sig, self.level),
                Err(why) => {
                    self.errors.push(errors::plain(callee_at, format!("{what} has no usable type: {why}")));
                    self.fresh()
                }
            };
            return self.apply(sig, args, at, (what, callee_at), Vec::new());
        }
        let arg_types: Vec<Type> = args.iter().map(|a| self.infer(a)).collect();
        let ret = self.fresh();
        self.record_call(at, Type::func(arg_types.clone(), ret.clone()));
        self.defer(Deferred::Call {
            builtin,
            what,
            args: arg_types,
            consts: args.iter().map(|a| constant(a)).collect(),
            ret: ret.clone(),
            at,
            arg_spans: args.iter().map(|a| a.span).collect(),
        });
        ret
    }
}

fn param_label(param: &super::super::ast::Param, func: &str) -> String {
    format!("parameter `${}` of `{func}`", param.name.name)
}

/// The value of an argument known before running: a literal.
fn constant(expr: &Expr) -> Option<Val> {
    match &expr.kind {
        ExprKind::Bool(b) => Some(Val::Bool(*b)),
        ExprKind::Str(s) => Some(Val::Str(s.clone())),
        ExprKind::Int(i) => Some(Val::Int(*i)),
        ExprKind::Float(f) => Some(Val::Float(*f)),
        _ => None,
    }
}
