//! The deploy history and storage against a real etcd: damaged blobs are stored again,
//! retention frees etcd's space, a full etcd is reported as such, a deploy that is published
//! says so whatever fails after, a broken `deploy/latest` is repaired, and `list` and
//! `rollback` take any text in the history.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::etcd::Etcd;
use crate::common::repo::{
    commit, deploy_yaml, deployed, latest, new_repo, new_repo_deployed, record, run_deploy, text,
};
use crate::common::{Agent, TestDir, git};
use mgmt::deploy::bundle::sha256_hex;
use mgmt::deploy::store::DeployRecord;

#[test]
fn a_damaged_blob_is_stored_again_by_the_next_deploy() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let (repo, out) = new_repo_deployed(&t, &e);
    let good = fs::read_to_string(repo.join("graph.yaml")).unwrap();
    let blob = format!("/_mgmt/storage/sha256/{}/", sha256_hex(good.as_bytes()));
    let bundle = record(&e, "/_mgmt", 1).bundle;
    let same_size = "x".repeat(good.len());
    let chunk0 = format!("{blob}0");
    let damages: [(&str, &[&[&str]]); 5] = [
        ("other bytes of the same size", &[&["put", &chunk0, &same_size]]),
        // Deleted and created again: written once, as the intact ones were.
        ("other bytes, put after a delete", &[&["del", &chunk0], &["put", &chunk0, &same_size]]),
        ("a chunk too many", &[&["put", &format!("{blob}1"), "junk"]]),
        ("a chunk key that is no chunk", &[&["put", &format!("{blob}01"), "junk"]]),
        ("a damaged manifest", &[&["put", &format!("/_mgmt/storage/sha256/{bundle}/0"), "{}"]]),
    ];
    for (what, cmds) in damages {
        for cmd in cmds {
            e.etcdctl(cmd);
        }
        let o = run_deploy(&e, &repo, &["--force", "yaml", "graph.yaml"]);
        let id = deployed(&o);
        assert!(
            text(&o.stderr).contains("1 stored blob did not match its sha256 and was stored again"),
            "{what}: {}",
            text(&o.stderr)
        );
        assert_eq!(e.get_prefix(&blob), vec![(format!("{blob}0"), good.clone())], "{what}");
        // The bundle verifies again: `show` checks every blob against the manifest.
        let show = run_deploy(&e, &repo, &["show", &id.to_string()]);
        assert!(show.status.success(), "{what}: {}", text(&show.stderr));
    }
    // An intact blob is not counted as stored again, and an agent runs the healed deploy.
    let o = run_deploy(&e, &repo, &["--force", "yaml", "graph.yaml"]);
    deployed(&o);
    assert!(!text(&o.stderr).contains("stored again"), "{}", text(&o.stderr));
    let a = Agent::spawn(&t, &["run", "--seeds", e.url(), "--hostname", "h1", "--tmp-prefix", "empty"]);
    a.wait_content(&out.join("app.conf"), "one\n");
}

