//! Runs a parsed template over an mcl value, writing as Go's `fmt` would write the Go
//! values upstream converts mcl values to (`[a b]`, `map[k:v]`, `3` for 3.0).

use std::collections::HashMap;
use std::sync::LazyLock;

use super::super::super::types::Type;
use super::super::super::value::Val;
use super::super::args::{MAX_ITEMS, MAX_TEXT};
use super::super::fmt::{Piece, format_verb, general, parse as parse_format};
use super::super::golang_strings::title_case;
use super::super::{Builtin, CallCtx, HostInfo};
use super::parse::{Arg, Node, Pipe};

/// The most nodes one template may run, with every iteration of every range.
const MAX_STEPS: usize = 4 * MAX_ITEMS;

/// A template value: `None` is Go's nil (a missing value).
type V = Option<Val>;

enum Flow {
    Normal,
    Break,
    Continue,
}

pub fn run(nodes: &[Node], data: V, host: &HostInfo) -> Result<String, String> {
    let mut exec = Exec { out: String::new(), vars: vec![("$".into(), data.clone())], host, steps: 0 };
    exec.nodes(nodes, &data)?;
    Ok(exec.out)
}

struct Exec<'a> {
    out: String,
    vars: Vec<(String, V)>,
    host: &'a HostInfo,
    steps: usize,
}

