//! The agent in-process: a world that records what it is told, real files in a temporary
//! directory, events handed to [`Agent::handle`] one by one. No test stops an agent's
//! engine: a stopping engine refuses file writes in the whole process, so the runtime's end
//! stops the vertices instead.

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::*;
use crate::deploy::bundle::Manifest;
use crate::deploy::follow::LastRun;
use crate::deploy::store::DeployRecord;
use crate::engine::SwapPlan;
use crate::frontend::{FrontendError, yaml};
use crate::world::local::LocalWorld;
use crate::world::{HostStatus, KvValue, WorldError};

/// A standalone world that keeps every export and status it is given.
struct Recorder {
    local: LocalWorld,
    exports: Mutex<Vec<Vec<Exported>>>,
    reports: Mutex<Vec<HostStatus>>,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            local: LocalWorld::new("h1"),
            exports: Mutex::default(),
            reports: Mutex::default(),
        })
    }

    fn exports(&self) -> Vec<Vec<Exported>> {
        self.exports.lock().unwrap().clone()
    }

    fn last_report(&self) -> HostStatus {
        self.reports.lock().unwrap().last().cloned().expect("a status was reported")
    }
}

#[async_trait]
impl World for Recorder {
    fn hostname(&self) -> &str {
        self.local.hostname()
    }
    async fn export(&self, resources: Vec<Exported>) -> Result<(), crate::world::WorldError> {
        self.exports.lock().unwrap().push(resources);
        Ok(())
    }
    fn collected(&self) -> watch::Receiver<Vec<Exported>> {
        self.local.collected()
    }
    fn report(&self, status: HostStatus) {
        self.reports.lock().unwrap().push(status);
    }
    async fn kv_get(&self, key: &str) -> Result<Option<KvValue>, WorldError> {
        self.local.kv_get(key).await
    }
    async fn kv_put(&self, key: &str, value: &str) -> Result<(), WorldError> {
        self.local.kv_put(key, value).await
    }
    async fn kv_delete(&self, key: &str) -> Result<(), WorldError> {
        self.local.kv_delete(key).await
    }
    fn kv_changes(&self) -> broadcast::Receiver<String> {
        self.local.kv_changes()
    }
}

fn config(prefix: &Path) -> AgentConfig {
    AgentConfig {
        hostname: "h1".into(),
        prefix: prefix.to_path_buf(),
        noop: false,
        no_watch: false,
        converged_timeout: None,
        ending: Ending { detailed: false },
        report_status: true,
        follow: None,
        started: 0,
    }
}

/// A graph of one file resource `name` at `dir/out` with `content`.
fn graph_text(dir: &Path, name: &str, content: &str) -> String {
    format!(
        "graph: g\nresources:\n  file:\n  - name: \"{name}\"\n    path: {}\n    content: \"{content}\\n\"\n",
        dir.join("out").display()
    )
}

fn version(text: &str) -> SpecVersion {
    SpecVersion { spec: yaml::parse(text, "g.yaml").unwrap(), text: text.to_string() }
}

fn first(text: &str) -> FirstGraph {
    let v = version(text);
    FirstGraph { spec: v.spec, text: v.text, source: "g.yaml".into() }
}

async fn start(cfg: AgentConfig, world: Arc<Recorder>, text: &str) -> Agent {
    Agent::plan(cfg, world, first(text)).unwrap().start(FsWatcher::new().unwrap()).await.unwrap()
}

