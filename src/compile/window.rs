//! Plans of stages that are not fused: rows of one metric grouped by period, through
//! each value's set of intervals for distinct counts over windows ([`super::masks`]),
//! per-interval partials of windows ([`super::partials`]) — for a per-entity window,
//! merged at each entity's active periods where the formula allows
//! ([`super::running`]) — rows joined to the periods on their interval, or rows joined
//! to the period instants of a state metric. Under a memory limit, distinct counts of
//! bucketed metrics go through the partials too, as a group-by that spills.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, JoinType};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col, lit};
use datafusion::prelude::SessionContext;

use super::aggregate::aggregate_renamed;
use super::bucket::bucket_start;
use super::masks;
use super::partials::{self, Distinct};
use super::period::{Calendar, Period};
use super::relation::Relation;
use super::running;
use super::snippet::PERIOD;
use super::stage::{
    EntityColumns, MIN_INSTANT, Request, START, StageInput, and_all, instant, register_memory,
};
use super::timeline::{self, Along};
use super::{Diags, ident, plan_error};
use crate::source::{UTC, utc_timestamp};
use crate::spec::At;
use crate::validate::Aggregate;

/// The first aggregation of a stage that is not fused: `aggs` grouped by the period's
/// start (`__start`) and `keys`, with a short account of how.
pub(super) async fn first_aggregation(
    input: &StageInput<'_>,
    keys: &[(String, Expr)],
    aggs: Vec<Expr>,
) -> Result<(LogicalPlanBuilder, String), Diags> {
    let (agg, p) = (input.agg, input.planned);
    let (rel, req) = (input.rel, input.req);
    let cal = req.calendar;
    let first = req.periods.first().expect("at least one period");
    let last = req.periods.last().expect("at least one period");
    if !p.needs_period(agg) && !spillable_distinct(input, &aggs) {
        // Bucketed, per entity.
        let t = p.time.clone().expect("bucketed stages have a time");
        let rows = filtered(rel, p.row_filters.clone(), &t, first.start, last.end)?;
        let group = grouped(period_bucket(t, cal, first.start, last.end), keys);
        let b = aggregate_renamed(rows, group, aggs).map_err(plan_error)?;
        return Ok((b, format!("rows bucketed by {}", cal.grain)));
    }
    let windows = windows(agg, req);
    match (&p.time, agg.at) {
        (Some(t), None) if p.period_filters.iter().all(|f| !uses_period_beyond(f, t)) => {
            over_windows(input, keys, aggs, t, &windows).await
        }
        // State at an instant, or filters comparing other columns with the bounds.
        _ => joined_to_bounds(input, keys, aggs, &windows).await,
    }
}

