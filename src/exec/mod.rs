//! Execution: resolves a run request against the catalogue, builds every metric's stage
//! and fuses them into scans, runs the scans, then the assembly, and hands back record
//! batches.
//!
//! Scans run one after another, each with all of DataFusion's parallelism; their results
//! (one row per period and dimension combination) are kept as in-memory tables that the
//! assembly joins. `explain` builds the very same plans without running them. Before a
//! local scan runs, an aggregation it holds twice is computed once ([`shared`]); a scan a
//! cluster loses an executor under is submitted again as a new job.

use std::collections::HashMap;
use std::sync::Arc;

use chrono_tz::Tz;
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;

use crate::compile;
use crate::compile::assemble::{self, Layout, OutputColumn};
use crate::compile::period::{Calendar, Period, parse_instant};
use crate::compile::stage::{self, Request};
use crate::compile::{Scan, Stage};
use crate::diag::{Diagnostic, SourceDb, did_you_mean};
use crate::source::{DataRoot, SourceError};
use crate::spec::{Grain, Text, Unit};
use crate::validate::{Catalog, Kind, MetricId, Shift};

mod explain;
mod export;
mod shared;

pub use explain::{ExplainOptions, compiled_sql, explain};
pub use export::{SqlDialect, export};

/// What `--compare` adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compare {
    /// The period before.
    #[value(name = "previous_period")]
    PreviousPeriod,
    /// The same period a year before.
    #[value(name = "previous_year")]
    PreviousYear,
}

/// A run as the user asked for it.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Metric names; empty means every public metric.
    pub metrics: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub grain: Option<Grain>,
    pub by: Vec<String>,
    pub filter: Option<String>,
    pub tz: Option<String>,
    pub compare: Option<Compare>,
    /// How the plans run.
    pub engine: compile::Engine,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Problems with what the user asked for or with the definitions: exit code 1 when
    /// they are definition errors, 2 for usage.
    #[error("{} error(s)", .0.len())]
    Diagnostics(Vec<Diagnostic>),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Execution(String),
}

/// A run's result: batches, and each output column's unit for display.
pub struct RunOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub units: Vec<Option<Unit>>,
}

/// A result row read back as values: key cells (period, `--by` dimensions) as text as
/// CSV shows them, metric cells as numbers; `None` is NULL.
pub type ValueRow = (Vec<Option<String>>, Vec<Option<f64>>);

impl RunOutput {
    /// Every row, the first `keys` columns as text and the rest as `f64`, for comparing
    /// results (`kpi test`, `kpi diff`).
    pub fn rows(&self, keys: usize) -> Result<Vec<ValueRow>, String> {
        use datafusion::arrow::array::Float64Array;
        use datafusion::arrow::compute::cast;
        use datafusion::arrow::datatypes::DataType;
        use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
        let options = FormatOptions::default();
        let mut rows = Vec::new();
        for batch in &self.batches {
            let key_cols = batch.columns()[..keys.min(batch.num_columns())]
                .iter()
                .map(|c| Ok((c, ArrayFormatter::try_new(c.as_ref(), &options)?)))
                .collect::<Result<Vec<_>, datafusion::arrow::error::ArrowError>>()
                .map_err(|e| e.to_string())?;
            let metric_cols = batch.columns()[keys.min(batch.num_columns())..]
                .iter()
                .map(|c| cast(c, &DataType::Float64))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            for i in 0..batch.num_rows() {
                let key = key_cols
                    .iter()
                    .map(|(a, f)| (!a.is_null(i)).then(|| f.value(i).to_string()))
                    .collect();
                let values = metric_cols
                    .iter()
                    .map(|a| {
                        let a = a
                            .as_any()
                            .downcast_ref::<Float64Array>()
                            .expect("cast to Float64 yields a Float64Array");
                        (!a.is_null(i)).then(|| a.value(i))
                    })
                    .collect();
                rows.push((key, values));
            }
        }
        Ok(rows)
    }
}

