//! `kpi list`: the catalogue at a glance, as an aligned table or JSON.

use serde::Serialize;

use super::args::{ListArgs, ListFormat};
use super::{CliError, Exit, load_valid, print};
use crate::diag::SourceDb;
use crate::validate::{Catalog, Kind};

/// One metric as `kpi list` and `kpi serve` show it.
#[derive(Serialize)]
pub(super) struct Row {
    name: String,
    description: String,
    kind: &'static str,
    source: String,
    grain: String,
    unit: String,
    dimensions: Vec<String>,
    file: String,
}

pub(super) fn rows(cat: &Catalog, db: &SourceDb) -> Vec<Row> {
    cat.public_metrics()
        .map(|id| {
            let m = &cat.metrics[id];
            let source = match &m.kind {
                Kind::Aggregate(a) => a.source.clone(),
                Kind::Derived(d) => {
                    let mut names: Vec<&str> = d.refs.iter().map(|r| r.name.as_str()).collect();
                    names.dedup();
                    format!("= {}", names.join(", "))
                }
            };
            Row {
                name: m.name.clone(),
                description: m
                    .spec
                    .description
                    .clone()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                kind: cat.shape(id),
                source,
                grain: m
                    .spec
                    .grain
                    .as_ref()
                    .map_or("month", |g| g.value.name())
                    .to_string(),
                unit: m
                    .spec
                    .unit
                    .as_ref()
                    .map_or("", |u| u.value.name())
                    .to_string(),
                dimensions: cat.dimensions(id),
                file: db.path(m.file()).display().to_string(),
            }
        })
        .collect()
}

pub fn run(args: ListArgs) -> Result<Exit, CliError> {
    let mut db = SourceDb::default();
    let Some(catalog) = load_valid(&args.metrics, &mut db, false)? else {
        return Ok(Exit::Failed);
    };
    let rows = rows(&catalog, &db);
    match args.format {
        ListFormat::Json => {
            print(&(serde_json::to_string_pretty(&rows).expect("rows serialize") + "\n"))?
        }
        ListFormat::Table => {
            let header = [
                "name",
                "kind",
                "source",
                "grain",
                "unit",
                "dimensions",
                "description",
            ];
            let cells: Vec<[String; 7]> = rows
                .iter()
                .map(|r| {
                    [
                        r.name.clone(),
                        r.kind.to_string(),
                        r.source.clone(),
                        r.grain.clone(),
                        r.unit.clone(),
                        r.dimensions.join(", "),
                        r.description.clone(),
                    ]
                })
                .collect();
            print(&crate::output::table::align(&header, &cells, &[]))?;
        }
    }
    Ok(Exit::Ok)
}
