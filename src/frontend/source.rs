//! What a frontend hands the agent: a stream of graph versions.
//!
//! A frontend follows its input and yields a new [`SpecVersion`], or why its input could
//! not be loaded ([`SpecError`]), whenever the input changed. An input that is unchanged
//! since it was last yielded is not yielded again, so one bad save is reported once.

use std::future::Future;

use tokio::sync::mpsc;

use std::path::Path;

use super::graph_file::GraphFileError;
use super::lang::{Diagnostic, SourceMap};
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
    Program(#[from] ProgramError),
}

/// An mcl program that does not compile: every error, rendered as rustc renders them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{first}{}", more(*.count))]
pub struct ProgramError {
    /// The first error on one line: `file:line:col: stage error: message`.
    pub first: String,
    /// How many errors there are.
    pub count: usize,
    /// Every error with its excerpt and caret.
    pub rendered: String,
}

fn more(count: usize) -> String {
    match count {
        0 | 1 => String::new(),
        2 => " (and 1 more error)".to_string(),
        n => format!(" (and {} more errors)", n - 1),
    }
}

impl ProgramError {
    /// The errors of a program, located in `map`. An error about a file that could not be
    /// read, before any was, has no place to show: its message alone.
    pub fn new(diagnostics: &[Diagnostic], map: &SourceMap) -> ProgramError {
        let unplaced = |d: &Diagnostic| map.text(d.span.file).is_empty() && d.span.start == d.span.end;
        let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
        sorted.sort_by_key(|d| (d.span.file, d.span.start));
        let one = |d: &Diagnostic| if unplaced(d) { d.to_string() } else { d.short(map) };
        let rendered = sorted
            .iter()
            .map(|d| if unplaced(d) { format!("error: {d}\n\n") } else { d.render(map) })
            .collect();
        let first = sorted.first().map(|d| one(d)).unwrap_or_else(|| "the program has errors".into());
        ProgramError { first, count: diagnostics.len().max(1), rendered }
    }
}

impl ProgramError {
    /// The error with the files below `root` named relative to it (`main.mcl`, not the
    /// directory a bundle was unpacked in), however the loader named them.
    pub fn relative_to(mut self, root: &Path) -> ProgramError {
        let cwd = std::env::current_dir().unwrap_or_default();
        let mut prefixes = vec![format!("{}/", root.display())];
        if let Ok(rel) = root.strip_prefix(&cwd) {
            prefixes.push(format!("{}/", rel.display()));
        }
        for p in prefixes.iter().filter(|p| p.len() > 1) {
            self.first = self.first.replace(p.as_str(), "");
            self.rendered = self.rendered.replace(p.as_str(), "");
        }
        self
    }
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
    use crate::frontend::lang::{Span, Stage};

    #[test]
    fn a_program_error_says_its_first_error_and_how_many_more() {
        let mut map = SourceMap::new();
        let file = map.add("main.mcl", "$a = \n$b = )\n");
        let d = |start, msg: &str| Diagnostic::new(Stage::Parse, Span::new(file, start, start + 1), msg);
        let e = ProgramError::new(&[d(11, "late"), d(4, "early")], &map);
        assert_eq!(e.to_string(), "main.mcl:1:5: parse error: early (and 1 more error)");
        assert!(
            e.rendered.contains("parse error: early") && e.rendered.contains("main.mcl:2:"),
            "{}",
            e.rendered
        );
        let one = ProgramError::new(&[d(4, "only")], &map);
        assert_eq!(one.to_string(), "main.mcl:1:5: parse error: only");
    }

    #[test]
    fn an_error_without_a_place_is_its_message() {
        let mut map = SourceMap::new();
        let file = map.add("<program>", "");
        let d = Diagnostic::new(Stage::Scope, Span::new(file, 0, 0), "/x/main.mcl: no such file");
        let e = ProgramError::new(&[d], &map);
        assert_eq!(e.to_string(), "scope error: /x/main.mcl: no such file");
        assert_eq!(e.rendered, "error: scope error: /x/main.mcl: no such file\n\n");
    }

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
