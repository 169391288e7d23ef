//! The statement nodes: each produces [`Output`] (resources and edges) from its inputs'
//! values. `if`, `for` and `forkv` choose or repeat their bodies from values, so a change
//! of those values re-expands them.

use std::sync::Arc;

use super::super::ast::EdgeProperty;
use super::super::span::Span;
use super::super::value::Val;
use super::data::{CollectOut, Data, EdgeOut, Entry, Fail, Outcome, Output, ResOut, vals};
use super::graph::{Op, Template};

fn out(output: Output) -> Outcome {
    Ok(Data::Out(Arc::new(output)))
}

/// The statements of a block, in order. The errors of several statements are independent:
/// the first carries the others, so that all are reported at once.
pub struct Collect;

impl Op for Collect {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let mut all = Output::default();
        let mut failed: Option<Fail> = None;
        for input in inputs {
            match input.as_ref().map_err(Clone::clone).and_then(Data::out) {
                Ok(part) if failed.is_none() => all.extend(part),
                Ok(_) => {}
                Err(mut fail) => match &mut failed {
                    None => failed = Some(fail),
                    Some(first) => {
                        first.others.append(&mut fail.others);
                        first.others.push(fail);
                    }
                },
            }
        }
        match failed {
            Some(fail) => Err(fail),
            None => out(all),
        }
    }
}

/// `if cond { ... } else { ... }`: inputs are the condition, then each branch's output.
pub struct IfStmt;

impl Op for IfStmt {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        match vals(&inputs[..1])?[0] {
            Val::Bool(true) => inputs[1].clone(),
            Val::Bool(false) => inputs.get(2).map_or_else(|| out(Output::default()), |o| (*o).clone()),
            other => Err(Fail::internal(format!("an if condition of {other}"))),
        }
    }
}

/// `for` and `forkv`: the body's template run for each element (its params: the index or
/// key, the value, then what the body captures). Inputs: the list or map, then the captures.
pub struct Loop {
    pub body: Arc<Template>,
}

impl Op for Loop {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let values = vals(inputs)?;
        let captured: Vec<Outcome> = values[1..].iter().map(|v| Ok(Data::Val((*v).clone()))).collect();
        let pairs: Vec<(Val, Val)> = match values[0] {
            Val::List(items) => {
                items.iter().enumerate().map(|(i, v)| (Val::Int(i as i64), v.clone())).collect()
            }
            Val::Map(pairs) => pairs.clone(),
            other => return Err(Fail::internal(format!("a loop over {other}"))),
        };
        let mut all = Output::default();
        for (first, second) in pairs {
            let mut args = vec![Ok(Data::Val(first)), Ok(Data::Val(second))];
            args.extend(captured.iter().cloned());
            all.extend(self.body.instantiate(args)?.out()?);
        }
        out(all)
    }
}

/// An include of a class body built as a template: its inputs are the arguments, then the
/// captures. Arguments pass as they are, errors included: the body uses them where it
/// uses them, as an inline body would.
pub struct Include {
    pub body: Arc<Template>,
}

impl Op for Include {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        self.body.instantiate(inputs.iter().map(|input| (*input).clone()).collect())
    }
}

/// What one input of a [`ResourceOp`] is.
#[derive(Clone)]
pub enum EntryKind {
    Param(String),
    Meta(String),
    MetaStruct,
    Edge { property: EdgeProperty, kind: String },
}

#[derive(Clone)]
pub struct EntrySpec {
    pub kind: EntryKind,
    /// With `cond ?:`, the input before the value is the condition.
    pub conditional: bool,
    pub span: Span,
}

/// A resource statement. Inputs: the name, then for each entry its condition (if it has
/// one) and its value.
pub struct ResourceOp {
    pub kind: String,
    pub span: Span,
    pub name_span: Span,
    pub entries: Vec<EntrySpec>,
    /// `collect KIND NAMES { ... }`: the names are exports to collect, the body's params
    /// are set on each.
    pub collect: bool,
}

/// A resource statement's body, its entries' values read: params and meta params in
/// written order, and its edges (property, target kind, target names, place).
#[derive(Default)]
struct Body {
    params: Vec<Entry>,
    meta: Vec<Entry>,
    edges: Vec<(EdgeProperty, String, Vec<String>, Span)>,
}

impl Op for ResourceOp {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let values = vals(inputs)?;
        let body = self.body(&values[1..])?;
        if self.collect {
            return self.collect_out(values[0], body);
        }
        let names = names_of(values[0], self.name_span)?;
        let template = ResOut {
            kind: self.kind.clone(),
            name: String::new(),
            span: self.span,
            name_span: self.name_span,
            params: body.params,
            meta: body.meta,
        };
        let mut output = Output::default();
        for name in names {
            for (property, kind, targets, span) in &body.edges {
                for target in targets {
                    output.edges.push(internal_edge(*property, (&self.kind, &name), (kind, target), *span));
                }
            }
            output.resources.push_back(Arc::new(ResOut { name, ..template.clone() }));
        }
        out(output)
    }
}

