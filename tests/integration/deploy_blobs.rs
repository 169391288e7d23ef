//! Big repositories against a real etcd: a deploy writes only the blobs etcd lacks, and an
//! agent keeps a verified local cache of blobs, fetching from etcd only what it does not
//! have, never using a cached blob that does not verify, and keeping only what the bundles
//! it keeps unpacked use.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::etcd::{Etcd, base64_decode};
use crate::common::repo::{graph, mgmt};
use crate::common::{self, Agent, TestDir, git};
use mgmt::deploy::bundle::sha256_hex;

const FILES: usize = 20;

fn file_content(i: usize, version: usize) -> String {
    format!("setting {i} = {version}\n")
}

/// A repository with `graph.yaml` (writing `content` into `<out>/app.conf`) and `FILES`
/// files `files/fNN.txt`, committed.
fn tree_repo(t: &TestDir, out: &Path) -> PathBuf {
    let repo = common::repo::new_repo(t);
    fs::create_dir(repo.join("files")).unwrap();
    for i in 0..FILES {
        fs::write(repo.join(format!("files/f{i:02}.txt")), file_content(i, 0)).unwrap();
    }
    fs::write(repo.join("graph.yaml"), graph(out, "one")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "tree"]);
    repo
}

/// Change `files/fNN.txt` to `version` and commit.
fn change(repo: &Path, i: usize, version: usize) {
    fs::write(repo.join(format!("files/f{i:02}.txt")), file_content(i, version)).unwrap();
    git(repo, &["commit", "-q", "-a", "-m", &format!("f{i} v{version}")]);
}

