//! `kpi validate`: every definition checked, every finding printed, in one pass.

use super::args::{DiagnosticFormat, ValidateArgs};
use super::{CliError, Exit, load_catalog, print};
use crate::diag::{Severity, SourceDb, render};

pub fn run(args: ValidateArgs, color: bool) -> Result<Exit, CliError> {
    let mut db = SourceDb::default();
    let (catalog, mut diags) = load_catalog(&args.metrics, &mut db)?;
    if let Some(data) = &args.data {
        diags.extend(
            crate::compile::check_against_data(&catalog, data)
                .map_err(|e| CliError::Message(e.to_string()))?,
        );
    }
    if args.deny_warnings {
        for d in &mut diags {
            d.severity = Severity::Error;
        }
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let out = match args.format {
        DiagnosticFormat::Human => {
            let mut s = render::human(&diags, &db, color);
            let n = catalog.public_metrics().count();
            if errors == 0 {
                s.push_str(&format!(
                    "{n} metrics and {} models are valid ({})\n",
                    catalog.models.len(),
                    render::summary(&diags)
                ));
            } else {
                s.push_str(&format!(
                    "{} in {}\n",
                    render::summary(&diags),
                    args.metrics.display()
                ));
            }
            s
        }
        DiagnosticFormat::Json => render::json(&diags, &db),
        DiagnosticFormat::Github => render::github(&diags, &db),
        DiagnosticFormat::Sarif => render::sarif(&diags, &db),
    };
    print(&out)?;
    Ok(if errors > 0 { Exit::Failed } else { Exit::Ok })
}
