//! Running one case: its tables written as CSV files into a temporary data root, the
//! metrics computed by the same prepare/execute path as `kpi run`, the result compared
//! with the expected rows cell by cell.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{ExpectedRow, TableRows, TestCase};
use crate::diag::{Diagnostic, SourceDb};
use crate::exec::{self, RunError, RunOutput};
use crate::source::DataRoot;
use crate::validate::Catalog;

/// How a case ended.
#[derive(Debug)]
pub enum Outcome {
    Pass,
    /// The result differs from the expectation; the diff covers every row.
    Fail(Diff),
    /// The case could not run: its metrics, range or data are wrong.
    Diagnostics(Vec<Diagnostic>),
    Error(String),
}

/// A case's outcome and how long it took.
#[derive(Debug)]
pub struct CaseResult {
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// Expected and actual rows side by side: key columns (period, `by` dimensions) and, per
/// metric, the expected and the actual value.
#[derive(Debug)]
pub struct Diff {
    pub keys: Vec<String>,
    pub metrics: Vec<String>,
    pub rows: Vec<DiffRow>,
}

/// One row of a [`Diff`].
#[derive(Debug)]
pub struct DiffRow {
    pub key: Vec<Option<String>>,
    /// Expected values as written; `None` when the result has a row the test did not expect.
    pub expected: Option<Vec<Option<String>>>,
    /// Actual values; `None` when the result lacks an expected row.
    pub actual: Option<Vec<Option<f64>>>,
    pub mismatch: Option<Mismatch>,
    /// The expected row's place in the test file, if the test wrote this row.
    pub span: Option<std::ops::Range<usize>>,
}

/// Why a row of a [`Diff`] is wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// These metrics differ.
    Values(Vec<String>),
    /// The result has no such row.
    Missing,
    /// The test expects no such row.
    Unexpected,
}

/// Runs one case against `cat`. `db` receives the SQL snippets the run adds (`where`).
pub async fn run_case(cat: &Catalog, db: &mut SourceDb, case: &TestCase) -> CaseResult {
    let started = Instant::now();
    let outcome = match run_inner(cat, db, case).await {
        Ok(out) => compare(case, &out),
        Err(o) => o,
    };
    CaseResult {
        outcome,
        elapsed: started.elapsed(),
    }
}

async fn run_inner(
    cat: &Catalog,
    db: &mut SourceDb,
    case: &TestCase,
) -> Result<RunOutput, Outcome> {
    let dir = tempfile::Builder::new()
        .prefix("kpi-test-")
        .tempdir()
        .map_err(|e| Outcome::Error(format!("cannot create a temporary data root: {e}")))?;
    for t in &case.tables {
        let path = dir.path().join(format!("{}.csv", t.name));
        let written = match &t.rows {
            TableRows::Inline(rows) => write_csv(&path, rows),
            TableRows::Csv(src) => std::fs::copy(src, &path)
                .map(|_| ())
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", src.display()))),
        };
        written.map_err(|e| Outcome::Error(format!("table `{}`: {e}", t.name)))?;
    }
    let mut root = DataRoot::open(dir.path()).map_err(|e| Outcome::Error(e.to_string()))?;
    root.sparse = true;
    for t in &case.tables {
        if !t.types.is_empty() {
            root.types.insert(t.name.clone(), t.types.clone());
        }
    }
    let result = async {
        let program = exec::prepare(cat, db, &root, &case.request).await?;
        exec::execute(&program, cat, &mut |_| {}).await
    }
    .await;
    result.map_err(|e| match e {
        RunError::Diagnostics(d) => Outcome::Diagnostics(d),
        // Paths inside the temporary root mean nothing to the reader.
        other => Outcome::Error(
            other
                .to_string()
                .replace(&format!("{}/", dir.path().display()), "")
                .replace(&dir.path().display().to_string(), "the test's data"),
        ),
    })
}

/// Writes rows as a CSV file with a header of every column any row names.
fn write_csv(path: &Path, rows: &[Vec<(String, Option<String>)>]) -> std::io::Result<()> {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for (c, _) in row {
            if !columns.contains(&c.as_str()) {
                columns.push(c);
            }
        }
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let line = |cells: Vec<String>| cells.join(",") + "\n";
    out.write_all(line(columns.iter().map(|c| quote(c)).collect()).as_bytes())?;
    for row in rows {
        let cells = columns
            .iter()
            .map(|c| match row.iter().find(|(k, _)| k == c) {
                Some((_, Some(v))) => quote(v),
                _ => String::new(),
            })
            .collect();
        out.write_all(line(cells).as_bytes())?;
    }
    out.flush()
}

