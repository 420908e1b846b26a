//! Typed sources and drifting or broken lakes: declared CSV types, a bad value named by
//! file, line, column and value, inferred text explained, Parquet checked against the
//! declarations, hive folders whose files add columns or change types, mixed formats,
//! empty, zero-row and unreadable files. Every failure exits non-zero and leaves no file.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use datafusion::arrow::array::{TimestampMicrosecondArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::errors::fails;
use crate::run::Fixture;

const REVENUE: (&str, &str) = (
    "revenue.yaml",
    "source: orders\nfilter: status = 'paid'\nformula: sum(amount)\n",
);

fn model(columns: &str) -> (&'static str, String) {
    (
        "models/orders.yaml",
        format!("table: orders\ntime: ordered_at\ncolumns: {columns}\n"),
    )
}

fn fixture(
    model_yaml: &(&str, String),
    extra: &[(&str, &str)],
    tables: &[(&str, &str)],
) -> Fixture {
    let mut metrics: Vec<(&str, &str)> = vec![(model_yaml.0, model_yaml.1.as_str()), REVENUE];
    metrics.extend_from_slice(extra);
    Fixture::new(&metrics, tables)
}

const ORDERS: &str = "order_id,ordered_at,amount,status
1,2024-01-05T00:00:00Z,10,paid
2,2024-01-09T00:00:00Z,20.5,paid
3,2024-02-05T00:00:00Z,not-a-number,paid
4,2024-02-06T00:00:00Z,4,paid
";

#[test]
fn a_declared_column_names_the_file_line_column_and_value_that_do_not_parse() {
    let m = model("{order_id: integer, ordered_at: timestamp, amount: double, status: string}");
    let f = fixture(&m, &[], &[("orders.csv", ORDERS)]);
    let (code, err) = fails(&f, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "data/orders.csv:4: column `amount` of table `orders` holds `not-a-number`, \
             which is not a number"
        ),
        "{err}"
    );
}

#[test]
fn an_inferred_text_column_is_explained_by_the_value_that_made_it_text() {
    let models = ("models/orders.yaml", "table: orders\ntime: ordered_at\n");
    let f = Fixture::new(&[models, REVENUE], &[("orders.csv", ORDERS)]);
    let (code, err) = fails(&f, &[]);
    assert_eq!(code, 1, "{err}");
    // The metric's location is kept; the cause in the data is added beside it.
    assert!(err.contains("--> metrics/revenue.yaml:3:14"), "{err}");
    assert!(
        err.contains(
            "column `amount` of table `orders` was read as text because data/orders.csv:4 \
             holds `not-a-number`, where the values before it are floats"
        ),
        "{err}"
    );
}

#[test]
fn declared_types_read_a_column_that_inference_cannot_type() {
    // Every `amount` is empty: inference cannot tell its type. Declared, the column is a
    // double of NULLs, and the average of no values is NULL (an empty field).
    let empty = "order_id,ordered_at,amount,status\n1,2024-01-05T00:00:00Z,,paid\n2,2024-02-05T00:00:00Z,,paid\n";
    let avg = ("avg_amount.yaml", "source: orders\nformula: avg(amount)\n");
    let undeclared = Fixture::new(
        &[
            ("models/orders.yaml", "table: orders\ntime: ordered_at\n"),
            avg,
        ],
        &[("orders.csv", empty)],
    );
    let (code, err) = fails(&undeclared, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "column `amount` of table `orders` at data/orders.csv has no value in the rows \
             read to infer its type; declare it"
        ),
        "{err}"
    );
    let m = model("{amount: double}");
    let f = Fixture::new(&[(m.0, m.1.as_str()), avg], &[("orders.csv", empty)]);
    assert_eq!(
        f.rows(&[]),
        vec![
            vec!["period", "avg_amount"],
            vec!["2024-01-01", ""],
            vec!["2024-02-01", ""],
        ]
    );
}

