//! Windows from per-interval partials.
//!
//! Every bound of every period's window — window starts, period starts and ends — cuts
//! time into elementary intervals. A row's membership in any window, and any comparison
//! `t < $start` or `t >= $end` of its time with a bound, is the same for every row of one
//! interval. So each row is aggregated once, into its interval (and dimensions, entity,
//! distinct value), and each period's value is merged from the partials of the intervals
//! its window covers: a running sum over periods for `year_to_date`, a merge of distinct
//! sets for a 90-day distinct count, per-(entity, interval) minima for a per-entity
//! window. Rows are never replicated per period.
//!
//! Merging needs aggregates that merge: `count`, `sum`, `min`, `max` and
//! `count(DISTINCT x)` of one `x`. Where one does not (a median), the rows are joined to
//! every period whose window holds their interval, which is still an equality join on
//! the interval rather than a comparison of every row with every period.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, JoinType};
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, max, min, sum};
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    AggregateUDF, BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, col,
    lit,
};
use datafusion::prelude::SessionContext;

use super::aggregate::{aggregate_renamed, with_filter};
use super::bucket::bucket_start;
use super::distinct::{self, Role};
use super::period::Period;
use super::snippet::PERIOD;
use super::stage::{START, and_all, uses_period};
use super::{Diags, plan_error};
use crate::source::{UTC, utc_timestamp};

/// A row's interval, as the partials name it.
pub(super) const INTERVAL: &str = "__iv";
/// The distinct value of a `count(DISTINCT x)`, as a key of the partials.
const DISTINCT: &str = "__d";

/// Every bound of the windows `(period, window start)`, sorted and distinct.
pub fn boundaries(windows: &[(Period, i64)]) -> Vec<i64> {
    let mut b: Vec<i64> = windows
        .iter()
        .flat_map(|(p, w)| [*w, p.start, p.end])
        .collect();
    b.sort_unstable();
    b.dedup();
    b
}

/// The relation `__period(iv, start, end, wstart, at)`: for each period, one row per
/// interval (named by its first instant) that its window covers. Registered as `name`.
pub async fn interval_map(
    ctx: &SessionContext,
    name: &str,
    windows: &[(Period, i64)],
    bounds: &[i64],
) -> Result<LogicalPlan, Diags> {
    let mut rows: [Vec<i64>; 5] = Default::default();
    for window @ (p, w) in windows {
        for (_, b) in covered(bounds, window) {
            for (column, v) in rows.iter_mut().zip([b, p.start, p.end, *w, p.end]) {
                column.push(v);
            }
        }
    }
    let schema = Arc::new(Schema::new(
        ["iv", "start", "end", "wstart", "at"]
            .map(|n| Field::new(n, utc_timestamp(), false))
            .to_vec(),
    ));
    let columns: Vec<ArrayRef> = rows
        .into_iter()
        .map(|v| Arc::new(TimestampMicrosecondArray::from(v).with_timezone(UTC)) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema, columns).map_err(|e| plan_error(e.into()))?;
    super::window::period_relation(ctx, name, batch).await
}

/// The intervals among `bounds` (each named by its index and first instant) that the
/// window `[window start, end)` of a period covers.
pub(super) fn covered<'a>(
    bounds: &'a [i64],
    (p, w): &'a (Period, i64),
) -> impl Iterator<Item = (usize, i64)> + 'a {
    bounds[..bounds.len() - 1]
        .iter()
        .copied()
        .enumerate()
        .filter(move |&(_, b)| *w <= b && b < p.end)
}

/// `rows` joined with every period whose window holds their interval, the period's
/// bounds as `__period` columns, then `period_filters` applied.
pub fn rows_per_period(
    rows: LogicalPlan,
    time: &Expr,
    bounds: &[i64],
    map: LogicalPlan,
    period_filters: &[Expr],
) -> Result<LogicalPlanBuilder, Diags> {
    let on = bucket_start(time.clone(), bounds.to_vec()).eq(col(Column::new(Some(PERIOD), "iv")));
    let mut b = LogicalPlanBuilder::from(rows)
        .join_on(map, JoinType::Inner, vec![on])
        .map_err(plan_error)?;
    if let Some(f) = and_all(period_filters.iter().cloned()) {
        b = b.filter(f).map_err(plan_error)?;
    }
    Ok(b)
}

