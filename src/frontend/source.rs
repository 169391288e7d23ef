//! What a frontend hands the agent: a stream of graph versions.
//!
//! A frontend follows its input and yields a new [`SpecVersion`], or why its input could
//! not be loaded ([`SpecError`]), whenever the input changed. An input that is unchanged
//! since it was last yielded is not yielded again, so one bad save is reported once.

use std::future::Future;

use tokio::sync::mpsc;

use super::graph_file::GraphFileError;
use super::{FrontendError, GraphSpec};

/// One version of a graph, as its frontend read it.
#[derive(Debug)]
pub struct SpecVersion {
    pub spec: GraphSpec,
    /// The text it was parsed from: a version with the running graph's text is not swapped
    /// in again.
    pub text: String,
}

/// Why a version of a graph could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The input could not be read: there was nothing to parse.
    #[error(transparent)]
    Read(#[from] GraphFileError),
    /// The input was read, and is not a valid graph.
    #[error(transparent)]
    Invalid(#[from] FrontendError),
    /// The program was read, and does not compile (mcl).
    #[error(transparent)]
    Program(#[from] super::lang_file::ProgramError),
}

/// What a frontend's task sends: each version, or why it could not be loaded.
pub type SpecSender = mpsc::Sender<Result<SpecVersion, SpecError>>;

/// The versions of one graph, yielded by a frontend's task as its input changes. Dropping
/// the source stops the task.
pub struct SpecSource {
    name: String,
    rx: mpsc::Receiver<Result<SpecVersion, SpecError>>,
    task: tokio::task::JoinHandle<()>,
}

impl SpecSource {
    /// A source named `name` (a file, for messages and the host status), fed by the task
    /// `feed` starts. The channel holds one version: a frontend reads at most one ahead.
    pub fn spawn<F>(name: impl Into<String>, feed: impl FnOnce(SpecSender) -> F) -> SpecSource
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(1);
        SpecSource { name: name.into(), rx, task: tokio::spawn(feed(tx)) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next version; `None` once the frontend stopped.
    pub async fn next(&mut self) -> Option<Result<SpecVersion, SpecError>> {
        self.rx.recv().await
    }
}

impl Drop for SpecSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_source_yields_what_its_task_sends_then_ends() {
        let mut s = SpecSource::spawn("g.yaml", |tx| async move {
            let v = SpecVersion {
                spec: GraphSpec { name: "g".into(), ..GraphSpec::default() },
                text: "t".into(),
            };
            let _ = tx.send(Ok(v)).await;
        });
        assert_eq!(s.name(), "g.yaml");
        assert_eq!(s.next().await.unwrap().unwrap().spec.name, "g");
        assert!(s.next().await.is_none());
    }
}
