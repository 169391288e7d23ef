//! Deploys: a git commit's tree (or a directory) published as a content-addressed bundle.
//! `bundle` is the pure core: manifests, bundle IDs, path rules.

pub mod blobs;
pub mod bundle;
pub mod cache;
pub mod check;
pub mod diff;
pub mod follow;
pub mod source;
pub mod store;
