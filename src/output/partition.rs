//! Results as a lake: `--partition-by period` writes one file per period under a folder,
//! hive-style (`DIR/period=2025-03-01/part-0.parquet`), so that a scheduled job can add
//! new periods or recompute the last few without rewriting the others, and any reader of
//! hive-partitioned folders (DataFusion, DuckDB, Spark, pandas) reads them as one table.
//!
//! As in Hive and Spark, the partition column lives in the folder name, not in the file.
//! A run stages every file before it replaces any: a run that fails, in computing or in
//! writing, leaves every previous file as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{Date32Type, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::Format;
use super::write::{Staged, io, named, stage, write_to};
use crate::exec::RunOutput;

/// How `--out DIR` splits a run's results into files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionBy {
    /// One file per period: `DIR/period=YYYY-MM-DD/part-0.EXT`.
    Period,
}

/// The file name inside each partition folder, by format; `None` for `table`, which is
/// for people and has no file form worth a lake.
pub fn part_name(format: Format) -> Option<&'static str> {
    Some(match format {
        Format::Table => return None,
        Format::Csv => "part-0.csv",
        Format::Json => "part-0.json",
        Format::Jsonl => "part-0.jsonl",
        Format::Parquet => "part-0.parquet",
        Format::Arrow => "part-0.arrows",
    })
}

/// Writes `out` under `dir`, one file per period in `format`, and returns the files
/// written in period order. Folders of periods the run did not compute are left alone.
/// Errors name the file or folder at fault; on error no file under `dir` has changed.
pub fn write_partitioned(
    out: &RunOutput,
    format: Format,
    dir: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    let Some(part) = part_name(format) else {
        return Err(std::io::Error::other(
            "--partition-by needs a file format: csv, json, jsonl, parquet or arrow",
        ));
    };
    if dir.is_file() {
        return Err(std::io::Error::other(format!(
            "--partition-by writes a folder, and {} is a file",
            dir.display()
        )));
    }
    let mut staged: Vec<Staged> = Vec::new();
    let mut paths = Vec::new();
    for (period, rows) in split_by_period(out)? {
        let folder = dir.join(format!("period={period}"));
        let path = folder.join(part);
        let file = std::fs::create_dir_all(&folder)
            .and_then(|()| stage(&path, &mut |w| write_to(&rows, format, w)))
            .map_err(|e| named(&path, e))?;
        staged.push(file);
        paths.push(path);
    }
    // Every file is complete on disk before the first rename: a failure above drops the
    // staged files, which removes them, and the previous results stay whole.
    for (file, path) in staged.into_iter().zip(&paths) {
        file.commit().map_err(|e| named(path, e))?;
    }
    Ok(paths)
}

/// The rows of each period, the period column taken out, keyed by the period's date.
pub(super) fn split_by_period(out: &RunOutput) -> std::io::Result<BTreeMap<String, RunOutput>> {
    let all = concat_batches(&out.schema, &out.batches).map_err(io)?;
    let mut groups: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
    if all.num_rows() > 0 {
        let period = all
            .column(0)
            .as_primitive_opt::<Date32Type>()
            .ok_or_else(|| {
                std::io::Error::other("the first column of a run's result is not its period")
            })?;
        for (i, day) in period.iter().enumerate() {
            let day = day.ok_or_else(|| std::io::Error::other("a result row has no period"))?;
            groups.entry(day).or_default().push(i as u32);
        }
    }
    let fields: Vec<_> = out.schema.fields().iter().skip(1).cloned().collect();
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        out.schema.metadata().clone(),
    ));
    let units = out.units.iter().skip(1).cloned().collect::<Vec<_>>();
    let mut split = BTreeMap::new();
    for (day, indices) in groups {
        let rows = take_record_batch(&all, &UInt32Array::from(indices)).map_err(io)?;
        let rows =
            RecordBatch::try_new(schema.clone(), rows.columns()[1..].to_vec()).map_err(io)?;
        let name = datafusion::arrow::temporal_conversions::date32_to_datetime(day)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .ok_or_else(|| std::io::Error::other(format!("period day {day} is out of range")))?;
        split.insert(
            name,
            RunOutput {
                schema: schema.clone(),
                batches: vec![rows],
                units: units.clone(),
            },
        );
    }
    Ok(split)
}
