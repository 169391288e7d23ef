//! Expressions, by precedence climbing. From loosest to tightest, as upstream: `<|>`; `or`;
//! `and`; the comparisons and `in` (which do not chain); `+ -`; `* /`; `not`; then indexing
//! `[i]` and field access `->f`. Binary operators group to the left.

use super::super::ast::*;
use super::super::diagnostic::Diagnostic;
use super::super::lexer::Token;
use super::super::span::Span;
use super::{PResult, Parser, TapNote};

/// Binding strength of the binary operators, loosest first.
const EXCEPT: u8 = 1;
const OR: u8 = 2;
const COMPARE: u8 = 4;

fn binary_op(token: &Token) -> Option<(BinOp, u8)> {
    Some(match token {
        Token::Or => (BinOp::Or, OR),
        Token::And => (BinOp::And, 3),
        Token::Eq => (BinOp::Eq, COMPARE),
        Token::Ne => (BinOp::Ne, COMPARE),
        Token::Lt => (BinOp::Lt, COMPARE),
        Token::Gt => (BinOp::Gt, COMPARE),
        Token::Le => (BinOp::Le, COMPARE),
        Token::Ge => (BinOp::Ge, COMPARE),
        Token::In => (BinOp::In, COMPARE),
        Token::Plus => (BinOp::Add, 5),
        Token::Minus => (BinOp::Sub, 5),
        Token::Star => (BinOp::Mul, 6),
        Token::Slash => (BinOp::Div, 6),
        _ => return None,
    })
}

fn boxed(kind: ExprKind, span: Span) -> Box<Expr> {
    Box::new(Expr { kind, span })
}

impl Parser {
    pub(super) fn expr(&mut self) -> PResult<Expr> {
        self.nested(|p| p.binary(EXCEPT))
    }

    /// An expression whose operators all bind at least as tightly as `min`.
    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        loop {
            if self.at(&Token::Except) && min <= EXCEPT {
                self.bump();
                let fallback = self.binary(EXCEPT + 1)?;
                let span = lhs.span.to(fallback.span);
                lhs = Expr {
                    kind: ExprKind::Except { expr: Box::new(lhs), fallback: Box::new(fallback) },
                    span,
                };
                continue;
            }
            let Some((op, level)) = binary_op(self.peek()) else { break };
            if level < min {
                break;
            }
            let op_span = self.bump();
            let rhs = self.binary(level + 1)?;
            if level == COMPARE
                && let Some((next, COMPARE)) = binary_op(self.peek())
            {
                return Err(self.chained_comparison(op, next));
            }
            let span = lhs.span.to(rhs.span);
            lhs =
                Expr { kind: ExprKind::Binary { op, op_span, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span };
        }
        Ok(lhs)
    }

    fn chained_comparison(&self, first: BinOp, second: BinOp) -> Box<Diagnostic> {
        Box::new(
            Diagnostic::parse(
                self.span(),
                format!("`{}` cannot follow `{}` without parentheses", second.symbol(), first.symbol()),
            )
            .with_label("comparisons do not chain")
            .with_note("group them: `($a < $b) == $c`, or join them with `and`"),
        )
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.at(&Token::Not) {
            let start = self.bump();
            let operand = self.nested(Self::unary)?;
            let span = start.to(operand.span);
            return Ok(Expr { kind: ExprKind::Not(Box::new(operand)), span });
        }
        self.postfix()
    }

