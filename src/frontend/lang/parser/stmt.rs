//! Statements, resources and edges.

use super::super::ast::*;
use super::super::diagnostic::Diagnostic;
use super::super::lexer::Token;
use super::{PResult, Parser};

impl Parser {
    pub(super) fn stmt(&mut self) -> PResult<Stmt> {
        let start = self.span();
        let kind = match self.peek() {
            Token::Dollar => self.bind()?,
            Token::Ident(_) => StmtKind::Resource(self.resource_or_call()?),
            Token::Collect => {
                self.bump();
                StmtKind::Resource(self.resource(true)?)
            }
            Token::CapIdent(_) => self.edge()?,
            Token::If => self.if_stmt()?,
            Token::For | Token::ForKv => self.for_stmt()?,
            Token::Func => self.func_def()?,
            Token::Class => self.class()?,
            Token::Include => self.include()?,
            Token::Import => self.import()?,
            Token::Panic => {
                self.bump();
                self.expect(&Token::LParen, "`(`")?;
                StmtKind::Panic { args: self.delimited(&Token::RParen, "argument", Self::expr)? }
            }
            _ => return Err(self.unexpected("a statement")),
        };
        Ok(Stmt { kind, span: self.since(start) })
    }

    /// `$name = value`, `$name type = value`.
    fn bind(&mut self) -> PResult<StmtKind> {
        let name = self.var_name()?;
        let ty = if self.at_type() { Some(self.ty()?) } else { None };
        if self.at(&Token::Eq) {
            return Err(Box::new(
                Diagnostic::parse(self.span(), "expected `=`, found `==`")
                    .with_label("a bind takes one `=`")
                    .with_note("`==` compares; statements cannot be comparisons"),
            ));
        }
        self.expect(&Token::Assign, "`=`")?;
        let value = self.expr()?;
        Ok(StmtKind::Bind { name, ty, value })
    }

    /// A resource; or, when its head fails and the line starts like a call, that call, which
    /// is no statement (`print ("a" + $b) {}` is a resource).
    fn resource_or_call(&mut self) -> PResult<Resource> {
        let start = self.span();
        let call_like = matches!(self.peek_second(), Token::LParen | Token::Dot);
        let (kind, name) = self.resource_head().map_err(|error| {
            if !call_like {
                return error;
            }
            Box::new(
                Diagnostic::parse(start, "a function call is not a statement")
                    .with_label("its value is not used")
                    .with_note("bind it, `$x = f(...)`, or pass it to a resource"),
            )
        })?;
        self.resource_body(false, kind, name)
    }

    /// `kind name { entries }`.
    fn resource(&mut self, collect: bool) -> PResult<Resource> {
        let (kind, name) = self.resource_head()?;
        self.resource_body(collect, kind, name)
    }

    /// `kind name {`.
    fn resource_head(&mut self) -> PResult<(Ident, Expr)> {
        let kind = self.colon_name("a resource kind")?;
        let name = self.expr()?;
        self.expect(&Token::LBrace, "`{` to start the resource's body")?;
        Ok((kind, name))
    }

    /// The entries after `{`, and the closing `}`. A bad entry is skipped, so the entries
    /// after it are checked too.
    fn resource_body(&mut self, collect: bool, kind: Ident, name: Expr) -> PResult<Resource> {
        let mut entries = Vec::new();
        loop {
            self.skip_newlines();
            if self.eat(&Token::RBrace).is_some() {
                return Ok(Resource { collect, kind, name, entries });
            }
            if self.at(&Token::Eof) {
                return Err(self.unexpected("`}` to end the resource's body"));
            }
            let start = self.pos;
            match self.res_entry() {
                Ok(entry) => entries.push(entry),
                Err(error) => {
                    self.report(*error);
                    self.skip_stmt(start);
                }
            }
        }
    }

    fn res_entry(&mut self) -> PResult<ResEntry> {
        let start = self.span();
        let (kind, cond) = match self.peek().clone() {
            Token::Ident(_) | Token::Map | Token::BoolType | Token::StrType | Token::IntType | Token::FloatType => {
                self.res_param()?
            }
            Token::CapIdent(name) => self.res_capitalized(&name)?,
            _ => return Err(self.unexpected("a parameter name or `}`")),
        };
        if !self.at(&Token::Comma) {
            return Err(self.missing_comma("resource field"));
        }
        self.bump();
        Ok(ResEntry { kind, cond, span: self.since(start) })
    }

