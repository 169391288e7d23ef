//! Reads a Go text/template into nodes: text, actions (`{{ pipeline }}`), `if`, `range`,
//! `with`, variables, and the trim markers `{{-` and `-}}`.

/// The deepest nesting of blocks and parentheses a template may have.
const MAX_DEPTH: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If { branches: Vec<(Pipe, Vec<Node>)>, otherwise: Vec<Node> },
    Range { pipe: Pipe, body: Vec<Node>, otherwise: Vec<Node> },
    With { pipe: Pipe, body: Vec<Node>, otherwise: Vec<Node> },
    Break,
    Continue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipe {
    pub line: usize,
    /// `$x := ...` (or `$i, $v := ...` in a range); `assign` for `$x = ...`.
    pub vars: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `.` followed by fields: `.`, `.A.B`.
    Dot(Vec<String>),
    /// `$x.A`; `$` alone is the root.
    Var(String, Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Func(String),
    /// `(pipeline).A`.
    Paren(Box<Pipe>, Vec<String>),
}

pub fn parse(text: &str) -> Result<Vec<Node>, String> {
    let items = split(text)?;
    let mut parser = Parser { items, pos: 0, depth: 0 };
    let (nodes, end) = parser.nodes()?;
    match end {
        None => Ok(nodes),
        Some((word, line)) => Err(format!("line {line}: unexpected {{{{{word}}}}}")),
    }
}

/// Text or the inside of one action, with its line.
#[derive(Debug)]
enum Item {
    Text(String),
    Action(String, usize),
}

/// Splits the template into text and actions, applying the trim markers.
fn split(text: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start();
        }
        let line = text[..text.len() - rest.len() + start].matches('\n').count() + 1;
        let mut inner = &rest[start + 2..];
        if inner.starts_with("- ") || inner.starts_with("-\t") || inner.starts_with("-\n") {
            before = before.trim_end();
            inner = &inner[1..];
        }
        if !before.is_empty() {
            items.push(Item::Text(before.to_string()));
        }
        let end = action_end(inner).ok_or_else(|| format!("line {line}: unclosed action"))?;
        let mut action = &inner[..end];
        trim_next = action.ends_with(" -") || action.ends_with("\t-") || action.ends_with("\n-");
        if trim_next {
            action = &action[..action.len() - 1];
        }
        let action = action.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            items.push(Item::Action(action.to_string(), line));
        }
        rest = &inner[end + 2..];
    }
    let last = if trim_next { rest.trim_start() } else { rest };
    if !last.is_empty() {
        items.push(Item::Text(last.to_string()));
    }
    Ok(items)
}

