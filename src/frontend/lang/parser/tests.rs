use super::super::ast::{ExprKind, StmtKind};
use super::super::span::{SourceMap, Span};
use super::parse;

/// The printed program, or a panic with the errors.
fn ast(text: &str) -> String {
    let (program, errors) = parse(0, text);
    assert!(errors.is_empty(), "unexpected errors for {text:?}: {errors:#?}");
    program.to_string().trim_end().to_string()
}

/// The value bound by `$x = <expr>`, printed.
fn expr(text: &str) -> String {
    ast(&format!("$x = {text}\n"))
        .strip_prefix("(bind $x ")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap()
        .to_string()
}

fn errors(text: &str) -> Vec<String> {
    let (_, errors) = parse(0, text);
    errors.into_iter().map(|e| e.message).collect()
}

#[test]
fn literals() {
    assert_eq!(expr("true"), "true");
    assert_eq!(expr("-42"), "-42");
    assert_eq!(expr("3.25"), "3.25");
    assert_eq!(expr(r#""a\tb\"c\\d\$e""#), r#""a\tb\"c\\d$e""#);
}

#[test]
fn collections() {
    assert_eq!(expr("[1, 2]"), "(list 1 2)");
    assert_eq!(expr("[]"), "(list)");
    assert_eq!(expr("[\n1,\n\n2,\n]"), "(list 1 2)");
    assert_eq!(expr(r#"{"a" => 1, "b" => 2}"#), r#"(map "a"=>1 "b"=>2)"#);
    assert_eq!(expr("{\n\"a\" => 1,\n}"), r#"(map "a"=>1)"#);
    assert_eq!(expr("struct{a => 1, b => \"x\"}"), r#"(struct a=>1 b=>"x")"#);
    assert_eq!(expr("struct{\na => 1,\n}"), "(struct a=>1)");
}

#[test]
fn precedence_follows_upstream() {
    assert_eq!(expr("1 + 2 * 3"), "(+ 1 (* 2 3))");
    assert_eq!(expr("1 - 2 - 3"), "(- (- 1 2) 3)");
    assert_eq!(expr("$a or $b and $c"), "(or $a (and $b $c))");
    assert_eq!(expr("$a + 1 == 2 and not $b"), "(and (== (+ $a 1) 2) (not $b))");
    assert_eq!(expr("not $a == $b"), "(== (not $a) $b)");
    assert_eq!(expr("$a <|> $b or $c <|> $d"), "(<|> (<|> $a (or $b $c)) $d)");
    assert_eq!(expr("\"a\" in $l"), r#"(in "a" $l)"#);
    assert_eq!(expr("(1 + 2) * 3"), "(* (+ 1 2) 3)");
    assert_eq!(expr("not $l[0]->a"), "(not (-> (index $l 0) a))");
}

#[test]
fn struct_field_default_takes_the_rest() {
    assert_eq!(expr("$s->a <|> 1 + 2"), "(<|> (-> $s a) (+ 1 2))");
    assert_eq!(expr("$x + $s->a <|> 1"), "(+ $x (<|> (-> $s a) 1))");
}

#[test]
fn comparisons_do_not_chain() {
    assert_eq!(errors("$x = 1 < 2 < 3\n").len(), 1);
    assert_eq!(errors("$x = 1 == 2 in $l\n").len(), 1);
}

#[test]
fn calls() {
    assert_eq!(expr("len($l)"), "(call len $l)");
    assert_eq!(expr("fmt.printf(\"%d\", 1)"), r#"(call fmt.printf "%d" 1)"#);
    assert_eq!(expr("$f(1)"), "(call $f 1)");
    assert_eq!(expr("$inst.x"), "$inst.x");
    assert_eq!(expr("func($a) { $a }(2)"), "(call (func [$a] $a) 2)");
    assert_eq!(expr("f(\n1,\n2,\n)"), "(call f 1 2)");
    assert_eq!(expr("f()"), "(call f)");
}

#[test]
fn functions_and_ifs() {
    assert_eq!(expr("func($a int, $b) str { $b }"), "(func [$a int, $b] str $b)");
    assert_eq!(expr("if $c { 1 } else { 2 }"), "(if $c 1 2)");
    assert_eq!(ast("func f($x) {\n\t$x + 1\n}\n"), "(func-def f [$x] (+ $x 1))");
    assert_eq!(ast("if $c {\n$x = 1\n} else {\n}\n"), "(if $c (do (bind $x 1)) (do))");
}

#[test]
fn types() {
    assert_eq!(ast("$x []str = []\n"), "(bind $x []str (list))");
    assert_eq!(ast("$x map{str: []int} = {}\n"), "(bind $x map{str: []int} (map))");
    assert_eq!(ast("$x struct{a str; b int} = $y\n"), "(bind $x struct{a str; b int} $y)");
    assert_eq!(ast("$x func(str, $n int) bool = $f\n"), "(bind $x func(str, $n int) bool $f)");
    assert_eq!(ast("$x variant = 1\n"), "(bind $x variant 1)");
}

#[test]
fn resources() {
    assert_eq!(
        ast("file \"/a\" {\n\tmode => \"0644\",\n\tcontent => $c ?: \"x\",\n\tMeta:noop => true,\n}\n"),
        r#"(res file "/a" (param mode "0644") (param content (? $c) "x") (meta noop true))"#
    );
    assert_eq!(
        ast(
            "print [\"a\", \"b\"] { Meta => struct{noop => true}, Before => File[\"/x\"], Notify => $n ?: Svc[\"s\"], }\n"
        ),
        r#"(res print (list "a" "b") (meta-struct (struct noop=>true)) (before (file "/x")) (notify (? $n) (svc "s")))"#
    );
    assert_eq!(ast("collect file \"/x\" {}\n"), r#"(collect file "/x")"#);
    assert_eq!(ast("http:server \"a\" {}\n"), r#"(res http:server "a")"#);
}

#[test]
fn edges() {
    assert_eq!(ast("File[\"a\"] -> Svc[\"b\"] -> Exec[$c]\n"), r#"(edge (file "a") (svc "b") (exec $c))"#);
    assert_eq!(
        ast("File[\"a\"].content -> Print[\"b\"].msg\n"),
        r#"(edge (file "a" .content) (print "b" .msg))"#
    );
    assert_eq!(errors("File[\"a\"].content -> Print[\"b\"] -> Print[\"c\"]\n").len(), 1);
}

#[test]
fn classes_includes_imports_loops_panics() {
    assert_eq!(
        ast("class c($a, $b str) {\n\tprint $a {}\n}\n"),
        r#"(class c [$a, $b str] (do (res print $a)))"#
    );
    assert_eq!(ast("class base:inner {\n}\n"), "(class base:inner (do))");
    assert_eq!(ast("include c(1, \"x\") as i\n"), r#"(include c [1 "x"] as i)"#);
    assert_eq!(ast("include m.c\n"), "(include m.c)");
    assert_eq!(
        ast("import \"fmt\"\nimport \"x/y\" as y\nimport \"z\" as *\n"),
        "(import \"fmt\")\n(import \"x/y\" as y)\n(import \"z\" as *)"
    );
    assert_eq!(
        ast("for $i, $x in $l {\n}\nforkv $k, $v in $m {\n}\n"),
        "(for $i $x $l (do))\n(forkv $k $v $m (do))"
    );
    assert_eq!(ast("panic(\"no\")\n"), r#"(panic "no")"#);
}

#[test]
fn interpolation() {
    assert_eq!(expr(r#""a ${b} ${c.d}!""#), r#"(interp "a " $b " " $c.d "!")"#);
    assert_eq!(expr(r#""${Bad} $ ${ok""#), r#""${Bad} $ ${ok""#);
    assert_eq!(expr(r#""\${b}""#), r#""${b}""#);
}

#[test]
fn spans_cover_the_text() {
    let text = "$x = [1, $y + 2]\n";
    let (program, _) = parse(7, text);
    let stmt = &program.stmts[0];
    assert_eq!(stmt.span, Span::new(7, 0, 16));
    let StmtKind::Bind { name, value, .. } = &stmt.kind else { panic!() };
    assert_eq!(&text[name.span.range()], "$x");
    assert_eq!(&text[value.span.range()], "[1, $y + 2]");
    let ExprKind::List(items) = &value.kind else { panic!() };
    assert_eq!(&text[items[1].span.range()], "$y + 2");
    let ExprKind::Binary { op_span, .. } = &items[1].kind else { panic!() };
    assert_eq!(&text[op_span.range()], "+");
}

#[test]
fn interpolated_names_point_into_the_string() {
    let text = "$x = \"a${b}\"\n";
    let (program, _) = parse(0, text);
    let StmtKind::Bind { value, .. } = &program.stmts[0].kind else { panic!() };
    let ExprKind::Interp(parts) = &value.kind else { panic!() };
    let super::super::ast::InterpPart::Var(name) = &parts[1] else { panic!() };
    assert_eq!(&text[name.span.range()], "${b}");
}

#[test]
fn several_errors_at_once() {
    let text = "$a = \n$b = 1\nfile \"x\" { path \"a\", }\n$c == 2\nprint \"p\" {\n\tmsg => \"m\"\n}\n";
    let (program, errors) = parse(0, text);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(program.stmts.len(), 3, "resources keep their good fields");
}

#[test]
fn errors_inside_blocks_keep_the_block() {
    let (program, errors) = parse(0, "if true {\n$x = = 1\n$y = 2\n}\n$z = 3\n");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(program.to_string(), "(if true (do (bind $y 2)))\n(bind $z 3)\n");
}

#[test]
fn rendering_names_file_line_col_and_draws_a_caret() {
    let mut map = SourceMap::new();
    let file = map.add("dir/main.mcl", "$a = 1\n$b = [1, 2,]\n");
    let (_, errors) = parse(file, map.text(file));
    assert_eq!(errors.len(), 1);
    let rendered = errors[0].render(&map);
    assert!(rendered.contains("parse error: trailing comma"), "{rendered}");
    assert!(rendered.contains("dir/main.mcl:2:11"), "{rendered}");
    assert!(rendered.contains("$b = [1, 2,]"), "{rendered}");
    assert!(rendered.contains('^'), "{rendered}");
    assert_eq!(errors[0].short(&map), "dir/main.mcl:2:11: parse error: trailing comma on a single line");
}

#[test]
fn every_bad_field_of_a_resource_is_reported() {
    let text = "file \"a\" {\n\tmode \"x\",\n\towner => ,\n\tgroup => \"g\",\n}\n$after = 1\n";
    let (program, found) = parse(0, text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(program.to_string(), "(res file \"a\" (param group \"g\"))\n(bind $after 1)\n");
    assert_eq!(errors("print \"p\" { msg => , }\n").len(), 1);
    assert_eq!(errors("print \"p\" {\n\tmsg => \"m\",\n").len(), 1);
}

#[test]
fn resource_entries_and_edge_halves_have_spans() {
    let text = "file \"a\" {\n\tmode => $c ?: \"x\",\n}\nFile[\"a\"].x -> Print[\"b\"].y\n";
    let (program, _) = parse(0, text);
    let StmtKind::Resource(res) = &program.stmts[0].kind else { panic!() };
    assert_eq!(&text[res.entries[0].span.range()], "mode => $c ?: \"x\",");
    assert_eq!(&text[res.name.span.range()], "\"a\"");
    let StmtKind::Edge(halves) = &program.stmts[1].kind else { panic!() };
    assert_eq!(&text[halves[0].span.range()], "File[\"a\"].x");
    assert_eq!(&text[program.stmts[1].span.range()], "File[\"a\"].x -> Print[\"b\"].y");
}

#[test]
fn an_error_at_the_end_of_the_file_renders() {
    let mut map = SourceMap::new();
    let file = map.add("m.mcl", "if true {\n");
    let (_, errors) = parse(file, map.text(file));
    let rendered = super::super::render_all(&errors, &map);
    assert!(rendered.contains("m.mcl:2:1") && rendered.contains('^'), "{rendered}");
}

#[test]
fn a_resource_with_an_unclosed_body_is_not_called_a_call() {
    assert_eq!(
        errors("print (\"a\") {\n\tmsg => \"m\",\n"),
        vec!["expected `}` to end the resource's body, found the end of the file"]
    );
}

#[test]
fn an_unclosed_bracket_points_where_it_opened() {
    let mut map = SourceMap::new();
    let file = map.add("m.mcl", "$l = [1, 2\n$m = 3\n");
    let (_, errors) = parse(file, map.text(file));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].secondary[0].0, Span::new(file, 5, 6));
    assert!(errors[0].render(&map).contains("opened here"));
}

#[test]
fn a_minus_glued_to_a_number_gets_a_hint() {
    let (_, found) = parse(0, "$a = $b -1\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].notes.iter().any(|n| n.contains("`- 1`")), "{found:#?}");
}

#[test]
fn rendering_looks_like_rustc() {
    let mut map = SourceMap::new();
    let file = map.add("main.mcl", "file \"/a\" {\n\tmode \"0644\",\n}\n");
    let (_, errors) = parse(file, map.text(file));
    let expected = "\
error: parse error: expected `=>`, found a string
  --> main.mcl:2:7
  |
2 |     mode \"0644\",
  |          ^^^^^^ expected `=>`

";
    assert_eq!(errors[0].render(&map), expected);
}

#[test]
fn nesting_is_bounded_and_reported_once_per_statement() {
    let deep = format!("$a = {}1{}\n$b = 2 +\n", "[".repeat(100_000), "]".repeat(100_000));
    let (program, found) = parse(0, &deep);
    assert!(found.iter().any(|e| e.message == "nested more than 128 levels deep"), "{found:#?}");
    assert!(found.len() <= 3, "{found:#?}");
    assert!(program.stmts.is_empty());
    for text in [
        format!("$a = {}true\n", "not ".repeat(100_000)),
        format!("$a {}int = 1\n", "[]".repeat(100_000)),
        format!("{}\n", "if true {\n".repeat(10_000)),
    ] {
        let (_, found) = parse(0, &text);
        assert!(found.iter().any(|e| e.message.starts_with("nested more than")), "{found:#?}");
    }
    let fine = format!("$a = {}1{}\n", "(".repeat(100), ")".repeat(100));
    assert_eq!(parse(0, &fine).1, vec![]);
}