fn quote(v: &str) -> String {
    if v.is_empty() || v.contains([',', '"', '\n', '\r']) || v.trim() != v {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn compare(case: &TestCase, out: &RunOutput) -> Outcome {
    let keys: Vec<String> = std::iter::once("period".to_string())
        .chain(case.request.by.iter().cloned())
        .collect();
    let metrics: Vec<String> = case.metrics.iter().map(|m| m.value.clone()).collect();
    let actual = match out.rows(keys.len()) {
        Ok(a) => a,
        Err(e) => return Outcome::Error(format!("cannot read the result: {e}")),
    };
    let expected_key = |r: &ExpectedRow| -> Vec<Option<String>> {
        keys.iter().map(|k| r.get(k).cloned().flatten()).collect()
    };
    let mut used = HashSet::new();
    let mut rows = Vec::new();
    for (key, values) in &actual {
        let found = case
            .expect
            .iter()
            .enumerate()
            .find(|(i, r)| !used.contains(i) && expected_key(r) == *key);
        let row = match found {
            Some((i, r)) => {
                used.insert(i);
                let expected: Vec<Option<String>> = metrics
                    .iter()
                    .map(|m| r.get(m).cloned().flatten())
                    .collect();
                let wrong: Vec<String> = metrics
                    .iter()
                    .zip(expected.iter().zip(values))
                    .filter(|(_, (e, a))| !matches(e.as_deref(), **a, case.tolerance))
                    .map(|(m, _)| m.clone())
                    .collect();
                DiffRow {
                    key: key.clone(),
                    expected: Some(expected),
                    actual: Some(values.clone()),
                    mismatch: (!wrong.is_empty()).then_some(Mismatch::Values(wrong)),
                    span: Some(r.span.clone()),
                }
            }
            None => DiffRow {
                key: key.clone(),
                expected: None,
                actual: Some(values.clone()),
                mismatch: Some(Mismatch::Unexpected),
                span: None,
            },
        };
        rows.push(row);
    }
    for (i, r) in case.expect.iter().enumerate() {
        if !used.contains(&i) {
            rows.push(DiffRow {
                key: expected_key(r),
                expected: Some(
                    metrics
                        .iter()
                        .map(|m| r.get(m).cloned().flatten())
                        .collect(),
                ),
                actual: None,
                mismatch: Some(Mismatch::Missing),
                span: Some(r.span.clone()),
            });
        }
    }
    if rows.iter().all(|r| r.mismatch.is_none()) {
        Outcome::Pass
    } else {
        Outcome::Fail(Diff {
            keys,
            metrics,
            rows,
        })
    }
}

/// Whether an actual value meets the expected text (a number or null) within `tolerance`,
/// relative to the larger magnitude, and absolute below 1.
fn matches(expected: Option<&str>, actual: Option<f64>, tolerance: f64) -> bool {
    match (expected.map(str::parse::<f64>), actual) {
        (None, None) => true,
        (Some(Ok(e)), Some(a)) => (a - e).abs() <= tolerance * e.abs().max(a.abs()).max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_within_the_relative_tolerance_and_nulls_only_nulls() {
        assert!(matches(Some("10.5"), Some(10.5), 1e-9));
        assert!(matches(Some("1e12"), Some(1e12 + 100.0), 1e-9));
        assert!(!matches(Some("1e12"), Some(1e12 + 10_000.0), 1e-9));
        assert!(matches(Some("0"), Some(1e-12), 1e-9));
        assert!(!matches(Some("0"), Some(1e-6), 1e-9));
        assert!(matches(None, None, 1e-9));
        assert!(!matches(None, Some(0.0), 1e-9));
        assert!(!matches(Some("0"), None, 1e-9));
    }

    #[test]
    fn csv_cells_are_quoted_only_when_they_must_be() {
        assert_eq!(quote("paid"), "paid");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote(" padded"), "\" padded\"");
        assert_eq!(quote(""), "\"\"");
    }
}