impl ResourceOp {
    /// The body from the entries' inputs: for each entry its condition (if it has one) and
    /// its value; an entry whose condition is false is left out.
    fn body(&self, values: &[&Val]) -> Result<Body, Fail> {
        let mut body = Body::default();
        let mut next = 0;
        for entry in &self.entries {
            let wanted = !entry.conditional || matches!(values[next], Val::Bool(true));
            next += usize::from(entry.conditional);
            let value = values[next];
            next += 1;
            if !wanted {
                continue;
            }
            let at = |name: &str, value: &Val| Entry {
                name: name.to_string(),
                value: value.clone(),
                span: entry.span,
            };
            match &entry.kind {
                EntryKind::Param(name) => body.params.push(at(name, value)),
                EntryKind::Meta(name) => body.meta.push(at(name, value)),
                EntryKind::MetaStruct => match value {
                    Val::Struct(fields) => body.meta.extend(fields.iter().map(|(n, v)| at(n, v))),
                    other => return Err(Fail::internal(format!("Meta => {other}"))),
                },
                EntryKind::Edge { property, kind } => {
                    body.edges.push((*property, kind.clone(), names_of(value, entry.span)?, entry.span));
                }
            }
        }
        Ok(body)
    }

    /// A `collect` statement's output: its names, and its body's params and meta params.
    fn collect_out(&self, names: &Val, body: Body) -> Outcome {
        if let Some((.., span)) = body.edges.first() {
            return Err(Fail::at(
                *span,
                "a collect statement has no edges: collected resources may not exist",
            ));
        }
        let names = collect_names_of(names, self.name_span)?;
        let collect = CollectOut {
            kind: self.kind.clone(),
            names,
            span: self.span,
            params: body.params,
            meta: body.meta,
        };
        out(Output { collects: vec![Arc::new(collect)], ..Output::default() })
    }
}

