//! mcl's types, as the type checker and the core library's signatures speak of them. A
//! [`Type::Var`] is a type not known yet: in a signature (`?1`) it stands for any type, the same
//! one wherever the same number appears, and each call gets fresh ones.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    Bool,
    Str,
    Int,
    Float,
    List(Box<Type>),
    Map(Box<Type>, Box<Type>),
    /// Fields in their written order.
    Struct(Vec<(String, Type)>),
    Func(Vec<Type>, Box<Type>),
    /// Decided at run time: a value of any type.
    Variant,
    /// Not known yet: solved by unification.
    Var(u32),
}

impl Type {
    pub fn list(of: Type) -> Type {
        Type::List(Box::new(of))
    }

    pub fn map(key: Type, value: Type) -> Type {
        Type::Map(Box::new(key), Box::new(value))
    }

    pub fn func(args: Vec<Type>, ret: Type) -> Type {
        Type::Func(args, Box::new(ret))
    }

    /// Whether no part of the type is still unknown.
    pub fn is_known(&self) -> bool {
        match self {
            Type::Var(_) => false,
            Type::List(t) => t.is_known(),
            Type::Map(k, v) => k.is_known() && v.is_known(),
            Type::Struct(fields) => fields.iter().all(|(_, t)| t.is_known()),
            Type::Func(args, ret) => args.iter().all(Type::is_known) && ret.is_known(),
            _ => true,
        }
    }

    /// Reads a signature written as mcl writes types, with `?N` for type variables:
    /// `func(str, []?1) map{str: ?1}`. Argument names are allowed and ignored.
    pub fn parse(text: &str) -> Result<Type, String> {
        let mut reader = SigReader { text, pos: 0 };
        let ty = reader.ty()?;
        reader.skip_space();
        if reader.pos != text.len() {
            return Err(format!("unexpected `{}` in type `{text}`", &text[reader.pos..]));
        }
        Ok(ty)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("bool"),
            Type::Str => f.write_str("str"),
            Type::Int => f.write_str("int"),
            Type::Float => f.write_str("float"),
            Type::List(t) => write!(f, "[]{t}"),
            Type::Map(k, v) => write!(f, "map{{{k}: {v}}}"),
            Type::Struct(fields) => {
                f.write_str("struct{")?;
                for (i, (name, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{name} {t}")?;
                }
                f.write_str("}")
            }
            Type::Func(args, ret) => {
                f.write_str("func(")?;
                for (i, t) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                write!(f, ") {ret}")
            }
            Type::Variant => f.write_str("variant"),
            Type::Var(n) => write!(f, "?{n}"),
        }
    }
}

/// A small reader for signature text; user programs' types go through the real parser.
struct SigReader<'a> {
    text: &'a str,
    pos: usize,
}

impl SigReader<'_> {
    fn skip_space(&mut self) {
        while self.text[self.pos..].starts_with([' ', '\t', '\n']) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected `{token}` at {} in `{}`", self.pos, self.text))
        }
    }

    fn word(&mut self) -> String {
        self.skip_space();
        let rest = &self.text[self.pos..];
        let len =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')).unwrap_or(rest.len());
        self.pos += len;
        rest[..len].to_string()
    }

    fn ty(&mut self) -> Result<Type, String> {
        if self.eat("[]") {
            return Ok(Type::list(self.ty()?));
        }
        if self.eat("?") {
            let n = self.word();
            return n.parse().map(Type::Var).map_err(|_| format!("bad type variable `?{n}`"));
        }
        match self.word().as_str() {
            "bool" => Ok(Type::Bool),
            "str" => Ok(Type::Str),
            "int" => Ok(Type::Int),
            "float" => Ok(Type::Float),
            "variant" => Ok(Type::Variant),
            "map" => {
                self.expect("{")?;
                let key = self.ty()?;
                self.expect(":")?;
                let value = self.ty()?;
                self.expect("}")?;
                Ok(Type::map(key, value))
            }
            "struct" => self.struct_fields(),
            "func" => self.func(),
            other => Err(format!("unknown type `{other}` in `{}`", self.text)),
        }
    }

    fn struct_fields(&mut self) -> Result<Type, String> {
        self.expect("{")?;
        let mut fields = Vec::new();
        while !self.eat("}") {
            let name = self.word();
            fields.push((name, self.ty()?));
            self.eat(";");
        }
        Ok(Type::Struct(fields))
    }

    fn func(&mut self) -> Result<Type, String> {
        self.expect("(")?;
        let mut args = Vec::new();
        while !self.eat(")") {
            self.skip_space();
            if self.text[self.pos..].starts_with('$') {
                self.word();
            }
            args.push(self.ty()?);
            self.eat(",");
        }
        Ok(Type::func(args, self.ty()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_read_back_as_written() {
        for text in [
            "func(str, []?1) map{str: ?1}",
            "struct{a int; b []float}",
            "func() bool",
            "func(func(?1) ?2, []?1) []?2",
            "variant",
        ] {
            assert_eq!(Type::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Type::parse("func($a str, $b int) str").unwrap().to_string(), "func(str, int) str");
    }

    #[test]
    fn bad_signatures_are_refused() {
        assert!(Type::parse("lst").is_err());
        assert!(Type::parse("map{str int}").is_err());
        assert!(Type::parse("int x").is_err());
    }

    #[test]
    fn known_means_no_variables() {
        assert!(Type::parse("[]map{str: int}").unwrap().is_known());
        assert!(!Type::parse("[]map{str: ?3}").unwrap().is_known());
    }
}
