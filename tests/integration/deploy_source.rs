//! Building bundles from real git repositories (made with the `git` command) and from
//! directories: the clean-tree rule for every kind of dirtiness, `--commit` in a bare
//! repository, modes and symlinks. No etcd needed: the tree is checked before connecting.

use std::fs;
use std::path::Path;

use crate::common::git;
use mgmt::deploy::bundle::{MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK};
use mgmt::deploy::source::{from_dir, from_git};

/// A repository with a committed graph, an executable, a symlink and an ignored file.
fn repo() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    git(d, &["init", "-q", "-b", "main"]);
    fs::create_dir(d.join("app")).unwrap();
    fs::write(d.join("app/graph.yaml"), "graph: g\n").unwrap();
    fs::write(d.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(d.join("run.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("app/graph.yaml", d.join("link")).unwrap();
    fs::write(d.join(".gitignore"), "*.log\n").unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "first graph"]);
    fs::write(d.join("debug.log"), "ignored\n").unwrap();
    t
}

#[test]
fn a_clean_tree_gives_its_commit_with_modes_and_links() {
    let t = repo();
    let b = from_git(t.path(), "yaml", "app/graph.yaml", None).unwrap();
    let paths: Vec<(&str, u32)> = b.manifest.files.iter().map(|f| (f.path.as_str(), f.mode)).collect();
    assert_eq!(
        paths,
        vec![
            (".gitignore", MODE_FILE),
            ("app/graph.yaml", MODE_FILE),
            ("link", MODE_SYMLINK),
            ("run.sh", MODE_EXECUTABLE)
        ]
    );
    let c = b.commit.unwrap();
    assert_eq!(c.id, git(t.path(), &["rev-parse", "HEAD"]));
    assert_eq!(c.subject, "first graph");
    assert_eq!(c.author, "Ada <ada@example.com>");
    // The ignored log file is neither in the bundle nor makes the tree dirty.
    assert!(!b.manifest.files.iter().any(|f| f.path.ends_with(".log")));
}

#[test]
fn every_kind_of_dirtiness_is_refused_and_listed() {
    type MakeDirty = fn(&Path);
    let cases: [(&str, MakeDirty); 4] = [
        ("modified: app/graph.yaml", |d| fs::write(d.join("app/graph.yaml"), "graph: changed\n").unwrap()),
        ("staged: new.yaml", |d| {
            fs::write(d.join("new.yaml"), "x\n").unwrap();
            git(d, &["add", "new.yaml"]);
        }),
        ("deleted: run.sh", |d| fs::remove_file(d.join("run.sh")).unwrap()),
        ("untracked: notes.txt", |d| fs::write(d.join("notes.txt"), "x\n").unwrap()),
    ];
    for (want, dirty) in cases {
        let t = repo();
        dirty(t.path());
        let err = format!("{:#}", from_git(t.path(), "yaml", "app/graph.yaml", None).unwrap_err());
        assert!(err.contains("not clean") && err.contains(want), "{want}: {err}");
        assert!(err.contains("--no-git"), "no hint: {err}");
    }
}

#[test]
fn the_bundle_comes_from_git_objects_not_the_work_tree() {
    let t = repo();
    let first = from_git(t.path(), "yaml", "app/graph.yaml", None).unwrap();
    // A dirty work tree is fine with --commit, and its changes do not leak in.
    fs::write(t.path().join("app/graph.yaml"), "graph: uncommitted\n").unwrap();
    let again = from_git(t.path(), "yaml", "app/graph.yaml", Some("HEAD")).unwrap();
    assert_eq!(first.manifest.id(), again.manifest.id());
    let i = again.manifest.files.iter().position(|f| f.path == "app/graph.yaml").unwrap();
    assert_eq!(again.contents[i], b"graph: g\n");
}

#[test]
fn commit_works_in_a_bare_repository() {
    let t = repo();
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["clone", "-q", "--bare", t.path().to_str().unwrap(), "."]);
    let head = git(t.path(), &["rev-parse", "HEAD"]);
    let b = from_git(bare.path(), "yaml", "app/graph.yaml", Some(&head)).unwrap();
    assert_eq!(b.commit.unwrap().id, head);
    let direct = from_git(t.path(), "yaml", "app/graph.yaml", None).unwrap();
    assert_eq!(b.manifest.id(), direct.manifest.id(), "same tree, same bundle");
    let err = format!("{:#}", from_git(bare.path(), "yaml", "app/graph.yaml", Some("nope")).unwrap_err());
    assert!(err.contains("no commit `nope`"), "{err}");
}

#[test]
fn an_entry_missing_from_the_commit_is_refused() {
    let t = repo();
    let err = format!("{:#}", from_git(t.path(), "yaml", "app/other.yaml", None).unwrap_err());
    assert!(err.contains("entry `app/other.yaml`"), "{err}");
}

#[test]
fn a_symlink_out_of_the_tree_is_refused() {
    let t = repo();
    std::os::unix::fs::symlink("../../etc/passwd", t.path().join("app/escape")).unwrap();
    git(t.path(), &["add", "."]);
    git(t.path(), &["commit", "-q", "-m", "escape"]);
    let err = format!("{:#}", from_git(t.path(), "yaml", "app/graph.yaml", None).unwrap_err());
    assert!(err.contains("symlink `app/escape`") && err.contains("outside the bundle"), "{err}");
    let err = format!("{:#}", from_dir(t.path(), "yaml", "app/graph.yaml").unwrap_err());
    assert!(err.contains("outside the bundle"), "{err}");
}