/// One aggregate, split in two levels.
pub(super) struct Merge {
    /// Per-interval partials, aliased.
    partials: Vec<Expr>,
    /// Over the partials joined to the periods, aliased as the original.
    pub(super) merged: Expr,
    /// The conditions on the period's bounds, over the interval ([`INTERVAL`]).
    pub(super) period: Option<Expr>,
}

/// How a `count(DISTINCT x)` is split into per-interval partials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distinct {
    /// Each value is a key of the partials, and each period counts the values of its
    /// intervals' partials; `single` says every period's window is one interval
    /// ([`one_interval_each`]), where those values are distinct already.
    AsKeys { single: bool },
    /// Each interval's values are one set (a bitmap, for integers), and each period
    /// counts the union of its intervals' sets: the partials are one row per interval
    /// instead of one per (interval, value). Only for counts that [`distinct::in_keys`]
    /// takes, in the local session, which has the sets' aggregates.
    InSets,
}

/// `aggregates` (aliased) of `rows` grouped by the period's start and `keys`, merged
/// from per-interval partials; `None` when some aggregate does not merge.
pub fn merged(
    rows: LogicalPlan,
    time: &Expr,
    bounds: &[i64],
    distinct: Distinct,
    map: LogicalPlan,
    keys: &[(String, Expr)],
    aggregates: &[Expr],
) -> Result<Option<LogicalPlanBuilder>, Diags> {
    let Some((merges, level1)) = per_interval(&rows, time, bounds, keys, aggregates, distinct)?
    else {
        return Ok(None);
    };
    let joined = LogicalPlanBuilder::from(level1)
        .join_on(
            map,
            JoinType::Inner,
            vec![col(INTERVAL).eq(col(Column::new(Some(PERIOD), "iv")))],
        )
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    per_period(&rows, joined, keys, &merges, aggregates)
}

/// `aggregates` split into partials and their merges, and the partials of `rows` grouped
/// by interval ([`INTERVAL`]), `keys` and, counted [`Distinct::AsKeys`], the distinct
/// value; `None` when some aggregate does not merge.
pub(super) fn per_interval(
    rows: &LogicalPlan,
    time: &Expr,
    bounds: &[i64],
    keys: &[(String, Expr)],
    aggregates: &[Expr],
    distinct: Distinct,
) -> Result<Option<(Vec<Merge>, LogicalPlan)>, Diags> {
    let value = match distinct {
        Distinct::AsKeys { .. } => match distinct_argument(aggregates) {
            Some(value) => value,
            None => return Ok(None),
        },
        Distinct::InSets => None,
    };
    let mut merges = Vec::new();
    for (j, a) in aggregates.iter().enumerate() {
        match split(a, time, j, distinct, rows.schema())? {
            Some(m) => merges.push(m),
            None => return Ok(None),
        }
    }
    let mut group = vec![bucket_start(time.clone(), bounds.to_vec()).alias(INTERVAL)];
    group.extend(keys.iter().map(|(n, e)| e.clone().alias(n.as_str())));
    group.extend(value.map(|d| d.alias(DISTINCT)));
    let partials: Vec<Expr> = merges.iter().flat_map(|m| m.partials.clone()).collect();
    let level1 = aggregate_renamed(LogicalPlanBuilder::from(rows.clone()), group, partials)
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    Ok(Some((merges, level1)))
}

/// The merges over `joined` (partials beside the bounds of a period whose window holds
/// them, as [`PERIOD`]) per period start and `keys`; `None` when a merge would change
/// the type of the aggregate of `rows` it stands for (a sum of Decimal128 sums would
/// widen), as the output would change.
pub(super) fn per_period(
    rows: &LogicalPlan,
    joined: LogicalPlan,
    keys: &[(String, Expr)],
    merges: &[Merge],
    aggregates: &[Expr],
) -> Result<Option<LogicalPlanBuilder>, Diags> {
    for (m, a) in merges.iter().zip(aggregates) {
        let before = a.get_type(rows.schema().as_ref());
        let after = m.merged.get_type(joined.schema().as_ref());
        if before.is_err() || before.ok() != after.ok() {
            return Ok(None);
        }
    }
    let mut group = vec![col(Column::new(Some(PERIOD), "start")).alias(START)];
    group.extend(keys.iter().map(|(n, _)| col(n.as_str()).alias(n.as_str())));
    let merged = merges.iter().map(|m| m.merged.clone()).collect();
    aggregate_renamed(LogicalPlanBuilder::from(joined), group, merged)
        .map(Some)
        .map_err(plan_error)
}