/// `mgmt deploy yaml graph.yaml`, which must publish; its stderr.
#[track_caller]
fn deploy(e: &Etcd, repo: &Path) -> String {
    let out = mgmt(repo, &["deploy", "--seeds", e.url(), "yaml", "graph.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mgmt deploy failed: {stderr}");
    stderr
}

/// Every storage key with the revision that last changed it, and etcd's revision.
fn storage_revisions(e: &Etcd) -> (Vec<(String, i64)>, i64) {
    let text = e.etcdctl(&["get", "--prefix", "-w", "json", "/_mgmt/storage/"]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rev = v["header"]["revision"].as_i64().unwrap();
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    let keys = kvs
        .iter()
        .map(|kv| {
            let key = String::from_utf8(base64_decode(kv["key"].as_str().unwrap())).unwrap();
            (key, kv["mod_revision"].as_i64().unwrap())
        })
        .collect();
    (keys, rev)
}

fn agent_in(t: &TestDir, e: &Etcd, prefix: &Path) -> Agent {
    Agent::spawn(
        t,
        &["run", "--seeds", e.url(), "--hostname", "h1", "--prefix", prefix.to_str().unwrap(), "empty"],
    )
}

/// An agent running the first deploy of a tree repository.
struct Running {
    a: Agent,
    e: Etcd,
    repo: PathBuf,
    prefix: PathBuf,
    t: TestDir,
}

fn running() -> Running {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let out = t.path("out");
    let prefix = t.path("prefix");
    let repo = tree_repo(&t, &out);
    let a = agent_in(&t, &e, &prefix);
    deploy(&e, &repo);
    a.wait_content(&out.join("app.conf"), "one\n");
    Running { a, e, repo, prefix, t }
}

fn cached(prefix: &Path, content: &str) -> PathBuf {
    prefix.join("blobs").join(sha256_hex(content.as_bytes()))
}

#[test]
fn a_deploy_with_one_file_changed_writes_only_that_blob_and_the_manifest() {
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let out = t.path("out");
    let repo = tree_repo(&t, &out);
    let first = deploy(&e, &repo);
    assert!(first.contains(&format!("({} new blobs, 0 already stored)", FILES + 1)), "{first}");
    let (before, rev) = storage_revisions(&e);
    assert_eq!(before.len(), FILES + 2, "every file, the graph and the manifest: {before:?}");

    change(&repo, 7, 1);
    let second = deploy(&e, &repo);
    assert!(second.contains(&format!("(1 new blob, {FILES} already stored)")), "{second}");
    // Not a terminal: no progress line.
    assert!(!second.contains("storing blobs"), "{second}");
    let (after, _) = storage_revisions(&e);
    let mut written: Vec<String> = after.iter().filter(|(_, r)| *r > rev).map(|(k, _)| k.clone()).collect();
    written.sort();
    let bundle = common::repo::mgmt(Path::new("/"), &["deploy", "--seeds", e.url(), "show", "2", "--json"]);
    let show: serde_json::Value = serde_json::from_slice(&bundle.stdout).unwrap();
    let mut want = vec![
        format!("/_mgmt/storage/sha256/{}/0", sha256_hex(file_content(7, 1).as_bytes())),
        format!("/_mgmt/storage/sha256/{}/0", show["record"]["bundle"].as_str().unwrap()),
    ];
    want.sort();
    assert_eq!(written, want, "only the changed file's blob and the new manifest are written");
    assert_eq!(after.len(), FILES + 4);
}

#[test]
fn an_agent_fetches_only_the_blobs_it_does_not_have_and_keeps_them_private() {
    // Bound in this order, they are dropped agent first and the directory last.
    let Running { t: _t, prefix, repo, e, a } = running();
    a.wait_log(&format!("{} blobs fetched from etcd, 0 from the local cache", FILES + 1));
    let blobs = prefix.join("blobs");
    assert_eq!(common::mode(&blobs) & 0o7777, 0o700);
    for i in 0..FILES {
        let p = cached(&prefix, &file_content(i, 0));
        assert_eq!(fs::read_to_string(&p).unwrap(), file_content(i, 0));
        assert_eq!(common::mode(&p) & 0o7777, 0o600);
    }

    change(&repo, 3, 1);
    deploy(&e, &repo);
    a.wait_log(&format!("1 blob fetched from etcd, {FILES} from the local cache"));
    a.wait_log("running deploy 2 (");
    let bundle = history_bundle(&e, 2);
    let unpacked = prefix.join("deploys").join(bundle).join("files/f03.txt");
    assert_eq!(fs::read_to_string(unpacked).unwrap(), file_content(3, 1));
    assert_eq!(fs::read_to_string(cached(&prefix, &file_content(3, 1))).unwrap(), file_content(3, 1));
}

fn history_bundle(e: &Etcd, id: u64) -> String {
    let v = e.get_json(&format!("/_mgmt/deploy/{id}")).unwrap();
    v["bundle"].as_str().unwrap().to_string()
}

#[test]
fn a_damaged_or_linked_cached_blob_is_not_used_and_is_fetched_again() {
    // Bound in this order, they are dropped agent first and the directory last.
    let Running { t, prefix, repo, e, a } = running();

    // Same size, other bytes; and a link to a file with the right bytes, never followed.
    let damaged = cached(&prefix, &file_content(5, 0));
    fs::write(&damaged, file_content(5, 0).replace("5 =", "5 ?")).unwrap();
    let linked = cached(&prefix, &file_content(6, 0));
    let outside = t.path("outside");
    fs::write(&outside, file_content(6, 0)).unwrap();
    fs::remove_file(&linked).unwrap();
    std::os::unix::fs::symlink(&outside, &linked).unwrap();

    change(&repo, 3, 1);
    deploy(&e, &repo);
    a.wait_log("running deploy 2 (");
    a.wait_log("of `files/f05.txt` is damaged (its bytes do not match its sha256); fetching it again");
    a.wait_log("of `files/f06.txt` is damaged (cannot be opened as a file");
    a.wait_log(&format!("3 blobs fetched from etcd, {} from the local cache", FILES - 2));
    let unpacked = prefix.join("deploys").join(history_bundle(&e, 2)).join("files");
    assert_eq!(fs::read_to_string(unpacked.join("f05.txt")).unwrap(), file_content(5, 0));
    assert_eq!(fs::read_to_string(unpacked.join("f06.txt")).unwrap(), file_content(6, 0));
    // Both are cached again, as plain private files.
    assert_eq!(fs::read_to_string(&damaged).unwrap(), file_content(5, 0));
    assert!(fs::symlink_metadata(&linked).unwrap().is_file());
    assert_eq!(fs::metadata(&linked).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(fs::read_to_string(&outside).unwrap(), file_content(6, 0));
}

#[test]
fn the_cache_keeps_only_the_blobs_of_bundles_kept_unpacked() {
    // Bound in this order, they are dropped agent first and the directory last.
    let Running { t: _t, prefix, repo, e, a } = running();
    for version in 1..=5 {
        change(&repo, 9, version);
        deploy(&e, &repo);
        a.wait_log(&format!("running deploy {} (", version + 1));
    }
    // Deploy 1's bundle is no longer unpacked (three are kept, and the one running): its
    // own blob goes, the blobs the kept bundles share stay.
    a.wait_for("the first version of f09 to leave the cache", || {
        !cached(&prefix, &file_content(9, 0)).exists()
    });
    assert!(cached(&prefix, &file_content(9, 5)).exists());
    assert!(cached(&prefix, &file_content(1, 0)).exists());
    // Per bundle kept unpacked (the three most recently used and the one last run): its
    // manifest and its version of f09; shared by all: the graph and the other files.
    let count = |dir: &str| fs::read_dir(prefix.join(dir)).map_or(0, |d| d.count());
    let unpacked =
        fs::read_dir(prefix.join("deploys")).unwrap().flatten().filter(|e| e.path().is_dir()).count();
    assert!((3..=4).contains(&unpacked), "{unpacked} bundles unpacked");
    a.wait_for("the cache to hold the kept bundles' blobs only", || count("blobs") == unpacked * 2 + FILES);
}

#[test]
fn a_cluster_allowing_few_operations_per_transaction_still_publishes_and_runs_a_tree() {
    let t = TestDir::new();
    let e = Etcd::start_with(&t, &["--max-txn-ops=3"]);
    let out = t.path("out");
    let prefix = t.path("prefix");
    let repo = tree_repo(&t, &out);
    let first = deploy(&e, &repo);
    assert!(first.contains(&format!("({} new blobs, 0 already stored)", FILES + 1)), "{first}");
    change(&repo, 2, 1);
    // A storage far bigger than the bundle: the blobs are listed a prefix at a time, in
    // transactions cut to what this cluster allows.
    with_client(&e, async |c| {
        let puts = (0..1200).map(|i| {
            let mut c = c.clone();
            async move { c.put(format!("/_mgmt/storage/sha256/other{i:04}/0"), "x", None).await.map(|_| ()) }
        });
        futures_util::future::try_join_all(puts).await.unwrap();
    });
    let second = deploy(&e, &repo);
    assert!(second.contains(&format!("(1 new blob, {FILES} already stored)")), "{second}");
    let a = agent_in(&t, &e, &prefix);
    a.wait_content(&out.join("app.conf"), "one\n");
    a.wait_log(&format!("{} blobs fetched from etcd, 0 from the local cache", FILES + 1));
    let unpacked = prefix.join("deploys").join(history_bundle(&e, 2)).join("files/f02.txt");
    assert_eq!(fs::read_to_string(unpacked).unwrap(), file_content(2, 1));
}

/// The deploy library against the test's etcd, on a runtime of its own.
fn with_client<T>(e: &Etcd, f: impl AsyncFnOnce(&mut etcd_client::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([e.url()], None).await.unwrap();
        f(&mut c).await
    })
}

fn new_deploy(built: &mgmt::deploy::source::Built) -> mgmt::deploy::store::NewDeploy {
    mgmt::deploy::store::NewDeploy {
        bundle: built.manifest.id(),
        frontend: built.manifest.frontend.clone(),
        entry: built.manifest.entry.clone(),
        commit: built.commit.as_ref().map(|c| c.id.clone()),
        author: None,
        message: None,
        rollback_of: None,
        deployer: None,
        reason: None,
    }
}

/// Retention deletes a blob after a deploy has seen it stored and before its record is
/// appended (as `storage/pruned` then says): the record is not appended, and once the
/// blob is stored again it is, and its bundle is whole.
#[test]
fn a_record_is_not_appended_while_blobs_it_needs_were_pruned_since_they_were_seen() {
    use mgmt::deploy::{blobs, source, store};
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let out = t.path("out");
    let repo = tree_repo(&t, &out);
    deploy(&e, &repo);
    change(&repo, 3, 1);
    let built = source::from_git(&repo, "yaml", "graph.yaml", None).unwrap();
    let keys = store::DeployKeys::new("/_mgmt");
    let shared = sha256_hex(file_content(4, 0).as_bytes());
    with_client(&e, async |c| {
        let up = blobs::store_bundle(c, &keys, &built).await.unwrap();
        assert_eq!((up.written, up.present), (1, FILES));
        // What retention does: delete a blob and mark the deletion, in one transaction.
        let txn = etcd_client::Txn::new().and_then([
            etcd_client::TxnOp::delete(
                keys.blob(&shared),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            ),
            etcd_client::TxnOp::put(keys.pruned(), "test", None),
        ]);
        c.txn(txn).await.unwrap();
        let guard = |blobs_at| store::AppendGuard { force: false, blobs_at: Some(blobs_at), head: None };
        let refused = store::append(c, &keys, new_deploy(&built), guard(up.read_at)).await;
        assert!(refused.is_err_and(|e| matches!(e, store::StoreError::BlobsPruned(_))));
        assert!(store::record_raw(c, &keys, 2).await.unwrap().is_none(), "deploy 2 was appended");
        let (restored, read_at) = blobs::ensure_bundle(c, &keys, &built).await.unwrap();
        assert_eq!(restored, 1);
        store::append(c, &keys, new_deploy(&built), guard(read_at)).await.unwrap();
        let (manifest, _) = blobs::fetch_bundle(c, &keys, &built.manifest.id()).await.unwrap();
        assert_eq!(manifest.id(), built.manifest.id());
    });
    assert_eq!(history_bundle(&e, 2), built.manifest.id());
}

/// A deploy appended after retention decided what to delete, which needs a blob retention
/// meant to delete: retention deletes old records but no blob, and the new deploy runs.
#[test]
fn retention_deletes_no_blob_once_a_deploy_was_appended_after_it_looked() {
    use mgmt::deploy::store;
    let t = TestDir::new();
    let e = Etcd::start(&t);
    let out = t.path("out");
    let repo = tree_repo(&t, &out);
    deploy(&e, &repo);
    change(&repo, 5, 1);
    deploy(&e, &repo);
    let keys = store::DeployKeys::new("/_mgmt");
    let old = sha256_hex(file_content(5, 0).as_bytes());
    let plan = with_client(&e, async |c| store::plan_prune(c, &keys, 1).await.unwrap());
    assert_eq!(plan.records, vec![1]);
    assert!(plan.blobs.contains(&old), "{:?}", plan.blobs);
    // Deploy 3 goes back to the content only deploy 1 had.
    change(&repo, 5, 0);
    deploy(&e, &repo);
    let pruned = with_client(&e, async |c| store::apply_prune(c, &keys, &plan).await.unwrap());
    assert_eq!((pruned.records, pruned.blobs), (1, 0));
    assert!(!e.keys(&keys.blob(&old)).is_empty(), "deploy 3's blob was deleted");
    let prefix = t.path("prefix");
    let a = agent_in(&t, &e, &prefix);
    a.wait_log("running deploy 3 (");
    let unpacked = prefix.join("deploys").join(history_bundle(&e, 3)).join("files/f05.txt");
    assert_eq!(fs::read_to_string(unpacked).unwrap(), file_content(5, 0));
}
