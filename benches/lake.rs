//! Lake benchmark: kpi's whole run against floors measured in the same process.
//!
//! With no arguments (`cargo bench --bench lake`) it is small and self-contained: it
//! generates a tiny hive lake (`kpi gen --scale 20`) in a temporary directory and times
//!
//! - kpi: the 39 shipped KPIs by month over 2024-2025, in-process (load the catalogue,
//!   plan, run), as `kpi run` does;
//! - the scan floor: one DataFusion query per table reading every column the KPIs need;
//! - hand-written SQL: one DataFusion query per KPI (`bench/kpis.sql`);
//!
//! then prints each as a ratio to the floor, and checks kpi's values against the hand SQL.
//!
//! `bench/lake.sh` runs it on a large lake, one measurement per process:
//!
//! ```text
//! lake --data DIR --mode floor [--runs N]
//! lake --data DIR --mode sql [--sql bench/kpis.sql] [--runs N] [--values OUT.csv] [--check KPI.csv]
//! lake --data DIR --mode kpi [--metrics metrics] [--runs N]
//! lake --print-floor          (the floor queries, for DuckDB)
//! ```
//!
//! Output is JSON lines: one per query per run (`query`, `secs`), one per run (`total`),
//! and a summary (`best`, `median`); `--check` adds the number of (KPI, month) cells where
//! kpi's CSV and the hand SQL differ by more than 1e-9 relative. Every run starts from a
//! fresh session (tables registered, schemas read), as every `kpi run` is a new process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type};
use datafusion::prelude::SessionContext;
use kpi::source::DataRoot;
use serde_json::json;

/// The columns the shipped KPIs read, per table, without `--by`: every column named in
/// a filter, formula, time column, lookup, join or `active` rule of `metrics/**/*.yaml`,
/// with the keys the lookups and entity metrics group by. Read by hand from the YAML and
/// `crm-schema.md`; `reps` is read by no KPI.
const NEEDED: &[(&str, &[&str])] = &[
    (
        "orders",
        &[
            "ordered_at",
            "status",
            "amount",
            "customer_id",
            "rep_id",
            "category",
            "campaign_id",
        ],
    ),
    // customer_coverage_90d: customers created before the period's end.
    ("customers", &["created_at"]),
    ("leads", &["lead_id", "created_at"]),
    (
        "activities",
        &["occurred_at", "lead_id", "customer_id", "direction"],
    ),
    (
        "deals",
        &[
            "deal_id",
            "lead_id",
            "status",
            "amount",
            "created_at",
            "closed_at",
        ],
    ),
    (
        "tickets",
        &[
            "opened_at",
            "first_response_at",
            "resolved_at",
            "reopened_count",
            "csat",
            "agent_id",
        ],
    ),
    ("nps_responses", &["responded_at", "score"]),
    (
        "campaigns",
        &["campaign_id", "channel", "started_at", "cost"],
    ),
    (
        "campaign_events",
        &["campaign_id", "customer_id", "occurred_at", "event"],
    ),
    ("subscriptions", &["started_at", "cancelled_at", "mrr"]),
    ("crm_costs", &["incurred_at", "amount"]),
];

const FROM: &str = "2024-01-01";
const TO: &str = "2026-01-01";

type Error = Box<dyn std::error::Error>;

/// One query per table touching every needed column: `max` of each (decoded in full, as
/// statistics are off in the floor's session) and `count(*)`.
fn floor_queries() -> Vec<(String, String)> {
    NEEDED
        .iter()
        .map(|(table, cols)| {
            let aggs: Vec<String> = cols.iter().map(|c| format!("max({c}) AS {c}")).collect();
            (
                table.to_string(),
                format!("SELECT count(*) AS n, {} FROM {table}", aggs.join(", ")),
            )
        })
        .collect()
}

/// A block of `bench/kpis.sql`.
struct Block {
    kind: Kind,
    name: String,
    /// The value of a period without rows is 0 (counts and sums), else NULL.
    empty_zero: bool,
    sql: String,
}