impl Exec<'_> {
    fn nodes(&mut self, nodes: &[Node], dot: &V) -> Result<Flow, String> {
        for node in nodes {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(format!("the template runs more than {MAX_STEPS} steps"));
            }
            match self.node(node, dot)? {
                Flow::Normal => {}
                flow => return Ok(flow),
            }
        }
        Ok(Flow::Normal)
    }

    fn node(&mut self, node: &Node, dot: &V) -> Result<Flow, String> {
        match node {
            Node::Text(t) => self.write(t)?,
            Node::Action(pipe) => {
                let value = self.pipe(pipe, dot, true)?;
                if pipe.vars.is_empty() {
                    self.write(&show(&value))?;
                }
            }
            Node::If { branches, otherwise } => {
                for (cond, body) in branches {
                    if truthy(&self.pipe(cond, dot, true)?) {
                        return self.scoped(body, dot);
                    }
                }
                return self.scoped(otherwise, dot);
            }
            Node::With { pipe, body, otherwise } => {
                let value = self.pipe(pipe, dot, true)?;
                return if truthy(&value) { self.scoped(body, &value) } else { self.scoped(otherwise, dot) };
            }
            Node::Range { pipe, body, otherwise } => return self.range(pipe, body, otherwise, dot),
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn write(&mut self, text: &str) -> Result<(), String> {
        if self.out.len() + text.len() > MAX_TEXT {
            return Err(format!("the output is longer than the limit of {MAX_TEXT} bytes"));
        }
        self.out.push_str(text);
        Ok(())
    }

    /// Runs `nodes` with the variables they declare forgotten after.
    fn scoped(&mut self, nodes: &[Node], dot: &V) -> Result<Flow, String> {
        let mark = self.vars.len();
        let flow = self.nodes(nodes, dot);
        self.vars.truncate(mark);
        flow
    }

    fn range(&mut self, pipe: &Pipe, body: &[Node], otherwise: &[Node], dot: &V) -> Result<Flow, String> {
        let value = self.pipe(pipe, dot, false)?;
        let items: Vec<(Val, Val)> = match &value {
            None => Vec::new(),
            Some(Val::List(items)) => {
                items.iter().enumerate().map(|(i, v)| (Val::Int(i as i64), v.clone())).collect()
            }
            Some(Val::Map(pairs)) => pairs.clone(),
            Some(Val::Int(n)) => {
                (0..(*n).clamp(0, MAX_ITEMS as i64)).map(|i| (Val::Int(i), Val::Int(i))).collect()
            }
            Some(other) => {
                return Err(format!(
                    "line {}: range can't iterate over {}",
                    pipe.line,
                    show(&Some(other.clone()))
                ));
            }
        };
        if items.is_empty() {
            return self.scoped(otherwise, dot);
        }
        for (key, item) in items {
            let mark = self.vars.len();
            match pipe.vars.as_slice() {
                [v] => self.vars.push((v.clone(), Some(item.clone()))),
                [k, v] => {
                    self.vars.push((k.clone(), Some(key)));
                    self.vars.push((v.clone(), Some(item.clone())));
                }
                _ => {}
            }
            let flow = self.nodes(body, &Some(item));
            self.vars.truncate(mark);
            if let Flow::Break = flow? {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    /// The pipeline's value; `declare` sets the variables it names (not for a range's).
    fn pipe(&mut self, pipe: &Pipe, dot: &V, declare: bool) -> Result<V, String> {
        let mut value: Option<V> = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(cmd, dot, value, pipe.line)?);
        }
        let value = value.unwrap_or(None);
        if declare {
            for name in &pipe.vars {
                if pipe.assign {
                    let slot = self.vars.iter_mut().rev().find(|(n, _)| n == name);
                    let slot =
                        slot.ok_or_else(|| format!("line {}: undefined variable {name}", pipe.line))?;
                    slot.1 = value.clone();
                } else {
                    self.vars.push((name.clone(), value.clone()));
                }
            }
        }
        Ok(value)
    }

    fn command(&mut self, cmd: &[Arg], dot: &V, piped: Option<V>, line: usize) -> Result<V, String> {
        if let Some(Arg::Func(name)) = cmd.first().filter(|_| piped.is_none())
            && (name == "and" || name == "or")
        {
            return self.short_circuit(name == "and", &cmd[1..], dot, line);
        }
        if let Some(Arg::Func(name)) = cmd.first() {
            let mut args = Vec::with_capacity(cmd.len());
            for arg in &cmd[1..] {
                args.push(self.arg(arg, dot, line)?);
            }
            args.extend(piped);
            return self.call(name, args).map_err(|e| format!("line {line}: {name}: {e}"));
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err(format!("line {line}: can't give an argument to a non-function"));
        }
        match cmd.first() {
            Some(arg) => self.arg(arg, dot, line),
            None => Ok(None),
        }
    }

    /// Go's `and` and `or` stop at the first argument that decides them, so
    /// `and .X .X.Y` does not read `.X.Y` when `.X` is missing.
    fn short_circuit(&mut self, and: bool, args: &[Arg], dot: &V, line: usize) -> Result<V, String> {
        if args.is_empty() {
            return Err(format!("line {line}: missing arguments for {}", if and { "and" } else { "or" }));
        }
        let mut last = None;
        for arg in args {
            last = self.arg(arg, dot, line)?;
            if truthy(&last) != and {
                break;
            }
        }
        Ok(last)
    }

    fn arg(&mut self, arg: &Arg, dot: &V, line: usize) -> Result<V, String> {
        let at = |e: String| format!("line {line}: {e}");
        match arg {
            Arg::Dot(fields) => walk(dot.clone(), fields).map_err(at),
            Arg::Var(name, fields) => {
                let value = self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                let value = value.ok_or_else(|| at(format!("undefined variable {name}")))?;
                walk(value, fields).map_err(at)
            }
            Arg::Str(s) => Ok(Some(Val::Str(s.clone()))),
            Arg::Int(n) => Ok(Some(Val::Int(*n))),
            Arg::Float(x) => Ok(Some(Val::Float(*x))),
            Arg::Bool(b) => Ok(Some(Val::Bool(*b))),
            Arg::Nil => Ok(None),
            Arg::Func(name) => self.call(name, Vec::new()).map_err(|e| at(format!("{name}: {e}"))),
            Arg::Paren(pipe, fields) => {
                let value = self.pipe(pipe, dot, true)?;
                walk(value, fields).map_err(at)
            }
        }
    }

    fn call(&mut self, name: &str, args: Vec<V>) -> Result<V, String> {
        if let Some(result) = go_func(name, &args) {
            return result;
        }
        let builtin = LIBRARY.get(name).ok_or_else(|| format!("function {name:?} not defined"))?;
        call_library(builtin, args, self.host)
    }
}

/// Every library function a template may call, by its template name.
static LIBRARY: LazyLock<HashMap<String, (&'static Builtin, Type)>> = LazyLock::new(|| {
    super::super::all()
        .filter(|b| b.infer.is_none())
        .filter_map(|b| Type::parse(b.sig).ok().filter(Type::is_known).map(|t| (b, t)))
        .map(|(b, t)| {
            let name = if b.module.is_empty() {
                format!("_{}", b.name)
            } else {
                format!("{}_{}", b.module.replace('/', "_"), b.name)
            };
            (name, (b, t))
        })
        .collect()
});

fn call_library(entry: &(&'static Builtin, Type), args: Vec<V>, host: &HostInfo) -> Result<V, String> {
    let (builtin, sig) = entry;
    let Type::Func(params, _) = sig else { return Err("not a function".into()) };
    if params.len() != args.len() {
        return Err(format!("wants {} arguments, got {}", params.len(), args.len()));
    }
    let args: Vec<Val> = args
        .into_iter()
        .zip(params)
        .map(|(a, t)| match (a, t) {
            (Some(Val::Int(n)), Type::Float) => Ok(Val::Float(n as f64)),
            (Some(v), _) => Ok(v),
            (None, _) => Err("a nil argument".to_string()),
        })
        .collect::<Result<_, _>>()?;
    (builtin.call)(&CallCtx { sig, host }, args).map(Some).map_err(|e| e.0)
}

/// Follows `.A.B` from a value: struct fields by their title-cased name, map keys as text.
fn walk(mut value: V, fields: &[String]) -> Result<V, String> {
    for field in fields {
        value = Some(match &value {
            Some(Val::Struct(fs)) => fs
                .iter()
                .find(|(n, _)| title_case(n) == *field)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("map has no entry for key {field:?}"))?,
            Some(m @ Val::Map(_)) => m
                .map_get(&Val::Str(field.clone()))
                .cloned()
                .ok_or_else(|| format!("map has no entry for key {field:?}"))?,
            None => return Err(format!("nil pointer evaluating .{field}")),
            Some(other) => return Err(format!("can't evaluate field {field} in {}", other.type_of())),
        });
    }
    Ok(value)
}

pub fn truthy(v: &V) -> bool {
    match v {
        None => false,
        Some(Val::Bool(b)) => *b,
        Some(Val::Int(n)) => *n != 0,
        Some(Val::Float(x)) => *x != 0.0,
        Some(Val::Str(s)) => !s.is_empty(),
        Some(Val::List(l)) => !l.is_empty(),
        Some(Val::Map(m)) => !m.is_empty(),
        Some(Val::Struct(f)) => !f.is_empty(),
        Some(Val::Func(_)) => true,
    }
}

/// A value as Go's `%v` writes the value upstream makes of it.
pub fn show(v: &V) -> String {
    match v {
        None => "<no value>".into(),
        Some(v) => go_v(v),
    }
}

fn go_v(v: &Val) -> String {
    match v {
        Val::Bool(b) => b.to_string(),
        Val::Str(s) => s.clone(),
        Val::Int(n) => n.to_string(),
        Val::Float(x) => go_float(*x),
        Val::List(items) => format!("[{}]", items.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        Val::Map(pairs) => format!(
            "map[{}]",
            pairs.iter().map(|(k, v)| format!("{}:{}", go_v(k), go_v(v))).collect::<Vec<_>>().join(" ")
        ),
        Val::Struct(fields) => {
            let mut named: Vec<(String, &Val)> = fields.iter().map(|(n, v)| (title_case(n), v)).collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            format!(
                "map[{}]",
                named.iter().map(|(n, v)| format!("{n}:{}", go_v(v))).collect::<Vec<_>>().join(" ")
            )
        }
        Val::Func(f) => format!("<{}>", f.0.describe()),
    }
}

fn go_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if x.is_sign_negative() {
        format!("-{}", general(-x, None, false))
    } else {
        general(x, None, false)
    }
}

/// Go's own template functions; `None` when `name` is not one.
fn go_func(name: &str, args: &[V]) -> Option<Result<V, String>> {
    Some(match name {
        "and" => Ok(args.iter().find(|a| !truthy(a)).or(args.last()).cloned().flatten()),
        "or" => Ok(args.iter().find(|a| truthy(a)).or(args.last()).cloned().flatten()),
        "not" => one(args).map(|a| Some(Val::Bool(!truthy(a)))),
        "len" => one(args).and_then(length),
        "index" => index(args),
        "slice" => slice(args),
        "print" => Ok(Some(Val::Str(sprint(args)))),
        "println" => Ok(Some(Val::Str(format!("{}\n", args.iter().map(show).collect::<Vec<_>>().join(" "))))),
        "printf" => printf(args),
        "html" => Ok(Some(Val::Str(html_escape(&sprint(args))))),
        "js" => Ok(Some(Val::Str(js_escape(&sprint(args))))),
        "urlquery" => Ok(Some(Val::Str(query_escape(&sprint(args))))),
        "eq" => eq(args),
        "ne" => eq(args).map(|v| Some(Val::Bool(!truthy(&v)))),
        "lt" | "le" | "gt" | "ge" => compare(name, args),
        "call" => call_value(args),
        _ => return None,
    })
}

fn one(args: &[V]) -> Result<&V, String> {
    match args {
        [a] => Ok(a),
        _ => Err(format!("wants 1 argument, got {}", args.len())),
    }
}

fn length(v: &V) -> Result<V, String> {
    let n = match v {
        Some(Val::Str(s)) => s.len(),
        Some(Val::List(l)) => l.len(),
        Some(Val::Map(m)) => m.len(),
        Some(Val::Struct(f)) => f.len(),
        other => return Err(format!("len of {}", show(other))),
    };
    Ok(Some(Val::Int(n as i64)))
}

fn index(args: &[V]) -> Result<V, String> {
    let Some((first, keys)) = args.split_first() else { return Err("wants at least 1 argument".into()) };
    let mut value = first.clone();
    for key in keys {
        value = match (&value, key) {
            (Some(Val::List(items)), Some(Val::Int(i))) => Some(
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| items.get(i))
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i}"))?,
            ),
            (Some(Val::Str(s)), Some(Val::Int(i))) => Some(Val::Int(
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| s.as_bytes().get(i))
                    .map(|b| i64::from(*b))
                    .ok_or_else(|| format!("index out of range: {i}"))?,
            )),
            (Some(m @ Val::Map(_)), Some(k)) => m.map_get(k).cloned(),
            (Some(Val::Struct(_)), Some(Val::Str(k))) => walk(value.clone(), std::slice::from_ref(k))?,
            (v, k) => return Err(format!("can't index {} with {}", show(v), show(k))),
        };
    }
    Ok(value)
}