#[test]
fn a_declared_column_the_data_lacks_points_at_its_declaration() {
    let m = model("{amount: double, discount: double}");
    let f = fixture(
        &m,
        &[],
        &[("orders.csv", &ORDERS.replace("not-a-number", "3"))],
    );
    let (code, err) = fails(&f, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("model `orders` declares column `discount`, which table `orders` at data/orders.csv does not have"),
        "{err}"
    );
    // Line 3, after the 36 characters of `columns: {amount: double, discount: `.
    assert!(err.contains("--> metrics/models/orders.yaml:3:37"), "{err}");
}

#[test]
fn a_misspelt_type_is_refused_with_the_valid_ones() {
    let m = model("{amount: dubble}");
    let f = fixture(&m, &[], &[("orders.csv", ORDERS)]);
    let (code, err) = fails(&f, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`dubble` is not a valid column type"), "{err}");
    assert!(err.contains("double"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Parquet lakes

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Microseconds of a UTC date at midnight.
fn micros(date: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn strings(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

/// 2024's file: `order_id` Int32, zone-less nanosecond timestamps, no `channel`.
fn old_file(dir: &Path) {
    write_parquet(
        &dir.join("data/orders/year=2024/part-0.parquet"),
        vec![
            ("order_id", Arc::new(Int32Array::from(vec![1, 2]))),
            (
                "ordered_at",
                Arc::new(TimestampNanosecondArray::from(vec![
                    micros("2024-12-01") * 1000,
                    micros("2024-12-31") * 1000,
                ])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![10.0, 2.5]))),
            ("status", strings(&["paid", "paid"])),
        ],
    );
}

/// 2025's file: `order_id` Int64, microseconds in UTC, and a new column `channel`.
fn new_file(dir: &Path, amount: ArrayRef) {
    write_parquet(
        &dir.join("data/orders/year=2025/part-0.parquet"),
        vec![
            ("order_id", Arc::new(Int64Array::from(vec![3, 4, 5]))),
            (
                "ordered_at",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        micros("2025-01-02"),
                        micros("2025-01-20"),
                        micros("2025-02-01"),
                    ])
                    .with_timezone("UTC"),
                ),
            ),
            ("amount", amount),
            ("status", strings(&["paid", "refunded", "paid"])),
            ("channel", strings(&["web", "web", "shop"])),
        ],
    );
}

const DRIFT_METRICS: &[(&str, &str)] = &[
    ("models/orders.yaml", "table: orders\ntime: ordered_at\n"),
    REVENUE,
    (
        "web_orders.yaml",
        "source: orders\nfilter: channel = 'web'\nformula: count(*)\n",
    ),
    (
        "orders_count.yaml",
        "source: orders\nformula: count(order_id)\n",
    ),
];

#[test]
fn a_hive_lake_whose_later_files_add_a_column_and_widen_types_is_merged() {
    let f = Fixture::new(DRIFT_METRICS, &[]);
    old_file(f.dir.path());
    new_file(
        f.dir.path(),
        Arc::new(Float64Array::from(vec![100.0, 7.0, 1.25])),
    );
    // December 2024: orders 1 and 2, paid 10 + 2.5, no channel (NULL in the old file).
    // January 2025: orders 3 (paid 100, web) and 4 (refunded, web).
    // February 2025: order 5 (paid 1.25, shop).
    assert_eq!(
        f.rows(&["--from", "2024-12-01", "--to", "2025-03-01"]),
        vec![
            vec!["period", "orders_count", "revenue", "web_orders"],
            vec!["2024-12-01", "2", "12.5", "0"],
            vec!["2025-01-01", "2", "100.0", "2"],
            vec!["2025-02-01", "1", "1.25", "0"],
        ]
    );
}

#[test]
fn a_column_that_changes_meaning_between_files_is_refused_naming_both() {
    let f = Fixture::new(DRIFT_METRICS, &[]);
    old_file(f.dir.path());
    new_file(f.dir.path(), strings(&["100", "7", "1.25"]));
    let (code, err) = fails(&f, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("column `amount` of table `orders` changes type: Float64 in")
            && err.contains("data/orders/year=2024/part-0.parquet")
            && err.contains("data/orders/year=2025/part-0.parquet"),
        "{err}"
    );
}

#[test]
fn parquet_is_checked_against_the_declared_types() {
    let f = Fixture::new(
        &[
            (
                "models/orders.yaml",
                "table: orders\ntime: ordered_at\ncolumns: {order_id: integer, amount: integer}\n",
            ),
            REVENUE,
        ],
        &[],
    );
    old_file(f.dir.path());
    let (code, err) = fails(&f, &[]);
    assert_eq!(code, 1, "{err}");
    // Int32 widens to the declared integer; a float does not.
    assert!(
        err.contains(
            "model `orders` declares column `amount` integer, but table `orders` at \
             data/orders holds Float64"
        ),
        "{err}"
    );
    assert!(err.contains("--> metrics/models/orders.yaml:3:38"), "{err}");
}

#[test]
fn a_zero_row_parquet_file_is_merged_and_an_empty_file_is_refused() {
    // Without `web_orders`: no file of this lake has `channel`.
    let f = Fixture::new(&[DRIFT_METRICS[0], DRIFT_METRICS[1], DRIFT_METRICS[3]], &[]);
    old_file(f.dir.path());
    let none: Vec<i64> = vec![];
    write_parquet(
        &f.dir.path().join("data/orders/year=2023/part-0.parquet"),
        vec![
            ("order_id", Arc::new(Int64Array::from(none.clone()))),
            (
                "ordered_at",
                Arc::new(TimestampMicrosecondArray::from(none.clone()).with_timezone("UTC")),
            ),
            ("amount", Arc::new(Float64Array::from(Vec::<f64>::new()))),
            ("status", strings(&[])),
        ],
    );
    let rows = f.rows(&["--from", "2024-12-01", "--to", "2025-01-01"]);
    assert_eq!(rows[1], vec!["2024-12-01", "2", "12.5"]);
    std::fs::write(
        f.dir.path().join("data/orders/year=2023/part-1.parquet"),
        b"",
    )
    .unwrap();
    let (code, err) = fails(&f, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains(
            "file data/orders/year=2023/part-1.parquet of table `orders` is empty (0 bytes)"
        ),
        "{err}"
    );
}

#[test]
fn a_folder_mixing_csv_and_parquet_is_refused_naming_one_file_of_each() {
    let f = Fixture::new(DRIFT_METRICS, &[]);
    old_file(f.dir.path());
    std::fs::write(
        f.dir.path().join("data/orders/year=2024/extra.csv"),
        "order_id,ordered_at,amount,status\n9,2024-12-02T00:00:00Z,1,paid\n",
    )
    .unwrap();
    let (code, err) = fails(&f, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("mixes CSV and Parquet files (data/orders/year=2024/extra.csv and data/orders/year=2024/part-0.parquet)"),
        "{err}"
    );
}

#[test]
fn an_unreadable_file_is_named() {
    let f = Fixture::new(DRIFT_METRICS, &[]);
    old_file(f.dir.path());
    let file = f.dir.path().join("data/orders/year=2024/part-0.parquet");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads any file: run kpi as `nobody` then, with the folders open to it.
    // A file this process made is owned by its effective user.
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(f.dir.path()).unwrap().uid() == 0
    };
    if root {
        for d in [f.dir.path().to_path_buf()]
            .into_iter()
            .chain(walk_dirs(f.dir.path()))
        {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
    }
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_kpi"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_kpi"))
    };
    let out = cmd
        .args([
            "run",
            "--metrics",
            "metrics",
            "--data",
            "data",
            "--out",
            "out.csv",
        ])
        .current_dir(f.dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot read file data/orders/year=2024/part-0.parquet: Permission denied"),
        "{err}"
    );
    assert!(!f.dir.path().join("out.csv").exists());
}

