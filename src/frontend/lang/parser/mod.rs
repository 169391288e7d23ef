//! A recursive-descent parser for mcl, following upstream's grammar (newlines end statements;
//! a list, map, struct or argument list is either on one line, `[1, 2]`, or has one element per
//! line, each ending with a comma). An error skips the statement it is in, so the errors of
//! later statements are reported in the same run.

mod expr;
mod stmt;
mod strings;
mod types;

use super::ast::{Block, Ident, Program, Stmt};
use super::diagnostic::Diagnostic;
use super::lexer::{Spanned, Token, lex};
use super::span::{FileId, Span};

/// A failure that abandons the statement being parsed; it is recorded by the statement loop.
type PResult<T> = Result<T, Box<Diagnostic>>;

/// How deeply expressions, types and blocks may nest. Every stage after parsing walks the
/// tree recursively; the bound keeps a hostile program from overflowing the stack.
pub const MAX_NESTING: usize = 128;

/// Parses one file. The program holds every statement that parsed; any error means the
/// program must not be used.
pub fn parse(file: FileId, text: &str) -> (Program, Vec<Diagnostic>) {
    let (tokens, lex_errors) = lex(file, text);
    let mut parser = Parser { tokens, pos: 0, errors: Vec::new(), last: Span::new(file, 0, 0), depth: 0 };
    let stmts = parser.stmts(false);
    let span = Span::new(file, 0, text.len());
    let mut errors: Vec<Diagnostic> =
        parser.errors.into_iter().filter(|e| !follows_lex_error(e, &lex_errors, text)).collect();
    errors.extend(lex_errors);
    errors.sort_by_key(|e| (e.span.start, e.span.end));
    errors.dedup_by_key(|e| e.span.start);
    (Program { stmts, span }, errors)
}

/// Whether a parse error is only the echo of a lexing error before it: on the same line, or
/// anywhere after an unterminated string (which ends lexing).
fn follows_lex_error(error: &Diagnostic, lex_errors: &[Diagnostic], text: &str) -> bool {
    lex_errors.iter().any(|lexed| {
        lexed.span.start <= error.span.start
            && (lexed.message.starts_with("unterminated")
                || !text[lexed.span.start..error.span.start].contains('\n'))
    })
}

