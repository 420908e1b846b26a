//! `kpi run` and `kpi explain`: resolve the request, build the plans, run or show them.

use std::io::IsTerminal;

use super::args::{ExplainArgs, RunArgs, Selection, SqlArgs};
use super::{CliError, Exit, load_valid, print};
use crate::diag::{SourceDb, render};
use crate::exec::{self, ExplainOptions, Progress, RunError};
use crate::output::{self, Format};
use crate::source::DataRoot;
use crate::store;
use crate::validate::Catalog;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The data root at `data`: a folder, or an object-store URL.
async fn locate(data: &std::path::Path) -> Result<DataRoot, RunError> {
    DataRoot::locate(data).await.map_err(RunError::from)
}

fn report(e: RunError, db: &SourceDb, color: bool) -> Result<Exit, CliError> {
    match e {
        RunError::Diagnostics(d) => {
            eprint!("{}", render::human(&d, db, color));
            Ok(Exit::Failed)
        }
        other => Err(CliError::Message(other.to_string())),
    }
}

pub fn run(args: RunArgs, color: bool) -> Result<Exit, CliError> {
    let format = args
        .format
        .unwrap_or(if std::io::stdout().is_terminal() && args.out.is_none() {
            Format::Table
        } else {
            Format::Csv
        });
    if args.partition_by.is_some() && output::part_name(format).is_none() {
        return Err(CliError::Message(
            "--partition-by needs a file format: csv, json, jsonl, parquet or arrow".into(),
        ));
    }
    let Some((out, _)) = compute(&args.selection, color)? else {
        return Ok(Exit::Failed);
    };
    match (args.partition_by, args.out.as_deref()) {
        (Some(output::PartitionBy::Period), Some(url)) if store::is_url(url) => {
            runtime().block_on(output::write_partitioned_remote(&out, format, url))?;
        }
        (Some(output::PartitionBy::Period), Some(dir)) => {
            output::write_partitioned(&out, format, dir)?;
        }
        (_, Some(url)) if store::is_url(url) => {
            runtime().block_on(output::write_remote(&out, format, url))?;
        }
        (_, path) => output::write(&out, format, path)?,
    }
    Ok(Exit::Ok)
}

/// Loads the definitions and runs `names` as `query` asks, showing progress on a
/// terminal. `None` when definitions or the request were at fault (already reported).
pub(crate) fn compute(
    selection: &Selection,
    color: bool,
) -> Result<Option<(exec::RunOutput, Catalog)>, CliError> {
    let query = &selection.query;
    let mut db = SourceDb::default();
    let Some(catalog) = load_valid(&query.metrics, &mut db, color)? else {
        return Ok(None);
    };
    let req = query.request(selection.metric_names.clone(), selection.compare);
    let show_progress = std::io::stderr().is_terminal();
    let result = runtime().block_on(async {
        let root = locate(&query.data).await?;
        let program = exec::prepare(&catalog, &mut db, &root, &req).await?;
        exec::execute(&program, &catalog, &mut |event| match event {
            Progress::Scan {
                index,
                count,
                metrics,
            } => {
                if show_progress {
                    eprint!("\r\x1b[2Kkpi: {index}/{count} {metrics}");
                }
            }
            Progress::Retry {
                metrics,
                attempt,
                of,
                cause,
            } => {
                let cause = cause.lines().next().unwrap_or_default();
                let clear = if show_progress { "\r\x1b[2K" } else { "" };
                eprintln!(
                    "{clear}kpi: warning: the cluster lost an executor while computing \
                     `{metrics}`; submitting it again (attempt {attempt} of {of}). Cause: {cause}"
                );
            }
        })
        .await
    });
    if show_progress {
        eprint!("\r\x1b[2K");
    }
    match result {
        Ok(o) => Ok(Some((o, catalog))),
        Err(e) => report(e, &db, color).map(|_| None),
    }
}

pub fn explain(args: ExplainArgs, color: bool) -> Result<Exit, CliError> {
    let mut db = SourceDb::default();
    let Some(catalog) = load_valid(&args.query.metrics, &mut db, color)? else {
        return Ok(Exit::Failed);
    };
    let req = args.query.request(args.metric_names, None);
    let opts = ExplainOptions {
        physical: args.physical,
        analyze: args.analyze,
    };
    let result = runtime().block_on(async {
        let root = locate(&args.query.data).await?;
        let program = exec::prepare(&catalog, &mut db, &root, &req).await?;
        exec::explain(&program, &catalog, &opts).await
    });
    match result {
        Ok(text) => {
            print(&text)?;
            Ok(Exit::Ok)
        }
        Err(e) => report(e, &db, color),
    }
}

/// `kpi sql`: the run `kpi run` would compute, as one statement in a dialect.
pub fn sql(args: SqlArgs, color: bool) -> Result<Exit, CliError> {
    let query = &args.selection.query;
    let mut db = SourceDb::default();
    let Some(catalog) = load_valid(&query.metrics, &mut db, color)? else {
        return Ok(Exit::Failed);
    };
    let mut req = query.request(args.selection.metric_names.clone(), args.selection.compare);
    req.engine.portable = true;
    let result = runtime().block_on(async {
        let root = locate(&query.data).await?;
        let program = exec::prepare(&catalog, &mut db, &root, &req).await?;
        exec::export(&program, &catalog, args.dialect).await
    });
    match result {
        Ok(sql) => {
            print(&sql)?;
            Ok(Exit::Ok)
        }
        Err(e) => report(e, &db, color),
    }
}
