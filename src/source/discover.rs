//! Discovery: which tables a data root holds, from a listing of its files alone (no file
//! is opened). A root is a local folder or an object-store URL; both are read the same
//! way: `NAME.csv` or `NAME.parquet` is a table of one file, a folder `NAME/` a table of
//! every file under it, its `key=value` folders hive partition columns. Names starting
//! with `.` or `_` are skipped at any depth (`_SUCCESS`, `.crc` files, staging folders).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DataRoot, Format, SourceError, TableEntry};
use crate::store::{self, Remote};

impl DataRoot {
    /// Lists the tables under the local folder `root`.
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
            if hidden(&fname) {
                continue;
            }
            if path.is_dir() {
                let mut files = Vec::new();
                list_files(&path, &mut files).map_err(|e| SourceError::Io {
                    path: path.clone(),
                    source: e,
                })?;
                files.sort();
                let entry = folder_table(fname, path, files, None)?;
                tables.insert(entry.name.clone(), entry);
            } else if let Some(entry) = file_table(path, None) {
                tables.insert(entry.name.clone(), entry);
            }
        }
        Ok(DataRoot::of_tables(root.to_path_buf(), tables, None))
    }

    /// Lists the tables under `root`: a local folder, or an object-store URL
    /// (`s3://bucket/prefix`, see [`crate::store`]) listed through its store.
    pub async fn locate(root: &Path) -> Result<DataRoot, SourceError> {
        if !store::is_url(root) {
            return DataRoot::open(root);
        }
        let remote = Remote::open(&root.to_string_lossy())?;
        let objects = remote.list().await?;
        if objects.is_empty() {
            return Err(SourceError::MissingRoot(root.to_path_buf()));
        }
        // A table is the first level under the prefix: `orders.csv` or `orders/…`.
        let mut folders: BTreeMap<String, Vec<(PathBuf, u64)>> = BTreeMap::new();
        let mut tables = BTreeMap::new();
        for meta in &objects {
            let Some(parts) = meta.location.prefix_match(&remote.prefix) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
            if parts.iter().any(|p| hidden(p)) {
                continue;
            }
            let file = PathBuf::from(remote.url_of(&meta.location));
            match parts.as_slice() {
                [] => {}
                [_] => {
                    let empty = (meta.size == 0).then(|| file.clone());
                    if let Some(entry) = file_table(file, empty) {
                        tables.insert(entry.name.clone(), entry);
                    }
                }
                [table, ..] => folders
                    .entry(table.clone())
                    .or_default()
                    .push((file, meta.size)),
            }
        }
        for (name, files) in folders {
            // A folder's listing URL ends with `/`, so that `orders` does not also match
            // `orders_archive/`.
            let path = PathBuf::from(format!("{}/", remote.url_of(&remote.key(&name))));
            let empty = files
                .iter()
                .find(|(_, size)| *size == 0)
                .map(|(f, _)| f.clone());
            let files = files.into_iter().map(|(f, _)| f).collect();
            let entry = folder_table(name, path, files, empty)?;
            tables.insert(entry.name.clone(), entry);
        }
        Ok(DataRoot::of_tables(
            root.to_path_buf(),
            tables,
            Some(Arc::new(remote)),
        ))
    }

    fn of_tables(
        root: PathBuf,
        tables: BTreeMap<String, TableEntry>,
        remote: Option<Arc<Remote>>,
    ) -> DataRoot {
        DataRoot {
            root,
            tables,
            types: BTreeMap::new(),
            sparse: false,
            remote,
        }
    }
}

fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// The table of one file `path`, if it is CSV or Parquet.
fn file_table(path: PathBuf, empty: Option<PathBuf>) -> Option<TableEntry> {
    let format = Format::of(&path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(TableEntry {
        name,
        path: path.clone(),
        format,
        partitions: vec![],
        files: vec![path],
        empty_file: empty,
    })
}

/// The table of folder `path` holding `files` (sorted): one format, and the hive
/// partition columns named by the first file's folders.
fn folder_table(
    name: String,
    path: PathBuf,
    mut files: Vec<PathBuf>,
    empty: Option<PathBuf>,
) -> Result<TableEntry, SourceError> {
    let formats: Vec<Format> = files.iter().filter_map(|f| Format::of(f)).collect();
    let Some(&format) = formats.first() else {
        return Err(SourceError::Empty { table: name, path });
    };
    if formats.iter().any(|f| *f != format) {
        let first = |want: Format| {
            files
                .iter()
                .find(|f| Format::of(f) == Some(want))
                .cloned()
                .unwrap_or_default()
        };
        return Err(SourceError::MixedFormats {
            table: name,
            csv: first(Format::Csv),
            parquet: first(Format::Parquet),
            path,
        });
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
    let empty_file = empty.filter(|e| files.contains(e));
    Ok(TableEntry {
        name,
        path,
        format,
        partitions,
        files,
        empty_file,
    })
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    list_files_in(dir, out, &mut Vec::new())
}

/// `seen` holds the real paths of the folders being listed, so that a symlink back up the
/// tree is an error rather than an endless descent.
fn list_files_in(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let real = std::fs::canonicalize(dir)?;
    if seen.contains(&real) {
        return Err(std::io::Error::other(format!(
            "{} links back to {} (a symlink loop)",
            dir.display(),
            real.display()
        )));
    }
    seen.push(real);
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if hidden(&name) {
            continue;
        }
        if p.is_dir() {
            list_files_in(&p, out, seen)?;
        } else {
            out.push(p);
        }
    }
    seen.pop();
    Ok(())
}
