//! `golang/math`: Go's `math` functions over floats, in snake case as upstream generates
//! them (`Log10` is `log_10`, `IsNaN` is `is_na_n`). Results are IEEE floats, as Go's are:
//! NaN and the infinities are values here, not errors.

use super::Builtin;
use super::args::{fixed, native};

const M: &str = "golang/math";

macro_rules! unary {
    ($($fn:ident => $body:expr),* $(,)?) => {
        $(native!(fn $fn(x: float) -> float { ($body)(x) });)*
    };
}

unary! {
    abs => f64::abs, acos => f64::acos, acosh => f64::acosh, asin => f64::asin, asinh => f64::asinh,
    atan => f64::atan, atanh => f64::atanh, cbrt => f64::cbrt, ceil => f64::ceil, cos => f64::cos,
    cosh => f64::cosh, exp => f64::exp, exp2 => f64::exp2, expm1 => f64::exp_m1, floor => f64::floor,
    log => f64::ln, log10 => f64::log10, log1p => f64::ln_1p, log2 => f64::log2,
    round => f64::round, round_to_even => f64::round_ties_even, sin => f64::sin, sinh => f64::sinh,
    sqrt => f64::sqrt, tan => f64::tan, tanh => f64::tanh, trunc => f64::trunc,
}

native!(
    fn atan2(y: float, x: float) -> float {
        y.atan2(x)
    }
);
native!(
    fn copysign(f: float, sign: float) -> float {
        f.copysign(sign)
    }
);
native!(
    fn dim(x: float, y: float) -> float {
        if x - y <= 0.0 { 0.0 } else { x - y }
    }
);
native!(
    fn hypot(p: float, q: float) -> float {
        p.hypot(q)
    }
);
native!(
    fn max(x: float, y: float) -> float {
        if x.is_nan() || y.is_nan() { f64::NAN } else { x.max(y) }
    }
);
native!(
    fn min(x: float, y: float) -> float {
        if x.is_nan() || y.is_nan() { f64::NAN } else { x.min(y) }
    }
);
native!(
    fn modulo(x: float, y: float) -> float {
        x % y
    }
);
native!(
    fn pow(x: float, y: float) -> float {
        x.powf(y)
    }
);
native!(
    fn fma(x: float, y: float, z: float) -> float {
        x.mul_add(y, z)
    }
);
native!(
    fn inf(sign: int) -> float {
        if sign >= 0 { f64::INFINITY } else { f64::NEG_INFINITY }
    }
);
native!(
    fn is_inf(f: float, sign: int) -> bool {
        (sign >= 0 && f == f64::INFINITY) || (sign <= 0 && f == f64::NEG_INFINITY)
    }
);
native!(
    fn is_nan(f: float) -> bool {
        f.is_nan()
    }
);
native!(
    fn nan() -> float {
        f64::NAN
    }
);
native!(
    fn signbit(x: float) -> bool {
        x.is_sign_negative()
    }
);
native!(
    fn pow10(n: int) -> float {
        10f64.powi(n.clamp(-400, 400) as i32)
    }
);
native!(
    fn ldexp(frac: float, exp: int) -> float {
        frac * 2f64.powi(exp.clamp(-2200, 2200) as i32)
    }
);

/// Go's `math.Ilogb`: the binary exponent of x, read from its bits.
fn binary_exponent(x: f64) -> i64 {
    if x == 0.0 {
        return i64::from(i32::MIN);
    }
    if !x.is_finite() {
        return i64::from(i32::MAX);
    }
    let bits = x.abs().to_bits();
    let exp = (bits >> 52) as i64;
    if exp == 0 {
        // Subnormal: the value is mantissa * 2^-1074.
        63 - i64::from(bits.leading_zeros()) - 1074
    } else {
        exp - 1023
    }
}

native!(
    fn ilogb(x: float) -> int {
        binary_exponent(x)
    }
);
native!(
    fn logb(x: float) -> float {
        if x == 0.0 {
            f64::NEG_INFINITY
        } else if x.is_infinite() {
            f64::INFINITY
        } else if x.is_nan() {
            x
        } else {
            binary_exponent(x) as f64
        }
    }
);
native!(
    fn nextafter(x: float, y: float) -> float {
        if x.is_nan() || y.is_nan() {
            f64::NAN
        } else if x == y {
            x
        } else if x == 0.0 {
            f64::from_bits(1).copysign(y)
        } else if (y > x) == (x > 0.0) {
            f64::from_bits(x.to_bits() + 1)
        } else {
            f64::from_bits(x.to_bits() - 1)
        }
    }
);

