//! Buckets: which period (or which elementary interval of a window) a row's instant falls
//! in, found among boundaries known before any row is read.
//!
//! Every boundary of a run — period starts and ends in any zone, across daylight-saving
//! changes, window starts — is computed once by [`super::period::Calendar`]. A row's
//! bucket is then a search among those sorted `i64` microseconds, not a calendar
//! computation per row (`date_trunc` in a zone cost more than reading the data). Rows
//! usually arrive in time order, so the bucket of the previous row is tried first.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Int64Array, PrimitiveArray,
    TimestampMicrosecondArray,
};
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
        match &args.args[0] {
            ColumnarValue::Scalar(s) => {
                let v = match s {
                    ScalarValue::TimestampMicrosecond(Some(t), _) => self.find(*t, &mut 0),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                    v,
                    Some(UTC.into()),
                )))
            }
            ColumnarValue::Array(a) => {
                let out: TimestampMicrosecondArray = per_time(a, |t, hint| self.find(t, hint));
                Ok(ColumnarValue::Array(Arc::new(out.with_timezone(UTC))))
            }
        }
    }
}

/// `bucket_bit(t)`: for the interval `i` holding `t` among sorted boundaries
/// `b_0 < … < b_n`, the bit `1 << (i - 64·word)` when `i` is one of word `word`'s 64
/// intervals; NULL when `t` is NULL, outside `[b_0, b_n)` or in another word. `bit_or` of
/// it over a value's rows is the set of intervals the value occurs in.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BucketBit {
    bucket: BucketStart,
    word: usize,
    /// `bucket_bit` and the word: aggregates of two words need two names in a schema.
    name: String,
}

impl BucketBit {
    pub const NAME: &'static str = "bucket_bit";
    /// Intervals one word holds.
    pub const BITS: usize = 64;

    /// Bits of word `word` of the intervals between `boundaries` (sorted, distinct, at
    /// least two).
    pub fn new(boundaries: Vec<i64>, word: usize) -> Self {
        BucketBit {
            bucket: BucketStart::new(boundaries),
            word,
            name: format!("{}{word}", Self::NAME),
        }
    }

    /// The boundaries, first to last.
    pub fn boundaries(&self) -> &[i64] {
        self.bucket.boundaries()
    }

    /// Which 64 intervals this function's bits stand for.
    pub fn word(&self) -> usize {
        self.word
    }

    #[inline]
    fn bit(&self, t: i64, hint: &mut usize) -> Option<i64> {
        self.bucket.find(t, hint)?;
        let i = hint.checked_sub(self.word * Self::BITS)?;
        (i < Self::BITS).then(|| 1i64 << i)
    }
}

/// `bucket_bit(t)` of word `word` over `boundaries` (sorted, distinct, at least two).
pub fn bucket_bit(t: Expr, boundaries: Vec<i64>, word: usize) -> Expr {
    ScalarUDF::new_from_impl(BucketBit::new(boundaries, word)).call(vec![t])
}

impl ScalarUDFImpl for BucketBit {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.bucket.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.bucket.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(s) => {
                let v = match s {
                    ScalarValue::TimestampMicrosecond(Some(t), _) => self.bit(*t, &mut 0),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Int64(v)))
            }
            ColumnarValue::Array(a) => {
                let out: Int64Array = per_time(a, |t, hint| self.bit(t, hint));
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
}

/// `f` of each time of `a` (a UTC timestamp array), NULL where the time is NULL or `f`
/// gives none. One search hint serves the whole array: neighbouring rows mostly fall in
/// the same interval.
fn per_time<O: ArrowPrimitiveType>(
    a: &ArrayRef,
    mut f: impl FnMut(i64, &mut usize) -> Option<O::Native>,
) -> PrimitiveArray<O> {
    let times = a.as_primitive::<TimestampMicrosecondType>();
    let mut hint = 0;
    if times.null_count() == 0 {
        times.values().iter().map(|&t| f(t, &mut hint)).collect()
    } else {
        times
            .iter()
            .map(|t| t.and_then(|t| f(t, &mut hint)))
            .collect()
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

    #[test]
    fn a_bit_names_the_interval_within_its_word() {
        // 70 intervals: 0..63 in word 0, 64..69 in word 1.
        let bounds: Vec<i64> = (0..=70).map(|i| i * 10).collect();
        let (w0, w1) = (BucketBit::new(bounds.clone(), 0), BucketBit::new(bounds, 1));
        let mut hint = 0;
        let bits: Vec<(Option<i64>, Option<i64>)> = [-1, 0, 15, 635, 640, 699, 700]
            .iter()
            .map(|&t| (w0.bit(t, &mut hint), w1.bit(t, &mut hint)))
            .collect();
        assert_eq!(
            bits,
            [
                (None, None),
                (Some(1), None),
                (Some(2), None),
                (Some(i64::MIN), None),
                (None, Some(1)),
                (None, Some(1 << 5)),
                (None, None),
            ]
        );
    }
}
