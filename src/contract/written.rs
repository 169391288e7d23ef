//! Params with a structure, read once: the text as written (what is shown, compared and
//! exported) beside what it parses to. A param that does not parse is kept with its error, so
//! that validation reports it naming its field, where the frontend can locate it.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

/// A type a param's text parses to.
pub trait ParseParam: Sized + Clone + Debug + PartialEq {
    type Error: Clone + Debug + PartialEq;
    fn parse_param(text: &str) -> Result<Self, Self::Error>;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[serde(bound(serialize = "T: ParseParam", deserialize = "T: ParseParam"))]
pub struct Written<T: ParseParam> {
    // Boxed, so that a param takes no more room in its struct than the `String` it replaces:
    // graph swaps compare every param of every vertex, and a bigger struct is more cache
    // lines to touch.
    text: Box<str>,
    parsed: Box<Result<T, T::Error>>,
}

impl<T: ParseParam> Written<T> {
    pub fn written(&self) -> &str {
        &self.text
    }
    pub fn parsed(&self) -> Result<&T, &T::Error> {
        self.parsed.as_ref().as_ref()
    }
}

/// Two params are the same when written the same: the parse is a function of the text, so
/// comparing it too would only cost time (graph swaps compare every param of every vertex).
impl<T: ParseParam> PartialEq for Written<T> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<T: ParseParam> From<String> for Written<T> {
    fn from(text: String) -> Self {
        let parsed = Box::new(T::parse_param(&text));
        Written { text: text.into_boxed_str(), parsed }
    }
}

impl<T: ParseParam> From<&str> for Written<T> {
    fn from(text: &str) -> Self {
        Written::from(text.to_string())
    }
}

impl<T: ParseParam> From<Written<T>> for String {
    fn from(w: Written<T>) -> String {
        w.text.into_string()
    }
}

/// Reads as the text as written.
impl<T: ParseParam> std::ops::Deref for Written<T> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}
