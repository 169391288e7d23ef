//! From the syntax tree to the function graph. Each block instance (a file, a class
//! included, an `if` branch) is a [`Layer`] holding its binds, functions and classes; a
//! bind becomes a node when first used, once per instance, so a bind used by many is one
//! node they share. A function's body, a loop's body and the body of a class included
//! without `as` are built into [`Template`]s of their own: what they use from outside
//! becomes a capture, an input of the node that uses the template, so a change outside
//! reaches them as a change of that input.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::ast::{
    Block, Callee, Expr, ExprKind, Func, InterpPart, Param, ResEntryKind, Resource, Stmt, StmtKind,
};
use super::super::diagnostic::{Diagnostic, Stage};
use super::super::funcs::{self, Builtin, HostInfo, operators};
use super::super::module::Module;
use super::super::scope::{Def, Resolution};
use super::super::span::{FileId, Span};
use super::super::types::Type;
use super::super::value::Val;
use super::data::Data;
use super::graph::{Graph, NodeId, Op, Template};
use super::ops;
use super::stmts;
use super::streams::Streams;

/// What every builder of one program shares.
pub struct Ctx<'a> {
    pub module: &'a Module,
    pub resolution: &'a Resolution<'a>,
    pub typing: &'a dyn Typing,
    pub host: Arc<HostInfo>,
    /// A running program's changing values; `None` when it is evaluated once, and each
    /// changing function is called once.
    pub streams: Option<Arc<Streams>>,
}

/// What type inference solved, as far as evaluation asks: a polymorphic core function
/// finds its type at each call in its [`CallCtx`](super::super::funcs::CallCtx). A class
/// body is typed once per `include` (an instance; 0 is the program itself).
pub trait Typing {
    /// The function type of the call (or operator) at `span`.
    fn call_type(&self, instance: u32, span: Span) -> Option<Type>;
    /// The type of the expression at `span`.
    fn expr_type(&self, instance: u32, span: Span) -> Option<Type>;
    /// The instance of the class body that the include at `include` makes.
    fn included(&self, instance: u32, include: Span) -> Option<u32>;
}

/// No types: each core function sees its declared signature.
pub struct Untyped;

impl Typing for Untyped {
    fn call_type(&self, _: u32, _: Span) -> Option<Type> {
        None
    }
    fn expr_type(&self, _: u32, _: Span) -> Option<Type> {
        None
    }
    fn included(&self, _: u32, _: Span) -> Option<u32> {
        None
    }
}

/// A definition, by where it is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Bind(Span),
    Func(Span),
    /// A param of a function, lambda or class, by the param's span.
    Param(Span),
    /// A `for`/`forkv` statement's first (0) or second (1) variable.
    Loop(Span, usize),
    /// `$inst.x`: the include statement and the bind's name.
    IncludeBind(Span, Span),
}

impl Key {
    /// The file the definition is in.
    fn file(self) -> FileId {
        match self {
            Key::Bind(s) | Key::Func(s) | Key::Param(s) | Key::Loop(s, _) | Key::IncludeBind(s, _) => s.file,
        }
    }
}

enum Slot<'a> {
    Node(NodeId),
    Bind(&'a Expr),
    Func(&'a Func, Span),
    /// Being built: a use now is a cycle, which scope resolution refuses.
    Busy,
}

#[derive(Default)]
struct Layer<'a> {
    parent: Option<usize>,
    /// The typing instance of the class body this layer is part of.
    instance: u32,
    slots: HashMap<Key, Slot<'a>>,
    /// Classes declared here, by the class statement's span.
    classes: HashMap<Span, &'a Stmt>,
    /// Class instances included here with `as`, by the include statement's span.
    instances: HashMap<Span, usize>,
    /// In a template: this layer stands for the class instance the include at this span
    /// made outside the template, so what is not found here is captured from there.
    proxy: Option<Span>,
}

/// What a template uses from outside, given to it by the builder around it.
#[derive(Clone, Copy)]
enum Capture<'a> {
    /// A definition, found where the template is used.
    Def(&'a Def<'a>),
    /// A definition seen from the class instance that the include at this span made: a
    /// class nested in it is included inside the template.
    Through(Span, &'a Def<'a>),
}