#[derive(PartialEq)]
enum Kind {
    Setup,
    Kpi,
}

/// Splits the SQL file on its `-- setup` and `-- kpi: NAME [empty=0]` headers; other
/// `--` lines are comments (the same rules as bench/duck.py).
fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    for line in text.lines() {
        let s = line.trim();
        if s == "-- setup" {
            out.push(Block {
                kind: Kind::Setup,
                name: "setup".into(),
                empty_zero: false,
                sql: String::new(),
            });
        } else if let Some(rest) = s.strip_prefix("-- kpi:") {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default().to_string();
            out.push(Block {
                kind: Kind::Kpi,
                name,
                empty_zero: words.any(|w| w == "empty=0"),
                sql: String::new(),
            });
        } else if !s.starts_with("--")
            && let Some(b) = out.last_mut()
        {
            b.sql.push_str(line);
            b.sql.push('\n');
        }
    }
    for b in &mut out {
        b.sql = b.sql.trim().trim_end_matches(';').to_string();
    }
    out
}

/// The months of the run, `YYYY-MM-DD`.
fn months() -> Vec<String> {
    let mut out = Vec::new();
    let mut d = chrono::NaiveDate::parse_from_str(FROM, "%Y-%m-%d").unwrap();
    let end = chrono::NaiveDate::parse_from_str(TO, "%Y-%m-%d").unwrap();
    while d < end {
        out.push(d.to_string());
        d = d.checked_add_months(chrono::Months::new(1)).unwrap();
    }
    out
}

/// A fresh kpi session with `tables` of the data root registered.
async fn session(data: &Path, tables: &[&str], stats: bool) -> Result<SessionContext, Error> {
    let ctx = kpi::compile::session();
    if !stats {
        ctx.sql("SET datafusion.execution.collect_statistics = false")
            .await?
            .collect()
            .await?;
    }
    let root = DataRoot::open(data)?;
    for t in tables {
        if root.tables.contains_key(*t) {
            // The generated lake already holds the declared types: none to apply.
            root.register(&ctx, t, &[]).await?;
        }
    }
    Ok(ctx)
}

fn emit(v: serde_json::Value) {
    println!("{v}");
}

fn best_median(mut totals: Vec<f64>) -> (f64, f64) {
    totals.sort_by(f64::total_cmp);
    (totals[0], totals[totals.len() / 2])
}

/// The scan floor: every run's total seconds.
async fn floor(data: &Path, runs: usize, quiet: bool) -> Result<Vec<f64>, Error> {
    let tables: Vec<&str> = NEEDED.iter().map(|(t, _)| *t).collect();
    let mut totals = Vec::new();
    for run in 0..runs {
        let t0 = Instant::now();
        let ctx = session(data, &tables, false).await?;
        for (table, q) in floor_queries() {
            if ctx.table_provider(table.as_str()).await.is_err() {
                continue;
            }
            let t = Instant::now();
            let df = ctx.sql(&q).await?;
            let plan = df.create_physical_plan().await?;
            // Nothing answered from metadata: the plan reads the files.
            let shown = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(false)
                .to_string();
            assert!(
                shown.contains("DataSourceExec"),
                "the floor of {table} reads no file:\n{shown}"
            );
            let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
            let rows = batches
                .first()
                .map(|b| cast(b.column(0), &DataType::Int64))
                .transpose()?
                .map(|a| {
                    a.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .value(0)
                })
                .unwrap_or(0);
            if !quiet {
                emit(json!({"engine": "datafusion", "mode": "floor", "run": run,
                    "query": table, "secs": t.elapsed().as_secs_f64(), "rows": rows}));
            }
        }
        let total = t0.elapsed().as_secs_f64();
        if !quiet {
            emit(json!({"engine": "datafusion", "mode": "floor", "run": run, "total": total}));
        }
        totals.push(total);
    }
    Ok(totals)
}

