//! `golang/os`, `golang/os/exec`, `golang/html` and `golang/runtime`: the functions of Go's
//! packages that upstream's examples use, in snake case.

use std::path::Path;

use super::super::value::{CallError, Val};
use super::args::{arity, fixed, native};
use super::{Builtin, CallCtx};

pub const FUNCS: &[Builtin] = &[
    fixed("golang/os", "executable", "func() str", executable, "the path of the running agent"),
    fixed(
        "golang/os",
        "expand_env",
        "func(str) str",
        expand_env,
        "the text with `$VAR` and `${VAR}` replaced by the environment's values",
    ),
    fixed(
        "golang/os",
        "getenv",
        "func(str) str",
        getenv,
        "the environment variable's value, empty when unset",
    ),
    fixed("golang/os", "getegid", "func() int", getegid, "the agent's effective group id"),
    fixed("golang/os", "geteuid", "func() int", geteuid, "the agent's effective user id"),
    fixed("golang/os", "getgid", "func() int", getgid, "the agent's group id"),
    fixed("golang/os", "getpagesize", "func() int", getpagesize, "the memory page size"),
    fixed("golang/os", "getpid", "func() int", getpid, "the agent's process id"),
    fixed("golang/os", "getppid", "func() int", getppid, "the agent's parent's process id"),
    fixed("golang/os", "getuid", "func() int", getuid, "the agent's user id"),
    fixed("golang/os", "getwd", "func() str", getwd, "the agent's working directory"),
    fixed("golang/os", "hostname", "func() str", hostname, "the host's name"),
    fixed("golang/os", "read_file", "func(str) str", read_file, "the text of the file (at most 16 MiB)"),
    fixed("golang/os", "readlink", "func(str) str", readlink, "the target of the symbolic link"),
    fixed("golang/os", "temp_dir", "func() str", temp_dir, "the directory for temporary files"),
    fixed("golang/os", "user_cache_dir", "func() str", user_cache_dir, "the user's cache directory"),
    fixed(
        "golang/os",
        "user_config_dir",
        "func() str",
        user_config_dir,
        "the user's configuration directory",
    ),
    fixed("golang/os", "user_home_dir", "func() str", user_home_dir, "the user's home directory"),
    fixed(
        "golang/os/exec",
        "look_path",
        "func(str) str",
        look_path,
        "the path of the executable found in PATH",
    ),
    fixed("golang/html", "escape_string", "func(str) str", escape_string, "the text with `<>&'\"` escaped"),
    fixed(
        "golang/html",
        "unescape_string",
        "func(str) str",
        unescape_string,
        "the text with HTML entities replaced",
    ),
    fixed("golang/runtime", "num_cpu", "func() int", num_cpu, "the number of CPUs this process may use"),
];

fn env(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

fn executable(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    let exe = std::env::current_exe().map_err(|e| CallError(format!("cannot find the executable: {e}")))?;
    Ok(Val::Str(exe.to_string_lossy().into_owned()))
}

fn getpagesize(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    let size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
    Ok(Val::Int(size))
}

macro_rules! id {
    ($($name:ident => $value:expr),* $(,)?) => {
        $(fn $name(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
            arity(&args, 0)?;
            Ok(Val::Int(i64::from($value)))
        })*
    };
}

id! {
    getuid => nix::unistd::getuid().as_raw(),
    geteuid => nix::unistd::geteuid().as_raw(),
    getgid => nix::unistd::getgid().as_raw(),
    getegid => nix::unistd::getegid().as_raw(),
    getpid => nix::unistd::getpid().as_raw(),
    getppid => nix::unistd::getppid().as_raw(),
}

fn getwd(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    let dir = std::env::current_dir().map_err(|e| CallError(format!("getwd: {e}")))?;
    Ok(Val::Str(dir.to_string_lossy().into_owned()))
}

fn hostname(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Str(ctx.host.hostname.clone()))
}

fn temp_dir(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Str(env("TMPDIR").unwrap_or_else(|| "/tmp".into())))
}

