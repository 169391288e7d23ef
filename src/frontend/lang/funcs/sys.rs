//! mcl's `sys` module: what the program may know of the host it runs on. The load and the
//! uptime change with time: a running program reads them again every second; the others
//! are read when the call is evaluated.

use super::super::value::{CallError, Val};
use super::args::{arity, fixed, native};
use super::{Builtin, CallCtx, Changes};

const M: &str = "sys";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "cpu_count", "func() int", cpu_count, "the number of CPUs this process may use"),
    fixed(M, "env", "func() map{str: str}", env, "every environment variable of the agent"),
    fixed(M, "getenv", "func(str) str", getenv, "the environment variable's value, empty when unset"),
    fixed(M, "hasenv", "func(str) bool", hasenv, "whether the environment variable is set"),
    fixed(M, "hostname", "func() str", hostname, "the host's name (as `$hostname`)"),
    fixed(
        M,
        "load",
        "func() struct{x1 float; x5 float; x15 float}",
        load,
        "the load averages over 1, 5 and 15 minutes; every second",
    )
    .changing(Changes::Tick(1)),
    fixed(M, "uptime", "func() int", uptime, "the seconds since the host booted; every second")
        .changing(Changes::Tick(1)),
];

fn cpu_count(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Int(std::thread::available_parallelism().map_or(1, |n| n.get() as i64)))
}

fn env(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::map_of(std::env::vars_os().map(|(k, v)| {
        (Val::Str(k.to_string_lossy().into_owned()), Val::Str(v.to_string_lossy().into_owned()))
    })))
}

native!(
    fn getenv(name: str) -> str {
        if name.is_empty() || name.contains(['=', '\0']) {
            String::new()
        } else {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()).unwrap_or_default()
        }
    }
);
native!(
    fn hasenv(name: str) -> bool {
        !name.is_empty() && !name.contains(['=', '\0']) && std::env::var_os(name).is_some()
    }
);

fn hostname(ctx: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Str(ctx.host.hostname.clone()))
}

/// The first `n` numbers of a `/proc` file of numbers.
fn proc_numbers(path: &str, n: usize) -> Result<Vec<f64>, CallError> {
    let text = std::fs::read_to_string(path).map_err(|e| CallError(format!("cannot read {path}: {e}")))?;
    let numbers: Vec<f64> = text.split_whitespace().take(n).filter_map(|w| w.parse().ok()).collect();
    if numbers.len() == n {
        Ok(numbers)
    } else {
        Err(CallError(format!("cannot read {path}: unexpected content")))
    }
}

fn load(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    let avg = proc_numbers("/proc/loadavg", 3)?;
    Ok(Val::Struct(vec![
        ("x1".into(), Val::Float(avg[0])),
        ("x5".into(), Val::Float(avg[1])),
        ("x15".into(), Val::Float(avg[2])),
    ]))
}

fn uptime(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Int(proc_numbers("/proc/uptime", 1)?[0] as i64))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, s};
    use super::*;

    #[test]
    fn host_values() {
        assert_eq!(call(f(M, "hostname"), vec![]), Ok(s("h1")));
        assert!(matches!(call(f(M, "cpu_count"), vec![]), Ok(Val::Int(n)) if n >= 1));
        assert_eq!(call(f(M, "getenv"), vec![s("")]), Ok(s("")));
        assert_eq!(call(f(M, "getenv"), vec![s("A=B")]), Ok(s("")));
        assert_eq!(call(f(M, "hasenv"), vec![s("MGMT_SURELY_UNSET_VARIABLE")]), Ok(Val::Bool(false)));
        assert!(matches!(call(f(M, "env"), vec![]), Ok(Val::Map(_))));
        assert!(call(f(M, "hostname"), vec![s("x")]).is_err());
    }
}
