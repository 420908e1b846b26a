//! Integer keys dense enough to index an array by value: one key of an integer type
//! whose values span at most a few slots per row (ids, as a rule). kpi's own operators
//! index by value where DataFusion would hash: the lookup's key index
//! ([`super::lookup`]) and the timeline's grouping of partials by key
//! ([`super::timeline`]). A hash costs a cache miss per row in a table of millions of
//! keys; an array slot is found by a subtraction.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;

/// Slots of an array indexed by value per row, at most.
const SLOTS_PER_ROW: i64 = 4;

/// The one key of `keys`, as i64, when it is of an integer type that casts to i64
/// without loss; `None` for other keys.
pub(super) fn values(keys: &[ArrayRef]) -> DfResult<Option<Int64Array>> {
    match keys {
        [k] if matches!(
            k.data_type(),
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
        ) =>
        {
            as_i64(k).map(Some)
        }
        _ => Ok(None),
    }
}

/// `k`, of an integer type, as i64.
pub(super) fn as_i64(k: &ArrayRef) -> DfResult<Int64Array> {
    Ok(cast(k, &DataType::Int64)?.as_primitive().clone())
}

/// The smallest and largest non-NULL value of `arrays`, when the slots from one to the
/// other are at most [`SLOTS_PER_ROW`] per row of `rows` (counting at least 1024 rows)
/// and fit a `u32` with room for one more: an array indexed by `value - min`.
pub(super) fn span(arrays: &[Int64Array], rows: usize) -> Option<(i64, i64)> {
    let mut range: Option<(i64, i64)> = None;
    for a in arrays {
        let (Some(lo), Some(hi)) = (
            datafusion::arrow::compute::min(a),
            datafusion::arrow::compute::max(a),
        ) else {
            continue;
        };
        range = Some(range.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))));
    }
    let (min, max) = range?;
    let rows = i64::try_from(rows).unwrap_or(i64::MAX).max(1024);
    max.checked_sub(min)
        .filter(|&s| s < SLOTS_PER_ROW.saturating_mul(rows) && s < i64::from(u32::MAX) - 1)
        .map(|_| (min, max))
}
