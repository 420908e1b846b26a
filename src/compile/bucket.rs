//! Buckets: which period (or which elementary interval of a window) a row's instant falls
//! in, found among boundaries known before any row is read.
//!
//! Every boundary of a run — period starts and ends in any zone, across daylight-saving
//! changes, window starts — is computed once by [`super::period::Calendar`]. A row's
//! bucket is then a search among those sorted `i64` microseconds, not a calendar
//! computation per row (`date_trunc` in a zone cost more than reading the data). Rows
//! usually arrive in time order, so the bucket of the previous row is tried first.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimestampMicrosecondType};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::source::{UTC, utc_timestamp};

/// `bucket_start(t)`: the greatest boundary `b_i <= t` of sorted boundaries
/// `b_0 < … < b_n`, as a UTC timestamp; NULL when `t` is NULL or outside `[b_0, b_n)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BucketStart {
    boundaries: Vec<i64>,
    signature: Signature,
}

impl BucketStart {
    pub const NAME: &'static str = "bucket_start";

    /// Buckets between sorted, distinct `boundaries` (at least two).
    pub fn new(boundaries: Vec<i64>) -> Self {
        debug_assert!(boundaries.len() >= 2);
        debug_assert!(boundaries.windows(2).all(|w| w[0] < w[1]));
        BucketStart {
            boundaries,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// The boundaries, first to last.
    pub fn boundaries(&self) -> &[i64] {
        &self.boundaries
    }

    /// The start of the bucket holding `t`; `hint` is the index found last.
    #[inline]
    fn find(&self, t: i64, hint: &mut usize) -> Option<i64> {
        let b = &self.boundaries;
        let last = b.len() - 1;
        if t < b[0] || t >= b[last] {
            return None;
        }
        let h = *hint;
        if !(b[h] <= t && t < b[h + 1]) {
            *hint = b.partition_point(|&x| x <= t) - 1;
        }
        Some(b[*hint])
    }
}

/// `bucket_start(t)` over `boundaries` (sorted, distinct, at least two).
pub fn bucket_start(t: Expr, boundaries: Vec<i64>) -> Expr {
    ScalarUDF::new_from_impl(BucketStart::new(boundaries)).call(vec![t])
}

impl ScalarUDFImpl for BucketStart {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(utc_timestamp())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null] => {
                Ok(vec![utc_timestamp()])
            }
            _ => plan_err!("{}(t) takes one timestamp, got {arg_types:?}", Self::NAME),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let mut hint = 0;
        match &args.args[0] {
            ColumnarValue::Scalar(s) => {
                let v = match s {
                    ScalarValue::TimestampMicrosecond(Some(t), _) => self.find(*t, &mut hint),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                    v,
                    Some(UTC.into()),
                )))
            }
            ColumnarValue::Array(a) => {
                let times = a.as_primitive::<TimestampMicrosecondType>();
                let out: TimestampMicrosecondArray = if times.null_count() == 0 {
                    times
                        .values()
                        .iter()
                        .map(|&t| self.find(t, &mut hint))
                        .collect()
                } else {
                    times
                        .iter()
                        .map(|t| t.and_then(|t| self.find(t, &mut hint)))
                        .collect()
                };
                Ok(ColumnarValue::Array(Arc::new(out.with_timezone(UTC))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_bucket_of_every_instant_and_nothing_outside() {
        let b = BucketStart::new(vec![10, 20, 35, 50]);
        let mut hint = 0;
        let found: Vec<Option<i64>> = [9, 10, 19, 20, 34, 35, 49, 50, 12, 40]
            .iter()
            .map(|&t| b.find(t, &mut hint))
            .collect();
        assert_eq!(
            found,
            [
                None,
                Some(10),
                Some(10),
                Some(20),
                Some(20),
                Some(35),
                Some(35),
                None,
                Some(10),
                Some(35)
            ]
        );
    }
}
