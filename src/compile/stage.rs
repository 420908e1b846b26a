//! Stages: one aggregate metric's part of a run — the aggregates it needs for every
//! period (and `--by` value) that has rows, and how its formula reads them back. Empty
//! periods are not produced here; the assembly ([`super::assemble`]) brings in every
//! period and applies the empty-set rule.
//!
//! Three shapes (the last two in [`super::window`]):
//! * **bucketed**, when a row belongs to exactly one period: each row's period is found
//!   among the run's boundaries ([`super::bucket`]). Such parts are handed to
//!   [`super::fuse`], which computes every metric over the same rows in one aggregate;
//! * **windowed**, for windows and formulas that use `$start`/`$end`: rows are bucketed
//!   into the elementary intervals between every window's bounds and aggregated there,
//!   and each period's value is merged from the partials of the intervals its window
//!   covers ([`super::partials`]). An aggregate that cannot be merged (a median) reads
//!   every row of every window instead: rows joined to the periods on their interval;
//! * **state at an instant** (`at:`): rows joined to the period instants by the model's
//!   `active` condition.
//!
//! Per-entity metrics aggregate twice: per (period, entity), then per period; over a
//! window, only the (period, entity) pairs with rows in the period when the formula
//! ignores the others ([`super::running`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, col, lit};
use datafusion::prelude::SessionContext;

use super::aggregate::{Split, aggregate_renamed, fill};
use super::period::{Calendar, Period};
use super::relation::{self, Relation};
use super::rewrite::{exact_float_sums, safe_division};
use super::snippet::{self, PERIOD, Scope};
use super::window;
use super::{Diags, ident, plan_error};
use crate::diag::{Code, Diagnostic};
use crate::source::UTC;
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
    /// Under a memory limit: plans whose every operator can spill are preferred to faster
    /// ones that hold a table in memory.
    pub bounded: bool,
    /// For `kpi sql`: only plans of portable SQL (no bit masks).
    pub portable: bool,
    /// The plans run in this process and are not exported: kpi's own operators
    /// ([`super::timeline`]) may appear in them.
    pub in_process: bool,
}

/// How one metric's aggregates are read back from the table its scan writes.
#[derive(Debug, Clone)]
pub struct Stage {
    pub metric: MetricId,
    /// The table holding the aggregates: `__start`, the `--by` columns, then `names`
    /// (and other metrics' columns when the scan is shared).
    pub table: String,
    /// Aggregate columns of the table that this metric reads.
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
    fn new(
        metric: MetricId,
        table: String,
        split: Split,
        shape: String,
        rows: Option<String>,
    ) -> Stage {
        Stage {
            metric,
            table,
            names: split.names,
            additive: split.additive,
            post: split.post,
            shape,
            rows,
        }
    }

    /// The formula with counts and sums read as 0 where a period has no rows.
    pub fn post_filled(&self) -> Expr {
        fill(&self.post, &self.names, &self.additive).expect("infallible rewrite")
    }
}

/// One plan to run; its result, registered as `table`, holds the aggregates of every
/// member metric.
#[derive(Debug, Clone)]
pub struct Scan {
    pub table: String,
    pub plan: LogicalPlan,
    pub members: Vec<MetricId>,
    pub shape: String,
}

/// A metric's stage before fusion, with the plan that computes it.
pub struct Part {
    pub stage: Stage,
    pub plan: PartPlan,
}

/// How a part's aggregates are computed.
pub enum PartPlan {
    /// Rows bucketed by period: may share one aggregate with other parts over the same
    /// rows, time and dimensions.
    Bucketed(Box<Bucketed>),
    /// A plan of its own.
    Alone(LogicalPlan),
}

/// The pieces of a bucketed aggregate, for [`super::fuse`].
pub struct Bucketed {
    /// Parts with equal keys read the same rows, time and dimensions.
    pub key: String,
    pub rows: LogicalPlan,
    pub time: Expr,
    pub calendar: Calendar,
    /// `--by` columns: name and expression over `rows`.
    pub dims: Vec<(String, Expr)>,
    /// The metric's row filters (its time range excluded).
    pub filters: Vec<Expr>,
    /// `[first period start, last period end)`.
    pub range: (i64, i64),
    /// Aliased aggregate calls.
    pub aggregates: Vec<Expr>,
}

/// A UTC timestamp literal.
pub fn instant(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some(UTC.into()),
    ))
}

/// The earliest instant kpi uses for "no lower bound" (0001-01-01).
pub const MIN_INSTANT: i64 = -62_135_596_800_000_000;

