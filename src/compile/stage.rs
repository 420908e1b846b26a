//! Stages: the plan that computes one aggregate metric's aggregates for every period (and
//! `--by` value) that has rows. Empty periods are not produced here; the assembly
//! ([`super::assemble`]) brings in every period and applies the empty-set rule.
//!
//! Two shapes of plan:
//! * **bucketed**, when a row belongs to exactly one period: filter rows to the range,
//!   `date_trunc` their time to the period start (in the run's zone) and hash-aggregate —
//!   one pass, no join;
//! * **ranged**, for windows, state at an instant and formulas that use `$start`/`$end`:
//!   join the rows with the period spine (a small VALUES relation) on the window
//!   condition, then aggregate per period.
//!
//! Per-entity metrics aggregate twice: per (period, entity), then per period.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, JoinType, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::functions::datetime::expr_fn::date_trunc;
use datafusion::logical_expr::{
    Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, binary_expr, cast, col, lit,
};
use datafusion::prelude::{SessionContext, nullif};

use super::aggregate::{Split, aggregate_renamed, fill};
use super::period::{Calendar, Period};
use super::relation::{self, Relation};
use super::snippet::{self, PERIOD, Scope};
use crate::diag::{Code, Diagnostic};
use crate::source::{DataRoot, UTC, utc_timestamp};
use crate::sql::Sql;
use crate::validate::{Aggregate, Catalog, Kind, MetricId};

/// The start instant of a row's period, as every stage names it.
pub const START: &str = "__start";

/// What a stage must compute.
pub struct Request<'a> {
    pub calendar: Calendar,
    /// The periods needed, sorted, without duplicates.
    pub periods: Vec<Period>,
    /// `--by` dimension names, in order.
    pub dims: &'a [String],
    /// `--where`, a predicate on dimensions.
    pub filter: Option<&'a Sql>,
}

/// A compiled stage: its plan and how to finish its formula.
#[derive(Debug, Clone)]
pub struct Stage {
    pub metric: MetricId,
    pub plan: LogicalPlan,
    /// Aggregate columns of the plan's output.
    pub names: Vec<String>,
    pub additive: Vec<bool>,
    /// The formula over `names` (unqualified columns), before the empty-set rule.
    pub post: Expr,
    /// A short account of the plan's shape, for `explain`.
    pub shape: String,
    /// The column counting a period's rows, when the metric overrides its empty value.
    pub rows: Option<String>,
}

impl Stage {
    /// The formula with counts and sums read as 0 where a period has no rows.
    pub fn post_filled(&self) -> Expr {
        fill(&self.post, &self.names, &self.additive).expect("infallible rewrite")
    }
}

type Diags = Vec<Diagnostic>;

fn df(e: datafusion::error::DataFusionError) -> Diags {
    vec![Diagnostic::error(
        Code::Plan,
        snippet::clean_message(&e.to_string()),
    )]
}

/// A UTC timestamp literal.
pub fn ts(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some(UTC.into()),
    ))
}

/// The earliest instant kpi uses for "no lower bound" (0001-01-01).
const MIN_INSTANT: i64 = -62_135_596_800_000_000;

/// Rewrites every numeric division into true division that yields NULL instead of an
/// error, infinity or NaN: `CAST(a AS DOUBLE) / NULLIF(CAST(b AS DOUBLE), 0)`.
pub fn safe_division(e: Expr, schema: &DFSchema) -> Expr {
    e.transform_up(|x| {
        if let Expr::BinaryExpr(b) = &x
            && b.op == Operator::Divide
        {
            let numeric = |e: &Expr| {
                e.get_type(schema)
                    .is_ok_and(|t| t.is_numeric() || t == DataType::Null)
            };
            if numeric(&b.left) && numeric(&b.right) {
                let l = cast((*b.left).clone(), DataType::Float64);
                let r = cast((*b.right).clone(), DataType::Float64);
                // A denominator written `nullif(x, 0)` already states the rule.
                let r = if is_nullif_zero(&b.right) {
                    r
                } else {
                    nullif(r, lit(0f64))
                };
                return Ok(Transformed::yes(binary_expr(l, Operator::Divide, r)));
            }
        }
        Ok(Transformed::no(x))
    })
    .map(|t| t.data)
    .expect("infallible rewrite")
}

