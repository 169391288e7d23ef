//! A running mcl program follows the values it reads as they change, through the binary:
//! a file read with `os.readfile` (from before it exists, through edits and its removal),
//! a command's lines with `os.system`, the time with `datetime.now`, a run-time error that
//! keeps the last graph and recovers, a burst of writes that ends on the newest value, and
//! the cluster's key store read with `world.getval`/`world.kvlookup` as another host's `kv`
//! resource writes it, the value a `value` resource stores read with `value.get_str`, and
//! the three-host demo written in mcl (exports, `collect.res` and `collect file`). Real
//! files, real commands, a real etcd.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::etcd::Etcd;
use crate::common::{Agent, TestDir, read, wait_until};

/// A program managing `out` with `content` (an mcl expression), after `imports`.
fn program(imports: &[&str], out: &Path, content: &str) -> String {
    let mut text: String = imports.iter().map(|m| format!("import \"{m}\"\n")).collect();
    text.push_str(&format!("file \"{}\" {{\n\tcontent => {content},\n}}\n", out.display()));
    text
}

fn start(t: &TestDir, text: &str, extra: &[&str]) -> Agent {
    fs::write(t.path("main.mcl"), text).unwrap();
    let mut args = vec!["run", "--tmp-prefix", "lang", "main.mcl"];
    args.extend(extra);
    Agent::spawn(t, &args)
}

#[test]
fn os_readfile_follows_a_file_from_before_it_exists_through_edits_and_its_removal() {
    let t = TestDir::new();
    let (input, out) = (t.path("in/value"), t.path("out"));
    let content = format!("os.readfile(\"{}\") <|> \"none\\n\"", input.display());
    let a = start(&t, &program(&["os"], &out, &content), &[]);
    a.wait_content(&out, "none\n");
    // Its directory does not exist yet either.
    fs::create_dir(t.path("in")).unwrap();
    fs::write(&input, "one\n").unwrap();
    a.wait_content(&out, "one\n");
    t.replace_yaml("in/value", "two\n");
    a.wait_content(&out, "two\n");
    fs::remove_file(&input).unwrap();
    a.wait_content(&out, "none\n");
    // The running graph keeps repairing what it manages between changes.
    fs::write(&out, "drift\n").unwrap();
    a.wait_content(&out, "none\n");
    assert!(a.try_exit().is_none());
}

/// A value received over send/recv and stored by a `value` resource reaches the program
/// through `value.get_str`, and changes with the sender.
#[test]
fn value_get_str_follows_what_a_value_resource_stores() {
    let t = TestDir::new();
    let (input, out) = (t.path("in"), t.path("out"));
    fs::write(&input, "first").unwrap();
    let text = format!(
        "import \"os\"\nimport \"value\"\n\
         value \"source\" {{\n\tany => os.readfile(\"{}\"),\n}}\n\
         value \"sink\" {{}}\n\
         Value[\"source\"].any -> Value[\"sink\"].any\n\
         $got = value.get_str(\"sink\")\n\
         file \"{}\" {{\n\tcontent => $got->ready ?: $got->value,\n}}\n",
        input.display(),
        out.display()
    );
    let a = start(&t, &text, &[]);
    a.wait_content(&out, "first");
    fs::write(&input, "second").unwrap();
    a.wait_content(&out, "second");
    assert!(a.try_exit().is_none());
}

#[test]
fn os_system_gives_each_line_the_command_prints() {
    let t = TestDir::new();
    let (go, out) = (t.path("go"), t.path("out"));
    let command = format!("echo one; while [ ! -e {} ]; do sleep 0.02; done; echo two", go.display());
    let a = start(&t, &program(&["os"], &out, &format!("os.system(\"{command}\") + \"\\n\"")), &[]);
    a.wait_content(&out, "one\n");
    fs::write(&go, "").unwrap();
    a.wait_content(&out, "two\n");
    // The command has ended: its last line stays.
    fs::write(&out, "drift\n").unwrap();
    a.wait_content(&out, "two\n");
}

#[test]
fn datetime_now_ticks_and_the_graph_follows() {
    let t = TestDir::new();
    let out = t.path("out");
    let a = start(&t, &program(&["datetime", "fmt"], &out, "fmt.printf(\"%d\", datetime.now())"), &[]);
    let seconds = || read(&out).and_then(|s| s.parse::<i64>().ok());
    wait_until(|| seconds().is_some(), Duration::from_secs(20));
    let first = seconds().unwrap();
    wait_until(|| seconds().is_some_and(|s| s > first), Duration::from_secs(20));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - seconds().unwrap()).abs() <= 5, "the time written is the time");
    assert!(a.try_exit().is_none());
}