#[test]
fn a_directory_is_bundled_as_it_is_without_dot_git() {
    let t = repo();
    fs::write(t.path().join("app/graph.yaml"), "graph: uncommitted\n").unwrap();
    let b = from_dir(t.path(), "yaml", "app/graph.yaml").unwrap();
    assert!(b.commit.is_none());
    assert!(!b.manifest.files.iter().any(|f| f.path.starts_with(".git/")));
    let i = b.manifest.files.iter().position(|f| f.path == "app/graph.yaml").unwrap();
    assert_eq!(b.contents[i], b"graph: uncommitted\n");
    // Untracked and ignored files are part of a directory bundle.
    assert!(b.manifest.files.iter().any(|f| f.path == "debug.log"));
}

#[test]
fn a_directory_as_the_entry_stands_for_its_graph_yaml() {
    let t = repo();
    fs::create_dir(t.path().join("gone")).unwrap();
    fs::write(t.path().join("gone/g.yaml"), "graph: g\n").unwrap();
    git(t.path(), &["add", "."]);
    git(t.path(), &["commit", "-q", "-m", "gone"]);
    fs::remove_dir_all(t.path().join("gone")).unwrap();
    for entry in ["app", "app/", "./app"] {
        let b = from_git(t.path(), "yaml", entry, Some("HEAD")).unwrap();
        assert_eq!(b.manifest.entry, "app/graph.yaml", "{entry}");
        assert_eq!(from_dir(t.path(), "yaml", entry).unwrap().manifest.entry, "app/graph.yaml", "{entry}");
    }
    let err = format!("{:#}", from_git(t.path(), "yaml", "gone", Some("HEAD")).unwrap_err());
    assert_eq!(err, "`gone` is a directory without a graph.yaml; name the graph file");
    let err = format!("{:#}", from_dir(t.path(), "yaml", ".").unwrap_err());
    assert_eq!(err, "`.` is a directory without a graph.yaml; name the graph file");
    // Through the command (checked only: no etcd needed).
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
            .args(["deploy", "--check"])
            .args(args)
            .current_dir(t.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // (--no-git bundles the graph file's directory: there the entry is at the root.)
    for (args, entry) in [
        (&["--commit", "HEAD", "yaml", "app"][..], "app/graph.yaml"),
        (&["--no-git", "yaml", "app/"], "graph.yaml"),
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(stdout.starts_with(&format!("valid {entry} (graph `g`, 0 resources)")), "{args:?}: {stdout}");
    }
    for (args, want) in [
        (&["--commit", "HEAD", "yaml", "."][..], "the entry `graph.yaml` is not a file in the bundle"),
        (&["--no-git", "yaml", "."], "`.` is a directory without a graph.yaml"),
        // A revision's tree is checked, whatever the work tree holds.
        (&["--commit", "HEAD", "yaml", "gone"], "`gone` is a directory without a graph.yaml"),
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn non_utf8_file_names_are_refused_and_named() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    for (name, shown) in [
        (&b"caf\xe9"[..], "`caf\\xe9` is not a UTF-8 file name"),
        (b"d\xff/x", "`d\\xff` is not a UTF-8 file name"),
    ] {
        let t = repo();
        let p = t.path().join(OsStr::from_bytes(name));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "x\n").unwrap();
        let err = format!("{:#}", from_dir(t.path(), "yaml", "app/graph.yaml").unwrap_err());
        assert!(err.contains(shown), "from_dir: {err}");
        git(t.path(), &["add", "."]);
        git(t.path(), &["commit", "-q", "-m", "odd name"]);
        let err = format!("{:#}", from_git(t.path(), "yaml", "app/graph.yaml", None).unwrap_err());
        assert!(err.contains(shown), "from_git: {err}");
    }
}

#[test]
fn a_submodule_is_refused_with_its_name() {
    let t = repo();
    let head = git(t.path(), &["rev-parse", "HEAD"]);
    git(t.path(), &["update-index", "--add", "--cacheinfo", &format!("160000,{head},vendor/lib")]);
    git(t.path(), &["commit", "-q", "-m", "submodule"]);
    let err = format!("{:#}", from_git(t.path(), "yaml", "app/graph.yaml", Some("HEAD")).unwrap_err());
    assert!(err.contains("`vendor/lib` is neither a file nor a symlink (a submodule?)"), "{err}");
}

/// In a bare repository `--commit REV yaml FILE` takes FILE as the graph's path inside the
/// repository: an absolute path is refused with what to give instead, before etcd is reached.
#[test]
fn commit_in_a_bare_repository_explains_an_absolute_file() {
    let t = repo();
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["clone", "-q", "--bare", t.path().to_str().unwrap(), "."]);
    let abs = bare.path().join("app/graph.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(["deploy", "--seeds", "http://127.0.0.1:9", "--commit", "HEAD", "yaml"])
        .arg(&abs)
        .current_dir(bare.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "`{}` is an absolute path; with --commit, FILE is the graph's path inside the repository, relative to its root (for example `graph.yaml` or `deploy/graph.yaml`)",
        abs.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    // With a work tree, an absolute path inside it names the same path in the commit (here
    // the bundle is built, and only then is etcd found missing).
    fs::remove_file(t.path().join("app/graph.yaml")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(["deploy", "--seeds", "http://127.0.0.1:9", "--commit", "HEAD", "yaml"])
        .arg(t.path().canonicalize().unwrap().join("app/graph.yaml"))
        .current_dir(t.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach etcd at http://127.0.0.1:9: "), "{stderr}");
}
