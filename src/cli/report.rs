//! `kpi report`: run as `kpi run` would, then write the HTML page.

use super::args::ReportArgs;
use super::run::compute;
use super::{CliError, Exit};
use crate::output::report::{MetricInfo, Page};

pub fn run(args: ReportArgs, color: bool) -> Result<Exit, CliError> {
    let Some((out, catalog)) = compute(&args.selection, color)? else {
        return Ok(Exit::Failed);
    };
    let keys = 1 + args.selection.query.by.len();
    let metrics = MetricInfo::of_run(&out, &catalog, keys);
    let page = Page {
        title: args.title.clone(),
        parameters: parameters(&args),
        metrics,
        keys,
    };
    let html = crate::output::report::html(&out, &page).map_err(CliError::Message)?;
    crate::output::write_atomic(&args.out, &mut |w| w.write_all(html.as_bytes()))?;
    Ok(Exit::Ok)
}

/// The run's parameters as the page lists them.
fn parameters(args: &ReportArgs) -> Vec<(String, String)> {
    let q = &args.selection.query;
    let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
    let mut p = vec![
        ("metrics".to_string(), q.metrics.display().to_string()),
        ("data root".to_string(), q.data.display().to_string()),
        (
            "from".to_string(),
            or(&q.periods.from, "the data's first period"),
        ),
        (
            "to".to_string(),
            or(&q.periods.to, "after the data's last period"),
        ),
        (
            "grain".to_string(),
            q.periods
                .grain
                .map_or("the metrics' own".to_string(), |g| g.to_string()),
        ),
        ("time zone".to_string(), or(&q.periods.tz, "UTC")),
    ];
    if !q.by.is_empty() {
        p.push(("by".into(), q.by.join(", ")));
    }
    if let Some(w) = &q.filter {
        p.push(("where".into(), w.clone()));
    }
    if let Some(c) = args.selection.compare {
        use clap::ValueEnum;
        let name = c.to_possible_value().map(|v| v.get_name().to_string());
        p.push(("compare".into(), name.unwrap_or_default()));
    }
    p.push((
        "generated".into(),
        chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    ));
    p.push(("kpi".into(), env!("CARGO_PKG_VERSION").into()));
    p
}
