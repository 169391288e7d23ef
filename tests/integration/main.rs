//! The integration tests, one binary: each module runs the real `mgmt` binary
//! (`env!("CARGO_BIN_EXE_mgmt")`) on one topic, with the helpers of `common`. One
//! binary links once, and its tests share the machine's threads (`--test-threads`). The
//! property tests (`tests/fuzz.rs`) are a binary of their own: they count allocations with a
//! `#[global_allocator]` that must see no other test's.

mod common;

mod certs;
mod cluster;
mod cluster_outage;
mod compat;
mod crash_safety;
mod deploy;
mod deploy_blobs;
mod deploy_diff_rollback;
mod deploy_history;
mod deploy_source;
mod etcd_command;
mod etcd_roles;
mod file_params;
mod graph_cmd;
mod hooks;
mod lang_cmd;
mod lang_reactive;
mod layers;
mod package;
mod pkg;
mod run_errors;
mod run_files;
mod run_graph;
mod run_meta;
mod run_modes;
mod run_noop;
mod run_resources;
mod secure_cluster;
mod secure_etcd;
mod small_kinds;
mod ssh_tunnel;
mod status;
mod svc;
mod sys_kinds;
mod talk_example;
mod users;
