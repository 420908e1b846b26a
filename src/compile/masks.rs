//! Distinct counts over windows as interval masks per value.
//!
//! A `count(DISTINCT x)` over a window that spans several elementary intervals (a 90-day
//! window cut by month starts) would otherwise keep one partial per (interval, value)
//! and merge those into a distinct set per period: at 10M activities, 7M partials joined
//! to about three periods each. Here each value gets one row instead: the set of
//! intervals it occurs in, as `bit_or` of one bit per interval ([`bucket_bit`]), in up to
//! [`MAX_WORDS`] 64-bit words. A period counts the values whose set meets its window's
//! set, so each value is tested once per period with a bitwise AND, and nothing is
//! hashed per (interval, value).
//!
//! Only a stage whose aggregates are all distinct counts of one value, without
//! conditions on the period's bounds, takes this shape; `kpi sql` never does, as
//! `bit_or` and `&` are not portable SQL. A local run counts integers (and tuples of
//! them) from a set of values per interval instead ([`super::partials::Distinct`]),
//! which needs no row per value; this shape is left to text.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::functions_aggregate::expr_fn::{bit_or, count};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, col, lit,
};
use datafusion::prelude::SessionContext;

use super::aggregate::{aggregate_renamed, with_filter};
use super::bucket::{BucketBit, bucket_bit};
use super::partials;
use super::period::Period;
use super::snippet::PERIOD;
use super::stage::{START, uses_period};
use super::{Diags, plan_error};
use crate::source::{UTC, utc_timestamp};

/// The most 64-bit words of intervals a value's set may take.
pub const MAX_WORDS: usize = 4;
/// The most periods: each value is tested once per period.
const MAX_PERIODS: usize = 400;
/// The value counted, as a key of the masks.
const VALUE: &str = "__d";

/// `aggregates` (aliased distinct counts of one value) of `rows` grouped by the period's
/// start and `keys`, over the `windows` (period, window start) cut at `bounds`; `None`
/// when the stage does not take this shape (see the module doc). Registers the periods'
/// window masks in `ctx` as `name`.
#[allow(clippy::too_many_arguments)]
pub async fn counted(
    ctx: &SessionContext,
    name: &str,
    rows: LogicalPlan,
    time: &Expr,
    bounds: &[i64],
    windows: &[(Period, i64)],
    keys: &[(String, Expr)],
    aggregates: &[Expr],
) -> Result<Option<LogicalPlanBuilder>, Diags> {
    let words = (bounds.len() - 1).div_ceil(BucketBit::BITS);
    if words > MAX_WORDS || windows.len() > MAX_PERIODS {
        return Ok(None);
    }
    let Some(counts) = distinct_counts(aggregates) else {
        return Ok(None);
    };
    let value = counts[0].value.clone();
    let mask = |j: usize, w: usize| format!("__m{j}_{w}");
    let mut group: Vec<Expr> = keys
        .iter()
        .map(|(n, e)| e.clone().alias(n.as_str()))
        .collect();
    group.push(value.alias(VALUE));
    let mut sets = Vec::new();
    for (j, c) in counts.iter().enumerate() {
        for w in 0..words {
            let bits = bit_or(bucket_bit(time.clone(), bounds.to_vec(), w));
            let bits = match &c.filter {
                Some(f) => with_filter(&bits, f),
                None => bits,
            };
            sets.push(bits.alias(mask(j, w)));
        }
    }
    let per_value = aggregate_renamed(LogicalPlanBuilder::from(rows), group, sets)
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    let periods = window_masks(ctx, name, windows, bounds, words).await?;
    let joined = LogicalPlanBuilder::from(periods)
        .cross_join(per_value)
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    let mut group = vec![col(Column::new(Some(PERIOD), "start")).alias(START)];
    group.extend(keys.iter().map(|(n, _)| col(n.as_str()).alias(n.as_str())));
    let meets = |j: usize| {
        (0..words)
            .map(|w| {
                Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(col(mask(j, w))),
                    Operator::BitwiseAnd,
                    Box::new(col(Column::new(Some(PERIOD), format!("m{w}")))),
                ))
                .not_eq(lit(0i64))
            })
            .reduce(Expr::or)
            .expect("at least one word")
    };
    let merged = counts
        .iter()
        .enumerate()
        .map(|(j, c)| with_filter(&count(col(VALUE)), &meets(j)).alias(c.name.as_str()))
        .collect();
    aggregate_renamed(LogicalPlanBuilder::from(joined), group, merged)
        .map(Some)
        .map_err(plan_error)
}

