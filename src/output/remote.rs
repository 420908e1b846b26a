//! Results written to an object store: `--out s3://bucket/results.csv`, or a folder of
//! one file per period with `--partition-by period`. Every file is rendered in memory
//! before the first upload, so a run that fails in rendering writes nothing; each upload
//! then replaces its object whole (an object store never shows part of one). Unlike a
//! local folder, a store cannot replace several objects as one step: a failure between
//! uploads leaves the periods before it new and the rest as they were.

use std::path::Path;

use super::Format;
use super::partition::{part_name, split_by_period};
use super::write::render;
use crate::exec::RunOutput;
use crate::store::Remote;

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes `out` in `format` as the object at URL `location`; returns its URL.
pub async fn write_remote(
    out: &RunOutput,
    format: Format,
    location: &Path,
) -> std::io::Result<String> {
    if format == Format::Table {
        return Err(other(
            "--format table is for a terminal; pick a file format for --out",
        ));
    }
    let remote = Remote::open(&location.to_string_lossy()).map_err(other)?;
    let bytes = render(out, format)?;
    remote.put(&remote.prefix, bytes).await.map_err(other)?;
    Ok(remote.url())
}

/// Writes `out` under the folder URL `location`, one object per period
/// (`period=YYYY-MM-DD/part-0.EXT`), and returns their URLs in period order. Periods the
/// run did not compute are left alone.
pub async fn write_partitioned_remote(
    out: &RunOutput,
    format: Format,
    location: &Path,
) -> std::io::Result<Vec<String>> {
    let Some(part) = part_name(format) else {
        return Err(other(
            "--partition-by needs a file format: csv, json, jsonl, parquet or arrow",
        ));
    };
    let remote = Remote::open(&location.to_string_lossy()).map_err(other)?;
    let mut files = Vec::new();
    for (period, rows) in split_by_period(out)? {
        let key = remote.key(&format!("period={period}/{part}"));
        files.push((key, render(&rows, format)?));
    }
    let mut urls = Vec::new();
    for (key, bytes) in files {
        remote.put(&key, bytes).await.map_err(other)?;
        urls.push(remote.url_of(&key));
    }
    Ok(urls)
}
