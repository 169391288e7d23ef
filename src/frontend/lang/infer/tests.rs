//! The checker on small programs, with a small resolver of their names (lexical scopes,
//! order-independent binds) and a few builtins of its own.

use std::collections::HashMap;

use super::super::ast::{Callee, Expr, ExprKind, Func, InterpPart, Program, ResEntryKind, Stmt, StmtKind};
use super::super::funcs::{Builtin, CallCtx, CallSite};
use super::super::span::SourceMap;
use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::*;

fn never(_: &CallCtx, _: Vec<Val>) -> Result<Val, CallError> {
    Err(CallError::new("not called"))
}

/// `printf`: a `str` format, then one argument per `%d`, `%s` or `%v`.
fn printf(site: &CallSite) -> Result<Option<Type>, String> {
    let Some(Some(Val::Str(format))) = site.consts.first() else {
        return Err("the format must be a literal string".into());
    };
    let mut args = vec![Type::Str];
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('d') => args.push(Type::Int),
                Some('s') => args.push(Type::Str),
                Some('v') => match site.args.get(args.len()) {
                    Some(Type::Var(_)) | None => return Ok(None),
                    Some(t) => args.push(t.clone()),
                },
                _ => {}
            }
        }
    }
    Ok(Some(Type::func(args, Type::Str)))
}

/// A core function of these tests: what a signature needs, nothing to call.
const fn test_fn(
    name: &'static str,
    sig: &'static str,
    infer: Option<super::super::funcs::Infer>,
) -> Builtin {
    Builtin { module: "", name, sig, infer, call: never, doc: "", changes: None }
}

static BUILTINS: &[Builtin] = &[
    test_fn("len", "func([]?1) int", None),
    test_fn("printf", "func(str, variant) str", Some(printf)),
    test_fn("first", "func([]?1) ?1", None),
    test_fn("keys", "func(map{?1: ?2}) []?1", None),
];

/// Names to definitions, as scope resolution gives them, for the shapes the tests use.
struct Resolver<'m> {
    uses: HashMap<Span, Def<'m>>,
    scopes: Vec<HashMap<String, Def<'m>>>,
}

fn clone_def<'m>(def: &Def<'m>) -> Def<'m> {
    match def {
        Def::Bind { name, ty, value } => Def::Bind { name, ty: *ty, value },
        Def::Param { owner, index, param } => Def::Param { owner: *owner, index: *index, param },
        Def::LoopVar { stmt, index } => Def::LoopVar { stmt, index: *index },
        Def::Func { name, func } => Def::Func { name, func },
        Def::Class { stmt } => Def::Class { stmt },
        Def::IncludeBind { include, name, value } => Def::IncludeBind { include, name, value },
        Def::Builtin(b) => Def::Builtin(b),
        Def::Hostname => Def::Hostname,
        Def::Const(v) => Def::Const(v.clone()),
    }
}

impl<'m> Resolver<'m> {
    fn find(&mut self, name: &str, span: Span) {
        let found = self.scopes.iter().rev().find_map(|s| s.get(name)).map(clone_def);
        let found = found.or_else(|| BUILTINS.iter().find(|b| b.name == name).map(Def::Builtin));
        if let Some(def) = found {
            self.uses.insert(span, def);
        }
    }

