//! The `file` resource on a real filesystem: mode, owner and group, directories, `source`
//! (a file, or a tree with `recurse` and `purge`), `force`, and `state: absent`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};

use crate::common::{self, TestDir, identity, mode, read};

fn owner(path: &std::path::Path) -> (u32, u32) {
    let md = fs::symlink_metadata(path).unwrap();
    (md.uid(), md.gid())
}

#[test]
fn mode_is_set_on_create_and_restored() {
    let t = TestDir::new();
    // An existing file with the right content and the wrong mode only gets a chmod.
    fs::create_dir_all(t.path("out")).unwrap();
    fs::write(t.path("out/existing"), "same\n").unwrap();
    fs::set_permissions(t.path("out/existing"), fs::Permissions::from_mode(0o644)).unwrap();
    let before = identity(t.path("out/existing"));
    let yaml = format!(
        r##"graph: modes
resources:
  file:
  - name: secret
    path: {secret}
    content: "s3cret\n"
    mode: "0600"
  - name: existing
    path: {existing}
    content: "same\n"
    mode: "0640"
  - name: script
    path: {script}
    content: "#!/bin/sh\n"
    mode: "0o755"
"##,
        secret = t.p("out/secret"),
        existing = t.p("out/existing"),
        script = t.p("out/script"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    let secret = t.path("out/secret");
    a.wait_content(&secret, "s3cret\n");
    a.wait_for("mode 0600", || mode(&secret) == 0o600);
    a.wait_for("mode 0755", || t.path("out/script").exists() && mode(t.path("out/script")) == 0o755);
    a.wait_log("file[existing]: set mode 0644 -> 0640");
    assert_eq!(mode(t.path("out/existing")), 0o640);
    assert_eq!(identity(t.path("out/existing")).0, before.0, "a chmod must not replace the file");

    // chmod from outside: restored.
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o666)).unwrap();
    a.wait_for("mode 0600 restored", || mode(&secret) == 0o600);
    a.wait_log("file[secret]: set mode 0666 -> 0600");
    // Content drift keeps the mode.
    fs::write(&secret, "leaked\n").unwrap();
    a.wait_content(&secret, "s3cret\n");
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn owner_and_group_by_name_and_number() {
    let t = TestDir::new();
    let yaml = format!(
        r#"graph: owners
resources:
  file:
  - name: named
    path: {named}
    content: "x\n"
    owner: nobody
    group: nogroup
  - name: numeric
    path: {numeric}
    content: "y\n"
    owner: "65534"
    group: "65534"
  - name: groupdir
    path: {dir}/
    group: nogroup
"#,
        named = t.p("out/named"),
        numeric = t.p("out/numeric"),
        dir = t.p("out/dir"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    let (named, numeric, dir) = (t.path("out/named"), t.path("out/numeric"), t.path("out/dir"));
    a.wait_content(&named, "x\n");
    a.wait_content(&numeric, "y\n");
    a.wait_for("dir", || dir.is_dir());
    a.wait_for("owners", || {
        owner(&named) == (65534, 65534) && owner(&numeric) == (65534, 65534) && owner(&dir) == (0, 65534)
    });

    // chown from outside: restored.
    chown(&named, Some(0), Some(0)).unwrap();
    a.wait_for("owner restored", || owner(&named) == (65534, 65534));
    a.wait_log("file[named]: set owner 0 -> 65534");
    a.wait_log("file[named]: set group 0 -> 65534");
    // A content repair keeps the owner.
    fs::write(&numeric, "drift\n").unwrap();
    a.wait_content(&numeric, "y\n");
    assert_eq!(owner(&numeric), (65534, 65534));
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn unknown_owner_is_an_error_and_other_files_still_apply() {
    let t = TestDir::new();
    let yaml = format!(
        r#"graph: owners
resources:
  file:
  - name: bad
    path: {bad}
    content: "x\n"
    owner: no-such-user-mgmt-test
  - name: good
    path: {good}
    content: "y\n"
"#,
        bad = t.p("out/bad"),
        good = t.p("out/good"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(1).assert_stderr_has("file[bad]: no such user `no-such-user-mgmt-test`");
    assert!(!t.path("out/bad").exists());
    assert_eq!(read(t.path("out/good")).as_deref(), Some("y\n"));
}

#[test]
fn directories_are_created_with_their_mode_and_restored() {
    let t = TestDir::new();
    let yaml = format!(
        "graph: dirs\nresources:\n  file:\n  - name: d\n    path: {}/\n    mode: \"0750\"\n",
        t.p("a/b/c")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    let d = t.path("a/b/c");
    a.wait_for("directory", || d.is_dir() && mode(&d) == 0o750);
    a.wait_log("file[d]: create directory");
    // Removed from outside: recreated.
    fs::remove_dir(&d).unwrap();
    a.wait_for("directory recreated", || d.is_dir() && mode(&d) == 0o750);
    // A directory without purge leaves what is inside alone.
    fs::write(d.join("user-file"), "mine\n").unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
    a.wait_for("mode restored", || mode(&d) == 0o750);
    assert_eq!(read(d.join("user-file")).as_deref(), Some("mine\n"));
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn source_file_is_copied_and_followed() {
    let t = TestDir::new();
    fs::write(t.path("src.txt"), "from source v1\n").unwrap();
    let yaml = format!(
        "graph: copy\nresources:\n  file:\n  - name: copy\n    path: {}\n    source: {}\n",
        t.p("out/copy.txt"),
        t.p("src.txt")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    let copy = t.path("out/copy.txt");
    a.wait_content(&copy, "from source v1\n");
    // Drift on the copy: restored from the source.
    fs::write(&copy, "drift\n").unwrap();
    a.wait_content(&copy, "from source v1\n");
    // The source changes: the copy follows.
    fs::write(t.path("src.txt"), "from source v2, longer\n").unwrap();
    a.wait_content(&copy, "from source v2, longer\n");
    assert_eq!(
        read(t.path("src.txt")).as_deref(),
        Some("from source v2, longer\n"),
        "the source was modified"
    );
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn source_tree_is_copied_recursively_and_extras_are_purged() {
    let t = TestDir::new();
    let src = t.path("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("a.conf"), "a\n").unwrap();
    fs::write(src.join("sub/b.conf"), "b\n").unwrap();
    fs::write(src.join("sub/deeper/c.conf"), "c\n").unwrap();
    fs::set_permissions(src.join("sub/b.conf"), fs::Permissions::from_mode(0o600)).unwrap();
    // The target already holds extras (a file, a nested file, a directory) and a file that
    // another resource manages.
    let dst = t.path("dst");
    fs::create_dir_all(dst.join("sub")).unwrap();
    fs::create_dir_all(dst.join("junk/inner")).unwrap();
    fs::write(dst.join("extra"), "x\n").unwrap();
    fs::write(dst.join("sub/extra2"), "x\n").unwrap();
    fs::write(dst.join("junk/inner/f"), "x\n").unwrap();
    let yaml = format!(
        r#"graph: tree
resources:
  file:
  - name: tree
    path: {dst}/
    source: {src}/
    recurse: true
    purge: true
  - name: managed
    path: {dst}/managed
    content: "managed elsewhere\n"
"#,
        dst = dst.display(),
        src = src.display(),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    a.wait_content(&dst.join("a.conf"), "a\n");
    a.wait_content(&dst.join("sub/b.conf"), "b\n");
    a.wait_content(&dst.join("sub/deeper/c.conf"), "c\n");
    a.wait_content(&dst.join("managed"), "managed elsewhere\n");
    a.wait_absent(&dst.join("extra"));
    a.wait_absent(&dst.join("sub/extra2"));
    a.wait_absent(&dst.join("junk"));
    assert_eq!(mode(dst.join("sub/b.conf")), 0o600, "source mode is copied");
    a.wait_log(&format!("file[tree]: purge {}", dst.join("extra").display()));

    // While running: a new extra is purged, a changed copy restored, a new source file copied,
    // and the managed file survives it all.
    fs::write(dst.join("late-extra"), "x\n").unwrap();
    a.wait_absent(&dst.join("late-extra"));
    fs::write(dst.join("sub/b.conf"), "drift\n").unwrap();
    a.wait_content(&dst.join("sub/b.conf"), "b\n");
    fs::write(src.join("sub/deeper/new.conf"), "new\n").unwrap();
    a.wait_content(&dst.join("sub/deeper/new.conf"), "new\n");
    assert_eq!(read(dst.join("managed")).as_deref(), Some("managed elsewhere\n"));
    // The source tree itself is never touched.
    let mut src_files: Vec<String> = walk(&src);
    src_files.sort();
    assert_eq!(
        src_files,
        ["a.conf", "sub", "sub/b.conf", "sub/deeper", "sub/deeper/c.conf", "sub/deeper/new.conf"]
    );
    assert_eq!(a.interrupt().code(), Some(0));
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn force_replaces_a_file_by_a_directory_and_back() {
    let t = TestDir::new();
    fs::write(t.path("was-file"), "i am a file\n").unwrap();
    fs::create_dir_all(t.path("was-dir/inner")).unwrap();
    fs::write(t.path("was-dir/inner/x"), "x\n").unwrap();
    let yaml = format!(
        r#"graph: force
resources:
  file:
  - name: to-dir
    path: {to_dir}/
    force: true
  - name: to-file
    path: {to_file}
    content: "now a file\n"
    force: true
"#,
        to_dir = t.p("was-file"),
        to_file = t.p("was-dir"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0)
        .assert_stderr_has("file[to-dir]: remove file to make room for a directory")
        .assert_stderr_has("file[to-file]: remove directory to make room for a file");
    assert!(t.path("was-file").is_dir());
    assert_eq!(read(t.path("was-dir")).as_deref(), Some("now a file\n"));
}

#[test]
fn without_force_a_file_is_not_replaced_by_a_directory() {
    let t = TestDir::new();
    fs::write(t.path("was-file"), "i am a file\n").unwrap();
    fs::create_dir_all(t.path("was-dir")).unwrap();
    let yaml = format!(
        r#"graph: noforce
resources:
  file:
  - name: to-dir
    path: {to_dir}/
  - name: to-file
    path: {to_file}
    content: "now a file\n"
"#,
        to_dir = t.p("was-file"),
        to_file = t.p("was-dir"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(1)
        .assert_stderr_has(&format!(
            "file[to-dir]: {} exists and is not a directory; set `force: true` to replace it",
            t.p("was-file")
        ))
        .assert_stderr_has(&format!(
            "file[to-file]: {} is a directory; set `force: true` to replace it with a file",
            t.p("was-dir")
        ));
    assert_eq!(read(t.path("was-file")).as_deref(), Some("i am a file\n"));
    assert!(t.path("was-dir").is_dir());
}

#[test]
fn absent_removes_files_and_empty_directories_but_not_full_ones_without_force() {
    let t = TestDir::new();
    fs::write(t.path("file"), "bye\n").unwrap();
    fs::create_dir_all(t.path("empty")).unwrap();
    fs::create_dir_all(t.path("full/inner")).unwrap();
    fs::write(t.path("full/inner/keep"), "keep\n").unwrap();
    fs::create_dir_all(t.path("forced/inner")).unwrap();
    fs::write(t.path("forced/inner/x"), "x\n").unwrap();
    let yaml = format!(
        r#"graph: absent
resources:
  file:
  - name: file
    path: {file}
    state: absent
  - name: empty
    path: {empty}
    state: absent
  - name: full
    path: {full}
    state: absent
  - name: forced
    path: {forced}
    state: absent
    force: true
  - name: never-there
    path: {never}
    state: absent
"#,
        file = t.p("file"),
        empty = t.p("empty"),
        full = t.p("full"),
        forced = t.p("forced"),
        never = t.p("never-there"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    a.wait_absent(&t.path("file"));
    a.wait_absent(&t.path("empty"));
    a.wait_absent(&t.path("forced"));
    a.wait_log(&format!(
        "file[full]: {} is a non-empty directory; set `force: true` to remove it recursively",
        t.p("full")
    ));
    assert_eq!(read(t.path("full/inner/keep")).as_deref(), Some("keep\n"));
    assert!(!t.path("never-there").exists());
    // Recreated from outside: removed again.
    fs::write(t.path("file"), "back\n").unwrap();
    a.wait_absent(&t.path("file"));
    a.wait_log_count("file[file]: remove file", 2);
    assert_eq!(a.count("file[never-there]:"), 0, "{}", a.stderr());
    assert_eq!(a.interrupt().code(), Some(0));
}

#[test]
fn a_file_without_content_is_created_empty_and_its_content_left_alone() {
    let t = TestDir::new();
    let yaml = format!("graph: touch\nresources:\n  file:\n  - name: {}\n", t.p("out/touched"));
    let yaml = t.write_yaml("g.yaml", &yaml);
    let p = t.path("out/touched");
    t.run_to_end(&["--converged-timeout", "1"], &yaml)
        .assert_code(0)
        .assert_stderr_has("create file (0 bytes)");
    assert_eq!(read(&p).as_deref(), Some(""));
    // Its content is not managed: a second run leaves what the user wrote.
    fs::write(&p, "user data\n").unwrap();
    let before = identity(&p);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(0);
    assert_eq!(read(&p).as_deref(), Some("user data\n"));
    assert_eq!(identity(&p), before);
    assert!(!out.stderr.contains(&format!("file[{}]:", t.p("out/touched"))), "{}", out.stderr);
}

/// A managed path that is a symlink is never written through: without `force` it is an
/// error, with `force` the link itself is replaced; `state: absent` removes only the link.
#[test]
fn symlinks_are_not_followed() {
    let t = TestDir::new();
    fs::create_dir_all(t.path("out")).unwrap();
    fs::write(t.path("precious"), "precious\n").unwrap();
    fs::set_permissions(t.path("precious"), fs::Permissions::from_mode(0o600)).unwrap();
    for link in ["out/keep-link", "out/force-link", "out/absent-link", "out/mode-link"] {
        std::os::unix::fs::symlink(t.path("precious"), t.path(link)).unwrap();
    }
    let yaml = format!(
        r#"graph: links
resources:
  file:
  - name: keep-link
    path: {keep}
    content: "through the link?\n"
  - name: force-link
    path: {force}
    content: "replaced the link\n"
    force: true
  - name: absent-link
    path: {absent}
    state: absent
  - name: mode-link
    path: {mode_link}
    mode: "0640"
    force: true
"#,
        mode_link = t.p("out/mode-link"),
        keep = t.p("out/keep-link"),
        force = t.p("out/force-link"),
        absent = t.p("out/absent-link"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--converged-timeout", "1"], &yaml);
    out.assert_code(1).assert_stderr_has(&format!(
        "file[keep-link]: {} is a symlink; set `force: true` to replace it with a file",
        t.p("out/keep-link")
    ));
    assert_eq!(read(t.path("precious")).as_deref(), Some("precious\n"), "written through a symlink");
    assert!(fs::symlink_metadata(t.path("out/keep-link")).unwrap().file_type().is_symlink());
    let forced = fs::symlink_metadata(t.path("out/force-link")).unwrap();
    assert!(forced.file_type().is_file(), "force did not replace the link");
    assert_eq!(read(t.path("out/force-link")).as_deref(), Some("replaced the link\n"));
    assert_eq!(mode(t.path("out/force-link")), 0o644, "the new file took the link's mode");
    // With only `mode`, the link becomes an empty file with that mode; the target keeps its.
    let moded = fs::symlink_metadata(t.path("out/mode-link")).unwrap();
    assert!(moded.file_type().is_file(), "force did not replace the link");
    assert_eq!(mode(t.path("out/mode-link")), 0o640);
    assert_eq!(mode(t.path("precious")), 0o600, "the mode was set through the link");
    assert!(fs::symlink_metadata(t.path("out/absent-link")).is_err(), "the link was not removed");
    assert!(t.path("precious").exists(), "state: absent followed the link");
}

/// Any spelling of `/` (`/.`, `/./`, `//`) is refused at load for every use, naming the
/// field; nothing runs.
#[test]
fn every_spelling_of_root_is_refused_at_load() {
    let t = TestDir::new();
    let variants = [
        "state: absent\n    force: true",
        "purge: true",
        "recurse: true\n    source: /nowhere/",
        "content: \"x\"",
    ];
    for (i, params) in variants.iter().enumerate() {
        for root in ["/.", "/./", "//", "/.//./"] {
            let yaml = format!(
                "graph: g\nresources:\n  file:\n  - name: r\n    path: \"{root}\"\n    {params}\n    meta: {{noop: true}}\n"
            );
            let yaml = t.write_yaml(&format!("g{i}.yaml"), &yaml);
            let out = t.run_to_end(&["--noop", "--no-watch"], &yaml);
            out.assert_code(1).assert_stderr_has("field `path`: refusing to manage `/`");
            assert!(!out.stderr.contains("would"), "{root} {params}: {}", out.stderr);
        }
    }
}

/// A NUL byte in a path, or a component longer than the kernel allows, is a load error
/// naming the field.
#[test]
fn nul_bytes_and_overlong_names_are_refused_at_load() {
    let t = TestDir::new();
    let long = "n".repeat(256);
    let cases = [
        (format!("path: \"{}/a\\0b\"", t.p("out")), "field `path`: "),
        (format!("path: {}/{long}", t.p("out")), "field `path`: "),
        (format!("path: {}/x\n    source: \"/s\\0\"", t.p("out")), "field `source`: "),
        (
            format!("path: {}/x\n    owner: \"4294967295\"", t.p("out")),
            "field `owner`: 4294967295 is not a valid id",
        ),
        (
            format!("path: {}/x\n    group: \"4294967295\"", t.p("out")),
            "field `group`: 4294967295 is not a valid id",
        ),
    ];
    for (params, want) in cases {
        let yaml =
            t.write_yaml("g.yaml", &format!("graph: g\nresources:\n  file:\n  - name: r\n    {params}\n"));
        let out = t.run_to_end(&["--no-watch"], &yaml);
        out.assert_code(1).assert_stderr_has(want);
    }
    assert!(!t.path("out").exists());
}

/// A file name of the longest length the kernel allows (255 bytes) can be written, and
/// rewritten.
#[test]
fn the_longest_file_names_are_managed() {
    let t = TestDir::new();
    let names = ["a".repeat(255), "b".repeat(239), "c".repeat(238)];
    let mut yaml = String::from("graph: g\nresources:\n  file:\n");
    for n in &names {
        yaml.push_str(&format!(
            "  - name: {}\n    path: {}/{n}\n    content: \"{}\\n\"\n",
            &n[..1],
            t.p("out"),
            &n[..1]
        ));
    }
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    for n in &names {
        a.wait_content(&t.path(&format!("out/{n}")), &format!("{}\n", &n[..1]));
    }
    fs::write(t.path(&format!("out/{}", names[0])), "drift\n").unwrap();
    a.wait_content(&t.path(&format!("out/{}", names[0])), "a\n");
    assert_eq!(a.interrupt().code(), Some(0));
    assert!(common::entries_containing(t.path("out"), ".mgmt-tmp").is_empty());
}

/// A `source` that is not a regular file (a FIFO, `/dev/zero`) is an error of that
/// resource: it never blocks the check or fills memory, and the rest of the graph applies.
#[test]
fn a_source_that_is_not_a_regular_file_is_refused() {
    let t = TestDir::new();
    nix::unistd::mkfifo(&t.path("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let yaml = format!(
        r#"graph: g
resources:
  file:
  - name: fifo
    path: {out}/fifo
    source: {fifo}
  - name: zero
    path: {out}/zero
    source: /dev/zero
  - name: ok
    path: {out}/ok
    content: "ok\n"
"#,
        out = t.p("out"),
        fifo = t.p("fifo"),
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let out = t.run_to_end(&["--no-watch"], &yaml);
    out.assert_code(1)
        .assert_stderr_has(&format!("file[fifo]: reading source {}: not a regular file", t.p("fifo")))
        .assert_stderr_has("file[zero]: reading source /dev/zero: not a regular file");
    assert_eq!(read(t.path("out/ok")).as_deref(), Some("ok\n"));
    assert!(!t.path("out/zero").exists() && !t.path("out/fifo").exists());
}

/// A big source is copied exactly, and a copy that differs only near its end is noticed
/// (content is compared in chunks, not read whole).
#[test]
fn a_big_source_is_copied_and_a_late_difference_is_repaired() {
    let t = TestDir::new();
    let mut data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(t.path("big"), &data).unwrap();
    let yaml = format!(
        "graph: g\nresources:\n  file:\n  - name: big\n    path: {}\n    source: {}\n",
        t.p("out/big"),
        t.p("big")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    a.wait_for("the copy", || fs::read(t.path("out/big")).ok().as_deref() == Some(&data[..]));
    let last = data.len() - 1;
    data[last] ^= 0xff;
    fs::write(t.path("out/big"), &data).unwrap();
    data[last] ^= 0xff;
    a.wait_for("the repair", || fs::read(t.path("out/big")).ok().as_deref() == Some(&data[..]));
    // The change is logged once it is made, so the line may come just after the content.
    a.wait_log("file[big]: replace content");
    assert_eq!(a.interrupt().code(), Some(0));
}

/// A directory is created with its final mode: it is never chmod-ed after `mkdir` (no
/// moment where it is wider than asked).
#[test]
fn a_directory_is_created_with_its_final_mode() {
    use inotify::{Inotify, WatchMask};
    let t = TestDir::new();
    fs::create_dir(t.path("out")).unwrap();
    let mut ino = Inotify::init().unwrap();
    ino.watches().add(t.path("out"), WatchMask::ATTRIB | WatchMask::CREATE).unwrap();
    let yaml = format!(
        "graph: g\nresources:\n  file:\n  - name: d\n    path: {}/\n    mode: \"0700\"\n",
        t.p("out/private")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    t.run_to_end(&["--no-watch"], &yaml).assert_code(0);
    assert_eq!(mode(t.path("out/private")), 0o700);
    let mut buf = [0u8; 4096];
    let events: Vec<String> = ino
        .read_events(&mut buf)
        .map(|evs| evs.map(|e| format!("{:?} {:?}", e.mask, e.name)).collect())
        .unwrap_or_default();
    assert!(events.iter().any(|e| e.contains("CREATE")), "{events:?}");
    assert!(!events.iter().any(|e| e.contains("ATTRIB")), "changed after creation: {events:?}");
}

/// Mode and owner changes never follow a symlink swapped in at the managed path, however
/// the swap is timed: the link's target keeps its mode.
#[test]
fn a_symlink_swapped_in_during_mode_enforcement_is_not_followed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let t = TestDir::new();
    fs::create_dir(t.path("race")).unwrap();
    fs::write(t.path("victim"), "victim\n").unwrap();
    fs::set_permissions(t.path("victim"), fs::Permissions::from_mode(0o600)).unwrap();
    let f = t.path("race/f");
    fs::write(&f, "x\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let yaml = format!(
        "graph: g\nresources:\n  file:\n  - name: f\n    path: {}\n    mode: \"0644\"\n",
        f.display()
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    let a = t.agent(&[], &yaml);
    a.wait_log("file[f]: set mode 0600 -> 0644");
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, dir, victim) = (stop.clone(), t.path("race"), t.path("victim"));
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                let tmp = dir.join("tmp");
                if n.is_multiple_of(2) {
                    let _ = fs::write(&tmp, "x\n");
                    let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600));
                } else {
                    let _ = std::os::unix::fs::symlink(&victim, &tmp);
                }
                let _ = fs::rename(&tmp, dir.join("f"));
                n += 1;
            }
        })
    };
    // Every regular file swapped in is 0600, so the agent keeps setting the mode.
    a.wait_for("many mode repairs", || {
        a.count("file[f]: set mode 0600 -> 0644") >= 300 || swapper.is_finished()
    });
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(mode(t.path("victim")), 0o600, "the mode was set through a symlink");
}

/// Parent directories reached through a symlink are followed (as `/var/run -> /run` must
/// be); only the final component never is.
#[test]
fn a_symlinked_parent_directory_is_followed() {
    let t = TestDir::new();
    fs::create_dir(t.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink(t.path("elsewhere"), t.path("linkdir")).unwrap();
    let yaml = format!(
        "graph: g\nresources:\n  file:\n  - name: f\n    path: {}\n    content: \"hi\\n\"\n    mode: \"0640\"\n",
        t.p("linkdir/target")
    );
    let yaml = t.write_yaml("g.yaml", &yaml);
    t.run_to_end(&["--no-watch"], &yaml).assert_code(0);
    assert_eq!(read(t.path("elsewhere/target")).as_deref(), Some("hi\n"));
    assert_eq!(mode(t.path("elsewhere/target")), 0o640);
}

/// A graph's relative `source` and exec `cwd` name files next to the graph file, wherever
/// the agent is started from; a directory given to `yaml` stands for its graph.yaml.
#[test]
fn relative_sources_and_cwd_resolve_against_the_graph_files_directory() {
    let t = TestDir::new();
    fs::create_dir_all(t.path("conf/files")).unwrap();
    fs::write(t.path("conf/files/app.conf"), "next to the graph\n").unwrap();
    let yaml = format!(
        "graph: rel\nresources:\n  file:\n  - name: conf\n    path: {out}/app.conf\n    source: ./files//app.conf\n\
         \x20 exec:\n  - name: copy\n    shell: /bin/sh\n    cwd: files\n    cmd: cp app.conf {out}/copied.conf\n    creates: {out}/copied.conf\n",
        out = t.p("out")
    );
    t.write_yaml("conf/graph.yaml", &yaml);
    fs::create_dir(t.path("out")).unwrap();
    let out = t.run_to_end(&["--no-watch"], &t.path("conf"));
    out.assert_code(0);
    assert_eq!(read(t.path("out/app.conf")).as_deref(), Some("next to the graph\n"), "{}", out.stderr);
    assert_eq!(read(t.path("out/copied.conf")).as_deref(), Some("next to the graph\n"));

    // A directory without a graph.yaml says so.
    let out = t.run_to_end(&["--no-watch"], &t.path("conf/files"));
    out.assert_code(1).assert_stderr_has(&format!(
        "mgmt: error: `{}` is a directory without a graph.yaml; name the graph file",
        t.path("conf/files").display()
    ));
}

#[test]
fn a_relative_source_may_not_leave_the_graphs_directory() {
    let t = TestDir::new();
    fs::write(t.path("secret"), "outside\n").unwrap();
    fs::create_dir(t.path("conf")).unwrap();
    for (source, field, why) in [
        ("../secret", "source", "`../secret` must stay inside the graph's directory: `..` is not allowed"),
        ("files/../../secret", "source", "`files/../../secret` must stay inside the graph's directory"),
        ("~/secret", "source", "`~/secret`: `~` is not expanded"),
    ] {
        let yaml = format!(
            "graph: rel\nresources:\n  file:\n  - name: f\n    path: {}\n    {field}: {source}\n",
            t.p("out/f")
        );
        let g = t.write_yaml("conf/g.yaml", &yaml);
        let out = t.run_to_end(&["--no-watch"], &g);
        out.assert_code(1)
            .assert_stderr_has(&format!("{}:6:13: file[f]: field `{field}`: {why}", g.display()));
        assert!(!t.path("out").exists());
    }
    // The managed path itself must still be absolute.
    let yaml = "graph: rel\nresources:\n  file:\n  - name: f\n    path: out/f\n    content: x\n";
    let g = t.write_yaml("conf/g.yaml", yaml);
    t.run_to_end(&["--no-watch"], &g)
        .assert_code(1)
        .assert_stderr_has("field `path`: `out/f` must be an absolute path");
}