/// Where `}}` closes the action, outside quotes.
fn action_end(inner: &str) -> Option<usize> {
    let bytes = inner.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == b'\\' && q != b'`' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'`' => quote = Some(b),
            None if inner[i..].starts_with("}}") => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

struct Parser {
    items: Vec<Item>,
    pos: usize,
    depth: usize,
}

/// The keyword that ended a list of nodes (`end`, `else`, `else if x`), with its line.
type End = Option<(String, usize)>;

impl Parser {
    fn nodes(&mut self) -> Result<(Vec<Node>, End), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("blocks nested deeper than {MAX_DEPTH}"));
        }
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.pos], Item::Text(String::new()));
            self.pos += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action(a, line) => {
                    let word = a.split_whitespace().next().unwrap_or("");
                    match word {
                        "end" | "else" => {
                            self.depth -= 1;
                            return Ok((nodes, Some((a, line))));
                        }
                        "if" | "range" | "with" => nodes.push(self.block(word, &a[word.len()..], line)?),
                        "break" => nodes.push(Node::Break),
                        "continue" => nodes.push(Node::Continue),
                        "define" | "template" | "block" => {
                            return Err(format!("line {line}: `{word}` is not supported"));
                        }
                        _ => nodes.push(Node::Action(pipe(&a, line)?)),
                    }
                }
            }
        }
        self.depth -= 1;
        Ok((nodes, None))
    }

    fn block(&mut self, word: &str, rest: &str, line: usize) -> Result<Node, String> {
        let pipe = pipe(rest, line)?;
        let (body, end) = self.nodes()?;
        let (otherwise, branches) = match end {
            None => return Err(format!("line {line}: `{word}` without {{{{end}}}}")),
            Some((e, _)) if e == "end" => (Vec::new(), Vec::new()),
            Some((e, _)) if e == "else" => (self.until_end(line)?, Vec::new()),
            Some((e, l)) => {
                let chained = e["else".len()..].trim_start();
                let Some(inner) = chained.strip_prefix("if ").filter(|_| word == "if") else {
                    return Err(format!("line {l}: unexpected {{{{{e}}}}}"));
                };
                match self.block("if", inner, l)? {
                    Node::If { branches, otherwise } => (otherwise, branches),
                    _ => return Err(format!("line {l}: unexpected {{{{{e}}}}}")),
                }
            }
        };
        Ok(match word {
            "if" => {
                let mut all = vec![(pipe, body)];
                all.extend(branches);
                Node::If { branches: all, otherwise }
            }
            "range" => Node::Range { pipe, body, otherwise },
            _ => Node::With { pipe, body, otherwise },
        })
    }

    fn until_end(&mut self, line: usize) -> Result<Vec<Node>, String> {
        match self.nodes()? {
            (nodes, Some((e, _))) if e == "end" => Ok(nodes),
            (_, Some((e, l))) => Err(format!("line {l}: unexpected {{{{{e}}}}}")),
            (_, None) => Err(format!("line {line}: {{{{else}}}} without {{{{end}}}}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Open,
    Close,
    Bar,
    Declare,
    Assign,
    Comma,
    Fields(Vec<String>),
}

fn tokens(text: &str, line: usize) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | '|' | ',' | '=' => {
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    '|' => Tok::Bar,
                    ',' => Tok::Comma,
                    _ => Tok::Assign,
                });
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Declare);
                i += 2;
            }
            '"' | '`' => {
                let (s, next) =
                    string(&chars, i).ok_or_else(|| format!("line {line}: unterminated or bad string"))?;
                out.push(Tok::Str(s));
                i = next;
            }
            '.' if chars.get(i + 1).is_none_or(|c| !c.is_ascii_digit()) => {
                let (fields, next) = fields(&chars, i);
                out.push(Tok::Fields(fields));
                i = next;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let end = scan(&chars, i + 1, |c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
                out.push(Tok::Num(chars[i..end].iter().collect()));
                i = end;
            }
            c if c == '$' || c.is_alphabetic() || c == '_' => {
                let end = scan(&chars, i + 1, |c| c.is_alphanumeric() || c == '_');
                out.push(Tok::Word(chars[i..end].iter().collect()));
                i = end;
                if chars.get(i) == Some(&'.')
                    && chars.get(i + 1).is_some_and(|c| c.is_alphabetic() || *c == '_')
                {
                    let (fields, next) = fields(&chars, i);
                    out.push(Tok::Fields(fields));
                    i = next;
                }
            }
            other => return Err(format!("line {line}: unexpected `{other}` in action")),
        }
    }
    Ok(out)
}

/// Where the run of characters matching `keep` from `i` ends.
fn scan(chars: &[char], mut i: usize, keep: impl Fn(char) -> bool) -> usize {
    while i < chars.len() && keep(chars[i]) {
        i += 1;
    }
    i
}

/// `.A.B` from position `i` (at the first dot): the names, empty for `.` alone.
fn fields(chars: &[char], mut i: usize) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    while i < chars.len() && chars[i] == '.' {
        let start = i + 1;
        let mut end = start;
        while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
            end += 1;
        }
        i = end;
        if end == start {
            break;
        }
        names.push(chars[start..end].iter().collect());
    }
    (names, i)
}

/// A quoted (with Go's escapes) or raw string starting at `i`, and the position after it.
fn string(chars: &[char], i: usize) -> Option<(String, usize)> {
    let quote = chars[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < chars.len() {
        let c = chars[j];
        if c == quote {
            return Some((out, j + 1));
        }
        if c == '\\' && quote == '"' {
            j += 1;
            let e = *chars.get(j)?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' | '"' | '\'' => out.push(e),
                'x' | 'u' | 'U' => {
                    let len = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = chars.get(j + 1..j + 1 + len)?.iter().collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    j += len;
                }
                _ => return None,
            }
        } else {
            out.push(c);
        }
        j += 1;
    }
    None
}

fn pipe(text: &str, line: usize) -> Result<Pipe, String> {
    let toks = tokens(text, line)?;
    let mut pos = 0;
    let pipe = pipe_tokens(&toks, &mut pos, line, 0)?;
    if pos != toks.len() {
        return Err(format!("line {line}: unexpected `{:?}` in action", toks[pos]));
    }
    Ok(pipe)
}

/// `$a, $b :=` at the start of a pipeline: the names, and whether it is `=`.
fn declaration(toks: &[Tok], pos: &mut usize) -> (Vec<String>, bool) {
    let mut names = Vec::new();
    let mut i = *pos;
    while let Some(Tok::Word(w)) = toks.get(i) {
        if !w.starts_with('$') {
            break;
        }
        names.push(w.clone());
        i += 1;
        match toks.get(i) {
            Some(Tok::Comma) => i += 1,
            Some(Tok::Declare | Tok::Assign) => {
                *pos = i + 1;
                return (names, toks[i] == Tok::Assign);
            }
            _ => break,
        }
    }
    (Vec::new(), false)
}