    fn block(&mut self, stmts: &'m [Stmt], extra: Vec<(String, Def<'m>)>) {
        let mut scope: HashMap<String, Def<'m>> = extra.into_iter().collect();
        for stmt in stmts {
            match &stmt.kind {
                StmtKind::Bind { name, ty, value } => {
                    scope.insert(name.name.clone(), Def::Bind { name, ty: ty.as_ref(), value });
                }
                StmtKind::Func { name, func } => {
                    scope.insert(name.name.clone(), Def::Func { name, func });
                }
                StmtKind::Class { name, .. } => {
                    scope.insert(format!("class {}", name.name), Def::Class { stmt });
                }
                _ => {}
            }
        }
        self.scopes.push(scope);
        stmts.iter().for_each(|s| self.stmt(s));
        self.scopes.pop();
    }

    fn stmt(&mut self, stmt: &'m Stmt) {
        match &stmt.kind {
            StmtKind::Bind { value, .. } => self.expr(value),
            StmtKind::Resource(r) => {
                self.expr(&r.name);
                for e in &r.entries {
                    if let Some(c) = &e.cond {
                        self.expr(c);
                    }
                    match &e.kind {
                        ResEntryKind::Param { value, .. }
                        | ResEntryKind::Meta { value, .. }
                        | ResEntryKind::MetaStruct { value } => self.expr(value),
                        ResEntryKind::Edge { target, .. } => self.expr(&target.name),
                    }
                }
            }
            StmtKind::Edge(halves) => halves.iter().for_each(|h| self.expr(&h.name)),
            StmtKind::If { cond, then, otherwise } => {
                self.expr(cond);
                self.block(&then.stmts, vec![]);
                if let Some(o) = otherwise {
                    self.block(&o.stmts, vec![]);
                }
            }
            StmtKind::For { index, value, list: e, body }
            | StmtKind::ForKv { key: index, value, map: e, body } => {
                self.expr(e);
                let vars = vec![
                    (index.name.clone(), Def::LoopVar { stmt, index: 0 }),
                    (value.name.clone(), Def::LoopVar { stmt, index: 1 }),
                ];
                self.block(&body.stmts, vars);
            }
            StmtKind::Func { func, .. } => self.func(func, stmt.span),
            StmtKind::Class { params, body, .. } => {
                let params = params.as_deref().unwrap_or(&[]);
                let vars = params
                    .iter()
                    .enumerate()
                    .map(|(index, param)| {
                        (param.name.name.clone(), Def::Param { owner: stmt.span, index, param })
                    })
                    .collect();
                self.block(&body.stmts, vars);
            }
            StmtKind::Include { name, args, .. } => {
                args.iter().flatten().for_each(|a| self.expr(a));
                self.find(&format!("class {}", name.name), name.span);
            }
            StmtKind::Panic { args } => args.iter().for_each(|a| self.expr(a)),
            StmtKind::Import { .. } => {}
        }
    }

    fn func(&mut self, func: &'m Func, owner: Span) {
        let scope = func
            .params
            .iter()
            .enumerate()
            .map(|(index, param)| (param.name.name.clone(), Def::Param { owner, index, param }))
            .collect();
        self.scopes.push(scope);
        self.expr(&func.body);
        self.scopes.pop();
    }

    fn expr(&mut self, expr: &'m Expr) {
        match &expr.kind {
            ExprKind::Interp(parts) => {
                for p in parts {
                    if let InterpPart::Var(i) = p {
                        self.find(&i.name, i.span);
                    }
                }
            }
            ExprKind::List(items) => items.iter().for_each(|e| self.expr(e)),
            ExprKind::Map(entries) => entries.iter().for_each(|e| {
                self.expr(&e.key);
                self.expr(&e.value)
            }),
            ExprKind::Struct(fields) => fields.iter().for_each(|f| self.expr(&f.value)),
            ExprKind::Var(i) => self.find(&i.name, i.span),
            ExprKind::Call { callee, args } => {
                match callee {
                    Callee::Name(i) | Callee::Var(i) => self.find(&i.name, i.span),
                    Callee::Lambda(l) => self.expr(l),
                }
                args.iter().for_each(|a| self.expr(a));
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs)
            }
            ExprKind::Not(e) => self.expr(e),
            ExprKind::Index { base, index } => {
                self.expr(base);
                self.expr(index)
            }
            ExprKind::Field { base, .. } => self.expr(base),
            ExprKind::Except { expr, fallback } => {
                self.expr(expr);
                self.expr(fallback)
            }
            ExprKind::If { cond, then, otherwise } => {
                self.expr(cond);
                self.expr(then);
                self.expr(otherwise)
            }
            ExprKind::Func(f) => self.func(f, expr.span),
            _ => {}
        }
    }
}

fn parse(text: &str) -> (SourceMap, Program) {
    let mut map = SourceMap::new();
    let file = map.add("t.mcl", text);
    let (program, errors) = crate::frontend::lang::parse_file(&map, file);
    assert!(errors.is_empty(), "{errors:?}");
    (map, program)
}

/// The errors of checking `text`, one short line each; empty when it checks.
fn errors_of(text: &str) -> Vec<String> {
    let (map, program) = parse(text);
    let mut resolver = Resolver { uses: HashMap::new(), scopes: Vec::new() };
    resolver.block(&program.stmts, vec![]);
    let res = Resolution { uses: resolver.uses, ..Resolution::default() };
    match check_programs(&[&program], &res, &Core) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.short(&map)).collect(),
    }
}