fn walk_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.push(e.path());
            out.extend(walk_dirs(&e.path()));
        }
    }
    out
}

#[test]
fn a_symlink_loop_in_a_table_folder_is_an_error() {
    let f = Fixture::new(DRIFT_METRICS, &[]);
    old_file(f.dir.path());
    std::os::unix::fs::symlink("..", f.dir.path().join("data/orders/year=2024/loop")).unwrap();
    let (code, err) = fails(&f, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("(a symlink loop)"), "{err}");
}

#[test]
fn a_parquet_footer_that_panics_the_reader_is_an_error_naming_the_file() {
    // Found by `fuzz/`'s `source` target: parquet 59's footer decoder subtracts past zero
    // on this file (its first byte picked Parquet for the fuzzer).
    let input = std::fs::read(crate::repo(
        "tests/fuzz_regressions/source/parquet_footer_length_underflow",
    ))
    .unwrap();
    let f = Fixture::new(
        &[
            ("models/orders.yaml", "table: orders\ntime: ordered_at\n"),
            REVENUE,
        ],
        &[],
    );
    std::fs::write(f.dir.path().join("data/orders.parquet"), &input[1..]).unwrap();
    let (code, err) = fails(&f, &[]);
    assert_ne!(code, 0);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("cannot read Parquet file data/orders.parquet: "),
        "{err}"
    );
}

