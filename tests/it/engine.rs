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

/// Distinct counts over 7-day windows by day, one of them under a FILTER, with a NULL
/// value and a row before the range; values worked out by hand. Integers are counted
/// from each day's set of values, united over the window; text from each value's set
/// of days (79 days of window bounds: two 64-bit words). `kpi sql` keeps to portable
/// SQL.
#[test]
fn distinct_counts_over_windows_come_from_sets_per_interval_or_intervals_per_value() {
    let f = Fixture::new(
        &[
            (
                "models/events.yaml",
                "table: events\ntime: at\ndimensions: [kind]\n",
            ),
            (
                "active_7d.yaml",
                "source: events\nwindow: 7 days\nformula: count(distinct user_id)\n",
            ),
            (
                "mix_7d.yaml",
                "source: events\nwindow: 7 days\nformula: 1000 * count(distinct user_id) filter (where kind = 'buy') + count(distinct user_id)\n",
            ),
            (
                "kinds_7d.yaml",
                "source: events\nwindow: 7 days\nformula: count(distinct kind)\n",
            ),
        ],
        &[(
            "events.csv",
            "user_id,at,kind\n\
             1,2024-01-01T10:00:00Z,view\n\
             2,2024-01-03T00:00:00Z,buy\n\
             1,2024-01-05T00:00:00Z,buy\n\
             3,2024-03-05T12:00:00Z,buy\n\
             1,2024-03-10T00:00:00Z,view\n\
             ,2024-03-06T00:00:00Z,buy\n\
             3,2023-12-28T00:00:00Z,view\n",
        )],
    );
    let args = [
        "active_7d",
        "mix_7d",
        "--grain",
        "day",
        "--from",
        "2024-01-01",
        "--to",
        "2024-03-15",
    ];
    let rows = f.rows(&args);
    let day = |d: &str| {
        let r = rows
            .iter()
            .find(|r| r[0] == d)
            .unwrap_or_else(|| panic!("{d}"));
        (r[1].as_str(), r[2].as_str())
    };
    // Day D's window is days D-6 to D. Jan 1: users 3 (28 Dec) and 1; Jan 3: 3, 1 and
    // buyer 2; Jan 5: 1 and 2, both buyers; Jan 10-11: 1, a buyer on Jan 5; Mar 6: 3
    // (the NULL user's purchase counts nowhere); Mar 10-11: 3, a buyer, and 1; Mar 12: 1.
    let expected = [
        ("2024-01-01", ("2", "2")),
        ("2024-01-03", ("3", "1003")),
        ("2024-01-04", ("2", "1002")),
        ("2024-01-05", ("2", "2002")),
        ("2024-01-09", ("2", "2002")),
        ("2024-01-10", ("1", "1001")),
        ("2024-01-11", ("1", "1001")),
        ("2024-01-12", ("0", "0")),
        ("2024-03-05", ("1", "1001")),
        ("2024-03-06", ("1", "1001")),
        ("2024-03-10", ("2", "1002")),
        ("2024-03-11", ("2", "1002")),
        ("2024-03-12", ("1", "1")),
        ("2024-03-14", ("1", "1")),
    ];
    for (d, want) in expected {
        assert_eq!(day(d), want, "{d}");
    }
    assert_eq!(rows.len(), 1 + 74);
    // By kind: Jan 5 saw viewer 1 and buyers 2, 1; Mar 11 buyer 3 and viewer 1; Mar 12
    // viewer 1.
    let by_kind = f.rows(&[&args[..1], &["--by", "kind"], &args[2..]].concat());
    let cell = |d: &str, k: &str| {
        by_kind
            .iter()
            .find(|r| r[0] == d && r[1] == k)
            .map(|r| r[2].clone())
    };
    for (d, k, want) in [
        ("2024-01-05", "buy", "2"),
        ("2024-01-05", "view", "1"),
        ("2024-03-11", "buy", "1"),
        ("2024-03-11", "view", "1"),
        ("2024-03-12", "view", "1"),
    ] {
        assert_eq!(cell(d, k).as_deref(), Some(want), "{d} {k}: {by_kind:?}");
    }
    // Kinds: Jan 1 views only (28 Dec, Jan 1); Jan 3-7 a view (Jan 1) and buys; Jan 8
    // and Jan 11 the buys of Jan 3 and 5; Mar 6 two buys (the NULL user's counts: its
    // kind is not NULL); Mar 10-12 buys and the view of Mar 10; Mar 13 that view.
    let kinds = f.rows(&[&["kinds_7d"], &args[2..]].concat());
    let kinds_on = |d: &str| {
        kinds
            .iter()
            .find(|r| r[0] == d)
            .map(|r| r[1].clone())
            .unwrap_or_else(|| panic!("{d}"))
    };
    for (d, want) in [
        ("2024-01-01", "1"),
        ("2024-01-03", "2"),
        ("2024-01-07", "2"),
        ("2024-01-08", "1"),
        ("2024-01-11", "1"),
        ("2024-01-12", "0"),
        ("2024-03-05", "1"),
        ("2024-03-06", "1"),
        ("2024-03-10", "2"),
        ("2024-03-12", "2"),
        ("2024-03-13", "1"),
    ] {
        assert_eq!(kinds_on(d), want, "{d}");
    }
    let all = [&["kinds_7d"], &args[..]].concat();
    let (code, out, err) = f.kpi("explain", &all);
    assert_eq!(code, 0, "{err}");
    let united = "each interval's set of distinct values, the sets of the intervals united";
    for (metric, shape) in [
        ("active_7d", united),
        ("mix_7d", united),
        ("kinds_7d", "each value's set of intervals met with the set"),
    ] {
        let line = format!("scan of {metric}: {shape} of the window (7 days)");
        assert!(out.contains(&line), "{metric}: {out}");
    }
    let (code, sql, err) = f.kpi("sql", &[&["--dialect", "postgres"], &all[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        !sql.contains("bit_or") && !sql.contains("distinct_") && sql.contains("count(DISTINCT"),
        "{sql}"
    );
}

/// Per-entity windows: three whose formulas ignore a customer without orders in the
/// period (merged for the period's buyers only; two over all history, one over 90 days,
/// whose bounds cut the months), and one that counts every customer seen so far (merged
/// over every period), with values worked out by hand; then a run whose periods are a
/// year apart.
#[test]
fn a_history_per_customer_is_merged_for_the_periods_buyers_only_when_the_formula_allows() {
    let entity = "source: orders\nfilter: status = 'paid'\nwindow: all\nentity: customer_id\n";
    let f = Fixture::new(
        &[
            ("models/orders.yaml", "table: orders\ntime: ordered_at\n"),
            (
                "won_back.yaml",
                &format!(
                    "{entity}entity_columns:\n  first: min(ordered_at) filter (where ordered_at >= $start)\n  last_before: max(ordered_at) filter (where ordered_at < $start)\nformula: count(*) filter (where days_between(last_before, first) > 180)\n"
                ),
            ),
            (
                "loyal_buyers.yaml",
                &format!(
                    "{entity}entity_columns:\n  during: count(*) filter (where ordered_at >= $start)\n  total: count(*)\nformula: count(*) filter (where during > 0 and total >= 3)\n"
                ),
            ),
            (
                "returning_90d.yaml",
                "source: orders\nfilter: status = 'paid'\nwindow: 90 days\nentity: customer_id\nentity_columns:\n  during: count(*) filter (where ordered_at >= $start)\n  before: count(*) filter (where ordered_at < $start)\nformula: count(*) filter (where during > 0 and before > 0)\n",
            ),
            (
                "buyers_so_far.yaml",
                &format!("{entity}entity_columns:\n  n: count(*)\nformula: count(*)\n"),
            ),
            (
                "quiet_buyers.yaml",
                &format!(
                    "{entity}entity_columns:\n  last_in: max(ordered_at) filter (where ordered_at >= $start)\nformula: count(*) filter (where last_in is null)\n"
                ),
            ),
        ],
        &[(
            "orders.csv",
            "order_id,customer_id,ordered_at,status\n\
             1,1,2023-01-10T00:00:00Z,paid\n\
             2,3,2023-02-01T00:00:00Z,refunded\n\
             3,2,2023-12-31T23:59:59Z,paid\n\
             4,2,2024-01-15T00:00:00Z,paid\n\
             5,1,2024-02-05T00:00:00Z,paid\n\
             6,1,2024-02-20T00:00:00Z,paid\n\
             7,3,2024-03-01T00:00:00Z,paid\n\
             8,1,2024-03-10T00:00:00Z,paid\n\
             9,4,2024-03-11T00:00:00Z,refunded\n",
        )],
    );
    let rows = f.rows(&[
        "won_back",
        "loyal_buyers",
        "buyers_so_far",
        "returning_90d",
        "--from",
        "2024-01-01",
        "--to",
        "2024-04-01",
    ]);
    let col = |i: usize| rows[1..].iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    // Jan: customer 2 buys 15 days after 31 Dec: no. Feb: customer 1 buys on 5 Feb, 391
    // days after 10 Jan 2023: won back. Mar: customer 1 again 19 days after 20 Feb: no;
    // customer 3's refund of 2023 is no purchase, so it has no order before: no.
    assert_eq!(col(1), ["0", "1", "0"]);
    // Buyers of the period with 3 paid orders up to its end: Jan customer 2 has 2: none;
    // Feb customer 1 has 3; Mar customer 1 has 4, customer 3 has 1.
    assert_eq!(col(2), ["0", "1", "1"]);
    // Customers with a paid order up to each end, buying in the period or not: 1 and 2;
    // 1 and 2; 1, 2 and 3 (4 only refunded).
    assert_eq!(col(3), ["2", "2", "3"]);
    // Buyers of the period who also bought in the 90 days up to its end but before it:
    // Jan [3 Nov, 1 Feb): customer 2 (31 Dec, 15 Jan). Feb [2 Dec, 1 Mar): customer 1's
    // orders before Feb are of 2023: none. Mar [2 Jan, 1 Apr): customer 1 (Feb, 10 Mar);
    // customer 3 had none before.
    assert_eq!(col(4), ["1", "0", "1"]);
    // Feb 2024 against Feb 2023, with the months between them not computed: in Feb 2023
    // nobody paid.
    let rows = f.rows(&[
        "won_back",
        "--from",
        "2024-02-01",
        "--to",
        "2024-03-01",
        "--compare",
        "previous_year",
    ]);
    assert_eq!(rows[1][..3], ["2024-02-01", "1", "0"]);
    // Customers with a paid order up to the period's end and none in it (merged over
    // every period: the formula counts those without rows), April without orders:
    // Jan customer 1; Feb customer 2; Mar customer 2; Apr customers 1, 2 and 3.
    let quiet = |extra: &[&str]| {
        let mut args = vec!["quiet_buyers", "--from", "2024-01-01", "--to", "2024-05-01"];
        args.extend_from_slice(extra);
        let rows = f.rows(&args);
        rows[1..].iter().map(|r| r[1].clone()).collect::<Vec<_>>()
    };
    assert_eq!(quiet(&[]), ["1", "1", "1", "3"]);
    // Under a memory limit the partials are read sorted by customer, in runs of whole
    // customers: the same values.
    assert_eq!(quiet(&["--memory-limit", "1GiB"]), ["1", "1", "1", "3"]);
    let (code, out, err) = kpi_in(
        f.dir.path(),
        &[
            "explain",
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
    let shape = |m: &str| {
        out.lines()
            .find(|l| l.contains(&format!("scan of {m}:")))
            .unwrap_or_else(|| panic!("no scan of {m} in {out}"))
            .to_string()
    };
    for m in ["won_back", "loyal_buyers", "returning_90d"] {
        assert!(
            shape(m).contains("merged along its timeline over the window")
                && shape(m).contains("of the periods it has rows in only"),
            "{out}"
        );
    }
    for m in ["buyers_so_far", "quiet_buyers"] {
        assert!(
            shape(m).contains("per-interval partials merged along each key's timeline"),
            "{out}"
        );
    }
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
    // Under a limit, distinct counts of integers are grouped by interval into sets (a
    // group-by spills, a hash set per period does not), and per-entity windows spill
    // their partials in buckets of entities past the operator's share; unbounded,
    // distinct counts are fused and the partials held by partition.
    let shapes = |extra: &[&str]| {
        let args = [
            &[
                "explain",
                "--physical",
                "orders_per_customer",
                "won_back_customers",
                "--metrics",
                metrics.to_str().unwrap(),
                "--data",
                "data",
            ][..],
            extra,
        ]
        .concat();
        let (code, out, err) = kpi_in(dir.path(), &args);
        assert_eq!(code, 0, "{err}");
        let shape = |m: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("── scan of {m}")))
                .unwrap_or_else(|| panic!("no scan of {m} in {out}"))
                .to_string()
        };
        let spills = out
            .lines()
            .any(|l| l.contains("TimelineExec:") && l.contains("spilled in buckets of whole keys"));
        (
            shape("orders_per_customer"),
            shape("won_back_customers"),
            spills,
        )
    };
    let (distinct, history, spills) = shapes(&["--memory-limit", "32MiB"]);
    assert!(
        distinct
            .contains("each interval's set of distinct values, the sets of the intervals united"),
        "{distinct}"
    );
    assert!(
        history.contains(
            "merged along its timeline over the window (all) of the periods it has rows in only"
        ),
        "{history}"
    );
    assert!(spills, "under a limit the timeline may spill its partials");
    let (distinct, history, spills) = shapes(&[]);
    assert!(distinct.contains("rows bucketed by month"), "{distinct}");
    assert!(
        history.contains(
            "merged along its timeline over the window (all) of the periods it has rows in only"
        ),
        "{history}"
    );
    assert!(!spills, "unbounded, the timeline holds its partials");
    let (code, _, err) = kpi_in(dir.path(), &["run", "--memory-limit", "4 parsecs"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown size unit `parsecs`"), "{err}");
}

#[test]
fn under_a_memory_limit_a_timeline_spills_its_partials_in_buckets_of_whole_keys() {
    // About 280K (customer, interval) partials in one partition, some 9 MB: more than
    // the operator's share of LIMIT, so it spills them into buckets of whole keys and
    // merges one bucket at a time.
    const LIMIT: &str = "16MiB";
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = kpi_in(
        dir.path(),
        &[
            "gen", "data", "--scale", "300", "--seed", "11", "--format", "parquet",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let metrics = [
        "won_back_customers",
        "customer_retention_rate",
        "--threads",
        "1",
    ];
    let unbounded = run_all(dir.path(), "data", &metrics);
    let bounded = run_all(
        dir.path(),
        "data",
        &[&metrics[..], &["--memory-limit", LIMIT]].concat(),
    );
    // The partials held whole, which the SQL reference checks, give the same bytes.
    assert!(bounded == unbounded, "{bounded}\n{unbounded}");
    let repo = crate::repo("metrics");
    let (code, out, err) = kpi_in(
        dir.path(),
        &[
            &["explain", "--analyze", "--metrics", repo.to_str().unwrap()][..],
            &[
                "--data",
                "data",
                "--from",
                "2024-01-01",
                "--to",
                "2026-01-01",
            ],
            &metrics,
            &["--memory-limit", LIMIT],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    let figure = |line: &str, name: &str| -> u64 {
        let at = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("{line}"));
        let digits: String = line[at + name.len() + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    let lines: Vec<&str> = out.lines().collect();
    let timelines: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("TimelineExec: output_rows"))
        .collect();
    assert_eq!(timelines.len(), 2, "{out}");
    for i in timelines {
        assert!(figure(lines[i], "runs") > 1, "{}", lines[i]);
        assert!(figure(lines[i], "spill_count") > 1, "{}", lines[i]);
        // Every partial was spilled, and read back once.
        assert_eq!(
            figure(lines[i], "spilled_rows"),
            figure(lines[i + 1], "output_rows"),
            "{}\n{}",
            lines[i],
            lines[i + 1]
        );
        // No sort by key below the operator.
        assert!(!lines[i + 1].contains("SortExec"), "{}", lines[i + 1]);
    }
}