/// The type of the bind `name` in `text`, which must check.
fn type_of(text: &str, name: &str) -> String {
    let (_, program) = parse(text);
    let mut resolver = Resolver { uses: HashMap::new(), scopes: Vec::new() };
    resolver.block(&program.stmts, vec![]);
    let res = Resolution { uses: resolver.uses, ..Resolution::default() };
    let types = match check_programs(&[&program], &res, &Core) {
        Ok(types) => types,
        Err(errors) => panic!("{text}: {errors:?}"),
    };
    let value = program
        .stmts
        .iter()
        .find_map(|s| match &s.kind {
            StmtKind::Bind { name: n, value, .. } if n.name == name.trim_start_matches('$') => {
                Some(value.span)
            }
            _ => None,
        })
        .unwrap();
    types.expr_type(value).unwrap().to_string()
}

fn refused(text: &str, wanted: &str) {
    let errors = errors_of(text);
    assert!(errors.iter().any(|e| e.contains(wanted)), "{text}\nwanted `{wanted}` in {errors:#?}");
}

#[test]
fn literals_and_collections() {
    assert_eq!(type_of("$x = [1, 2]\n", "$x"), "[]int");
    assert_eq!(type_of("$x = {\"a\" => 1.5}\n", "$x"), "map{str: float}");
    assert_eq!(type_of("$x = struct{a => 1, b => \"s\"}\n", "$x"), "struct{a int; b str}");
    assert_eq!(type_of("$x = [[true]]\n", "$x"), "[][]bool");
    refused("$x = [1, \"a\"]\n", "expected `int`, found `str`");
    refused("$x = {\"a\" => 1, 2 => 3}\n", "expected `str`, found `int`");
}

#[test]
fn binds_are_typed_in_any_order_and_annotations_decide() {
    assert_eq!(type_of("$y = $x\n$x []str = []\n", "$y"), "[]str");
    assert_eq!(type_of("$x = []\n$n = len($x)\n$y = $x[0] + \"a\"\n", "$x"), "[]str");
    refused("$x int = \"a\"\n", "expected `int`, found `str`");
    refused("$x = []\n", "cannot determine the type of `$x`");
}

#[test]
fn indexing_fields_and_except() {
    assert_eq!(type_of("$l = [1]\n$x = $l[0]\n", "$x"), "int");
    assert_eq!(type_of("$m = {\"a\" => true}\n$x = $m[\"a\"]\n", "$x"), "bool");
    assert_eq!(type_of("$s = struct{a => 1}\n$x = $s->a\n", "$x"), "int");
    assert_eq!(type_of("$s = struct{a => 1}\n$x = $s->b <|> \"d\"\n", "$x"), "str");
    refused("$l = [1]\n$x = $l[\"a\"]\n", "expected `int`, found `str`");
    refused("$s = struct{a => 1}\n$x = $s->b\n", "no field `b`");
    refused("$x = 1 <|> \"a\"\n", "expected `int`, found `str`");
    refused("$x = 3[0]\n", "expected a list or a map, found `int`");
}

#[test]
fn operators_and_if() {
    assert_eq!(type_of("$x = 1 + 2\n", "$x"), "int");
    assert_eq!(type_of("$x = 1 < 2 and not false\n", "$x"), "bool");
    assert_eq!(type_of("$x = if true { 1 } else { 2 }\n", "$x"), "int");
    refused("$x = 1 + \"a\"\n", "expected `int`, found `str`");
    refused("$x = if 1 { 1 } else { 2 }\n", "expected `bool`, found `int`");
    refused("$x = if true { 1 } else { \"a\" }\n", "expected `int`, found `str`");
    refused("$x = true + true\n", "not to bool");
}

