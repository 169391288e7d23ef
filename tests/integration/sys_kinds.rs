//! `msg`, `cron`, `mount` and `sysctl` against the real thing, each inside its own systemd
//! sandbox (`common/systemd.rs`): its journal, its systemd, its mount namespace and its
//! network namespace's kernel parameters. Nothing here changes the host. Without root (or
//! where namespaces are refused) each test prints a loud `SKIPPED` line and returns.

use crate::common::systemd::{DEADLINE, Sandbox, Spawned, eventually};

/// Where the graph file lives inside the sandbox.
const GRAPH: &str = "/root/mgmt-sys-test/g.yaml";

macro_rules! sandbox_or_skip {
    () => {
        match Sandbox::start() {
            Some(sb) => sb,
            None => return,
        }
    };
}

/// A run's stderr (the agent's log).
fn log(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One pass over `yaml`; panics unless it exits 0. Its log.
#[track_caller]
fn once_ok(sb: &Sandbox, yaml: &str, flags: &[&str]) -> String {
    let out = sb.mgmt_once(GRAPH, yaml, flags);
    assert!(out.status.success(), "mgmt run failed ({}):\n{}", out.status, log(&out));
    log(&out)
}

/// One pass over `yaml` that must be refused with `needle` in its message.
#[track_caller]
fn refused(sb: &Sandbox, yaml: &str, needle: &str) {
    let out = sb.mgmt_once(GRAPH, yaml, &[]);
    assert!(!out.status.success(), "an invalid graph was accepted:\n{}", log(&out));
    assert!(log(&out).contains(needle), "no `{needle}` in:\n{}", log(&out));
}

/// Wait until `cond` holds; panic with the agent's log otherwise.
#[track_caller]
fn wait(agent: &Spawned, what: &str, cond: impl FnMut() -> bool) {
    if !eventually(cond, DEADLINE) {
        panic!("timed out after {DEADLINE:?} waiting for: {what}\n--- agent:\n{}", agent.stderr());
    }
}

// ---------------------------------------------------------------------------------------------
// msg

/// The sandbox journal's entries from mgmt, as JSON objects.
fn journal_entries(sb: &Sandbox) -> Vec<serde_json::Value> {
    let out = sb.exec(&["journalctl", "--no-pager", "-o", "json", "SYSLOG_IDENTIFIER=mgmt"]);
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn entries_with(sb: &Sandbox, body: &str) -> Vec<serde_json::Value> {
    journal_entries(sb).into_iter().filter(|e| e["MESSAGE"] == body).collect()
}

fn msg_graph(body: &str, file_content: &str) -> String {
    format!(
        "graph: msg\nresources:\n  msg:\n  - name: hello\n    body: \"{body}\"\n    priority: Warning\n    journal: true\n    fields:\n      role: db\n      SITE: lab\n  - name: old-school\n    body: \"{body} via syslog\"\n    syslog: true\n  file:\n  - name: other\n    path: /root/mgmt-sys-test/other\n    content: \"{file_content}\"\n    state: exists\n"
    )
}

#[test]
fn msg_goes_to_the_journal_once_per_change_with_fields_and_priority() {
    let sb = sandbox_or_skip!();
    let mut a = sb.mgmt_agent(GRAPH, &msg_graph("first words", "a"), &[]);
    a.wait_log("msg[hello]: log \"first words\"");
    wait(&a, "the message in the journal", || entries_with(&sb, "first words").len() == 1);
    let e = &entries_with(&sb, "first words")[0];
    assert_eq!(e["PRIORITY"], "4", "{e}");
    assert_eq!(e["ROLE"], "db", "{e}");
    assert_eq!(e["SITE"], "lab", "{e}");
    wait(&a, "the syslog message in the journal", || entries_with(&sb, "first words via syslog").len() == 1);
    assert_eq!(entries_with(&sb, "first words via syslog")[0]["PRIORITY"], "5");

    // Another resource changes: the messages are not sent again.
    sb.write(GRAPH, &msg_graph("first words", "b"));
    wait(&a, "the other file rewritten", || sb.read("/root/mgmt-sys-test/other").as_deref() == Some("b"));
    a.wait_log("file[other]: ");
    assert_eq!(entries_with(&sb, "first words").len(), 1, "sent again without a change:\n{}", a.stderr());
    assert_eq!(a.count("msg[hello]: log"), 1, "{}", a.stderr());

    // Its body changes: sent once more.
    sb.write(GRAPH, &msg_graph("second words", "b"));
    wait(&a, "the new message in the journal", || entries_with(&sb, "second words").len() == 1);
    assert_eq!(entries_with(&sb, "first words").len(), 1);
}

#[test]
fn msg_in_noop_mode_sends_nothing_and_bad_params_are_refused() {
    let sb = sandbox_or_skip!();
    let out = once_ok(&sb, &msg_graph("quiet please", "a"), &["--noop"]);
    assert!(out.contains("msg[hello]: noop: would log \"quiet please\""), "{out}");
    // A message sent afterwards marks the journal as flushed up to here.
    once_ok(
        &sb,
        "graph: m\nresources:\n  msg:\n  - name: marker\n    body: marker\n    journal: true\n",
        &[],
    );
    assert!(eventually(|| entries_with(&sb, "marker").len() == 1, DEADLINE), "no marker in the journal");
    assert!(entries_with(&sb, "quiet please").is_empty(), "noop mode sent a message");
    assert!(entries_with(&sb, "quiet please via syslog").is_empty(), "noop mode sent a message");

    refused(
        &sb,
        "graph: m\nresources:\n  msg:\n  - name: m\n    body: x\n    priority: Loud\n",
        "`Loud` is not one of",
    );
    refused(
        &sb,
        "graph: m\nresources:\n  msg:\n  - name: m\n    body: x\n    fields:\n      _PID: \"1\"\n",
        "must not begin with `_`",
    );
}

#[test]
fn msg_is_sent_again_on_each_refresh() {
    let sb = sandbox_or_skip!();
    let yaml = "graph: m\nresources:\n  timer:\n  - name: tick\n    interval: 1\n  msg:\n  - name: ticked\n    body: tick seen\n    journal: true\nedges:\n- name: e\n  from: {kind: timer, name: tick}\n  to: {kind: msg, name: ticked}\n  notify: true\n";
    let a = sb.mgmt_agent(GRAPH, yaml, &[]);
    wait(&a, "a message per tick", || entries_with(&sb, "tick seen").len() >= 3);
}

#[test]
fn msg_with_several_lines_reaches_the_journal_whole() {
    let sb = sandbox_or_skip!();
    let yaml = "graph: m\nresources:\n  msg:\n  - name: lines\n    body: \"line one\\nline two\"\n    journal: true\n    fields:\n      detail: \"a\\nb\"\n";
    once_ok(&sb, yaml, &[]);
    assert!(
        eventually(|| entries_with(&sb, "line one\nline two").len() == 1, DEADLINE),
        "not in the journal: {:?}",
        journal_entries(&sb)
    );
    assert_eq!(entries_with(&sb, "line one\nline two")[0]["DETAIL"], "a\nb");
}

// ---------------------------------------------------------------------------------------------
// sysctl (only per-network-namespace keys: the sandbox has its own network namespace)

/// Make the sandbox's `/proc/sys/net` writable (its own network namespace's parameters).
fn writable_proc_sys_net(sb: &Sandbox) {
    sb.sh("mount -o bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net");
}

/// A kernel parameter as a process in the sandbox reads it.
fn param(sb: &Sandbox, path: &str) -> String {
    sb.sh(&format!("cat {path}")).trim().to_string()
}

const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const ACCEPT_LOCAL: &str = "/proc/sys/net/ipv4/conf/lo/accept_local";
const FORWARD_CONF: &str = "/etc/sysctl.d/99-net.ipv4.ip_forward.conf";

fn sysctl_graph(forward: &str, poll: u32) -> String {
    format!(
        "graph: sysctl\nresources:\n  sysctl:\n  - name: net.ipv4.ip_forward\n    value: \"{forward}\"\n  - name: net.ipv4.conf.lo.accept_local\n    value: \"1\"\n    persist: false\n    meta:\n      poll: {poll}\n"
    )
}

#[test]
fn sysctl_sets_persists_converges_and_refuses_bad_names() {
    let sb = sandbox_or_skip!();
    writable_proc_sys_net(&sb);
    assert_eq!(param(&sb, FORWARD), "0");

    // Noop first: nothing changes.
    let out = once_ok(&sb, &sysctl_graph("1", 0), &["--noop"]);
    assert!(
        out.contains("sysctl[net.ipv4.ip_forward]: noop: would set net.ipv4.ip_forward to 1 (was 0)"),
        "{out}"
    );
    assert_eq!(param(&sb, FORWARD), "0");
    assert_eq!(sb.read(FORWARD_CONF), None);

    let out = once_ok(&sb, &sysctl_graph("1", 0), &[]);
    assert!(out.contains("sysctl[net.ipv4.ip_forward]: set net.ipv4.ip_forward to 1 (was 0)"), "{out}");
    assert_eq!(param(&sb, FORWARD), "1");
    assert_eq!(param(&sb, ACCEPT_LOCAL), "1");
    assert_eq!(sb.read(FORWARD_CONF).as_deref(), Some("net.ipv4.ip_forward = 1\n"));
    assert_eq!(
        sb.read("/etc/sysctl.d/99-net.ipv4.conf.lo.accept_local.conf"),
        None,
        "persist: false wrote a file"
    );

    // Converged: a second pass changes nothing.
    let out = once_ok(&sb, &sysctl_graph("1", 0), &[]);
    assert!(!out.contains("sysctl["), "a converged pass changed something:\n{out}");

    refused(
        &sb,
        "graph: s\nresources:\n  sysctl:\n  - name: net/ipv4/ip_forward\n    value: \"1\"\n",
        "use the dotted form",
    );
    refused(
        &sb,
        "graph: s\nresources:\n  sysctl:\n  - name: net..ipv4\n    value: \"1\"\n",
        "empty component",
    );
}

#[test]
fn sysctl_drift_is_repaired_from_inotify_and_from_meta_poll() {
    let sb = sandbox_or_skip!();
    writable_proc_sys_net(&sb);
    let a = sb.mgmt_agent(GRAPH, &sysctl_graph("1", 1), &[]);
    wait(&a, "ip_forward set", || param(&sb, FORWARD) == "1");
    wait(&a, "the persisted file", || sb.read(FORWARD_CONF).as_deref() == Some("net.ipv4.ip_forward = 1\n"));

    // The persisted file edited from outside: inotify wakes the resource.
    sb.sh(&format!("echo 'net.ipv4.ip_forward = 0' > {FORWARD_CONF}"));
    wait(&a, "the persisted file repaired", || {
        sb.read(FORWARD_CONF).as_deref() == Some("net.ipv4.ip_forward = 1\n")
    });

    // A run-time value sends no event; `meta.poll` repairs it.
    wait(&a, "accept_local set", || param(&sb, ACCEPT_LOCAL) == "1");
    sb.sh(&format!("echo 0 > {ACCEPT_LOCAL}"));
    wait(&a, "accept_local repaired by the poll", || param(&sb, ACCEPT_LOCAL) == "1");
}

// ---------------------------------------------------------------------------------------------
// mount

const POINT: &str = "/mnt/mgmt-test";

fn mount_graph(state: &str) -> String {
    format!(
        "graph: mount\nresources:\n  file:\n  - name: point\n    path: {POINT}/\n    state: exists\n  mount:\n  - name: {POINT}\n    state: {state}\n    device: tmpfs\n    type: tmpfs\n    options:\n      size: 1m\n      noexec: \"\"\n      nosuid: \"\"\n"
    )
}

/// `findmnt`'s view of the mount point inside: `FSTYPE SOURCE OPTIONS`, or empty.
fn findmnt(sb: &Sandbox) -> String {
    let out = sb.exec(&["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", POINT]);
    String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
}

fn fstab_lines(sb: &Sandbox) -> Vec<String> {
    sb.read("/etc/fstab")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(POINT))
        .map(str::to_string)
        .collect()
}

const LINE: &str = "tmpfs /mnt/mgmt-test tmpfs noexec,nosuid,size=1m 0 0";

#[test]
fn mount_mounts_writes_fstab_converges_and_unmounts() {
    let sb = sandbox_or_skip!();
    let fstab_before = sb.read("/etc/fstab").unwrap_or_default();

    let out = once_ok(&sb, &mount_graph("exists"), &["--noop"]);
    assert!(out.contains("mount[/mnt/mgmt-test]: noop: would mount tmpfs tmpfs at /mnt/mgmt-test"), "{out}");
    assert_eq!(findmnt(&sb), "");
    assert!(fstab_lines(&sb).is_empty());

    let out = once_ok(&sb, &mount_graph("exists"), &[]);
    let m = findmnt(&sb);
    assert!(m.starts_with("tmpfs tmpfs "), "{m}\n{out}");
    assert!(m.contains("noexec") && m.contains("nosuid") && m.contains("size=1024k"), "{m}");
    assert_eq!(fstab_lines(&sb), vec![LINE.to_string()]);
    let fstab = sb.read("/etc/fstab").unwrap();
    assert!(fstab.starts_with(&fstab_before), "other lines of fstab changed:\n{fstab}");

    let out = once_ok(&sb, &mount_graph("exists"), &[]);
    assert!(!out.contains("mount["), "a converged pass changed something:\n{out}");

    let out = once_ok(&sb, &mount_graph("absent"), &[]);
    assert!(out.contains("mount[/mnt/mgmt-test]: unmount /mnt/mgmt-test"), "{out}");
    assert_eq!(findmnt(&sb), "");
    assert!(fstab_lines(&sb).is_empty());
    assert_eq!(sb.read("/etc/fstab").unwrap_or_default(), fstab_before);

    refused(
        &sb,
        "graph: m\nresources:\n  mount:\n  - name: mnt/x\n    state: exists\n",
        "must be an absolute path",
    );
    refused(
        &sb,
        "graph: m\nresources:\n  mount:\n  - name: /mnt/x\n    device: tmpfs\n    type: tmpfs\n",
        "must be `exists` or `absent`",
    );
}

#[test]
fn mount_drift_is_repaired_by_a_watching_agent() {
    let sb = sandbox_or_skip!();
    let a = sb.mgmt_agent(GRAPH, &mount_graph("exists"), &[]);
    wait(&a, "mounted", || findmnt(&sb).starts_with("tmpfs tmpfs "));
    wait(&a, "the fstab line", || fstab_lines(&sb) == vec![LINE.to_string()]);

    // Unmounted from outside: the kernel's mount-table notification wakes the resource.
    sb.sh(&format!("umount {POINT}"));
    wait(&a, "mounted again", || findmnt(&sb).starts_with("tmpfs tmpfs "));

    // Remounted with other flags from outside.
    sb.sh(&format!("mount -o remount,exec {POINT}"));
    wait(&a, "noexec again", || findmnt(&sb).contains("noexec"));

    // Its fstab line removed from outside: inotify on /etc/fstab.
    sb.sh(&format!("sed -i '\\#{POINT}#d' /etc/fstab"));
    wait(&a, "the fstab line back", || fstab_lines(&sb) == vec![LINE.to_string()]);
}

// ---------------------------------------------------------------------------------------------
// cron

const TIMER: &str = "mgmt-tick.timer";
const TIMER_FILE: &str = "/etc/systemd/system/mgmt-tick.timer";
const STAMP: &str = "/root/mgmt-sys-test/ticks";

fn cron_graph(state: &str) -> String {
    format!(
        "graph: cron\nresources:\n  file:\n  - name: service\n    path: /etc/systemd/system/mgmt-tick.service\n    content: |\n      [Service]\n      Type=oneshot\n      ExecStart=/bin/sh -c 'date >> {STAMP}'\n    state: exists\n  cron:\n  - name: mgmt-tick\n    state: {state}\n    trigger: OnCalendar\n    time: \"*:*:0/2\"\n    accuracysec: 1ms\n    persistent: true\n    description: ticks for the tests\n"
    )
}

#[test]
fn cron_makes_an_active_timer_that_fires_its_service() {
    let sb = sandbox_or_skip!();
    sb.sh("mkdir -p /root/mgmt-sys-test");

    let out = once_ok(&sb, &cron_graph("exists"), &["--noop"]);
    assert!(out.contains("cron[mgmt-tick]: noop: would create /etc/systemd/system/mgmt-tick.timer"), "{out}");
    assert_eq!(sb.read(TIMER_FILE), None);

    let out = once_ok(&sb, &cron_graph("exists"), &[]);
    assert!(out.contains("cron[mgmt-tick]: start mgmt-tick.timer"), "{out}");
    assert_eq!(sb.prop(TIMER, "ActiveState"), "active", "{out}");
    assert_eq!(sb.prop(TIMER, "UnitFileState"), "enabled");
    assert!(
        sb.prop(TIMER, "TimersCalendar").contains("OnCalendar=*-*-* *:*:00/2"),
        "{}",
        sb.prop(TIMER, "TimersCalendar")
    );
    assert_eq!(sb.prop(TIMER, "AccuracyUSec"), "1ms");
    assert_eq!(sb.prop(TIMER, "Persistent"), "yes");
    assert_eq!(sb.prop(TIMER, "Description"), "ticks for the tests");
    assert_eq!(sb.prop(TIMER, "Unit"), "mgmt-tick.service");
    assert!(
        eventually(|| sb.read(STAMP).is_some(), DEADLINE),
        "the timer never fired its service:\n{}",
        sb.journal("mgmt-tick.service")
    );

    let out = once_ok(&sb, &cron_graph("exists"), &[]);
    assert!(!out.contains("cron["), "a converged pass changed something:\n{out}");

    let out = once_ok(&sb, &cron_graph("absent"), &[]);
    assert!(out.contains("cron[mgmt-tick]: stop mgmt-tick.timer"), "{out}");
    assert_eq!(sb.read(TIMER_FILE), None);
    assert_ne!(sb.prop(TIMER, "ActiveState"), "active");
    assert_eq!(sb.prop(TIMER, "UnitFileState"), "");
    let out = once_ok(&sb, &cron_graph("absent"), &[]);
    assert!(!out.contains("cron["), "a converged absent pass changed something:\n{out}");

    refused(
        &sb,
        "graph: c\nresources:\n  cron:\n  - name: c\n    trigger: Hourly\n    time: \"1\"\n",
        "`Hourly` is not one of",
    );
}

#[test]
fn cron_drift_is_repaired_by_a_watching_agent() {
    let sb = sandbox_or_skip!();
    sb.sh("mkdir -p /root/mgmt-sys-test");
    let a = sb.mgmt_agent(GRAPH, &cron_graph("exists"), &[]);
    wait(&a, "the timer active and enabled", || {
        sb.prop(TIMER, "ActiveState") == "active" && sb.prop(TIMER, "UnitFileState") == "enabled"
    });

    sb.systemctl(&["stop", TIMER]);
    wait(&a, "the timer started again", || sb.prop(TIMER, "ActiveState") == "active");

    sb.systemctl(&["disable", TIMER]);
    wait(&a, "the timer enabled again", || sb.prop(TIMER, "UnitFileState") == "enabled");

    sb.sh(&format!("sed -i s/Persistent=true/Persistent=false/ {TIMER_FILE}"));
    wait(&a, "the unit file repaired", || sb.read(TIMER_FILE).is_some_and(|t| t.contains("Persistent=true")));
    wait(&a, "the timer reloaded", || {
        sb.prop(TIMER, "Persistent") == "yes" && sb.prop(TIMER, "NeedDaemonReload") == "no"
    });
}

/// The root user's systemd and session bus in the sandbox, as `systemctl --user` finds them.
const USER_ENV: [&str; 2] =
    ["XDG_RUNTIME_DIR=/run/user/0", "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus"];

#[test]
fn cron_with_session_makes_a_user_timer() {
    let sb = sandbox_or_skip!();
    sb.sh("mkdir -p /root/mgmt-sys-test && systemctl start user@0.service");
    let yaml = format!(
        "graph: cron\nresources:\n  file:\n  - name: service\n    path: /root/.config/systemd/user/mgmt-user-tick.service\n    content: |\n      [Service]\n      Type=oneshot\n      ExecStart=/bin/sh -c 'date >> {STAMP}'\n    state: exists\n  cron:\n  - name: mgmt-user-tick\n    session: true\n    trigger: OnCalendar\n    time: \"*:*:0/2\"\n    accuracysec: 1ms\nedges:\n- name: service-first\n  from: {{kind: file, name: service}}\n  to: {{kind: cron, name: mgmt-user-tick}}\n"
    );
    sb.write(GRAPH, &yaml);
    let mut argv = vec!["env"];
    argv.extend_from_slice(&USER_ENV);
    argv.extend_from_slice(&[env!("CARGO_BIN_EXE_mgmt"), "run", "--tmp-prefix", "--no-watch", "yaml", GRAPH]);
    let out = sb.exec(&argv);
    assert!(out.status.success(), "{}", log(&out));
    assert!(sb.read("/root/.config/systemd/user/mgmt-user-tick.timer").is_some(), "{}", log(&out));
    assert_eq!(sb.read("/etc/systemd/system/mgmt-user-tick.timer"), None);
    let user_prop = |prop: &str| {
        let script = format!(
            "{} {} systemctl --user show -p {prop} --value mgmt-user-tick.timer",
            USER_ENV[0], USER_ENV[1]
        );
        sb.sh(&script).trim().to_string()
    };
    assert_eq!(user_prop("ActiveState"), "active", "{}", log(&out));
    assert_eq!(user_prop("UnitFileState"), "enabled");
    assert!(eventually(|| sb.read(STAMP).is_some(), DEADLINE), "the user timer never fired its service");
    let again = sb.exec(&argv);
    assert!(again.status.success() && !log(&again).contains("cron["), "not converged:\n{}", log(&again));
}