/// A file of `mib` MiB that differs for each `seed` (so each deploy stores a new blob).
fn big(seed: u64, mib: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn commit_big(repo: &Path, out: &Path, n: u64) {
    fs::write(repo.join("data.bin"), big(n, 3)).unwrap();
    commit(repo, out, &format!("v{n}"));
}

/// A blob bigger than the client's 4 MiB reply limit, already stored, is checked chunk by
/// chunk when the next deploy uses it again.
#[test]
fn a_stored_blob_over_four_mib_is_checked_and_reused_by_the_next_deploy() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    fs::write(repo.join("data.bin"), big(7, 5)).unwrap();
    commit(&repo, &out, "one");
    assert_eq!(deploy_yaml(&e, &repo), 1);
    commit(&repo, &out, "two");
    let o = run_deploy(&e, &repo, &["yaml", "graph.yaml"]);
    assert_eq!(deployed(&o), 2, "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("1 already stored"), "{}", text(&o.stderr));
}

#[test]
fn retention_compacts_etcd_so_deploys_fit_in_its_quota() {
    let t = TestDir::new();
    // 24 MiB holds seven deploys of 3 MiB, with room for etcd's own timing in reusing
    // freed pages; without compaction the space of pruned ones is never used again, and
    // twelve deploys do not fit.
    let e = Etcd::start_with(&t, &["--quota-backend-bytes=25165824"]);
    let repo = new_repo(&t);
    let out = t.path("out");
    for n in 1..=12 {
        commit_big(&repo, &out, n);
        let o = run_deploy(&e, &repo, &["--keep", "2", "yaml", "graph.yaml"]);
        assert_eq!(deployed(&o), n, "{}", text(&o.stderr));
    }
    // The history before the last prune is compacted away.
    let old = e.ctl(&["get", "--rev", "2", "/_mgmt/deploy/1"]);
    assert!(!old.status.success() && text(&old.stderr).contains("compacted"), "{old:?}");
    let ids: Vec<u64> =
        e.keys("/_mgmt/deploy/").iter().filter_map(|k| k.rsplit('/').next()?.parse().ok()).collect();
    assert_eq!(ids, vec![11, 12]);
}

#[test]
fn a_full_etcd_is_reported_as_full_with_what_to_do() {
    let t = TestDir::new();
    let e = Etcd::start_with(&t, &["--quota-backend-bytes=8388608"]);
    let repo = new_repo(&t);
    let out = t.path("out");
    for n in 1..=6 {
        commit_big(&repo, &out, n);
        let o = run_deploy(&e, &repo, &["yaml", "graph.yaml"]);
        if o.status.success() {
            continue;
        }
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("etcd is out of space"), "{err}");
        assert!(err.contains("database space exceeded"), "{err}");
        assert!(err.contains("etcdctl defrag") && err.contains("etcdctl alarm disarm"), "{err}");
        assert!(!text(&o.stdout).contains("deploy "), "nothing is published: {}", text(&o.stdout));
        return;
    }
    panic!("six deploys of 3 MiB fit in 8 MiB");
}

/// A pipe whose buffer is full: whoever writes to it blocks until the read end is read.
fn full_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    let (r, mut w) = std::io::pipe().unwrap();
    // SAFETY: F_GETPIPE_SZ only reads the pipe's capacity.
    let cap = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
    assert!(cap > 0, "F_GETPIPE_SZ");
    w.write_all(&vec![b'.'; cap as usize]).unwrap();
    (r, w)
}

