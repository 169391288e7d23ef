//! The `lang` frontend through the binary: `run lang` (a program applied, edits swapped in
//! live, a broken edit reported with its place while the running graph stays), `graph
//! lang` (text, JSON, dot; errors located), `deploy lang` (checked before publishing, run by
//! agents that follow deploys, with the module's files). Real files, a real etcd.

use std::fs;
use std::path::Path;

use crate::common::cluster::{self, wait_content};
use crate::common::etcd::Etcd;
use crate::common::repo::{deployed, mgmt, run_deploy, shown, text};
use crate::common::{Agent, Finished, TestDir, read};

/// Write `text` into `rel` below the test directory, making its directories.
fn write(t: &TestDir, rel: &str, text: &str) {
    let path = t.path(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// An mcl program managing the file `path` with `content`.
fn file_program(path: &Path, content: &str) -> String {
    format!("file \"{}\" {{\n\tcontent => \"{content}\\n\",\n}}\n", path.display())
}

/// `mgmt <args>` to its end, in the test directory.
fn finished(t: &TestDir, args: &[&str]) -> Finished {
    let a = Agent::spawn(t, args);
    let status = a.wait_exit();
    Finished { status, stdout: a.stdout(), stderr: a.stderr() }
}

/// A program whose resource body never ends: a parse error at 3:1 of `main.mcl`.
const UNFINISHED: &str = "file \"/nowhere/x\" {\n\tcontent => \"x\",\n";

#[test]
fn graph_lang_shows_a_parse_error_with_its_place_and_excerpt() {
    let t = TestDir::new();
    write(&t, "app/main.mcl", UNFINISHED);
    let out = finished(&t, &["graph", "lang", "app/main.mcl"]);
    out.assert_code(1)
        .assert_stderr_has("parse error: expected `}`")
        .assert_stderr_has("--> app/main.mcl:3:1")
        .assert_stderr_has("mgmt: error: app/main.mcl: 1 error; nothing to show");
    assert_eq!(out.stdout, "");
    // Flags after the path are the graph command's.
    finished(&t, &["graph", "lang", "app/main.mcl", "--format", "json"]).assert_code(1);
}

#[test]
fn graph_lang_names_a_missing_program_and_a_missing_import() {
    let t = TestDir::new();
    finished(&t, &["graph", "lang", "nope.mcl"]).assert_code(1).assert_stderr_has("scope error: nope.mcl: ");
    fs::create_dir(t.path("empty")).unwrap();
    finished(&t, &["graph", "lang", "empty"])
        .assert_code(1)
        .assert_stderr_has("scope error: empty/main.mcl: ");
    write(&t, "main.mcl", "import \"lib.mcl\"\n");
    finished(&t, &["graph", "--format", "dot", "lang", "main.mcl"])
        .assert_code(1)
        .assert_stderr_has("scope error: lib.mcl: ")
        .assert_stderr_has("--> main.mcl:1:8");
}

#[test]
fn run_lang_refuses_a_broken_program_and_applies_nothing() {
    let t = TestDir::new();
    let out = t.path("out/f");
    write(&t, "main.mcl", &(file_program(&out, "x") + "$y = \n"));
    finished(&t, &["run", "--tmp-prefix", "--no-watch", "lang", "main.mcl"])
        .assert_code(1)
        .assert_stderr_has("--> main.mcl:4:")
        .assert_stderr_has("mgmt: error: main.mcl: 1 error; nothing was applied");
    assert!(!t.path("out").exists());
}

#[test]
fn deploy_lang_check_refuses_a_broken_program() {
    let t = TestDir::new();
    write(&t, "app/main.mcl", UNFINISHED);
    let out = mgmt(t.root(), &["deploy", "lang", "--no-git", "--check", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let err = text(&out.stderr);
    // Named by its path in the bundle (the module's directory).
    assert!(err.contains("--> main.mcl:3:1"), "{err}");
    assert!(err.contains("mgmt: error: main.mcl: 1 error; nothing was published"), "{err}");
    // A directory that holds no program.
    fs::create_dir(t.path("docs")).unwrap();
    write(&t, "docs/readme", "hi\n");
    let out = mgmt(t.root(), &["deploy", "--no-git", "--check", "lang", "docs"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(
        text(&out.stderr).contains("`.` is a directory without a main.mcl or a metadata.yaml"),
        "{}",
        shown(&out)
    );
}

/// The form upstream's guide gives (flags before `lang`) is refused, with the program's
/// errors, before etcd is needed.
#[test]
fn deploy_lang_as_upstreams_guide_writes_it_refuses_a_broken_program_before_etcd() {
    let t = TestDir::new();
    write(&t, "example/main.mcl", UNFINISHED);
    let out = mgmt(t.root(), &["deploy", "--no-git", "--seeds=http://127.0.0.1:9", "lang", "example/"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let err = text(&out.stderr);
    assert!(err.contains("parse error: expected `}`"), "{err}");
    assert!(err.contains("mgmt: error: main.mcl: 1 error; nothing was published"), "{err}");
}

#[test]
fn deploy_lang_publishes_nothing_when_the_program_is_broken() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    write(&t, "app/main.mcl", "import \"gone.mcl\"\n");
    let out = run_deploy(&e, t.root(), &["lang", "--no-git", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(text(&out.stderr).contains("scope error: gone.mcl: "), "{}", shown(&out));
    assert!(text(&out.stderr).contains("--> main.mcl:1:8"), "{}", shown(&out));
    let list = run_deploy(&e, t.root(), &["list", "--json"]);
    assert_eq!(text(&list.stdout).trim(), "[]", "{}", shown(&list));
}

#[test]
fn run_lang_applies_and_swaps_edits_live_and_keeps_the_graph_on_a_broken_edit() {
    let t = TestDir::new();
    let out = t.path("out/f");
    write(&t, "app/main.mcl", &file_program(&out, "one"));
    let a = Agent::spawn(&t, &["run", "--tmp-prefix", "lang", "app/main.mcl"]);
    a.wait_content(&out, "one\n");
    t.replace_yaml("app/main.mcl", &file_program(&out, "two"));
    a.wait_content(&out, "two\n");
    a.wait_log("graph swapped:");
    // A broken edit: reported with its place and excerpt; the running graph stays and
    // keeps repairing its file.
    t.replace_yaml("app/main.mcl", &(file_program(&out, "three") + "$y = \n"));
    a.wait_log("keeping the running graph");
    assert!(a.stderr().contains("app/main.mcl:4:"), "{}", a.stderr());
    fs::write(&out, "drift\n").unwrap();
    a.wait_content(&out, "two\n");
    // Fixed: swapped in.
    t.replace_yaml("app/main.mcl", &file_program(&out, "three"));
    a.wait_content(&out, "three\n");
    assert!(a.try_exit().is_none());
}

#[test]
fn run_lang_follows_an_import_of_a_file_created_after_the_edit() {
    let t = TestDir::new();
    let out = t.path("out/f");
    write(&t, "app/main.mcl", &file_program(&out, "one"));
    let a = Agent::spawn(&t, &["run", "--tmp-prefix", "lang", "app"]);
    a.wait_content(&out, "one\n");
    let program =
        format!("import \"lib.mcl\"\nfile \"{}\" {{\n\tcontent => $lib.content,\n}}\n", out.display());
    t.replace_yaml("app/main.mcl", &program);
    a.wait_log("scope error: app/lib.mcl: ");
    write(&t, "app/lib.mcl", "$content = \"from lib\\n\"\n");
    a.wait_content(&out, "from lib\n");
    // The imported file is watched too.
    t.replace_yaml("app/lib.mcl", "$content = \"lib again\\n\"\n");
    a.wait_content(&out, "lib again\n");
}

/// A module: metadata.yaml naming its entry and files directory, a local file and a
/// sub-module imported, a class with a for loop, and a file read with `deploy.readfile`.
fn module(t: &TestDir, out: &Path) {
    write(t, "app/metadata.yaml", "main: entry.mcl\nfiles: data/\n");
    write(t, "app/data/motd", "hello from the module\n");
    write(t, "app/names.mcl", "$names = [\"a\", \"b\"]\n");
    write(t, "app/sub/main.mcl", "$suffix = \".conf\"\n");
    let entry = format!(
        r#"import "fmt"
import "deploy"
import "names.mcl"
import "sub/"

class conf($dir) {{
	for $i, $n in $names.names {{
		file fmt.printf("%s/%s%s", $dir, $n, $sub.suffix) {{
			content => fmt.printf("%d\n", $i),
		}}
	}}
}}
include conf("{out}")

file "{out}/motd" {{
	content => deploy.readfile("/data/motd"),
}}
"#,
        out = out.display()
    );
    write(t, "app/entry.mcl", &entry);
}

#[test]
fn run_lang_runs_a_module_directory_with_its_metadata_and_files() {
    let t = TestDir::new();
    let out = t.path("out");
    module(&t, &out);
    finished(&t, &["run", "--tmp-prefix", "--no-watch", "lang", "app"]).assert_code(0);
    assert_eq!(read(out.join("a.conf")).as_deref(), Some("0\n"));
    assert_eq!(read(out.join("b.conf")).as_deref(), Some("1\n"));
    assert_eq!(read(out.join("motd")).as_deref(), Some("hello from the module\n"));
}

#[test]
fn graph_lang_prints_text_json_and_dot_with_autoedges() {
    let t = TestDir::new();
    let out = t.p("out");
    let program = format!(
        "file \"{out}/d/\" {{}}\nfile \"{out}/d/f\" {{\n\tcontent => \"hi\\n\",\n}}\n\
         exec \"a\" {{\n\tcmd => \"true\",\n}}\nexec \"b\" {{\n\tcmd => \"true\",\n}}\n\
         Exec[\"a\"] -> Exec[\"b\"]\n"
    );
    write(&t, "main.mcl", &program);
    let shown = finished(&t, &["graph", "lang", "main.mcl"]);
    shown.assert_code(0);
    assert_eq!(
        shown.stdout,
        format!(
            "exec[a]\nexec[b]\nfile[{out}/d/]\nfile[{out}/d/f]\nexec[a] -> exec[b]\nfile[{out}/d/] -> file[{out}/d/f]\n"
        )
    );
    let json = finished(&t, &["graph", "--format", "json", "lang", "main.mcl"]);
    json.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON on stdout");
    assert_eq!(v["vertices"][3]["params"]["content"], "hi\n");
    assert_eq!(v["edges"][0], serde_json::json!({"from": "exec[a]", "to": "exec[b]", "notify": false}));
    let dot = finished(&t, &["graph", "lang", "main.mcl", "--format", "dot"]);
    dot.assert_code(0);
    assert!(dot.stdout.starts_with("digraph ") && dot.stdout.contains("\"exec[a]\" -> \"exec[b]\";"));
    assert!(!t.path("out").exists(), "`mgmt graph` applied something");
}

#[test]
fn deploy_lang_is_run_by_agents_with_the_modules_files() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let out = t.path("out");
    module(&t, &out);
    let agents: Vec<Agent> = ["h1", "h2"]
        .iter()
        .map(|h| Agent::spawn(&t, &["run", "--seeds", &e.url, "--hostname", h, "--tmp-prefix", "empty"]))
        .collect();
    for a in &agents {
        a.wait_log("running graph `empty`");
    }
    let check = run_deploy(&e, t.root(), &["lang", "--no-git", "--check", "app"]);
    assert!(text(&check.stdout).contains("valid metadata.yaml"), "{}", shown(&check));
    assert_eq!(deployed(&run_deploy(&e, t.root(), &["lang", "--no-git", "app"])), 1);
    let all: Vec<&Agent> = agents.iter().collect();
    for a in &agents {
        cluster::wait("both agents to run deploy 1", &all, || a.count("running deploy 1") > 0);
    }
    wait_content(&all, &out.join("motd"), "hello from the module\n");
    wait_content(&all, &out.join("b.conf"), "1\n");
}

/// One deployed program, a graph per host: each agent evaluates it with its own `$hostname`.
#[test]
fn a_deployed_program_gives_each_host_its_own_graph() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let out = t.path("out");
    fs::create_dir_all(t.path("app")).unwrap();
    let program = format!(
        "if $hostname == \"web1\" {{\n\tfile \"{o}/web1-role\" {{\n\t\tcontent => \"web\\n\",\n\t}}\n}} else {{\n\tfile \"{o}/${{hostname}}-role\" {{\n\t\tcontent => \"other\\n\",\n\t}}\n}}\n",
        o = out.display()
    );
    fs::write(t.path("app/main.mcl"), program).unwrap();
    let agents = crate::common::cluster::empty_agents(&t, &e, &["web1", "db1"]);
    assert_eq!(deployed(&run_deploy(&e, t.root(), &["--no-git", "lang", "app"])), 1);
    let all: Vec<&Agent> = agents.iter().collect();
    wait_content(&all, &out.join("web1-role"), "web\n");
    wait_content(&all, &out.join("db1-role"), "other\n");
    for a in &agents {
        cluster::wait("both agents to run deploy 1", &all, || a.count("running deploy 1") > 0);
    }
    assert_eq!(read(out.join("web1-role")).as_deref(), Some("web\n"), "web1's file is web1's branch");
    let names: Vec<String> =
        fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "each host applies only its own branch: {names:?}");
}

#[test]
fn deploy_diff_compares_a_programs_files_and_graph() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let out = t.path("out/f");
    write(&t, "app/main.mcl", &file_program(&out, "one"));
    assert_eq!(deployed(&run_deploy(&e, t.root(), &["lang", "--no-git", "app"])), 1);
    write(&t, "app/main.mcl", &file_program(&out, "two"));
    let diff = run_deploy(&e, t.root(), &["diff", "--no-git", "app"]);
    assert_eq!(diff.status.code(), Some(0), "{}", shown(&diff));
    let printed = text(&diff.stdout);
    assert!(printed.contains("~ main.mcl"), "{printed}");
    assert!(printed.contains("content: \"one\\n\" -> \"two\\n\""), "{printed}");
}

/// Every example runs, changing nothing (`--noop`): each is a valid program.
#[test]
fn every_example_runs() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lang");
    let mut ran = 0;
    for e in fs::read_dir(&examples).unwrap().flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "mcl") && !path.is_dir() {
            continue;
        }
        let t = TestDir::new();
        let p = path.to_str().unwrap();
        finished(&t, &["run", "--tmp-prefix", "--noop", "--no-watch", "--hostname", "h1", "lang", p])
            .assert_code(0);
        finished(&t, &["graph", "lang", p]).assert_code(0);
        ran += 1;
    }
    assert!(ran >= 6, "{ran} examples");
}
