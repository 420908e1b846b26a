//! `--partition-by period`: results as a hive-style lake, one file per period, each
//! replaced atomically; recomputing some periods leaves the others' files untouched, and a
//! failed run changes nothing. Expected values are worked out by hand from the rows below.

use std::path::Path;

use crate::run::{Fixture, csv_rows, kpi_in};

const METRICS: &[(&str, &str)] = &[
    ("models/orders.yaml", "table: orders\ntime: ordered_at\n"),
    (
        "revenue.yaml",
        "source: orders\nfilter: status = 'paid'\nformula: sum(amount)\n",
    ),
    ("orders_count.yaml", "source: orders\nformula: count(*)\n"),
];

// January: 10 paid + 5 refunded (revenue 10, 2 orders); February: 7.5 paid (7.5, 1);
// March: 2 paid (2, 1).
const ORDERS: &str = "\
order_id,ordered_at,amount,status
1,2024-01-05T10:00:00Z,10,paid
2,2024-01-20T10:00:00Z,5,refunded
3,2024-02-10T10:00:00Z,7.5,paid
4,2024-03-01T00:00:00Z,2,paid
";

fn run(dir: &Path, format: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "run",
        "revenue",
        "orders_count",
        "--metrics",
        "metrics",
        "--data",
        "data",
        "--format",
        format,
        "--partition-by",
        "period",
        "--out",
        "lake",
    ];
    args.extend_from_slice(extra);
    kpi_in(dir, &args)
}

const Q1: &[&str] = &["--from", "2024-01-01", "--to", "2024-04-01"];

