//! Sources: a data root's tables, registered in a DataFusion session as `ListingTable`s.
//!
//! A data root holds one entry per table: `NAME.csv`, `NAME.parquet`, or a folder `NAME/`
//! of CSV or Parquet files, possibly hive-partitioned (`year=2025/month=03/part-0.parquet`,
//! partition values read as string columns and used for pruning). Schemas are inferred
//! from CSV headers and values or Parquet footers, then normalized so that every timestamp
//! is `Timestamp(Microsecond, "UTC")` whatever its unit and zone on disk; DataFusion casts
//! the files' columns to that schema as it reads them. A model may declare column types:
//! CSV is then parsed as declared and Parquet checked against them ([`schema`]). When a
//! value will not parse, [`diagnose`] finds its file and line. Nothing here knows about
//! CRM tables.

pub mod diagnose;
mod discover;
pub mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

use crate::diag::did_you_mean;
use schema::FileSchema;
pub use schema::{Declared, arrow_type};

/// How many CSV records schema inference reads per table.
const CSV_INFER_RECORDS: usize = 100_000;

/// The zone every timestamp is normalized to.
pub const UTC: &str = "UTC";

/// Why a data root or one of its tables cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("data root {0} does not exist")]
    MissingRoot(PathBuf),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("data root {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot read data root {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no table `{name}` in data root {root}{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownTable {
        name: String,
        root: PathBuf,
        hint: Option<String>,
    },
    #[error("table `{table}` at {path} holds no .csv or .parquet file")]
    Empty { table: String, path: PathBuf },
    #[error(
        "table `{table}` at {path} mixes CSV and Parquet files ({csv} and {parquet}); \
         keep one format per table"
    )]
    MixedFormats {
        table: String,
        path: PathBuf,
        csv: PathBuf,
        parquet: PathBuf,
    },
    #[error("cannot read Parquet file {file}: {message}")]
    CorruptParquet { file: PathBuf, message: String },
    #[error("file {0} of table `{1}` is empty (0 bytes); a CSV file needs at least its header")]
    EmptyFile(PathBuf, String),
    #[error("cannot read file {file}: {source}")]
    File {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}:{}: column `{}` of table `{table}` holds `{}`, which is not {expected}",
        at.file.display(), at.line, at.column, at.value
    )]
    BadValue {
        table: String,
        at: diagnose::Located,
        expected: &'static str,
    },
    #[error(
        "file {file} of table `{table}` vanished while kpi was reading the table; nothing \
         was written (run again once the lake is stable)"
    )]
    Vanished { table: String, file: PathBuf },
    #[error(
        "column `{column}` of table `{table}` at {} has no value in the rows read to infer \
         its type; declare it in the model (`columns: {{{column}: double}}`, or its type)",
        path.display()
    )]
    Untyped {
        table: String,
        path: PathBuf,
        column: String,
    },
    #[error(
        "column `{column}` of table `{table}` changes type: {first_type} in {first}, \
         {found} in {file}"
    )]
    Drift {
        table: String,
        column: String,
        first: PathBuf,
        first_type: DataType,
        file: PathBuf,
        found: DataType,
    },
    #[error(
        "model `{model}` declares column `{column}`, which table `{table}` at {path} does \
         not have (its columns: {columns})"
    )]
    DeclaredMissing {
        table: String,
        path: PathBuf,
        column: String,
        model: String,
        columns: String,
    },
    #[error(
        "model `{model}` declares column `{column}` {declared}, but table `{table}` at \
         {path} holds {found}"
    )]
    DeclaredMismatch {
        table: String,
        path: PathBuf,
        column: String,
        model: String,
        declared: crate::spec::ColumnType,
        found: DataType,
    },
    #[error("cannot read the schema of table `{table}` at {path}: {message}")]
    Schema {
        table: String,
        path: PathBuf,
        message: String,
    },
}

