use std::path::Path;

use super::*;
use crate::frontend::lang::module::load;

/// Writes `files` into a temporary module and loads it.
fn module_of(files: &[(&str, &str)]) -> (tempfile::TempDir, Module) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let module = load(dir.path()).unwrap_or_else(|e| panic!("{:?}", e.diagnostics));
    (dir, module)
}

/// The text of the definition each use in the entry file refers to, by the use's text.
fn uses(module: &Module) -> Vec<(String, String)> {
    let resolution =
        resolve(module).unwrap_or_else(|e| panic!("{}", crate::frontend::lang::render_all(&e, &module.map)));
    let mut out: Vec<(String, String)> = resolution
        .uses
        .iter()
        .map(|(span, def)| {
            let text = module.map.text(span.file)[span.range()].to_string();
            let target = match def {
                Def::Bind { name, value, .. } => {
                    format!("bind {} at {}", name.name, module.map.locate(value.span))
                }
                Def::Param { index, param, .. } => format!("param {index} {}", param.name.name),
                Def::LoopVar { index, .. } => format!("loop var {index}"),
                Def::Func { name, .. } => format!("func {}", name.name),
                Def::Class { .. } => "class".to_string(),
                Def::IncludeBind { name, .. } => format!("include bind {}", name.name),
                Def::Builtin(b) => format!("builtin {}.{}", b.module, b.name),
                Def::Hostname => "hostname".to_string(),
                Def::Const(v) => format!("const {v}"),
            };
            (format!("{}:{text}", module.map.locate(*span)), target)
        })
        .collect();
    out.sort();
    out
}

fn errors(files: &[(&str, &str)]) -> String {
    let (_dir, module) = module_of(files);
    match resolve(&module) {
        Ok(_) => panic!("resolved"),
        Err(e) => e.iter().map(|d| format!("{} {}\n", module.map.locate(d.span).line, d.message)).collect(),
    }
}

fn name_of(path: &str) -> String {
    Path::new(path).file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn binds_are_found_above_where_they_are_made_and_inner_scopes_shadow() {
    let (_dir, module) = module_of(&[(
        "main.mcl",
        "$b = $a\n$a = 1\nclass c($a) {\n\t$x = $a\n}\nif true {\n\t$a = 2\n\t$y = $a + $b\n}\n",
    )]);
    let found: Vec<(String, String)> =
        uses(&module).into_iter().map(|(at, def)| (name_of(&at), def)).collect();
    assert_eq!(
        found,
        vec![
            ("main.mcl:1:6:$a".to_string(), format!("bind a at {}:2:6", module.map.name(0))),
            ("main.mcl:4:7:$a".to_string(), "param 0 a".to_string()),
            ("main.mcl:8:12:$b".to_string(), format!("bind b at {}:1:6", module.map.name(0))),
            ("main.mcl:8:7:$a".to_string(), format!("bind a at {}:7:7", module.map.name(0))),
        ]
    );
}

#[test]
fn loops_lambdas_hostname_and_constants_resolve() {
    let (_dir, module) = module_of(&[(
        "main.mcl",
        "for $i, $v in [1] {\n\t$x = $v\n}\n$f = func($n) { $n }\n$h = \"${hostname}\"\n$s = $const.res.file.state.exists\n$r = $f(1)\n",
    )]);
    let found: Vec<String> = uses(&module).into_iter().map(|(_, def)| def).collect();
    assert_eq!(
        found,
        vec![
            "loop var 1".to_string(),
            "param 0 n".to_string(),
            "hostname".to_string(),
            "const \"exists\"".to_string(),
            format!("bind f at {}:4:6", module.map.name(0)),
        ]
    );
}

#[test]
fn imports_and_includes_reach_their_definitions() {
    let (_dir, module) = module_of(&[
        (
            "main.mcl",
            "import \"lib.mcl\"\nimport \"sub/\" as s\n$a = $lib.x + lib.f()\ninclude s.c as inst\n$b = $inst.y\n",
        ),
        ("lib.mcl", "$x = 1\nfunc f() { 2 }\n"),
        ("sub/main.mcl", "class c {\n\t$y = 3\n}\n"),
    ]);
    let found: Vec<String> = uses(&module).into_iter().map(|(_, def)| def).collect();
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(
        found.iter().any(|d| d.starts_with("bind x at lib.mcl") || d.contains("lib.mcl:1:6")),
        "{found:?}"
    );
    assert!(found.contains(&"func f".to_string()), "{found:?}");
    assert!(found.contains(&"class".to_string()), "{found:?}");
    assert!(found.contains(&"include bind y".to_string()), "{found:?}");
}

#[test]
fn unknown_names_are_errors_with_a_suggestion() {
    let (_dir, module) = module_of(&[("main.mcl", "$count = 1\n$x = $cuont\n$y = nosuch(1)\n")]);
    let e = resolve(&module).unwrap_err();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].message, "unknown variable `$cuont`");
    assert_eq!(e[0].notes, vec!["did you mean `$count`?".to_string()]);
    assert_eq!(e[1].message, "unknown function `nosuch`");
    let text = crate::frontend::lang::render_all(&e, &module.map);
    assert!(text.contains("main.mcl:2:6") && text.contains("^^^^^^ not found in this scope"), "{text}");
}

#[test]
fn a_name_defined_twice_in_one_scope_is_an_error() {
    let e =
        errors(&[("main.mcl", "$a = 1\n$a = 2\nfunc f() { 1 }\nfunc f() { 2 }\nif true {\n\t$a = 3\n}\n")]);
    assert_eq!(
        e,
        "2 the variable `$a` is defined twice in this scope\n4 the function `f()` is defined twice in this scope\n"
    );
}