#[test]
fn a_looked_up_table_far_smaller_than_its_source_is_held_and_the_source_streamed() {
    // Parquet gives row counts, and 4 deals against 40 leads is small enough for the
    // lookup operator to hold the deals and stream the leads past them.
    let f = Fixture::new(
        &[(
            "won.yaml",
            "source: leads\ntime: created_at\nfilter: lead_id <= 20\nlookups:\n  won:\n    from: deals\n    on: deals.lead_id = leads.lead_id and deals.status = 'won' and deals.closed_at >= leads.created_at\n    value: count(*)\n  best:\n    from: deals\n    on: leads.lead_id = deals.lead_id\n    value: max(amount)\nformula: sum(won) * 100 + count(*) filter (where won > 0) + coalesce(sum(best), 0) / 1000\n",
        )],
        &[],
    );
    let hour = 3_600_000_000i64;
    let at = |v: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
    };
    write_parquet(
        &f.dir.path().join("data/leads/part-0.parquet"),
        vec![
            ("lead_id", Arc::new(Int64Array::from_iter_values(1..=40))),
            (
                "created_at",
                at((0..40).map(|i| micros("2024-01-01") + i * hour).collect()),
            ),
        ],
    );
    write_parquet(
        &f.dir.path().join("data/deals/part-0.parquet"),
        vec![
            ("lead_id", Arc::new(Int64Array::from(vec![1, 1, 7, 30]))),
            ("status", strings(&["won", "won", "lost", "won"])),
            (
                "closed_at",
                at(vec![
                    micros("2024-01-05"),
                    micros("2024-01-10"),
                    micros("2024-01-03"),
                    micros("2024-01-04"),
                ]),
            ),
            (
                "amount",
                Arc::new(Float64Array::from(vec![500.0, 2500.0, 1000.0, 9000.0])),
            ),
        ],
    );
    let range = ["--from", "2024-01-01", "--to", "2024-02-01"];
    // Leads 1..20 are read (lead 30 and its deal are filtered out with it). won: lead 1
    // has two won deals after its creation, lead 7 one lost: sum 2, one lead with a win.
    // best: lead 1's largest deal 2500, lead 7's 1000: 3500 / 1000 = 3.5.
    // 2 * 100 + 1 + 3.5 = 204.5.
    for extra in [&[][..], &["--threads", "1"], &["--threads", "3"]] {
        let rows = f.rows(&[&range[..], extra].concat());
        assert_eq!(rows[1], ["2024-01-01", "204.5"], "{extra:?}");
    }
    let (code, out, err) = f.kpi("explain", &[&["--physical"][..], &range].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("held=lookups"), "{out}");
    // won, a count with one comparison beyond its key, is counted by rank.
    assert!(out.contains("counted by rank=[won]"), "{out}");
}