/// Wait, at most 15 s, until `path` holds `content`.
async fn wait_content(path: &Path, content: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::read_to_string(path).ok().as_deref() != Some(content) {
        assert!(Instant::now() < deadline, "{} never held {content:?}", path.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_new_spec_swaps_the_graph() {
    let t = tempfile::tempdir().unwrap();
    let world = Recorder::new();
    let mut agent = start(config(t.path()), world.clone(), &graph_text(t.path(), "f", "v1")).await;
    let out = t.path().join("out");
    wait_content(&out, "v1\n").await;

    let v2 = graph_text(t.path(), "f", "v2");
    assert_eq!(agent.handle(Event::Spec(Ok(version(&v2)))).await.unwrap(), None);
    wait_content(&out, "v2\n").await;
    assert_eq!(agent.text, v2);
    assert_eq!(world.last_report().source, "g.yaml");
}

#[tokio::test]
async fn a_bad_spec_keeps_the_running_graph() {
    let t = tempfile::tempdir().unwrap();
    let v1 = graph_text(t.path(), "f", "v1");
    let mut agent = start(config(t.path()), Recorder::new(), &v1).await;
    let out = t.path().join("out");
    wait_content(&out, "v1\n").await;

    // A version that does not parse.
    let invalid = FrontendError {
        file: "g.yaml".into(),
        line: 1,
        column: 1,
        resource: None,
        field: None,
        message: "nope".into(),
    };
    agent.handle(Event::Spec(Err(SpecError::Invalid(invalid)))).await.unwrap();
    assert!(agent.file_bad);
    agent.file_bad = false;
    // A program with errors.
    let program = crate::frontend::source::ProgramError {
        first: "main.mcl:1:1: parse error: nope".into(),
        count: 1,
        rendered: "error: parse error: nope\n".into(),
    };
    agent.handle(Event::Spec(Err(SpecError::Program(program)))).await.unwrap();
    assert!(agent.file_bad);
    assert_eq!(agent.text, v1);
    // A version that parses and does not assemble (a cycle).
    let cyclic = format!(
        "{v1}  noop:\n  - name: a\n  - name: b\nedges:\n- from: {{kind: noop, name: a}}\n  to: {{kind: noop, name: b}}\n\
         - from: {{kind: noop, name: b}}\n  to: {{kind: noop, name: a}}\n"
    );
    agent.handle(Event::Spec(Ok(version(&cyclic)))).await.unwrap();
    assert_eq!(agent.text, v1);
    assert_eq!(agent.engine.graph().vertices.len(), 1);
    // Still running: drift is repaired with the old content.
    std::fs::write(&out, "drift\n").unwrap();
    wait_content(&out, "v1\n").await;
    // The running graph's text again: the error is over, nothing is swapped.
    agent.handle(Event::Spec(Ok(version(&v1)))).await.unwrap();
    assert!(!agent.file_bad);
}

#[tokio::test]
async fn exports_are_not_published_in_noop() {
    let t = tempfile::tempdir().unwrap();
    let exporting = graph_text(t.path(), "@@f", "v1");
    for noop in [true, false] {
        let world = Recorder::new();
        let mut agent = start(AgentConfig { noop, ..config(t.path()) }, world.clone(), &exporting).await;
        let v2 = graph_text(t.path(), "@@f", "v2");
        agent.handle(Event::Spec(Ok(version(&v2)))).await.unwrap();
        let exports = world.exports();
        if noop {
            assert!(exports.is_empty(), "{exports:?}");
        } else {
            assert_eq!(exports.len(), 2, "{exports:?}");
            assert_eq!(exports[1][0].name, "f");
            assert!(exports[1][0].params.to_string().contains("v2"), "{exports:?}");
        }
    }
}

#[tokio::test]
async fn a_deploy_runs_like_an_edit_and_a_refusal_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let world = Recorder::new();
    let cfg = AgentConfig { follow: None, ..config(t.path()) };
    let mut agent = Agent::plan(cfg, world.clone(), FirstGraph::empty())
        .unwrap()
        .start(FsWatcher::new().unwrap())
        .await
        .unwrap();
    assert_eq!(world.last_report().source, "no deploy yet");

    let record =
        DeployRecord { id: 5, bundle: "b".into(), frontend: "yaml".into(), ..DeployRecord::default() };
    let manifest = Manifest { frontend: "yaml".into(), entry: "g.yaml".into(), files: Vec::new() };
    let ran = LastRun { record: record.clone(), record_sha256: "s".into(), manifest };
    let spec = version(&graph_text(t.path(), "f", "v5")).spec;
    let ready = DeployEvent::Ready {
        record: Box::new(record),
        spec: Box::new(spec),
        dir: t.path().to_path_buf(),
        ran: Box::new(ran),
    };
    agent.handle(Event::Deploy(ready)).await.unwrap();
    wait_content(&t.path().join("out"), "v5\n").await;
    let s = world.last_report();
    assert_eq!((s.source.as_str(), s.deploy, s.deploy_error), ("deploy 5", Some(5), None));

    let refused = DeployEvent::Refused { id: 6, error: "bad hash".into() };
    agent.handle(Event::Deploy(refused)).await.unwrap();
    let s = world.last_report();
    assert_eq!((s.deploy, s.refused_deploy), (Some(5), Some(6)));
    assert_eq!(s.deploy_error.as_deref(), Some("deploy 6: bad hash"));
    assert_eq!(agent.spec.name, "g");
}

#[tokio::test]
async fn a_signal_ends_the_agent_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let mut agent = start(config(t.path()), Recorder::new(), &graph_text(t.path(), "f", "v1")).await;
    assert_eq!(agent.handle(Event::Signal(Stop::Terminate)).await.unwrap(), Some(0));
}

#[tokio::test]
async fn no_watch_ends_after_one_pass() {
    let t = tempfile::tempdir().unwrap();
    let cfg = AgentConfig { no_watch: true, ..config(t.path()) };
    let mut agent = start(cfg, Recorder::new(), &graph_text(t.path(), "f", "v1")).await;
    let code = agent.until_end(&mut Sources { signals: None, specs: None }).await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_to_string(t.path().join("out")).unwrap(), "v1\n");
}

