//! `kpi gen`: a deterministic generator of the CRM data set of `crm-schema.md`, at any scale.
//!
//! Every value is a pure function of (seed, table, row id, field) — a SplitMix64 hash —
//! so each table is produced in time order by itself, and a child row (an order) can
//! recompute what it needs of its parent (when its customer was created) without keeping
//! the parents in memory. Memory stays bounded at any scale: rows go to the writer in
//! batches, and a hive partition is closed as soon as time moves past its month.
//!
//! The data carries, on purpose, the cases that break metric engines: rows exactly at
//! period boundaries, NULLs wherever the schema allows, a month with no orders at all,
//! activities before their lead, subscriptions cancelled exactly at a month's start,
//! Unicode names and rows on a leap day.

mod sink;
mod tables;

use std::path::Path;

use chrono::{Datelike, NaiveDate};

pub use sink::Layout;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub scale: f64,
    pub seed: u64,
    pub layout: Layout,
    /// First day, inclusive.
    pub from: NaiveDate,
    /// Last day, exclusive.
    pub to: NaiveDate,
}

/// Rows written per table.
#[derive(Debug, Default)]
pub struct GenReport {
    pub tables: Vec<(String, u64)>,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("{0}")]
    Usage(String),
    #[error("writing {path}: {message}")]
    Write { path: String, message: String },
}

/// Generates every table under `out`, reporting each table as it completes.
pub fn generate(
    out: &Path,
    opts: &GenOptions,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<GenReport, GenError> {
    if opts.to <= opts.from {
        return Err(GenError::Usage("--to must be after --from".into()));
    }
    if !(opts.scale > 0.0 && opts.scale.is_finite()) {
        return Err(GenError::Usage("--scale must be a positive number".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| GenError::Write {
        path: out.display().to_string(),
        message: e.to_string(),
    })?;
    let world = tables::World::new(opts);
    let mut report = GenReport::default();
    for table in tables::TABLES {
        let n = world.write_table(table, out, opts.layout, progress)?;
        report.tables.push((table.to_string(), n));
    }
    Ok(report)
}

/// SplitMix64 of a tuple: a uniform, stateless 64-bit value.
pub(crate) fn hash(seed: u64, parts: &[u64]) -> u64 {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    for p in parts {
        x = mix(x ^ p.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    }
    x
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The first day of the month of `d`.
pub(crate) fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("day 1")
}
