//! Output: result batches as an aligned table for people, or CSV, JSON, JSON lines or
//! Parquet for tools — written atomically when going to a file, or to one file per
//! period under a folder.

mod partition;
pub mod report;
pub mod table;
mod write;

pub use partition::{PartitionBy, part_name, write_partitioned};
pub use write::{Format, render, write, write_atomic};
