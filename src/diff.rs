//! `kpi diff`: what a change to the metric definitions changes. Two catalogues (a base and a
//! head) are compiled against the same data root and range; metrics are matched by name and
//! reported as added, removed, changed (their compiled SQL differs, so a change to a model
//! they read counts) or changed in metadata only. With values, both sides also run and each
//! changed metric's values are compared period by period.
//!
//! This module computes the comparison; [`render_human`] and [`render_markdown`] print it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::diag::SourceDb;
use crate::exec::{self, RunError, RunRequest};
use crate::source::DataRoot;
use crate::validate::Catalog;

/// One side of a comparison: a checked catalogue and the files it came from.
pub struct Side<'a> {
    pub catalog: &'a Catalog,
    pub db: &'a mut SourceDb,
}

/// How a metric differs between base and head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    /// The compiled SQL differs.
    Changed,
    /// Same SQL; the definition's text differs (description, unit, owner, layout…).
    Metadata,
}

/// One metric's change.
#[derive(Debug, serde::Serialize)]
pub struct MetricChange {
    pub name: String,
    pub kind: ChangeKind,
    /// A unified diff of the compiled SQL (base → head); empty unless `Changed`.
    pub sql_diff: String,
    /// Values per period, when values were asked for.
    pub values: Vec<ValueRow>,
}

/// A metric's value in one period on both sides.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ValueRow {
    pub period: String,
    pub base: Option<f64>,
    pub head: Option<f64>,
}

impl ValueRow {
    /// Whether the two sides differ beyond float noise.
    pub fn differs(&self) -> bool {
        match (self.base, self.head) {
            (Some(b), Some(h)) => (b - h).abs() > 1e-9 * b.abs().max(h.abs()).max(1.0),
            (None, None) => false,
            _ => true,
        }
    }
}

/// The SQL of one metric as `kpi sql` plans it: every stage, then the assembly.
async fn metric_sql(
    side: &mut Side<'_>,
    root: &DataRoot,
    req: &RunRequest,
    name: &str,
) -> Result<String, RunError> {
    let mut req = RunRequest {
        metrics: vec![name.to_string()],
        ..req.clone()
    };
    // The plan `kpi sql` exports, all of it SQL: kpi's own operators (bit masks, the
    // timeline merge) keep part of what they compute out of the SQL.
    req.engine.portable = true;
    let program = exec::prepare(side.catalog, side.db, root, &req).await?;
    let parts = exec::compiled_sql(&program, side.catalog).await?;
    Ok(parts
        .into_iter()
        .map(|(title, sql)| format!("-- {title}\n{sql}\n"))
        .collect())
}

/// A metric's definition text: its file's, which covers metadata and inline helpers.
fn definition(side: &Side<'_>, name: &str) -> Option<String> {
    let id = side.catalog.metric(name)?;
    Some(
        side.db
            .file(side.catalog.metrics[id].file())
            .text
            .to_string(),
    )
}

/// Compares two catalogues. `req` gives the range, grain and zone both are compiled (and,
/// with `values`, run) with; its metric list is ignored.
pub async fn compare(
    base: &mut Side<'_>,
    head: &mut Side<'_>,
    root: &DataRoot,
    req: &RunRequest,
    values: bool,
) -> Result<Vec<MetricChange>, RunError> {
    let names = |c: &Catalog| -> BTreeSet<String> {
        c.public_metrics()
            .map(|i| c.metrics[i].name.clone())
            .collect()
    };
    let (b, h) = (names(base.catalog), names(head.catalog));
    let mut out = Vec::new();
    for name in b.union(&h) {
        let change = match (b.contains(name), h.contains(name)) {
            (false, true) => MetricChange {
                name: name.clone(),
                kind: ChangeKind::Added,
                sql_diff: String::new(),
                values: vec![],
            },
            (true, false) => MetricChange {
                name: name.clone(),
                kind: ChangeKind::Removed,
                sql_diff: String::new(),
                values: vec![],
            },
            _ => {
                let (bs, hs) = (
                    metric_sql(base, root, req, name).await?,
                    metric_sql(head, root, req, name).await?,
                );
                let kind = if bs != hs {
                    ChangeKind::Changed
                } else if definition(base, name) != definition(head, name) {
                    ChangeKind::Metadata
                } else {
                    continue;
                };
                let sql_diff = if kind == ChangeKind::Changed {
                    similar::TextDiff::from_lines(&bs, &hs)
                        .unified_diff()
                        .context_radius(2)
                        .header("base", "head")
                        .to_string()
                } else {
                    String::new()
                };
                MetricChange {
                    name: name.clone(),
                    kind,
                    sql_diff,
                    values: vec![],
                }
            }
        };
        out.push(change);
    }
    if values {
        for c in out.iter_mut() {
            let (bv, hv) = match c.kind {
                ChangeKind::Added => (vec![], run_one(head, root, req, &c.name).await?),
                ChangeKind::Removed => (run_one(base, root, req, &c.name).await?, vec![]),
                ChangeKind::Changed | ChangeKind::Metadata => (
                    run_one(base, root, req, &c.name).await?,
                    run_one(head, root, req, &c.name).await?,
                ),
            };
            let mut periods: Vec<&String> = bv.iter().chain(&hv).map(|(p, _)| p).collect();
            periods.sort();
            periods.dedup();
            let find = |v: &[(String, Option<f64>)], p: &str| {
                v.iter().find(|(q, _)| q == p).and_then(|(_, x)| *x)
            };
            c.values = periods
                .into_iter()
                .map(|p| ValueRow {
                    period: p.clone(),
                    base: find(&bv, p),
                    head: find(&hv, p),
                })
                .collect();
        }
    }
    Ok(out)
}

