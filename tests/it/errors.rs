//! Run-time errors: each names the file, metric or value at fault, exits non-zero and
//! leaves no output file behind.

use crate::run::Fixture;

const METRICS: &[(&str, &str)] = &[
    ("models/orders.yaml", "table: orders\ntime: ordered_at\n"),
    (
        "revenue.yaml",
        "source: orders\nfilter: status = 'paid'\nformula: sum(amount)\n",
    ),
    (
        "paid.yaml",
        "source: orders\nfilter: status = 'paid'\nformula: count(*)\n",
    ),
];
const ORDERS: &str = "order_id,ordered_at,amount,status\n1,2024-01-05T00:00:00Z,10.5,paid\n2,2024-02-05T00:00:00Z,20.25,paid\n";

/// Runs with `--out out.csv`; asserts failure and no file; returns stderr with the
/// temporary directory's path replaced.
pub fn fails(f: &Fixture, args: &[&str]) -> (i32, String) {
    let mut all = vec!["--out", "out.csv"];
    all.extend_from_slice(args);
    let (code, _, err) = f.run(&all);
    assert_ne!(code, 0, "{args:?} should fail:\n{err}");
    assert!(
        !f.dir.path().join("out.csv").exists(),
        "{args:?} left an output file"
    );
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".kpi-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
    (
        code,
        err.replace(&f.dir.path().display().to_string(), "<tmp>"),
    )
}

#[test]
fn a_successful_run_writes_the_file() {
    let f = Fixture::new(METRICS, &[("orders.csv", ORDERS)]);
    let (code, _, err) = f.run(&["--out", "out.csv"]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(f.dir.path().join("out.csv")).unwrap();
    assert_eq!(
        text,
        "period,paid,revenue\n2024-01-01,1,10.5\n2024-02-01,1,20.25\n"
    );
}

#[test]
fn missing_data_root() {
    let f = Fixture::new(METRICS, &[("orders.csv", ORDERS)]);
    let (code, _, err) = crate::run::kpi_in(
        f.dir.path(),
        &[
            "run",
            "--metrics",
            "metrics",
            "--data",
            "nowhere",
            "--out",
            "out.csv",
        ],
    );
    assert_eq!(code, 2);
    assert!(!f.dir.path().join("out.csv").exists());
    insta::assert_snapshot!(err);
}

#[test]
fn missing_table() {
    let f = Fixture::new(METRICS, &[("order.csv", ORDERS)]);
    insta::assert_snapshot!(fails(&f, &[]).1);
}

#[test]
fn corrupt_parquet_file() {
    let f = Fixture::new(METRICS, &[]);
    std::fs::create_dir_all(f.dir.path().join("data/orders")).unwrap();
    std::fs::write(
        f.dir.path().join("data/orders/part-0.parquet"),
        b"PAR1 this is not parquet",
    )
    .unwrap();
    let err = fails(&f, &[]).1;
    assert!(err.contains("data/orders/part-0.parquet"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn csv_row_that_does_not_parse() {
    let bad = format!("{ORDERS}3,2024-02-30T00:00:00Z,1.0,paid\n");
    let f = Fixture::new(METRICS, &[("orders.csv", &bad)]);
    let err = fails(&f, &["--from", "2024-01-01", "--to", "2024-03-01"]).1;
    assert!(
        err.contains("2024-02-30") && err.contains("orders.csv"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn csv_row_with_missing_fields() {
    let bad = format!("{ORDERS}3,2024-02-10T00:00:00Z\n");
    let f = Fixture::new(METRICS, &[("orders.csv", &bad)]);
    let err = fails(&f, &[]).1;
    assert!(
        err.contains("orders.csv") && err.contains("line 4"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn column_missing_from_the_data() {
    let f = Fixture::new(METRICS, &[("orders.csv", &ORDERS.replace("amount", "amt"))]);
    let (code, err) = fails(&f, &[]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(err);
}

#[test]
fn bad_dates_zones_dimensions_and_names() {
    let f = Fixture::new(METRICS, &[("orders.csv", ORDERS)]);
    let mut out = String::new();
    for args in [
        &["--from", "2024-13-01"][..],
        &["--from", "2024-03-01", "--to", "2024-01-01"],
        &["--tz", "Europe/Madird"],
        &["--by", "segment"],
        &["--where", "amount > 1"],
        &["revenu"],
        &["--grain", "fortnight"],
    ] {
        let (code, err) = fails(&f, args);
        out.push_str(&format!(
            "$ kpi run {}\nexit {code}\n{err}\n",
            args.join(" ")
        ));
    }
    insta::assert_snapshot!(out);
}
