//! The engine's guarantees: the same bytes whatever the parallelism and layout, windows
//! merged from partials agreeing with windows read row by row, bounded memory that fails
//! cleanly, and scans shared between metrics.

use crate::run::{Fixture, kpi_in};

fn generate(dir: &std::path::Path, name: &str, layout: &str) {
    let (code, _, err) = kpi_in(
        dir,
        &[
            "gen", name, "--scale", "2", "--seed", "11", "--format", layout,
        ],
    );
    assert_eq!(code, 0, "{err}");
}

fn run_all(dir: &std::path::Path, data: &str, extra: &[&str]) -> String {
    let metrics = crate::repo("metrics");
    let mut args = vec![
        "run",
        "--metrics",
        metrics.to_str().unwrap(),
        "--data",
        data,
        "--from",
        "2024-01-01",
        "--to",
        "2026-01-01",
    ];
    if !extra.contains(&"--format") {
        args.extend(["--format", "csv"]);
    }
    args.extend_from_slice(extra);
    let (code, out, err) = kpi_in(dir, &args);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn same_bytes_at_1_2_and_8_threads_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    for layout in ["csv", "parquet", "hive"] {
        generate(dir.path(), layout, layout);
    }
    let reference = run_all(dir.path(), "csv", &["--threads", "1"]);
    // Every KPI, every month: a header and 24 rows of 39 values.
    assert_eq!(reference.lines().count(), 25);
    assert_eq!(reference.lines().next().unwrap().split(',').count(), 40);
    for layout in ["csv", "parquet", "hive"] {
        for threads in ["1", "2", "8"] {
            let out = run_all(dir.path(), layout, &["--threads", threads]);
            assert!(
                out == reference,
                "{layout} at {threads} thread(s) differs from csv at 1 thread"
            );
        }
    }
    // The other file formats: JSON and Parquet files byte for byte, at 1 and 8 threads.
    for format in ["json", "parquet"] {
        let file = |layout: &str, threads: &str| {
            let name = format!("out-{layout}-{threads}.{format}");
            run_all(
                dir.path(),
                layout,
                &["--threads", threads, "--format", format, "--out", &name],
            );
            std::fs::read(dir.path().join(&name)).unwrap()
        };
        let first = file("csv", "1");
        assert!(
            first.len() > 1000,
            "{format} output is {} bytes",
            first.len()
        );
        for layout in ["csv", "parquet", "hive"] {
            for threads in ["1", "8"] {
                assert!(
                    file(layout, threads) == first,
                    "{format} from {layout} at {threads} thread(s) differs from csv at 1 thread"
                );
            }
        }
    }
}

/// Two metrics over the same 60-day window, one merged from per-interval partials (a
/// sum), one that cannot be (a median), with values worked out by hand.
#[test]
fn a_window_merged_from_partials_agrees_with_one_read_row_by_row() {
    let f = Fixture::new(
        &[
            ("models/orders.yaml", "table: orders\ntime: ordered_at\n"),
            (
                "amount_60d.yaml",
                "source: orders\nwindow: 60 days\nformula: sum(amount)\n",
            ),
            (
                "median_60d.yaml",
                "source: orders\nwindow: 60 days\nformula: median(amount)\n",
            ),
            (
                "buyers_60d.yaml",
                "source: orders\nwindow: 60 days\nformula: count(distinct customer_id)\n",
            ),
        ],
        &[(
            "orders.csv",
            "order_id,customer_id,ordered_at,amount\n1,1,2024-01-01T00:00:00Z,10.5\n2,2,2024-01-31T23:59:59Z,1.25\n3,1,2024-02-01T00:00:00Z,4\n4,3,2024-03-02T00:00:00Z,100\n",
        )],
    );
    // Windows of 60 days up to each month's end: Jan [2 Dec, 1 Feb) holds orders 1, 2;
    // Feb [1 Jan, 1 Mar) holds 1, 2, 3 (1 Jan 00:00 is its first instant); Mar
    // [1 Feb, 1 Apr) holds 3, 4.
    let rows = f.rows(&[
        "amount_60d",
        "median_60d",
        "buyers_60d",
        "--from",
        "2024-01-01",
        "--to",
        "2024-04-01",
    ]);
    let col = |i: usize| rows[1..].iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    assert_eq!(col(1), ["11.75", "15.75", "104.0"]);
    // Medians: (10.5 + 1.25) / 2; the middle of 1.25, 4, 10.5; (4 + 100) / 2.
    assert_eq!(col(2), ["5.875", "4.0", "52.0"]);
    // Customers 1, 2; 1, 2 (1 twice); 1, 3.
    assert_eq!(col(3), ["2", "2", "2"]);
    let (code, out, err) = kpi_in(
        f.dir.path(),
        &[
            "explain",
            "amount_60d",
            "median_60d",
            "--metrics",
            "metrics",
            "--data",
            "data",
            "--from",
            "2024-01-01",
            "--to",
            "2024-04-01",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("scan of amount_60d: per-interval partials merged")
            && out.contains("scan of median_60d: rows joined on their interval to every period"),
        "{out}"
    );
}

#[test]
fn metrics_over_the_same_rows_share_one_scan() {
    let metrics = crate::repo("metrics");
    let (code, out, err) = kpi_in(
        &crate::repo(""),
        &[
            "explain",
            "revenue",
            "paid_orders",
            "attributed_revenue",
            "tickets_opened",
            "--metrics",
            metrics.to_str().unwrap(),
            "--data",
            "sample_data",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("plans: 2 for 4 metric(s)"), "{out}");
    assert!(
        out.contains("  orders: read by 1 plan(s), for 3 metric(s)"),
        "{out}"
    );
    assert!(
        out.contains("3 metrics in one aggregate over one scan"),
        "{out}"
    );
}

#[test]
fn a_memory_limit_spills_or_fails_naming_the_metric_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "data", "parquet");
    let unbounded = run_all(dir.path(), "data", &[]);
    let bounded = run_all(dir.path(), "data", &["--memory-limit", "32MiB"]);
    assert!(
        bounded == unbounded,
        "a run within its limit gives the same bytes"
    );
    let out = dir.path().join("out.csv");
    let metrics = crate::repo("metrics");
    let (code, _, err) = kpi_in(
        dir.path(),
        &[
            "run",
            "revenue",
            "--metrics",
            metrics.to_str().unwrap(),
            "--data",
            "data",
            "--memory-limit",
            "1KB",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("computing `revenue` needs more memory than the limit allows")
            && err.contains("pool_size: 1000.0 B"),
        "{err}"
    );
    assert!(!out.exists(), "no output file after a failed run");
    let (code, _, err) = kpi_in(dir.path(), &["run", "--memory-limit", "4 parsecs"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown size unit `parsecs`"), "{err}");
}
