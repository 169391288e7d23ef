//! Type variables and their solutions: a substitution with an occurs check, and the levels
//! that decide which variables a `func` statement may generalize (a variable created while
//! typing a function's body and not tied to anything outside it is generic: every use of the
//! function gets a fresh copy, as upstream's copy of the function per call site would).

use std::collections::HashMap;

use super::super::types::Type;

/// The level of a generic variable: never bound, copied by [`Unifier::instantiate`].
pub const GENERIC: u32 = u32::MAX;

/// Why two types do not unify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Different shapes somewhere inside.
    Mismatch,
    /// A variable would contain itself (`?1 = []?1`).
    Occurs,
}

#[derive(Debug, Clone)]
struct Slot {
    bound: Option<Type>,
    level: u32,
}

/// Every type variable of one check: what each is bound to, and its level.
#[derive(Debug, Default)]
pub struct Unifier {
    slots: Vec<Slot>,
}

impl Unifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new unknown type, created at `level`.
    pub fn fresh(&mut self, level: u32) -> Type {
        self.slots.push(Slot { bound: None, level });
        Type::Var(self.slots.len() as u32 - 1)
    }

    /// The type with every bound variable replaced by its solution.
    pub fn resolve(&self, ty: &Type) -> Type {
        match ty {
            Type::Var(v) => match self.slot(*v).and_then(|s| s.bound.as_ref()) {
                Some(bound) => self.resolve(bound),
                None => ty.clone(),
            },
            Type::List(t) => Type::list(self.resolve(t)),
            Type::Map(k, v) => Type::map(self.resolve(k), self.resolve(v)),
            Type::Struct(fields) => {
                Type::Struct(fields.iter().map(|(n, t)| (n.clone(), self.resolve(t))).collect())
            }
            Type::Func(args, ret) => {
                Type::func(args.iter().map(|t| self.resolve(t)).collect(), self.resolve(ret))
            }
            other => other.clone(),
        }
    }

    /// The type with its outermost bound variables followed, its parts left as they are.
    pub fn shallow(&self, ty: &Type) -> Type {
        let mut ty = ty.clone();
        while let Type::Var(v) = ty {
            match self.slot(v).and_then(|s| s.bound.clone()) {
                Some(bound) => ty = bound,
                None => break,
            }
        }
        ty
    }

    fn slot(&self, var: u32) -> Option<&Slot> {
        self.slots.get(var as usize)
    }

    /// Makes the two types equal, binding variables as needed. On a conflict, bindings made
    /// before it stay: the caller reports the conflict and the check goes on.
    pub fn unify(&mut self, a: &Type, b: &Type) -> Result<(), Conflict> {
        let (a, b) = (self.shallow(a), self.shallow(b));
        match (&a, &b) {
            (Type::Var(x), Type::Var(y)) if x == y => Ok(()),
            (Type::Var(x), other) | (other, Type::Var(x)) => self.bind(*x, other),
            // A variant takes any value: nothing to learn from it.
            (Type::Variant, _) | (_, Type::Variant) => Ok(()),
            (Type::List(x), Type::List(y)) => self.unify(x, y),
            (Type::Map(k1, v1), Type::Map(k2, v2)) => {
                self.unify(k1, k2)?;
                self.unify(v1, v2)
            }
            (Type::Struct(f1), Type::Struct(f2)) => {
                if f1.len() != f2.len() || f1.iter().zip(f2).any(|(x, y)| x.0 != y.0) {
                    return Err(Conflict::Mismatch);
                }
                f1.iter().zip(f2).try_for_each(|(x, y)| self.unify(&x.1, &y.1))
            }
            (Type::Func(a1, r1), Type::Func(a2, r2)) => {
                if a1.len() != a2.len() {
                    return Err(Conflict::Mismatch);
                }
                a1.iter().zip(a2).try_for_each(|(x, y)| self.unify(x, y))?;
                self.unify(r1, r2)
            }
            (x, y) if x == y => Ok(()),
            _ => Err(Conflict::Mismatch),
        }
    }

    fn bind(&mut self, var: u32, ty: &Type) -> Result<(), Conflict> {
        let level = self.slots[var as usize].level;
        if self.occurs_and_lower(var, ty, level) {
            return Err(Conflict::Occurs);
        }
        self.slots[var as usize].bound = Some(ty.clone());
        Ok(())
    }

    /// Whether `var` appears in `ty`; lowers the level of `ty`'s variables to `level`, since
    /// they are now reachable from wherever `var` is.
    fn occurs_and_lower(&mut self, var: u32, ty: &Type, level: u32) -> bool {
        match self.shallow(ty) {
            Type::Var(v) => {
                let slot = &mut self.slots[v as usize];
                if slot.level != GENERIC {
                    slot.level = slot.level.min(level);
                }
                v == var
            }
            Type::List(t) => self.occurs_and_lower(var, &t, level),
            Type::Map(k, v) => self.occurs_and_lower(var, &k, level) | self.occurs_and_lower(var, &v, level),
            Type::Struct(fields) => {
                fields.iter().fold(false, |found, (_, t)| self.occurs_and_lower(var, t, level) | found)
            }
            Type::Func(args, ret) => {
                let found = args.iter().fold(false, |found, t| self.occurs_and_lower(var, t, level) | found);
                self.occurs_and_lower(var, &ret, level) | found
            }
            _ => false,
        }
    }

    /// The unbound variables of `ty`, in order of appearance.
    pub fn free_vars(&self, ty: &Type) -> Vec<u32> {
        let mut out = Vec::new();
        collect_vars(&self.resolve(ty), &mut out);
        out
    }

    /// Marks every unbound variable of `ty` created deeper than `level` as generic.
    pub fn generalize(&mut self, ty: &Type, level: u32) {
        for v in self.free_vars(ty) {
            let slot = &mut self.slots[v as usize];
            if slot.level > level {
                slot.level = GENERIC;
            }
        }
    }

    pub fn is_generic(&self, var: u32) -> bool {
        self.slot(var).is_some_and(|s| s.bound.is_none() && s.level == GENERIC)
    }

    /// `ty` with its generic variables replaced by fresh ones at `level`; `copies` maps
    /// each generic variable to its copy, so several types can share one instantiation.
    pub fn instantiate(&mut self, ty: &Type, level: u32, copies: &mut HashMap<u32, Type>) -> Type {
        let resolved = self.resolve(ty);
        self.replace_vars(&resolved, &mut |unifier, v| {
            if !unifier.is_generic(v) {
                return Type::Var(v);
            }
            copies.entry(v).or_insert_with(|| unifier.fresh(level)).clone()
        })
    }

    /// `ty` with the variables of `copies` replaced, as they are written (not resolved).
    pub fn substitute(&mut self, ty: &Type, copies: &HashMap<u32, Type>) -> Type {
        self.replace_vars(ty, &mut |_, v| copies.get(&v).cloned().unwrap_or(Type::Var(v)))
    }

    /// A signature's `?N` variables replaced by fresh variables, the same for the same `N`.
    pub fn fresh_signature(&mut self, sig: &Type, level: u32) -> Type {
        let mut copies: HashMap<u32, Type> = HashMap::new();
        self.replace_vars(sig, &mut |unifier, n| {
            copies.entry(n).or_insert_with(|| unifier.fresh(level)).clone()
        })
    }

    fn replace_vars(&mut self, ty: &Type, f: &mut dyn FnMut(&mut Self, u32) -> Type) -> Type {
        match ty {
            Type::Var(v) => f(self, *v),
            Type::List(t) => Type::list(self.replace_vars(t, f)),
            Type::Map(k, v) => {
                let k = self.replace_vars(k, f);
                Type::map(k, self.replace_vars(v, f))
            }
            Type::Struct(fields) => {
                Type::Struct(fields.iter().map(|(n, t)| (n.clone(), self.replace_vars(t, f))).collect())
            }
            Type::Func(args, ret) => {
                let args = args.iter().map(|t| self.replace_vars(t, f)).collect();
                Type::func(args, self.replace_vars(ret, f))
            }
            other => other.clone(),
        }
    }
}

