//! `kpi schema`: prints the JSON Schema of metric and model files.

use super::{CliError, Exit, print};
use crate::spec::schema::metric_schema_text;

pub fn run() -> Result<Exit, CliError> {
    print(&metric_schema_text())?;
    Ok(Exit::Ok)
}