#[test]
fn a_published_deploy_prints_its_id_and_later_failures_are_warnings_with_exit_3() {
    let t = TestDir::new();
    let mut e = Etcd::start(&t);
    let repo = new_repo(&t);
    commit(&repo, &t.path("out"), "one");
    assert_eq!(deploy_yaml(&e, &repo), 1);
    commit(&repo, &t.path("out"), "two");
    // The command's stderr is a full pipe: its first line there (the summary, written after
    // the ID) waits until etcd is gone, so the retention after publishing (two records,
    // one kept) meets a dead etcd.
    let (mut err_r, err_w) = full_pipe();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mgmt"))
        .args(["deploy", "--seeds", e.url(), "yaml", "graph.yaml", "--keep", "1"])
        .current_dir(&repo)
        .env_remove("MGMT_LOG")
        .stdout(Stdio::piped())
        .stderr(err_w)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l == "deploy 2") {
        let left = deadline.saturating_duration_since(Instant::now());
        said.push(
            rx.recv_timeout(left).unwrap_or_else(|_| panic!("no `deploy 2` line; stdout so far: {said:?}")),
        );
    }
    e.kill();
    let drain = std::thread::spawn(move || {
        let mut all = Vec::new();
        err_r.read_to_end(&mut all).unwrap();
        text(&all).trim_start_matches('.').to_string()
    });
    let status = child.wait().unwrap();
    let stderr = drain.join().unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("as deploy 2"), "{stderr}");
    assert!(
        stderr.contains("mgmt: warning: deploy 2 is published, but pruning old deploys (--keep) failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("mgmt: error"), "{stderr}");
    // It is published indeed.
    e.restart();
    assert_eq!(latest(&e, "/_mgmt"), "2");
}

#[test]
fn a_broken_latest_is_repaired_by_the_next_deploy_or_rollback() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "one");
    commit(&repo, &out, "two");
    // (how latest is broken, what the warning says, the record the next one follows)
    let cases: [(&str, &str, u64); 8] = [
        ("deleted", "is missing although deploy/2 exists", 2),
        ("garbage", "holds \"garbage\", not a deploy id", 2),
        ("-5", "holds \"-5\", not a deploy id", 2),
        ("1e3", "holds \"1e3\", not a deploy id", 2),
        ("99999", "names deploy 99999, which does not exist", 2),
        ("1", "names deploy 1 but deploy/2 exists", 2),
        ("record 2 is garbage", "names deploy 2, which is not a valid record", 1),
        ("record 2 says it is 7", "names deploy 2, which is not a valid record", 1),
    ];
    for (n, (how, warning, follows)) in cases.iter().enumerate() {
        for repair in ["deploy", "rollback"] {
            let ns = format!("/case{n}{repair}");
            let with_ns = |args: &[&str]| {
                let mut all = vec!["--etcd-namespace", ns.as_str()];
                all.extend_from_slice(args);
                run_deploy(&e, &repo, &all)
            };
            assert_eq!(deployed(&with_ns(&["--commit", "HEAD~1", "yaml", "graph.yaml"])), 1);
            assert_eq!(deployed(&with_ns(&["yaml", "graph.yaml"])), 2);
            let latest_key = format!("{ns}/deploy/latest");
            match *how {
                "deleted" => drop(e.etcdctl(&["del", &latest_key])),
                "record 2 is garbage" => drop(e.etcdctl(&["put", &format!("{ns}/deploy/2"), "garbage"])),
                "record 2 says it is 7" => {
                    let mut r = record(&e, &ns, 2);
                    r.id = 7;
                    e.etcdctl(&["put", &format!("{ns}/deploy/2"), &serde_json::to_string(&r).unwrap()]);
                }
                value => drop(e.etcdctl(&["put", "--", &latest_key, value])),
            }
            // The live commit again: not "nothing new", since latest needs repairing.
            let o = if repair == "deploy" {
                with_ns(&["yaml", "graph.yaml"])
            } else {
                with_ns(&["rollback", "1"])
            };
            assert_eq!(deployed(&o), 3, "{how} / {repair}: {}", text(&o.stderr));
            let said = text(&o.stderr);
            let want = format!(
                "mgmt: warning: {latest_key} {warning}; continuing from deploy {follows}, the newest intact record; it now names deploy 3"
            );
            assert!(said.contains(&want), "{how} / {repair}: want {want}\n{said}");
            assert_eq!(latest(&e, &ns), "3", "{how} / {repair}");
            let r3 = record(&e, &ns, 3);
            assert_eq!(r3.parent, Some(record(&e, &ns, *follows).hash()), "{how} / {repair}");
            // Repaired: the next deploy is an ordinary one.
            let o = with_ns(&["yaml", "graph.yaml"]);
            assert!(!text(&o.stderr).contains("warning"), "{how} / {repair}: {}", text(&o.stderr));
        }
    }
}