/// The variables of `ty` as written, none of them looked up.
pub fn written_vars(ty: &Type) -> Vec<u32> {
    let mut out = Vec::new();
    collect_vars(ty, &mut out);
    out
}

fn collect_vars(ty: &Type, out: &mut Vec<u32>) {
    match ty {
        Type::Var(v) if !out.contains(v) => out.push(*v),
        Type::List(t) => collect_vars(t, out),
        Type::Map(k, v) => {
            collect_vars(k, out);
            collect_vars(v, out);
        }
        Type::Struct(fields) => fields.iter().for_each(|(_, t)| collect_vars(t, out)),
        Type::Func(args, ret) => {
            args.iter().for_each(|t| collect_vars(t, out));
            collect_vars(ret, out);
        }
        _ => {}
    }
}

/// A type as messages show it: unknown parts as `_`.
pub fn show(ty: &Type) -> String {
    match ty {
        Type::Var(_) => "_".to_string(),
        Type::List(t) => format!("[]{}", show(t)),
        Type::Map(k, v) => format!("map{{{}: {}}}", show(k), show(v)),
        Type::Struct(fields) => {
            let fields: Vec<String> = fields.iter().map(|(n, t)| format!("{n} {}", show(t))).collect();
            format!("struct{{{}}}", fields.join("; "))
        }
        Type::Func(args, ret) => {
            let args: Vec<String> = args.iter().map(show).collect();
            format!("func({}) {}", args.join(", "), show(ret))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Type {
        Type::parse(text).unwrap()
    }

    #[test]
    fn variables_take_the_other_side() {
        let mut u = Unifier::new();
        let a = u.fresh(0);
        u.unify(&Type::list(a.clone()), &parse("[]int")).unwrap();
        assert_eq!(u.resolve(&a), Type::Int);
        let b = u.fresh(0);
        u.unify(&b, &a).unwrap();
        assert_eq!(u.resolve(&Type::map(b, Type::Str)).to_string(), "map{int: str}");
    }

    #[test]
    fn the_occurs_check_refuses_infinite_types() {
        let mut u = Unifier::new();
        let a = u.fresh(0);
        assert_eq!(u.unify(&a, &Type::list(a.clone())), Err(Conflict::Occurs));
        let f = Type::func(vec![a.clone()], Type::Int);
        assert_eq!(u.unify(&Type::func(vec![f.clone()], Type::Int), &f), Err(Conflict::Occurs));
    }

    #[test]
    fn structs_match_by_field_names_in_order() {
        let mut u = Unifier::new();
        let a = u.fresh(0);
        let with_var = Type::Struct(vec![("x".into(), Type::Int), ("y".into(), a.clone())]);
        u.unify(&with_var, &parse("struct{x int; y str}")).unwrap();
        assert_eq!(u.resolve(&a), Type::Str);
        assert_eq!(u.unify(&with_var, &parse("struct{y str; x int}")), Err(Conflict::Mismatch));
        assert_eq!(u.unify(&with_var, &parse("struct{x int}")), Err(Conflict::Mismatch));
        assert_eq!(u.unify(&with_var, &parse("struct{x int; y bool}")), Err(Conflict::Mismatch));
    }

    #[test]
    fn functions_match_by_arity_arguments_and_result() {
        let mut u = Unifier::new();
        let (a, r) = (u.fresh(0), u.fresh(0));
        let f = Type::func(vec![a.clone()], r.clone());
        u.unify(&f, &parse("func(str) []int")).unwrap();
        assert_eq!(u.resolve(&f).to_string(), "func(str) []int");
        assert_eq!(u.unify(&f, &parse("func(str, str) []int")), Err(Conflict::Mismatch));
        assert_eq!(u.unify(&f, &parse("func(int) []int")), Err(Conflict::Mismatch));
    }

    #[test]
    fn variant_accepts_anything() {
        let mut u = Unifier::new();
        u.unify(&Type::Variant, &parse("[]int")).unwrap();
        u.unify(&parse("func(variant) int"), &parse("func(str) int")).unwrap();
    }

    #[test]
    fn generic_variables_are_copied_per_instance_and_others_shared() {
        let mut u = Unifier::new();
        let outer = u.fresh(0);
        let inner = u.fresh(1);
        let f = Type::func(vec![inner.clone()], outer.clone());
        u.generalize(&f, 0);
        let mut copies = HashMap::new();
        let first = u.instantiate(&f, 0, &mut copies);
        let second = u.instantiate(&f, 0, &mut HashMap::new());
        u.unify(&first, &parse("func(int) str")).unwrap();
        u.unify(&second, &parse("func(bool) str")).unwrap();
        assert_eq!(u.resolve(&outer), Type::Str);
        let third = u.instantiate(&f, 0, &mut HashMap::new());
        assert!(u.unify(&third, &parse("func(int) int")).is_err());
    }

    #[test]
    fn binding_to_an_outer_variable_keeps_a_variable_from_being_generic() {
        let mut u = Unifier::new();
        let outer = u.fresh(0);
        let inner = u.fresh(1);
        u.unify(&outer, &Type::list(inner.clone())).unwrap();
        u.generalize(&inner, 0);
        let Type::Var(v) = inner else { unreachable!() };
        assert!(!u.is_generic(v));
    }

    #[test]
    fn signatures_get_fresh_variables_per_use() {
        let mut u = Unifier::new();
        let sig = parse("func([]?1, ?1) ?1");
        let one = u.fresh_signature(&sig, 0);
        let two = u.fresh_signature(&sig, 0);
        u.unify(&one, &parse("func([]int, int) int")).unwrap();
        u.unify(&two, &parse("func([]str, str) str")).unwrap();
        let three = u.fresh_signature(&sig, 0);
        assert!(u.unify(&three, &parse("func([]str, int) str")).is_err());
    }

    #[test]
    fn unknown_parts_show_as_blanks() {
        let mut u = Unifier::new();
        let a = u.fresh(0);
        assert_eq!(show(&Type::map(Type::Str, Type::list(a))), "map{str: []_}");
    }
}