#[test]
fn a_runtime_error_keeps_the_last_graph_and_the_program_recovers() {
    let t = TestDir::new();
    let (input, out) = (t.path("key"), t.path("out"));
    fs::write(&input, "a").unwrap();
    let content = format!("{{\"a\" => \"A\\n\", \"b\" => \"B\\n\"}}[os.readfile(\"{}\")]", input.display());
    let a = start(&t, &program(&["os"], &out, &content), &[]);
    a.wait_content(&out, "A\n");
    fs::write(&input, "zzz").unwrap();
    a.wait_log("keeping the running graph");
    assert!(a.stderr().contains("runtime error"), "{}", a.stderr());
    fs::write(&out, "drift\n").unwrap();
    a.wait_content(&out, "A\n");
    fs::write(&input, "b").unwrap();
    a.wait_content(&out, "B\n");
}

#[test]
fn a_burst_of_writes_is_coalesced_and_ends_on_the_newest_value() {
    let t = TestDir::new();
    let (input, out) = (t.path("in"), t.path("out"));
    fs::write(&input, "start\n").unwrap();
    let content = format!("os.readfile(\"{}\")", input.display());
    let a = start(&t, &program(&["os"], &out, &content), &["--coalesce-ms", "50"]);
    a.wait_content(&out, "start\n");
    let writes = 500;
    for i in 0..writes {
        fs::write(&input, format!("{i}\n")).unwrap();
    }
    fs::write(&input, "final\n").unwrap();
    a.wait_content(&out, "final\n");
    let swaps = a.stderr().matches("graph swapped").count();
    assert!(swaps < writes / 2, "{swaps} swaps for {writes} writes: they were not coalesced");
}

#[test]
fn graph_watch_prints_the_graph_then_what_each_change_changes() {
    let t = TestDir::new();
    let input = t.path("name");
    fs::write(&input, "a").unwrap();
    let text = format!(
        "import \"os\"\n$n = os.readfile(\"{}\")\nprint \"p-${{n}}\" {{\n\tmsg => \"m\",\n}}\nprint \"q\" {{\n\tmsg => $n,\n}}\n",
        input.display()
    );
    fs::write(t.path("main.mcl"), text).unwrap();
    let a = Agent::spawn(&t, &["graph", "--watch", "lang", "main.mcl"]);
    wait_until(|| a.stdout() == "print[p-a]\nprint[q]\n", Duration::from_secs(20));
    fs::write(&input, "b").unwrap();
    wait_until(|| a.stdout().contains("--- changed\n"), Duration::from_secs(20));
    wait_until(|| a.stdout().contains("+ print[p-b]\n"), Duration::from_secs(20));
    let out = a.stdout();
    let change = &out[out.find("--- changed").unwrap()..];
    assert_eq!(change, "--- changed\n+ print[p-b]\n~ print[q]\n- print[p-a]\n", "{out}");
    // A broken edit is reported on stderr; the watch goes on.
    fs::write(t.path("main.mcl"), "$x = \n").unwrap();
    wait_until(|| a.stderr().contains("parse error"), Duration::from_secs(20));
    assert!(a.try_exit().is_none());
}

#[test]
fn world_getval_and_kvlookup_follow_a_key_another_host_writes() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let out = t.path("out");
    let kv = |value: &str| format!("graph: kv\nresources:\n  kv:\n  - name: greeting\n    value: {value}\n");
    let text = format!(
        "import \"world\"\nimport \"fmt\"\n$v = world.getval(\"greeting\")\nfile \"{}\" {{\n\tcontent => fmt.printf(\"%s %t %v\\n\", $v->value, $v->exists, world.kvlookup(\"greeting\")),\n}}\n",
        out.display()
    );
    fs::write(t.path("main.mcl"), text).unwrap();
    let reader = Agent::spawn(
        &t,
        &["run", "--tmp-prefix", "--seeds", e.url(), "--hostname", "reader", "lang", "main.mcl"],
    );
    reader.wait_content(&out, " false {}\n");
    let yaml = t.write_yaml("kv.yaml", &kv("hello"));
    let writer = t.agent(&["--seeds", e.url(), "--hostname", "writer"], &yaml);
    reader.wait_content(&out, "hello true {\"writer\": \"hello\"}\n");
    t.replace_yaml("kv.yaml", &kv("bonjour"));
    reader.wait_content(&out, "bonjour true {\"writer\": \"bonjour\"}\n");
    assert!(writer.try_exit().is_none() && reader.try_exit().is_none());
}