/// One `count(DISTINCT value) FILTER (WHERE filter) AS name`.
struct DistinctCount {
    name: String,
    value: Expr,
    filter: Option<Expr>,
}

/// `aggregates` as distinct counts of one value, none of whose filters reads the
/// period's bounds; `None` otherwise.
fn distinct_counts(aggregates: &[Expr]) -> Option<Vec<DistinctCount>> {
    let mut out: Vec<DistinctCount> = Vec::new();
    for a in aggregates {
        let Expr::Alias(alias) = a else { return None };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = alias.expr.as_ref()
        else {
            return None;
        };
        let plain = params.order_by.is_empty() && params.null_treatment.is_none();
        if func.name() != "count" || !params.distinct || params.args.len() != 1 || !plain {
            return None;
        }
        let value = params.args[0].clone();
        if out.first().is_some_and(|first| first.value != value) {
            return None;
        }
        let filter = params.filter.as_deref().cloned();
        if filter.as_ref().is_some_and(uses_period) || uses_period(&value) {
            return None;
        }
        out.push(DistinctCount {
            name: alias.name.clone(),
            value,
            filter,
        });
    }
    (!out.is_empty()).then_some(out)
}

/// The relation `__period(start, m0, …)`: each period with the set of intervals its
/// window `[window start, end)` covers, in the words of [`bucket_bit`]. Registered as
/// `name`.
async fn window_masks(
    ctx: &SessionContext,
    name: &str,
    windows: &[(Period, i64)],
    bounds: &[i64],
    words: usize,
) -> Result<LogicalPlan, Diags> {
    let mut masks = vec![vec![0i64; windows.len()]; words];
    for (k, window) in windows.iter().enumerate() {
        for (i, _) in partials::covered(bounds, window) {
            masks[i / BucketBit::BITS][k] |= 1i64 << (i % BucketBit::BITS);
        }
    }
    let mut fields = vec![Field::new("start", utc_timestamp(), false)];
    fields.extend((0..words).map(|w| Field::new(format!("m{w}"), DataType::Int64, false)));
    let starts =
        TimestampMicrosecondArray::from(windows.iter().map(|(p, _)| p.start).collect::<Vec<_>>())
            .with_timezone(UTC);
    let mut columns: Vec<ArrayRef> = vec![Arc::new(starts)];
    columns.extend(
        masks
            .into_iter()
            .map(|m| Arc::new(Int64Array::from(m)) as ArrayRef),
    );
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| plan_error(e.into()))?;
    super::window::period_relation(ctx, name, batch).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_distinct_counts_of_one_value_without_period_conditions_qualify() {
        use datafusion::functions_aggregate::expr_fn::{count_distinct, sum};
        let dc = |c: &str| count_distinct(col(c));
        let period_cond = col("t").lt(col(Column::new(Some(PERIOD), "start")));
        let cases = [
            (vec![dc("a").alias("x")], true),
            (
                vec![
                    dc("a").alias("x"),
                    with_filter(&dc("a"), &col("f")).alias("y"),
                ],
                true,
            ),
            (vec![dc("a").alias("x"), dc("b").alias("y")], false),
            (vec![dc("a").alias("x"), sum(col("a")).alias("y")], false),
            (vec![count(col("a")).alias("x")], false),
            (vec![with_filter(&dc("a"), &period_cond).alias("x")], false),
            (vec![dc("a")], false),
        ];
        for (aggs, ok) in cases {
            assert_eq!(distinct_counts(&aggs).is_some(), ok, "{aggs:?}");
        }
    }
}