fn slice(args: &[V]) -> Result<V, String> {
    let Some((first, bounds)) = args.split_first() else { return Err("wants at least 1 argument".into()) };
    let ints: Vec<usize> = bounds
        .iter()
        .map(|b| match b {
            Some(Val::Int(n)) => usize::try_from(*n).map_err(|_| format!("negative bound {n}")),
            other => Err(format!("bad bound {}", show(other))),
        })
        .collect::<Result<_, _>>()?;
    let len = match first {
        Some(Val::Str(s)) => s.len(),
        Some(Val::List(l)) => l.len(),
        other => return Err(format!("can't slice {}", show(other))),
    };
    let (low, high) = match ints.as_slice() {
        [] => (0, len),
        [l] => (*l, len),
        [l, h] => (*l, *h),
        _ => return Err("too many bounds".into()),
    };
    if low > high || high > len {
        return Err(format!("slice bounds out of range [{low}:{high}] with length {len}"));
    }
    Ok(Some(match first {
        Some(Val::Str(s)) => Val::Str(s.get(low..high).ok_or("slice inside a character")?.to_string()),
        Some(Val::List(l)) => Val::List(l[low..high].to_vec()),
        _ => return Err("can't slice".into()),
    }))
}

/// Go's `fmt.Sprint`: a space between two operands when neither is text.
fn sprint(args: &[V]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let text_like = |v: &V| matches!(v, Some(Val::Str(_)));
        if i > 0 && !text_like(a) && !text_like(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&show(a));
    }
    out
}

