//! Sources: a data root's tables, registered in a DataFusion session as `ListingTable`s.
//!
//! A data root holds one entry per table: `NAME.csv`, `NAME.parquet`, or a folder `NAME/`
//! of CSV or Parquet files, possibly hive-partitioned (`year=2025/month=03/part-0.parquet`,
//! partition values read as string columns and used for pruning). Schemas are inferred
//! from CSV headers and values or Parquet footers, then normalized so that every timestamp
//! is `Timestamp(Microsecond, "UTC")` whatever its unit and zone on disk; DataFusion casts
//! the files' columns to that schema as it reads them. Nothing here knows about CRM tables.

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

/// How many CSV records schema inference reads per table.
const CSV_INFER_RECORDS: usize = 100_000;

/// The zone every timestamp is normalized to.
pub const UTC: &str = "UTC";

/// Why a data root or one of its tables cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("data root {0} does not exist")]
    MissingRoot(PathBuf),
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
    #[error("table `{table}` at {path} mixes CSV and Parquet files")]
    MixedFormats { table: String, path: PathBuf },
    #[error("cannot read Parquet file {file}: {message}")]
    CorruptParquet { file: PathBuf, message: String },
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
}

/// The tables of a data root, discovered from its directory listing (no file is opened).
#[derive(Debug, Clone)]
pub struct DataRoot {
    pub root: PathBuf,
    pub tables: BTreeMap<String, TableEntry>,
    /// Column types that override inference, per table: a metric test declares them for
    /// columns its few rows cannot type (a column of NULLs reads as text otherwise).
    pub types: BTreeMap<String, Vec<(String, DataType)>>,
}

impl DataRoot {
    /// Lists the tables under `root`.
    pub fn open(root: &Path) -> Result<DataRoot, SourceError> {
        if !root.exists() {
            return Err(SourceError::MissingRoot(root.to_path_buf()));
        }
        if !root.is_dir() {
            return Err(SourceError::NotADirectory(root.to_path_buf()));
        }
        let io = |e| SourceError::Io {
            path: root.to_path_buf(),
            source: e,
        };
        let mut tables = BTreeMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(root)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let fname = e.file_name().to_string_lossy().into_owned();
            if fname.starts_with('.') || fname.starts_with('_') {
                continue;
            }
            if path.is_dir() {
                let mut files = Vec::new();
                list_files(&path, &mut files).map_err(|e| SourceError::Io {
                    path: path.clone(),
                    source: e,
                })?;
                files.sort();
                let formats: Vec<Format> = files.iter().filter_map(|f| Format::of(f)).collect();
                let Some(&format) = formats.first() else {
                    return Err(SourceError::Empty { table: fname, path });
                };
                if formats.iter().any(|f| *f != format) {
                    return Err(SourceError::MixedFormats { table: fname, path });
                }
                files.retain(|f| Format::of(f) == Some(format));
                let partitions = files[0]
                    .strip_prefix(&path)
                    .ok()
                    .map(|rel| {
                        rel.parent()
                            .into_iter()
                            .flat_map(|p| p.components())
                            .filter_map(|c| {
                                c.as_os_str()
                                    .to_str()?
                                    .split_once('=')
                                    .map(|(k, _)| k.to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                tables.insert(
                    fname.clone(),
                    TableEntry {
                        name: fname,
                        path,
                        format,
                        partitions,
                        files,
                    },
                );
            } else if let Some(format) = Format::of(&path) {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                tables.insert(
                    name.clone(),
                    TableEntry {
                        name,
                        path: path.clone(),
                        format,
                        partitions: vec![],
                        files: vec![path],
                    },
                );
            }
        }
        Ok(DataRoot {
            root: root.to_path_buf(),
            tables,
            types: BTreeMap::new(),
        })
    }

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

    /// Registers table `name` in `ctx` (once) and returns its normalized schema.
    pub async fn register(
        &self,
        ctx: &SessionContext,
        name: &str,
    ) -> Result<SchemaRef, SourceError> {
        if let Ok(Some(t)) = ctx.table_provider(name).await.map(Some) {
            return Ok(t.schema());
        }
        let entry = self.table(name)?;
        let types = self.types.get(name).map(Vec::as_slice).unwrap_or_default();
        let table = listing_table(ctx, entry, types).await?;
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

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if p.is_dir() {
            list_files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

async fn listing_table(
    ctx: &SessionContext,
    entry: &TableEntry,
    types: &[(String, DataType)],
) -> Result<ListingTable, SourceError> {
    let schema_err = |message: String| SourceError::Schema {
        table: entry.name.clone(),
        path: entry.path.clone(),
        message,
    };
    let abs = std::path::absolute(&entry.path).map_err(|e| schema_err(e.to_string()))?;
    let mut url = abs.to_string_lossy().into_owned();
    if entry.path.is_dir() && !url.ends_with('/') {
        url.push('/');
    }
    let url = ListingTableUrl::parse(&url).map_err(|e| schema_err(e.to_string()))?;
    let format: Arc<dyn FileFormat> = match entry.format {
        Format::Csv => Arc::new(
            CsvFormat::default()
                .with_has_header(true)
                .with_schema_infer_max_rec(CSV_INFER_RECORDS),
        ),
        Format::Parquet => Arc::new(ParquetFormat::default()),
    };
    let options = ListingOptions::new(format)
        .with_file_extension(entry.format.extension())
        .with_table_partition_cols(
            entry
                .partitions
                .iter()
                .map(|p| (p.clone(), DataType::Utf8))
                .collect(),
        );
    let state = ctx.state();
    let inferred = match options.infer_schema(&state, &url).await {
        Ok(s) => s,
        Err(e) => return Err(explain_schema_error(entry, e.to_string())),
    };
    let mut schema = normalize(&inferred);
    if !types.is_empty() {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| match types.iter().find(|(c, _)| c == f.name()) {
                Some((_, ty)) => Field::new(f.name(), ty.clone(), true),
                None => f.as_ref().clone(),
            })
            .collect();
        schema = Schema::new(fields);
    }
    let schema = Arc::new(schema);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    ListingTable::try_new(config).map_err(|e| schema_err(e.to_string()))
}

/// Names the broken file when a Parquet footer cannot be read.
fn explain_schema_error(entry: &TableEntry, message: String) -> SourceError {
    if entry.format == Format::Parquet {
        for f in &entry.files {
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

/// `Timestamp(Microsecond, "UTC")`, the type of every timestamp kpi reads.
pub fn utc_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}