/// A file format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "parquet" | "parq" => Some(Format::Parquet),
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => ".csv",
            Format::Parquet => ".parquet",
        }
    }
}

/// One table of a data root.
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub name: String,
    pub path: PathBuf,
    pub format: Format,
    /// Hive partition columns, outermost first.
    pub partitions: Vec<String>,
    pub files: Vec<PathBuf>,
    /// A zero-length file seen when an object store was listed (a local root checks its
    /// files when the table is registered).
    pub empty_file: Option<PathBuf>,
}

/// The tables of a data root, discovered from its directory listing (no file is opened).
#[derive(Debug, Clone)]
pub struct DataRoot {
    pub root: PathBuf,
    pub tables: BTreeMap<String, TableEntry>,
    /// Column types that override inference, per table: a metric test declares them for
    /// columns its few rows cannot type (a column of NULLs reads as text otherwise).
    pub types: BTreeMap<String, Vec<(String, DataType)>>,
    /// Whether a declared column may be absent: a metric test's tables hold only the
    /// columns its cases need. Elsewhere an absent declared column is an error.
    pub sparse: bool,
    /// The store of a root in object storage; its tables' paths are then the objects'
    /// URLs (`s3://bucket/lake/orders/`), and only DataFusion reads their bytes.
    pub remote: Option<Arc<crate::store::Remote>>,
}

impl DataRoot {
    /// The entry of a table, or an error suggesting a close name.
    pub fn table(&self, name: &str) -> Result<&TableEntry, SourceError> {
        self.tables
            .get(name)
            .ok_or_else(|| SourceError::UnknownTable {
                name: name.to_string(),
                root: self.root.clone(),
                hint: did_you_mean(name, self.tables.keys().map(String::as_str)),
            })
    }

    /// The error for a reader that panicked on `entry`: each file read alone, under the
    /// same guard, finds the one at fault.
    async fn panicked(&self, ctx: &SessionContext, entry: &TableEntry, panic: &str) -> SourceError {
        let options = listing_options(entry);
        let state = ctx.state();
        for f in &entry.files {
            let Ok(url) = table_url(f) else { continue };
            let one = crate::guard::guarded(options.infer_schema(&state, &url)).await;
            let message = match one {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => root_cause(&e.to_string()),
                Err(p) => format!("the reader failed on it ({p})"),
            };
            return SourceError::CorruptParquet {
                file: f.clone(),
                message,
            };
        }
        SourceError::Schema {
            table: entry.name.clone(),
            path: entry.path.clone(),
            message: format!("the reader failed ({panic})"),
        }
    }

    /// After a failed read of CSV table `name` with `schema`: the first value that does
    /// not parse as its column's type, if one is found.
    pub fn bad_value(&self, name: &str, schema: &Schema) -> Option<SourceError> {
        let entry = self.tables.get(name)?;
        // Finding the line reads the files again; in object storage DataFusion's own
        // message, which names the column, stands.
        if entry.format != Format::Csv || self.remote.is_some() {
            return None;
        }
        schema.fields().iter().find_map(|f| {
            let expected = expected(f.data_type())?;
            let at = diagnose::first_bad_value(&entry.files, f.name(), f.data_type()).ok()??;
            Some(SourceError::BadValue {
                table: name.to_string(),
                at,
                expected,
            })
        })
    }

    /// The first file of tables `names` that was listed when the root was opened and is
    /// gone now. A scan lists its folder again, so a file deleted in between would be
    /// skipped without a word; a run checks this after its scans instead.
    pub fn vanished<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Option<SourceError> {
        // An object store answers a scan of a deleted object with an error of its own.
        if self.remote.is_some() {
            return None;
        }
        names.into_iter().find_map(|n| {
            let entry = self.tables.get(n)?;
            let gone = entry.files.iter().find(|f| !f.exists())?;
            Some(SourceError::Vanished {
                table: n.to_string(),
                file: gone.clone(),
            })
        })
    }

