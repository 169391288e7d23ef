//! Resource kinds. Every kind implements [`Resource`] the same way: its params are a plain
//! serde struct (so frontends and the world can decode it), `validate` is a pure function of
//! those params, and all I/O happens in `watch` and `check_apply`.

/// The registry: every kind this build knows, once, as `kind => module::Type`. Adding a kind
/// is its file (`module.rs`) plus one line here. A kind whose name is not an identifier (it
/// has a `:`, as upstream's `ssh:authorized_key`) is written `ident = "name" => ...`: the
/// identifier names it in Rust, the text in graphs. The list reaches other layers through
/// [`with_kinds!`](crate::with_kinds), which hands it to a macro of theirs (the YAML frontend
/// builds its typed per-kind lists from it); [`kind_name!`](crate::kind_name) gives a line's
/// name.
#[macro_export]
macro_rules! with_kinds {
    ($callback:ident) => {
        $callback! {
            cron => cron::Cron,
            exec => exec::Exec,
            exit => exit::Exit,
            file => file::File,
            group => group::Group,
            gzip => gzip::Gzip,
            hostname => hostname::Hostname,
            kv => kv::Kv,
            line => line::Line,
            mount => mount::Mount,
            msg => msg::Msg,
            noop => noop::Noop,
            pkg => pkg::Pkg,
            print => print::Print,
            ssh_authorized_key = "ssh:authorized_key" => ssh_authorized_key::SshAuthorizedKey,
            svc => svc::Svc,
            sysctl => sysctl::Sysctl,
            tar => tar::Tar,
            test => test::Test,
            timer => timer::Timer,
            user => user::User,
            value => value::ValueRes,
        }
    };
}

/// A registry line's kind name, as graphs write it: its text when it has one, else its
/// identifier.
#[macro_export]
macro_rules! kind_name {
    ($kind:ident) => {
        stringify!($kind)
    };
    ($kind:ident = $name:literal) => {
        $name
    };
}

/// Declares each kind's module and the tables generated from the registry.
macro_rules! declare_kinds {
    ($($kind:ident $(= $name:literal)? => $module:ident :: $ty:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every kind this build knows, for error messages and docs.
        pub const KINDS: &[&str] = &[$($crate::kind_name!($kind $(= $name)?)),*];

        /// Decode a kind's params from JSON (world exports). Frontends decode their own syntax.
        pub fn from_json(kind: &str, value: serde_json::Value) -> Result<Box<dyn Resource>, String> {
            match kind {
                $($crate::kind_name!($kind $(= $name)?) => decode_json::<$module::$ty>(value),)*
                other => Err(upstream::explain_unknown_kind(
                    format!("unknown resource kind `{other}` (known: {})", KINDS.join(", ")),
                    other,
                )),
            }
        }
    };
}

with_kinds!(declare_kinds);

pub mod upstream;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::contract::{Meta, ResId, ValidationError, Value};
use crate::os::FsWatcher;
use crate::world::World;

/// What `check_apply` found or did: one entry per change. Empty means the real state
/// already matched the desired state.
pub type Changes = Vec<Change>;

/// One change `check_apply` made (or, without `apply`, would make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What changes, in one human-readable line: `replace content (3 -> 12 bytes)`.
    pub line: String,
    /// More about it, over several lines; logged after the line in noop mode and at debug
    /// level otherwise, and never for a resource with `meta.sensitive`.
    pub detail: Option<Detail>,
}

/// The lines that explain a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// A bounded unified diff of a file's content, or one line saying why there is none
    /// (binary, too large, sensitive).
    Diff(String),
    /// The bounded tails of a command's stdout and stderr.
    Output(String),
}

impl Change {
    pub fn new(line: impl Into<String>) -> Self {
        Change { line: line.into(), detail: None }
    }
    pub fn with(mut self, detail: Option<Detail>) -> Self {
        self.detail = detail;
        self
    }
}

impl From<String> for Change {
    fn from(line: String) -> Self {
        Change::new(line)
    }
}

impl From<&str> for Change {
    fn from(line: &str) -> Self {
        Change::new(line)
    }
}

/// Values a resource sends after applying (exec's stdout, ...), for send/recv edges, by
/// field name.
pub type Sends = BTreeMap<String, Value>;

/// Why a vertex is being checked; lets resources without state of their own decide whether
/// to act (exec re-runs on refresh, a timer reports a tick as a change).
#[derive(Debug, Clone, Copy, Default)]
pub struct Trigger {
    /// First check since this vertex started.
    pub first: bool,
    /// The resource's own watch reported a change since the last check.
    pub event: bool,
    /// An upstream vertex on a `notify` edge changed something.
    pub refresh: bool,
    /// The last check of this vertex failed (retries used up): whatever woke it, try again.
    pub failed: bool,
}

impl Trigger {
    /// Why the check ran, in a few words, for the record of recent changes.
    pub fn why(&self) -> &'static str {
        // A first check also carries the event its watch reports when it starts.
        if self.failed {
            "retry after a failure"
        } else if self.first {
            "first check of this resource"
        } else if self.refresh {
            "refresh: a dependency changed"
        } else if self.event {
            "drift: its watch saw a change"
        } else {
            "checked again"
        }
    }
}

