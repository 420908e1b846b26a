//! Finding the value at fault in a CSV table, once something has gone wrong.
//!
//! Reading CSV in bulk reports a bad value by a record number inside an unnamed file.
//! These scans run only after a failure: they read the table's files record by record,
//! with the line a text editor shows (quoted fields may span lines), and name the file,
//! line, column and value.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::DataType;

use super::utc_timestamp;

/// A value of a file, located as an editor shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub file: PathBuf,
    /// 1-based, counting the header.
    pub line: u64,
    pub column: String,
    pub value: String,
}

/// Records read per cast, so that a table's values are parsed in bulk.
const CHUNK: usize = 4096;

/// Values of `column` from `files`, with their lines, in chunks; stops when `f` says so.
fn each_chunk(
    files: &[PathBuf],
    column: &str,
    mut f: impl FnMut(&Path, &[(u64, String)]) -> bool,
) -> std::io::Result<()> {
    for file in files {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_path(file)
            .map_err(std::io::Error::other)?;
        let Some(index) = reader
            .headers()
            .map_err(std::io::Error::other)?
            .iter()
            .position(|h| h == column)
        else {
            continue;
        };
        let mut chunk: Vec<(u64, String)> = Vec::with_capacity(CHUNK);
        let mut record = csv::StringRecord::new();
        loop {
            let more = reader
                .read_record(&mut record)
                .map_err(std::io::Error::other)?;
            if more {
                let line = record.position().map_or(0, |p| p.line());
                let value = record.get(index).unwrap_or("");
                // An empty field is NULL, which every type takes.
                if !value.is_empty() {
                    chunk.push((line, value.to_string()));
                }
            }
            if chunk.len() == CHUNK || (!more && !chunk.is_empty()) {
                if !f(file, &chunk) {
                    return Ok(());
                }
                chunk.clear();
            }
            if !more {
                break;
            }
        }
    }
    Ok(())
}

/// Which values of `values` do not parse as `ty` (as the CSV reader parses them).
fn failures(values: &[(u64, String)], ty: &DataType) -> Vec<bool> {
    let array = StringArray::from_iter_values(values.iter().map(|(_, v)| v.as_str()));
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    match cast_with_options(&array, ty, &options) {
        Ok(parsed) => (0..values.len()).map(|i| parsed.is_null(i)).collect(),
        Err(_) => vec![true; values.len()],
    }
}

/// The first value of `column` in `files` that does not parse as `ty`.
pub fn first_bad_value(
    files: &[PathBuf],
    column: &str,
    ty: &DataType,
) -> std::io::Result<Option<Located>> {
    let mut found = None;
    each_chunk(files, column, |file, chunk| {
        let bad = failures(chunk, ty);
        if let Some(i) = bad.iter().position(|b| *b) {
            found = Some(Located {
                file: file.to_path_buf(),
                line: chunk[i].0,
                column: column.to_string(),
                value: chunk[i].1.clone(),
            });
            return false;
        }
        true
    })?;
    Ok(found)
}

/// Why `column` was read as text: the first value that is not of the type every value
/// before it had (an integer, a float, a timestamp or a boolean), with that type's name.
/// `None` when the column's first value is already text: then it is text by nature.
pub fn why_text(
    files: &[PathBuf],
    column: &str,
    limit: usize,
) -> std::io::Result<Option<(Located, &'static str)>> {
    let candidates: [(&str, DataType); 4] = [
        ("integer", DataType::Int64),
        ("float", DataType::Float64),
        ("timestamp", utc_timestamp()),
        ("boolean", DataType::Boolean),
    ];
    // The index of the first value each type fails on, over every value seen.
    let mut alive: Vec<bool> = vec![true; candidates.len()];
    let mut seen = 0usize;
    let mut found = None;
    each_chunk(files, column, |file, chunk| {
        let fails: Vec<Vec<bool>> = candidates.iter().map(|(_, t)| failures(chunk, t)).collect();
        for (i, (line, value)) in chunk.iter().enumerate() {
            let before: Vec<usize> = (0..candidates.len()).filter(|&c| alive[c]).collect();
            for &c in &before {
                if fails[c][i] {
                    alive[c] = false;
                }
            }
            if !alive.iter().any(|a| *a) {
                if seen > 0 {
                    found = Some((
                        Located {
                            file: file.to_path_buf(),
                            line: *line,
                            column: column.to_string(),
                            value: value.clone(),
                        },
                        candidates[before[0]].0,
                    ));
                }
                return false;
            }
            seen += 1;
            if seen >= limit {
                return false;
            }
        }
        true
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, text).unwrap();
        (dir, vec![p])
    }

    #[test]
    fn a_bad_value_is_found_on_its_editor_line() {
        // The quoted note spans lines 3 and 4, so the bad amount is on line 6.
        let (_d, files) = file("id,note,amount\n1,a,1.5\n2,\"two\nlines\",2\n3,,\n4,b,x1\n");
        let bad = first_bad_value(&files, "amount", &DataType::Float64)
            .unwrap()
            .unwrap();
        assert_eq!((bad.line, bad.value.as_str()), (6, "x1"));
        assert_eq!(
            first_bad_value(&files, "id", &DataType::Int64).unwrap(),
            None
        );
    }

    #[test]
    fn the_value_that_made_a_column_text_is_named() {
        let (_d, files) = file("amount,status\n10,paid\n2.5,paid\n,paid\nnot-a-number,paid\n");
        let (at, was) = why_text(&files, "amount", 100).unwrap().unwrap();
        assert_eq!(
            (at.line, at.value.as_str(), was),
            (5, "not-a-number", "float")
        );
        // A column of words was never anything but text.
        assert_eq!(why_text(&files, "status", 100).unwrap(), None);
    }
}