    /// A column of table `name` whose type inference could not tell (every value read
    /// was empty), if `schema` has one.
    pub fn untyped(&self, name: &str, schema: &Schema) -> Option<SourceError> {
        let entry = self.tables.get(name)?;
        let f = schema
            .fields()
            .iter()
            .find(|f| f.data_type() == &DataType::Null)?;
        Some(SourceError::Untyped {
            table: name.to_string(),
            path: entry.path.clone(),
            column: f.name().clone(),
        })
    }

    /// Registers table `name` in `ctx` (once) and returns its normalized schema, read
    /// with the column types `declared` by models (and the root's own `types`, which win).
    pub async fn register(
        &self,
        ctx: &SessionContext,
        name: &str,
        declared: &[Declared],
    ) -> Result<SchemaRef, SourceError> {
        if let Ok(Some(t)) = ctx.table_provider(name).await.map(Some) {
            return Ok(t.schema());
        }
        let entry = self.table(name)?;
        if let Some(remote) = &self.remote {
            ctx.register_object_store(&remote.store_url, remote.store.clone());
        }
        let types = self.types.get(name).map(Vec::as_slice).unwrap_or_default();
        // Metric tests' tables hold only the columns a case needs: declarations of the
        // others are dropped (the CSV header is read once, not once per column).
        let header = if self.sparse { csv_header(entry) } else { None };
        let present = |d: &&Declared| header.as_ref().is_none_or(|h| h.contains(&d.column));
        let declared: Vec<Declared> = declared.iter().filter(present).cloned().collect();
        let table = match crate::guard::guarded(listing_table(ctx, entry, &declared, types)).await {
            Ok(t) => t?,
            Err(panic) => return Err(self.panicked(ctx, entry, &panic).await),
        };
        let schema = table.schema();
        ctx.register_table(name, Arc::new(table))
            .map_err(|e| SourceError::Schema {
                table: name.to_string(),
                path: entry.path.clone(),
                message: e.to_string(),
            })?;
        Ok(schema)
    }
}

async fn listing_table(
    ctx: &SessionContext,
    entry: &TableEntry,
    declared: &[Declared],
    types: &[(String, DataType)],
) -> Result<ListingTable, SourceError> {
    let schema_err = |message: String| SourceError::Schema {
        table: entry.name.clone(),
        path: entry.path.clone(),
        message,
    };
    if let Some(f) = &entry.empty_file {
        return Err(SourceError::EmptyFile(f.clone(), entry.name.clone()));
    }
    let local = entry.files.iter().filter(|f| !crate::store::is_url(f));
    for f in local {
        let meta = std::fs::metadata(f).map_err(|e| SourceError::File {
            file: f.clone(),
            source: e,
        })?;
        if meta.len() == 0 {
            return Err(SourceError::EmptyFile(f.clone(), entry.name.clone()));
        }
        // Unreadable files are named now, not as a bare I/O error in the middle of a scan.
        std::fs::File::open(f).map_err(|e| SourceError::File {
            file: f.clone(),
            source: e,
        })?;
    }
    let url = table_url(&entry.path).map_err(schema_err)?;
    let options = listing_options(entry);
    let state = ctx.state();
    let found = match options.infer_schema(&state, &url).await {
        Ok(s) => s.as_ref().clone(),
        // The files disagree, or one cannot be read: find which, file by file.
        Err(e) => per_file_schema(&state, entry, &options)
            .await?
            .ok_or_else(|| explain_schema_error(entry, e.to_string()))?,
    };
    let declared_schema = schema::apply(
        &entry.name,
        &entry.path,
        normalize(&found),
        declared,
        entry.format == Format::Csv,
    )?;
    let fields: Vec<Field> = declared_schema
        .fields()
        .iter()
        .map(|f| match types.iter().find(|(c, _)| c == f.name()) {
            Some((_, ty)) => Field::new(f.name(), ty.clone(), true),
            None => f.as_ref().clone(),
        })
        .collect();
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(Arc::new(Schema::new(fields)));
    ListingTable::try_new(config).map_err(|e| schema_err(e.to_string()))
}