/// KPI name → month → value, for every month of the run.
type Values = BTreeMap<String, BTreeMap<String, Option<f64>>>;

/// The hand-written SQL: every run's total seconds, and the last run's values.
async fn hand_sql(
    data: &Path,
    sql: &str,
    runs: usize,
    quiet: bool,
) -> Result<(Vec<f64>, Values), Error> {
    let blocks = blocks(sql);
    let n = blocks.iter().filter(|b| b.kind == Kind::Kpi).count();
    assert!(n > 0, "no `-- kpi:` block in the SQL file");
    let all: Vec<String> = DataRoot::open(data)?.tables.keys().cloned().collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut totals = Vec::new();
    let mut values = Values::new();
    for run in 0..runs {
        let t0 = Instant::now();
        let ctx = session(data, &all, true).await?;
        values.clear();
        for b in &blocks {
            let t = Instant::now();
            let batches = ctx
                .sql(&b.sql)
                .await
                .map_err(|e| format!("{}: {e}", b.name))?
                .collect()
                .await
                .map_err(|e| format!("{}: {e}", b.name))?;
            let secs = t.elapsed().as_secs_f64();
            if b.kind == Kind::Setup {
                continue;
            }
            let mut got = BTreeMap::new();
            for batch in &batches {
                let s = cast(batch.column(0), &DataType::Date32)?;
                let s = s.as_primitive::<Date32Type>();
                let v = cast(batch.column(1), &DataType::Float64)?;
                let v = v.as_primitive::<Float64Type>();
                for i in 0..batch.num_rows() {
                    let month = s
                        .value_as_date(i)
                        .map(|d| d.to_string())
                        .unwrap_or_default();
                    got.insert(month, (!v.is_null(i)).then(|| v.value(i)));
                }
            }
            if !quiet {
                emit(json!({"engine": "datafusion", "mode": "sql", "run": run,
                    "query": b.name, "secs": secs, "rows": got.len()}));
            }
            let empty = b.empty_zero.then_some(0.0);
            let full = months()
                .into_iter()
                .map(|m| {
                    let v = got.get(&m).copied().unwrap_or(empty);
                    (m, v)
                })
                .collect();
            values.insert(b.name.clone(), full);
        }
        let total = t0.elapsed().as_secs_f64();
        if !quiet {
            emit(json!({"engine": "datafusion", "mode": "sql", "run": run, "total": total}));
        }
        totals.push(total);
    }
    Ok((totals, values))
}

/// kpi's whole run in-process: every run's total seconds, and the last run's values.
async fn kpi_run(data: &Path, metrics: &Path, runs: usize) -> Result<(Vec<f64>, Values), Error> {
    let mut totals = Vec::new();
    let mut values = Values::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut db = kpi::diag::SourceDb::default();
        let (catalog, diags) = kpi::validate::load_and_check(metrics, &mut db)?;
        let errors: Vec<_> = diags.into_iter().filter(|d| d.is_error()).collect();
        if !errors.is_empty() {
            return Err(kpi::diag::render::human(&errors, &db, false).into());
        }
        let root = DataRoot::open(data)?;
        let req = kpi::exec::RunRequest {
            from: Some(FROM.into()),
            to: Some(TO.into()),
            ..Default::default()
        };
        let program = kpi::exec::prepare(&catalog, &mut db, &root, &req)
            .await
            .map_err(|e| e.to_string())?;
        let out = kpi::exec::execute(&program, &catalog, &mut |_| {})
            .await
            .map_err(|e| e.to_string())?;
        totals.push(t0.elapsed().as_secs_f64());
        values = output_values(&out)?;
    }
    Ok((totals, values))
}

fn output_values(out: &kpi::exec::RunOutput) -> Result<Values, Error> {
    let names: Vec<String> = out.schema.fields()[1..]
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut values = Values::new();
    for (key, cells) in out.rows(1)? {
        let month = key[0].clone().unwrap_or_default();
        for (name, v) in names.iter().zip(cells) {
            values
                .entry(name.clone())
                .or_default()
                .insert(month.clone(), v);
        }
    }
    Ok(values)
}

