//! The syntax tree of mcl, as written: every node carries the [`Span`] of its text. Nothing is
//! resolved or desugared yet, except string interpolation, which the parser reads into
//! [`ExprKind::Interp`].

use super::span::Span;

/// A file: its statements in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

/// A name as written. Dotted names (`fmt.printf`, `$inst.x`, `$const.x`) and colon names
/// (`http:server`, `base:inner`) keep their separators; capitalized names (`Meta`, `File`)
/// are lower-cased as upstream does, and `span` still points at the text. A variable's span
/// includes its `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// The statements of a `{ ... }` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    /// `$name = value` or `$name type = value`.
    Bind {
        name: Ident,
        ty: Option<Type>,
        value: Expr,
    },
    Resource(Resource),
    /// `a[...] -> b[...] -> c[...]`, or with send/recv fields `a[...].x -> b[...].y`.
    Edge(Vec<EdgeHalf>),
    If {
        cond: Expr,
        then: Block,
        otherwise: Option<Block>,
    },
    /// `for $index, $value in list { ... }`.
    For {
        index: Ident,
        value: Ident,
        list: Expr,
        body: Block,
    },
    /// `forkv $key, $value in map { ... }`.
    ForKv {
        key: Ident,
        value: Ident,
        map: Expr,
        body: Block,
    },
    /// `func name(params) type { body }`.
    Func {
        name: Ident,
        func: Func,
    },
    /// `class name(params) { ... }`; `params` is `None` without parentheses.
    Class {
        name: Ident,
        params: Option<Vec<Param>>,
        body: Block,
    },
    /// `include name(args) as alias`.
    Include {
        name: Ident,
        args: Option<Vec<Expr>>,
        alias: Option<Ident>,
    },
    /// `import "path"`, `import "path" as name`, `import "path" as *`.
    Import {
        path: Ident,
        alias: Option<ImportAlias>,
    },
    /// `panic(args)`.
    Panic {
        args: Vec<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImportAlias {
    Name(Ident),
    /// `as *`: the module's names join the current scope.
    Star(Span),
}

/// `kind name { entries }`, or with `collect` before it, a collection of exported resources.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub collect: bool,
    pub kind: Ident,
    /// A string, or a list of strings for one resource per name.
    pub name: Expr,
    pub entries: Vec<ResEntry>,
}

/// One `... => ...,` line of a resource body. With `cond ?: value`, the entry applies only
/// when `cond` is true.
#[derive(Debug, Clone, PartialEq)]
pub struct ResEntry {
    pub kind: ResEntryKind,
    pub cond: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResEntryKind {
    /// `param => value`.
    Param { name: Ident, value: Expr },
    /// `Meta:name => value`.
    Meta { name: Ident, value: Expr },
    /// `Meta => struct{...}`: every meta param at once.
    MetaStruct { value: Expr },
    /// `Before`, `Depend`, `Notify` or `Listen` `=> kind[name]`.
    Edge { property: EdgeProperty, target: EdgeHalf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeProperty {
    Before,
    Depend,
    Notify,
    Listen,
}

impl EdgeProperty {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "before" => Some(Self::Before),
            "depend" => Some(Self::Depend),
            "notify" => Some(Self::Notify),
            "listen" => Some(Self::Listen),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::Depend => "depend",
            Self::Notify => "notify",
            Self::Listen => "listen",
        }
    }
}

/// `Kind[name]` in an edge, with `.field` for send/recv.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeHalf {
    pub kind: Ident,
    pub name: Expr,
    pub field: Option<Ident>,
    pub span: Span,
}

/// A function's parameter, `$name` or `$name type`.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub ty: Option<Type>,
    pub span: Span,
}

/// A function value: `func(params) type { body }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Func {
    pub params: Vec<Param>,
    pub ret: Option<Type>,
    pub body: Box<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Bool(bool),
    /// A string without `${...}`, escapes read.
    Str(String),
    Int(i64),
    Float(f64),
    /// A string with `${name}` in it.
    Interp(Vec<InterpPart>),
    List(Vec<Expr>),
    Map(Vec<MapEntry>),
    Struct(Vec<FieldInit>),
    /// `$name`, `$mod.name`.
    Var(Ident),
    Call {
        callee: Callee,
        args: Vec<Expr>,
    },
    Binary {
        op: BinOp,
        op_span: Span,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Not(Box<Expr>),
    /// `base[index]`: a list index or a map key.
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    /// `base->field`: a struct field.
    Field {
        base: Box<Expr>,
        field: Ident,
    },
    /// `expr <|> fallback`: the fallback when `expr` fails; `$s->f <|> d` is a field with a
    /// default.
    Except {
        expr: Box<Expr>,
        fallback: Box<Expr>,
    },
    If {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    Func(Func),
}

#[derive(Debug, Clone, PartialEq)]
pub enum InterpPart {
    Lit(String),
    Var(Ident),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    pub key: Expr,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldInit {
    pub name: Ident,
    pub value: Expr,
}

/// What a call calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Callee {
    /// A function by name: `len`, `fmt.printf`.
    Name(Ident),
    /// A function value in a variable: `$f`.
    Var(Ident),
    /// A function literal called at once.
    Lambda(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Gt => ">",
            BinOp::Le => "<=",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Type {
    pub kind: TypeKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    Bool,
    Str,
    Int,
    Float,
    /// `[]T`.
    List(Box<Type>),
    /// `map{K: V}`.
    Map(Box<Type>, Box<Type>),
    /// `struct{a T; b U}`.
    Struct(Vec<(Ident, Type)>),
    /// `func(T, $name U) R`: argument names are optional.
    Func(Vec<(Option<Ident>, Type)>, Box<Type>),
    /// `variant`: any type, decided at run time.
    Variant,
}