/// Whether every period's window `[window start, end)` holds exactly one interval: no
/// bound falls inside it.
pub fn one_interval_each(windows: &[(Period, i64)], bounds: &[i64]) -> bool {
    windows
        .iter()
        .all(|(p, w)| no_bound_inside(bounds, *w, p.end))
}

/// Whether every period `[start, end)` itself (not its window) is one interval.
pub fn one_interval_per_period(windows: &[(Period, i64)], bounds: &[i64]) -> bool {
    windows
        .iter()
        .all(|(p, _)| no_bound_inside(bounds, p.start, p.end))
}

fn no_bound_inside(bounds: &[i64], from: i64, to: i64) -> bool {
    !bounds.iter().any(|b| *b > from && *b < to)
}

/// Whether `aggregates` hold a `count(DISTINCT …)`. Fused with other metrics, or under a
/// FILTER, DataFusion counts it with a hash set per period, which cannot spill; grouped
/// by the value as per-interval partials, it can.
pub fn counts_distinct(aggregates: &[Expr]) -> bool {
    aggregates
        .iter()
        .any(|a| matches!(unalias(a).0, Expr::AggregateFunction(f) if f.params.distinct))
}

/// The one argument of every `count(DISTINCT …)`: `Some(None)` when there is none,
/// `None` when there are several.
pub(super) fn distinct_argument(aggregates: &[Expr]) -> Option<Option<Expr>> {
    let mut found: Option<Expr> = None;
    for a in aggregates {
        let (inner, _) = unalias(a);
        if let Expr::AggregateFunction(f) = inner
            && f.params.distinct
        {
            if f.func.name() != "count" || f.params.args.len() != 1 {
                return None;
            }
            match &found {
                Some(d) if d != &f.params.args[0] => return None,
                _ => found = Some(f.params.args[0].clone()),
            }
        }
    }
    Some(found)
}

fn unalias(e: &Expr) -> (&Expr, Option<&str>) {
    match e {
        Expr::Alias(a) => (a.expr.as_ref(), Some(a.name.as_str())),
        other => (other, None),
    }
}

/// Splits aggregate `a` (the `j`th) of rows of `schema` into partials and their merge.
fn split(
    a: &Expr,
    time: &Expr,
    j: usize,
    distinct: Distinct,
    schema: &DFSchema,
) -> Result<Option<Merge>, Diags> {
    let (inner, name) = unalias(a);
    let Some(name) = name else {
        return Ok(None);
    };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
        return Ok(None);
    };
    if !params.order_by.is_empty() || params.null_treatment.is_some() {
        return Ok(None);
    }
    let Some((row_filter, period_filter)) = split_filter(params.filter.as_deref(), time) else {
        return Ok(None);
    };
    if params.distinct && distinct == Distinct::InSets {
        let [arg] = params.args.as_slice() else {
            return Ok(None);
        };
        let Some((args, tuple)) = distinct::in_keys(arg, schema).map_err(plan_error)? else {
            return Ok(None);
        };
        let p = format!("__p{j}");
        let set = distinct::call(Role::Set, tuple, args, row_filter.map(Box::new));
        let union = distinct::call(
            Role::Union,
            false,
            vec![col(p.as_str())],
            period_filter.clone().map(Box::new),
        );
        return Ok(Some(Merge {
            partials: vec![set.alias(p.as_str())],
            merged: union.alias(name),
            period: period_filter,
        }));
    }
    let single = matches!(distinct, Distinct::AsKeys { single: true });
    Ok(split_merging(
        func,
        params,
        name.to_string(),
        j,
        single,
        row_filter,
        period_filter,
    ))
}

