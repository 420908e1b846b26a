//! Writers for every output format, and the atomic file they write into.
//!
//! A file is written to a temporary sibling and renamed into place only once complete: a
//! failed run leaves no file, never a partial one, and the previous file stays intact. A
//! run killed before its rename leaves its temporary file, which the next write into the
//! same folder removes. Floats are written in full precision
//! (shortest representation that reads back to the same number); NULL is an empty CSV
//! field and a JSON `null`.

use std::io::Write;
use std::path::Path;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::exec::RunOutput;
use crate::spec::Unit;

/// Output formats of `kpi run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, numbers formatted by unit (the default on a terminal).
    Table,
    /// Comma-separated, with a header; NULL is an empty field.
    Csv,
    /// One JSON array of row objects.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet.
    Parquet,
    /// The Arrow IPC stream format, for dataframes (pandas, polars, R's arrow).
    Arrow,
}

/// `out` in `format`, in memory (`kpi serve` answers with it).
pub fn render(out: &RunOutput, format: Format) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    write_to(out, format, &mut bytes)?;
    Ok(bytes)
}

/// Writes `out` in `format` to `path`, or to stdout when `path` is `None`.
pub fn write(out: &RunOutput, format: Format, path: Option<&Path>) -> std::io::Result<()> {
    match path {
        None => {
            if matches!(format, Format::Parquet | Format::Arrow) {
                return Err(std::io::Error::other(
                    "--format parquet and --format arrow need --out FILE",
                ));
            }
            let mut w = std::io::BufWriter::new(std::io::stdout());
            match (format, terminal_width()) {
                (Format::Table, Some(width)) => {
                    let (text, note) = table_fitting(out, width);
                    if let Some(note) = note {
                        eprintln!("{note}");
                    }
                    w.write_all(text.as_bytes())?;
                }
                _ => write_to(out, format, &mut w)?,
            }
            w.flush()
        }
        Some(path) => write_file(out, format, path).map_err(|e| named(path, e)),
    }
}

/// The width `table` output fits: `COLUMNS` when set (as shells export it, and as tests
/// set it), else the terminal's when stdout is one; `None` for a pipe.
fn terminal_width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        return Some(n);
    }
    terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| w.0 as usize)
}

/// The prefix of this process's temporary files: `.kpi-PID-`. The PID lets a later run
/// tell a file left by a killed run from one a running writer still owns.
fn temp_prefix() -> String {
    format!("{TEMP_PREFIX}{}-", std::process::id())
}

const TEMP_PREFIX: &str = ".kpi-";
const TEMP_SUFFIX: &str = ".tmp";

/// Writes into a temporary sibling of `path`, syncs it, renames it over `path` (atomic on
/// one file system: readers see the old file or the new one, never a mix), then syncs the
/// folder so that the rename survives a crash.
fn write_file(out: &RunOutput, format: Format, path: &Path) -> std::io::Result<()> {
    atomic(path, &mut |w| write_to(out, format, w))
}

/// Writes `path` atomically with `body` (see [`write_file`]); errors name the file.
pub fn write_atomic(
    path: &Path,
    body: &mut dyn FnMut(&mut (dyn Write + Send)) -> std::io::Result<()>,
) -> std::io::Result<()> {
    atomic(path, body).map_err(|e| named(path, e))
}

/// `e` as an error that names the file it failed to write, keeping its kind.
pub(super) fn named(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
}

fn atomic(
    path: &Path,
    body: &mut dyn FnMut(&mut (dyn Write + Send)) -> std::io::Result<()>,
) -> std::io::Result<()> {
    stage(path, body)?.commit()
}

/// A complete, synced file waiting in a temporary sibling of its destination. Dropped
/// without [`Staged::commit`], it is removed and the destination is left as it was.
pub(super) struct Staged {
    tmp: tempfile::NamedTempFile,
    path: std::path::PathBuf,
}

impl Staged {
    /// Renames the file over its destination and syncs the folder.
    pub(super) fn commit(self) -> std::io::Result<()> {
        let dir = folder_of(&self.path).to_path_buf();
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `body` into a synced temporary sibling of `path`, ready to be renamed over it.
pub(super) fn stage(
    path: &Path,
    body: &mut dyn FnMut(&mut (dyn Write + Send)) -> std::io::Result<()>,
) -> std::io::Result<Staged> {
    let dir = folder_of(path);
    remove_stale_temporaries(dir);
    // A temporary file is private (0600); the result gets the file's mode it replaces,
    // or a result file's usual 0644.
    let mode = std::fs::metadata(path).map_or(0o644, |m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    });
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .suffix(TEMP_SUFFIX)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .tempfile_in(dir)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        body(&mut w)?;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
    })
}

/// Removes the temporary files in `dir` that runs killed before their rename left
/// (`kill -9`, a power cut): those whose writer's PID is no longer alive. Without
/// `/proc` nothing is removed, since no owner can be told dead.
fn remove_stale_temporaries(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .filter(|n| n.ends_with(TEMP_SUFFIX))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A writer's error as the I/O error under it when there is one (a full disk stays
/// "No space left on device", not "Io error: …"), else as an I/O error of its own.
pub(super) fn io(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return std::io::Error::new(io.kind(), io.to_string());
        }
        cause = c.source();
    }
    std::io::Error::other(e)
}

