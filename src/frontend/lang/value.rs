//! mcl's run-time values. Every value knows its own shape, so a polymorphic function can
//! look at what it was given; the type checker has already made sure the shapes fit.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::contract::Value;

use super::types::Type;

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Bool(bool),
    Str(String),
    Int(i64),
    Float(f64),
    List(Vec<Val>),
    /// Sorted by key ([`Val::total_cmp`]), each key once: build it with [`Val::map_of`].
    Map(Vec<(Val, Val)>),
    /// Fields in their written order.
    Struct(Vec<(String, Val)>),
    Func(FuncVal),
}

/// Why a call failed at run time: the message names what was wrong with the values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CallError(pub String);

impl CallError {
    pub fn new(message: impl Into<String>) -> Self {
        CallError(message.into())
    }
}

/// A function as a value: a lambda with what it captured, or a core library function.
pub trait Callable: Send + Sync {
    fn call(&self, args: Vec<Val>) -> Result<Val, CallError>;
    /// For messages: `func(int) str` or the function's name.
    fn describe(&self) -> String;
    /// How many closures deep this one is (a closure that captured a closure is 2 deep):
    /// values nested without bound would overflow the stack when dropped.
    fn nesting(&self) -> usize {
        0
    }
}

#[derive(Clone)]
pub struct FuncVal(pub Arc<dyn Callable>);

impl FuncVal {
    pub fn call(&self, args: Vec<Val>) -> Result<Val, CallError> {
        self.0.call(args)
    }
}

impl fmt::Debug for FuncVal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0.describe())
    }
}

/// Two function values are equal only when they are the same function.
impl PartialEq for FuncVal {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A value that cannot be a resource param (a function), or a map key that is not text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAParam(pub String);

impl Val {
    /// A map from pairs in any order; a later pair wins over an earlier one with its key.
    pub fn map_of(pairs: impl IntoIterator<Item = (Val, Val)>) -> Val {
        let mut pairs: Vec<(Val, Val)> = pairs.into_iter().collect();
        // A stable sort keeps equal keys in their order; keep the last of each run.
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out: Vec<(Val, Val)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        Val::Map(out)
    }

    /// The value of `key` in a map.
    pub fn map_get(&self, key: &Val) -> Option<&Val> {
        match self {
            Val::Map(pairs) => pairs.binary_search_by(|(k, _)| k.total_cmp(key)).ok().map(|i| &pairs[i].1),
            _ => None,
        }
    }

    /// A field of a struct.
    pub fn field(&self, name: &str) -> Option<&Val> {
        match self {
            Val::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// An order over all values (floats by `total_cmp`, then by shape), for map keys and sorts.
    pub fn total_cmp(&self, other: &Val) -> Ordering {
        use Val::*;
        match (self, other) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (Str(a), Str(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (List(a), List(b)) => cmp_seq(a.iter(), b.iter(), |x, y| x.total_cmp(y)),
            (Map(a), Map(b)) => {
                cmp_seq(a.iter(), b.iter(), |x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)))
            }
            (Struct(a), Struct(b)) => {
                cmp_seq(a.iter(), b.iter(), |x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)))
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Val::Bool(_) => 0,
            Val::Str(_) => 1,
            Val::Int(_) => 2,
            Val::Float(_) => 3,
            Val::List(_) => 4,
            Val::Map(_) => 5,
            Val::Struct(_) => 6,
            Val::Func(_) => 7,
        }
    }