/// One metric's values per period on one side.
async fn run_one(
    side: &mut Side<'_>,
    root: &DataRoot,
    req: &RunRequest,
    name: &str,
) -> Result<Vec<(String, Option<f64>)>, RunError> {
    let req = RunRequest {
        metrics: vec![name.to_string()],
        ..req.clone()
    };
    let program = exec::prepare(side.catalog, side.db, root, &req).await?;
    let out = exec::execute(&program, side.catalog, &mut |_| {}).await?;
    let rows = out.rows(1).map_err(RunError::Execution)?;
    // One key (the period) and one metric per row.
    Ok(rows
        .into_iter()
        .map(|(k, v)| (k[0].clone().unwrap_or_default(), v[0]))
        .collect())
}

fn word(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
        ChangeKind::Metadata => "changed (metadata only)",
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "null".into(), |x| format!("{x}"))
}

fn change_pct(r: &ValueRow) -> String {
    match (r.base, r.head) {
        (Some(b), Some(h)) if b != 0.0 => format!("{:+.2}%", (h - b) / b.abs() * 100.0),
        _ => String::new(),
    }
}

/// Value rows that differ, as aligned text lines.
fn value_lines(c: &MetricChange) -> Vec<Vec<String>> {
    c.values
        .iter()
        .filter(|r| r.differs())
        .map(|r| vec![r.period.clone(), num(r.base), num(r.head), change_pct(r)])
        .collect()
}

/// The comparison for a terminal: a summary, then per metric its SQL diff and values.
pub fn render_human(changes: &[MetricChange], values: bool) -> String {
    if changes.is_empty() {
        return "no metric changed\n".into();
    }
    let mut out = String::new();
    for c in changes {
        let _ = writeln!(out, "{:<24} {}", word(c.kind), c.name);
    }
    for c in changes {
        if c.sql_diff.is_empty() && (!values || value_lines(c).is_empty()) {
            continue;
        }
        let _ = writeln!(out, "\n── {} ({})\n", c.name, word(c.kind));
        out.push_str(&c.sql_diff);
        if values {
            let rows = value_lines(c);
            if !c.sql_diff.is_empty() {
                out.push('\n');
            }
            if rows.is_empty() {
                out.push_str("values: the same in every period\n");
            } else {
                let _ = writeln!(
                    out,
                    "values: {} of {} periods differ",
                    rows.len(),
                    c.values.len()
                );
                let header = ["period", "base", "head", "change"].map(String::from);
                out.push_str(&crate::output::table::align_dyn(&header, &rows, &[1, 2, 3]));
            }
        }
    }
    out
}

/// The comparison as a pull-request comment: a summary table, then a collapsed section per
/// changed metric with its SQL diff and, with values, the periods whose value changed.
pub fn render_markdown(changes: &[MetricChange], values: bool) -> String {
    let mut out = String::from("### kpi diff\n\n");
    if changes.is_empty() {
        out.push_str("No metric changed.\n");
        return out;
    }
    out.push_str(if values {
        "| Metric | Change | Periods with a new value |\n|---|---|---|\n"
    } else {
        "| Metric | Change |\n|---|---|\n"
    });
    for c in changes {
        if values {
            let n = c.values.iter().filter(|r| r.differs()).count();
            let _ = writeln!(
                out,
                "| `{}` | {} | {n} of {} |",
                c.name,
                word(c.kind),
                c.values.len()
            );
        } else {
            let _ = writeln!(out, "| `{}` | {} |", c.name, word(c.kind));
        }
    }
    for c in changes.iter().filter(|c| c.kind != ChangeKind::Metadata) {
        let rows = if values { value_lines(c) } else { vec![] };
        if c.sql_diff.is_empty() && rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n<details><summary><code>{}</code> — {}</summary>\n",
            c.name,
            word(c.kind)
        );
        if !c.sql_diff.is_empty() {
            let _ = writeln!(out, "```diff\n{}```\n", c.sql_diff);
        }
        if !rows.is_empty() {
            out.push_str("| Period | Base | Head | Change |\n|---|--:|--:|--:|\n");
            for r in rows {
                let _ = writeln!(out, "| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
            }
            out.push('\n');
        }
        out.push_str("</details>\n");
    }
    out
}