    /// `name => value,` or `name => cond ?: value,`.
    fn res_param(&mut self) -> PResult<(ResEntryKind, Option<Expr>)> {
        // A param may be named as a type is (the `test` kind has `int`, `str` and `bool`).
        let type_word = match self.peek() {
            Token::BoolType => Some("bool"),
            Token::StrType => Some("str"),
            Token::IntType => Some("int"),
            Token::FloatType => Some("float"),
            _ => None,
        };
        let name = match type_word {
            Some(word) => Ident { name: word.to_string(), span: self.bump() },
            None => self.name("a parameter name")?,
        };
        self.expect(&Token::Rocket, "`=>`")?;
        let (cond, value) = self.maybe_elvis()?;
        Ok((ResEntryKind::Param { name, value }, cond))
    }

    /// `value` or `cond ?: value`.
    fn maybe_elvis(&mut self) -> PResult<(Option<Expr>, Expr)> {
        let first = self.expr()?;
        if self.eat(&Token::Elvis).is_some() {
            return Ok((Some(first), self.expr()?));
        }
        Ok((None, first))
    }

    /// `Meta:name => ...`, `Meta => ...` or an edge property, `Before => Kind[name]`.
    fn res_capitalized(&mut self, name: &str) -> PResult<(ResEntryKind, Option<Expr>)> {
        let head = self.bump();
        let lower = name.to_lowercase();
        if self.eat(&Token::Colon).is_some() {
            if lower != "meta" {
                return Err(Box::new(
                    Diagnostic::parse(head, format!("unknown property group `{name}`"))
                        .with_label("only `Meta:` has properties"),
                ));
            }
            let prop = self.name("a meta parameter name")?;
            self.expect(&Token::Rocket, "`=>`")?;
            let (cond, value) = self.maybe_elvis()?;
            return Ok((ResEntryKind::Meta { name: prop, value }, cond));
        }
        self.expect(&Token::Rocket, "`=>`")?;
        if lower == "meta" {
            let (cond, value) = self.maybe_elvis()?;
            return Ok((ResEntryKind::MetaStruct { value }, cond));
        }
        let Some(property) = EdgeProperty::from_name(&lower) else {
            return Err(Box::new(
                Diagnostic::parse(head, format!("unknown resource property `{name}`"))
                    .with_label("not `Meta`, `Before`, `Depend`, `Notify` or `Listen`")
                    .with_note("parameters are lower case: `name => value,`"),
            ));
        };
        let cond = if matches!(self.peek(), Token::CapIdent(_)) {
            None
        } else {
            let cond = self.expr()?;
            self.expect(&Token::Elvis, "`?:`")?;
            Some(cond)
        };
        let target = self.edge_half()?;
        if let Some(field) = &target.field {
            return Err(Box::new(
                Diagnostic::parse(field.span, "a resource's edge property takes no field")
                    .with_label("send/recv is an edge statement"),
            ));
        }
        Ok((ResEntryKind::Edge { property, target }, cond))
    }

    /// `Kind[name]` or `Kind[name].field`.
    fn edge_half(&mut self) -> PResult<EdgeHalf> {
        let start = self.span();
        let mut kind = match self.peek() {
            Token::CapIdent(name) => Ident { name: name.to_lowercase(), span: self.bump() },
            _ => return Err(self.unexpected("a capitalized resource kind (`File[...]`)")),
        };
        while self.eat(&Token::Colon).is_some() {
            let Token::CapIdent(part) = self.peek().clone() else {
                return Err(self.unexpected("a capitalized kind after `:`"));
            };
            let span = self.bump();
            kind = Ident { name: format!("{}:{}", kind.name, part.to_lowercase()), span: kind.span.to(span) };
        }
        self.expect(&Token::LBracket, "`[` and the resource's name")?;
        let name = self.expr()?;
        self.expect(&Token::RBracket, "`]`")?;
        let field =
            if self.eat(&Token::Dot).is_some() { Some(self.name("a field name after `.`")?) } else { None };
        Ok(EdgeHalf { kind, name, field, span: self.since(start) })
    }

