//! Tokens of mcl. Newlines are tokens: they end statements and separate the elements of a
//! multi-line list, map, struct or argument list. Comments (`#` to the end of the line) and
//! blanks are skipped. Numbers keep their text (and a leading `-`, as upstream lexes `-1` as one
//! token); the parser reads their value, so an overflow is reported where it is.

use logos::Logos;

use super::diagnostic::Diagnostic;
use super::span::{FileId, Span};

#[derive(Logos, Debug, Clone, PartialEq)]
#[logos(skip r"[ \t]+")]
#[logos(skip(r"#[^\n]*", allow_greedy = true))]
pub enum Token {
    #[token("\n")]
    Newline,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("?:")]
    Elvis,
    #[token("<|>")]
    Except,
    #[token("=>")]
    Rocket,
    #[token("->")]
    Arrow,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(";")]
    Semicolon,
    #[token("=")]
    Assign,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("==")]
    Eq,
    #[token("!=")]
    Ne,
    #[token("<")]
    Lt,
    #[token(">")]
    Gt,
    #[token("<=")]
    Le,
    #[token(">=")]
    Ge,
    #[token(".")]
    Dot,
    #[token("$")]
    Dollar,
    #[token("and")]
    And,
    #[token("or")]
    Or,
    #[token("not")]
    Not,
    #[token("in")]
    In,
    #[token("if")]
    If,
    #[token("else")]
    Else,
    #[token("for")]
    For,
    #[token("forkv")]
    ForKv,
    #[token("func")]
    Func,
    #[token("class")]
    Class,
    #[token("include")]
    Include,
    #[token("import")]
    Import,
    #[token("as")]
    As,
    #[token("panic")]
    Panic,
    #[token("collect")]
    Collect,
    #[token("bool")]
    BoolType,
    #[token("str")]
    StrType,
    #[token("int")]
    IntType,
    #[token("float")]
    FloatType,
    #[token("map")]
    Map,
    #[token("struct")]
    Struct,
    #[token("variant")]
    Variant,
    #[token("true", |_| true)]
    #[token("false", |_| false)]
    Bool(bool),
    /// The text between the quotes, escapes not yet read.
    #[regex(r#""([^"\\]|\\[\s\S])*""#, |lex| { let s = lex.slice(); s[1..s.len() - 1].to_string() })]
    Str(String),
    #[regex(r"-?[0-9]+", |lex| lex.slice().to_string())]
    Int(String),
    #[regex(r"-?[0-9]+\.[0-9]+", |lex| lex.slice().to_string())]
    Float(String),
    #[regex(r"[a-z][a-z0-9_]*", |lex| lex.slice().to_string())]
    Ident(String),
    /// A capitalized name (`File`, `Meta`, `Before`), as written.
    #[regex(r"[A-Z][a-z0-9_]*", |lex| lex.slice().to_string())]
    CapIdent(String),
    /// Stands for the end of the file.
    Eof,
}

impl Token {
    /// How a token is named in "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Token::Newline => "a newline".into(),
            Token::Eof => "the end of the file".into(),
            Token::Bool(b) => format!("`{b}`"),
            Token::Str(_) => "a string".into(),
            Token::Int(s) | Token::Float(s) => format!("the number `{s}`"),
            Token::Ident(s) | Token::CapIdent(s) => format!("`{s}`"),
            other => format!("`{}`", other.text()),
        }
    }

    fn text(&self) -> &'static str {
        match self {
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::Elvis => "?:",
            Token::Except => "<|>",
            Token::Rocket => "=>",
            Token::Arrow => "->",
            Token::Comma => ",",
            Token::Colon => ":",
            Token::Semicolon => ";",
            Token::Assign => "=",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Eq => "==",
            Token::Ne => "!=",
            Token::Lt => "<",
            Token::Gt => ">",
            Token::Le => "<=",
            Token::Ge => ">=",
            Token::Dot => ".",
            Token::Dollar => "$",
            Token::And => "and",
            Token::Or => "or",
            Token::Not => "not",
            Token::In => "in",
            Token::If => "if",
            Token::Else => "else",
            Token::For => "for",
            Token::ForKv => "forkv",
            Token::Func => "func",
            Token::Class => "class",
            Token::Include => "include",
            Token::Import => "import",
            Token::As => "as",
            Token::Panic => "panic",
            Token::Collect => "collect",
            Token::BoolType => "bool",
            Token::StrType => "str",
            Token::IntType => "int",
            Token::FloatType => "float",
            Token::Map => "map",
            Token::Struct => "struct",
            Token::Variant => "variant",
            _ => "?",
        }
    }
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub span: Span,
}