/// The three-host demo in mcl (`examples/lang/cluster-{a,b,c}.mcl`) with /tmp moved into
/// the test directory.
fn cluster_program(t: &TestDir, h: char) -> String {
    let l = h.to_ascii_lowercase();
    let path = format!("{}/examples/lang/cluster-{l}.mcl", env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(path).expect("reading the example");
    assert!(text.contains("/tmp/mgmt"), "the example no longer uses /tmp/mgmt");
    text.replace("/tmp/mgmt", &t.p("mgmt"))
}

#[test]
fn the_three_host_demo_in_mcl_exports_and_collects_live() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let hosts = ['A', 'B', 'C'];
    let agents: Vec<Agent> = hosts
        .iter()
        .map(|&h| {
            let file = format!("{h}.mcl");
            fs::write(t.path(&file), cluster_program(&t, h)).unwrap();
            let host = h.to_ascii_lowercase().to_string();
            Agent::spawn(&t, &["run", "--tmp-prefix", "--seeds", e.url(), "--hostname", &host, "lang", &file])
        })
        .collect();
    let all: Vec<&Agent> = agents.iter().collect();
    let content = |x: char| format!("i am f{x}, exported from host {x}\n");
    for h in hosts {
        for x in hosts {
            crate::common::cluster::wait_content(&all, &t.path(&format!("mgmt{h}/f{x}")), &content(x));
        }
    }
    // A live change of B's export reaches A and C.
    let changed = cluster_program(&t, 'B').replace("i am fB", "i am a new fB");
    fs::write(t.path("B.mcl"), changed).unwrap();
    for h in ['A', 'C'] {
        crate::common::cluster::wait_content(
            &all,
            &t.path(&format!("mgmt{h}/fB")),
            "i am a new fB, exported from host B\n",
        );
    }
    // C stops exporting: A and C stop managing its file there (what they made stays).
    let unexported = cluster_program(&t, 'C').replace("Meta:export => [\"*\"],", "");
    fs::write(t.path("C.mcl"), unexported).unwrap();
    crate::common::cluster::wait("C's export gone from etcd", &all, || {
        e.keys("/_mgmt/exported/c/").is_empty()
    });
    // A still manages B's file, and no longer C's: once B's drift is repaired, C's stays.
    let a = &agents[0];
    // The removal reaches A as a new evaluation (`collect.res` changed) or as a change of
    // what it collects, whichever comes first; either swaps C's file out.
    a.wait_log("2 kept, 0 started, 1 stopped");
    fs::write(t.path("mgmtA/fC"), "drift\n").unwrap();
    fs::write(t.path("mgmtA/fB"), "drift\n").unwrap();
    crate::common::cluster::wait_content(&all, &t.path("mgmtA/fB"), "i am a new fB, exported from host B\n");
    assert_eq!(
        read(t.path("mgmtA/fC")).as_deref(),
        Some("drift\n"),
        "A no longer manages C's file:\n{}",
        a.stderr()
    );
}

/// The README's cluster quick start: `empty` agents, `deploy --no-git lang DIR`, a program
/// that exports each host's file and collects the others', and follows a file it reads.
#[test]
fn a_deployed_program_runs_live_on_each_host_with_exports_and_collects() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (dir, motd) = (t.path("mgmt"), t.path("motd"));
    fs::create_dir_all(t.path("app")).unwrap();
    let program = format!(
        "import \"os\"\nimport \"world/collect\"\nfile \"{d}/${{hostname}}/${{hostname}}\" {{\n\tcontent => \"hello from ${{hostname}}: \" + (os.readfile(\"{m}\") <|> \"none\\n\"),\n\tMeta:export => [\"*\"],\n}}\ncollect file collect.res(\"file\") {{\n\tpath => \"{d}/${{hostname}}/\",\n}}\n",
        d = dir.display(),
        m = motd.display()
    );
    fs::write(t.path("app/main.mcl"), program).unwrap();
    let agents = crate::common::cluster::empty_agents(&t, &e, &["h1", "h2"]);
    let deploy = crate::common::repo::run_deploy(&e, t.root(), &["--no-git", "lang", "app"]);
    assert_eq!(crate::common::repo::deployed(&deploy), 1);
    let all: Vec<&Agent> = agents.iter().collect();
    // Each host's directory has its own file and the other's, collected.
    for (host, from) in [("h1", "h1"), ("h1", "h2"), ("h2", "h2"), ("h2", "h1")] {
        let path = dir.join(host).join(from);
        crate::common::cluster::wait_content(&all, &path, &format!("hello from {from}: none\n"));
    }
    // A value the program reads changes: each host's file follows, and so does the copy
    // the other host collected.
    fs::write(&motd, "new\n").unwrap();
    for (host, from) in [("h1", "h1"), ("h1", "h2"), ("h2", "h2"), ("h2", "h1")] {
        let path = dir.join(host).join(from);
        crate::common::cluster::wait_content(&all, &path, &format!("hello from {from}: new\n"));
    }
    for a in &agents {
        assert!(a.try_exit().is_none(), "{}", a.stderr());
    }
}
