//! Output: result batches as an aligned table for people, or CSV, JSON, JSON lines or
//! Parquet for tools — written atomically when going to a file, or to one file per
//! period under a folder.

mod partition;
mod remote;
pub mod report;
pub mod table;
mod write;

pub use partition::{PartitionBy, part_name, write_partitioned};
pub use remote::{write_partitioned_remote, write_remote};
pub use write::{Format, render, write, write_atomic};