fn plan_in(ctx: &SessionContext, sql: &Sql, scope: &Scope<'_>) -> Result<Expr, Diags> {
    let e = snippet::plan(&ctx.state(), sql, scope).map_err(|d| vec![d])?;
    let schema = scope
        .schema
        .join(&snippet::PERIOD_SCHEMA)
        .unwrap_or_else(|_| scope.schema.clone());
    Ok(exact_float_sums(safe_division(e, &schema), &schema))
}

pub(super) fn uses_period(e: &Expr) -> bool {
    e.column_refs()
        .iter()
        .any(|c| c.relation.as_ref().is_some_and(|r| r.table() == PERIOD))
}

pub(super) fn and_all(exprs: impl IntoIterator<Item = Expr>) -> Option<Expr> {
    exprs.into_iter().reduce(Expr::and)
}

/// A metric's SQL, planned against its rows.
pub(super) struct Planned {
    pub(super) dims: Vec<(String, Expr)>,
    /// Filters on rows alone (`--where` included).
    pub(super) row_filters: Vec<Expr>,
    /// Filters that read the period's bounds.
    pub(super) period_filters: Vec<Expr>,
    pub(super) time: Option<Expr>,
    pub(super) active: Option<Expr>,
    /// The entity's name and expression.
    pub(super) entity: Option<(String, Expr)>,
    pub(super) entity_columns: Vec<(String, Expr)>,
    /// The formula over rows; `None` when it reads entity columns.
    pub(super) formula: Option<Expr>,
}

impl Planned {
    /// Whether rows need their period's bounds, and so a windowed or state plan.
    pub(super) fn needs_period(&self, agg: &Aggregate) -> bool {
        agg.window.is_some()
            || agg.at.is_some()
            || self.time.is_none()
            || !self.period_filters.is_empty()
            || self.formula.as_ref().is_some_and(uses_period)
            || self.entity_columns.iter().any(|(_, e)| uses_period(e))
    }
}

/// The dimensions a metric carries, its model's first, then its own.
fn all_dimensions<'c>(
    cat: &'c Catalog,
    agg: &'c Aggregate,
) -> impl Iterator<Item = &'c crate::validate::Dimension> {
    cat.model(&agg.source)
        .into_iter()
        .flat_map(|m| m.dimensions.iter())
        .chain(&agg.dimensions)
}

/// The columns a metric's rows must carry: those its SQL reads, and the dimensions it is
/// sliced or filtered by.
fn used_columns(cat: &Catalog, agg: &Aggregate, req: &Request<'_>) -> relation::Used {
    let mut used = relation::Used::default();
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
    for d in all_dimensions(cat, agg) {
        if req.dims.contains(&d.name.value) || req.filter.is_some() {
            used.add(&d.sql);
        }
    }
    if let Some(a) = cat.model(&agg.source).and_then(|m| m.active.as_ref()) {
        used.add(a);
    }
    used
}

fn plan_metric(
    ctx: &SessionContext,
    cat: &Catalog,
    agg: &Aggregate,
    rel: &Relation,
    req: &Request<'_>,
) -> Result<Planned, Diags> {
    let scope = rel.scope();
    let plan = |sql: &Sql| plan_in(ctx, sql, &scope);
    let dims = dimensions(ctx, cat, agg, rel, req.dims)?;
    let mut row_filters = Vec::new();
    let mut period_filters = Vec::new();
    for f in &agg.filters {
        let e = plan(f)?;
        if uses_period(&e) {
            period_filters.push(e)
        } else {
            row_filters.push(e)
        }
    }
    if let Some(w) = req.filter {
        // `--where` may name any dimension of the metric, sliced by or not.
        let names: Vec<String> = all_dimensions(cat, agg)
            .map(|d| d.name.value.clone())
            .collect();
        let all = dimensions(ctx, cat, agg, rel, &names)?;
        row_filters.push(where_on_dims(ctx, w, &all, rel)?);
    }
    let active = match (
        agg.at,
        cat.model(&agg.source).and_then(|m| m.active.as_ref()),
    ) {
        (Some(_), Some(a)) => Some(plan(a)?),
        _ => None,
    };
    let entity = match &agg.entity {
        Some(e) => Some((e.text.value.trim().to_string(), plan(e)?)),
        None => None,
    };
    let mut entity_columns = Vec::new();
    for (name, sql) in &agg.entity_columns {
        entity_columns.push((name.clone(), plan(sql)?));
    }
    let formula = match entity {
        None => Some(plan(&agg.formula)?),
        Some(_) => None,
    };
    Ok(Planned {
        dims,
        row_filters,
        period_filters,
        time: agg.time.as_ref().map(&plan).transpose()?,
        active,
        entity,
        entity_columns,
        formula,
    })
}