/// What a `collect` statement names: a name, a list of names (from any host), or a list of
/// `struct{name str; host str}` (from that host), as `collect.res` gives them.
fn collect_names_of(value: &Val, span: Span) -> Result<Vec<(String, Option<String>)>, Fail> {
    let one = |item: &Val| match item {
        Val::Str(name) => Ok((name.clone(), None)),
        Val::Struct(_) => match (item.field("name"), item.field("host")) {
            (Some(Val::Str(name)), Some(Val::Str(host))) if !name.is_empty() && !host.is_empty() => {
                Ok((name.clone(), Some(host.clone())))
            }
            _ => Err(Fail::at(
                span,
                format!("a collected resource is `struct{{name str; host str}}` with both set, not {item}"),
            )),
        },
        other => {
            Err(Fail::at(span, format!("a collected resource is named by a str or a struct, not {other}")))
        }
    };
    match value {
        Val::List(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn internal_edge(property: EdgeProperty, this: (&str, &str), other: (&str, &str), span: Span) -> EdgeOut {
    let this = (this.0.to_string(), this.1.to_string());
    let other = (other.0.to_string(), other.1.to_string());
    let (from, to, notify) = match property {
        EdgeProperty::Before => (this, other, false),
        EdgeProperty::Depend => (other, this, false),
        EdgeProperty::Notify => (this, other, true),
        EdgeProperty::Listen => (other, this, true),
    };
    EdgeOut { from, to, notify, send_recv: None, span }
}

/// A resource name: a string, or a list of them for one resource each.
fn names_of(value: &Val, span: Span) -> Result<Vec<String>, Fail> {
    match value {
        Val::Str(s) => Ok(vec![s.clone()]),
        Val::List(items) => items
            .iter()
            .map(|item| match item {
                Val::Str(s) => Ok(s.clone()),
                other => Err(Fail::at(span, format!("a resource name must be a string, not {other}"))),
            })
            .collect(),
        other => {
            Err(Fail::at(span, format!("a resource name must be a string or a list of strings, not {other}")))
        }
    }
}

/// One `Kind[name]` (with `.field` for send/recv) of an edge statement.
#[derive(Clone)]
pub struct HalfSpec {
    pub kind: String,
    pub field: Option<String>,
}

/// `a[...] -> b[...] -> ...`. Inputs: each half's name.
pub struct EdgeOp {
    pub halves: Vec<HalfSpec>,
    pub spans: Vec<Span>,
    pub span: Span,
}

impl Op for EdgeOp {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let values = vals(inputs)?;
        let names: Vec<Vec<String>> =
            values.iter().zip(&self.spans).map(|(v, span)| names_of(v, *span)).collect::<Result<_, _>>()?;
        let mut output = Output::default();
        for (i, pair) in self.halves.windows(2).enumerate() {
            let send_recv = match (&pair[0].field, &pair[1].field) {
                (Some(send), Some(recv)) => Some((send.clone(), recv.clone())),
                _ => None,
            };
            for from in &names[i] {
                for to in &names[i + 1] {
                    output.edges.push(EdgeOut {
                        from: (pair[0].kind.clone(), from.clone()),
                        to: (pair[1].kind.clone(), to.clone()),
                        notify: false,
                        send_recv: send_recv.clone(),
                        span: self.span,
                    });
                }
            }
        }
        out(output)
    }
}

/// `panic(x)`: an error when `x` is true or a non-empty string, which nothing catches.
pub struct Panic {
    pub span: Span,
}

impl Op for Panic {
    fn compute(&self, inputs: &[&Outcome]) -> Outcome {
        let values = vals(inputs)?;
        let message = match values.as_slice() {
            [Val::Bool(true)] => "panic: bool panic occurred".to_string(),
            [Val::Bool(true), Val::Str(why), ..] => format!("panic: bool panic occurred: {why}"),
            [Val::Str(s), ..] if !s.is_empty() => format!("panic: str panic occurred: {s}"),
            _ => return out(Output::default()),
        };
        Err(Fail { catchable: false, ..Fail::at(self.span, message) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lang::eval::graph::Graph;

    fn v(value: Val) -> Outcome {
        Ok(Data::Val(value))
    }

    fn names(outcome: Option<&Outcome>) -> Vec<String> {
        let output = outcome.unwrap().as_ref().unwrap().out().unwrap();
        output.resources.iter().map(|r| format!("{}[{}]", r.kind, r.name)).collect()
    }

    /// `noop $value {}` for each element: the body as a template of the loop's variables.
    fn noop_per_element() -> Arc<Template> {
        let mut body = Graph::new();
        let index = body.source();
        let value = body.source();
        let op = ResourceOp {
            kind: "noop".into(),
            span: Span::default(),
            name_span: Span::default(),
            entries: vec![],
            collect: false,
        };
        let res = body.add(Arc::new(op), vec![value]);
        Arc::new(Template::new(body, vec![index, value], res))
    }

    #[test]
    fn a_loop_re_expands_when_its_list_changes() {
        let mut g = Graph::new();
        let list = g.source();
        let each = g.add(Arc::new(Loop { body: noop_per_element() }), vec![list]);
        let all = g.add(Arc::new(Collect), vec![each]);
        g.set(list, v(Val::List(vec![Val::Str("a".into())])));
        g.run();
        assert_eq!(names(g.value(all)), ["noop[a]"]);
        g.set(list, v(Val::List(vec![Val::Str("b".into()), Val::Str("c".into())])));
        g.run();
        assert_eq!(names(g.value(all)), ["noop[b]", "noop[c]"]);
    }

    #[test]
    fn an_if_statement_switches_branch_when_its_condition_changes() {
        let mut g = Graph::new();
        let cond = g.source();
        let op = || ResourceOp {
            kind: "noop".into(),
            span: Span::default(),
            name_span: Span::default(),
            entries: vec![],
            collect: false,
        };
        let yes_name = g.constant(Data::Val(Val::Str("yes".into())));
        let no_name = g.constant(Data::Val(Val::Str("no".into())));
        let yes = g.add(Arc::new(op()), vec![yes_name]);
        let no = g.add(Arc::new(op()), vec![no_name]);
        let chosen = g.add(Arc::new(IfStmt), vec![cond, yes, no]);
        g.set(cond, v(Val::Bool(true)));
        g.run();
        assert_eq!(names(g.value(chosen)), ["noop[yes]"]);
        g.set(cond, v(Val::Bool(false)));
        g.run();
        assert_eq!(names(g.value(chosen)), ["noop[no]"]);
    }

    #[test]
    fn conditional_entries_and_internal_edges_follow_their_values() {
        let mut g = Graph::new();
        let name = g.constant(Data::Val(Val::List(vec![Val::Str("a".into()), Val::Str("b".into())])));
        let cond = g.source();
        let value = g.constant(Data::Val(Val::Str("x".into())));
        let target = g.constant(Data::Val(Val::Str("t".into())));
        let entries = vec![
            EntrySpec { kind: EntryKind::Param("content".into()), conditional: true, span: Span::default() },
            EntrySpec {
                kind: EntryKind::Edge { property: EdgeProperty::Notify, kind: "print".into() },
                conditional: false,
                span: Span::default(),
            },
        ];
        let op = ResourceOp {
            kind: "file".into(),
            span: Span::default(),
            name_span: Span::default(),
            entries,
            collect: false,
        };
        let res = g.add(Arc::new(op), vec![name, cond, value, target]);
        g.set(cond, v(Val::Bool(false)));
        g.run();
        let out = g.value(res).unwrap().as_ref().unwrap().out().unwrap().clone();
        assert!(out.resources.iter().all(|r| r.params.is_empty()));
        assert_eq!(out.edges.len(), 2);
        assert!(out.edges.iter().all(|e| e.notify && e.to == ("print".to_string(), "t".to_string())));
        g.set(cond, v(Val::Bool(true)));
        g.run();
        let out = g.value(res).unwrap().as_ref().unwrap().out().unwrap().clone();
        assert!(out.resources.iter().all(|r| r.params.len() == 1));
    }
}
