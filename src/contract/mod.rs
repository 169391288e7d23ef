//! The vocabulary every layer shares: resource identity, meta params, validation errors,
//! path rules, the values carried over send/recv edges, and every bound in one place. Plain
//! data and pure functions: nothing here does I/O or imports another module of the crate.

pub mod id;
pub mod limits;
pub mod meta;
pub mod path;
pub mod upstream;
pub mod validation;
pub mod value;
pub mod written;

pub use id::ResId;
pub use meta::Meta;
pub use validation::ValidationError;
pub use value::Value;