#[test]
fn an_invalid_first_graph_starts_nothing() {
    let t = tempfile::tempdir().unwrap();
    let cyclic = "graph: g\nresources:\n  noop:\n  - name: a\n  - name: b\nedges:\n\
                  - from: {kind: noop, name: a}\n  to: {kind: noop, name: b}\n\
                  - from: {kind: noop, name: b}\n  to: {kind: noop, name: a}\n";
    let e = Agent::plan(config(t.path()), Recorder::new(), first(cyclic)).err().unwrap();
    assert!(e.to_string().starts_with("g.yaml: the graph has a cycle"), "{e}");
}

#[test]
fn swaps_are_logged_by_where_the_graph_came_from() {
    let plan = SwapPlan { keep: vec![(0, 0)], stop: vec![1], start: vec![1, 2] };
    let file = Change::File(SpecVersion { spec: GraphSpec::default(), text: String::new() });
    assert_eq!(swapped_line(&file, &plan).unwrap(), "graph swapped: 1 kept, 2 started, 1 stopped");
    assert_eq!(
        swapped_line(&Change::Collected, &plan).unwrap(),
        "collected resources changed: 1 kept, 2 started, 1 stopped"
    );
    let unchanged = SwapPlan { keep: vec![(0, 0)], stop: vec![], start: vec![] };
    assert_eq!(swapped_line(&Change::Collected, &unchanged), None);
    let record =
        DeployRecord { id: 7, commit: Some("abc".into()), bundle: "b1".into(), ..DeployRecord::default() };
    let manifest = Manifest { frontend: "yaml".into(), entry: "g.yaml".into(), files: Vec::new() };
    let deploy = Change::Deploy {
        ran: Box::new(LastRun { record: record.clone(), record_sha256: String::new(), manifest }),
        record: Box::new(record),
        spec: Box::default(),
        dir: "/p/deploys/b1".into(),
    };
    assert_eq!(
        swapped_line(&deploy, &plan).unwrap(),
        "running deploy 7 (commit abc, bundle b1, from /p/deploys/b1): 1 kept, 2 started, 1 stopped"
    );
}

#[test]
fn only_flips_failure_counts_and_settles_are_reported() {
    let busy = |busy, bad| Summary { vertices: 3, busy, bad };
    assert!(!worth_reporting(&busy(2, 0), (false, 0)));
    assert!(worth_reporting(&busy(2, 1), (false, 0)));
    assert!(worth_reporting(&busy(1, 0), (true, 0)));
    // Every settle, even one that looks the same.
    assert!(worth_reporting(&busy(0, 0), (true, 0)));
}

#[test]
fn the_converged_deadline_runs_from_the_first_idle_moment() {
    let t = Instant::now();
    assert_eq!(deadline(Some(3), Some(t)), Some(t + Duration::from_secs(3)));
    assert_eq!(deadline(Some(3), None), None);
    assert_eq!(deadline(None, Some(t)), None);
}

#[test]
fn errors_are_shown_with_their_causes() {
    let e = crate::frontend::graph_file::GraphFileError::Io {
        path: "g.yaml".into(),
        error: std::io::Error::other("gone"),
    };
    assert_eq!(with_causes(&SpecError::Read(e)), "reading graph file g.yaml: gone");
}

#[tokio::test]
async fn the_loop_swaps_in_each_edit_of_the_graph_file() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("g.yaml");
    std::fs::write(&path, graph_text(t.path(), "f", "v1")).unwrap();
    let mut file = crate::frontend::yaml_file::YamlFile::new(&path).unwrap();
    let fs = FsWatcher::new().unwrap();
    let watch = file.watch(fs.clone()).await.unwrap();
    let v = file.load().unwrap();
    let first = FirstGraph { spec: v.spec, text: v.text, source: file.name().to_string() };
    let mut agent = Agent::plan(config(t.path()), Recorder::new(), first).unwrap().start(fs).await.unwrap();
    let specs = file.follow(watch);
    let mut sources = Sources { signals: None, specs: Some(specs) };
    let out = t.path().join("out");
    let v2 = graph_text(t.path(), "f", "v2");
    let edit = async {
        wait_content(&out, "v1\n").await;
        std::fs::write(&path, &v2).unwrap();
        wait_content(&out, "v2\n").await;
    };
    tokio::select! {
        _ = edit => {}
        end = agent.until_end(&mut sources) => panic!("the agent ended: {:?}", end.ok()),
    }
    assert_eq!(agent.text, v2);
}