#[test]
fn functions_are_generic_per_use_and_lambdas_are_not() {
    let text = "func id($x) { $x }\n$a = id(1)\n$b = id(\"s\")\n";
    assert_eq!(type_of(text, "$a"), "int");
    assert_eq!(type_of(text, "$b"), "str");
    assert_eq!(type_of("$f = func($x) { $x + 1 }\n$y = $f(2)\n", "$y"), "int");
    refused("$f = func($x) { $x }\n$a = $f(1)\n$b = $f(\"s\")\n", "expected `int`, found `str`");
    refused("func f($x int) { $x }\n$a = f(\"s\")\n", "expected `int`, found `str`");
    refused("func f($x) { $x }\n$a = f(1, 2)\n", "takes 1 argument but 2 were given");
    assert_eq!(
        type_of("func twice($f, $x) { $f($f($x)) }\n$y = twice(func($s) { $s + \"!\" }, \"a\")\n", "$y"),
        "str"
    );
}

#[test]
fn polymorphic_builtins_decide_when_they_can() {
    assert_eq!(type_of("$x = printf(\"%d and %s\", 1, \"a\")\n", "$x"), "str");
    assert_eq!(type_of("$l = [1.5]\n$x = printf(\"%v\", $l)\n", "$x"), "str");
    refused("$x = printf(\"%d\", \"a\")\n", "expected `int`, found `str`");
    let generic = "func show($v) { printf(\"%v\", $v) }\n$a = show(1)\n$b = show(true)\n";
    assert_eq!(type_of(generic, "$a"), "str");
    assert!(errors_of("func show($v) { printf(\"%v\", $v) }\n").is_empty());
}

#[test]
fn resources_loops_and_classes() {
    assert!(
        errors_of("test \"a\" {\n int64 => 1,\n slicestring => [\"x\"],\n Meta:noop => true,\n}\n")
            .is_empty()
    );
    refused("test \"a\" {\n int8 => \"1\",\n}\n", "expected `int`, found `str`");
    refused("test \"a\" {\n nope => 1,\n}\n", "`test` has no param `nope`");
    refused("file \"a\" {\n Meta:retry => true,\n}\n", "expected `int`, found `bool`");
    refused("file 3 {\n}\n", "found `int`");
    assert!(errors_of("for $i, $v in [\"a\"] {\n file $v {\n }\n}\n").is_empty());
    refused("for $i, $v in [1] {\n file $v {\n }\n}\n", "found `int`");
    let class = "class c($a) {\n test \"x\" {\n  int64 => $a,\n }\n}\ninclude c(1)\ninclude c(\"s\")\n";
    refused(class, "expected `int`, found `str`");
    let class = "class c($a) {\n $b = $a\n}\ninclude c(1)\ninclude c(\"s\")\n";
    assert!(errors_of(class).is_empty());
}

#[test]
fn interpolation_takes_strings() {
    assert!(errors_of("$a = \"x\"\n$b = \"say ${a}\"\n").is_empty());
    refused("$a = 1\n$b = \"say ${a}\"\n", "expected `str`, found `int`");
}

/// The type corpus: each `tests/lang/types/<case>.mcl` with `<case>.err`, the rendered
/// diagnostics of checking it, or `ok`. `MCL_BLESS=1` writes what the checker gives.
#[test]
fn every_corpus_case_checks_as_expected() {
    crate::frontend::lang::corpus::check_cases("types", 40, &["err"], "the checker", |case| {
        (corpus_outcome(case), "err")
    });
}

fn corpus_outcome(case: &std::path::Path) -> String {
    let module = match crate::frontend::lang::load(case) {
        Ok(module) => module,
        Err(failed) => return crate::frontend::lang::render_all(&failed.diagnostics, &failed.map),
    };
    let res = match crate::frontend::lang::scope::resolve(&module) {
        Ok(res) => res,
        Err(errors) => return crate::frontend::lang::render_all(&errors, &module.map),
    };
    match check(&module, &res) {
        Ok(_) => "ok\n".to_string(),
        Err(errors) => crate::frontend::lang::render_all(&errors, &module.map),
    }
}

#[test]
fn generic_functions_carry_their_waiting_constraints_to_each_use() {
    let text = "func first($l) { $l[0] }\n$a = first([1])\n$b = first([\"a\"])\n";
    assert_eq!(type_of(text, "$a"), "int");
    assert_eq!(type_of(text, "$b"), "str");
    let text = "func name($s) { $s->name }\n$a = name(struct{name => 1})\n$b = name(struct{id => 2, name => true})\n";
    assert_eq!(type_of(text, "$b"), "bool");
    refused("func name($s) { $s->name }\n$a = name(struct{id => 1})\n", "no field `name`");
}