#[test]
fn list_cuts_non_ascii_text_on_character_boundaries() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let long = format!("a{}", "é".repeat(30));
    let rec = DeployRecord {
        id: 1,
        commit: Some(long.clone()),
        bundle: "é".repeat(64),
        frontend: "yaml".into(),
        entry: "g.yaml".into(),
        parent: None,
        author: Some("Zoë\u{1b}[2J".into()),
        time: 0,
        message: Some("line\nbreak \u{1b}[31mred ünïcödé".into()),
        rollback_of: None,
        ..Default::default()
    };
    e.etcdctl(&["put", "/_mgmt/deploy/1", &serde_json::to_string(&rec).unwrap()]);
    e.etcdctl(&["put", "/_mgmt/deploy/latest", "1"]);
    let o = run_deploy(&e, Path::new("/"), &["list"]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let line = stdout.lines().nth(1).unwrap();
    let want_commit: String = long.chars().take(12).collect();
    assert!(line.contains(&format!(" {want_commit} ")), "{line}");
    assert!(line.contains(&format!(" {} ", "é".repeat(12))), "{line}");
    assert!(line.ends_with("line\\nbreak \\u{1b}[31mred ünïcödé"), "{line}");
    // What a writer of etcd chose reaches no terminal as control characters.
    assert!(line.contains("Zoë\\u{1b}[2J"), "{line}");
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert_eq!(
        stdout.lines().nth(2),
        Some(&*format!("  ! deploy 1 names bundle `{}`, which is not a sha256", "é".repeat(64)))
    );
}

#[test]
fn rollback_refuses_an_empty_target_and_a_prefix_of_several_commits() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    let mut first = commit(&repo, &out, "one");
    // Digits name deploys, so the shared prefix is a letter.
    while first.as_bytes()[0].is_ascii_digit() {
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "again"]);
        first = git(&repo, &["rev-parse", "HEAD"]);
    }
    deploy_yaml(&e, &repo);
    // A second commit whose hash starts like the first one's.
    let mut second = commit(&repo, &out, "two");
    while second[..1] != first[..1] {
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "again"]);
        second = git(&repo, &["rev-parse", "HEAD"]);
    }
    deploy_yaml(&e, &repo);
    for empty in ["", " "] {
        let o = run_deploy(&e, &repo, &["rollback", empty]);
        assert_eq!(o.status.code(), Some(1), "{empty:?}: {}", text(&o.stdout));
        assert!(text(&o.stderr).contains("rollback needs a deploy ID, a commit"), "{}", text(&o.stderr));
    }
    let o = run_deploy(&e, &repo, &["rollback", &first[..1]]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("`{}` matches 2 commits", &first[..1])), "{err}");
    assert!(
        err.contains(&format!("{first} (deploy 1)")) && err.contains(&format!("{second} (deploy 2)")),
        "{err}"
    );
    assert_eq!(latest(&e, "/_mgmt"), "2", "nothing was rolled back");
    // A prefix of one commit still works.
    assert_eq!(deployed(&run_deploy(&e, &repo, &["rollback", &first[..12]])), 3);
}