/// Whether `e` is `nullif(x, 0)` (any numeric zero).
fn is_nullif_zero(e: &Expr) -> bool {
    let Expr::ScalarFunction(f) = e else {
        return false;
    };
    f.name() == "nullif"
        && matches!(f.args.get(1), Some(Expr::Literal(v, _))
            if v.cast_to(&DataType::Float64).ok() == Some(ScalarValue::Float64(Some(0.0))))
}

fn plan_in(ctx: &SessionContext, sql: &Sql, scope: &Scope<'_>) -> Result<Expr, Diags> {
    let e = snippet::plan(&ctx.state(), sql, scope).map_err(|d| vec![d])?;
    let schema = scope
        .schema
        .join(&snippet::PERIOD_SCHEMA)
        .unwrap_or_else(|_| scope.schema.clone());
    Ok(exact_float_sums(safe_division(e, &schema), &schema))
}

/// The type float sums and averages accumulate in: exact, so independent of the order
/// in which parallel partitions arrive (76 digits, 38 after the point).
fn exact_type() -> DataType {
    DataType::Decimal256(76, 38)
}

/// Makes `sum` and `avg` of floats deterministic to the last bit: a float sum depends on
/// the order of its additions, which parallel execution does not fix, so the values are
/// accumulated as 256-bit decimals (exact for any realistic magnitude) and the result
/// converted back to `DOUBLE`. The same data gives the same bytes in every layout and run.
pub fn exact_float_sums(e: Expr, schema: &DFSchema) -> Expr {
    use datafusion::logical_expr::expr::AggregateFunction;
    e.transform_up(|x| {
        if let Expr::AggregateFunction(AggregateFunction { func, params }) = &x
            && matches!(func.name(), "sum" | "avg")
            && params.args.len() == 1
            && matches!(
                params.args[0].get_type(schema),
                Ok(DataType::Float64 | DataType::Float32)
            )
        {
            let arg = cast(params.args[0].clone(), exact_type());
            let exact = AggregateFunction::new_udf(
                func.clone(),
                vec![arg],
                params.distinct,
                params.filter.clone(),
                params.order_by.clone(),
                params.null_treatment,
            );
            return Ok(Transformed::yes(cast(
                Expr::AggregateFunction(exact),
                DataType::Float64,
            )));
        }
        Ok(Transformed::no(x))
    })
    .map(|t| t.data)
    .expect("infallible rewrite")
}

fn uses_period(e: &Expr) -> bool {
    e.column_refs()
        .iter()
        .any(|c| c.relation.as_ref().is_some_and(|r| r.table() == PERIOD))
}

fn and_all(exprs: impl IntoIterator<Item = Expr>) -> Option<Expr> {
    exprs.into_iter().reduce(Expr::and)
}