    /// `[index]` and `->field` after a primary. `$s->f <|> default` takes its default here, as
    /// upstream's grammar does, so the default extends as far as a `<|>` operand would.
    fn postfix(&mut self) -> PResult<Expr> {
        let mut expr = self.primary()?;
        loop {
            if self.eat(&Token::LBracket).is_some() {
                let index = self.expr()?;
                self.expect(&Token::RBracket, "`]`")?;
                let span = self.since(expr.span);
                expr = Expr { kind: ExprKind::Index { base: Box::new(expr), index: Box::new(index) }, span };
            } else if self.eat(&Token::Arrow).is_some() {
                let field = self.name("a field name after `->`")?;
                let span = expr.span.to(field.span);
                expr = Expr { kind: ExprKind::Field { base: Box::new(expr), field }, span };
                if self.eat(&Token::Except).is_some() {
                    let fallback = self.binary(EXCEPT + 1)?;
                    let span = expr.span.to(fallback.span);
                    return Ok(Expr {
                        kind: ExprKind::Except { expr: Box::new(expr), fallback: Box::new(fallback) },
                        span,
                    });
                }
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        let start = self.span();
        let kind = match self.peek().clone() {
            Token::Bool(b) => {
                self.bump();
                ExprKind::Bool(b)
            }
            Token::Int(text) => self.int(&text),
            Token::Float(text) => self.float(&text),
            Token::Str(raw) => {
                self.bump();
                self.string(&raw, start)
            }
            Token::LBracket => self.list()?,
            Token::LBrace => self.map()?,
            Token::Struct => self.struct_lit()?,
            Token::Dollar => self.var_or_call()?,
            Token::Ident(_) | Token::Map | Token::Collect => self.named_call()?,
            Token::Func => self.lambda()?,
            Token::If => self.if_expr()?,
            Token::LParen => {
                self.bump();
                let inner = self.expr()?;
                self.expect(&Token::RParen, "`)`")?;
                return Ok(Expr { kind: inner.kind, span: self.since(start) });
            }
            _ => return Err(self.unexpected("an expression")),
        };
        Ok(Expr { kind, span: self.since(start) })
    }

    fn int(&mut self, text: &str) -> ExprKind {
        let span = self.bump();
        match text.parse() {
            Ok(value) => ExprKind::Int(value),
            Err(_) => {
                self.report(
                    Diagnostic::parse(span, format!("the integer `{text}` does not fit in 64 bits"))
                        .with_label("too large"),
                );
                ExprKind::Int(0)
            }
        }
    }

    fn float(&mut self, text: &str) -> ExprKind {
        let span = self.bump();
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => ExprKind::Float(value),
            _ => {
                self.report(
                    Diagnostic::parse(span, format!("the float `{text}` is out of range"))
                        .with_label("too large"),
                );
                ExprKind::Float(0.0)
            }
        }
    }

    fn list(&mut self) -> PResult<ExprKind> {
        self.bump();
        Ok(ExprKind::List(self.delimited(&Token::RBracket, "list element", Self::expr)?))
    }

    fn map(&mut self) -> PResult<ExprKind> {
        self.bump();
        let entries = self.delimited(&Token::RBrace, "map entry", |p| {
            let key = p.expr()?;
            p.expect(&Token::Rocket, "`=>`")?;
            Ok(MapEntry { key, value: p.expr()? })
        })?;
        Ok(ExprKind::Map(entries))
    }

    fn struct_lit(&mut self) -> PResult<ExprKind> {
        self.bump();
        self.expect(&Token::LBrace, "`{`")?;
        let fields = self.delimited(&Token::RBrace, "struct field", |p| {
            let name = p.name("a field name")?;
            p.expect(&Token::Rocket, "`=>`")?;
            Ok(FieldInit { name, value: p.expr()? })
        })?;
        Ok(ExprKind::Struct(fields))
    }

    /// `$name`, `$mod.name`, or a call of a function value, `$f(args)`.
    fn var_or_call(&mut self) -> PResult<ExprKind> {
        let dollar = self.bump();
        let mut name = self.dotted_name("a variable name after `$`")?;
        name.span = dollar.to(name.span);
        if self.eat(&Token::LParen).is_some() {
            let args = self.delimited(&Token::RParen, "argument", Self::expr)?;
            return Ok(ExprKind::Call { callee: Callee::Var(name), args });
        }
        Ok(ExprKind::Var(name))
    }

    /// `name(args)`, `mod.name(args)`: a bare name is only ever called.
    fn named_call(&mut self) -> PResult<ExprKind> {
        let name = self.dotted_name("a function name")?;
        if self.eat(&Token::LParen).is_none() {
            return Err(Box::new(
                Diagnostic::parse(name.span, format!("`{}` is not a value", name.name))
                    .with_label("a variable starts with `$`; a function is called with `(...)`")
                    .with_note(format!("did you mean `${}`?", name.name)),
            ));
        }
        let args = self.delimited(&Token::RParen, "argument", Self::expr)?;
        Ok(ExprKind::Call { callee: Callee::Name(name), args })
    }

    /// `func(params) type { body }`, called at once when `(args)` follows.
    fn lambda(&mut self) -> PResult<ExprKind> {
        let start = self.bump();
        if !self.at(&Token::LParen) {
            return Err(Box::new(
                Diagnostic::parse(self.span(), "a named function is a statement, not a value")
                    .with_label("expected `(`")
                    .with_note("bind an anonymous one: `$f = func(...) { ... }`"),
            ));
        }
        let func = self.func_rest()?;
        let span = self.since(start);
        if self.eat(&Token::LParen).is_some() {
            let args = self.delimited(&Token::RParen, "argument", Self::expr)?;
            return Ok(ExprKind::Call { callee: Callee::Lambda(boxed(ExprKind::Func(func), span)), args });
        }
        Ok(ExprKind::Func(func))
    }

    /// `(params) type { body }`, after `func` and any name.
    pub(super) fn func_rest(&mut self) -> PResult<Func> {
        self.expect(&Token::LParen, "`(`")?;
        let params = self.delimited(&Token::RParen, "parameter", Self::param)?;
        let ret = if self.at(&Token::LBrace) { None } else { Some(self.ty()?) };
        let body = self.braced_expr("a function body is one expression")?;
        Ok(Func { params, ret, body: Box::new(body) })
    }

    /// `{ expr }`, newlines allowed around the expression.
    fn braced_expr(&mut self, note: &str) -> PResult<Expr> {
        self.expect(&Token::LBrace, "`{`")?;
        self.skip_newlines();
        let inner = self.expr()?;
        self.skip_newlines();
        if !self.at(&Token::RBrace) {
            let note = note.to_string();
            return Err(self.unexpected("`}`").tap_note(note));
        }
        self.bump();
        Ok(inner)
    }

    /// `if cond { a } else { b }`: both branches are required.
    fn if_expr(&mut self) -> PResult<ExprKind> {
        let start = self.bump();
        let cond = self.expr()?;
        let then = self.braced_expr("an `if` expression's branch is one expression")?;
        if self.eat(&Token::Else).is_none() {
            return Err(Box::new(
                Diagnostic::parse(self.since(start), "an `if` expression needs an `else` branch")
                    .with_label("every value needs both branches"),
            ));
        }
        let otherwise = self.braced_expr("an `if` expression's branch is one expression")?;
        Ok(ExprKind::If { cond: Box::new(cond), then: Box::new(then), otherwise: Box::new(otherwise) })
    }
}
