//! `fmt.printf`, with Go's verbs. A verb without flags writes what upstream writes (`%f`
//! of 2.5 is `2.5`, as Go's `%v`); width, precision and the flags `-+ 0#` are Go's.
//! A format known before the program runs (a literal) types the arguments by its verbs; one
//! known only when running is checked then, as upstream allows.

use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::args::{poly, str_at};
use super::{Builtin, CallCtx, CallSite};

pub const FUNCS: &[Builtin] = &[poly(
    "fmt",
    "printf",
    "func(format str, args ...variant) str",
    infer_printf,
    printf,
    "the values written by the format's verbs: %s %q %d %b %o %x %X %c %f %e %g %t %v %T %%, with Go's width, precision and flags",
)];

/// The widest field a verb may ask for, so a format cannot allocate without bound.
const MAX_WIDTH: usize = 10_000;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
    pub verb: char,
}

#[derive(Debug, PartialEq)]
pub enum Piece {
    Text(String),
    Verb(Spec),
}

/// Reads a format into text and verbs; an error names the position.
pub fn parse(format: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = format.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&(_, flag)) = chars.peek() {
            match flag {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = number(&mut chars, at)?;
        if chars.peek().is_some_and(|&(_, c)| c == '.') {
            chars.next();
            spec.prec = Some(number(&mut chars, at)?.unwrap_or(0));
        }
        let Some((_, verb)) = chars.next() else {
            return Err(format!("the format ends inside the verb at byte {at}"));
        };
        if verb == '%' {
            text.push('%');
            continue;
        }
        if !"sqdboxXcfFeEgGtvT".contains(verb) {
            return Err(format!("unknown verb `%{verb}` at byte {at}"));
        }
        spec.verb = verb;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Verb(spec));
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn number(
    chars: &mut std::iter::Peekable<std::str::CharIndices>,
    at: usize,
) -> Result<Option<usize>, String> {
    let mut n: Option<usize> = None;
    while let Some(&(_, c)) = chars.peek() {
        let Some(d) = c.to_digit(10) else { break };
        chars.next();
        let value = n.unwrap_or(0) * 10 + d as usize;
        if value > MAX_WIDTH {
            return Err(format!("the width or precision of the verb at byte {at} is over {MAX_WIDTH}"));
        }
        n = Some(value);
    }
    Ok(n)
}

/// The types a verb accepts: `None` for any.
fn verb_types(verb: char) -> Option<&'static [Type]> {
    Some(match verb {
        's' => &[Type::Str],
        'q' => &[Type::Str],
        'd' | 'b' | 'o' | 'c' => &[Type::Int],
        'x' | 'X' => &[Type::Int, Type::Str],
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => &[Type::Float],
        't' => &[Type::Bool],
        _ => return None,
    })
}

fn verbs(format: &str) -> Result<Vec<Spec>, String> {
    Ok(parse(format)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Verb(spec) => Some(spec),
            Piece::Text(_) => None,
        })
        .collect())
}

fn infer_printf(site: &CallSite) -> Result<Option<Type>, String> {
    let Some(first) = site.args.first() else {
        return Err("fmt.printf needs a format".into());
    };
    if !matches!(first, Type::Str | Type::Var(_)) {
        return Err(format!("the format of fmt.printf must be a str, not {first}"));
    }
    let Some(Some(Val::Str(format))) = site.consts.first() else {
        // As upstream: a format known only when running types nothing; it is checked then.
        let mut types = vec![Type::Str];
        types.extend_from_slice(&site.args[1..]);
        return Ok(Some(Type::func(types, Type::Str)));
    };
    let specs = verbs(format)?;
    let given = site.args.len() - 1;
    if specs.len() != given {
        return Err(format!(
            "the format has {} verb{} but {given} value{} given",
            specs.len(),
            plural(specs.len()),
            if given == 1 { " is" } else { "s are" }
        ));
    }
    let mut types = vec![Type::Str];
    for (i, (spec, arg)) in specs.iter().zip(&site.args[1..]).enumerate() {
        types.push(verb_type(spec.verb, arg, i + 1)?);
    }
    Ok(Some(Type::func(types, Type::Str)))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The type of argument `index` as its verb decides it.
fn verb_type(verb: char, arg: &Type, index: usize) -> Result<Type, String> {
    let Some(allowed) = verb_types(verb) else { return Ok(arg.clone()) };
    match arg {
        Type::Var(_) if allowed.len() == 1 => Ok(allowed[0].clone()),
        Type::Var(_) | Type::Variant => Ok(arg.clone()),
        t if allowed.contains(t) => Ok(t.clone()),
        t => {
            let names: Vec<String> = allowed.iter().map(Type::to_string).collect();
            Err(format!("verb `%{verb}` wants {}, but value {index} is a {t}", names.join(" or ")))
        }
    }
}

fn printf(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    let format = str_at(&args, 0)?;
    let pieces = parse(format).map_err(CallError)?;
    let arg_types = match ctx.sig {
        Type::Func(types, _) => types.as_slice(),
        _ => &[],
    };
    let mut out = String::new();
    let mut next = 1;
    for piece in &pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Verb(spec) => {
                let value = args.get(next).ok_or_else(|| {
                    CallError(format!("the format has more verbs than the {} values given", args.len() - 1))
                })?;
                out.push_str(&format_verb(spec, value, arg_types.get(next))?);
                next += 1;
            }
        }
    }
    if next != args.len() {
        return Err(CallError(format!(
            "the format has {} verbs but {} values were given",
            next - 1,
            args.len() - 1
        )));
    }
    Ok(Val::Str(out))
}