fn home() -> Result<String, CallError> {
    env("HOME").ok_or_else(|| CallError::new("$HOME is not defined"))
}

fn user_home_dir(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    home().map(Val::Str)
}

fn user_cache_dir(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Str(match env("XDG_CACHE_HOME") {
        Some(dir) => dir,
        None => format!("{}/.cache", home()?),
    }))
}

fn user_config_dir(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Str(match env("XDG_CONFIG_HOME") {
        Some(dir) => dir,
        None => format!("{}/.config", home()?),
    }))
}

fn num_cpu(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Int(std::thread::available_parallelism().map_or(1, |n| n.get() as i64)))
}

native!(
    fn getenv(name: str) -> str {
        env(name).unwrap_or_default()
    }
);
native!(
    fn expand_env(text: str) -> str {
        expand(text)
    }
);
native!(
    fn read_file(path: str) -> str {
        if path.is_empty() || path.contains('\0') {
            return Err(CallError(format!("open {path:?}: no such file")));
        }
        super::files::read_text(Path::new(path))?
    }
);
native!(
    fn readlink(path: str) -> str {
        let target =
            std::fs::read_link(Path::new(path)).map_err(|e| CallError(format!("readlink {path}: {e}")))?;
        target.to_string_lossy().into_owned()
    }
);
native!(
    fn look_path(name: str) -> str {
        find_in_path(name)?
    }
);
native!(
    fn escape_string(text: str) -> str {
        html_escape(text)
    }
);
native!(
    fn unescape_string(text: str) -> str {
        html_unescape(text)
    }
);

/// Go's `os.ExpandEnv`: `$NAME` and `${NAME}`; an unset variable is empty.
fn expand(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, used) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        if used == 0 {
            out.push('$');
        } else {
            out.push_str(&env(name).unwrap_or_default());
        }
        rest = &after[used..];
    }
    out.push_str(rest);
    out
}

fn find_in_path(name: &str) -> Result<String, CallError> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        return if executable(Path::new(name)) {
            Ok(name.to_string())
        } else {
            Err(CallError(format!("exec: {name:?}: not found")))
        };
    }
    let path = env("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty() && !name.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| executable(p))
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| CallError(format!("exec: {name:?}: executable file not found in $PATH")))
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            c => out.push(c),
        }
    }
    out
}

/// The common named entities and every numeric one; an unknown entity is kept as written.
fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let entity = after.find(';').filter(|end| *end <= 32).map(|end| (&after[..end], end + 1));
        match entity.and_then(|(name, used)| entity_char(name).map(|c| (c, used))) {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity_char(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, s};
    use super::*;

    #[test]
    fn text_functions() {
        let un = call(
            f("golang/html", "unescape_string"),
            vec![s("&lt;h1&gt;MGMT!&lt;/h1&gt; &#65;&#x42; &bogus; &")],
        );
        assert_eq!(un, Ok(s("<h1>MGMT!</h1> AB &bogus; &")));
        assert_eq!(
            call(f("golang/html", "escape_string"), vec![s("Test & <Re-Test>")]),
            Ok(s("Test &amp; &lt;Re-Test&gt;"))
        );
        assert_eq!(expand("$MGMT_SURELY_UNSET_VARIABLE-${MGMT_SURELY_UNSET_VARIABLE}x$"), "-x$");
        assert!(call(f("golang/os/exec", "look_path"), vec![s("sh")]).is_ok());
        assert!(call(f("golang/os/exec", "look_path"), vec![s("surely-no-such-command")]).is_err());
        assert!(call(f("golang/os", "readlink"), vec![s("/nonexistent")]).is_err());
        assert_eq!(call(f("golang/os", "hostname"), vec![]), Ok(s("h1")));
        assert!(matches!(call(f("golang/os", "getpid"), vec![]), Ok(Val::Int(n)) if n > 0));
        assert!(call(f("golang/os", "read_file"), vec![s("/nonexistent")]).is_err());
    }
}
