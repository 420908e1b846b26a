//! Metric unit tests (`kpi test`): YAML files under any `tests/` folder of the metrics
//! directory, each holding cases of hand-written input rows and the values the metrics must
//! produce for them.
//!
//! This stage owns the test-file model and loading ([`load`]), running a case in-process
//! against a temporary data root built from its rows ([`run`]), and the report with the
//! expected-versus-actual diff ([`report`]). Running goes through the same compile and
//! execute path as `kpi run`, and the rows through the same CSV reader, so a passing test
//! says something about what `kpi run` computes.

pub mod load;
pub mod report;
mod run;

use std::ops::Range;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::DataType;

use crate::diag::FileId;
use crate::exec::RunRequest;
use crate::spec::Spanned;

pub use load::load_file;
pub use run::{CaseResult, Mismatch, Outcome, run_case};

/// One test case: a run request, input tables and the expected rows.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub file: FileId,
    pub name: String,
    /// The case's node in its file, for "at file:line" in reports.
    pub span: Range<usize>,
    /// The run the case makes, as `kpi run` would be asked for it.
    pub request: RunRequest,
    /// The metrics as written, for positions in messages (the request holds their names).
    pub metrics: Vec<Spanned<String>>,
    /// File-level tables, then the case's own (which replace a file-level one of the same name).
    pub tables: Vec<TableData>,
    pub expect: Vec<ExpectedRow>,
    /// Largest accepted `|actual - expected| / max(|expected|, |actual|, 1)`.
    pub tolerance: f64,
}

/// The rows of one input table.
#[derive(Debug, Clone)]
pub struct TableData {
    pub name: String,
    pub span: Range<usize>,
    pub rows: TableRows,
    /// Declared column types, applied over the types the CSV reader infers.
    pub types: Vec<(String, DataType)>,
}

/// Where a table's rows come from.
#[derive(Debug, Clone)]
pub enum TableRows {
    /// Rows written in the test: column → value as text (`None` for null), in file order.
    Inline(Vec<Vec<(String, Option<String>)>>),
    /// A CSV file, resolved against the test file's folder.
    Csv(PathBuf),
}

/// One expected output row: values of the period, `by` dimensions and metrics.
#[derive(Debug, Clone)]
pub struct ExpectedRow {
    pub span: Range<usize>,
    /// Column → value as text (`None` for null).
    pub cells: Vec<(String, Option<String>)>,
}

impl ExpectedRow {
    /// The value written for `column`, if the row names it.
    pub fn get(&self, column: &str) -> Option<&Option<String>> {
        self.cells.iter().find(|(c, _)| c == column).map(|(_, v)| v)
    }
}

/// Every test file under `dir`: YAML files inside a folder named `tests`, in path order.
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, in_tests: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                walk(&path, in_tests || name == "tests", out)?;
            } else if in_tests
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                )
            {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, false, &mut out)?;
    out.sort();
    Ok(out)
}