pub fn format_verb(spec: &Spec, value: &Val, ty: Option<&Type>) -> Result<String, CallError> {
    let body = match (spec.verb, value) {
        ('v', _) => Body::plain(display(value)),
        ('T', _) => {
            Body::plain(ty.filter(|t| t.is_known()).cloned().unwrap_or_else(|| value.type_of()).to_string())
        }
        ('s', Val::Str(s)) => Body::plain(truncate(s, spec.prec)),
        ('q', Val::Str(s)) => Body::plain(go_quote(s)),
        ('t', Val::Bool(b)) => Body::plain(b.to_string()),
        ('x' | 'X', Val::Str(s)) => Body::plain(hex_bytes(s, spec.verb == 'X')),
        ('c', Val::Int(n)) => {
            Body::plain(u32::try_from(*n).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}').to_string())
        }
        ('d' | 'b' | 'o' | 'x' | 'X', Val::Int(n)) => int_body(spec, *n),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Val::Float(x)) => float_body(spec, *x),
        (verb, other) => {
            return Err(CallError(format!("verb `%{verb}` cannot write a {}", other.type_of())));
        }
    };
    Ok(pad(spec, body))
}

/// A formatted value: its sign (for numbers) and its digits, padded separately for `%05d`.
struct Body {
    sign: String,
    digits: String,
    numeric: bool,
}

impl Body {
    fn plain(text: String) -> Body {
        Body { sign: String::new(), digits: text, numeric: false }
    }
}

fn sign(spec: &Spec, negative: bool) -> String {
    match (negative, spec.plus, spec.space) {
        (true, _, _) => "-".into(),
        (false, true, _) => "+".into(),
        (false, false, true) => " ".into(),
        _ => String::new(),
    }
}

fn int_body(spec: &Spec, n: i64) -> Body {
    let abs = n.unsigned_abs();
    let (digits, prefix) = match spec.verb {
        'b' => (format!("{abs:b}"), "0b"),
        'o' => (format!("{abs:o}"), "0"),
        'x' => (format!("{abs:x}"), "0x"),
        'X' => (format!("{abs:X}"), "0X"),
        _ => (abs.to_string(), ""),
    };
    let digits = match spec.prec {
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        _ => digits,
    };
    let digits = if spec.sharp { format!("{prefix}{digits}") } else { digits };
    Body { sign: sign(spec, n < 0), digits, numeric: true }
}

fn float_body(spec: &Spec, x: f64) -> Body {
    if !x.is_finite() {
        let text = if x.is_nan() { "NaN" } else { "Inf" };
        let sign = if x.is_nan() { String::new() } else { sign(&Spec { plus: true, ..*spec }, x < 0.0) };
        return Body { sign, digits: text.into(), numeric: false };
    }
    let abs = x.abs();
    let digits = match (spec.verb, spec.prec) {
        ('f' | 'F', None) => float_text(abs),
        ('f' | 'F', Some(p)) => format!("{abs:.p$}"),
        ('e' | 'E', p) => exp_form(abs, p.or(Some(6)), spec.verb == 'E'),
        (_, p) => general(abs, p, spec.verb == 'G'),
    };
    Body { sign: sign(spec, x.is_sign_negative()), digits, numeric: true }
}