fn printf(args: &[V]) -> Result<V, String> {
    let Some((Some(Val::Str(format)), values)) = args.split_first() else {
        return Err("wants a format str first".into());
    };
    let mut out = String::new();
    let mut next = values.iter();
    for piece in parse_format(format)? {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Verb(spec) => match next.next() {
                None => out.push_str(&format!("%!{}(MISSING)", spec.verb)),
                Some(v) if spec.verb == 'v' => out.push_str(&show(v)),
                Some(Some(v)) => out.push_str(&format_verb(&spec, v, None).map_err(|e| e.0)?),
                Some(None) => out.push_str(&format!("%!{}(<nil>)", spec.verb)),
            },
        }
        if out.len() > MAX_TEXT {
            return Err("the result is too long".into());
        }
    }
    Ok(Some(Val::Str(out)))
}

fn eq(args: &[V]) -> Result<V, String> {
    let Some((first, rest)) = args.split_first() else {
        return Err("missing arguments for comparison".into());
    };
    if rest.is_empty() {
        return Err("missing arguments for comparison".into());
    }
    for other in rest {
        let same = match (first, other) {
            (None, None) => true,
            (Some(a), Some(b)) if std::mem::discriminant(a) == std::mem::discriminant(b) => match a {
                Val::List(_) | Val::Map(_) | Val::Func(_) => return Err("non-comparable type".into()),
                _ => a == b,
            },
            _ => return Err("incompatible types for comparison".into()),
        };
        if same {
            return Ok(Some(Val::Bool(true)));
        }
    }
    Ok(Some(Val::Bool(false)))
}

fn compare(name: &str, args: &[V]) -> Result<V, String> {
    let order = match args {
        [Some(Val::Int(a)), Some(Val::Int(b))] => a.partial_cmp(b),
        [Some(Val::Float(a)), Some(Val::Float(b))] => a.partial_cmp(b),
        [Some(Val::Str(a)), Some(Val::Str(b))] => a.partial_cmp(b),
        [_, _] => return Err("incompatible types for comparison".into()),
        _ => return Err(format!("wants 2 arguments, got {}", args.len())),
    };
    let result = order.is_some_and(|o| match name {
        "lt" => o.is_lt(),
        "le" => o.is_le(),
        "gt" => o.is_gt(),
        _ => o.is_ge(),
    });
    Ok(Some(Val::Bool(result)))
}

fn call_value(args: &[V]) -> Result<V, String> {
    let Some((Some(Val::Func(f)), rest)) = args.split_first() else {
        return Err("the first argument must be a function".into());
    };
    let values: Vec<Val> =
        rest.iter().map(|v| v.clone().ok_or("a nil argument")).collect::<Result<_, _>>()?;
    f.call(values).map(Some).map_err(|e| e.0)
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' | '>' | '&' | '=' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
