//! Constraints that wait until a type is known: what an index or a field gives depends on
//! the type indexed, a polymorphic builtin decides its type from its arguments, a resource
//! name is `str` or `[]str`. They are retried until none makes progress; those left then
//! take their default, if they have one, or are reported as undecided.

use std::collections::HashMap;

use super::super::funcs::{Builtin, CallSite};
use super::super::span::Span;
use super::super::types::Type;
use super::super::value::Val;
use super::Checker;
use super::errors;
use super::unify::{show, written_vars};

#[derive(Clone)]
pub enum Deferred {
    /// `base[index]` of type `result`.
    Index { base: Type, index: Type, result: Type, base_at: Span, index_at: Span },
    /// `base->field` of type `result`; with a fallback (`base->field <|> x`), a missing
    /// field is no error and the result is the fallback's.
    Field { base: Type, field: String, result: Type, at: Span, field_at: Span, fallback: Option<Span> },
    /// A call of a builtin that infers its own type.
    Call {
        builtin: &'static Builtin,
        what: String,
        args: Vec<Type>,
        consts: Vec<Option<Val>>,
        ret: Type,
        at: Span,
        arg_spans: Vec<Span>,
    },
    /// One of a few types, `default` when nothing decides.
    OneOf { ty: Type, options: Vec<Type>, default: Option<Type>, at: Span, what: &'static str },
}

impl Deferred {
    /// The same constraint on other types (a generic function's, copied for a use).
    pub fn map_types(&self, f: &mut dyn FnMut(&Type) -> Type) -> Deferred {
        let mut out = self.clone();
        match &mut out {
            Deferred::Index { base, index, result, .. } => {
                *base = f(base);
                *index = f(index);
                *result = f(result);
            }
            Deferred::Field { base, result, .. } => {
                *base = f(base);
                *result = f(result);
            }
            Deferred::Call { args, ret, .. } => {
                args.iter_mut().for_each(|t| *t = f(t));
                *ret = f(ret);
            }
            Deferred::OneOf { ty, .. } => *ty = f(ty),
        }
        out
    }

    pub fn types(&self) -> Vec<&Type> {
        match self {
            Deferred::Index { base, index, result, .. } => vec![base, index, result],
            Deferred::Field { base, result, .. } => vec![base, result],
            Deferred::Call { args, ret, .. } => args.iter().chain([ret]).collect(),
            Deferred::OneOf { ty, .. } => vec![ty],
        }
    }

    fn span(&self) -> Span {
        match self {
            Deferred::Index { base_at, index_at, .. } => base_at.to(*index_at),
            Deferred::Field { at, .. } | Deferred::Call { at, .. } | Deferred::OneOf { at, .. } => *at,
        }
    }
}

/// Where the checker's unknowns are numbered from when a builtin sees them.
const ASIDE: u32 = 1 << 30;

/// Whether a constraint was settled (solved or reported) or must wait.
enum Step {
    Done,
    Wait,
}

impl Checker<'_> {
    /// Adds a constraint, solved at once if it can be.
    pub(super) fn defer(&mut self, d: Deferred) {
        if let Step::Wait = self.try_deferred(&d) {
            self.deferred.push(d);
        }
    }

