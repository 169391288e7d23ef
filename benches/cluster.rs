//! Cluster benchmarks (see BENCHMARKS.md).
fn main() {}