/// kpi's CSV output (`period,kpi1,kpi2,...`) as values.
fn read_kpi_csv(path: &Path) -> Result<Values, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty kpi output")?.split(',').collect();
    let mut values = Values::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        for (name, cell) in header.iter().zip(&cells).skip(1) {
            let v = if cell.is_empty() {
                None
            } else {
                Some(cell.parse::<f64>()?)
            };
            values
                .entry(name.to_string())
                .or_default()
                .insert(cells[0].to_string(), v);
        }
    }
    Ok(values)
}

/// Cells compared, cells differing by more than 1e-9 relative (or NULL against a value,
/// or missing), and the first few differences, for every (KPI, month) of `reference`.
fn compare(got: &Values, reference: &Values) -> (usize, usize, Vec<String>) {
    let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
    let (mut cells, mut differ, mut shown) = (0, 0, Vec::new());
    for (kpi, months) in reference {
        for (month, want) in months {
            cells += 1;
            let have = got.get(kpi).and_then(|m| m.get(month));
            let ok = match (have, want) {
                (Some(Some(a)), Some(b)) => close(*a, *b),
                (Some(None), None) => true,
                _ => false,
            };
            if !ok {
                differ += 1;
                if shown.len() < 10 {
                    shown.push(format!("{kpi} {month}: kpi {have:?}, hand SQL {want:?}"));
                }
            }
        }
    }
    (cells, differ, shown)
}

fn write_values(path: &Path, values: &Values) -> Result<(), Error> {
    let mut s = String::from("kpi,period,value\n");
    for (kpi, months) in values {
        for (m, v) in months {
            let v = v.map(|v| format!("{v:?}")).unwrap_or_default();
            s.push_str(&format!("{kpi},{m},{v}\n"));
        }
    }
    std::fs::write(path, s)?;
    Ok(())
}

struct Args {
    data: Option<PathBuf>,
    mode: String,
    sql: PathBuf,
    metrics: PathBuf,
    runs: usize,
    values: Option<PathBuf>,
    check: Option<PathBuf>,
    print_floor: bool,
}

fn args() -> Result<Args, Error> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut a = Args {
        data: None,
        mode: String::new(),
        sql: repo.join("bench/kpis.sql"),
        metrics: repo.join("metrics"),
        runs: 3,
        values: None,
        check: None,
        print_floor: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            // What `cargo bench` passes to every bench.
            "--bench" => {}
            "--data" => a.data = Some(value()?.into()),
            "--mode" => a.mode = value()?,
            "--sql" => a.sql = value()?.into(),
            "--metrics" => a.metrics = value()?.into(),
            "--runs" => a.runs = value()?.parse::<usize>()?.max(1),
            "--values" => a.values = Some(value()?.into()),
            "--check" => a.check = Some(value()?.into()),
            "--print-floor" => a.print_floor = true,
            other => {
                return Err(
                    format!("unknown argument {other}; see the header of benches/lake.rs").into(),
                );
            }
        }
    }
    Ok(a)
}

fn main() -> Result<(), Error> {
    let a = args()?;
    if a.print_floor {
        for (table, q) in floor_queries() {
            println!("-- table: {table}\n{q}\n");
        }
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match a.data.clone() {
            None => small(&a).await,
            Some(data) => one(&a, &data).await,
        }
    })
}

