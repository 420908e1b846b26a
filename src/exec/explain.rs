//! `kpi explain`, and the compiled SQL `kpi diff` compares: every plan of a prepared
//! program rendered as SQL (DataFusion's unparser), optimized plans, physical plans and
//! per-operator metrics of an actual run.

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::displayable;

use super::{Program, RunError, assembly, exec_error, execute};
use crate::compile::assemble::stage_table;
use crate::compile::snippet_error;
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
    let mut plans: Vec<(String, String, LogicalPlan)> = Vec::new();
    for m in &p.order {
        let s = &p.stages[m];
        plans.push((
            format!("stage `{}`", cat.metrics[*m].name),
            s.shape.clone(),
            s.plan.clone(),
        ));
        // Stand in for the stage's result so the assembly can be planned without running it.
        if !opts.analyze {
            register_empty(p, cat, *m)?;
        }
    }
    if opts.analyze {
        let _ = execute(p, cat, &mut |_, _, _| {}).await?;
    }
    let asm = assembly(p, cat).await?;
    plans.push((
        "assembly".to_string(),
        "periods × dimension values, stages joined, formulas computed".to_string(),
        asm,
    ));
    for (title, shape, plan) in plans {
        out.push_str(&format!("── {title}: {shape}\n\n"));
        out.push_str(&format!("SQL:\n{}\n\n", sql_of(&plan)));
        let optimized = state.optimize(&plan).map_err(|e| exec_error(&title, &e))?;
        out.push_str(&format!(
            "Optimized logical plan:\n{}\n\n",
            optimized.display_indent()
        ));
        if opts.physical || opts.analyze {
            let physical = state
                .create_physical_plan(&optimized)
                .await
                .map_err(|e| exec_error(&title, &e))?;
            if opts.analyze {
                let ctx = p.ctx.task_ctx();
                let _ = datafusion::physical_plan::collect(physical.clone(), ctx)
                    .await
                    .map_err(|e| exec_error(&title, &e))?;
                out.push_str(&format!(
                    "Physical plan with metrics:\n{}\n",
                    displayable(physical.as_ref()).indent(true)
                ));
                let _ = physical.metrics();
                out.push_str(&format!("{}\n", metrics_tree(physical.as_ref(), 0)));
            } else {
                out.push_str(&format!(
                    "Physical plan:\n{}\n",
                    displayable(physical.as_ref()).indent(true)
                ));
            }
        }
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
    let mut out = Vec::new();
    for m in &p.order {
        let s = &p.stages[m];
        out.push((format!("stage `{}`", cat.metrics[*m].name), sql_of(&s.plan)));
        register_empty(p, cat, *m)?;
    }
    let asm = assembly(p, cat).await?;
    out.push(("assembly".to_string(), sql_of(&asm)));
    Ok(out)
}

fn register_empty(
    p: &Program,
    cat: &Catalog,
    m: crate::validate::MetricId,
) -> Result<(), RunError> {
    let schema = Arc::new(p.stages[&m].plan.schema().as_arrow().clone());
    let table = MemTable::try_new(schema, vec![vec![]]).map_err(|e| exec_error("explain", &e))?;
    let _ = p.ctx.register_table(stage_table(cat, m), Arc::new(table));
    Ok(())
}

fn sql_of(plan: &LogicalPlan) -> String {
    match datafusion::sql::unparser::plan_to_sql(plan) {
        Ok(sql) => pretty_sql(&sql.to_string()),
        Err(e) => format!("(not expressible in SQL: {})", snippet_error(&e)),
    }
}
