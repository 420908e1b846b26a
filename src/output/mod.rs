//! Output: result batches as an aligned table for people, or CSV, JSON, JSON lines or
//! Parquet for tools — written atomically when going to a file.

pub mod report;
pub mod table;
mod write;

pub use write::{Format, render, write, write_atomic};