/// Builds the stage of aggregate metric `id`.
pub async fn build(
    ctx: &SessionContext,
    root: &DataRoot,
    cat: &Catalog,
    id: MetricId,
    req: &Request<'_>,
) -> Result<Stage, Diags> {
    let m = &cat.metrics[id];
    let Kind::Aggregate(agg) = &m.kind else {
        unreachable!("stages are built for aggregate metrics")
    };
    let mut used = relation::Used::default();
    let model = cat.model(&agg.source);
    let all_dims: Vec<&crate::validate::Dimension> = model
        .iter()
        .flat_map(|m| m.dimensions.iter())
        .chain(&agg.dimensions)
        .collect();
    // An entity formula reads entity columns, not the source's.
    let formula_reads_rows = agg.entity.is_none().then_some(&agg.formula);
    for sql in agg
        .filters
        .iter()
        .chain(formula_reads_rows)
        .chain(&agg.time)
        .chain(&agg.entity)
        .chain(agg.entity_columns.iter().map(|(_, s)| s))
        .chain(req.filter)
    {
        used.add(sql);
    }
    for d in &all_dims {
        if req.dims.contains(&d.name.value) || req.filter.is_some() {
            used.add(&d.sql);
        }
    }
    if let Some(a) = model.and_then(|m| m.active.as_ref()) {
        used.add(a);
    }
    let rel = relation::build(ctx, root, cat, m, agg, Some(&used)).await?;
    let scope = rel.scope();
    let dims = dimensions(ctx, cat, agg, &rel, req.dims)?;
    let filter = match req.filter {
        Some(w) => {
            // `--where` may name any dimension of the metric, sliced by or not.
            let model = cat.model(&agg.source);
            let all: Vec<String> = model
                .iter()
                .flat_map(|m| m.dimensions.iter())
                .chain(&agg.dimensions)
                .map(|d| d.name.value.clone())
                .collect();
            let all = dimensions(ctx, cat, agg, &rel, &all)?;
            Some(where_on_dims(ctx, w, &all, &rel)?)
        }
        None => None,
    };
    let mut row_filters = Vec::new();
    let mut period_filters = Vec::new();
    for f in &agg.filters {
        let e = plan_in(ctx, f, &scope)?;
        if uses_period(&e) {
            period_filters.push(e)
        } else {
            row_filters.push(e)
        }
    }
    row_filters.extend(filter);
    let time = match &agg.time {
        Some(t) => Some(plan_in(ctx, t, &scope)?),
        None => None,
    };
    let active = match (
        agg.at,
        cat.model(&agg.source).and_then(|m| m.active.as_ref()),
    ) {
        (Some(_), Some(a)) => Some(plan_in(ctx, a, &scope)?),
        _ => None,
    };
    // The formula (or entity columns) decide whether rows need the period's bounds.
    let formula_sql = &agg.formula;
    let entity = match &agg.entity {
        Some(e) => Some(plan_in(ctx, e, &scope)?),
        None => None,
    };
    let mut entity_cols = Vec::new();
    for (name, sql) in &agg.entity_columns {
        entity_cols.push((name.clone(), plan_in(ctx, sql, &scope)?));
    }
    let formula = if entity.is_none() {
        Some(plan_in(ctx, formula_sql, &scope)?)
    } else {
        None
    };
    let needs_period = agg.window.is_some()
        || agg.at.is_some()
        || time.is_none()
        || !period_filters.is_empty()
        || formula.as_ref().is_some_and(uses_period)
        || entity_cols.iter().any(|(_, e)| uses_period(e));
    let first = req.periods.first().expect("at least one period");
    let last = req.periods.last().expect("at least one period");
    let cal = req.calendar;

    let (rows, start, shape) = if !needs_period {
        let t = time.clone().expect("bucketed stages have a time");
        let mut preds = row_filters;
        preds.push(t.clone().gt_eq(ts(first.start)));
        preds.push(t.clone().lt(ts(last.end)));
        let rows = LogicalPlanBuilder::from(rel.plan.clone())
            .filter(and_all(preds).expect("non-empty"))
            .map_err(df)?;
        let bucket = bucket_expr(t, cal);
        (
            rows,
            bucket,
            format!("rows bucketed by {} with date_trunc", cal.grain),
        )
    } else {
        let windows: Vec<(Period, i64)> = req
            .periods
            .iter()
            .map(|p| (*p, cal.window_start(*p, agg.window).unwrap_or(MIN_INSTANT)))
            .collect();
        let spine = spine(
            ctx,
            &format!("__periods_{}", m.name.replace('.', "__")),
            &windows,
            agg.at,
        )
        .await?;
        let mut preds = row_filters;
        let mut cond = period_filters;
        if let Some(t) = &time {
            let lo = windows.iter().map(|w| w.1).min().unwrap_or(MIN_INSTANT);
            if lo > MIN_INSTANT {
                preds.push(t.clone().gt_eq(ts(lo)));
            }
            preds.push(t.clone().lt(ts(last.end)));
            cond.push(t.clone().gt_eq(col(Column::new(Some(PERIOD), "wstart"))));
            cond.push(t.clone().lt(col(Column::new(Some(PERIOD), "end"))));
        }
        if let Some(a) = active {
            cond.push(a);
        }
        let mut rows = LogicalPlanBuilder::from(rel.plan.clone());
        if let Some(p) = and_all(preds) {
            rows = rows.filter(p).map_err(df)?;
        }
        let on = and_all(cond).unwrap_or(lit(true));
        let rows = rows.join_on(spine, JoinType::Inner, vec![on]).map_err(df)?;
        let shape = match (agg.at, agg.window) {
            (Some(at), _) => format!(
                "rows active at each period's {}",
                if at == crate::spec::At::Start {
                    "start"
                } else {
                    "end"
                }
            ),
            (None, Some(w)) => format!("rows joined to each period's window ({w})"),
            _ => "rows joined to each period's bounds".to_string(),
        };
        (rows, col(Column::new(Some(PERIOD), "start")), shape)
    };

    let mut group: Vec<Expr> = vec![start.alias(START)];
    group.extend(dims.iter().map(|(n, e)| e.clone().alias(n.as_str())));
    let prefix = format!("{}__", m.name.replace('.', "__"));
    // `empty:` needs to tell a period without rows from one whose formula is NULL.
    let rows_col = m.spec.empty.as_ref().map(|_| format!("{prefix}rows"));
    let with_rows = |mut aggs: Vec<Expr>| {
        if let Some(r) = &rows_col {
            aggs.push(datafusion::functions_aggregate::expr_fn::count(lit(1)).alias(r.as_str()));
        }
        aggs
    };
    match entity {
        None => {
            let split =
                Split::new(&formula.expect("no entity: formula planned"), &prefix).map_err(df)?;
            let plan = aggregate_renamed(rows, group, with_rows(split.aggregates.clone()))
                .and_then(|b| b.build())
                .map_err(df)?;
            Ok(Stage {
                metric: id,
                plan,
                names: split.names,
                additive: split.additive,
                post: split.post,
                shape,
                rows: rows_col,
            })
        }
        Some(e) => {
            let ename = agg
                .entity
                .as_ref()
                .map(|s| s.text.value.trim().to_string())
                .unwrap_or_default();
            let mut aggs = Vec::new();
            let mut finals = Vec::new();
            for (i, (name, expr)) in entity_cols.iter().enumerate() {
                let split = Split::new(expr, &format!("__e{i}_")).map_err(df)?;
                aggs.extend(split.aggregates.clone());
                finals.push(split.post_filled().map_err(df)?.alias(name.as_str()));
            }
            let mut g = group.clone();
            g.push(e.alias(ename.as_str()));
            let mut keep: Vec<Expr> = vec![col(START)];
            keep.extend(dims.iter().map(|(n, _)| col(n.as_str())));
            keep.push(col(ename.as_str()));
            keep.extend(finals);
            let per_entity = aggregate_renamed(rows, g, aggs)
                .and_then(|b| b.project(keep))
                .and_then(|b| b.build())
                .map_err(df)?;
            let none = Default::default();
            let escope = Scope {
                schema: per_entity.schema(),
                first: "",
                first_columns: &none,
            };
            let f = plan_in(ctx, formula_sql, &escope)?;
            let split = Split::new(&f, &prefix).map_err(df)?;
            let mut g2: Vec<Expr> = vec![col(START)];
            g2.extend(dims.iter().map(|(n, _)| col(n.as_str())));
            let plan = aggregate_renamed(
                LogicalPlanBuilder::from(per_entity),
                g2,
                with_rows(split.aggregates.clone()),
            )
            .and_then(|b| b.build())
            .map_err(df)?;
            Ok(Stage {
                metric: id,
                plan,
                names: split.names,
                additive: split.additive,
                post: split.post,
                shape: format!("{shape}, per {ename}, then per period"),
                rows: rows_col,
            })
        }
    }
}