/// The first aggregation of a windowed stage whose conditions on the bounds compare
/// only its time column with them: from per-interval partials where its aggregates
/// merge, else its rows joined to the periods on their interval.
async fn over_windows(
    input: &StageInput<'_>,
    keys: &[(String, Expr)],
    aggs: Vec<Expr>,
    t: &Expr,
    windows: &[(Period, i64)],
) -> Result<(LogicalPlanBuilder, String), Diags> {
    let (ctx, m, agg, p) = (input.ctx, input.metric, input.agg, input.planned);
    let (rel, req) = (input.rel, input.req);
    let spine_name = spine_name(m);
    let last = req.periods.last().expect("at least one period");
    let lo = windows.iter().map(|w| w.1).min().unwrap_or(MIN_INSTANT);
    let rows = filtered(rel, p.row_filters.clone(), t, lo, last.end)?;
    let bounds = partials::boundaries(windows);
    let shape_of = |how: &str| match agg.window {
        Some(w) => format!("{how} of the window ({w})"),
        None => format!("{how} of each period's bounds"),
    };
    let rows_plan = rows.build().map_err(plan_error)?;
    let no_bounds = p.period_filters.is_empty();
    let map = partials::interval_map(ctx, &spine_name, windows, &bounds).await?;
    // Distinct counts of integers as one set per interval, where kpi's aggregates run.
    if no_bounds
        && !req.portable
        && req.in_process
        && p.entity.is_none()
        && partials::counts_distinct(&aggs)
        && let Some(b) = partials::merged(
            rows_plan.clone(),
            t,
            &bounds,
            Distinct::InSets,
            map.clone(),
            keys,
            &aggs,
        )?
    {
        return Ok((
            b,
            shape_of("each interval's set of distinct values, the sets of the intervals united"),
        ));
    }
    if no_bounds
        && !req.portable
        && let Some(b) = masks::counted(
            ctx,
            &format!("{spine_name}_masks"),
            rows_plan.clone(),
            t,
            &bounds,
            windows,
            keys,
            &aggs,
        )
        .await?
    {
        return Ok((
            b,
            shape_of("each value's set of intervals met with the set"),
        ));
    }
    if no_bounds
        && p.entity.is_some()
        && req.in_process
        && let Some((merges, level1)) =
            partials::per_interval(&rows_plan, t, &bounds, keys, &aggs, AS_KEYS)?
        && let Some(b) = timeline::merged(
            &rows_plan,
            &merges,
            level1,
            windows,
            &bounds,
            keys,
            &aggs,
            Along {
                anchored: false,
                spills: req.bounded,
            },
            &timeline_name(m),
        )?
    {
        return Ok((
            b,
            shape_of("per-interval partials merged along each key's timeline over the intervals"),
        ));
    }
    let single = partials::one_interval_each(windows, &bounds);
    if no_bounds
        && let Some(b) = partials::merged(
            rows_plan.clone(),
            t,
            &bounds,
            Distinct::AsKeys { single },
            map.clone(),
            keys,
            &aggs,
        )?
    {
        return Ok((
            b,
            shape_of("per-interval partials merged over the intervals"),
        ));
    }
    let joined = partials::rows_per_period(rows_plan, t, &bounds, map, &p.period_filters)?;
    let group = grouped(col(Column::new(Some(PERIOD), "start")), keys);
    let b = aggregate_renamed(joined, group, aggs).map_err(plan_error)?;
    Ok((
        b,
        shape_of(
            "rows joined on their interval to every period (no partials: an aggregate that does not merge)",
        ),
    ))
}

/// The first aggregation of a state metric (rows active at an instant of each period)
/// or of a stage with other conditions on the bounds: its rows joined to each period's
/// bounds.
async fn joined_to_bounds(
    input: &StageInput<'_>,
    keys: &[(String, Expr)],
    aggs: Vec<Expr>,
    windows: &[(Period, i64)],
) -> Result<(LogicalPlanBuilder, String), Diags> {
    let (ctx, m, agg, p) = (input.ctx, input.metric, input.agg, input.planned);
    let (rel, req) = (input.rel, input.req);
    let last = req.periods.last().expect("at least one period");
    let spine = spine(ctx, &spine_name(m), windows, agg.at).await?;
    let mut preds = p.row_filters.clone();
    let mut cond = p.period_filters.clone();
    if let Some(t) = &p.time {
        let lo = windows.iter().map(|w| w.1).min().unwrap_or(MIN_INSTANT);
        if lo > MIN_INSTANT {
            preds.push(t.clone().gt_eq(instant(lo)));
        }
        preds.push(t.clone().lt(instant(last.end)));
        cond.push(t.clone().gt_eq(col(Column::new(Some(PERIOD), "wstart"))));
        cond.push(t.clone().lt(col(Column::new(Some(PERIOD), "end"))));
    }
    cond.extend(p.active.clone());
    let mut rows = LogicalPlanBuilder::from(rel.plan.clone());
    if let Some(pr) = and_all(preds) {
        rows = rows.filter(pr).map_err(plan_error)?;
    }
    let on = and_all(cond).unwrap_or(lit(true));
    let rows = rows
        .join_on(spine, JoinType::Inner, vec![on])
        .map_err(plan_error)?;
    let group = grouped(col(Column::new(Some(PERIOD), "start")), keys);
    let b = aggregate_renamed(rows, group, aggs).map_err(plan_error)?;
    let shape = match agg.at {
        Some(at) => format!(
            "rows active at each period's {}",
            if at == At::Start { "start" } else { "end" }
        ),
        None => "rows joined to each period's bounds".to_string(),
    };
    Ok((b, shape))
}