/// Go's `%e`: `1.500000e+03`, the exponent signed and at least two digits.
fn exp_form(x: f64, prec: Option<usize>, upper: bool) -> String {
    let text = match prec {
        Some(p) => format!("{x:.p$e}"),
        None => format!("{x:e}"),
    };
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let e = if upper { 'E' } else { 'e' };
    format!("{mantissa}{e}{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Go's `%g`: the shortest form, with an exponent only for very large or small numbers.
pub fn general(x: f64, prec: Option<usize>, upper: bool) -> String {
    let sci = match prec {
        Some(p) => format!("{x:.*e}", p.max(1) - 1),
        None => format!("{x:e}"),
    };
    let exp: i32 = sci.split_once('e').and_then(|(_, e)| e.parse().ok()).unwrap_or(0);
    let limit = prec.map_or(21, |p| p.max(1) as i32);
    if exp < -4 || exp >= limit {
        let mantissa = sci.split_once('e').map_or(sci.as_str(), |(m, _)| m);
        let e = if upper { 'E' } else { 'e' };
        return format!("{mantissa}{e}{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    match prec {
        None => float_text(x),
        Some(p) => {
            let decimals = (p.max(1) as i32 - 1 - exp).max(0) as usize;
            let text = format!("{x:.decimals$}");
            if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                text
            }
        }
    }
}

fn pad(spec: &Spec, body: Body) -> String {
    let len = body.sign.chars().count() + body.digits.chars().count();
    let fill = spec.width.unwrap_or(0).saturating_sub(len);
    if spec.minus {
        format!("{}{}{}", body.sign, body.digits, " ".repeat(fill))
    } else if spec.zero && body.numeric {
        format!("{}{}{}", body.sign, "0".repeat(fill), body.digits)
    } else {
        format!("{}{}{}", " ".repeat(fill), body.sign, body.digits)
    }
}

fn truncate(s: &str, prec: Option<usize>) -> String {
    match prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    }
}

fn hex_bytes(s: &str, upper: bool) -> String {
    let text = hex::encode(s.as_bytes());
    if upper { text.to_uppercase() } else { text }
}

/// A float as upstream writes it: the shortest decimal that reads back as the same number,
/// never with an exponent (`2.5`, `3`, `0.0001`).
pub fn float_text(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{x}")
    }
}

/// A value as `%v` writes it: text as it is, other scalars plainly, containers as upstream
/// prints them (`[1, 2]`, `{"a": 1}`, `struct{a: 1; b: "x"}`), their text quoted.
pub fn display(value: &Val) -> String {
    match value {
        Val::Str(s) => s.clone(),
        other => nested(other),
    }
}

