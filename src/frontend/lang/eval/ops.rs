//! The expression nodes: calls, indexing, fields, `if`, `<|>`, literals of lists, maps and
//! structs, interpolation, and function values (lambdas and core functions).

use std::cell::RefCell;
use std::sync::Arc;

use super::super::funcs::{Builtin, CallCtx, Changes, HostInfo};
use super::super::span::Span;
use super::super::types::Type;
use super::super::value::{CallError, Callable, FuncVal, Val};
use super::data::{Data, Fail, Outcome, vals};
use super::graph::{Op, Template};
use super::streams::Streams;

fn val(v: Val) -> Outcome {
    Ok(Data::Val(v))
}

/// A call of a core library function by name.
pub struct CallBuiltin {
    pub builtin: &'static Builtin,
    pub sig: Type,
    pub host: Arc<HostInfo>,
    pub span: Span,
}

impl Op for CallBuiltin {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let args = vals(inputs)?.into_iter().cloned().collect();
        let ctx = CallCtx { sig: &self.sig, host: &self.host };
        (self.builtin.call)(&ctx, args).map(Data::Val).map_err(|e| call_fail(self.span, self.builtin, e))
    }
}

/// A call of a function whose value changes over time, in a running program: its value
/// is the one its watcher last saw ([`Streams`]); while unknown, the program waits.
pub struct CallChanging {
    pub builtin: &'static Builtin,
    pub changes: Changes,
    pub sig: Type,
    pub host: Arc<HostInfo>,
    pub span: Span,
    pub streams: Arc<Streams>,
}

impl Op for CallChanging {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let args = vals(inputs)?.into_iter().cloned().collect();
        let ctx = CallCtx { sig: &self.sig, host: &self.host };
        match self.streams.read(self.builtin, self.changes, args, &ctx) {
            Some(Ok(value)) => Ok(Data::Val(value)),
            Some(Err(e)) => Err(call_fail(self.span, self.builtin, CallError(e))),
            None => {
                Err(Fail::pending(self.span, format!("waiting for the first value of `{:?}`", self.builtin)))
            }
        }
    }

    fn volatile(&self) -> bool {
        true
    }
}

/// How deep calls of lambdas may nest: definitions cannot recurse, but a long enough chain
/// of functions calling each other would exhaust the stack.
pub const MAX_CALL_DEPTH: usize = 200;

/// How many of the calls an error came through its message shows.
const SHOWN_CALLS: usize = 4;

thread_local! {
    static CALL_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };

    /// The error a lambda's body failed with, kept beside the [`CallError`] it returns
    /// (which holds only text), so that the call's node can report where in the body.
    static BODY_FAIL: RefCell<Option<Fail>> = const { RefCell::new(None) };
}

/// The error of a call at `span` that failed with `e`: where in a lambda's body, when the
/// error came from one.
fn through_call(span: Span, e: &CallError, message: String) -> Fail {
    match BODY_FAIL.with(|f| f.borrow_mut().take()) {
        Some(mut inner) if e.0.contains(&inner.message) => {
            inner.message = message;
            // The innermost calls say where; a long chain of them would only repeat.
            if inner.calls.len() < SHOWN_CALLS {
                inner.calls.push(span);
            }
            inner
        }
        _ => Fail::at(span, message),
    }
}

fn call_fail(span: Span, builtin: &Builtin, e: CallError) -> Fail {
    // An operator's error speaks for itself: `division by zero`, not `/: division by zero`.
    if !builtin.name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        let message = e.0.clone();
        return through_call(span, &e, message);
    }
    let name = if builtin.module.is_empty() {
        builtin.name.to_string()
    } else {
        format!("{}.{}", builtin.module.replace('/', "."), builtin.name)
    };
    let message = format!("{name}: {e}");
    through_call(span, &e, message)
}

/// A call of a function value: the first input is the function, the rest its arguments.
pub struct Apply {
    pub span: Span,
}

impl Op for Apply {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let all = vals(inputs)?;
        let Val::Func(f) = all[0] else {
            return Err(Fail::at(self.span, format!("{} is not a function", all[0])));
        };
        let args = all[1..].iter().map(|v| (*v).clone()).collect();
        f.call(args).map(Data::Val).map_err(|e| {
            let message = e.0.clone();
            through_call(self.span, &e, message)
        })
    }
}

/// A lambda with the values it captured: calling it runs its body's template.
pub struct Closure {
    pub body: Arc<Template>,
    pub captured: Vec<Val>,
    pub describe: String,
    nesting: usize,
}

impl Callable for Closure {
    fn call(&self, args: Vec<Val>) -> Result<Val, CallError> {
        let inputs: Vec<Outcome> =
            args.into_iter().chain(self.captured.iter().cloned()).map(|v| Ok(Data::Val(v))).collect();
        if inputs.len() != self.body.arity() {
            return Err(CallError::new(format!(
                "{} called with the wrong number of arguments",
                self.describe
            )));
        }
        let depth = CALL_DEPTH.with(|d| d.get());
        if depth >= MAX_CALL_DEPTH {
            return Err(CallError::new(format!("functions call each other more than {MAX_CALL_DEPTH} deep")));
        }
        CALL_DEPTH.with(|d| d.set(depth + 1));
        let result = self.body.instantiate(inputs);
        CALL_DEPTH.with(|d| d.set(depth));
        match result {
            Ok(Data::Val(v)) => Ok(v),
            Ok(Data::Out(_)) => Err(CallError::new("a function body produced statements")),
            Err(fail) => {
                let error = CallError::new(fail.message.clone());
                BODY_FAIL.with(|f| *f.borrow_mut() = Some(fail));
                Err(error)
            }
        }
    }

