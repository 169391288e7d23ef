//! `svc` against a real systemd: each test boots its own systemd in a sandbox
//! (`tests/support/systemd-sandbox`, see `common/systemd.rs`), runs `mgmt` inside it, and
//! checks the units with `systemctl` run inside (and once over D-Bus from the host).
//!
//! These tests need root. Without it (or where namespaces are refused) each prints a loud
//! `SKIPPED` line and returns; `MGMT_TEST_REQUIRE_SANDBOX=1` turns that into a failure.
//! The last test (no systemd on the bus) runs anywhere, without a sandbox.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::TestDir;
use crate::common::systemd::{DEADLINE, Sandbox, Spawned, eventually};

const MGMT: &str = env!("CARGO_BIN_EXE_mgmt");
/// Where the graph file lives inside the sandbox.
const GRAPH: &str = "/root/mgmt-svc-test/g.yaml";
const UNIT: &str = "mgmt-test.service";
const UNIT_FILE: &str = "/etc/systemd/system/mgmt-test.service";
/// What enabling the talk's unit creates.
const WANTS_LINK: &str = "/etc/systemd/system/multi-user.target.wants/mgmt-test.service";

/// The talk's unit file, with `ExecStart=/bin/sleep <secs>`.
fn unit_file(secs: u32) -> String {
    format!(
        "[Unit]\nDescription=Fake service for testing\n\n[Service]\nExecStart=/bin/sleep {secs}\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

/// `text` as a YAML block scalar's lines, indented by `n` spaces.
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| if l.is_empty() { "\n".to_string() } else { format!("{pad}{l}\n") }).collect()
}

/// A file resource (a list item under `file:`) writing `content` to `path`.
fn file_res(name: &str, path: &str, content: &str) -> String {
    format!(
        "  - name: {name}\n    path: \"{path}\"\n    content: |\n{}    state: exists\n",
        indent(content, 6)
    )
}

/// Write the graph file inside the sandbox (in place, so a running agent picks it up).
fn write_graph(sb: &Sandbox, yaml: &str) {
    sb.write(GRAPH, yaml);
}

/// Start `mgmt run --tmp-prefix <flags> yaml GRAPH` inside the sandbox.
fn agent(sb: &Sandbox, flags: &[&str]) -> Spawned {
    let mut argv = vec![MGMT, "run", "--tmp-prefix"];
    argv.extend_from_slice(flags);
    argv.extend_from_slice(&["yaml", GRAPH]);
    sb.spawn(&argv)
}

/// Everything worth seeing when a wait on a unit times out.
fn diagnostics(sb: &Sandbox, agent: &mut Spawned, unit: &str) -> String {
    format!(
        "--- agent (exit {:?}) stderr:\n{}--- systemctl status {unit}:\n{}\n--- journal:\n{}",
        agent.try_exit(),
        agent.stderr(),
        sb.systemctl(&["status", "--no-pager", "--full", unit]),
        sb.journal(unit)
    )
}

/// Wait (up to [`DEADLINE`]) until `cond` holds; panic with the agent's log and the unit's
/// status otherwise.
#[track_caller]
fn wait_unit(sb: &Sandbox, agent: &mut Spawned, unit: &str, what: &str, mut cond: impl FnMut() -> bool) {
    if !eventually(&mut cond, DEADLINE) {
        panic!("timed out after {DEADLINE:?} waiting for: {what}\n{}", diagnostics(sb, agent, unit));
    }
}

/// Wait until the unit's property `prop` is `want`.
#[track_caller]
fn wait_prop(sb: &Sandbox, agent: &mut Spawned, unit: &str, prop: &str, want: &str) {
    let what = format!("{unit} {prop}={want}");
    wait_unit(sb, agent, unit, &what, || sb.prop(unit, prop) == want);
}

/// The unit's main PID (0 when it has none).
fn main_pid(sb: &Sandbox, unit: &str) -> u32 {
    sb.prop(unit, "MainPID").parse().unwrap_or(0)
}

