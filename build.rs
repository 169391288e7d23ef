//! Records the git commit the binary is built from, for `mgmt --version`:
//! `MGMT_BUILD_COMMIT` is "abc1234 2026-11-29" (short hash and commit date), or "unknown"
//! outside a git checkout or without git. A packager building from a tarball can set
//! `MGMT_BUILD_COMMIT` in the environment instead.

use std::path::{Path, PathBuf};
use std::process::Command;

const VAR: &str = "MGMT_BUILD_COMMIT";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={VAR}");
    let commit = match std::env::var(VAR) {
        Ok(given) if !given.trim().is_empty() => given.trim().to_string(),
        _ => from_git().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env={VAR}={commit}");
}

/// The output of `git args...` run in the crate's directory, if it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn from_git() -> Option<String> {
    // The crate's own repository only, not one it is vendored into.
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?).canonicalize().ok()?;
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?).canonicalize().ok()?;
    if top != manifest {
        return None;
    }
    let line = git(&["log", "-1", "--no-show-signature", "--format=%h %cs"])?;
    watch_head();
    Some(line)
}

/// Build again when HEAD moves: a commit, a checkout, a reset. HEAD lives in the worktree's
/// git dir, branches in the common dir (the same one outside linked worktrees). Only paths
/// that exist are watched: cargo runs a build script every time for a missing one.
fn watch_head() {
    let path = |arg: &str| git(&["rev-parse", "--path-format=absolute", arg]).map(PathBuf::from);
    let (Some(git_dir), Some(common)) = (path("--git-dir"), path("--git-common-dir")) else { return };
    let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(&branch));
    }
    for p in watched.iter().filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}