    fn nesting(&self) -> usize {
        self.nesting
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// Makes a closure from the captured values (its inputs).
pub struct MakeLambda {
    pub body: Arc<Template>,
    pub describe: String,
    pub span: Span,
}

impl Op for MakeLambda {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let captured: Vec<Val> = vals(inputs)?.into_iter().cloned().collect();
        let nesting = 1 + captured.iter().map(Val::func_nesting).max().unwrap_or(0);
        if nesting > MAX_CALL_DEPTH {
            return Err(Fail::at(
                self.span,
                format!("functions capture functions more than {MAX_CALL_DEPTH} deep"),
            ));
        }
        let closure = Closure { body: self.body.clone(), captured, describe: self.describe.clone(), nesting };
        val(Val::Func(FuncVal(Arc::new(closure))))
    }
}

/// `base[index]`: a list's element or a map's value.
pub struct Index {
    pub span: Span,
}

impl Op for Index {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let v = vals(inputs)?;
        match (v[0], v[1]) {
            (Val::List(items), Val::Int(i)) => {
                usize::try_from(*i).ok().and_then(|i| items.get(i)).cloned().map(Data::Val).ok_or_else(|| {
                    Fail::at(self.span, format!("index {i} is out of range (the list has {})", items.len()))
                })
            }
            (map @ Val::Map(_), key) => map
                .map_get(key)
                .cloned()
                .map(Data::Val)
                .ok_or_else(|| Fail::at(self.span, format!("the map has no key {key}"))),
            (base, index) => Err(Fail::at(self.span, format!("cannot index {base} with {index}"))),
        }
    }
}

/// `base->field`.
pub struct Field {
    pub name: String,
    pub span: Span,
}

impl Op for Field {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let v = vals(inputs)?;
        v[0].field(&self.name)
            .cloned()
            .map(Data::Val)
            .ok_or_else(|| Fail::at(self.span, format!("the struct has no field `{}`", self.name)))
    }
}

/// `if cond { a } else { b }`: only the chosen side's error counts.
pub struct IfExpr;

impl Op for IfExpr {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let cond = vals(&inputs[..1])?;
        match cond[0] {
            Val::Bool(true) => inputs[1].clone(),
            Val::Bool(false) => inputs[2].clone(),
            other => Err(Fail::internal(format!("an if condition of {other}"))),
        }
    }
}

/// `expr <|> fallback`.
pub struct Except;

impl Op for Except {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        match inputs[0] {
            Err(fail) if fail.catchable => inputs[1].clone(),
            other => other.clone(),
        }
    }
}

pub struct MakeList;

impl Op for MakeList {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        val(Val::List(vals(inputs)?.into_iter().cloned().collect()))
    }
}

/// Inputs are key, value, key, value...
pub struct MakeMap;

impl Op for MakeMap {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let v = vals(inputs)?;
        val(Val::map_of(v.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone()))))
    }
}

pub struct MakeStruct {
    pub fields: Vec<String>,
}

impl Op for MakeStruct {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let v = vals(inputs)?;
        val(Val::Struct(self.fields.iter().cloned().zip(v.into_iter().cloned()).collect()))
    }
}

/// `"a ${x} b"`: `parts` are the literal text, `None` where an input goes.
pub struct Interp {
    pub parts: Vec<Option<String>>,
}

impl Op for Interp {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let mut values = vals(inputs)?.into_iter();
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Some(text) => out.push_str(text),
                None => match values.next() {
                    Some(Val::Str(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => return Err(Fail::internal("an interpolation without its value")),
                },
            }
        }
        val(Val::Str(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lang::eval::graph::Graph;

    fn v(value: Val) -> Data {
        Data::Val(value)
    }

    #[test]
    fn except_catches_an_index_out_of_range() {
        let mut g = Graph::new();
        let list = g.constant(v(Val::List(vec![Val::Int(1)])));
        let at = g.constant(v(Val::Int(3)));
        let fallback = g.constant(v(Val::Int(9)));
        let index = g.add(Arc::new(Index { span: Span::default() }), vec![list, at]);
        let caught = g.add(Arc::new(Except), vec![index, fallback]);
        g.run();
        assert!(g.value(index).unwrap().as_ref().unwrap_err().message.contains("out of range"));
        assert_eq!(g.value(caught), Some(&Ok(v(Val::Int(9)))));
    }

    #[test]
    fn a_lambda_runs_its_template_with_its_captures() {
        // func($x) { $x + $captured }, with Interp standing in for `+` on text.
        let mut body = Graph::new();
        let x = body.source();
        let captured = body.source();
        let out = body.add(Arc::new(Interp { parts: vec![None, Some("-".into()), None] }), vec![x, captured]);
        let template = Arc::new(Template::new(body, vec![x, captured], out));
        let mut g = Graph::new();
        let c = g.constant(v(Val::Str("c".into())));
        let lambda = g.add(
            Arc::new(MakeLambda { body: template, describe: "func".into(), span: Span::default() }),
            vec![c],
        );
        let arg = g.constant(v(Val::Str("a".into())));
        let call = g.add(Arc::new(Apply { span: Span::default() }), vec![lambda, arg]);
        g.run();
        assert_eq!(g.value(call), Some(&Ok(v(Val::Str("a-c".into())))));
    }

    #[test]
    fn if_ignores_the_error_of_the_side_not_taken() {
        let mut g = Graph::new();
        let cond = g.constant(v(Val::Bool(true)));
        let yes = g.constant(v(Val::Int(1)));
        let no = g.source();
        g.set(no, Err(Fail::internal("not taken")));
        let pick = g.add(Arc::new(IfExpr), vec![cond, yes, no]);
        g.run();
        assert_eq!(g.value(pick), Some(&Ok(v(Val::Int(1)))));
    }
}