/// Builds the part of aggregate metric `id`.
pub async fn build(
    ctx: &SessionContext,
    root: &crate::source::DataRoot,
    cat: &Catalog,
    id: MetricId,
    req: &Request<'_>,
) -> Result<Part, Diags> {
    let m = &cat.metrics[id];
    let Kind::Aggregate(agg) = &m.kind else {
        unreachable!("stages are built for aggregate metrics")
    };
    let used = used_columns(cat, agg, req);
    let rel = relation::build(
        ctx,
        root,
        cat,
        m,
        agg,
        Some(&used),
        req.in_process && !req.portable,
    )
    .await?;
    let p = plan_metric(ctx, cat, agg, &rel, req)?;
    let prefix = format!("{}__", ident(&m.name));
    // `empty:` needs to tell a period without rows from one whose formula is NULL.
    let rows_col = m.spec.empty.as_ref().map(|_| format!("{prefix}rows"));
    let table = format!("__stage_{}", ident(&m.name));

    let formula_split = match &p.formula {
        Some(f) => Some(Split::new(f, &prefix).map_err(plan_error)?),
        None => None,
    };
    let input = StageInput {
        ctx,
        metric: m,
        agg,
        planned: &p,
        rel: &rel,
        req,
    };
    if !p.needs_period(agg)
        && let Some(split) = &formula_split
        && !window::spillable_distinct(&input, &split.aggregates)
    {
        return bucketed_part(id, &rel, &p, req, split.clone(), table, rows_col);
    }
    let keys: Vec<(String, Expr)> = p.dims.iter().cloned().chain(p.entity.clone()).collect();
    let entity = entity_columns(&p)?;
    // The first aggregation: the formula's aggregates, or the entity columns'.
    let first_aggs = match &formula_split {
        Some(s) => {
            let mut a = s.aggregates.clone();
            a.extend(row_count(&rows_col));
            a
        }
        None => entity.aggregates.clone(),
    };
    let (first_level, shape) = window::first_aggregation(&input, &keys, first_aggs).await?;
    let (plan, split, shape) = match formula_split {
        Some(split) => (first_level.build().map_err(plan_error)?, split, shape),
        None => {
            per_entity(
                &input,
                &keys,
                first_level,
                &shape,
                &entity,
                &prefix,
                &rows_col,
            )
            .await?
        }
    };
    Ok(Part {
        stage: Stage::new(id, table, split, shape, rows_col),
        plan: PartPlan::Alone(plan),
    })
}

/// What planning a stage that is not fused reads: the session, the metric, its SQL
/// planned against its rows, and the run's request.
#[derive(Clone, Copy)]
pub(super) struct StageInput<'a> {
    pub(super) ctx: &'a SessionContext,
    pub(super) metric: &'a crate::validate::Metric,
    pub(super) agg: &'a Aggregate,
    pub(super) planned: &'a Planned,
    pub(super) rel: &'a Relation,
    pub(super) req: &'a Request<'a>,
}

/// The part of a bucketed metric, for [`super::fuse`] to share with the metrics over the
/// same rows, time and dimensions.
fn bucketed_part(
    id: MetricId,
    rel: &Relation,
    p: &Planned,
    req: &Request<'_>,
    split: Split,
    table: String,
    rows_col: Option<String>,
) -> Result<Part, Diags> {
    let time = p.time.clone().expect("bucketed stages have a time");
    let mut aggregates = split.aggregates.clone();
    aggregates.extend(row_count(&rows_col));
    let key = format!(
        "{}\n{time}\n{:?}",
        rel.plan.display_indent(),
        p.dims
            .iter()
            .map(|(n, e)| format!("{n}={e}"))
            .collect::<Vec<_>>()
    );
    let first = req.periods.first().expect("at least one period");
    let last = req.periods.last().expect("at least one period");
    Ok(Part {
        stage: Stage::new(
            id,
            table,
            split,
            format!("rows bucketed by {}", req.calendar.grain),
            rows_col,
        ),
        plan: PartPlan::Bucketed(Box::new(Bucketed {
            key,
            rows: rel.plan.clone(),
            time,
            calendar: req.calendar,
            dims: p.dims.clone(),
            filters: p.row_filters.clone(),
            range: (first.start, last.end),
            aggregates,
        })),
    })
}