/// The column names of a CSV table's first file; `None` for Parquet (its schema says
/// which columns exist) or a header that cannot be read (the read reports it).
fn csv_header(entry: &TableEntry) -> Option<Vec<String>> {
    if entry.format != Format::Csv {
        return None;
    }
    let Some(first) = entry.files.first() else {
        return Some(Vec::new());
    };
    if crate::store::is_url(first) {
        return None;
    }
    csv::ReaderBuilder::new()
        .from_path(first)
        .and_then(|mut r| r.headers().map(|h| h.iter().map(str::to_string).collect()))
        .ok()
}

/// The listing URL of a file or folder (a folder's ends with `/`; an object store's
/// folder paths already do).
fn table_url(path: &Path) -> Result<ListingTableUrl, String> {
    if crate::store::is_url(path) {
        return ListingTableUrl::parse(path.to_string_lossy()).map_err(|e| e.to_string());
    }
    let abs = std::path::absolute(path).map_err(|e| e.to_string())?;
    let mut url = abs.to_string_lossy().into_owned();
    if path.is_dir() && !url.ends_with('/') {
        url.push('/');
    }
    ListingTableUrl::parse(&url).map_err(|e| e.to_string())
}

fn listing_options(entry: &TableEntry) -> ListingOptions {
    let format: Arc<dyn FileFormat> = match entry.format {
        Format::Csv => Arc::new(
            CsvFormat::default()
                .with_has_header(true)
                .with_schema_infer_max_rec(CSV_INFER_RECORDS),
        ),
        Format::Parquet => Arc::new(ParquetFormat::default()),
    };
    ListingOptions::new(format)
        .with_file_extension(entry.format.extension())
        .with_table_partition_cols(
            entry
                .partitions
                .iter()
                .map(|p| (p.clone(), DataType::Utf8))
                .collect(),
        )
}

/// Infers each file's schema alone and merges them with widening. `Ok(None)` when every
/// file reads alone and the merge found nothing to say: the caller's error stands.
async fn per_file_schema(
    state: &datafusion::execution::SessionState,
    entry: &TableEntry,
    options: &ListingOptions,
) -> Result<Option<Schema>, SourceError> {
    let mut schemas = Vec::new();
    for f in &entry.files {
        let url = table_url(f).map_err(|m| SourceError::File {
            file: f.clone(),
            source: std::io::Error::other(m),
        })?;
        match options.infer_schema(state, &url).await {
            Ok(s) => schemas.push(FileSchema {
                file: f.clone(),
                schema: normalize(&s),
            }),
            Err(e) if entry.format == Format::Csv => {
                return Err(SourceError::Schema {
                    table: entry.name.clone(),
                    path: f.clone(),
                    message: root_cause(&e.to_string()),
                });
            }
            Err(e) if crate::store::is_url(f) => {
                return Err(SourceError::CorruptParquet {
                    file: f.clone(),
                    message: root_cause(&e.to_string()),
                });
            }
            Err(e) => return Err(explain_schema_error(entry, e.to_string())),
        }
    }
    schema::merge(&entry.name, &schemas).map(Some)
}

/// Names the broken file when a Parquet footer cannot be read.
fn explain_schema_error(entry: &TableEntry, message: String) -> SourceError {
    if entry.format == Format::Parquet {
        for f in entry.files.iter().filter(|f| !crate::store::is_url(f)) {
            let bad = std::fs::File::open(f)
                .map_err(|e| e.to_string())
                .and_then(|file| {
                    datafusion::parquet::file::reader::SerializedFileReader::new(file)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            if let Err(m) = bad {
                return SourceError::CorruptParquet {
                    file: f.clone(),
                    message: m,
                };
            }
        }
    }
    SourceError::Schema {
        table: entry.name.clone(),
        path: entry.path.clone(),
        message: root_cause(&message),
    }
}

/// The innermost cause of a layered error message ("… caused by … Csv error: …").
fn root_cause(message: &str) -> String {
    let last = message
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(message);
    last.trim_start_matches("Arrow error: ")
        .trim_start_matches("External error: ")
        .to_string()
}

/// The table schema kpi exposes: timestamps in microseconds, UTC; everything else as found.
pub fn normalize(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(_, _) => Field::new(f.name(), utc_timestamp(), true),
            _ => f.as_ref().clone().with_nullable(true),
        })
        .collect();
    Schema::new(fields)
}

