//! `golang.template`: Go's text/template over mcl values. A struct's fields are read with
//! their names title-cased (`.Name` for `name`), as upstream has it; a missing field or map
//! key is an error. The functions are Go's (`printf`, `len`, `index`, `eq`...) and every
//! library function with a fixed signature, named as upstream names them: `datetime.print`
//! is `datetime_print`, `golang/strings.join` is `golang_strings_join`, and a function
//! without a module gets a leading `_` (`_concat`).

mod exec;
mod parse;

use super::super::types::Type;
use super::super::value::{CallError, Val};
use super::args::{poly, str_at};
use super::{Builtin, CallCtx, CallSite};

pub const FUNCS: &[Builtin] = &[poly(
    "golang",
    "template",
    "func(str, ?1) str",
    infer_template,
    template,
    "the Go text/template filled in with the value (the second argument is optional)",
)];

fn infer_template(site: &CallSite) -> Result<Option<Type>, String> {
    if let Some(first) = site.args.first().filter(|t| !matches!(t, Type::Str | Type::Var(_))) {
        return Err(format!("the template of golang.template must be a str, not {first}"));
    }
    match site.args {
        [_] => Ok(Some(Type::func(vec![Type::Str], Type::Str))),
        [_, data] => Ok(Some(Type::func(vec![Type::Str, data.clone()], Type::Str))),
        _ => Err(format!("golang.template takes a template and a value, not {} arguments", site.args.len())),
    }
}

