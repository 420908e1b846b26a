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
//! * [`functions`]: kpi's SQL functions (`hours_between`, `days_between`);
//! * [`bucket`]: a row's period found among the run's boundaries;
//! * [`exact`]: exact float sums;
//! * [`stage`]: one metric's part of the plans; [`fuse`] merges the parts that read the
//!   same rows into one scan; [`partials`] computes windows from per-interval partials;
//! * [`assemble`]: the output table from the scans' results.

mod aggregate;
pub mod assemble;
pub mod bucket;
mod dense;
mod distinct;
pub mod exact;
pub mod functions;
mod fuse;
mod lookup;
mod masks;
mod partials;
pub mod period;
mod relation;
mod rewrite;
mod running;
mod snippet;
mod spill;
pub mod stage;
mod timeline;

mod window;

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::diag::{Code, Diagnostic};
use crate::source::{DataRoot, SourceError};
use crate::validate::{Catalog, Kind};

pub use fuse::fuse;
pub use snippet::PERIOD;
pub use stage::{Scan, Stage};

/// The plans that kpi's own tables in `plan` run (a timeline's partials, a lookup's
/// source and looked-up tables), each with the heading `kpi explain` gives it.
pub fn inner_plans(plan: &LogicalPlan) -> Vec<(String, LogicalPlan)> {
    let mut out: Vec<(String, LogicalPlan)> = timeline::partials_read_by(plan)
        .into_iter()
        .map(|(t, p)| {
            let heading = format!("SQL of the partials `{t}` merges along each key's timeline");
            (heading, p)
        })
        .collect();
    out.extend(lookup::read_by(plan));
    out
}

/// `plan` and, after it, the plans of kpi's own tables it reads (and theirs): every
/// plan whose tables a run of `plan` reads.
pub fn with_partials(plan: &LogicalPlan) -> Vec<LogicalPlan> {
    let mut all = vec![plan.clone()];
    let mut i = 0;
    while i < all.len() {
        let inner = inner_plans(&all[i]);
        all.extend(inner.into_iter().map(|(_, p)| p));
        i += 1;
    }
    all
}

/// Diagnostics of a compilation step.
type Diags = Vec<Diagnostic>;

/// A DataFusion planning error as a diagnostic list (plans kpi builds itself carry no
/// position in a metric file).
fn plan_error(e: datafusion::error::DataFusionError) -> Diags {
    vec![Diagnostic::error(
        Code::Plan,
        snippet::clean_message(&e.to_string()),
    )]
}

/// A metric name as a part of a table or column name (`a.b` → `a__b`).
fn ident(name: &str) -> String {
    name.replace('.', "__")
}

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
    let rel = relation::build(ctx, root, cat, metric, agg, Some(&used), false).await?;
    let e = snippet::plan(&ctx.state(), time, &rel.scope()).map_err(|d| vec![d])?;
    Ok((e, rel.plan))
}

/// How plans run: parallelism, memory, and where.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    /// A Ballista cluster to run the plans on (`--engine ballista`); this process when
    /// `None`.
    pub cluster: Option<crate::cluster::Target>,
    /// How long one plan may run before the run fails (`--plan-timeout`); no bound when
    /// `None`.
    pub plan_timeout: Option<std::time::Duration>,
    /// DataFusion's partitions (`--threads`); the machine's cores when `None`.
    pub threads: Option<usize>,
    /// The memory pool's size in bytes (`--memory-limit`); unbounded when `None`.
    /// Operators that can spill (sorts, grouped aggregates) spill to `spill_dir`.
    pub memory_limit: Option<usize>,
    /// Where spill files go; the system's temporary directory when `None`.
    pub spill_dir: Option<std::path::PathBuf>,
    /// Plans only of portable SQL, as `kpi sql` exports them: no bitwise aggregates.
    pub portable: bool,
}

/// A DataFusion session with kpi's settings and functions.
pub fn session() -> SessionContext {
    session_with(&Engine::default()).expect("the default engine needs no resources")
}

/// A session running plans as `engine` says.
pub fn session_with(engine: &Engine) -> Result<SessionContext, String> {
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = engine.memory_limit {
        // Fair shares, so that one spilling operator cannot starve the others; the
        // largest consumers are named when the pool is exhausted.
        runtime = runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(limit),
            std::num::NonZeroUsize::new(5).expect("non-zero"),
        )));
    }
    if let Some(dir) = &engine.spill_dir {
        runtime = runtime.with_temp_file_path(dir);
    }
    let runtime = runtime.build_arc().map_err(|e| e.to_string())?;
    let ctx = SessionContext::new_with_config_rt(config(engine), runtime);
    for f in functions::all() {
        ctx.register_udf(f);
    }
    ctx.register_udf(exact::exact_decimal_udf());
    // Local plans only: a cluster's session and exported SQL keep DataFusion's counts.
    ctx.add_analyzer_rule(Arc::new(distinct::DistinctInBitmaps));
    Ok(ctx)
}

/// The session settings of `engine`: partitions and kpi's parser options.
pub(crate) fn config(engine: &Engine) -> SessionConfig {
    let mut config = SessionConfig::new().with_information_schema(false);
    if let Some(n) = engine.threads {
        config = config.with_target_partitions(n.max(1));
    }
    // A partial aggregation whose groups are more than half its rows (per (customer,
    // interval) partials, distinct pairs of a campaign's sends) only copies its input:
    // past that ratio the rows go straight to the final aggregation. DataFusion's 0.8
    // kept those partials; 0.5 took the catalogue at 10M orders from 23.9-27.1 s to
    // 21.9-25.6 s (3 interleaved rounds), byte-identical. 0.3 was slower than both.
    config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_ratio_threshold = 0.5;
    config.options_mut().sql_parser.collect_spans = true;
    config.options_mut().sql_parser.enable_ident_normalization = false;
    config
}

/// Checks every metric's tables, columns and types against the data root `data` (a folder
/// or an object-store URL), reading
/// only schemas (CSV headers and sampled values, Parquet footers).
pub fn check_against_data(catalog: &Catalog, data: &Path) -> Result<Vec<Diagnostic>, SourceError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let root = DataRoot::locate(data).await?;
        Ok(check_all(catalog, &root).await)
    })
}

async fn check_all(catalog: &Catalog, root: &DataRoot) -> Vec<Diagnostic> {
    let ctx = session();
    let mut diags: Vec<Diagnostic> = Vec::new();
    for m in &catalog.metrics {
        let Kind::Aggregate(agg) = &m.kind else {
            continue;
        };
        let rel = match relation::build(&ctx, root, catalog, m, agg, None, false).await {
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
                origins: None,
            };
            if let Err(d) = snippet::plan(&state, &agg.formula, &entity_scope) {
                diags.push(d);
            }
        }
    }
    diags
}