pub const FUNCS: &[Builtin] = &[
    fixed(M, "abs", "func(float) float", abs, "|x|"),
    fixed(M, "acos", "func(float) float", acos, "the arccosine"),
    fixed(M, "acosh", "func(float) float", acosh, "the inverse hyperbolic cosine"),
    fixed(M, "asin", "func(float) float", asin, "the arcsine"),
    fixed(M, "asinh", "func(float) float", asinh, "the inverse hyperbolic sine"),
    fixed(M, "atan", "func(float) float", atan, "the arctangent"),
    fixed(M, "atan_2", "func(float, float) float", atan2, "the arctangent of y/x, by quadrant"),
    fixed(M, "atanh", "func(float) float", atanh, "the inverse hyperbolic tangent"),
    fixed(M, "cbrt", "func(float) float", cbrt, "the cube root"),
    fixed(M, "ceil", "func(float) float", ceil, "the least integer value not below x"),
    fixed(M, "copysign", "func(float, float) float", copysign, "f with the sign of sign"),
    fixed(M, "cos", "func(float) float", cos, "the cosine"),
    fixed(M, "cosh", "func(float) float", cosh, "the hyperbolic cosine"),
    fixed(M, "dim", "func(float, float) float", dim, "the greater of x-y and 0"),
    fixed(M, "exp", "func(float) float", exp, "e to the x"),
    fixed(M, "exp_2", "func(float) float", exp2, "2 to the x"),
    fixed(M, "expm_1", "func(float) float", expm1, "e to the x, minus 1"),
    fixed(M, "floor", "func(float) float", floor, "the greatest integer value not above x"),
    fixed(M, "fma", "func(float, float, float) float", fma, "x*y+z, rounded once"),
    fixed(M, "hypot", "func(float, float) float", hypot, "sqrt(p*p + q*q)"),
    fixed(M, "ilogb", "func(float) int", ilogb, "the binary exponent of x"),
    fixed(M, "inf", "func(int) float", inf, "positive infinity when sign >= 0, else negative"),
    fixed(
        M,
        "is_inf",
        "func(float, int) bool",
        is_inf,
        "whether f is an infinity of the sign (either when 0)",
    ),
    fixed(M, "is_na_n", "func(float) bool", is_nan, "whether f is not a number"),
    fixed(M, "ldexp", "func(float, int) float", ldexp, "frac times 2 to the exp"),
    fixed(M, "log", "func(float) float", log, "the natural logarithm"),
    fixed(M, "log_10", "func(float) float", log10, "the decimal logarithm"),
    fixed(M, "log_1_p", "func(float) float", log1p, "the natural logarithm of 1+x"),
    fixed(M, "log_2", "func(float) float", log2, "the binary logarithm"),
    fixed(M, "logb", "func(float) float", logb, "the binary exponent of x, as a float"),
    fixed(M, "max", "func(float, float) float", max, "the larger of x and y"),
    fixed(M, "min", "func(float, float) float", min, "the smaller of x and y"),
    fixed(M, "mod", "func(float, float) float", modulo, "the remainder of x/y, with x's sign"),
    fixed(M, "na_n", "func() float", nan, "not a number"),
    fixed(M, "nextafter", "func(float, float) float", nextafter, "the next float after x toward y"),
    fixed(M, "pow", "func(float, float) float", pow, "x to the y"),
    fixed(M, "pow_10", "func(int) float", pow10, "10 to the n"),
    fixed(M, "round", "func(float) float", round, "the nearest integer, half away from zero"),
    fixed(M, "round_to_even", "func(float) float", round_to_even, "the nearest integer, half to even"),
    fixed(M, "signbit", "func(float) bool", signbit, "whether x is negative or negative zero"),
    fixed(M, "sin", "func(float) float", sin, "the sine"),
    fixed(M, "sinh", "func(float) float", sinh, "the hyperbolic sine"),
    fixed(M, "sqrt", "func(float) float", sqrt, "the square root"),
    fixed(M, "tan", "func(float) float", tan, "the tangent"),
    fixed(M, "tanh", "func(float) float", tanh, "the hyperbolic tangent"),
    fixed(M, "trunc", "func(float) float", trunc, "the integer value of x, toward zero"),
];

#[cfg(test)]
mod tests {
    use super::super::super::value::Val;
    use super::super::testing::{call, f};
    use super::*;

    fn run(name: &str, args: Vec<f64>) -> Val {
        call(f(M, name), args.into_iter().map(Val::Float).collect()).unwrap()
    }

    #[test]
    fn a_sample_of_functions() {
        assert_eq!(run("floor", vec![-1.5]), Val::Float(-2.0));
        assert_eq!(run("round", vec![2.5]), Val::Float(3.0));
        assert_eq!(run("round_to_even", vec![2.5]), Val::Float(2.0));
        assert_eq!(run("log_10", vec![1000.0]), Val::Float(3.0));
        assert_eq!(run("max", vec![1.0, 2.0]), Val::Float(2.0));
        assert!(matches!(run("max", vec![1.0, f64::NAN]), Val::Float(x) if x.is_nan()));
        assert_eq!(run("is_na_n", vec![f64::NAN]), Val::Bool(true));
        assert_eq!(call(f(M, "pow_10"), vec![Val::Int(i64::MAX)]), Ok(Val::Float(f64::INFINITY)));
        assert_eq!(call(f(M, "is_inf"), vec![Val::Float(f64::INFINITY), Val::Int(0)]), Ok(Val::Bool(true)));
        assert!(call(f(M, "sqrt"), vec![Val::Int(4)]).is_err());
        assert_eq!(call(f(M, "ilogb"), vec![Val::Float(9007199254740991.0)]), Ok(Val::Int(52)));
        assert_eq!(call(f(M, "ilogb"), vec![Val::Float(f64::from_bits(1))]), Ok(Val::Int(-1074)));
        assert_eq!(run("logb", vec![0.75]), Val::Float(-1.0));
        assert_eq!(run("nextafter", vec![1.0, 2.0]), Val::Float(1.0000000000000002));
        assert_eq!(run("nextafter", vec![0.0, -1.0]), Val::Float(-f64::from_bits(1)));
    }
}