#[test]
fn the_push_hook_tells_a_published_deploy_with_failed_later_steps_from_a_failure() {
    let t = TestDir::new();
    let bare = t.path("app.git");
    fs::create_dir(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/post-receive"), bare.join("hooks/post-receive"))
        .unwrap();
    // A stand-in for mgmt that publishes and then fails to prune.
    let fake = t.path("fake-mgmt");
    fs::write(
        &fake,
        "#!/bin/sh\necho 'deploy 7'\necho 'mgmt: warning: deploy 7 is published, but pruning old deploys (--keep) failed: gone' >&2\nexit 3\n",
    )
    .unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    git(&bare, &["config", "mgmt.seeds", "http://127.0.0.1:9"]);
    git(&bare, &["config", "mgmt.binary", fake.to_str().unwrap()]);
    git(t.root(), &["clone", "-q", bare.to_str().unwrap(), "work"]);
    let work = t.path("work");
    commit(&work, &t.path("out"), "pushed");
    let push = Command::new("git").args(["push", "origin", "HEAD:main"]).current_dir(&work).output().unwrap();
    let said = text(&push.stderr);
    assert!(push.status.success(), "{said}");
    assert!(said.contains("remote: mgmt: deploy 7"), "{said}");
    assert!(said.contains("remote: mgmt: deployed, but a step after publishing failed"), "{said}");
    assert!(!said.contains("the deploy failed"), "{said}");
    // A deploy whose publishing could not be confirmed says so too.
    fs::write(
        &fake,
        "#!/bin/sh\necho 'mgmt: error: cannot tell whether deploy 8 was published' >&2\nexit 4\n",
    )
    .unwrap();
    commit(&work, &t.path("out"), "again");
    let push = Command::new("git").args(["push", "origin", "HEAD:main"]).current_dir(&work).output().unwrap();
    let said = text(&push.stderr);
    assert!(push.status.success(), "{said}");
    assert!(
        said.contains("remote: mgmt: etcd failed while the deploy was published: it may or may not be"),
        "{said}"
    );
    assert!(!said.contains("the deploy failed"), "{said}");
}

/// When etcd fails during the append transaction itself, `mgmt deploy` reads the record
/// back before it says anything: here etcd refuses the transaction, the record is not
/// stored, and it says that nothing was published.
#[test]
fn a_failed_append_is_read_back_before_saying_nothing_was_published() {
    let t = TestDir::new();
    // The append is the only transaction of more than one operation.
    let e = Etcd::start_with(&t, &["--max-txn-ops=1"]);
    let repo = new_repo(&t);
    commit(&repo, &t.path("out"), "one");
    let o = run_deploy(&e, &repo, &["yaml", "graph.yaml"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing was published: etcd refused to append deploy 1: "), "{err}");
    // etcd answered: it rejected the transaction, it is not unreachable.
    assert!(err.contains(": etcd at http://") && err.contains(" rejected the request: "), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
    assert!(err.contains("too many operations in txn request"), "{err}");
    assert!(!text(&o.stdout).contains("deploy "), "{}", text(&o.stdout));
    assert!(e.keys("/_mgmt/deploy/").is_empty(), "{:?}", e.keys("/_mgmt/deploy/"));
}

/// `list` shows every `deploy/<id>` key: a value that is not a valid record is a line of
/// its own saying so, and a record whose parent is not the previous record's hash is
/// marked; `--json` gives each entry's `key` and `problem`.
#[test]
fn list_reports_invalid_records_and_a_broken_chain() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let repo = new_repo(&t);
    let out = t.path("out");
    commit(&repo, &out, "one");
    assert_eq!(deploy_yaml(&e, &repo), 1);
    commit(&repo, &out, "two");
    assert_eq!(deploy_yaml(&e, &repo), 2);
    e.etcdctl(&["put", "/_mgmt/deploy/3", "{not json"]);
    let mut forged = record(&e, "/_mgmt", 2);
    forged.id = 4;
    forged.parent = Some("f".repeat(64));
    e.etcdctl(&["put", "/_mgmt/deploy/4", &serde_json::to_string(&forged).unwrap()]);
    e.etcdctl(&["put", "/_mgmt/deploy/latest", "4"]);

    let o = run_deploy(&e, &repo, &["list"]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(lines[1].starts_with("1 ") && lines[2].starts_with("2 "), "{stdout}");
    assert!(lines[3].starts_with("deploy/3: not a valid record ("), "{stdout}");
    assert!(lines[4].starts_with("4 "), "{stdout}");
    assert!(
        lines[5].starts_with(&format!("  ! deploy 4's parent is {}, but deploy 3's", "f".repeat(64))),
        "{stdout}"
    );

    let o = run_deploy(&e, &repo, &["list", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems: Vec<(u64, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["key"].as_u64().unwrap(), l["problem"].is_string()))
        .collect();
    assert_eq!(problems, vec![(1, false), (2, false), (3, true), (4, true)], "{v}");
    assert_eq!(v[1]["bundle"], record(&e, "/_mgmt", 2).bundle, "{v}");
    assert!(v[2].get("bundle").is_none(), "{v}");
}