/// Where a definition's node is: a layer of this builder, or outside the template, seen
/// from a proxy layer (its include's span and the layer).
enum Found {
    Layer(usize),
    Proxy(Span, usize),
    Nowhere,
}

/// A template and the nodes, in the builder that uses it, of what it captures.
type Captured = (Arc<Template>, Vec<NodeId>);

/// A build fails on what earlier stages should have refused; boxed, as it is the rare path.
type Built<T = NodeId> = Result<T, Box<Diagnostic>>;

pub struct Builder<'c, 'a> {
    cx: &'c Ctx<'a>,
    pub graph: Graph,
    layers: Vec<Layer<'a>>,
    cur: usize,
    /// The top layer of each file (of the whole program's builder).
    units: HashMap<FileId, usize>,
    /// In a template's builder: what it uses from outside, with the source node standing
    /// for it.
    captures: Option<Vec<(Capture<'a>, NodeId)>>,
    /// The templates of class bodies included here without `as`, by class, typing instance
    /// and the layer of the include, with the nodes of what they capture.
    class_templates: HashMap<(Span, u32, usize), Captured>,
}

fn internal(span: Span, message: impl Into<String>) -> Box<Diagnostic> {
    Box::new(Diagnostic::new(Stage::Runtime, span, message))
}

impl<'c, 'a> Builder<'c, 'a> {
    /// The builder of the whole program: one layer per file, its definitions registered.
    pub fn program(cx: &'c Ctx<'a>) -> Self {
        let mut b = Self::empty(cx, None);
        for unit in &cx.module.units {
            let layer = b.new_layer(None, 0);
            b.units.insert(unit.file, layer);
            b.cur = layer;
            b.register(&unit.program.stmts);
        }
        b.cur = 0;
        b
    }

