//! Test files: YAML → [`TestCase`]s, every fault a diagnostic at its node.
//!
//! ```yaml
//! data:                      # tables shared by every case (optional)
//!   orders:
//!     - {order_id: 1, ordered_at: '2024-01-31T23:59:59Z', amount: 10, status: paid}
//! tests:
//!   - name: the last instant of January is January's
//!     metrics: [revenue]     # or `metric: revenue`
//!     from: 2024-01-01
//!     to: 2024-03-01
//!     expect:
//!       - {period: 2024-01-01, revenue: 10}
//!       - {period: 2024-02-01, revenue: 0}
//! ```

use std::ops::Range;
use std::path::Path;

use datafusion::arrow::datatypes::DataType;

use super::{ExpectedRow, TableData, TableRows, TestCase};
use crate::diag::{Code, Diagnostic, FileId, SourceDb, did_you_mean};
use crate::exec::RunRequest;
use crate::spec::yaml::{self, Node, NodeKind};
use crate::spec::{Grain, Spanned};

const FILE_KEYS: &[&str] = &["data", "tests"];
const CASE_KEYS: &[&str] = &[
    "name",
    "metric",
    "metrics",
    "from",
    "to",
    "grain",
    "tz",
    "by",
    "where",
    "data",
    "expect",
    "tolerance",
];
const TABLE_KEYS: &[&str] = &["rows", "csv", "types"];
/// The tolerance when a case states none: the catalogue's contract is 1e-9.
const DEFAULT_TOLERANCE: f64 = 1e-9;

/// Reads the test file `file` (already in `db`); faults go to `diags`.
pub fn load_file(db: &SourceDb, file: FileId, diags: &mut Vec<Diagnostic>) -> Vec<TestCase> {
    let src = db.file(file);
    let dir = src.path.parent().unwrap_or(Path::new("")).to_path_buf();
    let root = match yaml::parse(file, &src.text) {
        Ok(n) => n,
        Err(d) => {
            diags.push(d);
            return vec![];
        }
    };
    let cx = &mut Cx {
        file,
        dir: &dir,
        diags,
    };
    let Some(entries) = cx.map(&root, "a test file") else {
        return vec![];
    };
    cx.unknown_keys(entries, FILE_KEYS, "a test file");
    let shared = match find(entries, "data") {
        Some(d) => cx.tables(d),
        None => vec![],
    };
    let Some(tests) = find(entries, "tests") else {
        cx.diags.push(
            Diagnostic::error(Code::MissingKey, "a test file has no `tests`")
                .at(file, root.span.start..root.span.start, "")
                .help("list cases under `tests:`, each with `metrics`, `from`, `to` and `expect`"),
        );
        return vec![];
    };
    let NodeKind::Seq(items) = &tests.kind else {
        cx.wrong_type(tests, "`tests` must be a list of cases");
        return vec![];
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, n)| cx.case(n, i, &shared))
        .collect()
}

fn find<'a>(entries: &'a [(Node, Node)], key: &str) -> Option<&'a Node> {
    entries
        .iter()
        .find(|(k, _)| matches!(&k.kind, NodeKind::Scalar(s, _) if s == key))
        .map(|(_, v)| v)
}

