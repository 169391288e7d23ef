//! The `file` params for upstream's graphs: `symlink`, `fragments`, `dirname` and
//! `basename`; each applied, converged, repaired by a watching agent, and untouched in noop.
//! Then the meta params `hidden` (with export, against a real etcd) and `reverse`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::etcd::Etcd;
use crate::common::{self, Agent, TestDir, read};

/// The text of the symlink at `path`, if it is one.
fn link_text(path: &Path) -> Option<String> {
    let md = fs::symlink_metadata(path).ok()?;
    md.file_type().is_symlink().then(|| fs::read_link(path).unwrap().to_string_lossy().into_owned())
}

/// No change line of a `file` in a run's log: everything was as the graph says.
#[track_caller]
fn assert_nothing_changed(stderr: &str) {
    let changed: Vec<&str> = stderr.lines().filter(|l| l.contains("file[")).collect();
    assert!(changed.is_empty(), "converged, yet:\n{}", changed.join("\n"));
}

fn symlink_graph(t: &TestDir) -> String {
    format!(
        r#"graph: links
resources:
  file:
  - name: abs
    path: {abs}
    symlink: true
    source: {target}
  - name: rel
    path: {rel}
    symlink: true
    source: ../target
    state: exists
  - name: replaced
    path: {replaced}
    symlink: true
    source: {target}
    force: true
  - name: gone
    path: {gone}
    symlink: true
    state: absent
"#,
        abs = t.p("links/abs"),
        rel = t.p("links/rel"),
        replaced = t.p("links/replaced"),
        gone = t.p("links/gone"),
        target = t.p("target"),
    )
}

#[test]
fn symlinks_are_made_kept_and_pointed_back() {
    let t = TestDir::new();
    fs::write(t.path("target"), "the target\n").unwrap();
    fs::create_dir_all(t.path("links")).unwrap();
    fs::write(t.path("links/replaced"), "a plain file\n").unwrap();
    std::os::unix::fs::symlink("/elsewhere", t.path("links/gone")).unwrap();
    let yaml = t.write_yaml("g.yaml", &symlink_graph(&t));

    // Noop: nothing changes, and what would is said.
    let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[abs]: noop: would create symlink to");
    assert_eq!(link_text(&t.path("links/abs")), None);
    assert_eq!(read(t.path("links/replaced")).as_deref(), Some("a plain file\n"));
    assert_eq!(link_text(&t.path("links/gone")).as_deref(), Some("/elsewhere"));

    // First apply.
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0)
        .assert_stderr_has(&format!("file[abs]: create symlink to {}", t.p("target")))
        .assert_stderr_has("file[rel]: create symlink to ../target")
        .assert_stderr_has(&format!("file[replaced]: replace file with a symlink to {}", t.p("target")))
        .assert_stderr_has("file[gone]: remove symlink");
    assert_eq!(link_text(&t.path("links/abs")), Some(t.p("target")));
    assert_eq!(link_text(&t.path("links/rel")).as_deref(), Some("../target"));
    assert_eq!(read(t.path("links/rel")).as_deref(), Some("the target\n"), "resolves beside its dir");
    assert_eq!(link_text(&t.path("links/replaced")), Some(t.p("target")));
    assert!(fs::symlink_metadata(t.path("links/gone")).is_err());
    assert_eq!(read(t.path("target")).as_deref(), Some("the target\n"), "the target is never written");

    // Converged.
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0);
    assert_nothing_changed(&out.stderr);

    // A watching agent points a retargeted link back, and puts back a removed one.
    let a = t.agent(&[], &yaml);
    a.wait_log("running graph");
    let tmp = t.path("links/.abs.new");
    std::os::unix::fs::symlink("/somewhere/else", &tmp).unwrap();
    fs::rename(&tmp, t.path("links/abs")).unwrap();
    a.wait_log("file[abs]: point symlink to");
    a.wait_for("the link pointed back", || link_text(&t.path("links/abs")) == Some(t.p("target")));
    fs::remove_file(t.path("links/rel")).unwrap();
    a.wait_for("the link made again", || link_text(&t.path("links/rel")).as_deref() == Some("../target"));
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn a_symlink_never_replaces_a_file_without_force() {
    let t = TestDir::new();
    fs::write(t.path("keep"), "mine\n").unwrap();
    let yaml = format!(
        "graph: g\nresources:\n  file:\n  - name: l\n    path: {}\n    symlink: true\n    source: /etc/hostname\n",
        t.p("keep")
    );
    let graph = t.write_yaml("g.yaml", &yaml);
    t.run_to_end(&["--no-watch"], &graph).assert_code(1).assert_stderr_has(&format!(
        "{} is a file; set `force: true` to replace it with a symlink",
        t.p("keep")
    ));
    assert_eq!(read(t.path("keep")).as_deref(), Some("mine\n"));

    let yaml = t.write_yaml("bad.yaml", &yaml.replace("    source: /etc/hostname\n", "    mode: \"0644\"\n"));
    t.run_to_end(&["--no-watch"], &yaml)
        .assert_code(1)
        .assert_stderr_has("field `mode`: a symlink has no mode");
}