/// The command line of a process of the sandbox (PID as the sandbox sees it).
fn cmdline(sb: &Sandbox, pid: u32) -> String {
    sb.read(&format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ").trim().to_string()
}

/// Wait until the unit runs with a main PID other than `old`; returns the new one.
#[track_caller]
fn wait_new_pid(sb: &Sandbox, agent: &mut Spawned, unit: &str, old: u32) -> u32 {
    let mut pid = 0;
    wait_unit(sb, agent, unit, &format!("{unit} active with a main PID other than {old}"), || {
        pid = main_pid(sb, unit);
        pid != 0 && pid != old && sb.prop(unit, "ActiveState") == "active"
    });
    pid
}

/// `systemctl <args>` from outside the agent, racing it: when the agent starts the service
/// again while the stop job still runs, its start job replaces the stop job and systemctl
/// reports "canceled". Anything else is a failure.
#[track_caller]
fn outside_systemctl(sb: &Sandbox, args: &[&str]) {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    let out = sb.exec(&argv);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() || stderr.contains("canceled"), "{argv:?}: {}: {stderr}", out.status);
}

macro_rules! sandbox_or_skip {
    () => {
        match Sandbox::start() {
            Some(sb) => sb,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------------------------
// The harness itself.

#[test]
fn sandbox_boots_isolates_and_stops_without_leftovers() {
    let sb = sandbox_or_skip!();
    let state = sb.systemctl(&["is-system-running"]);
    assert!(state == "running" || state == "degraded", "is-system-running: {state}");

    // Its own /tmp, /run and /etc writes: the host sees none of them.
    let probe = format!("mgmt-sandbox-probe-{}", std::process::id());
    sb.sh(&format!("touch /tmp/{probe} /run/{probe} /etc/{probe}"));
    for dir in ["/tmp", "/run", "/etc"] {
        let host = Path::new(dir).join(&probe);
        assert!(!host.exists(), "{} leaked to the host", host.display());
        assert!(sb.path(dir).join(&probe).exists(), "{dir}/{probe} is not visible through sb.path");
    }
    // Only a loopback interface; PID 1 is systemd; the agent binary is visible inside.
    assert_eq!(sb.sh("ls /sys/class/net").trim(), "lo");
    assert_eq!(sb.sh("cat /proc/1/comm").trim(), "systemd");
    assert!(sb.path(MGMT).exists(), "{MGMT} is not visible in the sandbox");
    assert!(sb.exec(&[MGMT, "--help"]).status.success(), "{MGMT} --help failed in the sandbox");
    // A non-zero exit inside is reported as such.
    assert_eq!(sb.exec(&["sh", "-c", "exit 7"]).status.code(), Some(7));

    // Its systemd answers on the bus address from the host.
    let version =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let conn = zbus_systemd::zbus::connection::Builder::address(sb.bus_address().as_str())
                .build()
                .await
                .expect("connecting to the sandbox's system bus");
            let m = zbus_systemd::systemd1::ManagerProxy::new(&conn).await.expect("manager proxy");
            m.version().await.expect("systemd's Version over D-Bus")
        });
    assert!(!version.is_empty(), "empty systemd version");

    // A spawned command is killed with its handle.
    let mut sleeper = sb.spawn(&["sleep", "4242"]);
    assert!(eventually(|| sb.exec(&["pgrep", "-x", "-f", "sleep 4242"]).status.success(), DEADLINE));
    sleeper.kill();
    assert!(
        eventually(|| !sb.exec(&["pgrep", "-x", "-f", "sleep 4242"]).status.success(), DEADLINE),
        "the spawned command survived its kill"
    );

    // Stopping: no process, cgroup, mount or scratch dir is left.
    let dir = sb.dir().to_path_buf();
    let cgroup = sb.cgroup().to_string();
    let pid = sb.pid();
    assert!(cgroup.contains("/systemd-sandbox-") && Path::new(&cgroup).is_dir(), "cgroup {cgroup}");
    let leftover_long_runner = sb.spawn(&["sleep", "4343"]);
    drop(sb);
    drop(leftover_long_runner);
    assert!(!dir.exists(), "scratch dir {} left behind", dir.display());
    assert!(!Path::new(&cgroup).exists(), "cgroup {cgroup} left behind");
    let stat = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!stat.contains("systemd"), "the sandbox's systemd (pid {pid}) still runs");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.to_string_lossy();
    assert!(!mounts.contains(&*d), "mounts left behind:\n{mounts}");
    let ps = Command::new("ps").args(["-eo", "pid,args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines().any(|l| l.contains(&*d) || l.contains("sleep 4343") || l.contains("sleep 4242")),
        "processes left behind:\n{ps}"
    );
}

// ---------------------------------------------------------------------------------------------
// svc

#[test]
fn starts_enables_then_stops_disables() {
    let sb = sandbox_or_skip!();
    sb.write(UNIT_FILE, &unit_file(84600));
    assert_eq!(sb.prop(UNIT, "ActiveState"), "inactive");
    write_graph(
        &sb,
        "graph: svc\nresources:\n  svc:\n  - name: mgmt-test\n    state: running\n    startup: enabled\n",
    );
    let mut a = agent(&sb, &[]);
    wait_prop(&sb, &mut a, UNIT, "ActiveState", "active");
    wait_prop(&sb, &mut a, UNIT, "UnitFileState", "enabled");
    assert!(fs::symlink_metadata(sb.path(WANTS_LINK)).is_ok(), "no {WANTS_LINK}");
    a.wait_log("svc[mgmt-test]: start (was inactive)");
    a.wait_log("svc[mgmt-test]: enable (was disabled)");
    assert_eq!(sb.systemctl(&["is-active", "mgmt-test"]), "active");
    assert_eq!(sb.systemctl(&["is-enabled", "mgmt-test"]), "enabled");

    // The same resource, now stopped and disabled (a live graph swap).
    write_graph(
        &sb,
        "graph: svc\nresources:\n  svc:\n  - name: mgmt-test\n    state: stopped\n    startup: disabled\n",
    );
    wait_prop(&sb, &mut a, UNIT, "ActiveState", "inactive");
    wait_prop(&sb, &mut a, UNIT, "UnitFileState", "disabled");
    a.wait_log("svc[mgmt-test]: stop (was active)");
    a.wait_log("svc[mgmt-test]: disable (was enabled)");
    assert!(fs::symlink_metadata(sb.path(WANTS_LINK)).is_err(), "{WANTS_LINK} is still there");
    assert_eq!(a.try_exit(), None, "the agent exited:\n{}", a.stderr());
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}

#[test]
fn outside_stop_kill_and_disable_are_repaired() {
    let sb = sandbox_or_skip!();
    sb.write(UNIT_FILE, &unit_file(84600));
    write_graph(
        &sb,
        "graph: svc\nresources:\n  svc:\n  - name: mgmt-test\n    state: running\n    startup: enabled\n",
    );
    let mut a = agent(&sb, &[]);
    wait_prop(&sb, &mut a, UNIT, "UnitFileState", "enabled");
    let pid1 = wait_new_pid(&sb, &mut a, UNIT, 0);

    // systemctl stop: started again.
    let starts = a.count("svc[mgmt-test]: start (was ");
    outside_systemctl(&sb, &["stop", "mgmt-test"]);
    let pid2 = wait_new_pid(&sb, &mut a, UNIT, pid1);
    a.wait_log_count("svc[mgmt-test]: start (was ", starts + 1);

    // The main process killed from outside: the unit fails, and is started again.
    assert!(sb.exec(&["kill", "-9", &pid2.to_string()]).status.success());
    wait_new_pid(&sb, &mut a, UNIT, pid2);
    a.wait_log("svc[mgmt-test]: start (was failed: signal)");

    // systemctl disable: enabled again.
    let enables = a.count("svc[mgmt-test]: enable (was ");
    outside_systemctl(&sb, &["disable", "mgmt-test"]);
    a.wait_log_count("svc[mgmt-test]: enable (was ", enables + 1);
    wait_prop(&sb, &mut a, UNIT, "UnitFileState", "enabled");
    assert_eq!(sb.prop(UNIT, "ActiveState"), "active");
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}

#[test]
fn a_changed_unit_file_reloads_systemd_and_restarts_the_service() {
    let sb = sandbox_or_skip!();
    let graph = |secs: u32| {
        format!(
            "graph: svc\nresources:\n  file:\n{}  svc:\n  - name: mgmt-test\n    state: running\n",
            file_res("unit", UNIT_FILE, &unit_file(secs))
        )
    };
    write_graph(&sb, &graph(84600));
    let mut a = agent(&sb, &[]);
    // The unit file did not exist: the file resource writes it first (autoedge), then the
    // svc loads and starts it.
    let pid1 = wait_new_pid(&sb, &mut a, UNIT, 0);
    assert_eq!(sb.read(UNIT_FILE).as_deref(), Some(unit_file(84600).as_str()));
    assert_eq!(cmdline(&sb, pid1), "/bin/sleep 84600");
    let log = a.stderr();
    let (file_at, svc_at) = (log.find("file[unit]: "), log.find("svc[mgmt-test]: start"));
    assert!(
        file_at.is_some() && svc_at.is_some() && file_at < svc_at,
        "the unit file was not written before the start:\n{log}"
    );

    write_graph(&sb, &graph(84601));
    let pid2 = wait_new_pid(&sb, &mut a, UNIT, pid1);
    a.wait_log("svc[mgmt-test]: restart (unit file changed)");
    a.wait_log("svc[mgmt-test]: reload systemd (unit file changed)");
    assert_eq!(cmdline(&sb, pid2), "/bin/sleep 84601");
    assert!(sb.prop(UNIT, "ExecStart").contains("/bin/sleep 84601"), "{}", sb.prop(UNIT, "ExecStart"));
    assert_eq!(sb.prop(UNIT, "NeedDaemonReload"), "no");
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}

#[test]
fn a_notify_edge_from_a_config_file_restarts_the_service() {
    let sb = sandbox_or_skip!();
    sb.write(UNIT_FILE, &unit_file(84600));
    let graph = |conf: &str| {
        format!(
            "graph: svc\nresources:\n  file:\n{}  svc:\n  - name: mgmt-test\n    state: running\nedges:\n- from: {{kind: file, name: conf}}\n  to: {{kind: svc, name: mgmt-test}}\n  notify: true\n",
            file_res("conf", "/etc/mgmt-test.conf", conf)
        )
    };
    write_graph(&sb, &graph("port = 1\n"));
    let mut a = agent(&sb, &[]);
    wait_new_pid(&sb, &mut a, UNIT, 0);
    wait_unit(&sb, &mut a, UNIT, "the config file", || {
        sb.read("/etc/mgmt-test.conf").as_deref() == Some("port = 1\n")
    });
    // Settled: the main PID stays put for a moment.
    let mut pid1 = main_pid(&sb, UNIT);
    wait_unit(&sb, &mut a, UNIT, "a stable main PID", || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = main_pid(&sb, UNIT);
        let stable = now == pid1 && now != 0;
        pid1 = now;
        stable
    });
    let restarts = a.count("svc[mgmt-test]: restart (refresh)");

    write_graph(&sb, &graph("port = 2\n"));
    wait_new_pid(&sb, &mut a, UNIT, pid1);
    a.wait_log_count("svc[mgmt-test]: restart (refresh)", restarts + 1);
    assert_eq!(sb.read("/etc/mgmt-test.conf").as_deref(), Some("port = 2\n"));

    // Drift in the config file is repaired, and that too is a change: another restart.
    let pid2 = main_pid(&sb, UNIT);
    sb.sh("echo 'port = 9' > /etc/mgmt-test.conf");
    wait_unit(&sb, &mut a, UNIT, "the config file repaired", || {
        sb.read("/etc/mgmt-test.conf").as_deref() == Some("port = 2\n")
    });
    wait_new_pid(&sb, &mut a, UNIT, pid2);
    a.wait_log_count("svc[mgmt-test]: restart (refresh)", restarts + 2);
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}

