//! Per-entity windows merged along each entity's own timeline, by kpi's own operator.
//!
//! Merged as a plan, a per-entity window joins each (entity, interval) partial to every
//! period whose window holds it, then groups the pairs by (period, entity): at 10M
//! orders, won-back customers spent 4 s of their 6 s in that join and 4 s in that
//! group-by, hashing millions of (period, customer) groups, and DataFusion's window
//! functions, which could read each entity's partials in order, cost more still (one
//! frame per customer). Yet an entity has few partials (a customer about four), and the
//! periods they meet follow from their intervals alone. So [`exec::TimelineExec`] takes
//! the partials hash-partitioned by entity, orders each partition by (entity, interval)
//! with two counting sorts, and walks each entity's intervals once: each period they
//! reach gets the partials that its window, and each aggregate's conditions on the
//! bounds, take. The merges are
//! DataFusion's own accumulators of the merge aggregate (`sum`, `min`, `max`), fed per
//! output row, so the values are the bytes the join and the group-by give; a `sum` of
//! 64-bit integers (counts) and a `min` or `max` of them or of timestamps are folded by
//! the operator itself, to the same values, from the partials copied into the order it
//! reads them in.
//!
//! Without a memory limit the operator holds a partition's partials (counted by the
//! pool, which is then unbounded); under one, it asks for them sorted by (keys,
//! interval) instead, a sort that spills, and holds only a run of whole keys at a time.
//! It cannot travel to a cluster or into exported SQL, so only local runs use it
//! ([`super::stage::Request::in_process`]); the others keep the plan of
//! [`super::partials`] and [`super::running`].

mod exec;
mod runs;
mod states;

pub use exec::partials_read_by;

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    AggregateUDF, BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, col,
};

use super::partials::{self, INTERVAL, Merge};
use super::period::Period;
use super::snippet::PERIOD;
use super::stage::START;
use super::{Diags, plan_error};
use crate::source::utc_timestamp;

/// The most (merge, period, interval) triples the inclusion table may hold.
const MOST_CELLS: usize = 16 << 20;

/// The aggregates (aliased) of `rows` grouped by the period's start (`__start`) and
/// `keys`, each merged from the per-interval partials `level1` (split into `merges` by
/// [`partials::per_interval`]) that its window and its conditions on the bounds take, as
/// the plans that join the partials to the periods give them. With `along.anchored`,
/// only the (period, keys) with a partial inside the period are output (keys with a NULL
/// are none, as an equality join drops them); without, every (period, keys) with a
/// partial in the period's window. `None` when an aggregate does
/// not merge the same type, counts distinct values, or a condition on the bounds cannot
/// be read here.
#[allow(clippy::too_many_arguments)]
pub(super) fn merged(
    rows: &LogicalPlan,
    merges: &[Merge],
    level1: LogicalPlan,
    windows: &[(Period, i64)],
    bounds: &[i64],
    keys: &[(String, Expr)],
    aggregates: &[Expr],
    along: Along,
    name: &str,
) -> Result<Option<LogicalPlanBuilder>, Diags> {
    if partials::distinct_argument(aggregates) != Some(None) || bounds.len() < 2 {
        return Ok(None);
    }
    let intervals = bounds.len() - 1;
    if merges.len() * windows.len() * intervals > MOST_CELLS {
        return Ok(None);
    }
    let input = level1.schema().as_arrow();
    let index = |n: &str| input.index_of(n).ok();
    let mut specs = Vec::new();
    let mut fields = vec![Field::new(START, utc_timestamp(), false)];
    let mut key_columns = Vec::new();
    for (n, _) in keys {
        let Some(i) = index(n) else { return Ok(None) };
        key_columns.push(i);
        fields.push(input.field(i).clone());
    }
    for (m, a) in merges.iter().zip(aggregates) {
        let Some((func, partial, out)) = merge_of(&m.merged) else {
            return Ok(None);
        };
        let Some(column) = index(&partial) else {
            return Ok(None);
        };
        // As in the plan, a merge must keep the type of the aggregate it stands for.
        let merged = Expr::AggregateFunction(AggregateFunction::new_udf(
            func.clone(),
            vec![col(partial.as_str())],
            false,
            None,
            vec![],
            None,
        ));
        let (Ok(before), Ok(after)) = (
            a.get_type(rows.schema().as_ref()),
            merged.get_type(level1.schema().as_ref()),
        ) else {
            return Ok(None);
        };
        if before != after {
            return Ok(None);
        }
        let Some(include) = inclusion(m.period.as_ref(), windows, bounds) else {
            return Ok(None);
        };
        fields.push(Field::new(out.as_str(), after, true));
        specs.push(MergeSpec {
            func,
            column,
            include,
        });
    }
    let reach = reach(windows, bounds, along.anchored);
    let Some(interval) = index(INTERVAL) else {
        return Ok(None);
    };
    let spec = Spec {
        keys: key_columns,
        interval,
        bounds: bounds.to_vec(),
        starts: windows.iter().map(|(p, _)| p.start).collect(),
        reach,
        merges: specs,
        along,
    };
    let table = exec::table(level1, spec, Arc::new(Schema::new(fields.clone())));
    let columns = fields
        .iter()
        .map(|f| col(Column::new(Some(name), f.name())).alias(f.name()));
    LogicalPlanBuilder::scan(name, provider_as_source(table), None)
        .and_then(|b| b.project(columns))
        .map(Some)
        .map_err(plan_error)
}