fn fragments_graph(t: &TestDir) -> String {
    format!(
        r#"graph: fragments
resources:
  file:
  - name: whole
    path: {whole}
    fragments:
    - {head}
    - {parts}/
    - {tail}
  - name: tail
    path: {tail}
    content: "made here\n"
"#,
        whole = t.p("out/whole"),
        head = t.p("head"),
        parts = t.p("parts"),
        tail = t.p("tail"),
    )
}

#[test]
fn fragments_make_the_content_in_order_and_are_watched() {
    let t = TestDir::new();
    fs::create_dir_all(t.path("parts/sub")).unwrap();
    fs::write(t.path("head"), "head\n").unwrap();
    fs::write(t.path("parts/b"), "b\n").unwrap();
    fs::write(t.path("parts/a"), "a\n").unwrap();
    fs::write(t.path("parts/sub/skipped"), "not read\n").unwrap();
    fs::write(t.path("tail"), "old tail\n").unwrap();
    let yaml = t.write_yaml("g.yaml", &fragments_graph(&t));

    let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[whole]: noop: would create file");
    assert!(!t.path("out").exists());
    assert_eq!(read(t.path("tail")).as_deref(), Some("old tail\n"));

    // The fragment the graph makes comes first (an autoedge).
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0).assert_stderr_has("file[whole]: create file (19 bytes)");
    assert_eq!(read(t.path("out/whole")).as_deref(), Some("head\na\nb\nmade here\n"));

    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0);
    assert_nothing_changed(&out.stderr);

    let a = t.agent(&[], &yaml);
    a.wait_log("running graph");
    // A fragment edited, one added to the directory, the file itself edited: rebuilt.
    fs::write(t.path("head"), "new head\n").unwrap();
    a.wait_content(&t.path("out/whole"), "new head\na\nb\nmade here\n");
    fs::write(t.path("parts/0"), "zero\n").unwrap();
    a.wait_content(&t.path("out/whole"), "new head\nzero\na\nb\nmade here\n");
    fs::write(t.path("out/whole"), "edited\n").unwrap();
    a.wait_content(&t.path("out/whole"), "new head\nzero\na\nb\nmade here\n");
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn a_missing_fragment_fails_the_check_and_a_file_inside_its_fragments_is_refused() {
    let t = TestDir::new();
    let yaml = format!(
        "graph: g\nresources:\n  file:\n  - name: f\n    path: {}\n    fragments: [{}]\n",
        t.p("out"),
        t.p("missing")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    t.run_to_end(&["--no-watch"], &yaml)
        .assert_code(1)
        .assert_stderr_has(&format!("reading fragment {}", t.p("missing")));
    assert!(!t.path("out").exists());

    let yaml = format!(
        "graph: g\nresources:\n  file:\n  - name: f\n    path: {}\n    fragments: [{}/]\n",
        t.p("d/out"),
        t.p("d")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    t.run_to_end(&["--no-watch"], &yaml).assert_code(1).assert_stderr_has("field `fragments`: ");
}

#[test]
fn dirname_and_basename_override_the_path() {
    let t = TestDir::new();
    let yaml = format!(
        r#"graph: overrides
resources:
  file:
  - name: {name}
    dirname: {dir}/
    content: "moved\n"
  - name: renamed
    path: {dir}/ignored-name
    basename: chosen
    content: "renamed\n"
  - name: both
    path: /nowhere/at/all
    dirname: {dir}/sub/
    basename: both
    content: "both\n"
"#,
        name = "/elsewhere/moved",
        dir = t.p("out"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    t.run_to_end(&["--noop", "--no-watch"], &yaml).assert_code(0);
    assert!(!t.path("out").exists());

    t.run_to_end(&["--no-watch"], &yaml).assert_code(0);
    assert_eq!(read(t.path("out/moved")).as_deref(), Some("moved\n"));
    assert_eq!(read(t.path("out/chosen")).as_deref(), Some("renamed\n"));
    assert_eq!(read(t.path("out/sub/both")).as_deref(), Some("both\n"));
    assert!(!t.path("out/ignored-name").exists());

    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(0);
    assert_nothing_changed(&out.stderr);

    let a = t.agent(&[], &yaml);
    a.wait_log("running graph");
    fs::write(t.path("out/chosen"), "drift\n").unwrap();
    a.wait_content(&t.path("out/chosen"), "renamed\n");
    assert_eq!(a.interrupt().code(), Some(0));
}

// Meta params: `hidden` (with export) and `reverse`.

/// A hidden resource is not applied on its host, but is exported: another host collects
/// and applies it. What the cluster holds is read with etcdctl.
#[test]
fn a_hidden_resource_is_exported_but_not_applied() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let a_yaml = format!(
        r#"graph: a
resources:
  file:
  - name: "@@shared"
    path: {shared}
    content: "from a\n"
    meta:
      hidden: true
  - name: local
    path: {local}
    content: "applied\n"
"#,
        shared = t.p("a/shared"),
        local = t.p("a/local"),
    );
    let b_yaml = format!(
        "graph: b\nresources:\n  noop:\n  - name: n\ncollect:\n- kind: file\n  pattern: {}/\n",
        t.p("b")
    );
    let a_yaml = t.write_yaml("a.yaml", &a_yaml);
    let b_yaml = t.write_yaml("b.yaml", &b_yaml);
    let a = t.agent(&["--seeds", e.url(), "--hostname", "A"], &a_yaml);
    let b = t.agent(&["--seeds", e.url(), "--hostname", "B"], &b_yaml);
    a.wait_content(&t.path("a/local"), "applied\n");
    b.wait_content(&t.path("b/shared"), "from a\n");
    let exported = e.get_prefix_json("/_mgmt/exported/");
    let keys: Vec<&str> = exported.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["/_mgmt/exported/A/file/shared"]);
    assert_eq!(exported[0].1["params"]["content"], "from a\n", "{}", exported[0].1);
    assert!(!t.path("a/shared").exists(), "a hidden resource was applied on its host");
    assert!(!a.stderr().contains("file[shared]:"), "{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
    assert_eq!(b.interrupt().code(), Some(0));
}

fn reverse_graph(t: &TestDir, with: bool) -> String {
    let mut yaml = format!(
        "graph: reverse\nresources:\n  file:\n  - name: stays\n    path: {}\n    content: \"stays\\n\"\n",
        t.p("stays")
    );
    if with {
        yaml.push_str(&format!(
            r#"  - name: made
    path: {made}
    content: "made\n"
    meta: {{reverse: true}}
  - name: changed
    path: {changed}
    content: "changed\n"
    mode: "0600"
    meta: {{reverse: true}}
  - name: link
    path: {link}
    symlink: true
    source: {stays}
    force: true
    meta: {{reverse: true}}
"#,
            made = t.p("made"),
            changed = t.p("changed"),
            link = t.p("link"),
            stays = t.p("stays"),
        ));
    }
    yaml
}

/// Files with `reverse` are put back as they were once their resources leave the graph:
/// one the graph made is removed, one it changed gets its content and mode back, a file
/// it replaced by a link is a file again.
#[test]
fn reversed_files_are_put_back_when_their_resources_leave_the_graph() {
    let t = TestDir::new();
    fs::write(t.path("changed"), "original\n").unwrap();
    fs::set_permissions(t.path("changed"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(t.path("link"), "was a file\n").unwrap();
    let yaml = t.write_yaml("g.yaml", &reverse_graph(&t, true));
    let a = t.agent(&[], &yaml);
    a.wait_content(&t.path("made"), "made\n");
    a.wait_content(&t.path("changed"), "changed\n");
    a.wait_for("the link", || link_text(&t.path("link")) == Some(t.p("stays")));

    t.replace_yaml("g.yaml", &reverse_graph(&t, false));
    a.wait_absent(&t.path("made"));
    a.wait_content(&t.path("changed"), "original\n");
    a.wait_content(&t.path("link"), "was a file\n");
    assert_eq!(fs::metadata(t.path("changed")).unwrap().permissions().mode() & 0o7777, 0o640);
    assert!(!fs::symlink_metadata(t.path("link")).unwrap().file_type().is_symlink());
    a.wait_log("file[made]: undone, as it left the graph");
    assert_eq!(read(t.path("stays")).as_deref(), Some("stays\n"));
    assert_eq!(a.interrupt().code(), Some(0));
}

/// What undoes a resource is kept on disk under the prefix: a resource that left the graph
/// while the agent was stopped is undone when it starts again, once; noop changes nothing.
#[test]
fn a_reversal_survives_a_restart_and_runs_once() {
    let t = TestDir::new();
    let prefix = t.p("prefix");
    let run = |yaml: &Path, extra: &[&str]| {
        let mut argv = vec!["run", "--prefix", prefix.as_str(), "--no-watch"];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["yaml", yaml.to_str().unwrap()]);
        let a = Agent::spawn(&t, &argv);
        let status = a.wait_exit();
        assert_eq!(status.code(), Some(0), "{}", a.stderr());
        a.stderr()
    };
    fs::write(t.path("changed"), "original\n").unwrap();
    let with = t.write_yaml("with.yaml", &reverse_graph(&t, true));
    let without = t.write_yaml("without.yaml", &reverse_graph(&t, false));
    // Noop records nothing: nothing was changed to undo.
    run(&with, &["--noop"]);
    assert!(common::entries_containing(t.path("prefix/reverse"), "").is_empty());
    run(&with, &[]);
    assert_eq!(read(t.path("made")).as_deref(), Some("made\n"));
    assert_eq!(common::entries_containing(t.path("prefix/reverse"), ".json").len(), 3);
    // Applied again: the record of the state before the first apply stays.
    run(&with, &[]);

    // Stopped; started again without them, first in noop: nothing changes.
    let out = run(&without, &["--noop"]);
    assert!(out.contains("file[made]: noop: would remove file"), "{out}");
    assert_eq!(read(t.path("made")).as_deref(), Some("made\n"));
    let out = run(&without, &[]);
    assert!(out.contains("file[made]: remove file"), "{out}");
    assert!(!t.path("made").exists());
    assert_eq!(read(t.path("changed")).as_deref(), Some("original\n"));
    assert!(common::entries_containing(t.path("prefix/reverse"), ".json").is_empty());
    // Done once: the next start changes nothing.
    let out = run(&without, &[]);
    assert!(!out.contains("file["), "{out}");
}

/// A watch that failed for good starts again with the next graph under `rewatch`; without
/// it, it stays stopped.
#[test]
fn rewatch_starts_a_failed_watch_again_on_the_next_graph() {
    let t = TestDir::new();
    let graph = |content: &str| {
        format!(
            r#"graph: rewatch
resources:
  exec:
  - name: again
    cmd: "true"
    shell: /bin/sh
    watchcmd: "exit 3"
    meta: {{rewatch: true}}
  - name: once
    cmd: "true"
    shell: /bin/sh
    watchcmd: "exit 4"
  file:
  - name: f
    path: {f}
    content: "{content}\n"
"#,
            f = t.p("f"),
        )
    };
    let yaml = t.write_yaml("g.yaml", &graph("1"));
    let a = t.agent(&[], &yaml);
    a.wait_log("exec[again]: watch failed");
    a.wait_log("exec[once]: watch failed");
    t.replace_yaml("g.yaml", &graph("2"));
    a.wait_content(&t.path("f"), "2\n");
    a.wait_log("exec[again]: watching again (rewatch)");
    a.wait_log_count("exec[again]: watch failed", 2);
    assert_eq!(a.count("exec[once]: watch failed"), 1, "{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
}