    /// `A[..] -> B[..] -> ...`, or `A[..].x -> B[..].y`.
    fn edge(&mut self) -> PResult<StmtKind> {
        let mut halves = vec![self.edge_half()?];
        while self.eat(&Token::Arrow).is_some() {
            halves.push(self.edge_half()?);
        }
        if halves.len() < 2 {
            return Err(self.unexpected("`->`"));
        }
        let with_field = halves.iter().filter(|h| h.field.is_some()).count();
        if with_field > 0 && (with_field != halves.len() || halves.len() != 2) {
            let span = halves[0].span.to(halves[halves.len() - 1].span);
            return Err(Box::new(
                Diagnostic::parse(span, "a send/recv edge joins exactly two fields")
                    .with_label("`Kind[name].field -> Kind[name].field`, nothing more"),
            ));
        }
        Ok(StmtKind::Edge(halves))
    }

    fn if_stmt(&mut self) -> PResult<StmtKind> {
        self.bump();
        let cond = self.expr()?;
        let then = self.block()?;
        let otherwise = if self.eat(&Token::Else).is_some() {
            if self.at(&Token::If) {
                return Err(Box::new(
                    Diagnostic::parse(self.span(), "`else if` is not part of mcl")
                        .with_label("write `else { if ... }`"),
                ));
            }
            Some(self.block()?)
        } else {
            None
        };
        Ok(StmtKind::If { cond, then, otherwise })
    }

    /// `for $i, $x in list { ... }` and `forkv $k, $v in map { ... }`.
    fn for_stmt(&mut self) -> PResult<StmtKind> {
        let keyed = self.at(&Token::ForKv);
        self.bump();
        let first = self.var_name()?;
        self.expect(&Token::Comma, "`,` and a second variable")?;
        let second = self.var_name()?;
        self.expect(&Token::In, "`in`")?;
        let over = self.expr()?;
        let body = self.block()?;
        Ok(if keyed {
            StmtKind::ForKv { key: first, value: second, map: over, body }
        } else {
            StmtKind::For { index: first, value: second, list: over, body }
        })
    }

    /// `func name(params) type { body }`.
    fn func_def(&mut self) -> PResult<StmtKind> {
        self.bump();
        if self.at(&Token::LParen) {
            return Err(Box::new(
                Diagnostic::parse(self.last, "a function value needs a name here")
                    .with_label("`func name(...)`, or bind it: `$f = func(...) { ... }`"),
            ));
        }
        let name = match self.peek() {
            Token::Ident(name) => Ident { name: name.clone(), span: self.bump() },
            _ => return Err(self.unexpected("a function name")),
        };
        let func = self.func_rest()?;
        Ok(StmtKind::Func { name, func })
    }

    /// `class name { ... }`, `class name($a, $b) { ... }`.
    fn class(&mut self) -> PResult<StmtKind> {
        self.bump();
        let name = self.colon_name("a class name")?;
        let params = if self.eat(&Token::LParen).is_some() {
            Some(self.delimited(&Token::RParen, "parameter", Self::param)?)
        } else {
            None
        };
        let body = self.block()?;
        Ok(StmtKind::Class { name, params, body })
    }

    /// `include name`, with `(args)` and `as alias` optional.
    fn include(&mut self) -> PResult<StmtKind> {
        self.bump();
        let name = self.dotted_name("a class name")?;
        let args = if self.eat(&Token::LParen).is_some() {
            Some(self.delimited(&Token::RParen, "argument", Self::expr)?)
        } else {
            None
        };
        let alias = if self.eat(&Token::As).is_some() {
            match self.peek() {
                Token::Ident(name) => Some(Ident { name: name.clone(), span: self.bump() }),
                _ => return Err(self.unexpected("a name for the included class")),
            }
        } else {
            None
        };
        Ok(StmtKind::Include { name, args, alias })
    }

    /// `import "path"`, `import "path" as name`, `import "path" as *`.
    fn import(&mut self) -> PResult<StmtKind> {
        self.bump();
        let Token::Str(raw) = self.peek().clone() else {
            return Err(self.unexpected("the module to import, as a string"));
        };
        let span = self.bump();
        let path = Ident { name: self.plain_string(&raw, span)?, span };
        let alias = if self.eat(&Token::As).is_some() {
            match self.peek() {
                Token::Ident(name) => {
                    Some(ImportAlias::Name(Ident { name: name.clone(), span: self.bump() }))
                }
                Token::Star => Some(ImportAlias::Star(self.bump())),
                _ => return Err(self.unexpected("a name or `*`")),
            }
        } else {
            None
        };
        Ok(StmtKind::Import { path, alias })
    }
}