/// `date_trunc(grain, t)` in the calendar's zone, as a UTC instant.
fn bucket_expr(t: Expr, cal: Calendar) -> Expr {
    let grain = lit(cal.grain.name());
    if cal.tz == chrono_tz::UTC {
        return date_trunc(grain, t);
    }
    let local = cast(
        t,
        DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some(cal.tz.name().into()),
        ),
    );
    cast(date_trunc(grain, local), utc_timestamp())
}

/// The periods as a relation `__period(start, end, wstart, at)`, registered in `ctx` as
/// an in-memory table `name` (so that plans and their SQL name it).
async fn spine(
    ctx: &SessionContext,
    name: &str,
    windows: &[(Period, i64)],
    at: Option<crate::spec::At>,
) -> Result<LogicalPlan, Diags> {
    let column = |f: &dyn Fn(&(Period, i64)) -> i64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(windows.iter().map(f).collect::<Vec<_>>())
                .with_timezone(UTC),
        )
    };
    let at_of = |(p, _): &(Period, i64)| {
        if at == Some(crate::spec::At::Start) {
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
    .map_err(|e| df(e.into()))?;
    register_memory(ctx, name, batch)?;
    let scan = ctx.table(name).await.map_err(df)?.into_unoptimized_plan();
    LogicalPlanBuilder::from(scan)
        .alias(PERIOD)
        .and_then(|b| b.build())
        .map_err(df)
}

/// Registers (or replaces) an in-memory table.
pub fn register_memory(ctx: &SessionContext, name: &str, batch: RecordBatch) -> Result<(), Diags> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(df)?;
    let _ = ctx.deregister_table(name);
    ctx.register_table(name, Arc::new(table)).map_err(df)?;
    Ok(())
}