/// Whether each period takes each interval's partial into a merge with conditions
/// `period` on the bounds, at `period index * intervals + interval index`: the
/// intervals its window covers where the conditions hold. `None` when a condition
/// cannot be read ([`truth`]).
fn inclusion(
    period: Option<&Expr>,
    windows: &[(Period, i64)],
    bounds: &[i64],
) -> Option<Vec<bool>> {
    let intervals = bounds.len() - 1;
    let mut include = vec![false; windows.len() * intervals];
    for (k, window @ (p, w)) in windows.iter().enumerate() {
        for (i, b) in partials::covered(bounds, window) {
            include[k * intervals + i] = match period {
                None => true,
                Some(f) => truth(f, b, p, *w)?,
            };
        }
    }
    Some(include)
}

/// For each interval, the periods a partial of it gives an output row, ascending: those
/// whose window covers it, or with `anchored` those it lies inside.
fn reach(windows: &[(Period, i64)], bounds: &[i64], anchored: bool) -> Vec<Vec<u32>> {
    let mut reach = vec![Vec::new(); bounds.len() - 1];
    for (k, window @ (p, _)) in windows.iter().enumerate() {
        for (i, b) in partials::covered(bounds, window) {
            if !anchored || (p.start <= b && b < p.end) {
                reach[i].push(k as u32);
            }
        }
    }
    reach
}

/// The merge aggregate, the partial column it reads and its output name, of a merge
/// `func(partial) [FILTER …] AS name`.
fn merge_of(merged: &Expr) -> Option<(Arc<AggregateUDF>, String, String)> {
    let Expr::Alias(a) = merged else { return None };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = a.expr.as_ref() else {
        return None;
    };
    match params.args.as_slice() {
        [Expr::Column(c)] if !params.distinct && params.order_by.is_empty() => {
            Some((func.clone(), c.name.clone(), a.name.clone()))
        }
        _ => None,
    }
}

/// The value of the condition `f` (comparisons of [`INTERVAL`] with the period's bounds,
/// under AND, OR and NOT) for the interval starting at `iv` in period `p` with window
/// start `w`; `None` for anything else.
fn truth(f: &Expr, iv: i64, p: &Period, w: i64) -> Option<bool> {
    let value = |e: &Expr| match e {
        Expr::Column(c) if c.relation.is_none() && c.name == INTERVAL => Some(iv),
        Expr::Column(c) if c.relation.as_ref().is_some_and(|r| r.table() == PERIOD) => {
            match c.name.as_str() {
                "start" => Some(p.start),
                "end" | "at" => Some(p.end),
                "wstart" => Some(w),
                _ => None,
            }
        }
        _ => None,
    };
    match f {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => Some(truth(left, iv, p, w)? && truth(right, iv, p, w)?),
            Operator::Or => Some(truth(left, iv, p, w)? || truth(right, iv, p, w)?),
            _ => {
                let (l, r) = (value(left)?, value(right)?);
                match op {
                    Operator::Lt => Some(l < r),
                    Operator::LtEq => Some(l <= r),
                    Operator::Gt => Some(l > r),
                    Operator::GtEq => Some(l >= r),
                    Operator::Eq => Some(l == r),
                    Operator::NotEq => Some(l != r),
                    _ => None,
                }
            }
        },
        Expr::Not(x) => truth(x, iv, p, w).map(|t| !t),
        Expr::Literal(ScalarValue::Boolean(Some(b)), _) => Some(*b),
        _ => None,
    }
}