struct Parser {
    tokens: Vec<Spanned>,
    pos: usize,
    errors: Vec<Diagnostic>,
    /// The span of the last token consumed, where a node being built ends.
    last: Span,
    /// How many nested expressions, types and blocks are being parsed.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos].token
    }

    /// The token after the current one.
    fn peek_second(&self) -> &Token {
        &self.tokens[(self.pos + 1).min(self.tokens.len() - 1)].token
    }

    fn span(&self) -> Span {
        self.tokens[self.pos].span
    }

    fn at(&self, token: &Token) -> bool {
        self.peek() == token
    }

    /// Consumes the current token (never the end of the file) and returns its span.
    fn bump(&mut self) -> Span {
        let span = self.span();
        if *self.peek() != Token::Eof {
            self.pos += 1;
        }
        self.last = span;
        span
    }

    fn eat(&mut self, token: &Token) -> Option<Span> {
        self.at(token).then(|| self.bump())
    }

    fn expect(&mut self, token: &Token, what: &str) -> PResult<Span> {
        match self.eat(token) {
            Some(span) => Ok(span),
            None => Err(self.unexpected(what)),
        }
    }

    /// "expected X, found Y" at the current token.
    fn unexpected(&self, what: &str) -> Box<Diagnostic> {
        let found = self.peek().describe();
        let error = Diagnostic::parse(self.span(), format!("expected {what}, found {found}"))
            .with_label(format!("expected {what}"));
        Box::new(with_minus_hint(error, self.peek()))
    }

    fn skip_newlines(&mut self) {
        while self.eat(&Token::Newline).is_some() {}
    }

    /// The span from `start` to the last token consumed.
    fn since(&self, start: Span) -> Span {
        start.to(self.last)
    }

    /// A non-fatal error: parsing goes on.
    fn report(&mut self, error: Diagnostic) {
        self.errors.push(error);
    }

    /// Statements until the end of the file, or until the `}` of a block when `in_block`.
    fn stmts(&mut self, in_block: bool) -> Vec<Stmt> {
        let mut stmts = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek() {
                Token::Eof => break,
                Token::RBrace if in_block => break,
                Token::RBrace => {
                    let span = self.bump();
                    self.report(Diagnostic::parse(span, "unmatched `}`").with_label("nothing to close here"));
                    continue;
                }
                _ => {}
            }
            let start = self.pos;
            match self.stmt().and_then(|stmt| self.end_of_stmt().map(|()| stmt)) {
                Ok(stmt) => stmts.push(stmt),
                Err(error) => {
                    self.errors.push(*error);
                    self.skip_stmt(start);
                }
            }
        }
        stmts
    }

    /// A statement ends with a newline (even in a block, as upstream's grammar has it), or
    /// where the file ends.
    fn end_of_stmt(&mut self) -> PResult<()> {
        match self.peek() {
            Token::Newline => {
                self.bump();
                Ok(())
            }
            Token::Eof => Ok(()),
            token => {
                let found = token.describe();
                let error =
                    Diagnostic::parse(self.span(), format!("expected the end of the line, found {found}"))
                        .with_label("a statement ends here")
                        .with_note("write each statement on its own line");
                Err(Box::new(with_minus_hint(error, token)))
            }
        }
    }

    /// Recovery: back to the start of the failed statement, then past it, brackets balanced,
    /// to the newline that ends it (or the `}` that closes its block).
    fn skip_stmt(&mut self, start: usize) {
        self.pos = start;
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Token::Eof => return,
                Token::Newline if depth == 0 => return,
                Token::RBrace | Token::RBracket | Token::RParen if depth == 0 => {
                    if self.pos == start {
                        self.bump();
                    }
                    return;
                }
                Token::LBrace | Token::LBracket | Token::LParen => depth += 1,
                Token::RBrace | Token::RBracket | Token::RParen => depth -= 1,
                _ => {}
            }
            self.bump();
        }
    }

    /// `{ statements }`.
    fn block(&mut self) -> PResult<Block> {
        self.nested(|p| {
            let open = p.expect(&Token::LBrace, "`{`")?;
            let stmts = p.stmts(true);
            p.expect(&Token::RBrace, "`}`")?;
            Ok(Block { stmts, span: p.since(open) })
        })
    }

    /// Parses one more level of nesting, refusing to go deeper than [`MAX_NESTING`].
    fn nested<T>(&mut self, parse: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_NESTING {
            return Err(Box::new(
                Diagnostic::parse(self.span(), format!("nested more than {MAX_NESTING} levels deep"))
                    .with_label("too deep")
                    .with_note("split the expression with binds: `$inner = ...`"),
            ));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    /// A lower-case name; `map` and `collect` are names too where a name is expected.
    fn name(&mut self, what: &str) -> PResult<Ident> {
        let name = match self.peek() {
            Token::Ident(name) => name.clone(),
            Token::Map => "map".into(),
            Token::Collect => "collect".into(),
            _ => return Err(self.unexpected(what)),
        };
        Ok(Ident { name, span: self.bump() })
    }

    /// `a.b.c`: a module path or a function or class name in a module.
    fn dotted_name(&mut self, what: &str) -> PResult<Ident> {
        let mut ident = self.name(what)?;
        while self.at(&Token::Dot) {
            self.bump();
            let part = self.name("a name after `.`")?;
            ident.name = format!("{}.{}", ident.name, part.name);
            ident.span = ident.span.to(part.span);
        }
        Ok(ident)
    }

    /// `$name`, as bound by `=`, `for` and parameters: no dots.
    fn var_name(&mut self) -> PResult<Ident> {
        self.expect(&Token::Dollar, "a variable (`$name`)")?;
        let dollar = self.last;
        let mut ident = self.name("a variable name after `$`")?;
        ident.span = dollar.to(ident.span);
        Ok(ident)
    }

    /// `a:b:c`: a resource kind or a class name.
    fn colon_name(&mut self, what: &str) -> PResult<Ident> {
        let mut ident = match self.peek() {
            Token::Ident(name) => Ident { name: name.clone(), span: self.bump() },
            _ => return Err(self.unexpected(what)),
        };
        while self.at(&Token::Colon) {
            self.bump();
            let part = match self.peek() {
                Token::Ident(name) => Ident { name: name.clone(), span: self.bump() },
                _ => return Err(self.unexpected("a name after `:`")),
            };
            ident.name = format!("{}:{}", ident.name, part.name);
            ident.span = ident.span.to(part.span);
        }
        Ok(ident)
    }

    /// The items of a bracketed list whose opening bracket was just consumed, up to and with
    /// `close`: either all on one line, `a, b`, or one per line, each ending with a comma.
    fn delimited<T>(
        &mut self,
        close: &Token,
        what: &str,
        mut item: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        let open = self.last;
        let mut items = Vec::new();
        if self.eat(close).is_some() {
            return Ok(items);
        }
        if self.at(&Token::Newline) {
            loop {
                self.skip_newlines();
                if self.eat(close).is_some() {
                    return Ok(items);
                }
                items.push(item(self)?);
                if !self.at(&Token::Comma) {
                    return Err(self.missing_comma(what));
                }
                self.bump();
                if !self.at(&Token::Newline) {
                    return Err(self
                        .unexpected("a newline")
                        .tap_note(format!("on several lines, each {what} is on its own line")));
                }
            }
        }
        loop {
            items.push(item(self)?);
            if self.eat(&Token::Comma).is_none() {
                let expected = format!("`,` or {}", close.describe());
                self.expect(close, &expected).map_err(|e| Box::new(e.with_secondary(open, "opened here")))?;
                return Ok(items);
            }
            if self.at(close) {
                return Err(Box::new(
                    Diagnostic::parse(self.last, "trailing comma on a single line")
                        .with_label("remove this comma")
                        .with_note(format!("a comma ends each {what} only when each is on its own line")),
                ));
            }
        }
    }

    fn missing_comma(&self, what: &str) -> Box<Diagnostic> {
        let found = self.peek().describe();
        Box::new(
            Diagnostic::parse(self.last.after(), format!("expected `,` after the {what}, found {found}"))
                .with_label("add a comma here")
                .with_note(format!("on several lines, each {what} ends with a comma")),
        )
    }
}

/// `$a -1` is `$a` then the number `-1`, as upstream lexes it: say so.
fn with_minus_hint(error: Diagnostic, found: &Token) -> Diagnostic {
    match found {
        Token::Int(text) | Token::Float(text) if text.starts_with('-') => {
            error.with_note(format!("to subtract, put a space after `-`: `- {}`", &text[1..]))
        }
        _ => error,
    }
}

trait TapNote {
    fn tap_note(self, note: String) -> Self;
}

impl TapNote for Box<Diagnostic> {
    fn tap_note(mut self, note: String) -> Self {
        self.notes.push(note);
        self
    }
}

#[cfg(test)]
mod tests;