#[test]
fn deep_composition_is_typed_once_per_function() {
    // Copying each function per call site would type f0 2^40 times here.
    let mut text = "func f0($x) { [$x] }\n".to_string();
    for i in 1..=40 {
        text.push_str(&format!("func f{i}($x) {{ f{}(f{}($x)[0]) }}\n", i - 1, i - 1));
    }
    text.push_str("$y = f40(1)\n$z = f40(\"a\")\n");
    assert_eq!(type_of(&text, "$y"), "[]int");
    assert_eq!(type_of(&text, "$z"), "[]str");
}

#[test]
fn types_are_kept_per_include_and_calls_by_span() {
    let text = "class c($a) {\n $b = [$a]\n}\ninclude c(1)\ninclude c(\"s\")\n$n = len([true])\n";
    let (_, program) = parse(text);
    let mut resolver = Resolver { uses: HashMap::new(), scopes: Vec::new() };
    resolver.block(&program.stmts, vec![]);
    let res = Resolution { uses: resolver.uses, ..Resolution::default() };
    let types = check_programs(&[&program], &res, &Core).unwrap();
    let includes: Vec<Span> =
        program.stmts.iter().filter(|s| matches!(s.kind, StmtKind::Include { .. })).map(|s| s.span).collect();
    let StmtKind::Class { body, .. } = &program.stmts[0].kind else { panic!() };
    let StmtKind::Bind { value, .. } = &body.stmts[0].kind else { panic!() };
    let first = types.included(ROOT, includes[0]).unwrap();
    let second = types.included(ROOT, includes[1]).unwrap();
    assert_eq!(types.expr_type_in(first, value.span).unwrap().to_string(), "[]int");
    assert_eq!(types.expr_type_in(second, value.span).unwrap().to_string(), "[]str");
    let StmtKind::Bind { value: call, .. } = &program.stmts[3].kind else { panic!() };
    assert_eq!(types.call_type(call.span).unwrap().to_string(), "func([]bool) int");
}

#[test]
fn a_string_of_one_interpolation_is_the_value_itself() {
    assert_eq!(type_of("$a = 1\n$b = \"${a}\"\n", "$b"), "int");
    refused("$a = 1\n$b = \"${a}${a}\"\n", "expected `str`, found `int`");
}

#[test]
fn long_chains_written_in_reverse_are_typed_without_deep_recursion() {
    let n = 10000;
    let mut text = String::new();
    for i in (1..n).rev() {
        text.push_str(&format!("$x{i} = $x{} + 1\n$f{i} = func($l) {{ $f{}($l) }}\n", i - 1, i - 1));
        text.push_str(&format!("func g{i}($a) {{ g{}($a) }}\n", i - 1));
    }
    text.push_str("$x0 = 1\n$f0 = func($l) { $l }\nfunc g0($a) { [$a] }\n");
    text.push_str("$all = struct{x => $x9999, l => $f9999([1]), g => g9999(\"a\")}\n");
    assert_eq!(type_of(&text, "$all"), "struct{x int; l []int; g []str}");
}

/// Infers `func([]?1) ?1` with a `?1` of its own, whatever the checker's variables are.
fn own_numbering(_: &CallSite) -> Result<Option<Type>, String> {
    Ok(Some(Type::parse("func([]?1) ?1").unwrap()))
}

static OWN: Builtin = Builtin {
    module: "",
    name: "pick",
    sig: "",
    infer: Some(own_numbering),
    call: never,
    doc: "",
    changes: None,
};

#[test]
fn a_builtins_own_variables_are_not_the_checkers() {
    let (map, program) = parse("$a = pick([1])\n$b = pick([\"s\"])\n");
    let mut uses = HashMap::new();
    for stmt in &program.stmts {
        if let StmtKind::Bind { value, .. } = &stmt.kind
            && let ExprKind::Call { callee: Callee::Name(name), .. } = &value.kind
        {
            uses.insert(name.span, Def::Builtin(&OWN));
        }
    }
    let res = Resolution { uses, ..Resolution::default() };
    let types = check_programs(&[&program], &res, &Core).unwrap_or_else(|e| panic!("{:?}", e[0].short(&map)));
    let StmtKind::Bind { value, .. } = &program.stmts[1].kind else { panic!() };
    assert_eq!(types.expr_type(value.span).unwrap().to_string(), "str");
}