/// One measurement over a lake, for bench/lake.sh.
async fn one(a: &Args, data: &Path) -> Result<(), Error> {
    let (totals, values) = match a.mode.as_str() {
        "floor" => (floor(data, a.runs, false).await?, None),
        "sql" => {
            let sql =
                std::fs::read_to_string(&a.sql).map_err(|e| format!("{}: {e}", a.sql.display()))?;
            let (t, v) = hand_sql(data, &sql, a.runs, false).await?;
            (t, Some(v))
        }
        "kpi" => {
            let (t, v) = kpi_run(data, &a.metrics, a.runs).await?;
            for (run, total) in t.iter().enumerate() {
                emit(json!({"engine": "kpi", "mode": "kpi", "run": run, "total": total}));
            }
            (t, Some(v))
        }
        other => return Err(format!("--mode must be floor, sql or kpi, not `{other}`").into()),
    };
    let (best, median) = best_median(totals);
    let engine = if a.mode == "kpi" { "kpi" } else { "datafusion" };
    emit(json!({"engine": engine, "mode": a.mode, "runs": a.runs, "best": best, "median": median}));
    if let Some(values) = values {
        if let Some(path) = &a.values {
            write_values(path, &values)?;
        }
        if let Some(path) = &a.check {
            let kpi = read_kpi_csv(path)?;
            let (cells, differ, shown) = compare(&kpi, &values);
            emit(json!({"check": path.display().to_string(), "cells": cells,
                "differ": differ, "examples": shown}));
        }
    }
    Ok(())
}

/// `cargo bench`: a tiny generated lake, every measurement in-process.
async fn small(a: &Args) -> Result<(), Error> {
    let tmp = tempfile::tempdir()?;
    let lake = tmp.path().join("lake");
    let t = Instant::now();
    let report = kpi::generate::generate(
        &lake,
        &kpi::generate::GenOptions {
            scale: 20.0,
            seed: 42,
            layout: kpi::generate::Layout::Hive,
            from: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            to: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        },
        &mut |_, _| {},
    )?;
    let gen_secs = t.elapsed().as_secs_f64();
    let rows: u64 = report.tables.iter().map(|t| t.1).sum();
    let orders = report
        .tables
        .iter()
        .find(|t| t.0 == "orders")
        .map_or(0, |t| t.1);
    let sql = std::fs::read_to_string(&a.sql).map_err(|e| format!("{}: {e}", a.sql.display()))?;
    let runs = 5;
    // A warm-up of each, so that the first timed run does not pay for cold caches.
    floor(&lake, 1, true).await?;
    let (floor_t, _) = best_median(floor(&lake, runs, true).await?);
    let _ = hand_sql(&lake, &sql, 1, true).await?;
    let (sql_t, hand) = hand_sql(&lake, &sql, runs, true).await?;
    let (sql_t, _) = best_median(sql_t);
    let _ = kpi_run(&lake, &a.metrics, 1).await?;
    let (kpi_t, kpi_values) = kpi_run(&lake, &a.metrics, runs).await?;
    let (kpi_t, _) = best_median(kpi_t);
    let (cells, differ, shown) = compare(&kpi_values, &hand);

    println!(
        "kpi lake benchmark, small: scale 20 hive lake, {rows} rows ({orders} orders), generated in {gen_secs:.2} s"
    );
    println!(
        "  {} KPIs by month over 2024-2025; best of {runs} runs, each from a fresh session",
        hand.len()
    );
    println!("  {:<34} {:>9}  {:>9}", "", "seconds", "/ floor");
    for (label, secs) in [
        ("scan floor (DataFusion)", floor_t),
        ("hand-written SQL (DataFusion)", sql_t),
        ("kpi run (in-process)", kpi_t),
    ] {
        println!("  {label:<34} {secs:>9.3}  {:>8.2}x", secs / floor_t);
    }
    println!(
        "  kpi against the hand SQL: {differ} of {cells} (KPI, month) cells differ by more than 1e-9 relative"
    );
    for s in &shown {
        println!("    {s}");
    }
    println!("  (bench/lake.sh measures the same at scale, with DuckDB; see bench/README.md)");
    emit(
        json!({"bench": "lake-small", "rows": rows, "orders": orders, "floor": floor_t,
        "sql": sql_t, "kpi": kpi_t, "kpi_over_floor": kpi_t / floor_t,
        "sql_over_floor": sql_t / floor_t, "cells": cells, "differ": differ}),
    );
    Ok(())
}