/// A resolved run: every plan built, nothing executed yet.
pub struct Program {
    /// The session the plans were built in; it holds the tables they read.
    pub ctx: SessionContext,
    /// The session that runs the scans: `ctx` itself, or a Ballista client.
    pub runner: SessionContext,
    /// The cluster `runner` sends the scans to, if any.
    pub cluster: Option<crate::cluster::Target>,
    /// How long one scan may take.
    pub plan_timeout: Option<std::time::Duration>,
    /// Whether a subplan repeated in a scan is computed once and held in memory
    /// ([`shared`]): on local runs without a memory limit.
    pub shared_once: bool,
    pub calendar: Calendar,
    pub periods: Vec<Period>,
    pub dims: Vec<String>,
    /// How each metric reads its aggregates back.
    pub stages: HashMap<MetricId, Stage>,
    /// The plans to run, each computing one or more stages.
    pub scans: Vec<Scan>,
    pub columns: Vec<OutputColumn>,
    pub units: Vec<Option<Unit>>,
    /// The data root the plans read.
    pub root: DataRoot,
}

/// The tables a plan scans, subqueries and the partials of kpi's own operators
/// included, in plan order.
fn scanned(plan: &LogicalPlan) -> Vec<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut names: Vec<String> = Vec::new();
    for plan in crate::compile::with_partials(plan) {
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let t = scan.table_name.table().to_string();
                if !names.contains(&t) {
                    names.push(t);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    names
}

/// After a failed scan: the CSV value at fault, found by reading the plan's CSV tables
/// again record by record (a bulk read's error names neither file nor editor line).
/// A column whose type inference could not tell fails as "… (Null --> …)".
async fn bad_value(
    ctx: &SessionContext,
    plan: &LogicalPlan,
    root: &DataRoot,
    message: &str,
) -> Option<String> {
    for t in scanned(plan) {
        let Ok(provider) = ctx.table_provider(t.as_str()).await else {
            continue;
        };
        let schema = provider.schema();
        let found = root.bad_value(&t, &schema).or_else(|| {
            message
                .contains("Null")
                .then(|| root.untyped(&t, &schema))
                .flatten()
        });
        if let Some(e) = found {
            return Some(e.to_string());
        }
    }
    None
}

/// The tables a plan scans, with their paths, for error messages; kpi's own tables
/// (`__timeline_…`, `__lookups_…`) are left out, as the tables they read are named.
fn sources(plan: &LogicalPlan, root: &DataRoot) -> String {
    scanned(plan)
        .iter()
        .filter(|n| root.tables.contains_key(*n) || !n.starts_with("__"))
        .map(|n| match root.tables.get(n) {
            Some(e) => format!("table `{n}` at {}", e.path.display()),
            None => format!("table `{n}`"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn usage(s: impl Into<String>) -> RunError {
    RunError::Usage(s.into())
}

/// ` (did you mean …?)` for a name close to one of `candidates`, or nothing.
fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(name, candidates)
        .map(|h| format!(" ({h})"))
        .unwrap_or_default()
}

/// Resolves `req` and builds every plan: what was asked is checked first (metrics, zone,
/// grain, dimensions, filter, range), then each metric's stage is planned and the stages
/// that read the same rows are fused.
pub async fn prepare(
    cat: &Catalog,
    db: &mut SourceDb,
    root: &DataRoot,
    req: &RunRequest,
) -> Result<Program, RunError> {
    let ids = resolve_metrics(cat, req)?;
    let tz = resolve_zone(req)?;
    let grain = resolve_grain(cat, &ids, req)?;
    let calendar = Calendar::new(grain, tz);
    check_by(cat, &ids, &req.by)?;
    let filter = parse_where(db, req)?;
    let (columns, units) = output_columns(cat, &ids, req);
    let ctx = compile::session_with(&req.engine).map_err(RunError::Execution)?;
    let needed = assemble::needs(cat, &columns);
    let mut order: Vec<MetricId> = Vec::new();
    for (m, _) in &needed {
        if !order.contains(m) {
            order.push(*m);
        }
    }
    let (from, to) = resolve_range(&ctx, cat, root, &order, req, tz).await?;
    let periods = calendar.periods(from, to);
    if periods.len() > 100_000 {
        return Err(usage(format!(
            "{} periods of a {grain} is too many; narrow --from/--to or choose a coarser --grain",
            periods.len()
        )));
    }
    let mut parts = Vec::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    for &m in &order {
        // The metric's own periods and every shifted period a reference needs.
        let mut ps: Vec<Period> = needed
            .iter()
            .filter(|(n, _)| *n == m)
            .flat_map(|(_, s)| periods.iter().map(|p| calendar.shift(*p, s)))
            .collect();
        ps.sort();
        ps.dedup();
        let r = Request {
            calendar,
            periods: ps,
            dims: &req.by,
            filter: filter.as_ref(),
            bounded: req.engine.memory_limit.is_some(),
            portable: req.engine.portable,
            in_process: req.engine.cluster.is_none() && !req.engine.portable,
        };
        match stage::build(&ctx, root, cat, m, &r).await {
            Ok(part) => parts.push(part),
            // The same fault (in a shared model, or in --where) shows once.
            Err(d) => diags.extend(
                d.into_iter()
                    .filter(|x| !diags.contains(x))
                    .collect::<Vec<_>>(),
            ),
        }
    }
    if !diags.is_empty() {
        return Err(RunError::Diagnostics(diags));
    }
    let (scans, stages) = compile::fuse(parts).map_err(RunError::Diagnostics)?;
    let runner = match &req.engine.cluster {
        Some(target) => crate::cluster::context(target, compile::config(&req.engine))
            .await
            .map_err(|e| RunError::Execution(e.to_string()))?,
        None => ctx.clone(),
    };
    Ok(Program {
        ctx,
        runner,
        cluster: req.engine.cluster.clone(),
        plan_timeout: req.engine.plan_timeout,
        shared_once: req.engine.cluster.is_none() && req.engine.memory_limit.is_none(),
        calendar,
        periods,
        dims: req.by.clone(),
        stages,
        scans,
        columns,
        units,
        root: root.clone(),
    })
}

/// The metrics asked for, or every public one.
fn resolve_metrics(cat: &Catalog, req: &RunRequest) -> Result<Vec<MetricId>, RunError> {
    let ids: Vec<MetricId> = if req.metrics.is_empty() {
        cat.public_metrics().collect()
    } else {
        req.metrics
            .iter()
            .map(|n| {
                cat.metric(n).ok_or_else(|| {
                    let hint = hint(n, cat.metric_names());
                    usage(format!(
                        "no metric named `{n}`{hint}; `kpi list` shows them all"
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    if ids.is_empty() {
        return Err(usage("no metric to run"));
    }
    Ok(ids)
}

fn resolve_zone(req: &RunRequest) -> Result<Tz, RunError> {
    match &req.tz {
        None => Ok(chrono_tz::UTC),
        Some(z) => z.parse().map_err(|_| {
            let hint = hint(z, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()));
            usage(format!(
                "unknown time zone `{z}`{hint}; use an IANA name such as Europe/Madrid"
            ))
        }),
    }
}

/// `--grain`, or the metrics' own grain when they agree.
fn resolve_grain(cat: &Catalog, ids: &[MetricId], req: &RunRequest) -> Result<Grain, RunError> {
    if let Some(g) = req.grain {
        return Ok(g);
    }
    let grains: Vec<Grain> = ids
        .iter()
        .map(|&i| {
            cat.metrics[i]
                .spec
                .grain
                .as_ref()
                .map_or(Grain::Month, |g| g.value)
        })
        .collect();
    if grains.iter().any(|g| *g != grains[0]) {
        return Err(usage(
            "these metrics have different default grains; choose one with --grain",
        ));
    }
    Ok(grains[0])
}

/// `--by`: each dimension once, and carried by every metric.
fn check_by(cat: &Catalog, ids: &[MetricId], by: &[String]) -> Result<(), RunError> {
    for (k, d) in by.iter().enumerate() {
        if by[..k].contains(d) {
            return Err(usage(format!("--by {d} is given twice")));
        }
        for &i in ids {
            let dims = cat.dimensions(i);
            if !dims.contains(d) {
                let has = if dims.is_empty() {
                    "none".to_string()
                } else {
                    dims.join(", ")
                };
                let hint = hint(d, dims.iter().map(String::as_str));
                return Err(usage(format!(
                    "metric `{}` has no dimension `{d}`{hint}; its dimensions: {has}",
                    cat.metrics[i].name
                )));
            }
        }
    }
    Ok(())
}

/// `--where`, parsed as a snippet of its own source so that errors point into it.
fn parse_where(db: &mut SourceDb, req: &RunRequest) -> Result<Option<crate::sql::Sql>, RunError> {
    let Some(w) = &req.filter else {
        return Ok(None);
    };
    let file = db.add("<--where>", w.as_str());
    let text = Text::from_scalar(file, w, w, crate::spec::yaml::Style::Plain, 0..w.len());
    crate::validate::run_filter(&text)
        .map(Some)
        .map_err(RunError::Diagnostics)
}

/// The output's metric columns (with `--compare`'s) and every column's unit.
fn output_columns(
    cat: &Catalog,
    ids: &[MetricId],
    req: &RunRequest,
) -> (Vec<OutputColumn>, Vec<Option<Unit>>) {
    let mut columns = Vec::new();
    let mut units = vec![None];
    units.extend(req.by.iter().map(|_| None));
    for &i in ids {
        let m = &cat.metrics[i];
        let unit = m.spec.unit.as_ref().map(|u| u.value);
        columns.push(OutputColumn::Value {
            name: m.name.clone(),
            metric: i,
            shift: vec![],
        });
        units.push(unit);
        if let Some(c) = req.compare {
            let shift = match c {
                Compare::PreviousPeriod => Shift::Periods(1),
                Compare::PreviousYear => Shift::Year,
            };
            let prev = format!("{}_previous", m.name);
            columns.push(OutputColumn::Value {
                name: prev.clone(),
                metric: i,
                shift: vec![shift],
            });
            columns.push(OutputColumn::Change {
                name: format!("{}_change_pct", m.name),
                current: m.name.clone(),
                previous: prev,
            });
            units.push(unit);
            units.push(Some(Unit::Percent));
        }
    }
    (columns, units)
}

/// `[from, to)`: as given, or every period the data's time columns cover.
async fn resolve_range(
    ctx: &SessionContext,
    cat: &Catalog,
    root: &DataRoot,
    order: &[MetricId],
    req: &RunRequest,
    tz: Tz,
) -> Result<(i64, i64), RunError> {
    let bound = |flag: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|s| {
                parse_instant(s, tz).ok_or_else(|| {
                    usage(format!(
                        "--{flag} `{s}` is not a date (YYYY-MM-DD) or an RFC 3339 timestamp"
                    ))
                })
            })
            .transpose()
    };
    let (from, to) = match (bound("from", &req.from)?, bound("to", &req.to)?) {
        (Some(f), Some(t)) => (f, t),
        (f, t) => {
            let (lo, hi) = data_range(ctx, cat, root, order).await?;
            (f.unwrap_or(lo), t.unwrap_or(hi))
        }
    };
    if to <= from {
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "the data's end".into());
        return Err(usage(format!(
            "--to {} must be after --from {}",
            shown(&req.to),
            req.from
                .clone()
                .unwrap_or_else(|| "the data's start".into())
        )));
    }
    Ok((from, to))
}

/// The instants spanning every time column the metrics read: `[min, max]` as `[from, to)`.
async fn data_range(
    ctx: &SessionContext,
    cat: &Catalog,
    root: &DataRoot,
    order: &[MetricId],
) -> Result<(i64, i64), RunError> {
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    for &m in order {
        let metric = &cat.metrics[m];
        let Kind::Aggregate(agg) = &metric.kind else {
            continue;
        };
        let time = agg
            .time
            .as_ref()
            .or_else(|| cat.model(&agg.source).and_then(|md| md.time.as_ref()));
        let Some(time) = time else { continue };
        let (t, rel) = compile::plan_time(ctx, root, cat, m, time)
            .await
            .map_err(RunError::Diagnostics)?;
        let plan = LogicalPlanBuilder::from(rel)
            .aggregate(
                Vec::<datafusion::logical_expr::Expr>::new(),
                vec![min(t.clone()), max(t)],
            )
            .and_then(|b| b.build())
            .map_err(|e| RunError::Execution(e.to_string()))?;
        let batches = collect(ctx, plan, &metric.name).await?;
        for b in batches {
            let cast = |i: usize| {
                datafusion::arrow::compute::cast(b.column(i), &crate::source::utc_timestamp())
            };
            let (a, z) = (
                cast(0).map_err(|e| RunError::Execution(e.to_string()))?,
                cast(1).map_err(|e| RunError::Execution(e.to_string()))?,
            );
            let a = a
                .as_any()
                .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
                .expect("timestamps");
            let z = z
                .as_any()
                .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
                .expect("timestamps");
            if !a.is_empty() && a.is_valid(0) {
                lo = lo.min(a.value(0));
            }
            if !z.is_empty() && z.is_valid(0) {
                hi = hi.max(z.value(0));
            }
        }
    }
    if lo > hi {
        return Err(usage(
            "the data holds no timestamps for these metrics; give the range with --from and --to",
        ));
    }
    Ok((lo, hi + 1))
}

/// Runs `plan` to completion. Errors name `what`; a panic in the engine (a corrupt file)
/// becomes an error too.
pub async fn collect(
    ctx: &SessionContext,
    plan: LogicalPlan,
    what: &str,
) -> Result<Vec<RecordBatch>, RunError> {
    let run = async {
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| exec_error(what, &e))?;
        df.collect().await.map_err(|e| exec_error(what, &e))
    };
    crate::guard::guarded(run).await.unwrap_or_else(|panic| {
        Err(RunError::Execution(format!(
            "computing `{what}`: the engine failed on this data ({panic}); a data file is \
             likely corrupt"
        )))
    })
}

pub(crate) fn exec_error(what: &str, e: &datafusion::error::DataFusionError) -> RunError {
    if let datafusion::error::DataFusionError::ResourcesExhausted(detail) = e.find_root() {
        return RunError::Execution(format!(
            "computing `{what}` needs more memory than the limit allows: {detail}\n  \
             (raise --memory-limit, or run fewer metrics or a shorter range at once)"
        ));
    }
    let msg = e.to_string();
    let msg = msg
        .trim_start_matches("External error: ")
        .trim_start_matches("Arrow error: ");
    RunError::Execution(format!("computing `{what}`: {msg}"))
}

/// The metrics a scan computes, for messages: `a`, or `a, b and 3 more`.
pub fn scan_label(scan: &Scan, cat: &Catalog) -> String {
    let names: Vec<&str> = scan
        .members
        .iter()
        .map(|m| cat.metrics[*m].name.as_str())
        .collect();
    match names.as_slice() {
        [one] => one.to_string(),
        [a, b] => format!("{a} and {b}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} more", rest.len()),
        [] => String::new(),
    }
}

/// `run`, failed with a message naming `what` when it takes longer than `limit`.
async fn within<T>(
    limit: Option<std::time::Duration>,
    run: impl std::future::Future<Output = Result<T, RunError>>,
    what: &str,
) -> Result<T, RunError> {
    let Some(limit) = limit else {
        return run.await;
    };
    tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
        Err(RunError::Execution(format!(
            "computing `{what}` took longer than --plan-timeout {} s; nothing was written",
            limit.as_secs()
        )))
    })
}

/// What a run tells its caller while it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Scan `index` of `count`, computing `metrics`, starts.
    Scan {
        index: usize,
        count: usize,
        metrics: &'a str,
    },
    /// The cluster lost an executor while `metrics` ran (`cause`, its error): the scan is
    /// submitted again, as attempt `attempt` of `of`.
    Retry {
        metrics: &'a str,
        attempt: usize,
        of: usize,
        cause: &'a str,
    },
}

/// How many times in all a scan is submitted to a cluster that keeps losing executors
/// while it runs: a loss seen through a failed shuffle fetch fails one job before the
/// scheduler removes the executor, and the next job's first task sent there removes it.
const CLUSTER_ATTEMPTS: usize = 4;

/// Runs every scan, then the assembly. `progress` hears each scan as it starts, and each
/// scan a cluster runs again.
pub async fn execute(
    p: &Program,
    cat: &Catalog,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<RunOutput, RunError> {
    for (i, scan) in p.scans.iter().enumerate() {
        let name = scan_label(scan, cat);
        progress(Progress::Scan {
            index: i + 1,
            count: p.scans.len(),
            metrics: &name,
        });
        let batches = scan_batches(p, scan, &name, progress).await?;
        let schema = Arc::new(scan.plan.schema().as_arrow().clone());
        let table = MemTable::try_new(schema, vec![batches]).map_err(|e| exec_error(&name, &e))?;
        let _ = p.ctx.deregister_table(scan.table.as_str());
        p.ctx
            .register_table(scan.table.as_str(), Arc::new(table))
            .map_err(|e| exec_error(&name, &e))?;
    }
    let read: Vec<String> = p.scans.iter().flat_map(|s| scanned(&s.plan)).collect();
    if let Some(e) = p.root.vanished(read.iter().map(String::as_str)) {
        return Err(RunError::Execution(e.to_string()));
    }
    let plan = assembly(p, cat).await?;
    // The assembly joins the scans' results, which are already here and hold a row per
    // period and slice: shipping them to a cluster and back would only add the trip (and
    // its join chain, one join per metric, is deeper than protobuf decoders accept).
    let batches = collect(&p.ctx, plan.clone(), "the output").await?;
    Ok(RunOutput {
        schema: Arc::new(plan.schema().as_arrow().clone()),
        batches,
        units: p.units.clone(),
    })
}

/// One scan's result. On a cluster that lost an executor while the scan ran, kpi's
/// scheduler fails the job rather than recover it in place (`cluster::loss`), and the
/// scan is submitted again as a new job, up to [`CLUSTER_ATTEMPTS`] times in all; the
/// plans are deterministic, so a later attempt gives an undisturbed run's bytes.
async fn scan_batches(
    p: &Program,
    scan: &Scan,
    name: &str,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<RecordBatch>, RunError> {
    let mut attempt = 1;
    loop {
        let run = async {
            let plan = if p.shared_once {
                shared::computed_once(&p.runner, scan.plan.clone(), name).await?
            } else {
                scan.plan.clone()
            };
            collect(&p.runner, plan, name).await
        };
        let msg = match within(p.plan_timeout, run, name).await {
            Ok(batches) => return Ok(batches),
            Err(RunError::Execution(msg)) => msg,
            Err(other) => return Err(other),
        };
        let target = p.cluster.as_ref();
        if target.is_some_and(|t| t.lost_executor(&msg)) {
            if attempt == CLUSTER_ATTEMPTS {
                return Err(RunError::Execution(format!(
                    "computing `{name}`: the cluster lost an executor during each of \
                     {CLUSTER_ATTEMPTS} attempts; nothing was written. The last: {msg}"
                )));
            }
            attempt += 1;
            progress(Progress::Retry {
                metrics: name,
                attempt,
                of: CLUSTER_ATTEMPTS,
                cause: &msg,
            });
            // The scheduler's removal of the executor lands in the meantime.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        if let Some(unreachable) = target.and_then(|t| t.unreachable(&msg)) {
            return Err(RunError::Execution(format!(
                "computing `{name}`: {unreachable}"
            )));
        }
        return Err(RunError::Execution(
            match bad_value(&p.ctx, &scan.plan, &p.root, &msg).await {
                Some(cause) => format!("computing `{name}`: {cause}"),
                None => format!("{msg}\n  (reading {})", sources(&scan.plan, &p.root)),
            },
        ));
    }
}

pub(crate) async fn assembly(p: &Program, cat: &Catalog) -> Result<LogicalPlan, RunError> {
    let layout = Layout {
        calendar: p.calendar,
        periods: &p.periods,
        dims: &p.dims,
        columns: p.columns.clone(),
    };
    assemble::build(&p.ctx, cat, &p.stages, &layout)
        .await
        .map_err(RunError::Diagnostics)
}