struct Cx<'a> {
    file: FileId,
    dir: &'a Path,
    diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    fn wrong_type(&mut self, n: &Node, message: &str) {
        self.diags
            .push(Diagnostic::error(Code::WrongType, message.to_string()).at(
                self.file,
                n.span.clone(),
                format!("found {}", n.type_name()),
            ));
    }

    fn bad(&mut self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(Code::BadTest, message).at(self.file, span, "")
    }

    fn map<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &n.kind {
            NodeKind::Map(e) => Some(e),
            _ => {
                let span = if n.span.is_empty() {
                    n.span.start..n.span.start + 1
                } else {
                    n.span.clone()
                };
                self.diags.push(
                    Diagnostic::error(Code::ExpectedMapping, format!("{what} must be a mapping"))
                        .at(self.file, span, format!("found {}", n.type_name())),
                );
                None
            }
        }
    }

    fn unknown_keys(&mut self, entries: &[(Node, Node)], known: &[&str], what: &str) {
        for (k, _) in entries {
            if let NodeKind::Scalar(s, _) = &k.kind
                && !known.contains(&s.as_str())
            {
                let help = did_you_mean(s, known.iter().copied());
                self.diags.push(
                    Diagnostic::error(Code::UnknownKey, format!("unknown key `{s}` in {what}"))
                        .at(
                            self.file,
                            k.span.clone(),
                            help.unwrap_or_else(|| "unknown key".into()),
                        )
                        .note(format!("known keys: {}", known.join(", "))),
                );
            }
        }
    }

    fn text(&mut self, n: &Node, what: &str) -> Option<String> {
        match &n.kind {
            NodeKind::Scalar(s, _) => Some(s.clone()),
            _ => {
                self.wrong_type(n, &format!("`{what}` must be text"));
                None
            }
        }
    }

    /// A scalar or a list of scalars.
    fn names(&mut self, n: &Node, what: &str) -> Vec<Spanned<String>> {
        match &n.kind {
            NodeKind::Scalar(s, _) => vec![Spanned::new(s.clone(), n.span.clone())],
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|i| self.text(i, what).map(|s| Spanned::new(s, i.span.clone())))
                .collect(),
            _ => {
                self.wrong_type(n, &format!("`{what}` must be a name or a list of names"));
                vec![]
            }
        }
    }

    fn case(&mut self, n: &Node, index: usize, shared: &[TableData]) -> Option<TestCase> {
        let entries = self.map(n, "a test case")?;
        self.unknown_keys(entries, CASE_KEYS, "a test case");
        let before = self.diags.len();
        let name = match find(entries, "name") {
            Some(v) => self.text(v, "name").unwrap_or_default(),
            None => format!("case {}", index + 1),
        };
        let mut metrics = Vec::new();
        for key in ["metric", "metrics"] {
            if let Some(v) = find(entries, key) {
                metrics.extend(self.names(v, key));
            }
        }
        if metrics.is_empty() {
            let d = self
                .bad(n.span.start..n.span.start, "a test case names no metric")
                .help("add `metrics: [name, …]`");
            self.diags.push(d);
        }
        let required = |key: &str, cx: &mut Self| -> String {
            match find(entries, key) {
                Some(v) => cx.text(v, key).unwrap_or_default(),
                None => {
                    cx.diags.push(
                        Diagnostic::error(Code::MissingKey, format!("a test case has no `{key}`"))
                            .at(cx.file, n.span.start..n.span.start, "")
                            .help("every case states its range: `from: 2024-01-01`, `to: 2024-04-01` (exclusive)"),
                    );
                    String::new()
                }
            }
        };
        let from = required("from", self);
        let to = required("to", self);
        let grain = match find(entries, "grain") {
            Some(v) => match self.text(v, "grain") {
                Some(g) => match Grain::parse(&g) {
                    Some(g) => Some(g),
                    None => {
                        let d = Diagnostic::error(
                            Code::BadGrain,
                            format!("`{g}` is not a valid grain"),
                        )
                        .at(self.file, v.span.clone(), "")
                        .maybe_help(did_you_mean(&g, Grain::NAMES));
                        self.diags.push(d);
                        None
                    }
                },
                None => None,
            },
            None => None,
        };
        let tz = find(entries, "tz").and_then(|v| self.text(v, "tz"));
        let filter = find(entries, "where").and_then(|v| self.text(v, "where"));
        let by: Vec<String> = find(entries, "by")
            .map(|v| self.names(v, "by").into_iter().map(|s| s.value).collect())
            .unwrap_or_default();
        let tolerance = match find(entries, "tolerance") {
            Some(v) => match self.text(v, "tolerance").map(|t| t.parse::<f64>()) {
                Some(Ok(t)) if t >= 0.0 => t,
                _ => {
                    let d = self
                        .bad(v.span.clone(), "`tolerance` must be a non-negative number")
                        .help("a relative tolerance, e.g. `1e-6`");
                    self.diags.push(d);
                    DEFAULT_TOLERANCE
                }
            },
            None => DEFAULT_TOLERANCE,
        };
        let mut tables: Vec<TableData> = shared.to_vec();
        if let Some(d) = find(entries, "data") {
            for t in self.tables(d) {
                tables.retain(|s| s.name != t.name);
                tables.push(t);
            }
        }
        if tables.is_empty() {
            let d = self
                .bad(
                    n.span.start..n.span.start,
                    "a test case has no input tables",
                )
                .help("give rows under `data:` in the case or at the top of the file");
            self.diags.push(d);
        }
        let columns: Vec<&str> = std::iter::once("period")
            .chain(by.iter().map(String::as_str))
            .chain(metrics.iter().map(|m| m.value.as_str()))
            .collect();
        let expect = match find(entries, "expect") {
            Some(v) => self.expect(v, &columns, metrics.len()),
            None => {
                let d = Diagnostic::error(Code::MissingKey, "a test case has no `expect`")
                    .at(self.file, n.span.start..n.span.start, "")
                    .help("list the expected rows: `- {period: 2024-01-01, revenue: 10}`");
                self.diags.push(d);
                vec![]
            }
        };
        (self.diags.len() == before).then(|| TestCase {
            file: self.file,
            name,
            span: n.span.clone(),
            request: RunRequest {
                metrics: metrics.iter().map(|m| m.value.clone()).collect(),
                from: Some(from),
                to: Some(to),
                grain,
                by,
                filter,
                tz,
                compare: None,
                engine: Default::default(),
            },
            metrics,
            tables,
            expect,
            tolerance,
        })
    }

    fn tables(&mut self, n: &Node) -> Vec<TableData> {
        let Some(entries) = self.map(n, "`data`") else {
            return vec![];
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(name) = self.text(k, "table name") else {
                continue;
            };
            // The name becomes a file name in the temporary data root.
            if !crate::spec::load::is_identifier(&name) {
                let d = Diagnostic::error(Code::BadName, format!("`{name}` is not a table name"))
                    .at(self.file, k.span.clone(), "")
                    .help("a table name is letters, digits and `_`, as in the data root");
                self.diags.push(d);
                continue;
            }
            let span = k.span.start..v.span.end.max(k.span.end);
            let (rows_node, csv_node, types_node) = match &v.kind {
                NodeKind::Map(e) => {
                    self.unknown_keys(e, TABLE_KEYS, "a table");
                    (find(e, "rows"), find(e, "csv"), find(e, "types"))
                }
                NodeKind::Seq(_) => (Some(v), None, None),
                NodeKind::Scalar(..) => (None, Some(v), None),
                NodeKind::Null => (None, None, None),
            };
            let rows = match (rows_node, csv_node) {
                (Some(r), None) => self.rows(r),
                (None, Some(c)) => self
                    .text(c, "csv")
                    .map(|p| TableRows::Csv(self.dir.join(p))),
                (Some(_), Some(_)) => {
                    let d = self.bad(span.clone(), "a table has either `rows` or `csv`, not both");
                    self.diags.push(d);
                    None
                }
                (None, None) => {
                    let d = self
                        .bad(span.clone(), format!("table `{name}` has no rows"))
                        .help(
                            "write a list of rows, a CSV file name, or `{rows: […], types: {…}}`",
                        );
                    self.diags.push(d);
                    None
                }
            };
            let types = types_node.map(|t| self.types(t)).unwrap_or_default();
            if let Some(rows) = rows {
                out.push(TableData {
                    name,
                    span,
                    rows,
                    types,
                });
            }
        }
        out
    }

    fn rows(&mut self, n: &Node) -> Option<TableRows> {
        let NodeKind::Seq(items) = &n.kind else {
            self.wrong_type(n, "rows must be a list of mappings");
            return None;
        };
        let mut rows = Vec::new();
        for item in items {
            let Some(entries) = self.map(item, "a row") else {
                continue;
            };
            rows.push(self.cells(entries));
        }
        Some(TableRows::Inline(rows))
    }

    fn cells(&mut self, entries: &[(Node, Node)]) -> Vec<(String, Option<String>)> {
        let mut cells = Vec::new();
        for (k, v) in entries {
            let Some(col) = self.text(k, "column name") else {
                continue;
            };
            let value = match &v.kind {
                NodeKind::Scalar(s, _) => Some(s.clone()),
                NodeKind::Null => None,
                _ => {
                    self.wrong_type(v, "a cell holds a single value");
                    continue;
                }
            };
            cells.push((col, value));
        }
        cells
    }

    fn types(&mut self, n: &Node) -> Vec<(String, DataType)> {
        let Some(entries) = self.map(n, "`types`") else {
            return vec![];
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let (Some(col), Some(ty)) = (self.text(k, "column name"), self.text(v, "type")) else {
                continue;
            };
            let Some(dt) = crate::spec::ColumnType::parse(&ty) else {
                let names = crate::spec::ColumnType::NAMES;
                let d = Diagnostic::error(Code::BadValue, format!("`{ty}` is not a column type"))
                    .at(self.file, v.span.clone(), "")
                    .note(format!("types: {}", names.join(", ")))
                    .maybe_help(did_you_mean(&ty, names.iter().copied()));
                self.diags.push(d);
                continue;
            };
            let dt = crate::source::arrow_type(dt);
            out.push((col, dt));
        }
        out
    }

    fn expect(&mut self, n: &Node, columns: &[&str], metrics: usize) -> Vec<ExpectedRow> {
        let NodeKind::Seq(items) = &n.kind else {
            self.wrong_type(n, "`expect` must be a list of rows");
            return vec![];
        };
        let mut out = Vec::new();
        for item in items {
            let Some(entries) = self.map(item, "an expected row") else {
                continue;
            };
            for (k, v) in entries {
                let NodeKind::Scalar(col, _) = &k.kind else {
                    continue;
                };
                if !columns.contains(&col.as_str()) {
                    let d = self
                        .bad(k.span.clone(), format!("the result has no column `{col}`"))
                        .note(format!("columns: {}", columns.join(", ")))
                        .maybe_help(did_you_mean(col, columns.iter().copied()));
                    self.diags.push(d);
                } else if columns[columns.len() - metrics..].contains(&col.as_str())
                    && let NodeKind::Scalar(s, _) = &v.kind
                    && s.parse::<f64>().is_err()
                {
                    let d = self
                        .bad(v.span.clone(), format!("`{s}` is not a number"))
                        .help("a metric's expected value is a number or `null`");
                    self.diags.push(d);
                }
            }
            let cells = self.cells(entries);
            for col in columns {
                if !cells.iter().any(|(c, _)| c == col) {
                    let d = self
                        .bad(item.span.clone(), format!("this row gives no `{col}`"))
                        .help("every expected row gives the period, each `by` dimension and every metric (`null` for NULL)");
                    self.diags.push(d);
                }
            }
            out.push(ExpectedRow {
                span: item.span.clone(),
                cells,
            });
        }
        out
    }
}
