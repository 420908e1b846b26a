//! `kpi gen`: writes a generated CRM data root.

use std::io::IsTerminal;

use super::args::GenArgs;
use super::{CliError, Exit};
use crate::generate::{GenOptions, generate};

pub fn run(args: GenArgs) -> Result<Exit, CliError> {
    let opts = GenOptions {
        scale: args.scale,
        seed: args.seed,
        layout: args.format,
        from: args.from,
        to: args.to,
    };
    let show = std::io::stderr().is_terminal();
    let start = std::time::Instant::now();
    let report = generate(&args.out, &opts, &mut |table, rows| {
        if show {
            eprint!("\r\x1b[2Kkpi gen: {table} {rows} rows");
        }
    })
    .map_err(|e| CliError::Message(e.to_string()))?;
    if show {
        eprint!("\r\x1b[2K");
    }
    let total: u64 = report.tables.iter().map(|t| t.1).sum();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "kpi gen: {total} rows in {} tables under {} ({secs:.1} s, {:.0} rows/s)",
        report.tables.len(),
        args.out.display(),
        total as f64 / secs.max(1e-9)
    );
    Ok(Exit::Ok)
}
