//! kpi: a SQL-declarative KPI engine.
//!
//! Metrics are YAML files holding SQL formulas; kpi loads them ([`spec`]), checks them against
//! each other and, optionally, against the data's schema ([`validate`]), compiles them into
//! DataFusion plans ([`compile`]), runs those plans over CSV or Parquet tables ([`source`],
//! [`exec`]) and writes the results ([`output`]); [`testing`] runs metric unit tests. The `kpi` binary is a thin CLI over this.

pub mod cli;
pub mod cluster;
pub mod compile;
pub mod diag;
pub mod diff;
pub mod exec;
pub mod generate;
pub mod guard;
pub mod harness;
pub mod output;
pub mod source;
pub mod spec;
pub mod sql;
pub mod store;
pub mod testing;
pub mod validate;