/// The tables behind a plan's qualifiers (`orders`, `customers`), to explain after the
/// fact why a CSV column was read as text.
#[derive(Debug, Clone, Default)]
pub struct Origins(Vec<(String, TableEntry)>);

impl Origins {
    /// Every `alias` over a scan of a root table in `plan`.
    pub fn of(plan: &datafusion::logical_expr::LogicalPlan, root: &DataRoot) -> Origins {
        use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
        use datafusion::logical_expr::LogicalPlan;
        let mut out = Vec::new();
        let _ = plan.apply(|node| {
            if let LogicalPlan::SubqueryAlias(a) = node
                && let LogicalPlan::TableScan(scan) = a.input.as_ref()
                && let Some(entry) = root.tables.get(scan.table_name.table())
            {
                out.push((a.alias.table().to_string(), entry.clone()));
            }
            Ok(TreeNodeRecursion::Continue)
        });
        Origins(out)
    }

    /// Why `column` (of `qualifier`, or of any table when `None`) holds text where its
    /// values look like another type: the first value that made it text, located.
    pub fn why_text(&self, qualifier: Option<&str>, column: &str) -> Option<String> {
        self.0
            .iter()
            .filter(|(alias, e)| {
                e.format == Format::Csv && qualifier.is_none_or(|q| q == alias.as_str())
            })
            .find_map(|(_, e)| {
                let (at, was) = diagnose::why_text(&e.files, column, CSV_INFER_RECORDS).ok()??;
                Some(format!(
                    "column `{column}` of table `{}` was read as text because {}:{} holds \
                     `{}`, where the values before it are {was}s; declare its type in the \
                     model (`columns: {{{column}: {}}}`) to have every such value reported",
                    e.name,
                    at.file.display(),
                    at.line,
                    at.value,
                    if was == "float" { "double" } else { was },
                ))
            })
    }
}

/// What a value of a column of type `ty` must look like in CSV; `None` for text.
fn expected(ty: &DataType) -> Option<&'static str> {
    Some(match ty {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => return None,
        t if t.is_integer() => "an integer",
        t if t.is_floating() => "a number",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "a decimal number",
        DataType::Timestamp(..) => "a valid RFC 3339 timestamp (such as 2025-03-01T00:00:00Z)",
        DataType::Date32 | DataType::Date64 => "a valid date (such as 2025-03-01)",
        DataType::Boolean => "true or false",
        _ => "of the column's type",
    })
}

/// `Timestamp(Microsecond, "UTC")`, the type of every timestamp kpi reads.
pub fn utc_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_deleted_after_listing_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("orders");
        std::fs::create_dir_all(t.join("year=2024")).unwrap();
        std::fs::create_dir_all(t.join("year=2025")).unwrap();
        for y in ["2024", "2025"] {
            std::fs::write(t.join(format!("year={y}/part-0.csv")), "a\n1\n").unwrap();
        }
        let root = DataRoot::open(dir.path()).unwrap();
        assert!(root.vanished(["orders"]).is_none());
        std::fs::remove_file(t.join("year=2025/part-0.csv")).unwrap();
        let e = root.vanished(["orders", "missing"]).unwrap().to_string();
        assert!(e.starts_with(&format!(
            "file {} of table `orders` vanished",
            t.join("year=2025/part-0.csv").display()
        )));
    }
}