    /// The deepest closure nesting ([`Callable::nesting`]) of the functions in the value.
    pub fn func_nesting(&self) -> usize {
        match self {
            Val::Func(f) => f.0.nesting(),
            Val::List(items) => items.iter().map(Val::func_nesting).max().unwrap_or(0),
            Val::Map(pairs) => {
                pairs.iter().map(|(k, v)| k.func_nesting().max(v.func_nesting())).max().unwrap_or(0)
            }
            Val::Struct(fields) => fields.iter().map(|(_, v)| v.func_nesting()).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// The value's type as far as the value shows it: an empty list's element type is not
    /// known from the list alone.
    pub fn type_of(&self) -> Type {
        match self {
            Val::Bool(_) => Type::Bool,
            Val::Str(_) => Type::Str,
            Val::Int(_) => Type::Int,
            Val::Float(_) => Type::Float,
            Val::List(items) => Type::list(items.first().map_or(Type::Var(0), Val::type_of)),
            Val::Map(pairs) => match pairs.first() {
                Some((k, v)) => Type::map(k.type_of(), v.type_of()),
                None => Type::map(Type::Var(0), Type::Var(1)),
            },
            Val::Struct(fields) => {
                Type::Struct(fields.iter().map(|(n, v)| (n.clone(), v.type_of())).collect())
            }
            Val::Func(_) => Type::Variant,
        }
    }

    /// The value as a resource param: structs and maps become maps with text keys.
    pub fn to_param(&self) -> Result<Value, NotAParam> {
        Ok(match self {
            Val::Bool(b) => Value::Bool(*b),
            Val::Str(s) => Value::Str(s.clone()),
            Val::Int(n) => Value::Int(*n),
            Val::Float(x) => Value::Float(*x),
            Val::List(items) => Value::List(items.iter().map(Val::to_param).collect::<Result<_, _>>()?),
            Val::Map(pairs) => {
                Value::Map(pairs.iter().map(|(k, v)| Ok((key_text(k)?, v.to_param()?))).collect::<Result<
                    _,
                    NotAParam,
                >>(
                )?)
            }
            Val::Struct(fields) => Value::Map(
                fields
                    .iter()
                    .map(|(n, v)| Ok((n.clone(), v.to_param()?)))
                    .collect::<Result<_, NotAParam>>()?,
            ),
            Val::Func(f) => {
                return Err(NotAParam(format!("a function ({}) is not a param value", f.0.describe())));
            }
        })
    }
}

fn key_text(key: &Val) -> Result<String, NotAParam> {
    match key {
        Val::Str(s) => Ok(s.clone()),
        Val::Int(_) | Val::Bool(_) | Val::Float(_) => Ok(key.to_string()),
        other => Err(NotAParam(format!("a map key must be text in a param, not {other}"))),
    }
}

fn cmp_seq<'a, T: 'a>(
    a: impl Iterator<Item = &'a T>,
    b: impl Iterator<Item = &'a T>,
    cmp: impl Fn(&T, &T) -> Ordering,
) -> Ordering {
    let mut b = b;
    for x in a {
        match b.next() {
            None => return Ordering::Greater,
            Some(y) => match cmp(x, y) {
                Ordering::Equal => {}
                unequal => return unequal,
            },
        }
    }
    if b.next().is_some() { Ordering::Less } else { Ordering::Equal }
}

/// The value as mcl would write it: `"a"`, `[1, 2]`, `{"k" => 1}`, `struct{a => 1}`.
impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Bool(b) => write!(f, "{b}"),
            Val::Str(s) => write!(f, "{s:?}"),
            Val::Int(n) => write!(f, "{n}"),
            Val::Float(x) => write!(f, "{x:?}"),
            Val::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Val::Map(pairs) => {
                f.write_str("{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} => {v}")?;
                }
                f.write_str("}")
            }
            Val::Struct(fields) => {
                f.write_str("struct{")?;
                for (i, (n, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n} => {v}")?;
                }
                f.write_str("}")
            }
            Val::Func(func) => write!(f, "<{}>", func.0.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Val {
        Val::Str(text.to_string())
    }

    #[test]
    fn a_map_is_sorted_and_the_last_pair_for_a_key_wins() {
        let map = Val::map_of([(s("b"), Val::Int(1)), (s("a"), Val::Int(2)), (s("b"), Val::Int(3))]);
        assert_eq!(map.to_string(), r#"{"a" => 2, "b" => 3}"#);
        assert_eq!(map.map_get(&s("b")), Some(&Val::Int(3)));
        assert_eq!(map.map_get(&s("c")), None);
    }

    #[test]
    fn params_keep_their_types_and_structs_become_maps() {
        let v = Val::Struct(vec![("n".into(), Val::Int(1)), ("l".into(), Val::List(vec![Val::Float(0.5)]))]);
        assert_eq!(serde_json::to_string(&v.to_param().unwrap()).unwrap(), r#"{"l":[0.5],"n":1}"#);
    }

    #[test]
    fn the_order_ranks_shapes_then_contents() {
        assert_eq!(Val::Int(2).total_cmp(&Val::Int(10)), Ordering::Less);
        assert_eq!(s("z").total_cmp(&Val::Int(0)), Ordering::Less);
        let short = Val::List(vec![Val::Int(1)]);
        let long = Val::List(vec![Val::Int(1), Val::Int(0)]);
        assert_eq!(short.total_cmp(&long), Ordering::Less);
    }
}