/// A value inside a container: text is quoted.
fn nested(value: &Val) -> String {
    match value {
        Val::Bool(b) => b.to_string(),
        Val::Str(s) => go_quote(s),
        Val::Int(n) => n.to_string(),
        Val::Float(x) => float_text(*x),
        Val::List(items) => format!("[{}]", items.iter().map(nested).collect::<Vec<_>>().join(", ")),
        Val::Map(pairs) => {
            format!(
                "{{{}}}",
                pairs
                    .iter()
                    .map(|(k, v)| format!("{}: {}", nested(k), nested(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Val::Struct(fields) => {
            format!(
                "struct{{{}}}",
                fields.iter().map(|(k, v)| format!("{k}: {}", nested(v))).collect::<Vec<_>>().join("; ")
            )
        }
        Val::Func(f) => format!("<{}>", f.0.describe()),
    }
}

/// Text quoted as Go's `strconv.Quote` quotes it.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || c == '\u{fffd}' => out.push_str(&escape_wide(c)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn escape_wide(c: char) -> String {
    if (c as u32) <= 0xffff { format!("\\u{:04x}", c as u32) } else { format!("\\U{:08x}", c as u32) }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, infer_with, ints, s, ty};
    use super::*;

    fn printf(format: &str, values: Vec<Val>) -> Result<Val, CallError> {
        let mut args = vec![s(format)];
        args.extend(values);
        call(f("fmt", "printf"), args)
    }

    fn text(format: &str, values: Vec<Val>) -> String {
        match printf(format, values) {
            Ok(Val::Str(t)) => t,
            other => panic!("{format}: {other:?}"),
        }
    }

    #[test]
    fn plain_verbs_write_as_upstream_does() {
        assert_eq!(text("%s is %d", vec![s("x"), Val::Int(42)]), "x is 42");
        assert_eq!(text("%f %f %v", vec![Val::Float(2.5), Val::Float(3.0), Val::Float(0.1)]), "2.5 3 0.1");
        assert_eq!(text("%t %q %%", vec![Val::Bool(true), s("a\"b\n")]), "true \"a\\\"b\\n\" %");
        assert_eq!(text("%v", vec![ints(&[1, 2])]), "[1, 2]");
        let map = Val::map_of([(s("b"), s("x")), (s("a"), s("y"))]);
        assert_eq!(text("%v", vec![map]), r#"{"a": "y", "b": "x"}"#);
        let st = Val::Struct(vec![("a".into(), Val::Int(1)), ("b".into(), s("q"))]);
        assert_eq!(text("%v", vec![st.clone()]), r#"struct{a: 1; b: "q"}"#);
        assert_eq!(text("%T", vec![st]), "struct{a int; b str}");
        assert_eq!(text("héllo", vec![]), "héllo");
    }

    #[test]
    fn widths_precisions_and_flags_are_gos() {
        assert_eq!(
            text(
                "%.2f|%8.3f|%-6d|%06d|%+d",
                vec![Val::Float(3.14659), Val::Float(2.0), Val::Int(7), Val::Int(-42), Val::Int(5)]
            ),
            "3.15|   2.000|7     |-00042|+5"
        );
        assert_eq!(
            text(
                "%x %X %#x %o %b",
                vec![Val::Int(255), Val::Int(255), Val::Int(255), Val::Int(8), Val::Int(5)]
            ),
            "ff FF 0xff 10 101"
        );
        assert_eq!(text("%x", vec![s("hi")]), "6869");
        assert_eq!(text("%5s|%-5s|%.2s", vec![s("ab"), s("ab"), s("abc")]), "   ab|ab   |ab");
        assert_eq!(
            text("%e %.2e %E", vec![Val::Float(1500.0), Val::Float(0.000123), Val::Float(1.0)]),
            "1.500000e+03 1.23e-04 1.000000E+00"
        );
        assert_eq!(
            text("%g %g %.3g", vec![Val::Float(0.5), Val::Float(1e-7), Val::Float(3.14659)]),
            "0.5 1e-07 3.15"
        );
        assert_eq!(text("%c%d", vec![Val::Int(65), Val::Int(i64::MIN)]), "A-9223372036854775808");
    }

    #[test]
    fn wrong_values_and_formats_are_errors() {
        assert!(printf("%d", vec![s("x")]).is_err());
        assert!(printf("%d %d", vec![Val::Int(1)]).is_err());
        assert!(printf("%d", vec![Val::Int(1), Val::Int(2)]).is_err());
        assert!(printf("%z", vec![Val::Int(1)]).is_err());
        assert!(printf("%", vec![]).is_err());
        assert!(printf("%99999d", vec![Val::Int(1)]).is_err());
        assert!(call(f("fmt", "printf"), vec![]).is_err());
    }

    #[test]
    fn infer_types_the_arguments_from_the_format() {
        let v = Type::Var(9);
        let site = |format: &str, args: &[Type]| {
            let mut types = vec![Type::Str];
            types.extend_from_slice(args);
            let mut consts = vec![Some(s(format))];
            consts.resize(types.len(), None);
            infer_with(f("fmt", "printf"), &types, &consts, &v)
        };
        assert_eq!(
            site("%s=%d %v", &[v.clone(), Type::Var(2), ty("[]int")]),
            Ok(Some(ty("func(str, str, int, []int) str")))
        );
        assert_eq!(site("%x", &[Type::Var(4)]), Ok(Some(ty("func(str, ?4) str"))));
        let err = site("%d", &[Type::Str]).unwrap_err();
        assert!(err.contains("%d") && err.contains("str"), "{err}");
        assert!(site("%d %d", &[Type::Int]).unwrap_err().contains("2 verbs"));
        assert!(site("%y", &[Type::Int]).is_err());
        let dynamic = infer_with(f("fmt", "printf"), &[v.clone(), Type::Int], &[None, None], &v);
        assert_eq!(dynamic, Ok(Some(ty("func(str, int) str"))));
        assert!(infer_with(f("fmt", "printf"), &[Type::Int], &[Some(Val::Int(1))], &v).is_err());
    }

    #[test]
    fn quoting_is_gos() {
        assert_eq!(go_quote("a\tb\u{1}é"), "\"a\\tb\\x01é\"");
    }

    #[test]
    fn no_format_panics() {
        let values =
            [Val::Int(-3), Val::Float(-0.0), s("é"), Val::Bool(false), ints(&[]), Val::Float(f64::NAN)];
        for format in
            ["%", "%-", "%.", "%.9", "%#v", "% d", "%+.3e", "%08.3f", "%-+5x", "%c", "%.0g", "%10000d"]
        {
            for v in &values {
                let _ = printf(format, vec![v.clone()]);
            }
        }
    }
}