fn template(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    if args.is_empty() || args.len() > 2 {
        return Err(CallError(format!("golang.template takes one or two arguments, not {}", args.len())));
    }
    let text = str_at(&args, 0)?;
    let nodes = parse::parse(text).map_err(|e| CallError(format!("template: parse error: {e}")))?;
    exec::run(&nodes, args.get(1).cloned(), ctx.host)
        .map(Val::Str)
        .map_err(|e| CallError(format!("template: execution error: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, infer, ints, s, strs, ty};
    use super::*;

    fn fill(text: &str, data: Val) -> Result<String, String> {
        match call(f("golang", "template"), vec![s(text), data]) {
            Ok(Val::Str(out)) => Ok(out),
            Ok(other) => Err(format!("not a str: {other}")),
            Err(e) => Err(e.0),
        }
    }

    fn strukt(fields: &[(&str, Val)]) -> Val {
        Val::Struct(fields.iter().map(|(n, v)| (n.to_string(), v.clone())).collect())
    }

    #[test]
    fn dot_fields_and_ranges() {
        assert_eq!(fill("x{{ . }}y", Val::Int(42)), Ok("x42y".into()));
        assert_eq!(fill("{{ . }}", strs(&["a", "b"])), Ok("[a b]".into()));
        assert_eq!(fill("{{ . }}", Val::Float(3.0)), Ok("3".into()));
        let people = Val::List(vec![strukt(&[("name", s("one")), ("raw_query", s("q"))])]);
        assert_eq!(fill("{{ range . }}{{ .Name }}/{{ .Raw_query }};{{ end }}", people), Ok("one/q;".into()));
        let m = Val::map_of([(s("b"), Val::Int(2)), (s("a"), Val::Int(1))]);
        assert_eq!(
            fill("{{ range $k, $v := . }}{{ $k }}={{ $v }},{{ end }}", m.clone()),
            Ok("a=1,b=2,".into())
        );
        assert_eq!(fill("{{ . }}", m.clone()), Ok("map[a:1 b:2]".into()));
        assert_eq!(fill("{{ .b }}", m), Ok("2".into()));
        let int_keys = Val::List(vec![Val::map_of([(Val::Int(42), s("answer"))])]);
        assert_eq!(fill("{{ range . }}{{ index . 42 }}{{ end }}", int_keys), Ok("answer".into()));
        assert_eq!(
            fill("{{ range $i, $e := . }}{{ $i }}{{ $e }} {{ else }}none{{ end }}", ints(&[7, 8])),
            Ok("07 18 ".into())
        );
        assert_eq!(fill("{{ range . }}x{{ else }}none{{ end }}", ints(&[])), Ok("none".into()));
    }

    #[test]
    fn conditions_variables_and_functions() {
        let data = strukt(&[("l", strs(&["a", "b"])), ("n", Val::Int(3)), ("t", Val::Int(1_614_834_367))]);
        assert_eq!(fill("{{ if .L }}yes{{ else }}no{{ end }}", data.clone()), Ok("yes".into()));
        assert_eq!(
            fill("{{ if eq .N 1 }}one{{ else if gt .N 2 }}many{{ end }}", data.clone()),
            Ok("many".into())
        );
        assert_eq!(fill("{{ golang_strings_join .L \",\" }}", data.clone()), Ok("a,b".into()));
        assert_eq!(fill("{{ datetime_print .T }}", data.clone()), Ok("2021-03-04 05:06:07 +0000 UTC".into()));
        assert_eq!(
            fill("{{ $x := len .L }}{{ $x }}-{{ .N | printf \"%03d\" }}", data.clone()),
            Ok("2-003".into())
        );
        assert_eq!(fill("{{ with .L }}{{ index . 1 }}{{ end }}", data.clone()), Ok("b".into()));
        assert_eq!(
            fill("{{ print 1 2 \"x\" }}|{{ html \"<a&b>\" }}|{{ urlquery \"a b&c\" }}", data.clone()),
            Ok("1 2x|&lt;a&amp;b&gt;|a+b%26c".into())
        );
        assert_eq!(fill("{{ (strings_split \"a-b\" \"-\") }}", data.clone()), Ok("[a b]".into()));
        let url = "{{ (net_url_parser \"https://example.com/s?q=1\").Raw_query }}";
        assert_eq!(fill(url, data.clone()), Ok("q=1".into()));
        assert_eq!(
            fill("{{ 0x1F }} {{ -2 }} {{ 1.5 }} {{ `raw` }}", data.clone()),
            Ok("31 -2 1.5 raw".into())
        );
        assert_eq!(
            fill("{{ and 1 0 }} {{ or 0 \"\" 5 }} {{ not .L }}", data.clone()),
            Ok("0 5 false".into())
        );
        assert_eq!(
            fill(
                "{{ if and .Missing.X 1 }}y{{ else }}n{{ end }}",
                Val::map_of([(s("Missing"), Val::Bool(false))])
            ),
            Err("template: execution error: line 1: can't evaluate field X in bool".into())
        );
        assert_eq!(
            fill("{{ if and .L .L.Z }}y{{ else }}n{{ end }}", strukt(&[("l", Val::Bool(false))])),
            Ok("n".into())
        );
    }

    #[test]
    fn missing_fields_and_bad_templates_are_errors() {
        let m = Val::map_of([(s("present"), s("hello"))]);
        let err = fill("{{ .Missing }}", m).unwrap_err();
        assert!(err.contains("map has no entry for key \"Missing\""), "{err}");
        assert!(fill("{{ .Missing }}", strukt(&[("present", s("x"))])).is_err());
        assert!(fill("{{ nosuchfunc 1 }}", Val::Int(1)).is_err());
        assert!(fill("{{ if }}", Val::Int(1)).is_err());
        assert!(fill("{{ eq 1 1.0 }}", Val::Int(1)).is_err());
        assert!(fill("{{ index . 5 }}", ints(&[1])).is_err());
        assert!(fill("{{ range . }}x{{ end }}", s("text")).is_err());
    }

    #[test]
    fn odd_templates_do_not_panic() {
        let odd = [
            "{{",
            "}}",
            "{{}}",
            "{{-}}",
            "{{ - }}",
            "{{(}}",
            "{{)}}",
            "{{ $ }}",
            "{{ $x := }}",
            "{{ $x = 1 }}",
            "{{ range $a, $b, $c := . }}{{ end }}",
            "{{ index }}",
            "{{ slice . 5 1 }}",
            "{{ printf }}",
            "{{ len 1 2 }}",
            "{{ 1 | 2 }}",
            "{{ .A | .B }}",
            "{{ \"\\xZZ\" }}",
            "{{ 0x }}",
            "{{ 1e999 }}",
            "{{ else }}",
            "{{ if 1 }}{{ else }}{{ else }}{{ end }}",
            "{{ with }}{{ end }}",
            "{{ break }}",
            "{{ range . }}{{ break }}{{ continue }}{{ end }}",
            "{{ call . 1 }}",
            "{{ ((((1)))) }}",
            "{{ .A.B.C.D }}",
            "{{ printf \"%d %s %v\" 1 }}",
            "{{ eq }}",
            "{{ lt 1 }}",
            "{{ not 1 2 }}",
            "é{{ \"é\" }}é",
            "{{ `",
            "{{ /* x */ }}",
            "{{- /* x */ -}}",
            "{{ and }}",
            "{{ or }}",
        ];
        let data = Val::Struct(vec![("a".into(), ints(&[1, 2]))]);
        for text in odd {
            let _ = fill(text, data.clone());
            let _ = fill(text, ints(&[3]));
        }
    }

    #[test]
    fn infer_follows_the_argument_count() {
        let v = Type::Var(5);
        assert_eq!(infer(f("golang", "template"), &[Type::Str], &v), Ok(Some(ty("func(str) str"))));
        assert_eq!(
            infer(f("golang", "template"), &[v.clone(), ty("[]int")], &v),
            Ok(Some(ty("func(str, []int) str")))
        );
        assert!(infer(f("golang", "template"), &[Type::Int, Type::Int], &v).is_err());
        assert!(infer(f("golang", "template"), &[], &v).is_err());
    }
}
