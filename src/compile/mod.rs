//! Compilation: checked metrics → DataFusion logical plans over a data root.
//!
//! Plans are built with `LogicalPlanBuilder` and `Expr`, not by pasting SQL text: the
//! metric's SQL snippets are planned one by one by DataFusion's SQL planner against the
//! schema of the rows they read ([`snippet`]), so that every error maps back to the
//! snippet it came from, and the pieces (relation, aggregates, period spine) stay
//! composable — several metrics over one source can share a scan.
//!
//! * [`relation`]: the rows a metric reads (source, joins, lookups);
//! * [`aggregate`]: aggregate formulas split into calls and the empty-period rule;
//! * [`functions`]: kpi's SQL functions (`hours_between`, `days_between`).

mod aggregate;
pub mod assemble;
pub mod functions;
pub mod period;
mod relation;
mod snippet;
pub mod stage;

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::diag::{Code, Diagnostic};
use crate::source::{DataRoot, SourceError};
use crate::validate::{Catalog, Kind};

pub use snippet::PERIOD;

/// A DataFusion error's message without its layer prefixes.
pub fn snippet_error(e: &datafusion::error::DataFusionError) -> String {
    snippet::clean_message(&e.to_string())
}

/// Plans a time expression of metric `m` against its relation: the expression and the
/// relation's plan (for range discovery).
pub async fn plan_time(
    ctx: &SessionContext,
    root: &DataRoot,
    cat: &Catalog,
    m: crate::validate::MetricId,
    time: &crate::sql::Sql,
) -> Result<
    (
        datafusion::logical_expr::Expr,
        datafusion::logical_expr::LogicalPlan,
    ),
    Vec<Diagnostic>,
> {
    let metric = &cat.metrics[m];
    let Kind::Aggregate(agg) = &metric.kind else {
        return Err(vec![]);
    };
    let mut used = relation::Used::default();
    used.add(time);
    let rel = relation::build(ctx, root, cat, metric, agg, Some(&used)).await?;
    let e = snippet::plan(&ctx.state(), time, &rel.scope()).map_err(|d| vec![d])?;
    Ok((e, rel.plan))
}

/// A DataFusion session with kpi's settings and functions.
pub fn session() -> SessionContext {
    let mut config = SessionConfig::new().with_information_schema(false);
    config.options_mut().sql_parser.collect_spans = true;
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    for f in functions::all() {
        ctx.register_udf(f);
    }
    ctx
}

/// Checks every metric's tables, columns and types against the data root `data`, reading
/// only schemas (CSV headers and sampled values, Parquet footers).
pub fn check_against_data(catalog: &Catalog, data: &Path) -> Result<Vec<Diagnostic>, SourceError> {
    let root = DataRoot::open(data)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    Ok(rt.block_on(check_all(catalog, &root)))
}

async fn check_all(catalog: &Catalog, root: &DataRoot) -> Vec<Diagnostic> {
    let ctx = session();
    let mut diags: Vec<Diagnostic> = Vec::new();
    for m in &catalog.metrics {
        let Kind::Aggregate(agg) = &m.kind else {
            continue;
        };
        let rel = match relation::build(&ctx, root, catalog, m, agg, None).await {
            Ok(r) => r,
            Err(d) => {
                diags.extend(d);
                continue;
            }
        };
        diags.extend(check_metric(&ctx, catalog, agg, &rel));
    }
    // Model-level faults surface once per metric using the model: report each once.
    let mut unique: Vec<Diagnostic> = Vec::new();
    for d in diags {
        if !unique.contains(&d) {
            unique.push(d);
        }
    }
    unique
}

fn check_metric(
    ctx: &SessionContext,
    catalog: &Catalog,
    agg: &crate::validate::Aggregate,
    rel: &relation::Relation,
) -> Vec<Diagnostic> {
    let state = ctx.state();
    let scope = rel.scope();
    let mut diags = Vec::new();
    let mut plan = |sql: &crate::sql::Sql| {
        snippet::plan(&state, sql, &scope)
            .map_err(|d| diags.push(d))
            .ok()
    };
    for f in &agg.filters {
        plan(f);
    }
    let time = agg.time.as_ref().and_then(|t| plan(t).map(|e| (t, e)));
    let model = catalog.model(&agg.source);
    let dims = model
        .iter()
        .flat_map(|m| m.dimensions.iter())
        .chain(&agg.dimensions);
    for d in dims {
        plan(&d.sql);
    }
    if agg.at.is_some()
        && let Some(active) = model.and_then(|m| m.active.as_ref())
    {
        plan(active);
    }
    let entity = agg.entity.as_ref().and_then(&mut plan);
    let mut entity_fields = Vec::new();
    for (name, sql) in &agg.entity_columns {
        if let Some(e) = plan(sql)
            && let Ok(t) = e.get_type(
                scope
                    .schema
                    .join(&snippet::PERIOD_SCHEMA)
                    .as_ref()
                    .unwrap_or(scope.schema),
            )
        {
            entity_fields.push(Field::new(name, t, true));
        }
    }
    if entity.is_none() {
        plan(&agg.formula);
    }
    if let Some((t, e)) = time {
        match e.get_type(scope.schema) {
            Ok(DataType::Timestamp(..) | DataType::Date32 | DataType::Date64) | Err(_) => {}
            Ok(other) => diags.push(
                Diagnostic::error(
                    Code::TypeError,
                    format!("the time column must be a timestamp, and this is {other}"),
                )
                .at(t.text.file, t.text.span.clone(), "")
                .help("CSV timestamps are RFC 3339 (`2025-03-01T00:00:00Z`)"),
            ),
        }
    }
    if let (Some(e), Some(esql)) = (entity, agg.entity.as_ref()) {
        if let Ok(t) = e.get_type(scope.schema) {
            entity_fields.push(Field::new(esql.text.value.trim(), t, true));
        }
        if entity_fields.len() == agg.entity_columns.len() + 1 {
            let schema =
                DFSchema::try_from(Arc::new(Schema::new(entity_fields))).expect("entity schema");
            let none = Default::default();
            let entity_scope = snippet::Scope {
                schema: &schema,
                first: "",
                first_columns: &none,
            };
            if let Err(d) = snippet::plan(&state, &agg.formula, &entity_scope) {
                diags.push(d);
            }
        }
    }
    diags
}