/// Splits an aggregate `func(params)` that merges itself (a distinct count by value)
/// into partials and their merge.
fn split_merging(
    func: &Arc<AggregateUDF>,
    params: &AggregateFunctionParams,
    name: String,
    j: usize,
    single: bool,
    row_filter: Option<Expr>,
    period_filter: Option<Expr>,
) -> Option<Merge> {
    let p = format!("__p{j}");
    let with_row = |e: Expr| match &row_filter {
        Some(f) => Some(with_filter(&e, f)),
        None => Some(e),
    };
    let with_period =
        |e: Expr, extra: Option<Expr>| match and_all(period_filter.iter().cloned().chain(extra)) {
            Some(f) => Some(with_filter(&e, &f)),
            None => Some(e),
        };
    let arg = || params.args.first().cloned();
    let (partial, merged) = match (func.name(), params.distinct) {
        ("count", true) => {
            // Without a row filter every partial group holds the value; a bare distinct
            // count is rewritten by DataFusion into a group-by that can spill.
            let present = row_filter.as_ref().map(|_| col(p.as_str()).gt(lit(0i64)));
            // Within one interval each value is one partial group already.
            let values = if single {
                count(col(DISTINCT))
            } else {
                count_distinct(col(DISTINCT))
            };
            (with_row(count(lit(1)))?, with_period(values, present)?)
        }
        ("count", false) => {
            let partial = Expr::AggregateFunction(AggregateFunction::new_udf(
                func.clone(),
                params.args.clone(),
                false,
                None,
                vec![],
                None,
            ));
            // NULL where no partial passes; readers take a missing count as 0.
            (with_row(partial)?, with_period(sum(col(p.as_str())), None)?)
        }
        ("sum", false) => (
            with_row(sum(arg()?))?,
            with_period(sum(col(p.as_str())), None)?,
        ),
        ("min", _) => (
            with_row(min(arg()?))?,
            with_period(min(col(p.as_str())), None)?,
        ),
        ("max", _) => (
            with_row(max(arg()?))?,
            with_period(max(col(p.as_str())), None)?,
        ),
        _ => return None,
    };
    Some(Merge {
        partials: vec![partial.alias(p.as_str())],
        merged: merged.alias(name),
        period: period_filter,
    })
}

/// A FILTER split into its conjuncts on rows alone and those on the period's bounds,
/// rewritten over the interval; `None` when a bound is compared otherwise than as
/// `t < bound` or `t >= bound` with the time column `t`.
#[allow(clippy::type_complexity)]
fn split_filter(filter: Option<&Expr>, time: &Expr) -> Option<(Option<Expr>, Option<Expr>)> {
    let Some(f) = filter else {
        return Some((None, None));
    };
    let mut rows = Vec::new();
    let mut periods = Vec::new();
    for c in split_conjunction(f) {
        if uses_period(c) {
            periods.push(over_interval(c, time)?);
        } else {
            rows.push(c.clone());
        }
    }
    Some((and_all(rows), and_all(periods)))
}

/// `c` with the time column replaced by the row's interval start, when that keeps its
/// value for every row of an interval.
fn over_interval(c: &Expr, time: &Expr) -> Option<Expr> {
    let replaced = c
        .clone()
        .transform_up(|x| {
            if &x == time {
                Ok(Transformed::yes(col(INTERVAL)))
            } else {
                Ok(Transformed::no(x))
            }
        })
        .ok()?
        .data;
    let is_interval =
        |e: &Expr| matches!(e, Expr::Column(c) if c.relation.is_none() && c.name == INTERVAL);
    let is_bound = |e: &Expr| matches!(e, Expr::Column(c) if c.relation.as_ref().is_some_and(|r| r.table() == PERIOD));
    let mut uses = 0usize;
    let mut safe = 0usize;
    let mut other_columns = false;
    let _ = replaced.apply(|x| {
        match x {
            Expr::Column(_) if is_interval(x) => uses += 1,
            Expr::Column(_) if !is_bound(x) => other_columns = true,
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let ok = (is_interval(left)
                    && is_bound(right)
                    && matches!(op, Operator::Lt | Operator::GtEq))
                    || (is_bound(left)
                        && is_interval(right)
                        && matches!(op, Operator::Gt | Operator::LtEq));
                if ok {
                    safe += 1;
                }
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (!other_columns && uses == safe).then_some(replaced)
}