    /// A builder with no layers yet; a template's collects its captures.
    fn empty(cx: &'c Ctx<'a>, captures: Option<Vec<(Capture<'a>, NodeId)>>) -> Self {
        Builder {
            cx,
            graph: Graph::new(),
            layers: Vec::new(),
            cur: 0,
            units: HashMap::new(),
            captures,
            class_templates: HashMap::new(),
        }
    }

    /// The builder of a template used where `self` is now.
    fn template(&self) -> Self {
        let mut b = Self::empty(self.cx, Some(Vec::new()));
        b.new_layer(None, self.instance());
        b
    }

    fn new_layer(&mut self, parent: Option<usize>, instance: u32) -> usize {
        self.layers.push(Layer { parent, instance, ..Layer::default() });
        self.layers.len() - 1
    }

    fn instance(&self) -> u32 {
        self.layers[self.cur].instance
    }

    /// The output of the entry file's statements.
    pub fn entry(&mut self) -> Built {
        let stmts = &self.cx.module.units[0].program.stmts;
        self.outputs(stmts)
    }

    fn register(&mut self, stmts: &'a [Stmt]) {
        let layer = &mut self.layers[self.cur];
        for stmt in stmts {
            match &stmt.kind {
                StmtKind::Bind { name, value, .. } => {
                    layer.slots.insert(Key::Bind(name.span), Slot::Bind(value));
                }
                StmtKind::Func { name, func } => {
                    layer.slots.insert(Key::Func(name.span), Slot::Func(func, stmt.span));
                }
                StmtKind::Class { .. } => {
                    layer.classes.insert(stmt.span, stmt);
                }
                _ => {}
            }
        }
    }

    /// A block's statements in a layer of their own under the current one.
    fn block(&mut self, block: &'a Block) -> Built {
        let saved = self.cur;
        self.cur = self.new_layer(Some(saved), self.instance());
        self.register(&block.stmts);
        let out = self.outputs(&block.stmts);
        self.cur = saved;
        out
    }

    /// The output of statements whose definitions are registered in the current layer.
    /// Includes with an alias come first, each after the one it goes through: `$inst.x`
    /// and `include inst.inner` need the instance, wherever they are written.
    fn outputs(&mut self, stmts: &'a [Stmt]) -> Built {
        let mut order: Vec<usize> = (0..stmts.len()).collect();
        order.sort_by_key(|&i| match &stmts[i].kind {
            StmtKind::Include { alias: Some(_), .. } => self.through_depth(&stmts[i]),
            _ => usize::MAX,
        });
        let mut parts = vec![None; stmts.len()];
        for i in order {
            parts[i] = self.stmt(&stmts[i])?;
        }
        Ok(self.graph.add(Arc::new(stmts::Collect), parts.into_iter().flatten().collect()))
    }

    /// How many includes `include` goes through (`include a.b as c`: 1 more than `a`'s).
    fn through_depth(&self, include: &Stmt) -> usize {
        let mut depth = 0;
        let mut at = include;
        while let StmtKind::Include { name, .. } = &at.kind
            && let Some(through) = self.cx.resolution.through(name.span)
        {
            depth += 1;
            at = through;
        }
        depth
    }

    fn add(&mut self, op: impl Op + 'static, inputs: Vec<NodeId>) -> NodeId {
        self.graph.add(Arc::new(op), inputs)
    }

    fn constant(&mut self, value: Val) -> NodeId {
        self.graph.constant(Data::Val(value))
    }

    fn stmt(&mut self, stmt: &'a Stmt) -> Built<Option<NodeId>> {
        Ok(Some(match &stmt.kind {
            StmtKind::Bind { .. }
            | StmtKind::Func { .. }
            | StmtKind::Class { .. }
            | StmtKind::Import { .. } => {
                return Ok(None);
            }
            StmtKind::Resource(res) => self.resource(res, stmt.span)?,
            StmtKind::Edge(halves) => {
                let names = halves.iter().map(|h| self.expr(&h.name)).collect::<Built<Vec<_>>>()?;
                let op = stmts::EdgeOp {
                    halves: halves
                        .iter()
                        .map(|h| stmts::HalfSpec {
                            kind: h.kind.name.clone(),
                            field: h.field.as_ref().map(|f| f.name.clone()),
                        })
                        .collect(),
                    spans: halves.iter().map(|h| h.name.span).collect(),
                    span: stmt.span,
                };
                self.add(op, names)
            }
            StmtKind::If { cond, then, otherwise } => {
                let mut inputs = vec![self.expr(cond)?, self.block(then)?];
                if let Some(otherwise) = otherwise {
                    inputs.push(self.block(otherwise)?);
                }
                self.add(stmts::IfStmt, inputs)
            }
            StmtKind::For { list, body, .. } => self.for_loop(stmt, list, body)?,
            StmtKind::ForKv { map, body, .. } => self.for_loop(stmt, map, body)?,
            StmtKind::Include { name, args, alias } => {
                self.include(stmt, name.span, args.as_deref(), alias.is_some())?
            }
            StmtKind::Panic { args } => {
                let args = args.iter().map(|a| self.expr(a)).collect::<Built<Vec<_>>>()?;
                self.add(stmts::Panic { span: stmt.span }, args)
            }
        }))
    }

    fn resource(&mut self, res: &'a Resource, span: Span) -> Built {
        let mut inputs = vec![self.expr(&res.name)?];
        let mut entries = Vec::new();
        for entry in &res.entries {
            if let Some(cond) = &entry.cond {
                inputs.push(self.expr(cond)?);
            }
            let (kind, value) = match &entry.kind {
                ResEntryKind::Param { name, value } => (stmts::EntryKind::Param(name.name.clone()), value),
                ResEntryKind::Meta { name, value } => (stmts::EntryKind::Meta(name.name.clone()), value),
                ResEntryKind::MetaStruct { value } => (stmts::EntryKind::MetaStruct, value),
                ResEntryKind::Edge { property, target } => (
                    stmts::EntryKind::Edge { property: *property, kind: target.kind.name.clone() },
                    &target.name,
                ),
            };
            inputs.push(self.expr(value)?);
            entries.push(stmts::EntrySpec { kind, conditional: entry.cond.is_some(), span: entry.span });
        }
        let op = stmts::ResourceOp {
            kind: res.kind.name.clone(),
            span,
            name_span: res.name.span,
            entries,
            collect: res.collect,
        };
        Ok(self.add(op, inputs))
    }

    /// `for`/`forkv`: the body is a template of the two loop variables and its captures.
    fn for_loop(&mut self, stmt: &'a Stmt, over: &'a Expr, body: &'a Block) -> Built {
        let over = self.expr(over)?;
        let mut child = self.template();
        let first = child.graph.source();
        let second = child.graph.source();
        child.layers[0].slots.insert(Key::Loop(stmt.span, 0), Slot::Node(first));
        child.layers[0].slots.insert(Key::Loop(stmt.span, 1), Slot::Node(second));
        let out = child.block(body)?;
        let (template, captured) = self.finish_template(child, vec![first, second], out)?;
        let mut inputs = vec![over];
        inputs.extend(captured);
        Ok(self.add(stmts::Loop { body: template }, inputs))
    }

    /// A template from a child builder, and the nodes here of what it captured.
    fn finish_template(
        &mut self,
        child: Builder<'c, 'a>,
        mut params: Vec<NodeId>,
        out: NodeId,
    ) -> Built<Captured> {
        let captures = child.captures.unwrap_or_default();
        let mut inputs = Vec::new();
        for (capture, node) in captures {
            params.push(node);
            let input = match capture {
                Capture::Def(def) => self.def_node(def, Span::default())?,
                Capture::Through(include, def) => self.through_node(include, def)?,
            };
            inputs.push(input);
        }
        Ok((Arc::new(Template::new(child.graph, params, out)), inputs))
    }

    /// `include name(args) [as alias]`: the class's body, inline, in a layer of its own
    /// under the layer that declares the class, with its params bound to the arguments.
    fn include(&mut self, stmt: &'a Stmt, name: Span, args: Option<&'a [Expr]>, named: bool) -> Built {
        let Some(Def::Class { stmt: class }) = self.cx.resolution.get(name) else {
            return Err(internal(name, "an include of something that is not a class"));
        };
        let StmtKind::Class { params, body, .. } = &class.kind else {
            return Err(internal(name, "an include of something that is not a class"));
        };
        let args = args.unwrap_or_default().iter().map(|a| self.expr(a)).collect::<Built<Vec<_>>>()?;
        let params: &[Param] = params.as_deref().unwrap_or_default();
        if params.len() != args.len() {
            return Err(internal(stmt.span, "an include with the wrong number of arguments"));
        }
        let home = match self.cx.resolution.through(name) {
            Some(through) => self.instance_layer(through.span, name)?,
            None => self.class_home(class.span),
        };
        let typed = self.cx.typing.included(self.instance(), stmt.span).unwrap_or(self.instance());
        if !named && self.encloses(home) {
            return self.include_template(class, typed, args);
        }
        let instance = self.new_layer(Some(home), typed);
        for (param, arg) in params.iter().zip(args) {
            self.layers[instance].slots.insert(Key::Param(param.span), Slot::Node(arg));
        }
        // The `outer:inner` classes are declared in each instance of `outer`.
        for inner in self.cx.resolution.beside.get(&class.span).into_iter().flatten() {
            self.layers[instance].classes.insert(inner.span, inner);
        }
        if named {
            self.layers[self.cur].instances.insert(stmt.span, instance);
        }
        let saved = self.cur;
        self.cur = instance;
        self.register(&body.stmts);
        let out = self.outputs(&body.stmts);
        self.cur = saved;
        out
    }

    /// Whether `layer` is the current one or around it.
    fn encloses(&self, layer: usize) -> bool {
        let mut at = Some(self.cur);
        while let Some(here) = at {
            if here == layer {
                return true;
            }
            at = self.layers[here].parent;
        }
        false
    }

    /// An include without `as`, of a class declared around it: nothing outside reads the
    /// instance, so its body is a template of its params and captures, as a function's body
    /// is, built once for every include here of the class typed alike.
    fn include_template(&mut self, class: &'a Stmt, typed: u32, args: Vec<NodeId>) -> Built {
        let key = (class.span, typed, self.cur);
        let (template, captured) = match self.class_templates.get(&key) {
            Some(built) => built.clone(),
            None => {
                let StmtKind::Class { params, body, .. } = &class.kind else {
                    return Err(internal(class.span, "an include of something that is not a class"));
                };
                let mut child = Self::empty(self.cx, Some(Vec::new()));
                child.new_layer(None, typed);
                let mut sources = Vec::new();
                for param in params.as_deref().unwrap_or_default() {
                    let node = child.graph.source();
                    child.layers[0].slots.insert(Key::Param(param.span), Slot::Node(node));
                    sources.push(node);
                }
                for inner in self.cx.resolution.beside.get(&class.span).into_iter().flatten() {
                    child.layers[0].classes.insert(inner.span, inner);
                }
                child.register(&body.stmts);
                let out = child.outputs(&body.stmts)?;
                let built = self.finish_template(child, sources, out)?;
                self.class_templates.insert(key, built.clone());
                built
            }
        };
        let mut inputs = args;
        inputs.extend(captured);
        Ok(self.add(stmts::Include { body: template }, inputs))
    }

    /// The layer of the class instance the include at `include` made, for a class nested in
    /// it (`include inst.inner`).
    /// In a template, an instance made outside it is a proxy layer, made once.
    fn instance_layer(&mut self, include: Span, use_span: Span) -> Built<usize> {
        let mut at = Some(self.cur);
        while let Some(layer) = at {
            if let Some(&instance) = self.layers[layer].instances.get(&include) {
                return Ok(instance);
            }
            at = self.layers[layer].parent;
        }
        if self.captures.is_none() {
            return Err(internal(use_span, "a nested class included through an instance not built here"));
        }
        if let Some(proxy) = self.layers.iter().position(|l| l.proxy == Some(include)) {
            return Ok(proxy);
        }
        let proxy = self.new_layer(None, self.instance());
        self.layers[proxy].proxy = Some(include);
        Ok(proxy)
    }

    /// The layer a class is declared in, where its body's names are looked up.
    fn class_home(&self, class: Span) -> usize {
        let mut at = Some(self.cur);
        while let Some(layer) = at {
            if self.layers[layer].classes.contains_key(&class) {
                return layer;
            }
            at = self.layers[layer].parent;
        }
        // A class of another file, or of a scope outside this template, or nested in an
        // instance (`include inst.inner`).
        if let Some(&unit) = self.units.get(&class.file)
            && self.layers[unit].classes.contains_key(&class)
        {
            return unit;
        }
        let anywhere = self.layers.iter().position(|l| l.classes.contains_key(&class));
        anywhere.unwrap_or(0)
    }

    /// The layer holding `key`, from `from` outwards, then the file's top layer; a proxy
    /// layer on the way ends the search there.
    fn find_from(&self, from: usize, key: Key, file: FileId) -> Found {
        let mut at = Some(from);
        while let Some(layer) = at {
            if self.layers[layer].slots.contains_key(&key) {
                return Found::Layer(layer);
            }
            if let Some(include) = self.layers[layer].proxy {
                return Found::Proxy(include, layer);
            }
            at = self.layers[layer].parent;
        }
        match self.units.get(&file) {
            Some(&unit) if self.layers[unit].slots.contains_key(&key) => Found::Layer(unit),
            _ => Found::Nowhere,
        }
    }

    /// The node of a definition, built on first use in the layer that holds it; in a
    /// template, a definition from outside becomes a capture.
    fn def_node(&mut self, def: &'a Def<'a>, use_span: Span) -> Built {
        let key = match def {
            Def::Builtin(b) => return Ok(self.builtin_value(b, use_span)),
            Def::Hostname => return Ok(self.constant(Val::Str(self.cx.host.hostname.clone()))),
            Def::Const(v) => return Ok(self.constant(v.clone())),
            Def::Class { .. } => return Err(internal(use_span, "a class is not a value")),
            Def::IncludeBind { include, name, .. } => return self.include_bind(def, include.span, name.span),
            Def::Bind { .. } | Def::Func { .. } | Def::Param { .. } | Def::LoopVar { .. } => {
                Self::key_of(def).expect("a definition with a slot")
            }
        };
        match self.find_from(self.cur, key, key.file()) {
            Found::Layer(layer) => self.materialize(layer, key),
            Found::Proxy(include, proxy) => Ok(self.capture_through(include, proxy, def, key)),
            Found::Nowhere => self.capture(def, key, use_span),
        }
    }

    /// The key of a definition that has a slot in a layer.
    fn key_of(def: &Def) -> Option<Key> {
        match def {
            Def::Bind { name, .. } => Some(Key::Bind(name.span)),
            Def::Func { name, .. } => Some(Key::Func(name.span)),
            Def::Param { param, .. } => Some(Key::Param(param.span)),
            Def::LoopVar { stmt, index } => Some(Key::Loop(stmt.span, *index)),
            _ => None,
        }
    }

    /// A definition seen from the instance the include at `include` made: found from its
    /// layer outwards (a name around the class is found as any other).
    fn through_node(&mut self, include: Span, def: &'a Def<'a>) -> Built {
        let instance = self.instance_layer(include, Span::default())?;
        let Some(key) = Self::key_of(def) else { return self.def_node(def, Span::default()) };
        match self.find_from(instance, key, key.file()) {
            Found::Layer(layer) => self.materialize(layer, key),
            Found::Proxy(include, proxy) => Ok(self.capture_through(include, proxy, def, key)),
            Found::Nowhere => self.def_node(def, Span::default()),
        }
    }

    /// A source node for `key` seen from a proxy layer, given by the builder around.
    fn capture_through(&mut self, include: Span, proxy: usize, def: &'a Def<'a>, key: Key) -> NodeId {
        let node = self.graph.source();
        if let Some(captures) = &mut self.captures {
            captures.push((Capture::Through(include, def), node));
        }
        self.layers[proxy].slots.insert(key, Slot::Node(node));
        node
    }

    fn capture(&mut self, def: &'a Def<'a>, key: Key, use_span: Span) -> Built {
        let Some(captures) = &mut self.captures else {
            return Err(internal(use_span, "a name whose definition is not in scope here"));
        };
        let node = self.graph.source();
        captures.push((Capture::Def(def), node));
        self.layers[0].slots.insert(key, Slot::Node(node));
        Ok(node)
    }

    fn include_bind(&mut self, def: &'a Def<'a>, include: Span, name: Span) -> Built {
        let mut at = Some(self.cur);
        while let Some(layer) = at {
            if let Some(&instance) = self.layers[layer].instances.get(&include) {
                return self.materialize(instance, Key::Bind(name));
            }
            at = self.layers[layer].parent;
        }
        let key = Key::IncludeBind(include, name);
        match self.layers[0].slots.get(&key) {
            Some(Slot::Node(node)) => Ok(*node),
            _ => self.capture(def, key, name),
        }
    }

    fn materialize(&mut self, layer: usize, key: Key) -> Built {
        if matches!(self.layers[layer].slots.get(&key), Some(Slot::Bind(_) | Slot::Func(..))) {
            self.build_bind_deps(layer, key)?;
        }
        self.materialize_one(layer, key)
    }

    /// Builds, leaves first and without recursion, the binds and functions not built yet that
    /// the bind or function `key` uses (through any chain of them), so building it never
    /// recurses through a long chain: a program of 100,000 binds or functions in a row must
    /// not overflow the stack.
    fn build_bind_deps(&mut self, layer: usize, key: Key) -> Result<(), Box<Diagnostic>> {
        let mut stack = vec![(layer, key, false)];
        let mut seen = std::collections::HashSet::from([(layer, key)]);
        while let Some((at, bind, expanded)) = stack.pop() {
            let expr = match self.layers[at].slots.get(&bind) {
                Some(&Slot::Bind(expr)) => expr,
                Some(&Slot::Func(func, _)) => &*func.body,
                _ => continue,
            };
            if expanded {
                if (at, bind) != (layer, key) {
                    self.materialize_one(at, bind)?;
                }
                continue;
            }
            stack.push((at, bind, true));
            let mut uses = Vec::new();
            names_used(expr, &mut uses);
            for span in uses {
                let dep = match self.cx.resolution.get(span) {
                    Some(Def::Bind { name, .. }) => Some((Key::Bind(name.span), name.span.file)),
                    Some(Def::Func { name, .. }) => Some((Key::Func(name.span), name.span.file)),
                    _ => None,
                };
                if let Some((dep, file)) = dep {
                    // A definition behind a proxy or outside a template is built where it is.
                    if let Found::Layer(dep_layer) = self.find_from(at, dep, file)
                        && seen.insert((dep_layer, dep))
                    {
                        stack.push((dep_layer, dep, false));
                    }
                }
            }
        }
        Ok(())
    }

    fn materialize_one(&mut self, layer: usize, key: Key) -> Built {
        let slot = self.layers[layer].slots.insert(key, Slot::Busy);
        let saved = self.cur;
        self.cur = layer;
        let built = match slot {
            Some(Slot::Node(node)) => Ok(node),
            Some(Slot::Bind(expr)) => self.expr(expr),
            Some(Slot::Func(func, span)) => self.lambda(&func.params, &func.body, span),
            Some(Slot::Busy) | None => Err(internal(Span::default(), "a definition that depends on itself")),
        };
        self.cur = saved;
        let node = built?;
        self.layers[layer].slots.insert(key, Slot::Node(node));
        Ok(node)
    }

    fn builtin_value(&mut self, builtin: &'static Builtin, use_span: Span) -> NodeId {
        let sig = self.cx.typing.expr_type(self.instance(), use_span).unwrap_or_else(|| builtin_sig(builtin));
        let func = funcs::func_value(builtin, sig, (*self.cx.host).clone());
        self.constant(Val::Func(func))
    }

    /// A function value: its body as a template of its params and captures.
    fn lambda(&mut self, params: &'a [Param], body: &'a Expr, span: Span) -> Built {
        let mut child = self.template();
        let mut nodes = Vec::new();
        for param in params {
            let node = child.graph.source();
            child.layers[0].slots.insert(Key::Param(param.span), Slot::Node(node));
            nodes.push(node);
        }
        let out = child.expr(body)?;
        let (template, captured) = self.finish_template(child, nodes, out)?;
        let describe = format!("func at {}", self.cx.module.map.locate(span));
        Ok(self.add(ops::MakeLambda { body: template, describe, span }, captured))
    }

    fn var(&mut self, use_span: Span) -> Built {
        match self.cx.resolution.get(use_span) {
            Some(def) => self.def_node(def, use_span),
            None => Err(Box::new(Diagnostic::new(Stage::Scope, use_span, "this name is not defined"))),
        }
    }

    pub fn expr(&mut self, expr: &'a Expr) -> Built {
        let span = expr.span;
        Ok(match &expr.kind {
            ExprKind::Bool(b) => self.constant(Val::Bool(*b)),
            ExprKind::Str(s) => self.constant(Val::Str(s.clone())),
            ExprKind::Int(n) => self.constant(Val::Int(*n)),
            ExprKind::Float(x) => self.constant(Val::Float(*x)),
            // `"${x}"` alone is `$x` itself, of its own type, as upstream has it.
            ExprKind::Interp(parts) if let [InterpPart::Var(ident)] = parts.as_slice() => {
                self.var(ident.span)?
            }
            ExprKind::Interp(parts) => {
                let mut inputs = Vec::new();
                let mut texts = Vec::new();
                for part in parts {
                    match part {
                        InterpPart::Lit(text) => texts.push(Some(text.clone())),
                        InterpPart::Var(ident) => {
                            inputs.push(self.var(ident.span)?);
                            texts.push(None);
                        }
                    }
                }
                self.add(ops::Interp { parts: texts }, inputs)
            }
            ExprKind::List(items) => {
                let inputs = items.iter().map(|e| self.expr(e)).collect::<Built<Vec<_>>>()?;
                self.add(ops::MakeList, inputs)
            }
            ExprKind::Map(entries) => {
                let mut inputs = Vec::new();
                for entry in entries {
                    inputs.push(self.expr(&entry.key)?);
                    inputs.push(self.expr(&entry.value)?);
                }
                self.add(ops::MakeMap, inputs)
            }
            ExprKind::Struct(fields) => {
                let inputs = fields.iter().map(|f| self.expr(&f.value)).collect::<Built<Vec<_>>>()?;
                self.add(
                    ops::MakeStruct { fields: fields.iter().map(|f| f.name.name.clone()).collect() },
                    inputs,
                )
            }
            ExprKind::Var(ident) => self.var(ident.span)?,
            ExprKind::Call { callee, args } => self.call(callee, args, span)?,
            ExprKind::Binary { op, lhs, rhs, op_span } => {
                let inputs = vec![self.expr(lhs)?, self.expr(rhs)?];
                self.call_builtin(operators::binary(*op), inputs, span, &[*op_span, span])
            }
            ExprKind::Not(inner) => {
                let inputs = vec![self.expr(inner)?];
                self.call_builtin(operators::not(), inputs, span, &[span])
            }
            ExprKind::Index { base, index } => {
                let inputs = vec![self.expr(base)?, self.expr(index)?];
                self.add(ops::Index { span }, inputs)
            }
            ExprKind::Field { base, field } => {
                let inputs = vec![self.expr(base)?];
                self.add(ops::Field { name: field.name.clone(), span }, inputs)
            }
            ExprKind::Except { expr, fallback } => {
                let inputs = vec![self.expr(expr)?, self.expr(fallback)?];
                self.add(ops::Except, inputs)
            }
            ExprKind::If { cond, then, otherwise } => {
                let inputs = vec![self.expr(cond)?, self.expr(then)?, self.expr(otherwise)?];
                self.add(ops::IfExpr, inputs)
            }
            ExprKind::Func(func) => self.lambda(&func.params, &func.body, span)?,
        })
    }

    /// A call of a core function; its type is the one solved at the first of `typed_at`.
    fn call_builtin(
        &mut self,
        builtin: &'static Builtin,
        inputs: Vec<NodeId>,
        span: Span,
        typed_at: &[Span],
    ) -> NodeId {
        let instance = self.instance();
        let solved = typed_at.iter().find_map(|at| self.cx.typing.call_type(instance, *at));
        let sig = solved.unwrap_or_else(|| builtin_sig(builtin));
        if let (Some(changes), Some(streams)) = (builtin.changes, &self.cx.streams) {
            let streams = streams.clone();
            let op = ops::CallChanging { builtin, changes, sig, host: self.cx.host.clone(), span, streams };
            return self.add(op, inputs);
        }
        let op = ops::CallBuiltin { builtin, sig, host: self.cx.host.clone(), span };
        self.add(op, inputs)
    }

    fn call(&mut self, callee: &'a Callee, args: &'a [Expr], span: Span) -> Built {
        let args = args.iter().map(|a| self.expr(a)).collect::<Built<Vec<_>>>()?;
        let func = match callee {
            Callee::Name(ident) | Callee::Var(ident) => match self.cx.resolution.get(ident.span) {
                Some(Def::Builtin(b)) => return Ok(self.call_builtin(b, args, span, &[span, ident.span])),
                Some(def) => self.def_node(def, ident.span)?,
                None => {
                    return Err(Box::new(Diagnostic::new(
                        Stage::Scope,
                        ident.span,
                        "this function is not defined",
                    )));
                }
            },
            Callee::Lambda(lambda) => self.expr(lambda)?,
        };
        let mut inputs = vec![func];
        inputs.extend(args);
        Ok(self.add(ops::Apply { span }, inputs))
    }
}

/// A core function's type, for the functions that look at it; a polymorphic one's is
/// decided per call by the type checker.
fn builtin_sig(builtin: &Builtin) -> Type {
    funcs::fixed_type(builtin).cloned().unwrap_or(Type::Variant)
}

/// The spans of every name an expression uses (variables and functions called by name),
/// lambda bodies included (their uses of outer
/// binds become captures, built in the outer layer).
fn names_used(expr: &Expr, out: &mut Vec<Span>) {
    let mut walk = |e: &Expr| names_used(e, out);
    match &expr.kind {
        ExprKind::Bool(_) | ExprKind::Str(_) | ExprKind::Int(_) | ExprKind::Float(_) => {}
        ExprKind::Interp(parts) => {
            for part in parts {
                if let InterpPart::Var(ident) = part {
                    out.push(ident.span);
                }
            }
        }
        ExprKind::Var(ident) => out.push(ident.span),
        ExprKind::List(items) => items.iter().for_each(walk),
        ExprKind::Map(entries) => entries.iter().for_each(|e| {
            walk(&e.key);
            walk(&e.value);
        }),
        ExprKind::Struct(fields) => fields.iter().for_each(|f| walk(&f.value)),
        ExprKind::Call { callee, args } => {
            match callee {
                Callee::Var(ident) => out.push(ident.span),
                Callee::Lambda(lambda) => names_used(lambda, out),
                Callee::Name(ident) => out.push(ident.span),
            }
            args.iter().for_each(|a| names_used(a, out));
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            walk(lhs);
            walk(rhs);
        }
        ExprKind::Not(inner) => walk(inner),
        ExprKind::Index { base, index } => {
            walk(base);
            walk(index);
        }
        ExprKind::Field { base, .. } => walk(base),
        ExprKind::Except { expr, fallback } => {
            walk(expr);
            walk(fallback);
        }
        ExprKind::If { cond, then, otherwise } => {
            walk(cond);
            walk(then);
            walk(otherwise);
        }
        ExprKind::Func(func) => walk(&func.body),
    }
}