#[test]
fn a_unit_that_fails_to_start_is_reported_with_systemds_result() {
    let sb = sandbox_or_skip!();
    let unit = "[Unit]\nDescription=Fails at once\n\n[Service]\nExecStart=/bin/false\n";
    write_graph(
        &sb,
        &format!(
            "graph: svc\nresources:\n  file:\n{}  svc:\n  - name: mgmt-bad\n    state: running\n",
            file_res("unit", "/etc/systemd/system/mgmt-bad.service", unit)
        ),
    );
    let mut a = agent(&sb, &[]);
    let reported = |a: &Spawned| {
        a.stderr().lines().any(|l| {
            l.contains("ERROR")
                && l.contains("svc[mgmt-bad]")
                && l.contains("mgmt-bad.service")
                && l.contains("exit-code")
        })
    };
    a.wait_for("an ERROR line naming mgmt-bad.service and its result exit-code", reported);
    wait_prop(&sb, &mut a, "mgmt-bad.service", "ActiveState", "failed");
    assert_eq!(a.try_exit(), None, "the agent exited:\n{}", a.stderr());
}

#[test]
fn the_talks_demo_end_to_end() {
    let sb = sandbox_or_skip!();
    let graph = |secs: u32| {
        format!(
            "graph: mygraph\nresources:\n  file:\n{}  svc:\n  - name: mgmt-test\n    state: running\n    startup: enabled\n",
            file_res("file1", UNIT_FILE, &unit_file(secs))
        )
    };
    write_graph(&sb, &graph(84600));
    let mut a = agent(&sb, &[]);

    // Up: the unit file written, the service active and enabled.
    let pid1 = wait_new_pid(&sb, &mut a, UNIT, 0);
    wait_prop(&sb, &mut a, UNIT, "UnitFileState", "enabled");
    assert_eq!(sb.read(UNIT_FILE).as_deref(), Some(unit_file(84600).as_str()));
    assert_eq!(sb.systemctl(&["is-active", "mgmt-test"]), "active");
    assert_eq!(sb.systemctl(&["is-enabled", "mgmt-test"]), "enabled");
    assert_eq!(cmdline(&sb, pid1), "/bin/sleep 84600");

    // systemctl stop mgmt-test: active again.
    outside_systemctl(&sb, &["stop", "mgmt-test"]);
    let pid2 = wait_new_pid(&sb, &mut a, UNIT, pid1);

    // The unit file's content changed in the graph: reloaded and restarted on the new one.
    write_graph(&sb, &graph(84601));
    let pid3 = wait_new_pid(&sb, &mut a, UNIT, pid2);
    wait_unit(&sb, &mut a, UNIT, "the new ExecStart", || {
        sb.prop(UNIT, "ExecStart").contains("/bin/sleep 84601")
    });
    assert_eq!(cmdline(&sb, pid3), "/bin/sleep 84601");
    assert_eq!(sb.read(UNIT_FILE).as_deref(), Some(unit_file(84601).as_str()));
    assert_eq!(sb.systemctl(&["is-enabled", "mgmt-test"]), "enabled");
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}

