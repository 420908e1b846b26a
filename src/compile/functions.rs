//! kpi's own SQL functions, registered in every session: exact durations between timestamps.
//!
//! `hours_between(a, b)` and `days_between(a, b)` are `(b - a)` in hours or days, computed
//! from the exact microsecond difference with a single division (seconds / 3600, seconds /
//! 86400 as the catalogue defines them), NULL when either side is NULL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::source::utc_timestamp;

/// A duration between two timestamps in a fixed unit.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Between {
    name: &'static str,
    micros_per_unit: i64,
    signature: Signature,
}

impl Between {
    fn new(name: &'static str, micros_per_unit: i64) -> Self {
        Between {
            name,
            micros_per_unit,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Between {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "{}(from, to) takes two timestamps, got {} arguments",
                self.name,
                arg_types.len()
            );
        }
        for t in arg_types {
            if !matches!(
                t,
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null
            ) {
                return plan_err!("{}(from, to) takes two timestamps, got {t}", self.name);
            }
        }
        Ok(vec![utc_timestamp(), utc_timestamp()])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let cast = |a: &dyn Array| -> Result<TimestampMicrosecondArray> {
            let c = datafusion::arrow::compute::cast(a, &utc_timestamp())?;
            Ok(c.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("cast to timestamp")
                .clone())
        };
        let (from, to) = (cast(&arrays[0])?, cast(&arrays[1])?);
        let unit = self.micros_per_unit as f64;
        let out: Float64Array = (0..from.len().min(to.len()))
            .map(|i| {
                if from.is_null(i) || to.is_null(i) {
                    return None;
                }
                to.value(i)
                    .checked_sub(from.value(i))
                    .map(|d| d as f64 / unit)
            })
            .collect();
        if all_scalar {
            let v = (!out.is_empty() && out.is_valid(0)).then(|| out.value(0));
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Float64(v),
            ));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Every function kpi adds to DataFusion's.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(Between::new("hours_between", 3_600_000_000)),
        ScalarUDF::new_from_impl(Between::new("days_between", 86_400_000_000)),
    ]
}
