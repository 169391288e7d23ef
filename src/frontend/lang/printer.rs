//! A compact S-expression form of the syntax tree (`Display`), one top-level statement per
//! line: what the parse tests compare, and a readable dump when debugging.

use std::fmt::{self, Display, Formatter};

use super::ast::*;

impl Display for Program {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for stmt in &self.stmts {
            writeln!(f, "{stmt}")?;
        }
        Ok(())
    }
}

impl Display for Ident {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Display for Block {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("(do")?;
        for stmt in &self.stmts {
            write!(f, " {stmt}")?;
        }
        f.write_str(")")
    }
}

impl Display for Stmt {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StmtKind::Bind { name, ty: Some(ty), value } => write!(f, "(bind ${name} {ty} {value})"),
            StmtKind::Bind { name, ty: None, value } => write!(f, "(bind ${name} {value})"),
            StmtKind::Resource(res) => write!(f, "{res}"),
            StmtKind::Edge(halves) => write!(f, "(edge{})", prefixed(halves)),
            StmtKind::If { cond, then, otherwise: Some(otherwise) } => {
                write!(f, "(if {cond} {then} {otherwise})")
            }
            StmtKind::If { cond, then, otherwise: None } => write!(f, "(if {cond} {then})"),
            StmtKind::For { index, value, list, body } => write!(f, "(for ${index} ${value} {list} {body})"),
            StmtKind::ForKv { key, value, map, body } => write!(f, "(forkv ${key} ${value} {map} {body})"),
            StmtKind::Func { name, func } => write!(f, "(func-def {name} {})", FuncParts(func)),
            StmtKind::Class { name, params: Some(params), body } => {
                write!(f, "(class {name} [{}] {body})", comma_joined(params))
            }
            StmtKind::Class { name, params: None, body } => write!(f, "(class {name} {body})"),
            StmtKind::Include { name, args, alias } => {
                write_include(f, name, args.as_deref(), alias.as_ref())
            }
            StmtKind::Import { path, alias: None } => write!(f, "(import {:?})", path.name),
            StmtKind::Import { path, alias: Some(ImportAlias::Name(alias)) } => {
                write!(f, "(import {:?} as {alias})", path.name)
            }
            StmtKind::Import { path, alias: Some(ImportAlias::Star(_)) } => {
                write!(f, "(import {:?} as *)", path.name)
            }
            StmtKind::Panic { args } => write!(f, "(panic{})", prefixed(args)),
        }
    }
}

fn write_include(
    f: &mut Formatter<'_>,
    name: &Ident,
    args: Option<&[Expr]>,
    alias: Option<&Ident>,
) -> fmt::Result {
    write!(f, "(include {name}")?;
    if let Some(args) = args {
        write!(f, " [{}]", joined(args))?;
    }
    if let Some(alias) = alias {
        write!(f, " as {alias}")?;
    }
    f.write_str(")")
}

impl Display for Resource {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let head = if self.collect { "collect" } else { "res" };
        write!(f, "({head} {} {}", self.kind, self.name)?;
        for entry in &self.entries {
            write!(f, " {entry}")?;
        }
        f.write_str(")")
    }
}

impl Display for ResEntry {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let cond = match &self.cond {
            Some(cond) => format!("(? {cond}) "),
            None => String::new(),
        };
        match &self.kind {
            ResEntryKind::Param { name, value } => write!(f, "(param {name} {cond}{value})"),
            ResEntryKind::Meta { name, value } => write!(f, "(meta {name} {cond}{value})"),
            ResEntryKind::MetaStruct { value } => write!(f, "(meta-struct {cond}{value})"),
            ResEntryKind::Edge { property, target } => write!(f, "({} {cond}{target})", property.name()),
        }
    }
}

impl Display for EdgeHalf {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "({} {} .{field})", self.kind, self.name),
            None => write!(f, "({} {})", self.kind, self.name),
        }
    }
}

impl Display for Param {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.ty {
            Some(ty) => write!(f, "${} {ty}", self.name),
            None => write!(f, "${}", self.name),
        }
    }
}

/// `[params] ret body` of a function, shared by definitions and literals.
struct FuncParts<'a>(&'a Func);

impl Display for FuncParts<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] ", comma_joined(&self.0.params))?;
        if let Some(ret) = &self.0.ret {
            write!(f, "{ret} ")?;
        }
        write!(f, "{}", self.0.body)
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Bool(b) => write!(f, "{b}"),
            ExprKind::Str(s) => write!(f, "{s:?}"),
            ExprKind::Int(i) => write!(f, "{i}"),
            ExprKind::Float(x) => write!(f, "{x:?}"),
            ExprKind::Interp(parts) => write!(f, "(interp{})", prefixed(parts)),
            ExprKind::List(items) => write!(f, "(list{})", prefixed(items)),
            ExprKind::Map(entries) => write!(f, "(map{})", prefixed(entries)),
            ExprKind::Struct(fields) => write!(f, "(struct{})", prefixed(fields)),
            ExprKind::Var(name) => write!(f, "${name}"),
            ExprKind::Call { callee, args } => write!(f, "(call {callee}{})", prefixed(args)),
            ExprKind::Binary { op, lhs, rhs, .. } => write!(f, "({} {lhs} {rhs})", op.symbol()),
            ExprKind::Not(operand) => write!(f, "(not {operand})"),
            ExprKind::Index { base, index } => write!(f, "(index {base} {index})"),
            ExprKind::Field { base, field } => write!(f, "(-> {base} {field})"),
            ExprKind::Except { expr, fallback } => write!(f, "(<|> {expr} {fallback})"),
            ExprKind::If { cond, then, otherwise } => write!(f, "(if {cond} {then} {otherwise})"),
            ExprKind::Func(func) => write!(f, "(func {})", FuncParts(func)),
        }
    }
}

impl Display for InterpPart {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            InterpPart::Lit(s) => write!(f, "{s:?}"),
            InterpPart::Var(name) => write!(f, "${name}"),
        }
    }
}

impl Display for MapEntry {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}=>{}", self.key, self.value)
    }
}

impl Display for FieldInit {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}=>{}", self.name, self.value)
    }
}

impl Display for Callee {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Callee::Name(name) => write!(f, "{name}"),
            Callee::Var(name) => write!(f, "${name}"),
            Callee::Lambda(func) => write!(f, "{func}"),
        }
    }
}

impl Display for Type {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TypeKind::Bool => f.write_str("bool"),
            TypeKind::Str => f.write_str("str"),
            TypeKind::Int => f.write_str("int"),
            TypeKind::Float => f.write_str("float"),
            TypeKind::Variant => f.write_str("variant"),
            TypeKind::List(item) => write!(f, "[]{item}"),
            TypeKind::Map(key, value) => write!(f, "map{{{key}: {value}}}"),
            TypeKind::Struct(fields) => {
                let fields: Vec<String> = fields.iter().map(|(name, ty)| format!("{name} {ty}")).collect();
                write!(f, "struct{{{}}}", fields.join("; "))
            }
            TypeKind::Func(args, ret) => {
                let args: Vec<String> = args
                    .iter()
                    .map(|(name, ty)| match name {
                        Some(name) => format!("${name} {ty}"),
                        None => ty.to_string(),
                    })
                    .collect();
                write!(f, "func({}) {ret}", args.join(", "))
            }
        }
    }
}

fn joined<T: Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

fn comma_joined<T: Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Each item after a space: `(call f)` with no arguments, `(call f 1 2)` with some.
fn prefixed<T: Display>(items: &[T]) -> String {
    items.iter().map(|item| format!(" {item}")).collect()
}