#[test]
fn noop_reports_what_it_would_do_and_changes_nothing() {
    let sb = sandbox_or_skip!();
    // mgmt-test: stopped and disabled; mgmt-up: running and enabled.
    sb.write(UNIT_FILE, &unit_file(84600));
    sb.write("/etc/systemd/system/mgmt-up.service", &unit_file(84602));
    sb.sh("systemctl daemon-reload && systemctl enable --now mgmt-up.service");
    let up_pid = main_pid(&sb, "mgmt-up.service");
    assert_ne!(up_pid, 0);
    write_graph(
        &sb,
        "graph: svc\nresources:\n  svc:\n  - name: mgmt-test\n    state: running\n    startup: enabled\n  - name: mgmt-up\n    state: stopped\n    startup: disabled\n",
    );

    let mut a = agent(&sb, &["--noop", "--no-watch"]);
    let status = a.wait_exit();
    let log = a.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    for line in [
        "svc[mgmt-test]: noop: would start",
        "svc[mgmt-test]: noop: would enable",
        "svc[mgmt-up]: noop: would stop",
        "svc[mgmt-up]: noop: would disable",
    ] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    assert_eq!(sb.prop(UNIT, "ActiveState"), "inactive");
    assert_eq!(sb.prop(UNIT, "UnitFileState"), "disabled");
    assert_eq!(sb.prop("mgmt-up.service", "ActiveState"), "active");
    assert_eq!(sb.prop("mgmt-up.service", "UnitFileState"), "enabled");
    assert_eq!(main_pid(&sb, "mgmt-up.service"), up_pid);

    // In watch mode too (one svc): what happens outside is reported, never repaired.
    write_graph(
        &sb,
        "graph: svc\nresources:\n  svc:\n  - name: mgmt-test\n    state: running\n    startup: enabled\n",
    );
    let mut a = agent(&sb, &["--noop"]);
    a.wait_log("svc[mgmt-test]: noop: would enable");
    a.wait_log("svc[mgmt-test]: noop: would start");
    let before = a.count("svc[mgmt-test]: noop: would start");
    assert!(sb.exec(&["systemctl", "start", "mgmt-test"]).status.success());
    wait_new_pid(&sb, &mut a, UNIT, 0);
    assert!(sb.exec(&["systemctl", "stop", "mgmt-test"]).status.success());
    a.wait_log_count("svc[mgmt-test]: noop: would start", before + 1);
    assert_eq!(sb.prop(UNIT, "ActiveState"), "inactive");
    assert_eq!(sb.prop(UNIT, "UnitFileState"), "disabled");
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}

