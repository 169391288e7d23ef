//! What flows along the function graph: values of expressions, the output of statements
//! (resources and edges), and run-time errors, which flow as values so that `<|>` can catch
//! them wherever they come from.

use std::sync::Arc;

use super::super::span::Span;
use super::super::value::Val;

#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Val(Val),
    Out(Arc<Output>),
}

/// A run-time error, at the expression that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub span: Span,
    pub message: String,
    /// Only `<|>` catches errors of expressions; a `panic` is never caught.
    pub catchable: bool,
    /// The calls the error came through, innermost first, when it happened in a function.
    pub calls: Vec<Span>,
    /// Errors of other statements of the program, independent of this one, reported with it.
    pub others: Vec<Fail>,
    /// Not an error: a changing value not known yet (a command that printed nothing), which
    /// the program waits for. Never caught.
    pub pending: bool,
}

impl Fail {
    pub fn at(span: Span, message: impl Into<String>) -> Self {
        Fail {
            span,
            message: message.into(),
            catchable: true,
            calls: Vec::new(),
            others: Vec::new(),
            pending: false,
        }
    }

    /// A value the program waits for, read at `span`.
    pub fn pending(span: Span, message: impl Into<String>) -> Self {
        Fail { catchable: false, pending: true, ..Fail::at(span, message) }
    }

    /// A broken promise of an earlier stage (a type the checker let through).
    pub fn internal(message: impl Into<String>) -> Self {
        Fail::at(Span::default(), message)
    }
}

pub type Outcome = Result<Data, Fail>;

/// What statements produce: resources and edges, each with the place that wrote it.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Shared: a block's output is gathered into its statement's, and that into the
    /// program's, by joining persistent vectors, without touching each resource again; a
    /// change of one statement's output costs the program's output a logarithmic update.
    pub resources: imbl::Vector<Arc<ResOut>>,
    pub edges: Vec<EdgeOut>,
    /// `collect` statements: what to collect from the other hosts' exports.
    pub collects: Vec<Arc<CollectOut>>,
}

/// Resources compare by address first: the unchanged ones of a program's output are the very
/// same values as before, and a deep comparison of each would cost more than the change.
impl PartialEq for Output {
    fn eq(&self, other: &Output) -> bool {
        let same = |a: &Arc<ResOut>, b: &Arc<ResOut>| Arc::ptr_eq(a, b) || a == b;
        self.resources.len() == other.resources.len()
            && (self.resources.ptr_eq(&other.resources)
                || self.resources.iter().zip(&other.resources).all(|(a, b)| same(a, b)))
            && self.edges == other.edges
            && self.collects == other.collects
    }
}

impl Output {
    pub fn extend(&mut self, other: &Output) {
        // Joining costs a few node copies: worth it for a big part, not for a loop's one
        // resource per element, which a push adds to the tail in place.
        if self.resources.is_empty() || other.resources.len() > 64 {
            self.resources.append(other.resources.clone());
        } else {
            other.resources.iter().for_each(|r| self.resources.push_back(r.clone()));
        }
        self.edges.extend(other.edges.iter().cloned());
        self.collects.extend(other.collects.iter().cloned());
    }
}

/// A `collect` statement's output: the exports of `kind` it names (by name, and by the
/// exporting host when given), and the params its body sets on each.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectOut {
    pub kind: String,
    pub names: Vec<(String, Option<String>)>,
    pub span: Span,
    pub params: Vec<Entry>,
    pub meta: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResOut {
    pub kind: String,
    pub name: String,
    /// The resource statement, and its name expression.
    pub span: Span,
    pub name_span: Span,
    /// In written order; a later entry for a name wins, as upstream has it.
    pub params: Vec<Entry>,
    pub meta: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub value: Val,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeOut {
    pub from: (String, String),
    pub to: (String, String),
    pub notify: bool,
    pub send_recv: Option<(String, String)>,
    pub span: Span,
}

impl Data {
    pub fn val(&self) -> Result<&Val, Fail> {
        match self {
            Data::Val(v) => Ok(v),
            Data::Out(_) => Err(Fail::internal("statement output where a value was expected")),
        }
    }

    pub fn out(&self) -> Result<&Arc<Output>, Fail> {
        match self {
            Data::Out(o) => Ok(o),
            Data::Val(_) => Err(Fail::internal("a value where statement output was expected")),
        }
    }
}

/// The values of strict inputs: the first error among them, in order, is the result.
pub fn vals<'a>(inputs: &[&'a Outcome]) -> Result<Vec<&'a Val>, Fail> {
    inputs.iter().map(|i| i.as_ref().map_err(Clone::clone).and_then(Data::val)).collect()
}
