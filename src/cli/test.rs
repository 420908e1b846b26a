//! `kpi test`: every case of every test file, in-process; exit 1 if any fails.

use std::io::Write;

use super::args::{TestArgs, TestFormat};
use super::run::runtime;
use super::{CliError, Exit, load_catalog, print};
use crate::diag::{Code, Diagnostic, SourceDb, did_you_mean, render};
use crate::testing::{self, report};

pub fn run(args: TestArgs, color: bool) -> Result<Exit, CliError> {
    let started = std::time::Instant::now();
    let mut db = SourceDb::default();
    let (catalog, diags) = load_catalog(&args.metrics, &mut db)?;
    let mut errors: Vec<_> = diags.into_iter().filter(|d| d.is_error()).collect();
    let files = testing::discover(&args.metrics)
        .map_err(|e| CliError::Message(format!("cannot list test files: {e}")))?;
    let mut cases = Vec::new();
    for path in &files {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let id = db.add(crate::spec::load::display_path(path), text);
                cases.extend(testing::load_file(&db, id, &mut errors));
            }
            Err(e) => {
                return Err(CliError::Message(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        }
    }
    for case in &cases {
        for m in &case.metrics {
            if catalog.metric(&m.value).is_none() {
                errors.push(
                    Diagnostic::error(Code::UnknownMetric, format!("unknown metric `{}`", m.value))
                        .at(case.file, m.span.clone(), "")
                        .maybe_help(did_you_mean(&m.value, catalog.metric_names())),
                );
            }
        }
    }
    if !errors.is_empty() {
        let out = match args.format {
            TestFormat::Human => render::human(&errors, &db, color),
            TestFormat::Github => render::github(&errors, &db),
        };
        eprint!("{out}");
        eprintln!("{}; no test ran", render::summary(&errors));
        return Ok(Exit::Failed);
    }
    if let Some(f) = &args.filter {
        cases.retain(|c| {
            c.name.contains(f.as_str()) || db.path(c.file).to_string_lossy().contains(f.as_str())
        });
    }
    if cases.is_empty() {
        eprintln!(
            "kpi test: no test case found under {}{}",
            args.metrics.display(),
            args.filter
                .as_ref()
                .map(|f| format!(" matching `{f}`"))
                .unwrap_or_default()
        );
        return Ok(Exit::Failed);
    }
    let rt = runtime();
    let mut results = Vec::new();
    for case in cases {
        let r = rt.block_on(testing::run_case(&catalog, &mut db, &case));
        results.push((case, r));
    }
    let totals = report::Totals::of(&results);
    let mut out = report::human(&results, &db, color);
    let _ = out.pop();
    out.push_str(&format!(
        " in {} file{}, {:.0} ms\n",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64() * 1000.0
    ));
    if args.format == TestFormat::Github {
        out.push_str(&report::github(&results, &db));
    }
    print(&out)?;
    let _ = std::io::stdout().flush();
    Ok(if totals.failed > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    })
}
