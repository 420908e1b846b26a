//! `kpi explain`, and the compiled SQL `kpi diff` compares: every plan of a prepared
//! program rendered as SQL (DataFusion's unparser), optimized plans, physical plans and
//! per-operator metrics of an actual run.

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::displayable;

use super::{Program, RunError, assembly, exec_error, scan_label};
use crate::compile::{Scan, snippet_error};
use crate::validate::Catalog;

/// What `kpi explain` shows.
pub struct ExplainOptions {
    pub physical: bool,
    pub analyze: bool,
}

/// Renders every plan of a program: SQL (DataFusion's unparser), optimized logical plan,
/// and optionally the physical plan or per-operator metrics of an actual run.
pub async fn explain(
    p: &Program,
    cat: &Catalog,
    opts: &ExplainOptions,
) -> Result<String, RunError> {
    let mut out = String::new();
    let state = p.ctx.state();
    let ps = &p.periods;
    out.push_str(&format!(
        "periods: {} {} period(s), the first starting {}, the last {} ({})\n\n",
        ps.len(),
        p.calendar.grain,
        ps.first().map(|x| x.date.to_string()).unwrap_or_default(),
        ps.last().map(|x| x.date.to_string()).unwrap_or_default(),
        p.calendar.tz.name()
    ));
    out.push_str(&scan_counts(p));
    let mut plans: Vec<(String, String, LogicalPlan)> = p
        .scans
        .iter()
        .map(|s| {
            let title = format!("scan of {}", scan_label(s, cat));
            (title, s.shape.clone(), s.plan.clone())
        })
        .collect();
    plans.push((
        "assembly".to_string(),
        "periods × dimension values, stages joined, formulas computed".to_string(),
        planned_assembly(p, cat).await?,
    ));
    let last = plans.len() - 1;
    for (i, (title, shape, plan)) in plans.into_iter().enumerate() {
        // The assembly reads the scans' results: plan it again once they are registered.
        let plan = if i == last && opts.analyze {
            assembly(p, cat).await?
        } else {
            plan
        };
        out.push_str(&format!("── {title}: {shape}\n\n"));
        out.push_str(&format!("SQL:\n{}\n\n", sql_of(&plan)));
        for (heading, inner) in crate::compile::inner_plans(&plan) {
            out.push_str(&format!("{heading}:\n{}\n\n", sql_of(&inner)));
        }
        // What `execute` does first: the repeated aggregation computed once.
        let ahead = std::time::Instant::now();
        let plan = if i != last && p.shared_once && super::shared::first_repeated(&plan).is_some() {
            out.push_str(
                "Repeated: a subplan that aggregates occurs more than once here; it is \
                 computed once first, held in memory, and read by each occurrence.\n\n",
            );
            if opts.analyze {
                super::shared::computed_once(&p.ctx, plan, &title).await?
            } else {
                plan
            }
        } else {
            plan
        };
        let ahead = ahead.elapsed();
        let optimized = state.optimize(&plan).map_err(|e| exec_error(&title, &e))?;
        out.push_str(&format!(
            "Optimized logical plan:\n{}\n\n",
            optimized.display_indent()
        ));
        if !(opts.physical || opts.analyze) {
            continue;
        }
        let physical = state
            .create_physical_plan(&optimized)
            .await
            .map_err(|e| exec_error(&title, &e))?;
        if !opts.analyze {
            out.push_str(&format!(
                "Physical plan:\n{}\n",
                displayable(physical.as_ref()).indent(true)
            ));
            continue;
        }
        let started = std::time::Instant::now();
        let batches = datafusion::physical_plan::collect(physical.clone(), p.ctx.task_ctx())
            .await
            .map_err(|e| exec_error(&title, &e))?;
        let took = started.elapsed() + ahead;
        if let Some(s) = p.scans.get(i) {
            register_result(p, s, batches)?;
        }
        out.push_str(&format!(
            "Ran in {:.3} s.{}\n\n",
            took.as_secs_f64(),
            reads(physical.as_ref())
        ));
        out.push_str(&format!(
            "Physical plan with metrics:\n{}\n",
            displayable(physical.as_ref()).indent(true)
        ));
        out.push_str(&format!("{}\n", metrics_tree(physical.as_ref(), 0)));
    }
    Ok(out)
}