#[test]
fn definitions_that_depend_on_themselves_are_errors() {
    let e = errors(&[("main.mcl", "$a = $b + 1\n$b = $c\n$c = $a\nfunc f($x) { f($x) }\n$ok = $b\n")]);
    assert_eq!(e, "1 `$a` depends on itself\n4 `f()` depends on itself\n");
    let (_dir, module) = module_of(&[("main.mcl", "$a = $b\n$b = $a\n")]);
    let d = resolve(&module).unwrap_err().remove(0);
    assert_eq!(d.notes[0], "$a -> $b -> $a");
    assert_eq!(d.secondary.len(), 2);
}

#[test]
fn an_imported_file_may_only_define() {
    let e = errors(&[("main.mcl", "import \"lib.mcl\"\n"), ("lib.mcl", "$x = 1\nnoop \"n\" {}\n")]);
    assert_eq!(e, "2 an imported file may only define binds, functions and classes\n");
}

#[test]
fn wrong_members_of_imports_and_includes_say_what_is_missing() {
    let e = errors(&[
        (
            "main.mcl",
            "import \"lib.mcl\"\nclass c {\n\t$y = 1\n}\ninclude c as i\n$a = $lib.nope\n$b = $i.nope\n$d = $const.nope\n",
        ),
        ("lib.mcl", "$x = 1\n"),
    ]);
    assert_eq!(
        e,
        "6 the module imported as `lib` has no variable `$nope`\n7 the class included as `i` has no bind `$nope`\n8 there is no constant `$const.nope`\n"
    );
}

/// What each use in the entry file refers to, by `line:col:text` of the use.
fn uses_by_place(module: &Module) -> Vec<(String, String)> {
    uses(module)
        .into_iter()
        .map(|(at, def)| {
            let place = name_of(&at);
            (place.split_once(':').map_or(place.clone(), |(_, rest)| rest.to_string()), def)
        })
        .collect()
}

#[test]
fn a_nested_class_sees_the_scope_of_the_class_it_is_in() {
    let (_dir, module) = module_of(&[(
        "main.mcl",
        "class a($p) {\n\t$m = 1\n}\nclass a:b($q) {\n\t$n = $m + $p + $q\n}\nclass a:b:c {\n\t$o = $n + $m\n}\n",
    )]);
    let found = uses_by_place(&module);
    let main = module.map.name(0);
    assert_eq!(
        found,
        vec![
            ("5:12:$p".to_string(), "param 0 p".to_string()),
            ("5:17:$q".to_string(), "param 0 q".to_string()),
            ("5:7:$m".to_string(), format!("bind m at {main}:2:7")),
            ("8:12:$m".to_string(), format!("bind m at {main}:2:7")),
            ("8:7:$n".to_string(), format!("bind n at {main}:5:7")),
        ]
    );
}

#[test]
fn a_nested_class_is_included_through_an_include_alias() {
    let (_dir, module) = module_of(&[(
        "main.mcl",
        "include y.deeper as z\ninclude a as x\ninclude x.inner as y\nclass a {\n\tclass inner {\n\t\tclass deeper {}\n\t}\n}\n",
    )]);
    let resolution = resolve(&module).unwrap();
    let through_line = |line: usize| {
        let (name, _) = resolution
            .through
            .iter()
            .find(|(span, _)| module.map.locate(**span).line == line)
            .unwrap_or_else(|| panic!("no include through an alias on line {line}"));
        let StmtKind::Include { alias: Some(alias), .. } = &resolution.through(*name).unwrap().kind else {
            panic!("not an aliased include")
        };
        alias.name.clone()
    };
    assert_eq!(through_line(1), "y");
    assert_eq!(through_line(3), "x");
    assert_eq!(resolution.through.len(), 2);
    assert_eq!(resolution.uses.values().filter(|d| matches!(d, Def::Class { .. })).count(), 3);
}

#[test]
fn a_nested_include_through_a_wrong_name_names_both() {
    let e = errors(&[(
        "main.mcl",
        "class a {\n\tclass inner {}\n}\ninclude a as x\ninclude x.outer\ninclude a.inner\nclass c:d {}\n",
    )]);
    assert_eq!(
        e,
        "5 the class `a` included as `x` has no class `outer`\n\
         6 `a` is not the alias of an include (`include c as a`) nor an imported module, so it has no class `inner`\n\
         7 the class `c:d` is inside a class `c`, which is not defined here\n"
    );
}

#[test]
fn the_binds_of_a_file_imported_as_star_are_plain_variables() {
    let (_dir, module) =
        module_of(&[("main.mcl", "import \"lib.mcl\" as *\n$a = $shared\n"), ("lib.mcl", "$shared = 1\n")]);
    let found = uses_by_place(&module);
    let lib = module.map.name(1);
    assert_eq!(found, vec![("2:6:$shared".to_string(), format!("bind shared at {lib}:1:11"))]);
}

#[test]
fn an_outer_colon_inner_class_is_in_the_outer_body_by_its_short_name() {
    let (_dir, module) =
        module_of(&[("main.mcl", "class a {\n\tinclude b\n}\nclass a:b {}\nclass a:c {\n\tinclude b\n}\n")]);
    let found: Vec<String> =
        uses_by_place(&module).into_iter().map(|(at, def)| format!("{at} {def}")).collect();
    assert_eq!(found, ["2:10:b class", "6:10:b class"]);
    assert!(errors(&[("main.mcl", "include b\nclass a {}\nclass a:b {}\n")]).contains("unknown class `b`"));
    assert_eq!(
        errors(&[("main.mcl", "class a:b {}\nclass a {\n\tclass b {}\n}\n")]),
        "3 the class `b` is defined twice in the same class\n"
    );
}
