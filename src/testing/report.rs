//! Test reports: one line per case, and for a failed case every row of the result beside
//! the expected one, the wrong rows marked. `github` adds workflow annotations on the
//! test file's lines.

use std::fmt::Write as _;

use super::TestCase;
use super::run::{CaseResult, Diff, Mismatch, Outcome};
use crate::diag::{SourceDb, render};
use crate::output::table::align_dyn;

/// Counts of a test run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
}

impl Totals {
    pub fn of(results: &[(TestCase, CaseResult)]) -> Totals {
        let passed = results
            .iter()
            .filter(|(_, r)| matches!(r.outcome, Outcome::Pass))
            .count();
        Totals {
            passed,
            failed: results.len() - passed,
        }
    }
}

fn location(db: &SourceDb, case: &TestCase) -> String {
    let f = db.file(case.file);
    let lc = f.line_col(case.span.start);
    format!("{}:{}:{}", f.path.display(), lc.line, lc.column)
}

fn number(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("{x}"),
        None => "null".into(),
    }
}

/// The diff as an aligned table: keys, then `metric` expected and actual per metric, and
/// a last column saying what is wrong with the row.
pub fn diff_table(d: &Diff) -> String {
    let mut header: Vec<String> = d.keys.clone();
    for m in &d.metrics {
        header.push(format!("{m} expected"));
        header.push(format!("{m} actual"));
    }
    header.push(String::new());
    let mut rows = Vec::new();
    for r in &d.rows {
        let mut cells: Vec<String> = r
            .key
            .iter()
            .map(|k| k.clone().unwrap_or_else(|| "null".into()))
            .collect();
        for i in 0..d.metrics.len() {
            cells.push(match &r.expected {
                Some(e) => e[i].clone().unwrap_or_else(|| "null".into()),
                None => "—".into(),
            });
            cells.push(match &r.actual {
                Some(a) => number(a[i]),
                None => "—".into(),
            });
        }
        cells.push(match &r.mismatch {
            None => String::new(),
            Some(Mismatch::Values(ms)) => format!("✗ {}", ms.join(", ")),
            Some(Mismatch::Missing) => "✗ missing from the result".into(),
            Some(Mismatch::Unexpected) => "✗ not expected".into(),
        });
        rows.push(cells);
    }
    let right: Vec<usize> = (d.keys.len()..d.keys.len() + 2 * d.metrics.len()).collect();
    align_dyn(&header, &rows, &right)
}

/// The human report, ending in a summary line.
pub fn human(results: &[(TestCase, CaseResult)], db: &SourceDb, color: bool) -> String {
    let mut out = String::new();
    for (case, r) in results {
        let ms = r.elapsed.as_secs_f64() * 1000.0;
        let status = match &r.outcome {
            Outcome::Pass => "ok  ",
            _ => "FAIL",
        };
        let _ = writeln!(
            out,
            "{status} {}  {} ({ms:.0} ms)",
            location(db, case),
            case.name
        );
        match &r.outcome {
            Outcome::Pass => {}
            Outcome::Fail(d) => {
                for line in diff_table(d).lines() {
                    let _ = writeln!(out, "     {}", line.trim_end());
                }
                out.push('\n');
            }
            Outcome::Diagnostics(diags) => out.push_str(&render::human(diags, db, color)),
            Outcome::Error(e) => {
                let _ = writeln!(out, "     error: {e}\n");
            }
        }
    }
    let t = Totals::of(results);
    let _ = writeln!(
        out,
        "{} passed, {} failed ({} case{})",
        t.passed,
        t.failed,
        results.len(),
        if results.len() == 1 { "" } else { "s" }
    );
    out
}

/// GitHub workflow annotations: one `::error` per failed case, on the wrong expected row
/// when there is one, else on the case.
pub fn github(results: &[(TestCase, CaseResult)], db: &SourceDb) -> String {
    let mut out = String::new();
    for (case, r) in results {
        let (span, message) = match &r.outcome {
            Outcome::Pass => continue,
            Outcome::Fail(d) => {
                let first = d.rows.iter().find(|r| r.mismatch.is_some());
                let what = first
                    .map(|row| {
                        let key = d
                            .keys
                            .iter()
                            .zip(&row.key)
                            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null")))
                            .collect::<Vec<_>>()
                            .join(" ");
                        match &row.mismatch {
                            Some(Mismatch::Values(ms)) => {
                                let i = d.metrics.iter().position(|m| m == &ms[0]).unwrap_or(0);
                                format!(
                                    "{key}: {} expected {}, got {}",
                                    ms[0],
                                    row.expected
                                        .as_ref()
                                        .and_then(|e| e[i].clone())
                                        .unwrap_or_else(|| "null".into()),
                                    number(row.actual.as_ref().and_then(|a| a[i]))
                                )
                            }
                            Some(Mismatch::Missing) => format!("{key}: missing from the result"),
                            _ => format!("{key}: not expected"),
                        }
                    })
                    .unwrap_or_default();
                let span = first
                    .and_then(|r| r.span.clone())
                    .unwrap_or_else(|| case.span.clone());
                (span, format!("test `{}` failed: {what}", case.name))
            }
            Outcome::Diagnostics(d) => {
                out.push_str(&render::github(d, db));
                (
                    case.span.clone(),
                    format!("test `{}` could not run", case.name),
                )
            }
            Outcome::Error(e) => (case.span.clone(), format!("test `{}`: {e}", case.name)),
        };
        let f = db.file(case.file);
        let lc = f.line_col(span.start);
        let _ = writeln!(
            out,
            "::error file={},line={},col={},title=kpi test::{}",
            f.path.display().to_string().replace('\\', "/"),
            lc.line,
            lc.column,
            message.replace('%', "%25").replace('\n', "%0A")
        );
    }
    out
}