/// Context handed to `check_apply`.
pub struct ApplyCtx {
    pub trigger: Trigger,
    /// Whether changes should carry their [`Detail`] (a content diff): set when it will be
    /// logged (noop mode, or debug logging), so that real runs do not pay for diffs nobody
    /// reads.
    pub detail: bool,
    /// Values received over send/recv edges, by receiving field name.
    pub recv: Sends,
    pub(crate) sends: std::sync::Mutex<Option<Sends>>,
    /// What agents share (for kinds that live in the cluster, like `kv`).
    pub world: Arc<dyn World>,
    /// What this agent offers its resources: its state directory, ending the run.
    pub local: Local,
}

impl ApplyCtx {
    pub fn new(trigger: Trigger, recv: Sends, world: Arc<dyn World>) -> Self {
        ApplyCtx { trigger, detail: false, recv, sends: Default::default(), world, local: Local::default() }
    }
    /// Publish values for downstream send/recv edges.
    pub fn send(&self, values: Sends) {
        *self.sends.lock().unwrap() = Some(values);
    }
    pub fn take_sends(&self) -> Option<Sends> {
        self.sends.lock().unwrap().take()
    }
}

/// What the agent running a resource offers it, beside the world: where to keep state
/// between runs, and a way to end the run (the `exit` kind). Cheap to clone: every check
/// gets one.
#[derive(Clone, Default)]
pub struct Local {
    /// Where resources keep state between runs (the agent's prefix), if anywhere.
    pub state_dir: Option<Arc<Path>>,
    exit: Arc<tokio::sync::watch::Sender<Option<u8>>>,
}

impl Local {
    /// Resources' state kept below `state_dir`.
    pub fn new(state_dir: Option<PathBuf>) -> Local {
        Local { state_dir: state_dir.map(Arc::from), exit: Default::default() }
    }
    /// Ask the agent to end the run with `code`. The first request is the one kept.
    pub fn request_exit(&self, code: u8) {
        self.exit.send_if_modified(|asked| {
            let first = asked.is_none();
            if first {
                *asked = Some(code);
            }
            first
        });
    }
    /// The exit code asked for, once a resource asks: the agent ends with it.
    pub fn exit_requests(&self) -> tokio::sync::watch::Receiver<Option<u8>> {
        self.exit.subscribe()
    }
}

/// Context handed to `watch`: how to report a change, and shared OS watchers.
#[derive(Clone)]
pub struct WatchCtx {
    pub(crate) waker: Arc<dyn Fn() + Send + Sync>,
    pub fs: Arc<FsWatcher>,
    pub world: Arc<dyn World>,
}

impl WatchCtx {
    pub fn new(waker: Arc<dyn Fn() + Send + Sync>, fs: Arc<FsWatcher>, world: Arc<dyn World>) -> Self {
        WatchCtx { waker, fs, world }
    }
    /// Report that the real state may have changed: the engine re-checks this vertex.
    pub fn event(&self) {
        (self.waker)()
    }

