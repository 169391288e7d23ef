//! What an operator installs: `mgmt --version`, the completion scripts, `make install-files`
//! into a staging dir, and the Debian package (`scripts/build-deb`, from this test build's
//! binary) installed with dpkg inside a systemd sandbox (`common/systemd.rs`), where its
//! units run an etcd member and an agent that runs a deployed graph.
//!
//! The sandbox test needs root; without it (or where namespaces are refused) it prints a
//! loud `SKIPPED` line and returns, and `MGMT_TEST_REQUIRE_SANDBOX=1` makes that a failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::systemd::{DEADLINE, Sandbox, eventually};
use crate::common::{self, TestDir};

const MGMT: &str = env!("CARGO_BIN_EXE_mgmt");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every file the package installs (besides the binary), as `make install PREFIX=/usr` does.
const INSTALLED: &[&str] = &[
    "/usr/lib/systemd/system/mgmt.service",
    "/usr/lib/systemd/system/mgmt-etcd.service",
    "/etc/default/mgmt",
    "/etc/default/mgmt-etcd",
    "/usr/share/bash-completion/completions/mgmt",
    "/usr/share/zsh/site-functions/_mgmt",
    "/usr/share/fish/vendor_completions.d/mgmt.fish",
    "/usr/share/man/man1/mgmt.1.gz",
    "/usr/share/man/man1/mgmt-run.1.gz",
    "/usr/share/man/man1/mgmt-deploy-list.1.gz",
    "/usr/share/man/man1/mgmt-etcd.1.gz",
];

#[track_caller]
fn ok(what: &str, out: Output) -> String {
    common::succeeded(what, &out)
}

fn mgmt(args: &[&str]) -> String {
    ok(&format!("mgmt {args:?}"), Command::new(MGMT).args(args).output().expect("running mgmt"))
}

/// Whether an ELF file still has its symbol table (`readelf -S`).
fn has_symbols(bin: &Path) -> bool {
    let out = Command::new("readelf").arg("-S").arg(bin).output().expect("running readelf (binutils)");
    ok("readelf -S", out).contains(".symtab")
}

/// `make -s install-files` with the given variables, from this test build's binary.
fn make_install_files(vars: &[String]) {
    let out = Command::new("make")
        .args(["-s", "-C", ROOT, "install-files", &format!("BIN={MGMT}")])
        .args(vars)
        .output()
        .expect("running make");
    ok("make install-files", out);
}