pub(super) fn write_to(
    out: &RunOutput,
    format: Format,
    w: &mut (dyn Write + Send),
) -> std::io::Result<()> {
    use datafusion::arrow::{csv, json};
    match format {
        Format::Table => w.write_all(table(out).as_bytes()),
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new().with_header(true).build(w);
            if out.batches.is_empty() {
                writer
                    .write(&RecordBatch::new_empty(out.schema.clone()))
                    .map_err(io)?;
            }
            for b in &out.batches {
                writer.write(b).map_err(io)?;
            }
            Ok(())
        }
        Format::Json => {
            let mut writer = json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, json::writer::JsonArray>(&mut *w);
            for b in &out.batches {
                writer.write(b).map_err(io)?;
            }
            writer.finish().map_err(io)?;
            drop(writer);
            if out.batches.iter().all(|b| b.num_rows() == 0) {
                w.write_all(b"[]")?;
            }
            w.write_all(b"\n")
        }
        Format::Jsonl => {
            let mut writer = json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, json::writer::LineDelimited>(&mut *w);
            for b in &out.batches {
                writer.write(b).map_err(io)?;
            }
            writer.finish().map_err(io)
        }
        Format::Arrow => {
            let mut writer =
                datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut *w, &out.schema)
                    .map_err(io)?;
            for b in &out.batches {
                writer.write(b).map_err(io)?;
            }
            writer.finish().map_err(io)
        }
        Format::Parquet => {
            let mut writer =
                datafusion::parquet::arrow::ArrowWriter::try_new(w, out.schema.clone(), None)
                    .map_err(io)?;
            for b in &out.batches {
                writer.write(b).map_err(io)?;
            }
            writer.close().map_err(io)?;
            Ok(())
        }
    }
}

/// The rows as an aligned table, numbers formatted by their unit.
pub fn table(out: &RunOutput) -> String {
    let (header, rows, right) = table_cells(out);
    super::table::align_dyn(&header, &rows, &right)
}

/// [`table`] fitted to `width` characters: when the wide table is wider, its metric
/// columns are split into blocks that fit, each after the period and `--by` columns.
/// Returns the text and, when it split, a sentence saying so.
pub fn table_fitting(out: &RunOutput, width: usize) -> (String, Option<String>) {
    let (header, rows, right) = table_cells(out);
    let widths = super::table::widths(&header, &rows);
    // The key columns (period, dimensions) are the leading text ones.
    let keys = out
        .schema
        .fields()
        .iter()
        .take_while(|f| !f.data_type().is_numeric())
        .count()
        .max(1)
        .min(header.len());
    let blocks = super::table::blocks(&widths, keys, width);
    if blocks.len() <= 1 {
        return (super::table::align_dyn(&header, &rows, &right), None);
    }
    let mut text = String::new();
    for (i, b) in blocks.iter().enumerate() {
        let cols: Vec<usize> = (0..keys).chain(b.clone()).collect();
        let pick = |r: &Vec<String>| cols.iter().map(|&c| r[c].clone()).collect::<Vec<_>>();
        let block_right: Vec<usize> = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| right.contains(c))
            .map(|(i, _)| i)
            .collect();
        if i > 0 {
            text.push('\n');
        }
        let rows: Vec<Vec<String>> = rows.iter().map(pick).collect();
        text.push_str(&super::table::align_dyn(
            &pick(&header),
            &rows,
            &block_right,
        ));
    }
    let wide: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    let note = format!(
        "kpi: the table is {wide} characters wide and the terminal {width}: printed as {} \
         blocks of columns, each after the period (`--format csv` keeps one wide table)",
        blocks.len()
    );
    (text, Some(note))
}

type Cells = (Vec<String>, Vec<Vec<String>>, Vec<usize>);

fn table_cells(out: &RunOutput) -> Cells {
    let header: Vec<String> = out
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut right = Vec::new();
    for (i, f) in out.schema.fields().iter().enumerate() {
        if f.data_type().is_numeric() {
            right.push(i);
        }
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for b in &out.batches {
        let cells: Vec<Vec<String>> = b
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| format_column(c, out.units.get(i).copied().flatten()))
            .collect();
        for r in 0..b.num_rows() {
            rows.push(cells.iter().map(|c| c[r].clone()).collect());
        }
    }
    (header, rows, right)
}

fn format_column(c: &ArrayRef, unit: Option<Unit>) -> Vec<String> {
    let n = c.len();
    match c.data_type() {
        DataType::Float64 => {
            let a = c.as_primitive::<Float64Type>();
            (0..n)
                .map(|i| {
                    if a.is_null(i) {
                        "—".into()
                    } else {
                        number(a.value(i), unit)
                    }
                })
                .collect()
        }
        DataType::Int64 => {
            let a = c.as_primitive::<Int64Type>();
            (0..n)
                .map(|i| {
                    if a.is_null(i) {
                        "—".into()
                    } else {
                        number(a.value(i) as f64, unit.or(Some(Unit::Count)))
                    }
                })
                .collect()
        }
        _ => {
            let opts = FormatOptions::default().with_null("—");
            match ArrayFormatter::try_new(c.as_ref(), &opts) {
                Ok(f) => (0..n).map(|i| f.value(i).to_string()).collect(),
                Err(_) => vec![String::new(); n],
            }
        }
    }
}

/// `v` as the table shows it for `unit`.
pub(crate) fn number(v: f64, unit: Option<Unit>) -> String {
    match unit {
        Some(Unit::Count) if v.fract() == 0.0 => group(&format!("{v:.0}")),
        Some(Unit::Percent) => format!("{}%", group(&format!("{v:.2}"))),
        Some(Unit::Currency) => group(&format!("{v:.2}")),
        _ => group(&format!("{v:.2}")),
    }
}

/// Thousands separators for the integer part of a formatted number.
fn group(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(a, b)| (a, Some(b)));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped() {
        assert_eq!(super::group("1234567.50"), "1,234,567.50");
        assert_eq!(super::group("-1234"), "-1,234");
        assert_eq!(super::group("12"), "12");
    }
}