/// The tokens of a file, ending with [`Token::Eof`], and the errors met on the way: lexing goes
/// on after an unknown character, so that the parser reports what follows too.
pub fn lex(file: FileId, text: &str) -> (Vec<Spanned>, Vec<Diagnostic>) {
    let mut tokens = Vec::new();
    let mut errors = Vec::new();
    let mut lexer = Token::lexer(text);
    while let Some(result) = lexer.next() {
        let range = lexer.span();
        let span = Span::new(file, range.start, range.end);
        match result {
            Ok(token) => {
                if let Some(error) = check_name(&token, span) {
                    errors.push(error);
                }
                tokens.push(Spanned { token, span });
            }
            Err(()) if text[range.start..].starts_with('"') => {
                errors.push(unterminated_string(span));
                break;
            }
            Err(()) => errors.push(unknown_character(&text[range.clone()], span)),
        }
    }
    tokens.push(Spanned { token: Token::Eof, span: Span::new(file, text.len(), text.len()) });
    (tokens, errors)
}

/// Names may not end with `_` (upstream's rule: a name ends with a letter or digit).
fn check_name(token: &Token, span: Span) -> Option<Diagnostic> {
    match token {
        Token::Ident(s) | Token::CapIdent(s) if s.ends_with('_') => Some(
            Diagnostic::parse(span, format!("the name `{s}` ends with `_`"))
                .with_label("a name ends with a letter or a digit"),
        ),
        _ => None,
    }
}

fn unterminated_string(span: Span) -> Diagnostic {
    Diagnostic::parse(Span::new(span.file, span.start, span.start + 1), "unterminated string")
        .with_label("this string has no closing `\"`")
}

fn unknown_character(text: &str, span: Span) -> Diagnostic {
    let shown = text.chars().next().unwrap_or(' ');
    let error = Diagnostic::parse(span, format!("unexpected character {shown:?}"))
        .with_label("not part of any token");
    match shown {
        '\r' => error.with_note("mcl files use Unix line endings (\\n), not \\r\\n"),
        '\'' => error.with_note("strings are written with double quotes"),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<Token> {
        let (tokens, errors) = lex(0, text);
        assert!(errors.is_empty(), "{errors:?}");
        tokens.into_iter().map(|t| t.token).collect()
    }

    #[test]
    fn keywords_operators_and_names() {
        use Token::*;
        assert_eq!(
            tokens("if $x <|> forkv formula ?: -> >= => ."),
            vec![
                If,
                Dollar,
                Ident("x".into()),
                Except,
                ForKv,
                Ident("formula".into()),
                Elvis,
                Arrow,
                Ge,
                Rocket,
                Dot,
                Eof
            ]
        );
    }

    #[test]
    fn numbers_keep_their_sign_as_upstream() {
        use Token::*;
        assert_eq!(
            tokens("-1 2.5 3-4"),
            vec![Int("-1".into()), Float("2.5".into()), Int("3".into()), Int("-4".into()), Eof]
        );
    }

    #[test]
    fn comments_are_skipped_newlines_kept() {
        use Token::*;
        assert_eq!(tokens("# hi\n\"a\\\"b\" # c\n"), vec![Newline, Str("a\\\"b".into()), Newline, Eof]);
    }

    #[test]
    fn spans_are_byte_ranges() {
        let (tokens, _) = lex(3, "  abc\n");
        assert_eq!(tokens[0].span, Span::new(3, 2, 5));
        assert_eq!(tokens[1].span, Span::new(3, 5, 6));
    }

    #[test]
    fn errors_do_not_stop_lexing_except_an_open_string() {
        let (tokens, errors) = lex(0, "a @ b_ \"open");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].message.contains("'@'"));
        assert!(errors[1].message.contains("ends with `_`"));
        assert!(errors[2].message.contains("unterminated"));
        assert_eq!(tokens.last().map(|t| &t.token), Some(&Token::Eof));
    }
}
