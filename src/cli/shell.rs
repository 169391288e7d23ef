//! What is installed around the binary, generated from the clap definitions ([`Cli`]): the
//! version line, shell completions (`mgmt completion SHELL`) and man pages (the hidden
//! `mgmt manpages DIR`, used by `make install`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use super::Cli;

/// `mgmt --version`: the crate's version, then the commit it was built from and that
/// commit's date (`build.rs`), e.g. `0.1.0 (abc1234 2026-11-29)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("MGMT_BUILD_COMMIT"), ")");

#[derive(Args, Debug, Clone)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug, Clone)]
pub struct ManpagesArgs {
    /// Directory to write the pages into (created if missing): mgmt.1, mgmt-run.1, ...
    pub dir: PathBuf,
}

/// Print the completion script for `args.shell` on stdout.
pub fn completion(args: CompletionArgs) -> Result<u8> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "mgmt", &mut out);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out).and_then(|()| stdout.flush()).context("writing the completion script")?;
    Ok(0)
}

/// Write one man page per command and visible subcommand into `args.dir`.
pub fn manpages(args: ManpagesArgs) -> Result<u8> {
    write_manpages(&args.dir)?;
    Ok(0)
}

/// The man pages of every visible command (`mgmt.1`, `mgmt-deploy-list.1`, ...) in `dir`.
pub fn write_manpages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_command_gets_a_man_page_and_hidden_ones_none() {
        let dir = tempfile::tempdir().unwrap();
        write_manpages(dir.path()).unwrap();
        let mut want = Vec::new();
        fn walk(cmd: &clap::Command, name: String, want: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
                walk(sub, format!("{name}-{}", sub.get_name()), want);
            }
            want.push(format!("{name}.1"));
        }
        walk(&Cli::command(), "mgmt".into(), &mut want);
        want.sort();
        let mut got: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, want);
        assert!(!got.iter().any(|n| n.contains("manpages")), "{got:?}");
        let run = std::fs::read_to_string(dir.path().join("mgmt-run.1")).unwrap();
        assert!(run.contains(".TH mgmt-run 1") && run.contains("hostname"), "{run}");
    }
}