    /// Retries every waiting constraint until none makes progress.
    pub(super) fn solve(&mut self) {
        loop {
            let pending = std::mem::take(&mut self.deferred);
            let mut progress = false;
            for d in pending {
                match self.try_deferred(&d) {
                    Step::Done => progress = true,
                    Step::Wait => self.deferred.push(d),
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// Gives each waiting one-of constraint its default.
    pub(super) fn apply_defaults(&mut self) {
        for d in std::mem::take(&mut self.deferred) {
            match &d {
                Deferred::OneOf { ty, default: Some(default), .. } => {
                    let _ = self.unifier.unify(ty, default);
                }
                _ => self.deferred.push(d),
            }
        }
    }

    /// Reports every constraint still waiting; the places reported.
    pub(super) fn report_unsolved(&mut self) -> Vec<Span> {
        let mut spans = Vec::new();
        for d in std::mem::take(&mut self.deferred) {
            if d.types().iter().all(|t| self.unifier.free_vars(t).iter().all(|v| self.unifier.is_generic(*v)))
            {
                continue;
            }
            if self.near_an_error(d.span()) {
                continue;
            }
            spans.push(d.span());
            let diagnostic = match &d {
                Deferred::Index { base, base_at, .. } => errors::plain(
                    *base_at,
                    format!("cannot determine the type of this indexed value: `{}`", self.shown(base)),
                )
                .with_label("is it a list or a map?"),
                Deferred::Field { field, at, .. } => errors::plain(
                    *at,
                    format!("cannot determine the type of the struct whose field `{field}` is read"),
                )
                .with_label("the struct's type is not known here"),
                Deferred::Call { what, args, ret, at, .. } => {
                    let shown: Vec<String> = args.iter().map(|t| self.shown(t)).collect();
                    errors::plain(*at, format!("cannot determine the type of this call to {what}"))
                        .with_label(format!(
                            "called with ({}), returning `{}`",
                            shown.join(", "),
                            self.shown(ret)
                        ))
                }
                Deferred::OneOf { ty, at, what, .. } => {
                    errors::plain(*at, format!("cannot determine the type of {what}"))
                        .with_label(format!("its type is `{}`", self.shown(ty)))
                }
            };
            self.errors
                .push(diagnostic.with_note("give a type to the value it comes from, as in `$x []str = ...`"));
        }
        spans
    }

    fn shown(&self, ty: &Type) -> String {
        show(&self.unifier.resolve(ty))
    }

    fn try_deferred(&mut self, d: &Deferred) -> Step {
        match d {
            Deferred::Index { base, index, result, base_at, index_at } => {
                self.try_index(base, index, result, *base_at, *index_at)
            }
            Deferred::Field { base, field, result, at, field_at, fallback } => {
                self.try_field(base, field, result, (*at, *field_at), *fallback)
            }
            Deferred::Call { builtin, what, args, consts, ret, at, arg_spans } => {
                self.try_call(builtin, what, (args, arg_spans), consts, ret, *at)
            }
            Deferred::OneOf { ty, options, at, what, .. } => self.try_one_of(ty, options, *at, what),
        }
    }

    fn try_index(&mut self, base: &Type, index: &Type, result: &Type, base_at: Span, index_at: Span) -> Step {
        match self.unifier.shallow(base) {
            Type::Var(_) => return Step::Wait,
            Type::List(elem) => {
                self.expect(
                    index,
                    &Type::Int,
                    index_at,
                    Some((base_at, "a list is indexed by `int`".into())),
                );
                self.expect(&elem, result, base_at.to(index_at), None);
            }
            Type::Map(key, value) => {
                let origin = Some((base_at, format!("the map's keys are `{}`", self.shown(&key))));
                self.expect(index, &key, index_at, origin);
                self.expect(&value, result, base_at.to(index_at), None);
            }
            Type::Variant => {}
            other => {
                let other = self.unifier.resolve(&other);
                self.errors.push(
                    errors::not_a("a list or a map", &other, base_at)
                        .with_note("only lists and maps can be indexed"),
                );
            }
        }
        Step::Done
    }

    fn try_field(
        &mut self,
        base: &Type,
        field: &str,
        result: &Type,
        (at, field_at): (Span, Span),
        fallback: Option<Span>,
    ) -> Step {
        match self.unifier.shallow(base) {
            Type::Var(_) => return Step::Wait,
            Type::Struct(fields) => match fields.iter().find(|(name, _)| name == field) {
                Some((_, ty)) => {
                    let at = fallback.unwrap_or(at);
                    let origin = Some((field_at, format!("field `{field}` is `{}`", self.shown(ty))));
                    self.expect(result, ty, at, origin);
                }
                None if fallback.is_some() => {}
                None => {
                    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
                    let base = self.shown(base);
                    self.errors.push(
                        errors::plain(field_at, format!("no field `{field}` on type `{base}`"))
                            .with_label("unknown field")
                            .with_note(format!("the fields are: {}", names.join(", "))),
                    );
                }
            },
            Type::Variant => {}
            other => {
                let other = self.unifier.resolve(&other);
                self.errors.push(errors::not_a(&format!("a struct with a field `{field}`"), &other, at));
            }
        }
        Step::Done
    }

    fn try_call(
        &mut self,
        builtin: &Builtin,
        what: &str,
        (args, arg_spans): (&[Type], &[Span]),
        consts: &[Option<Val>],
        ret: &Type,
        at: Span,
    ) -> Step {
        let Some(infer) = builtin.infer else { return Step::Done };
        // The checker's unknowns are shown to the builtin numbered from ASIDE, so that they
        // cannot be taken for the builtin's own `?1`.
        let mut shown = HashMap::new();
        let mut back = HashMap::new();
        for t in args.iter().chain([ret]) {
            for v in self.unifier.free_vars(t) {
                let n = ASIDE + shown.len() as u32;
                shown.entry(v).or_insert_with(|| {
                    back.insert(n, Type::Var(v));
                    Type::Var(n)
                });
            }
        }
        let aside = |this: &mut Self, t: &Type| {
            let t = this.unifier.resolve(t);
            this.unifier.substitute(&t, &shown)
        };
        let known: Vec<Type> = args.iter().map(|t| aside(self, t)).collect();
        let known_ret = aside(self, ret);
        let site = CallSite { args: &known, consts, ret: &known_ret };
        let inferred = infer(&site).map(|found| found.map(|t| self.own_variables(&t, back)));
        match inferred {
            Ok(None) => Step::Wait,
            Ok(Some(Type::Func(params, result))) if params.len() == args.len() => {
                for (i, (param, arg)) in params.iter().zip(args).enumerate() {
                    let origin = Some((at, format!("{what} takes `{}` here", show(param))));
                    self.expect(arg, param, arg_spans.get(i).copied().unwrap_or(at), origin);
                }
                self.expect(&result, ret, at, None);
                Step::Done
            }
            Ok(Some(Type::Func(params, _))) => {
                self.errors.push(errors::arity(what, params.len(), args.len(), at, None));
                Step::Done
            }
            Ok(Some(other)) => {
                self.errors
                    .push(errors::plain(at, format!("{what} has the type `{other}`, not a function's")));
                Step::Done
            }
            Err(why) => {
                self.errors.push(errors::plain(at, why).with_label(format!("in this call of {what}")));
                Step::Done
            }
        }
    }

    /// The type a builtin inferred, its variables made the checker's: those it was shown
    /// (`back`) are the checker's again, any other (a `?1` of its own) a fresh one.
    fn own_variables(&mut self, ty: &Type, mut back: HashMap<u32, Type>) -> Type {
        for v in written_vars(ty) {
            if let std::collections::hash_map::Entry::Vacant(slot) = back.entry(v) {
                slot.insert(self.unifier.fresh(self.level));
            }
        }
        self.unifier.substitute(ty, &back)
    }

    fn try_one_of(&mut self, ty: &Type, options: &[Type], at: Span, what: &str) -> Step {
        let resolved = self.unifier.resolve(ty);
        if let Type::Var(_) = resolved {
            return Step::Wait;
        }
        let same_shape =
            options.iter().find(|o| std::mem::discriminant(*o) == std::mem::discriminant(&resolved));
        match same_shape.map(|o| self.unifier.unify(ty, o)) {
            Some(Ok(())) => {}
            _ => self.errors.push(
                errors::plain(at, format!("expected {what}, found `{}`", show(&resolved)))
                    .with_label(format!("this is `{}`", show(&resolved))),
            ),
        }
        Step::Done
    }
}