#[test]
fn version_names_the_version_and_the_commit() {
    let line = mgmt(&["--version"]);
    // The commit this checkout is at (the test binary is built from it), or "unknown" outside git.
    let head = Command::new("git").args(["log", "-1", "--format=%h %cs"]).current_dir(ROOT).output();
    let commit = match head {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    };
    assert_eq!(line, format!("mgmt {} ({commit})\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completion_scripts_are_printed_for_each_shell() {
    for (shell, marker) in
        [("bash", "complete -F _mgmt"), ("zsh", "#compdef mgmt"), ("fish", "complete -c mgmt")]
    {
        let script = mgmt(&["completion", shell]);
        assert!(script.contains(marker), "{shell}: no {marker:?} in:\n{script}");
        // Subcommands and their flags are completed.
        assert!(script.contains("deploy") && script.contains("converged-timeout"), "{shell}:\n{script}");
    }
    let out = Command::new(MGMT).args(["completion", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn make_install_stages_everything_under_the_prefix_keeps_existing_config_and_uninstalls() {
    let t = TestDir::new();
    let dest = t.path("dest");
    // An operator's environment file is not replaced.
    fs::create_dir_all(dest.join("etc/default")).unwrap();
    fs::write(dest.join("etc/default/mgmt"), "MGMT_SEEDS=http://10.0.0.1:2379\n").unwrap();
    make_install_files(&[format!("DESTDIR={}", dest.display())]);

    let at = |p: &str| dest.join(p.trim_start_matches('/'));
    let bin = at("/usr/local/bin/mgmt");
    assert!(!has_symbols(&bin), "{} is not stripped", bin.display());
    assert_eq!(
        ok("installed --version", Command::new(&bin).arg("--version").output().unwrap()),
        mgmt(&["--version"])
    );
    for p in INSTALLED {
        let p = p.replacen("/usr/", "/usr/local/", 1).replace(".1.gz", ".1");
        assert!(at(&p).is_file(), "{p} is not installed");
    }
    let unit = fs::read_to_string(at("/usr/local/lib/systemd/system/mgmt.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/local/bin/mgmt run empty\n"), "{unit}");
    assert!(unit.contains("\nEnvironmentFile=-/etc/default/mgmt\n"), "{unit}");
    let etcd = fs::read_to_string(at("/usr/local/lib/systemd/system/mgmt-etcd.service")).unwrap();
    assert!(etcd.contains("\nExecStart=/usr/local/bin/mgmt etcd --prefix /var/lib/mgmt\n"), "{etcd}");
    assert!(
        !unit.contains("@BINDIR@") && !etcd.contains("@BINDIR@"),
        "a placeholder is left:\n{unit}\n{etcd}"
    );
    assert_eq!(fs::read_to_string(at("/etc/default/mgmt")).unwrap(), "MGMT_SEEDS=http://10.0.0.1:2379\n");
    assert!(fs::read_to_string(at("/etc/default/mgmt-etcd")).unwrap().contains("#ETCD_INITIAL_CLUSTER="));
    let man = fs::read_to_string(at("/usr/local/share/man/man1/mgmt-deploy-list.1")).unwrap();
    assert!(man.contains(".TH mgmt-deploy-list 1") && man.contains("json"), "{man}");

    // `make uninstall` takes it all away again, but for the operator's configuration.
    let out = Command::new("make")
        .args(["-s", "-C", ROOT, "uninstall", &format!("DESTDIR={}", dest.display())])
        .output()
        .expect("running make");
    ok("make uninstall", out);
    let left: Vec<String> = walkdir::WalkDir::new(&dest)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(&dest).unwrap().display().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.contains(&"etc/default/mgmt".to_string()) && left.contains(&"etc/default/mgmt-etcd".to_string())
    );
}

/// Build the .deb from this test build's binary into `out`; its path.
fn build_deb(out: &Path) -> PathBuf {
    let script = Path::new(ROOT).join("scripts/build-deb");
    // gzip: xz would take half a minute on this binary, and compression is not under test.
    let out = Command::new("bash")
        .arg(script)
        .arg(MGMT)
        .arg(out)
        .env("DEB_COMPRESS", "gzip")
        .output()
        .expect("running scripts/build-deb");
    PathBuf::from(ok("scripts/build-deb", out).trim())
}

#[track_caller]
fn wait_active(sb: &Sandbox, unit: &str) {
    if !eventually(|| sb.systemctl(&["is-active", unit]) == "active", DEADLINE) {
        panic!(
            "{unit} is not active after {DEADLINE:?}\n--- status:\n{}\n--- journal:\n{}",
            sb.systemctl(&["status", "--no-pager", "--full", unit]),
            sb.journal(unit)
        );
    }
}

#[test]
fn the_debian_package_installs_and_its_agent_runs_a_deployed_graph() {
    let Some(sb) = Sandbox::start() else { return };
    let t = TestDir::new();
    let deb = build_deb(&t.path("deb"));
    fs::copy(&deb, sb.path("/root/mgmt.deb")).expect("copying the package into the sandbox");

    // A container host's policy-rc.d ("start no services") is not the machine's policy here.
    sb.sh("rm -f /usr/sbin/policy-rc.d");
    sb.sh("dpkg -i /root/mgmt.deb");
    assert!(sb.sh("dpkg-query -W -f '${Status}' mgmt").contains("install ok installed"));
    for p in INSTALLED {
        assert!(sb.path(p).is_file(), "{p} is not installed");
    }
    assert!(!has_symbols(&sb.path("/usr/bin/mgmt")), "/usr/bin/mgmt is not stripped");
    assert_eq!(sb.sh("/usr/bin/mgmt --version"), mgmt(&["--version"]));
    assert_eq!(sb.sh("cat /var/lib/dpkg/info/mgmt.conffiles"), "/etc/default/mgmt\n/etc/default/mgmt-etcd\n");
    // Installed, known to systemd, and not started: the agent needs its seeds first.
    assert_eq!(sb.systemctl(&["is-active", "mgmt.service"]), "inactive");
    assert_eq!(sb.prop("mgmt.service", "LoadState"), "loaded");
    assert_eq!(sb.prop("mgmt-etcd.service", "LoadState"), "loaded");

    // An etcd member on this host, and the agent pointed at it (the sandbox's network is its
    // own loopback).
    sb.sh("systemctl start mgmt-etcd.service");
    wait_active(&sb, "mgmt-etcd.service");
    sb.write("/etc/default/mgmt", "MGMT_SEEDS=http://127.0.0.1:2379\n");
    sb.sh("systemctl start mgmt.service");
    wait_active(&sb, "mgmt.service");

    let managed = "/root/managed-by-mgmt.txt";
    let content = "written by the packaged agent\n";
    sb.write(
        "/root/site/graph.yaml",
        &format!(
            "graph: site\nresources:\n  file:\n  - name: managed\n    path: \"{managed}\"\n    content: \"{}\"\n    state: exists\n",
            content.escape_default()
        ),
    );
    sb.sh("/usr/bin/mgmt deploy --no-git --seeds http://127.0.0.1:2379 yaml /root/site/graph.yaml");
    if !eventually(|| sb.read(managed).as_deref() == Some(content), DEADLINE) {
        panic!(
            "{managed} was not written within {DEADLINE:?} (it holds {:?})\n--- journal:\n{}",
            sb.read(managed),
            sb.journal("mgmt.service")
        );
    }
    assert_eq!(sb.systemctl(&["is-active", "mgmt.service"]), "active");
    assert_eq!(sb.systemctl(&["is-active", "mgmt-etcd.service"]), "active");
    // etcd's data is in the state directory the unit names.
    assert!(sb.path("/var/lib/mgmt/etcd/member").is_dir(), "no etcd data in /var/lib/mgmt/etcd");

    // An upgrade (here: the same package again) restarts the agent on the new binary and
    // leaves etcd running.
    let pid = |unit: &str| sb.prop(unit, "MainPID");
    let (agent_pid, etcd_pid) = (pid("mgmt.service"), pid("mgmt-etcd.service"));
    sb.sh("dpkg -i /root/mgmt.deb");
    if !eventually(|| !["0", agent_pid.as_str()].contains(&pid("mgmt.service").as_str()), DEADLINE) {
        panic!("mgmt.service was not restarted by the upgrade\n{}", sb.journal("mgmt.service"));
    }
    wait_active(&sb, "mgmt.service");
    assert_eq!(pid("mgmt-etcd.service"), etcd_pid);

    // Removing the package stops both units and keeps the operator's configuration.
    sb.sh("dpkg -r mgmt");
    assert_eq!(sb.systemctl(&["is-active", "mgmt.service"]), "inactive");
    assert_eq!(sb.systemctl(&["is-active", "mgmt-etcd.service"]), "inactive");
    assert!(!sb.path("/usr/bin/mgmt").exists());
    assert_eq!(sb.read("/etc/default/mgmt").as_deref(), Some("MGMT_SEEDS=http://127.0.0.1:2379\n"));
}