fn metrics_tree(plan: &dyn datafusion::physical_plan::ExecutionPlan, depth: usize) -> String {
    let mut s = String::new();
    let m = plan
        .metrics()
        .map(|m| {
            m.aggregate_by_name()
                .sorted_for_display()
                .timestamps_removed()
                .to_string()
        })
        .unwrap_or_default();
    s.push_str(&format!("{}{}: {}\n", "  ".repeat(depth), plan.name(), m));
    for c in plan.children() {
        s.push_str(&metrics_tree(c.as_ref(), depth + 1));
    }
    s
}

/// Breaks the unparser's one-line SQL before its main clauses, for reading.
fn pretty_sql(sql: &str) -> String {
    let mut s = sql.to_string();
    for kw in [
        " FROM ",
        " WHERE ",
        " GROUP BY ",
        " ORDER BY ",
        " LEFT JOIN ",
        " INNER JOIN ",
        " CROSS JOIN ",
        " JOIN ",
        " UNION ",
    ] {
        s = s.replace(kw, &format!("\n{}", kw.trim_start()));
    }
    s
}

/// The SQL of every stage of `p` and of its assembly, as `(title, SQL)`, planned without
/// running anything (stage results are stood in for by empty tables of their schema).
pub async fn compiled_sql(p: &Program, cat: &Catalog) -> Result<Vec<(String, String)>, RunError> {
    let mut out: Vec<(String, String)> = p
        .scans
        .iter()
        .map(|s| (format!("scan of {}", scan_label(s, cat)), sql_of(&s.plan)))
        .collect();
    let asm = planned_assembly(p, cat).await?;
    out.push(("assembly".to_string(), sql_of(&asm)));
    Ok(out)
}

/// The assembly's plan without running anything: every scan's result is stood in for by
/// an empty table of its schema, which is all planning the assembly needs.
pub(super) async fn planned_assembly(p: &Program, cat: &Catalog) -> Result<LogicalPlan, RunError> {
    for s in &p.scans {
        register_result(p, s, vec![])?;
    }
    assembly(p, cat).await
}

fn register_result(
    p: &Program,
    s: &Scan,
    batches: Vec<datafusion::arrow::record_batch::RecordBatch>,
) -> Result<(), RunError> {
    let schema = Arc::new(s.plan.schema().as_arrow().clone());
    let table = MemTable::try_new(schema, vec![batches]).map_err(|e| exec_error("explain", &e))?;
    let _ = p.ctx.deregister_table(s.table.as_str());
    let _ = p.ctx.register_table(s.table.as_str(), Arc::new(table));
    Ok(())
}

/// How many plans read each table: `orders: 3 scans (of 9 metrics)`.
fn scan_counts(p: &Program) -> String {
    let mut counts: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for s in &p.scans {
        let seen = super::scanned(&s.plan)
            .into_iter()
            .filter(|name| !name.starts_with("__"));
        for name in seen {
            let c = counts.entry(name).or_default();
            c.0 += 1;
            c.1 += s.members.len();
        }
    }
    let mut out = format!(
        "plans: {} for {} metric(s)\n",
        p.scans.len(),
        p.stages.len()
    );
    for (t, (scans, metrics)) in counts {
        out.push_str(&format!(
            "  {t}: read by {scans} plan(s), for {metrics} metric(s)\n"
        ));
    }
    out.push('\n');
    out
}

fn sql_of(plan: &LogicalPlan) -> String {
    match datafusion::sql::unparser::plan_to_sql(plan) {
        Ok(sql) => pretty_sql(&sql.to_string()),
        Err(e) => format!("(not expressible in SQL: {})", snippet_error(&e)),
    }
}

/// What the plan's file scans read against their totals: files and row groups left after
/// pruning by statistics, rows and bytes read, one line per scan of files.
fn reads(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> String {
    fn walk(plan: &dyn datafusion::physical_plan::ExecutionPlan, out: &mut Vec<String>) {
        if plan.name() == "DataSourceExec"
            && let Some(m) = plan.metrics()
        {
            let m = m.aggregate_by_name();
            let get = |name: &str| {
                m.iter()
                    .find(|x| x.value().name() == name)
                    .map(|x| x.value().to_string())
            };
            if let Some(files) = get("files_ranges_pruned_statistics") {
                out.push(format!(
                    "\n  file scan: files {files}, row groups {}, rows read {}, bytes read {}",
                    get("row_groups_pruned_statistics").unwrap_or_default(),
                    get("output_rows").unwrap_or_default(),
                    get("bytes_scanned").unwrap_or_default(),
                ));
            }
        }
        for c in plan.children() {
            walk(c.as_ref(), out);
        }
    }
    let mut out = Vec::new();
    walk(plan, &mut out);
    out.concat()
}