/// The expressions of the requested dimensions, from the metric's model and its own.
fn dimensions(
    ctx: &SessionContext,
    cat: &Catalog,
    agg: &Aggregate,
    rel: &Relation,
    names: &[String],
) -> Result<Vec<(String, Expr)>, Diags> {
    let model = cat.model(&agg.source);
    let mut out = Vec::new();
    for n in names {
        let d = agg
            .dimensions
            .iter()
            .chain(model.iter().flat_map(|m| m.dimensions.iter()))
            .find(|d| &d.name.value == n);
        let Some(d) = d else {
            return Err(vec![Diagnostic::error(
                Code::UnknownDimension,
                format!("no dimension `{n}` on `{}`", agg.source),
            )]);
        };
        out.push((n.clone(), plan_in(ctx, &d.sql, &rel.scope())?));
    }
    Ok(out)
}

/// Plans `--where` against the dimensions' names, then substitutes their expressions.
fn where_on_dims(
    ctx: &SessionContext,
    w: &Sql,
    dims: &[(String, Expr)],
    rel: &Relation,
) -> Result<Expr, Diags> {
    let mut fields = Vec::new();
    for (n, e) in dims {
        let t = e.get_type(rel.plan.schema()).map_err(df)?;
        fields.push(Field::new(n, t, true));
    }
    let schema = DFSchema::try_from(Arc::new(Schema::new(fields))).map_err(df)?;
    let none = Default::default();
    let e = plan_in(
        ctx,
        w,
        &Scope {
            schema: &schema,
            first: "",
            first_columns: &none,
        },
    )?;
    Ok(e.transform_up(|x| match &x {
        Expr::Column(c) if c.relation.is_none() => match dims.iter().find(|(n, _)| n == &c.name) {
            Some((_, d)) => Ok(Transformed::yes(d.clone())),
            None => Ok(Transformed::no(x)),
        },
        _ => Ok(Transformed::no(x)),
    })
    .map(|t| t.data)
    .expect("infallible rewrite"))
}
