//! mcl's `datetime` module. Times are seconds since the Unix epoch and are shown in UTC, so
//! a program's output does not depend on the agent's time zone. `now` is read once, when the
//! call is evaluated.

use std::time::{SystemTime, UNIX_EPOCH};

use super::super::value::{CallError, Val};
use super::args::{arity, check_text, fixed, native};
use super::{Builtin, CallCtx, Changes};

const M: &str = "datetime";

pub const FUNCS: &[Builtin] = &[
    fixed(
        M,
        "format",
        "func(int, str) str",
        format,
        "the time written with a Go layout (`2006-01-02 15:04:05`)",
    ),
    fixed(M, "hour", "func(int) int", hour, "the hour of the day (0 to 23)"),
    fixed(M, "now", "func() int", now, "the seconds since 1970-01-01 UTC, every second")
        .changing(Changes::Tick(1)),
    fixed(M, "print", "func(int) str", print, "the time as `2006-01-02 15:04:05 +0000 UTC`"),
    fixed(M, "str_now", "func() str", str_now, "now, as `print` writes it, every second")
        .changing(Changes::Tick(1)),
    fixed(M, "weekday", "func(int) str", weekday, "the day of the week in lower case (`monday`)"),
    fixed(M, "weekday_fast", "func() str", weekday_fast, "today's day of the week in lower case")
        .changing(Changes::Tick(60)),
];

const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A moment split into its civil parts, in UTC.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: usize,
    yday: u32,
}

fn civil(epoch: i64) -> Result<Civil, CallError> {
    if epoch < 0 {
        return Err(CallError::new("epoch delta must be positive"));
    }
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400) as u32;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][month as usize - 1];
    let yday = before + day + u32::from(leap && month > 2);
    Ok(Civil {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
        weekday: (days + 4).rem_euclid(7) as usize,
        yday,
    })
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn now(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Int(now_secs()))
}

fn str_now(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Str(layout(&civil(now_secs())?, PRINT_LAYOUT)))
}

fn weekday_fast(_: &CallCtx, args: Vec<Val>) -> Result<Val, CallError> {
    arity(&args, 0)?;
    Ok(Val::Str(DAYS[civil(now_secs())?.weekday].to_lowercase()))
}

const PRINT_LAYOUT: &str = "2006-01-02 15:04:05 -0700 MST";

native!(
    fn format(epoch: int, layout_text: str) -> str {
        check_text(layout_text.len() as u128 * 9)?;
        layout(&civil(epoch)?, layout_text)
    }
);
native!(
    fn hour(epoch: int) -> int {
        i64::from(civil(epoch)?.hour)
    }
);
native!(
    fn print(epoch: int) -> str {
        layout(&civil(epoch)?, PRINT_LAYOUT)
    }
);
native!(
    fn weekday(epoch: int) -> str {
        DAYS[civil(epoch)?.weekday].to_lowercase()
    }
);

/// Go's reference-time layouts, longest token first where one is a prefix of another.
const TOKENS: &[&str] = &[
    "January", "Monday", "2006", "-07:00", "-0700", "Z07:00", "Z0700", "-07", ".000", ".999", "Jan", "Mon",
    "MST", "002", "_2", "01", "02", "03", "04", "05", "06", "15", "PM", "pm", "1", "2", "3", "4", "5",
];

/// The time written with a Go layout: each reference token (`2006`, `Jan`, `15`...) is
/// replaced, everything else is copied.
fn layout(t: &Civil, text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match TOKENS.iter().find(|tok| rest.starts_with(**tok)) {
            Some(tok) => {
                out.push_str(&token(t, tok));
                rest = &rest[tok.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

fn token(t: &Civil, tok: &str) -> String {
    let h12 = if t.hour.is_multiple_of(12) { 12 } else { t.hour % 12 };
    match tok {
        "January" => MONTHS[t.month as usize - 1].into(),
        "Jan" => MONTHS[t.month as usize - 1][..3].into(),
        "Monday" => DAYS[t.weekday].into(),
        "Mon" => DAYS[t.weekday][..3].into(),
        "2006" => format!("{:04}", t.year),
        "06" => format!("{:02}", t.year % 100),
        "01" => format!("{:02}", t.month),
        "1" => t.month.to_string(),
        "02" => format!("{:02}", t.day),
        "_2" => format!("{:>2}", t.day),
        "2" => t.day.to_string(),
        "002" => format!("{:03}", t.yday),
        "15" => format!("{:02}", t.hour),
        "03" => format!("{h12:02}"),
        "3" => h12.to_string(),
        "04" => format!("{:02}", t.minute),
        "4" => t.minute.to_string(),
        "05" => format!("{:02}", t.second),
        "5" => t.second.to_string(),
        "PM" => if t.hour < 12 { "AM" } else { "PM" }.into(),
        "pm" => if t.hour < 12 { "am" } else { "pm" }.into(),
        "MST" => "UTC".into(),
        "-0700" => "+0000".into(),
        "-07:00" => "+00:00".into(),
        "-07" => "+00".into(),
        "Z07:00" | "Z0700" => "Z".into(),
        ".000" => ".000".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, s};
    use super::*;

    // 2021-03-04 05:06:07 UTC, a Thursday.
    const T: i64 = 1_614_834_367;

    #[test]
    fn civil_parts_and_layouts() {
        assert_eq!(call(f(M, "print"), vec![Val::Int(T)]), Ok(s("2021-03-04 05:06:07 +0000 UTC")));
        assert_eq!(call(f(M, "weekday"), vec![Val::Int(T)]), Ok(s("thursday")));
        assert_eq!(call(f(M, "hour"), vec![Val::Int(T)]), Ok(Val::Int(5)));
        let formatted = call(f(M, "format"), vec![Val::Int(T), s("Mon Jan _2 3:04PM 2006 (day 002)")]);
        assert_eq!(formatted, Ok(s("Thu Mar  4 5:06AM 2021 (day 063)")));
        assert_eq!(call(f(M, "print"), vec![Val::Int(0)]), Ok(s("1970-01-01 00:00:00 +0000 UTC")));
        assert_eq!(call(f(M, "print"), vec![Val::Int(951_782_400)]), Ok(s("2000-02-29 00:00:00 +0000 UTC")));
    }

    #[test]
    fn negative_and_huge_times_do_not_panic() {
        assert!(call(f(M, "print"), vec![Val::Int(-1)]).is_err());
        assert!(call(f(M, "print"), vec![Val::Int(i64::MAX)]).is_ok());
        assert!(matches!(call(f(M, "now"), vec![]), Ok(Val::Int(n)) if n > T));
        assert!(matches!(call(f(M, "weekday_fast"), vec![]), Ok(Val::Str(_))));
    }
}