/// The group of a first aggregation: the period's start `start` (as `__start`), then
/// `keys`.
fn grouped(start: Expr, keys: &[(String, Expr)]) -> Vec<Expr> {
    let mut group = vec![start.alias(START)];
    group.extend(keys.iter().map(|(n, e)| e.clone().alias(n.as_str())));
    group
}

/// How the partials of a per-entity window count distinct values: by value.
const AS_KEYS: Distinct = Distinct::AsKeys { single: false };

/// Whether a bucketed stage's distinct counts go through per-interval partials: under a
/// memory limit, where their hash sets could not spill ([`partials::counts_distinct`]).
pub(super) fn spillable_distinct(input: &StageInput<'_>, aggs: &[Expr]) -> bool {
    input.req.bounded && input.planned.entity.is_none() && partials::counts_distinct(aggs)
}

/// Each requested period with the start of its window ([`MIN_INSTANT`] for all history).
fn windows(agg: &Aggregate, req: &Request<'_>) -> Vec<(Period, i64)> {
    req.periods
        .iter()
        .map(|p| {
            let start = req.calendar.window_start(*p, agg.window);
            (*p, start.unwrap_or(MIN_INSTANT))
        })
        .collect()
}

/// The in-memory table of a metric's periods and window bounds.
fn spine_name(m: &crate::validate::Metric) -> String {
    format!("__periods_{}", ident(&m.name))
}

/// The table a metric's partials are read as, merged along each key's timeline.
fn timeline_name(m: &crate::validate::Metric) -> String {
    format!("__timeline_{}", ident(&m.name))
}

/// The first aggregation of a per-entity window stage made only for the entities with
/// rows in each period, when the formula's aggregates `formula` ignore the others
/// ([`running`]); with a short account of how. `None` when the stage has another shape
/// or the formula may count an entity without rows in the period.
pub(super) async fn entity_history(
    input: &StageInput<'_>,
    keys: &[(String, Expr)],
    entity: &EntityColumns,
    formula: &[Expr],
) -> Result<Option<(LogicalPlanBuilder, String)>, Diags> {
    let (ctx, m, agg, p) = (input.ctx, input.metric, input.agg, input.planned);
    let (rel, req) = (input.rel, input.req);
    let (aggs, columns) = (&entity.aggregates, &entity.columns);
    let (Some(t), Some((entity, _)), None) = (&p.time, &p.entity, agg.at) else {
        return Ok(None);
    };
    // Dimension values seen only outside the anchors would vanish from the output.
    if !p.needs_period(agg) || !p.dims.is_empty() || !p.period_filters.is_empty() {
        return Ok(None);
    }
    let windows = windows(agg, req);
    let lo = windows.iter().map(|w| w.1).min().unwrap_or(MIN_INSTANT);
    let last = req.periods.last().expect("at least one period");
    let rows = filtered(rel, p.row_filters.clone(), t, lo, last.end)?
        .build()
        .map_err(plan_error)?;
    let bounds = partials::boundaries(&windows);
    let Some((merges, level1)) = partials::per_interval(&rows, t, &bounds, keys, aggs, AS_KEYS)?
    else {
        return Ok(None);
    };
    let Some(before) = running::reads_before_each(&merges, &windows) else {
        return Ok(None);
    };
    // Along each entity's timeline where the plan runs in this process; else joined.
    let along = match req.in_process {
        true => timeline::merged(
            &rows,
            &merges,
            level1.clone(),
            &windows,
            &bounds,
            keys,
            aggs,
            Along {
                anchored: true,
                spills: req.bounded,
            },
            &timeline_name(m),
        )?,
        false => None,
    };
    let (b, along) = match along {
        Some(b) => (b, " along its timeline"),
        // Under a memory limit the join to the anchors could not spill its table.
        None if req.bounded => return Ok(None),
        None => {
            let map = partials::interval_map(ctx, &spine_name(m), &windows, &bounds).await?;
            let joined =
                running::per_anchor(&rows, &merges, level1, &windows, &bounds, map, keys, aggs)?;
            let Some(b) = joined else {
                return Ok(None);
            };
            (b, "")
        }
    };
    let reads_before = |name: &String| {
        aggs.iter()
            .zip(&before)
            .find(|(a, _)| a.schema_name().to_string() == *name)
            .is_none_or(|(_, b)| *b)
    };
    let empty: Vec<(String, Expr)> = columns
        .iter()
        .filter(|c| !c.aggregates.iter().any(reads_before))
        .map(|c| {
            (
                c.name.clone(),
                running::empty_value(&c.value, &c.aggregates),
            )
        })
        .collect();
    if empty.is_empty() || !running::ignores_empty(formula, &empty) {
        return Ok(None);
    }
    let window = agg.window.map(|w| format!(" ({w})")).unwrap_or_default();
    Ok(Some((
        b,
        format!(
            "per-interval partials of each {entity} merged{along} over the window{window} of \
             the periods it has rows in only (the formula ignores the others)"
        ),
    )))
}