    /// Report the first event (check now), then wait until the engine cancels the watch:
    /// the end of every watch once its subscriptions are in place, and the whole watch of a
    /// kind with nothing to watch.
    pub async fn first_event_then_wait(&self) -> ResResult<()> {
        self.event();
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Paths a resource manages or needs; the graph builder derives autoedges from them.
#[derive(Debug, Default, Clone)]
pub struct AutoEdgeInfo {
    /// Paths this resource manages (a directory ends with `/`).
    pub provides: Vec<PathBuf>,
    /// Paths whose managing resource must be applied before this one (nearest wins).
    pub requires: Vec<PathBuf>,
}

/// Things other than paths that resources manage, by name (`group:wheel`, `gid:10`); the
/// graph builder orders a resource after, or before, the resource that provides a name it
/// names. Absent names add no edge.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NamedEdges {
    /// Names this resource manages.
    pub provides: Vec<String>,
    /// Names whose managing resource must be applied before this one.
    pub after: Vec<String>,
    /// Names whose managing resource must be applied after this one (a user removed before
    /// its group).
    pub before: Vec<String>,
}

/// A managed path without its trailing `/`, so that a file and a directory at one path are
/// seen to conflict.
pub fn managed_key(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    PathBuf::from(if s.len() > 1 { s.trim_end_matches('/') } else { &s })
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{0}")]
    Msg(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A command failed; `output` is the (bounded) tail of what it printed. The engine logs
    /// `message` and keeps `output` apart: it is published with the error, but logged only
    /// at debug level.
    #[error("{message}: {output}")]
    Output { message: String, output: String },
}

impl ResourceError {
    pub fn msg(m: impl Into<String>) -> Self {
        ResourceError::Msg(m.into())
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ResourceError::Io { context: context.into(), source }
    }
    /// The error without any command output (what is logged).
    pub fn summary(&self) -> String {
        match self {
            ResourceError::Output { message, .. } => message.clone(),
            e => e.to_string(),
        }
    }
    /// The tail of the output of the command that failed, if any.
    pub fn output(&self) -> Option<&str> {
        match self {
            ResourceError::Output { output, .. } => Some(output),
            _ => None,
        }
    }
}

pub type ResResult<T> = Result<T, ResourceError>;

/// The contract every resource kind implements alike.
#[async_trait]
pub trait Resource: Send + Sync + fmt::Debug + 'static {
    fn kind(&self) -> &'static str;
    fn name(&self) -> &str;
    fn meta(&self) -> &Meta;
    fn meta_mut(&mut self) -> &mut Meta;
    fn id(&self) -> ResId {
        ResId::new(self.kind(), self.name())
    }
    /// Reject bad params. Pure: no I/O.
    fn validate(&self) -> Result<(), ValidationError>;
    /// Long-running: watch the real state and call `ctx.event()` on every change. Returns
    /// only on error (or never); the engine cancels it on shutdown or removal.
    async fn watch(&self, ctx: WatchCtx) -> ResResult<()>;
    /// Whether `watch` can observe anything; kinds that cannot are checked once (or polled).
    fn can_watch(&self) -> bool {
        true
    }
    /// Compare real and desired state; with `apply`, make them match. Returns the changes
    /// made (or, without `apply`, the ones that would be made).
    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes>;
    /// Same kind, same params (meta included)? Graph swap keeps a vertex running when true.
    fn cmp(&self, other: &dyn Resource) -> bool;
    fn autoedges(&self) -> AutoEdgeInfo {
        AutoEdgeInfo::default()
    }
    /// Names (not paths) this resource manages or needs, for autoedges.
    fn named_edges(&self) -> NamedEdges {
        NamedEdges::default()
    }
    /// Fields this kind accepts over send/recv edges.
    fn recv_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Fields this kind sends after applying.
    fn send_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether this kind can be undone once it leaves the graph (`meta.reverse`).
    fn reversible(&self) -> bool {
        false
    }
    /// What undoes this resource, from the state it finds now (before it first applies):
    /// a resource of its own, applied once this one has left the graph. `None`: nothing to
    /// undo. I/O; only called for a kind that is [`reversible`](Resource::reversible).
    fn reversal(&self) -> ResResult<Option<Box<dyn Resource>>> {
        Ok(None)
    }
    /// Params as JSON, for export to the world.
    fn to_json(&self) -> serde_json::Value;
    /// Called on every resource collected from a peer, before it is validated: keep only
    /// the params a collector takes from another host, and apply the collect entry's
    /// `pattern` (file: the directory to put it in). An error skips this resource.
    fn collected(&mut self, _pattern: Option<&str>) -> Result<(), ValidationError> {
        Ok(())
    }
    /// Autogrouping (`meta.autogroup`): resources of one kind whose keys are equal, and not
    /// `None`, can be applied together as one vertex (pkgs in one apt transaction). The key
    /// holds every param that must match; `None` (the default) never groups.
    fn group_key(&self) -> Option<String> {
        None
    }
    /// Take `member` (same kind, same `group_key`) into this resource, which then checks and
    /// applies both. `false`: not taken (the default).
    fn absorb(&mut self, _member: &dyn Resource) -> bool {
        false
    }
    /// The ids of the resources grouped into this one, itself left out; empty when it is
    /// not a group.
    fn grouped(&self) -> Vec<ResId> {
        Vec::new()
    }
    fn set_name(&mut self, name: String);
    fn boxed_clone(&self) -> Box<dyn Resource>;
    fn as_any(&self) -> &dyn Any;
}

/// Implements the boilerplate trait methods for a kind struct with `name` and `meta` fields.
#[macro_export]
macro_rules! resource_common {
    ($kind:literal) => {
        fn kind(&self) -> &'static str {
            $kind
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn meta(&self) -> &$crate::contract::Meta {
            &self.meta
        }
        fn meta_mut(&mut self) -> &mut $crate::contract::Meta {
            &mut self.meta
        }
        fn cmp(&self, other: &dyn $crate::resources::Resource) -> bool {
            other.as_any().downcast_ref::<Self>().is_some_and(|o| o == self)
        }
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
        fn set_name(&mut self, name: String) {
            self.name = name;
        }
        fn boxed_clone(&self) -> Box<dyn $crate::resources::Resource> {
            Box::new(self.clone())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    };
}

/// Every check of a resource's params: its meta params, the meta params its kind must
/// support (`reverse`), then its own params.
pub fn validate_resource(r: &dyn Resource) -> Result<(), ValidationError> {
    r.meta().validate()?;
    if r.meta().reverse && !r.reversible() {
        return Err(ValidationError::new(
            "meta.reverse",
            format!("`{}` cannot be undone by this agent (only `file` can); leave it unset", r.kind()),
        ));
    }
    r.validate()
}

fn decode_json<T: Resource + for<'a> Deserialize<'a>>(
    v: serde_json::Value,
) -> Result<Box<dyn Resource>, String> {
    serde_json::from_value::<T>(v).map(|r| Box::new(r) as Box<dyn Resource>).map_err(|e| e.to_string())
}
