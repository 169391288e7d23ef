//! mcl's `deploy` module: the files deployed with the program. Paths are written from the
//! deploy's root (`/files/motd`), which is the program's module directory
//! ([`HostInfo::deploy_root`](super::HostInfo)); nothing outside it can be read.

use super::super::value::{CallError, Val};
use super::args::{arity, fixed, str_at};
use super::files::{in_root, read_text};
use super::{Builtin, CallCtx, Changes, HostInfo};

const M: &str = "deploy";

pub const FUNCS: &[Builtin] = &[
    fixed(
        M,
        "abspath",
        "func(str) str",
        abspath,
        "the path from the deploy's root of a path of this module (`/files/x`)",
    ),
    fixed(
        M,
        "directory",
        "func(str) str",
        directory,
        "the local path of a directory of the deploy (written `/files/`)",
    ),
    fixed(M, "file_exists", "func(str) bool", file_exists, "whether the deploy has the file")
        .changing(Changes::File(deploy_path)),
    fixed(
        M,
        "readfile",
        "func(str) str",
        readfile,
        "the text of a file of this module, by its path in the module (`/files/x`)",
    )
    .changing(Changes::File(deploy_path)),
    fixed(
        M,
        "readfileabs",
        "func(str) str",
        readfile,
        "the text of a file of the deploy, by its path from the deploy's root",
    )
    .changing(Changes::File(deploy_path)),
];

/// The file a call with these arguments reads: below the deploy's root.
fn deploy_path(host: &HostInfo, args: &[Val]) -> Option<std::path::PathBuf> {
    in_root(&host.deploy_root, str_at(args, 0).ok()?).ok()
}

fn abspath(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    let path = str_at(&args, 0)?;
    if path.is_empty() {
        return Ok(Val::Str("/".into()));
    }
    if !path.starts_with('/') {
        return Err(CallError(format!("path was not absolute, got: `{path}`")));
    }
    Ok(Val::Str(path.to_string()))
}

fn readfile(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    let path = in_root(&ctx.host.deploy_root, str_at(&args, 0)?)?;
    read_text(&path).map(Val::Str)
}

fn file_exists(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    let path = in_root(&ctx.host.deploy_root, str_at(&args, 0)?)?;
    Ok(Val::Bool(path.exists()))
}

fn directory(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    let dir = str_at(&args, 0)?;
    if !dir.ends_with('/') || dir == "//" {
        return Err(CallError(format!("a directory is written with a trailing slash, got: `{dir}`")));
    }
    let path = in_root(&ctx.host.deploy_root, dir)?;
    if !path.is_dir() {
        return Err(CallError(format!("the deploy has no directory `{dir}`")));
    }
    let mut text = path.to_string_lossy().into_owned();
    if !text.ends_with('/') {
        text.push('/');
    }
    Ok(Val::Str(text))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call_on, f, host, s};
    use super::*;

    #[test]
    fn reads_below_the_deploy_root_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("files/motd"), "hello\n").unwrap();
        let h = super::super::HostInfo { deploy_root: dir.path().to_path_buf(), ..host() };
        let run = |name: &str, arg: &str| call_on(f(M, name), &h, vec![s(arg)]);
        assert_eq!(run("readfile", "/files/motd"), Ok(s("hello\n")));
        assert_eq!(run("readfileabs", "/files/motd"), Ok(s("hello\n")));
        assert_eq!(run("file_exists", "/files/motd"), Ok(Val::Bool(true)));
        assert_eq!(run("file_exists", "/files/nope"), Ok(Val::Bool(false)));
        assert!(run("readfile", "/files/nope").is_err());
        assert!(run("readfile", "/../etc/passwd").is_err());
        assert!(run("readfile", "files/motd").is_err());
        assert_eq!(run("abspath", "/files/motd"), Ok(s("/files/motd")));
        assert!(run("abspath", "files").is_err());
        let local = format!("{}/", dir.path().join("files").display());
        assert_eq!(run("directory", "/files/"), Ok(Val::Str(local)));
        assert!(run("directory", "/files").is_err());
    }
}