/// The partition folders under `lake`, sorted, and every file in them.
fn listing(lake: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(lake).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            v.push(format!(
                "{}/{}",
                d.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    v.sort();
    v
}

/// (revenue, orders_count) of a CSV partition file with its header, the revenue rounded
/// to 1e-9: float sums convert back from their exact decimals to within a unit in the last
/// place (`2 + 3` reads `5.000000000000001`), which is not what these tests are about.
fn csv_values(path: &Path) -> (f64, i64) {
    let rows = csv_rows(&std::fs::read_to_string(path).unwrap());
    assert_eq!(rows[0], ["revenue", "orders_count"], "{path:?}");
    assert_eq!(rows.len(), 2, "{path:?}: {rows:?}");
    let revenue: f64 = rows[1][0].parse().unwrap();
    ((revenue * 1e9).round() / 1e9, rows[1][1].parse().unwrap())
}

#[test]
fn one_csv_file_per_period_without_the_period_column() {
    let f = Fixture::new(METRICS, &[("orders.csv", ORDERS)]);
    let (code, _, err) = run(f.dir.path(), "csv", Q1);
    assert_eq!(code, 0, "{err}");
    let lake = f.dir.path().join("lake");
    assert_eq!(
        listing(&lake),
        [
            "period=2024-01-01/part-0.csv",
            "period=2024-02-01/part-0.csv",
            "period=2024-03-01/part-0.csv"
        ]
    );
    assert_eq!(
        csv_values(&lake.join("period=2024-01-01/part-0.csv")),
        (10.0, 2)
    );
    assert_eq!(
        csv_values(&lake.join("period=2024-02-01/part-0.csv")),
        (7.5, 1)
    );
    assert_eq!(
        csv_values(&lake.join("period=2024-03-01/part-0.csv")),
        (2.0, 1)
    );
}

#[test]
fn parquet_partitions_read_back_with_their_values() {
    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = Fixture::new(METRICS, &[("orders.csv", ORDERS)]);
    let (code, _, err) = run(f.dir.path(), "parquet", Q1);
    assert_eq!(code, 0, "{err}");
    let read = |period: &str| -> RecordBatch {
        let file = std::fs::File::open(
            f.dir
                .path()
                .join(format!("lake/period={period}/part-0.parquet")),
        )
        .unwrap();
        let mut reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batch = reader.next().unwrap().unwrap();
        assert!(reader.next().is_none());
        batch
    };
    for (period, revenue, count) in [
        ("2024-01-01", 10.0, 2),
        ("2024-02-01", 7.5, 1),
        ("2024-03-01", 2.0, 1),
    ] {
        let b = read(period);
        let names: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|x| x.name().clone())
            .collect();
        assert_eq!(names, ["revenue", "orders_count"], "{period}");
        assert_eq!(b.num_rows(), 1, "{period}");
        assert_eq!(b.column(0).as_primitive::<Float64Type>().value(0), revenue);
        assert_eq!(b.column(1).as_primitive::<Int64Type>().value(0), count);
    }
}

#[test]
fn recomputing_the_last_period_leaves_the_others_untouched() {
    let f = Fixture::new(METRICS, &[("orders.csv", ORDERS)]);
    assert_eq!(run(f.dir.path(), "csv", Q1).0, 0);
    let lake = f.dir.path().join("lake");
    let jan = lake.join("period=2024-01-01/part-0.csv");
    let mar = lake.join("period=2024-03-01/part-0.csv");
    let jan_before = std::fs::metadata(&jan).unwrap();
    // A late order for March arrives; January's data changes too, but only March is
    // recomputed, so January's file must keep its old value and its very inode.
    let more = format!("{ORDERS}5,2024-03-15T00:00:00Z,3,paid\n6,2024-01-06T00:00:00Z,100,paid\n");
    std::fs::write(f.dir.path().join("data/orders.csv"), more).unwrap();
    let (code, _, err) = run(
        f.dir.path(),
        "csv",
        &["--from", "2024-03-01", "--to", "2024-04-01"],
    );
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::MetadataExt;
    let jan_after = std::fs::metadata(&jan).unwrap();
    assert_eq!(jan_after.ino(), jan_before.ino());
    assert_eq!(jan_after.mtime_nsec(), jan_before.mtime_nsec());
    assert_eq!(csv_values(&jan), (10.0, 2));
    assert_eq!(csv_values(&mar), (5.0, 2));
    // Appending April adds a folder and keeps the three there.
    let (code, _, err) = run(
        f.dir.path(),
        "csv",
        &["--from", "2024-04-01", "--to", "2024-05-01"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(listing(&lake).len(), 4);
    assert_eq!(
        csv_values(&lake.join("period=2024-04-01/part-0.csv")),
        (0.0, 0)
    );
}

#[test]
fn a_run_that_fails_while_writing_changes_no_file() {
    let f = Fixture::new(METRICS, &[("orders.csv", ORDERS)]);
    assert_eq!(run(f.dir.path(), "csv", Q1).0, 0);
    let lake = f.dir.path().join("lake");
    let jan = lake.join("period=2024-01-01/part-0.csv");
    let jan_before = std::fs::read(&jan).unwrap();
    // February's folder is replaced by a file: writing it fails after January's file is
    // already staged, and January must not be replaced by the new (different) value.
    std::fs::remove_dir_all(lake.join("period=2024-02-01")).unwrap();
    std::fs::write(lake.join("period=2024-02-01"), "in the way").unwrap();
    std::fs::write(
        f.dir.path().join("data/orders.csv"),
        format!("{ORDERS}7,2024-01-07T00:00:00Z,1,paid\n"),
    )
    .unwrap();
    let (code, _, err) = run(f.dir.path(), "csv", Q1);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("period=2024-02-01/part-0.csv"), "{err}");
    assert_eq!(std::fs::read(&jan).unwrap(), jan_before);
    for d in ["period=2024-01-01", "period=2024-03-01"] {
        let names: Vec<_> = std::fs::read_dir(lake.join(d))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["part-0.csv"], "{d}: a temporary file was left");
    }
}

#[test]
fn partitioning_needs_a_folder_and_a_file_format() {
    let f = Fixture::new(METRICS, &[("orders.csv", ORDERS)]);
    let (code, _, err) = run(f.dir.path(), "table", Q1);
    assert_eq!(code, 2);
    assert!(err.contains("--partition-by needs a file format"), "{err}");
    assert!(!f.dir.path().join("lake").exists());
    std::fs::write(f.dir.path().join("lake"), "a file").unwrap();
    let (code, _, err) = run(f.dir.path(), "csv", Q1);
    assert_eq!(code, 2);
    assert!(err.contains("lake is a file"), "{err}");
    let (code, _, err) = f.run(&["--partition-by", "period"]);
    assert_eq!(code, 2);
    assert!(err.contains("--out"), "{err}");
}