fn pipe_tokens(toks: &[Tok], pos: &mut usize, line: usize, depth: usize) -> Result<Pipe, String> {
    if depth > MAX_DEPTH {
        return Err(format!("line {line}: parentheses nested deeper than {MAX_DEPTH}"));
    }
    let (vars, assign) = declaration(toks, pos);
    let mut cmds = vec![Vec::new()];
    while let Some(tok) = toks.get(*pos) {
        *pos += 1;
        let arg = match tok {
            Tok::Close => {
                *pos -= 1;
                break;
            }
            Tok::Bar => {
                cmds.push(Vec::new());
                continue;
            }
            Tok::Open => {
                let inner = pipe_tokens(toks, pos, line, depth + 1)?;
                if toks.get(*pos) != Some(&Tok::Close) {
                    return Err(format!("line {line}: unclosed parenthesis"));
                }
                *pos += 1;
                Arg::Paren(Box::new(inner), trailing_fields(toks, pos))
            }
            Tok::Fields(f) => Arg::Dot(f.clone()),
            Tok::Str(s) => Arg::Str(s.clone()),
            Tok::Num(n) => number(n).ok_or_else(|| format!("line {line}: bad number `{n}`"))?,
            Tok::Word(w) if w.starts_with('$') => Arg::Var(w.clone(), trailing_fields(toks, pos)),
            Tok::Word(w) => match w.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => Arg::Func(w.clone()),
            },
            other => return Err(format!("line {line}: unexpected `{other:?}` in action")),
        };
        if let Some(cmd) = cmds.last_mut() {
            cmd.push(arg);
        }
    }
    if cmds.iter().any(Vec::is_empty) {
        return Err(format!("line {line}: missing value for command"));
    }
    Ok(Pipe { line, vars, assign, cmds })
}

fn trailing_fields(toks: &[Tok], pos: &mut usize) -> Vec<String> {
    match toks.get(*pos) {
        Some(Tok::Fields(f)) => {
            *pos += 1;
            f.clone()
        }
        _ => Vec::new(),
    }
}

fn number(text: &str) -> Option<Arg> {
    let clean = text.replace('_', "");
    let (sign, digits) = match clean.strip_prefix('-') {
        Some(d) => (-1, d.to_string()),
        None => (1, clean.trim_start_matches('+').to_string()),
    };
    let radix =
        [("0x", 16), ("0X", 16), ("0o", 8), ("0b", 2)].into_iter().find(|(p, _)| digits.starts_with(p));
    if let Some((prefix, radix)) = radix {
        return i64::from_str_radix(&digits[prefix.len()..], radix).ok().map(|n| Arg::Int(sign * n));
    }
    if let Ok(n) = clean.parse::<i64>() {
        return Some(Arg::Int(n));
    }
    clean.parse::<f64>().ok().filter(|x| x.is_finite()).map(Arg::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_blocks_and_trimming() {
        let nodes = parse("a {{- .X -}} b{{ if .Y }}y{{ else if .Z }}z{{ else }}n{{ end }}").unwrap();
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[0], Node::Text("a".into()));
        assert_eq!(nodes[2], Node::Text("b".into()));
        assert!(
            matches!(&nodes[3], Node::If { branches, otherwise } if branches.len() == 2 && otherwise.len() == 1)
        );
        let nodes = parse("{{ range $i, $v := . }}{{ $v }}{{ end }}").unwrap();
        assert!(matches!(&nodes[0], Node::Range { pipe, .. } if pipe.vars == ["$i", "$v"]));
        assert_eq!(parse("{{/* a comment */}}x").unwrap(), vec![Node::Text("x".into())]);
        assert!(parse(r#"{{ printf "%d}}" 1 | print }}"#).is_ok());
    }

    #[test]
    fn broken_templates_are_errors() {
        for text in [
            "{{ .X",
            "{{ if .X }}",
            "{{ end }}",
            "{{ (.X }}",
            "{{ \"x }}",
            "{{ range . }}{{ else }}",
            "{{ | }}",
            "{{ template \"x\" }}",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        let deep = format!("{}{}", "{{ if 1 }}".repeat(200), "{{ end }}".repeat(200));
        assert!(parse(&deep).is_err());
        let parens = format!("{{{{ {}1{} }}}}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&parens).is_err());
    }
}
