//! Exact float sums: `sum` and `avg` of a float column accumulate as 256-bit decimals
//! (`Decimal256(76, 38)`), so their result does not depend on the order in which rows or
//! parallel partitions arrive, and the same data gives the same bytes in every layout.
//!
//! The decimal of each value is the one Arrow's `CAST(x AS DECIMAL(76, 38))` gives —
//! `round(x * 1e38)`, rounded in `f64`, taken exactly — but computed here from the float's
//! bits, where Arrow's cast goes through a heap-allocated big integer per row (it cost as
//! much as reading the column). The sums themselves are DataFusion's decimal `sum` and
//! `avg`, whose partial states are exact and merge in any order: per-period partials of a
//! window add up to the bytes a single pass would give.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Decimal256Array};
use datafusion::arrow::datatypes::{DataType, Decimal256Type, DecimalType, Float64Type, i256};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Precision and scale of the exact accumulation type.
pub const PRECISION: u8 = 76;
pub const SCALE: i8 = 38;

/// The type float sums and averages accumulate in.
pub fn exact_type() -> DataType {
    DataType::Decimal256(PRECISION, SCALE)
}

/// `exact_decimal(x)`: a float as `Decimal256(76, 38)`, equal to Arrow's cast of it.
/// NULL stays NULL; NaN, infinity and magnitudes of 10^38 or more are errors, as in the
/// cast.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExactDecimal {
    signature: Signature,
}

impl ExactDecimal {
    pub const NAME: &'static str = "exact_decimal";

    fn new() -> Self {
        ExactDecimal {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The scalar function, for registering and for building expressions.
pub fn exact_decimal_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(ExactDecimal::new())
}

/// `exact_decimal(e)`.
pub fn exact_decimal(e: Expr) -> Expr {
    exact_decimal_udf().call(vec![e])
}

impl ScalarUDFImpl for ExactDecimal {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(exact_type())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if t.is_numeric() || t.is_null() => Ok(vec![DataType::Float64]),
            _ => plan_err!("{}(x) takes one number, got {arg_types:?}", Self::NAME),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(s) => {
                let v = match s {
                    ScalarValue::Float64(Some(x)) => Some(checked(*x)?),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Decimal256(
                    v, PRECISION, SCALE,
                )))
            }
            ColumnarValue::Array(a) => {
                let floats = a.as_primitive::<Float64Type>();
                let mut out = Vec::with_capacity(floats.len());
                for (i, x) in floats.values().iter().enumerate() {
                    // Null slots hold arbitrary bits: they must not raise an error.
                    out.push(if floats.is_valid(i) {
                        checked(*x)?
                    } else {
                        i256::ZERO
                    });
                }
                let array = Decimal256Array::new(out.into(), floats.nulls().cloned())
                    .with_precision_and_scale(PRECISION, SCALE)?;
                Ok(ColumnarValue::Array(Arc::new(array)))
            }
        }
    }
}

fn checked(x: f64) -> Result<i256> {
    match to_decimal(x) {
        Some(v) => Ok(v),
        None => exec_err!(
            "{x} cannot be summed exactly: sums and averages take finite numbers below 1e38"
        ),
    }
}

/// `round(x * 10^38)` as an exact 256-bit integer, `None` where Arrow's cast fails.
pub fn to_decimal(x: f64) -> Option<i256> {
    let w = (x * 1e38_f64).round();
    let v = integral_to_i256(w)?;
    Decimal256Type::is_valid_decimal_precision(v, PRECISION).then_some(v)
}

/// An integral `f64` as `i256`, exactly; `None` for NaN, infinities and values that do
/// not fit.
fn integral_to_i256(w: f64) -> Option<i256> {
    let bits = w.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    if exponent == 0x7ff {
        return None;
    }
    if exponent == 0 {
        // Zero or subnormal; an integral subnormal is zero.
        return Some(i256::ZERO);
    }
    let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let shift = exponent - 1075;
    let magnitude = if shift >= 0 {
        // 53 significant bits shifted left must stay below the sign bit.
        if shift > 255 - 53 {
            return None;
        }
        i256::from_i128(i128::from(mantissa)) << (shift as u8)
    } else if shift > -64 {
        i256::from_i128(i128::from(mantissa >> (-shift)))
    } else {
        i256::ZERO
    };
    Some(if w.is_sign_negative() {
        magnitude.wrapping_neg()
    } else {
        magnitude
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;
    use datafusion::arrow::compute::cast;
    use proptest::prelude::*;

    /// Arrow's own cast, the definition `to_decimal` must agree with.
    fn arrow_cast(x: f64) -> Option<i256> {
        let a = Float64Array::from(vec![x]);
        let c = cast(&a, &exact_type()).ok()?;
        let d = c.as_primitive::<Decimal256Type>();
        d.is_valid(0).then(|| d.value(0))
    }

    #[test]
    fn agrees_with_arrows_cast_on_edges() {
        for x in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            123.45,
            -987_654.321,
            1e-38,
            4e-39,
            6e-39,
            5e-324,
            1e30,
            9.99e37,
            1e38,
            -1e38,
            1e300,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(to_decimal(x), arrow_cast(x), "{x:e}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_arrows_cast(x in proptest::num::f64::ANY) {
            prop_assert_eq!(to_decimal(x), arrow_cast(x));
        }

        #[test]
        fn agrees_on_money(cents in -1_000_000_000_000i64..1_000_000_000_000) {
            let x = cents as f64 / 100.0;
            prop_assert_eq!(to_decimal(x), arrow_cast(x));
        }
    }
}