/// Whether a period filter reads columns other than the time column and the bounds (then
/// rows must meet each period one by one).
fn uses_period_beyond(f: &Expr, time: &Expr) -> bool {
    let stripped = f
        .clone()
        .transform_up(|x| {
            if &x == time {
                Ok(Transformed::yes(lit(0i64)))
            } else {
                Ok(Transformed::no(x))
            }
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| f.clone());
    stripped
        .column_refs()
        .iter()
        .any(|c| c.relation.as_ref().is_none_or(|r| r.table() != PERIOD))
}

/// The rows of `rel` passing `preds`, with time in `[lo, hi)` (`lo` unbounded at
/// [`MIN_INSTANT`]).
fn filtered(
    rel: &Relation,
    mut preds: Vec<Expr>,
    time: &Expr,
    lo: i64,
    hi: i64,
) -> Result<LogicalPlanBuilder, Diags> {
    if lo > MIN_INSTANT {
        preds.push(time.clone().gt_eq(instant(lo)));
    }
    preds.push(time.clone().lt(instant(hi)));
    LogicalPlanBuilder::from(rel.plan.clone())
        .filter(and_all(preds).expect("non-empty"))
        .map_err(plan_error)
}

/// The start of the period holding `t`, among every period of `cal` in `[lo, hi)`.
pub(super) fn period_bucket(t: Expr, cal: Calendar, lo: i64, hi: i64) -> Expr {
    let periods = cal.periods(lo, hi);
    let mut bounds: Vec<i64> = periods.iter().map(|p| p.start).collect();
    bounds.push(periods.last().map_or(hi, |p| p.end));
    bucket_start(t, bounds)
}

/// The periods as a relation `__period(start, end, wstart, at)`, registered in `ctx` as
/// an in-memory table `name` (so that plans and their SQL name it).
async fn spine(
    ctx: &SessionContext,
    name: &str,
    windows: &[(Period, i64)],
    at: Option<At>,
) -> Result<LogicalPlan, Diags> {
    let column = |f: &dyn Fn(&(Period, i64)) -> i64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(windows.iter().map(f).collect::<Vec<_>>())
                .with_timezone(UTC),
        )
    };
    let at_of = |(p, _): &(Period, i64)| {
        if at == Some(At::Start) {
            p.start
        } else {
            p.end
        }
    };
    let schema = Arc::new(Schema::new(
        ["start", "end", "wstart", "at"]
            .map(|n| Field::new(n, utc_timestamp(), false))
            .to_vec(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            column(&|w| w.0.start),
            column(&|w| w.0.end),
            column(&|w| w.1),
            column(&at_of),
        ],
    )
    .map_err(|e| plan_error(e.into()))?;
    period_relation(ctx, name, batch).await
}

/// `batch` registered as in-memory table `name` (so that plans and their SQL name it),
/// scanned as the relation `__period` that metric SQL's `$start`, `$end`, `$at` read.
pub(super) async fn period_relation(
    ctx: &SessionContext,
    name: &str,
    batch: RecordBatch,
) -> Result<LogicalPlan, Diags> {
    register_memory(ctx, name, batch)?;
    let scan = ctx
        .table(name)
        .await
        .map_err(plan_error)?
        .into_unoptimized_plan();
    LogicalPlanBuilder::from(scan)
        .alias(PERIOD)
        .and_then(|b| b.build())
        .map_err(plan_error)
}
