//! mcl's `os` module: the host's files and users. Files are read once, when the call is
//! evaluated, and at most 16 MiB of them.

use std::path::Path;

use super::super::value::{CallError, Val};
use super::args::{arity, fixed, native, str_list};
use super::files::read_text;
use super::{Builtin, CallCtx, Changes, HostInfo};

const M: &str = "os";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "args", "func() []str", args, "the agent's command line"),
    fixed(
        M,
        "expand_home",
        "func(str) str",
        expand_home,
        "the path with a leading `~/` replaced by the home directory",
    ),
    fixed(
        M,
        "family",
        "func() str",
        family,
        "the distribution's family: redhat, debian, archlinux, or empty",
    ),
    fixed(M, "file_exists", "func(str) bool", file_exists, "whether the path exists on this host")
        .changing(Changes::File(path_arg)),
    fixed(M, "home", "func(str) str", home, "the user's home directory, with a trailing slash"),
    fixed(
        M,
        "is_family_archlinux",
        "func() bool",
        is_archlinux,
        "whether the host is of the archlinux family",
    ),
    fixed(M, "is_family_debian", "func() bool", is_debian, "whether the host is of the debian family"),
    fixed(M, "is_family_redhat", "func() bool", is_redhat, "whether the host is of the redhat family"),
    fixed(M, "modinfo_loaded", "func(str) bool", modinfo_loaded, "whether the kernel module is loaded"),
    fixed(M, "readfile", "func(str) str", readfile, "the text of the file (an error when it is missing)")
        .changing(Changes::File(path_arg)),
    fixed(
        M,
        "system",
        "func(str) str",
        system,
        "each line the shell command prints, as it prints it (once: its last line)",
    )
    .changing(Changes::Lines),
    fixed(M, "uid", "func(str) str", uid, "the user's uid, as text"),
    fixed(M, "user_exists", "func(str) bool", user_exists, "whether the user exists"),
];

/// The file a call reads: its first argument.
fn path_arg(_: &HostInfo, args: &[Val]) -> Option<std::path::PathBuf> {
    match args.first() {
        Some(Val::Str(path)) if !path.is_empty() && !path.contains('\0') => Some(path.into()),
        _ => None,
    }
}

/// How long a program evaluated once waits for `os.system`'s command to end.
const SYSTEM_ONCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Evaluated once, `os.system` runs the command to its end and is the last line it printed;
/// a running program follows each line instead (its watcher).
fn system(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 1)?;
    let command = super::args::str_at(&args, 0)?;
    let output = run_with_timeout(command, SYSTEM_ONCE_TIMEOUT)?;
    let text = String::from_utf8_lossy(&output);
    Ok(Val::Str(text.lines().last().unwrap_or("").to_string()))
}

/// The command's output, once it has closed its output (it ended), or an error after
/// `timeout`, the command killed. Its output is read on a thread of its own, whose end is
/// the event waited for.
fn run_with_timeout(command: &str, timeout: std::time::Duration) -> Result<Vec<u8>, CallError> {
    use std::io::Read;
    let mut child = std::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| CallError(format!("cannot run `sh -c {command:?}`: {e}")))?;
    let stdout = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(stdout) = stdout {
            let _ = stdout.take(super::args::MAX_FILE).read_to_end(&mut out);
        }
        let _ = tx.send(out);
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => {
            let _ = child.wait();
            Ok(out)
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(CallError(format!("`{command}` did not end within {}s", timeout.as_secs())))
        }
    }
}

fn args(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(str_list(std::env::args_os().map(|a| a.to_string_lossy().into_owned())))
}

fn user(name: &str) -> Result<nix::unistd::User, CallError> {
    if name.contains('\0') {
        return Err(CallError(format!("unknown user {name:?}")));
    }
    nix::unistd::User::from_name(name)
        .map_err(|e| CallError(format!("cannot look up user {name:?}: {e}")))?
        .ok_or_else(|| CallError(format!("unknown user {name:?}")))
}

fn home_of(name: &str) -> Result<String, CallError> {
    let mut dir = user(name)?.dir.to_string_lossy().into_owned();
    if !dir.ends_with('/') {
        dir.push('/');
    }
    Ok(dir)
}

native!(
    fn expand_home(path: str) -> str {
        match path.strip_prefix("~/") {
            None if path != "~" => path.to_string(),
            rest => {
                let home = std::env::var("HOME").map_err(|_| CallError::new("HOME is not set"))?;
                format!("{}/{}", home.trim_end_matches('/'), rest.unwrap_or(""))
            }
        }
    }
);
native!(
    fn home(name: str) -> str {
        home_of(name)?
    }
);
native!(
    fn uid(name: str) -> str {
        user(name)?.uid.to_string()
    }
);
native!(
    fn user_exists(name: str) -> bool {
        user(name).is_ok()
    }
);
native!(
    fn file_exists(path: str) -> bool {
        !path.is_empty() && Path::new(path).exists()
    }
);
native!(
    fn readfile(path: str) -> str {
        if path.is_empty() || path.contains('\0') {
            return Err(CallError(format!("no file {path:?}")));
        }
        read_text(Path::new(path))?
    }
);
native!(
    fn modinfo_loaded(name: str) -> bool {
        !name.is_empty()
            && !name.contains(['/', '\0'])
            && name != ".."
            && Path::new("/sys/module").join(name).exists()
    }
);

/// The family of the host's distribution, by the release file each family has.
fn host_family() -> &'static str {
    [("/etc/redhat-release", "redhat"), ("/etc/debian_version", "debian"), ("/etc/arch-release", "archlinux")]
        .iter()
        .find(|(file, _)| Path::new(file).exists())
        .map_or("", |(_, family)| family)
}

fn family(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Str(host_family().into()))
}

fn is_archlinux(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Bool(host_family() == "archlinux"))
}

fn is_debian(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Bool(host_family() == "debian"))
}

fn is_redhat(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Bool(host_family() == "redhat"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, s};
    use super::*;

    #[test]
    fn a_command_evaluated_once_is_its_last_line_and_one_that_does_not_end_is_an_error() {
        assert_eq!(call(f(M, "system"), vec![s("printf 'one\\ntwo\\n'")]), Ok(s("two")));
        assert_eq!(call(f(M, "system"), vec![s("true")]), Ok(s("")));
        let e = run_with_timeout("sleep 5", std::time::Duration::from_millis(50)).unwrap_err();
        assert!(e.0.contains("did not end"), "{}", e.0);
    }

    #[test]
    fn files_and_users() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "text").unwrap();
        let name = file.to_string_lossy().into_owned();
        assert_eq!(call(f(M, "readfile"), vec![s(&name)]), Ok(s("text")));
        assert_eq!(call(f(M, "file_exists"), vec![s(&name)]), Ok(Val::Bool(true)));
        assert!(call(f(M, "readfile"), vec![s("/nonexistent/x")]).is_err());
        assert!(call(f(M, "readfile"), vec![s("")]).is_err());
        assert_eq!(call(f(M, "uid"), vec![s("root")]), Ok(s("0")));
        assert_eq!(call(f(M, "user_exists"), vec![s("no-such-user-here")]), Ok(Val::Bool(false)));
        assert!(call(f(M, "home"), vec![s("root")]).is_ok_and(|v| v.to_string().ends_with("/\"")));
        assert_eq!(call(f(M, "expand_home"), vec![s("/abs")]), Ok(s("/abs")));
        assert_eq!(call(f(M, "modinfo_loaded"), vec![s("../x")]), Ok(Val::Bool(false)));
        assert!(matches!(call(f(M, "family"), vec![]), Ok(Val::Str(_))));
    }
}
