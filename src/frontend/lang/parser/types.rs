//! Type annotations and function parameters.

use super::super::ast::*;
use super::super::diagnostic::Diagnostic;
use super::super::lexer::Token;
use super::{PResult, Parser};

impl Parser {
    /// Whether a type starts here.
    pub(super) fn at_type(&self) -> bool {
        matches!(
            self.peek(),
            Token::BoolType
                | Token::StrType
                | Token::IntType
                | Token::FloatType
                | Token::Variant
                | Token::LBracket
                | Token::Map
                | Token::Struct
                | Token::Func
        )
    }

    /// `bool`, `str`, `int`, `float`, `variant`, `[]T`, `map{K: V}`, `struct{a T; b U}`,
    /// `func(T, $name U) R`.
    pub(super) fn ty(&mut self) -> PResult<Type> {
        self.nested(Self::ty_unbounded)
    }

    fn ty_unbounded(&mut self) -> PResult<Type> {
        let start = self.span();
        let kind = match self.peek() {
            Token::BoolType => self.simple(TypeKind::Bool),
            Token::StrType => self.simple(TypeKind::Str),
            Token::IntType => self.simple(TypeKind::Int),
            Token::FloatType => self.simple(TypeKind::Float),
            Token::Variant => self.simple(TypeKind::Variant),
            Token::LBracket => {
                self.bump();
                self.expect(&Token::RBracket, "`]` (a list type is `[]T`)")?;
                TypeKind::List(Box::new(self.ty()?))
            }
            Token::Map => self.map_type()?,
            Token::Struct => self.struct_type()?,
            Token::Func => self.func_type()?,
            _ => return Err(self.unexpected("a type")),
        };
        Ok(Type { kind, span: self.since(start) })
    }

    fn simple(&mut self, kind: TypeKind) -> TypeKind {
        self.bump();
        kind
    }

    fn map_type(&mut self) -> PResult<TypeKind> {
        self.bump();
        self.expect(&Token::LBrace, "`{` (a map type is `map{K: V}`)")?;
        let key = self.ty()?;
        self.expect(&Token::Colon, "`:`")?;
        let value = self.ty()?;
        self.expect(&Token::RBrace, "`}`")?;
        Ok(TypeKind::Map(Box::new(key), Box::new(value)))
    }

    /// `struct{}` or `struct{a T; b U}`: field names are unique.
    fn struct_type(&mut self) -> PResult<TypeKind> {
        self.bump();
        self.expect(&Token::LBrace, "`{` (a struct type is `struct{a T; b U}`)")?;
        let mut fields: Vec<(Ident, Type)> = Vec::new();
        if self.eat(&Token::RBrace).is_some() {
            return Ok(TypeKind::Struct(fields));
        }
        loop {
            let name = self.name("a field name")?;
            let ty = self.ty()?;
            if fields.iter().any(|(other, _)| other.name == name.name) {
                self.report(
                    Diagnostic::parse(name.span, format!("the field `{}` is declared twice", name.name))
                        .with_label("again here"),
                );
            }
            fields.push((name, ty));
            if self.eat(&Token::Semicolon).is_none() {
                self.expect(&Token::RBrace, "`;` or `}`")?;
                return Ok(TypeKind::Struct(fields));
            }
        }
    }

    /// `func(T, U) R` or `func($a T, $b U) R`.
    fn func_type(&mut self) -> PResult<TypeKind> {
        self.bump();
        self.expect(&Token::LParen, "`(`")?;
        let args = self.delimited(&Token::RParen, "argument type", |p| {
            if p.at(&Token::Dollar) {
                let name = p.var_name()?;
                Ok((Some(name), p.ty()?))
            } else {
                Ok((None, p.ty()?))
            }
        })?;
        let ret = self.ty()?;
        Ok(TypeKind::Func(args, Box::new(ret)))
    }

    /// A function or class parameter: `$name`, or `$name type`.
    pub(super) fn param(&mut self) -> PResult<Param> {
        let name = self.var_name()?;
        let ty = if self.at_type() { Some(self.ty()?) } else { None };
        let span = self.since(name.span);
        Ok(Param { name, ty, span })
    }
}