/// What the operator computes, fixed when the plan is built.
#[derive(Debug)]
pub(super) struct Spec {
    /// The key columns of the partials, in output order.
    pub(super) keys: Vec<usize>,
    /// The partials' interval column.
    pub(super) interval: usize,
    /// The interval starts (and the last end), sorted.
    pub(super) bounds: Vec<i64>,
    /// Each period's start, in the order of the inclusion tables.
    pub(super) starts: Vec<i64>,
    /// For each interval, the periods a partial of it puts a row in, ascending.
    pub(super) reach: Vec<Vec<u32>>,
    pub(super) merges: Vec<MergeSpec>,
    pub(super) along: Along,
}

/// How a key's partials are merged, and how the operator reads them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Along {
    /// Only at the periods the key has partials in (the formula ignores the others).
    pub(super) anchored: bool,
    /// Under a memory limit: past its fair share of the pool, the operator spills its
    /// partials in buckets of whole keys and merges a bucket at a time.
    pub(super) spills: bool,
}

#[derive(Debug)]
pub(super) struct MergeSpec {
    pub(super) func: Arc<AggregateUDF>,
    /// The partial column it merges.
    pub(super) column: usize,
    /// Whether period `k` takes interval `i`'s partial, at `k * intervals + i`.
    pub(super) include: Vec<bool>,
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use datafusion::common::Column;
    use datafusion::logical_expr::col;

    use super::{INTERVAL, PERIOD, Period, inclusion, reach};

    /// Three periods of 10 units from 100, each with a window of two periods (the first
    /// one's reaching back to 90): intervals start at 90, 100, 110 and 120.
    fn windows() -> (Vec<(Period, i64)>, Vec<i64>) {
        let date = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let p = |start: i64| Period {
            date,
            start,
            end: start + 10,
        };
        let w = vec![(p(100), 90), (p(110), 100), (p(120), 110)];
        (w, vec![90, 100, 110, 120, 130])
    }

    #[test]
    fn a_period_takes_the_intervals_its_window_and_the_conditions_on_its_bounds_allow() {
        let (w, bounds) = windows();
        let before = col(INTERVAL).lt(col(Column::new(Some(PERIOD), "start")));
        // By hand, `t < $start` in a window of two periods: only the period before.
        let take = inclusion(Some(&before), &w, &bounds).unwrap();
        assert_eq!(
            take,
            [
                true, false, false, false, //
                false, true, false, false, //
                false, false, true, false,
            ]
        );
        // Without a condition: the whole window, the period and the one before.
        let all = inclusion(None, &w, &bounds).unwrap();
        assert_eq!(
            all,
            [
                true, true, false, false, //
                false, true, true, false, //
                false, false, true, true,
            ]
        );
        // A comparison with anything but the bounds is not read here.
        assert!(inclusion(Some(&col(INTERVAL).lt(col("other"))), &w, &bounds).is_none());
    }

    #[test]
    fn a_partial_reaches_the_windows_holding_it_or_with_anchors_its_own_period() {
        let (w, bounds) = windows();
        // Interval 90 lies in the first period's window only; 110 in the second's and
        // the third's; with anchors each interval reaches the period it lies in.
        assert_eq!(
            reach(&w, &bounds, false),
            [vec![0], vec![0, 1], vec![1, 2], vec![2]]
        );
        assert_eq!(
            reach(&w, &bounds, true),
            [vec![], vec![0], vec![1], vec![2]]
        );
    }
}
