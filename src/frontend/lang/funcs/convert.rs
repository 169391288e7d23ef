//! mcl's `convert` module. A float that does not fit an int, and text that is not a number,
//! are errors.

use super::super::value::CallError;
use super::Builtin;
use super::args::{fixed, native};

const M: &str = "convert";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "format_bool", "func(bool) str", format_bool, "`true` or `false`"),
    fixed(M, "int_to_str", "func(int) str", int_to_str, "the int in decimal"),
    fixed(
        M,
        "parse_bool",
        "func(str) bool",
        parse_bool,
        "the bool written as 1, t, T, TRUE, true, True or their false forms",
    ),
    fixed(M, "str_to_float", "func(str) float", str_to_float, "the float written in the text"),
    fixed(M, "str_to_int", "func(str) int", str_to_int, "the decimal int written in the text"),
    fixed(M, "to_float", "func(int) float", to_float, "the int as a float"),
    fixed(M, "to_int", "func(float) int", to_int, "the float as an int, truncated toward zero"),
];

native!(
    fn format_bool(b: bool) -> str {
        b.to_string()
    }
);
native!(
    fn int_to_str(n: int) -> str {
        n.to_string()
    }
);
native!(
    fn parse_bool(s: str) -> bool {
        go_parse_bool(s)?
    }
);
native!(
    fn str_to_float(s: str) -> float {
        go_parse_float(s)?
    }
);
native!(
    fn str_to_int(s: str) -> int {
        s.parse::<i64>().map_err(|e| CallError(format!("cannot read {s:?} as an int: {e}")))?
    }
);
native!(
    fn to_float(n: int) -> float {
        n as f64
    }
);
native!(
    fn to_int(x: float) -> int {
        float_to_int(x)?
    }
);

/// Go's `strconv.ParseBool`.
pub fn go_parse_bool(s: &str) -> Result<bool, CallError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(CallError(format!("cannot read {s:?} as a bool"))),
    }
}

/// Go's `strconv.ParseFloat` for decimal text (and `inf`, `NaN`).
pub fn go_parse_float(s: &str) -> Result<f64, CallError> {
    s.parse::<f64>().map_err(|_| CallError(format!("cannot read {s:?} as a float")))
}

pub fn float_to_int(x: f64) -> Result<i64, CallError> {
    let t = x.trunc();
    if t.is_finite() && t >= i64::MIN as f64 && t < i64::MAX as f64 {
        Ok(t as i64)
    } else {
        Err(CallError(format!("{x} does not fit in an int")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::value::Val;
    use super::super::testing::{call, f, s};
    use super::*;

    fn run(name: &str, args: Vec<Val>) -> Result<Val, CallError> {
        call(f(M, name), args)
    }

    #[test]
    fn conversions() {
        assert_eq!(run("format_bool", vec![Val::Bool(true)]), Ok(s("true")));
        assert_eq!(run("int_to_str", vec![Val::Int(-12)]), Ok(s("-12")));
        assert_eq!(run("parse_bool", vec![s("T")]), Ok(Val::Bool(true)));
        assert!(run("parse_bool", vec![s("yes")]).is_err());
        assert_eq!(run("str_to_float", vec![s("2.5")]), Ok(Val::Float(2.5)));
        assert!(run("str_to_float", vec![s("x")]).is_err());
        assert_eq!(run("str_to_int", vec![s("+42")]), Ok(Val::Int(42)));
        assert!(run("str_to_int", vec![s("4.2")]).is_err());
        assert!(run("str_to_int", vec![s("99999999999999999999")]).is_err());
        assert_eq!(run("to_float", vec![Val::Int(3)]), Ok(Val::Float(3.0)));
        assert_eq!(run("to_int", vec![Val::Float(-3.9)]), Ok(Val::Int(-3)));
        assert!(run("to_int", vec![Val::Float(f64::NAN)]).is_err());
        assert!(run("to_int", vec![Val::Float(1e30)]).is_err());
    }
}
