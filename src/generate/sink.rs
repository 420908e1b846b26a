//! Where generated rows go: one CSV file, one Parquet file, or hive-partitioned Parquet
//! (`NAME/year=YYYY/month=MM/part-0.parquet`), written as the rows arrive in time order.

use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use super::GenError;

/// The on-disk layout of generated tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// `NAME.csv`, RFC 3339 timestamps.
    Csv,
    /// `NAME.parquet`.
    Parquet,
    /// `NAME/year=YYYY/month=MM/part-0.parquet`.
    Hive,
}

enum Writer {
    Csv(datafusion::arrow::csv::Writer<std::io::BufWriter<File>>),
    Parquet(ArrowWriter<File>),
}

/// A table being written.
pub struct Sink {
    layout: Layout,
    dir: PathBuf,
    name: String,
    current: Option<((i32, u32), Writer, PathBuf)>,
}

fn err(path: &Path, e: impl std::fmt::Display) -> GenError {
    GenError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Sink {
    pub fn new(dir: &Path, name: &str, layout: Layout) -> Result<Sink, GenError> {
        // Start from a clean slate: a previous run's files must not linger.
        for p in [
            dir.join(format!("{name}.csv")),
            dir.join(format!("{name}.parquet")),
        ] {
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| err(&p, e))?;
            }
        }
        let d = dir.join(name);
        if d.is_dir() {
            std::fs::remove_dir_all(&d).map_err(|e| err(&d, e))?;
        }
        Ok(Sink {
            layout,
            dir: dir.to_path_buf(),
            name: name.to_string(),
            current: None,
        })
    }

    fn open(&self, part: (i32, u32), schema: &RecordBatch) -> Result<(Writer, PathBuf), GenError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1")))
            .build();
        let path = match self.layout {
            Layout::Csv => self.dir.join(format!("{}.csv", self.name)),
            Layout::Parquet => self.dir.join(format!("{}.parquet", self.name)),
            Layout::Hive => {
                let d = self
                    .dir
                    .join(&self.name)
                    .join(format!("year={}", part.0))
                    .join(format!("month={:02}", part.1));
                std::fs::create_dir_all(&d).map_err(|e| err(&d, e))?;
                d.join("part-0.parquet")
            }
        };
        let file = File::create(&path).map_err(|e| err(&path, e))?;
        let w = match self.layout {
            Layout::Csv => Writer::Csv(
                datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%SZ".to_string())
                    .build(std::io::BufWriter::new(file)),
            ),
            _ => Writer::Parquet(
                ArrowWriter::try_new(file, schema.schema(), Some(props))
                    .map_err(|e| err(&path, e))?,
            ),
        };
        Ok((w, path))
    }

    /// Writes a batch whose rows all fall in month `part`.
    pub fn write(&mut self, part: (i32, u32), batch: &RecordBatch) -> Result<(), GenError> {
        let key = if self.layout == Layout::Hive {
            part
        } else {
            (0, 0)
        };
        if self.current.as_ref().is_none_or(|c| c.0 != key) {
            self.close()?;
            let (w, p) = self.open(key, batch)?;
            self.current = Some((key, w, p));
        }
        let (_, w, path) = self.current.as_mut().expect("opened");
        match w {
            Writer::Csv(w) => w.write(batch).map_err(|e| err(path, e)),
            Writer::Parquet(w) => w.write(batch).map_err(|e| err(path, e)),
        }
    }

    /// Finishes the open file.
    pub fn close(&mut self) -> Result<(), GenError> {
        if let Some((_, w, path)) = self.current.take() {
            match w {
                Writer::Csv(w) => {
                    let mut inner = w.into_inner();
                    std::io::Write::flush(&mut inner).map_err(|e| err(&path, e))?;
                }
                Writer::Parquet(w) => {
                    w.close().map_err(|e| err(&path, e))?;
                }
            }
        }
        Ok(())
    }
}