/// A per-entity metric's entity columns, and the aggregates of the first aggregation
/// they read.
pub(super) struct EntityColumns {
    pub(super) aggregates: Vec<Expr>,
    pub(super) columns: Vec<EntityColumn>,
}

fn entity_columns(p: &Planned) -> Result<EntityColumns, Diags> {
    let mut aggregates = Vec::new();
    let mut columns = Vec::new();
    for (i, (name, expr)) in p.entity_columns.iter().enumerate() {
        let split = Split::new(expr, &format!("__e{i}_")).map_err(plan_error)?;
        aggregates.extend(split.aggregates.clone());
        columns.push(EntityColumn {
            name: name.clone(),
            value: split.post_filled().map_err(plan_error)?,
            aggregates: split.names,
        });
    }
    Ok(EntityColumns {
        aggregates,
        columns,
    })
}

/// The second level of a per-entity metric: its formula over the entity rows of
/// `first_level` (their columns computed), per period; merged for the entities with rows
/// in each period only where the formula allows ([`window::entity_history`]).
async fn per_entity(
    input: &StageInput<'_>,
    keys: &[(String, Expr)],
    first_level: LogicalPlanBuilder,
    shape: &str,
    entity: &EntityColumns,
    prefix: &str,
    rows_col: &Option<String>,
) -> Result<(LogicalPlan, Split, String), Diags> {
    let p = input.planned;
    let (ename, _) = p.entity.as_ref().expect("a per-entity metric");
    let mut keep: Vec<Expr> = vec![col(START)];
    keep.extend(p.dims.iter().map(|(n, _)| col(n.as_str())));
    keep.push(col(ename.as_str()));
    keep.extend(
        entity
            .columns
            .iter()
            .map(|c| c.value.clone().alias(c.name.as_str())),
    );
    let per_entity = |first: LogicalPlanBuilder| {
        first
            .project(keep.clone())
            .and_then(|b| b.build())
            .map_err(plan_error)
    };
    let mut rows = per_entity(first_level)?;
    let none = Default::default();
    let entity_scope = Scope {
        schema: rows.schema(),
        first: "",
        first_columns: &none,
        origins: None,
    };
    let f = plan_in(input.ctx, &input.agg.formula, &entity_scope)?;
    let split = Split::new(&f, prefix).map_err(plan_error)?;
    let mut shape = format!("{shape}, per {ename}, then per period");
    if rows_col.is_none()
        && let Some((first, how)) =
            window::entity_history(input, keys, entity, &split.aggregates).await?
    {
        rows = per_entity(first)?;
        shape = format!("{how}, then per period");
    }
    let mut group: Vec<Expr> = vec![col(START)];
    group.extend(p.dims.iter().map(|(n, _)| col(n.as_str())));
    let mut aggs = split.aggregates.clone();
    aggs.extend(row_count(rows_col));
    let plan = aggregate_renamed(LogicalPlanBuilder::from(rows), group, aggs)
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    Ok((plan, split, shape))
}

/// An entity column: its value over the aggregates of the first aggregation.
pub(super) struct EntityColumn {
    pub(super) name: String,
    /// Over the columns `aggregates`, counts and sums read as 0 where none merged.
    pub(super) value: Expr,
    pub(super) aggregates: Vec<String>,
}

/// `count(1)` named `rows`, when the metric needs its rows counted.
fn row_count(rows: &Option<String>) -> Option<Expr> {
    rows.as_ref()
        .map(|r| datafusion::functions_aggregate::expr_fn::count(lit(1)).alias(r.as_str()))
}

/// Registers (or replaces) an in-memory table.
pub fn register_memory(ctx: &SessionContext, name: &str, batch: RecordBatch) -> Result<(), Diags> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(plan_error)?;
    let _ = ctx.deregister_table(name);
    ctx.register_table(name, Arc::new(table))
        .map_err(plan_error)?;
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
    let mut out = Vec::new();
    for n in names {
        let Some(d) = all_dimensions(cat, agg).find(|d| &d.name.value == n) else {
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
        let t = e.get_type(rel.plan.schema()).map_err(plan_error)?;
        fields.push(Field::new(n, t, true));
    }
    let schema = DFSchema::try_from(Arc::new(Schema::new(fields))).map_err(plan_error)?;
    let none = Default::default();
    let e = plan_in(
        ctx,
        w,
        &Scope {
            schema: &schema,
            first: "",
            first_columns: &none,
            origins: None,
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