#[test]
fn two_services_in_one_graph_are_both_managed_and_watched() {
    let sb = sandbox_or_skip!();
    sb.write("/etc/systemd/system/mgmt-one.service", &unit_file(84611));
    sb.write("/etc/systemd/system/mgmt-two.service", &unit_file(84612));
    write_graph(
        &sb,
        "graph: svc\nresources:\n  svc:\n  - name: mgmt-one\n    state: running\n  - name: mgmt-two\n    state: running\n",
    );
    let mut a = agent(&sb, &[]);
    let one = wait_new_pid(&sb, &mut a, "mgmt-one.service", 0);
    let two = wait_new_pid(&sb, &mut a, "mgmt-two.service", 0);
    outside_systemctl(&sb, &["stop", "mgmt-one", "mgmt-two"]);
    wait_new_pid(&sb, &mut a, "mgmt-one.service", one);
    wait_new_pid(&sb, &mut a, "mgmt-two.service", two);
    assert_eq!(a.count("ERROR"), 0, "errors logged:\n{}", a.stderr());
}

// ---------------------------------------------------------------------------------------------
// Without systemd (on the host, no sandbox).

#[test]
fn without_systemd_on_the_bus_svc_fails_and_the_rest_of_the_graph_runs() {
    let t = TestDir::new();
    let out = t.path("out/created");
    let yaml = t.write_yaml(
        "g.yaml",
        &format!(
            "graph: nosystemd\nresources:\n  file:\n  - name: f\n    path: {}\n    content: \"hello\\n\"\n  svc:\n  - name: mgmt-test\n    state: running\n    startup: enabled\n",
            out.display()
        ),
    );
    let mut cmd = Command::new(MGMT);
    cmd.args(["run", "--tmp-prefix", "yaml"])
        .arg(&yaml)
        .env("TMPDIR", t.path("tmp"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .env_remove("MGMT_LOG");
    let mut a = Spawned::new(cmd, &t.path("tmp"), "mgmt (no systemd)");
    a.wait_for("an ERROR for svc[mgmt-test] saying there is no systemd", |a| {
        a.stderr()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("svc[mgmt-test]") && l.contains("no systemd"))
    });
    a.wait_for("the file resource's file", |_| fs::read_to_string(&out).ok().as_deref() == Some("hello\n"));
    // The rest of the graph keeps running: drift is still repaired.
    fs::remove_file(&out).unwrap();
    a.wait_for("the file resource's file, again", |_| {
        fs::read_to_string(&out).ok().as_deref() == Some("hello\n")
    });
    assert_eq!(a.try_exit(), None, "the agent exited:\n{}", a.stderr());
    let errors: Vec<_> = a.stderr().lines().filter(|l| l.contains("ERROR")).map(String::from).collect();
    assert!(errors.iter().all(|l| l.contains("svc[mgmt-test]")), "errors for other resources: {errors:#?}");
}
