//! `kpi run` on small hand-made data sets; every expected value is worked out by hand in
//! the comment above it.

use std::path::Path;
use std::process::Command;

/// A temporary project: metric files and CSV tables.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(metrics: &[(&str, &str)], tables: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in metrics {
            let p = dir.path().join("metrics").join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        for (name, body) in tables {
            std::fs::write(dir.path().join("data").join(name), body).unwrap();
        }
        Fixture { dir }
    }

    /// Runs `kpi run` with `args`, as CSV; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.kpi("run", &[&["--format", "csv"], args].concat())
    }

    /// Runs `kpi SUBCOMMAND` on the fixture's metrics and data with `args`; returns
    /// (exit code, stdout, stderr).
    pub fn kpi(&self, subcommand: &str, args: &[&str]) -> (i32, String, String) {
        let fixture = [subcommand, "--metrics", "metrics", "--data", "data"];
        kpi_in(self.dir.path(), &[&fixture[..], args].concat())
    }

    /// Runs and parses the CSV output into rows of cells, failing on a non-zero exit.
    pub fn rows(&self, args: &[&str]) -> Vec<Vec<String>> {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "kpi run {args:?} failed:\n{err}");
        csv_rows(&out)
    }
}

pub fn kpi_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn csv_rows(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

const ORDERS: &str = "\
order_id,customer_id,ordered_at,amount,status
1,1,2024-01-01T00:00:00Z,10,paid
2,1,2024-01-31T23:59:59Z,20,paid
3,2,2024-02-01T00:00:00Z,40,paid
4,2,2024-02-29T12:00:00Z,80,paid
5,3,2024-02-29T23:59:59Z,5,refunded
6,3,2024-04-01T00:00:00Z,1,paid
";

const CUSTOMERS: &str = "\
customer_id,created_at,segment,region
1,2023-12-01T00:00:00Z,smb,BR-SP
2,2023-12-01T00:00:00Z,enterprise,
3,2023-12-01T00:00:00Z,smb,ES-MD
";

fn sales() -> Fixture {
    Fixture::new(
        &[
            (
                "models/orders.yaml",
                "table: orders\ntime: ordered_at\njoins:\n  customers: {on: customer_id, relationship: many_to_one}\ndimensions: [customers.segment, customers.region]\n",
            ),
            (
                "revenue.yaml",
                "source: orders\nfilter: status = 'paid'\nformula: sum(amount)\n",
            ),
            (
                "paid_orders.yaml",
                "source: orders\nfilter: status = 'paid'\nformula: count(*)\n",
            ),
            ("aov.yaml", "formula: revenue / paid_orders\n"),
            ("avg_amount.yaml", "source: orders\nformula: avg(amount)\n"),
            (
                "growth.yaml",
                "formula: 100 * (revenue - prev(revenue)) / prev(revenue)\n",
            ),
            (
                "ytd.yaml",
                "source: orders\nfilter: status = 'paid'\nwindow: year_to_date\nformula: sum(amount)\n",
            ),
        ],
        &[("orders.csv", ORDERS), ("customers.csv", CUSTOMERS)],
    )
}

#[test]
fn boundaries_empty_periods_and_derived_ratios() {
    let f = sales();
    let rows = f.rows(&[
        "revenue",
        "paid_orders",
        "aov",
        "avg_amount",
        "--from",
        "2024-01-01",
        "--to",
        "2024-05-01",
    ]);
    assert_eq!(
        rows[0],
        ["period", "revenue", "paid_orders", "aov", "avg_amount"]
    );
    // Jan: orders 1 (exactly at the start) and 2 (last second): 10 + 20 = 30, 2 orders,
    // 30 / 2 = 15; avg over all statuses (10, 20) = 15.
    assert_eq!(rows[1], ["2024-01-01", "30", "2", "15.0", "15.0"]);
    // Feb: order 3 (exactly at Jan's end) and 4 (leap day): 40 + 80 = 120; avg of 40, 80, 5.
    // (Integer amounts in CSV are read as integers, so sums print as integers.)
    assert_eq!(
        rows[2],
        ["2024-02-01", "120", "2", "60.0", "41.666666666666664"]
    );
    // Mar: no rows: sum 0, count 0, 0 / 0 and avg of nothing are NULL (empty CSV field).
    assert_eq!(rows[3], ["2024-03-01", "0", "0", "", ""]);
    // Apr: order 6 exactly at the start.
    assert_eq!(rows[4], ["2024-04-01", "1", "1", "1.0", "1.0"]);
    assert_eq!(rows.len(), 5);
    // `--to` is exclusive: 2024-04-01 ends the range before April.
    let rows = f.rows(&["revenue", "--from", "2024-01-01", "--to", "2024-04-01"]);
    assert_eq!(
        rows.iter()
            .skip(1)
            .map(|r| r[0].as_str())
            .collect::<Vec<_>>(),
        ["2024-01-01", "2024-02-01", "2024-03-01"]
    );
}

#[test]
fn a_leap_day_is_its_own_day() {
    let rows = sales().rows(&[
        "revenue",
        "--grain",
        "day",
        "--from",
        "2024-02-28",
        "--to",
        "2024-03-02",
    ]);
    // 28 Feb: nothing; 29 Feb: order 4 (80, paid; order 5 is refunded); 1 Mar: nothing.
    assert_eq!(
        rows[1..],
        [
            vec!["2024-02-28", "0"],
            vec!["2024-02-29", "80"],
            vec!["2024-03-01", "0"]
        ]
    );
}

#[test]
fn by_a_joined_dimension_fills_every_period_and_value() {
    let rows = sales().rows(&[
        "revenue",
        "paid_orders",
        "--by",
        "segment",
        "--from",
        "2024-01-01",
        "--to",
        "2024-04-01",
    ]);
    assert_eq!(rows[0], ["period", "segment", "revenue", "paid_orders"]);
    // Customer 1 is smb (orders 1, 2), customer 2 enterprise (3, 4), customer 3 smb (5
    // refunded; 6 in April, outside the range). Every period × every segment seen:
    assert_eq!(
        rows[1..],
        [
            vec!["2024-01-01", "enterprise", "0", "0"],
            vec!["2024-01-01", "smb", "30", "2"],
            vec!["2024-02-01", "enterprise", "120", "2"],
            vec!["2024-02-01", "smb", "0", "0"],
            vec!["2024-03-01", "enterprise", "0", "0"],
            vec!["2024-03-01", "smb", "0", "0"],
        ]
    );
    // A NULL dimension value is a group of its own; --where filters on dimensions.
    let rows = sales().rows(&[
        "revenue",
        "--by",
        "region",
        "--where",
        "segment = 'enterprise'",
        "--from",
        "2024-02-01",
        "--to",
        "2024-03-01",
    ]);
    assert_eq!(rows[1..], [vec!["2024-02-01", "", "120"]]);
}

#[test]
fn compare_and_prev_use_the_previous_period() {
    let rows = sales().rows(&[
        "revenue",
        "growth",
        "--compare",
        "previous_period",
        "--from",
        "2024-02-01",
        "--to",
        "2024-05-01",
    ]);
    assert_eq!(
        rows[0],
        [
            "period",
            "revenue",
            "revenue_previous",
            "revenue_change_pct",
            "growth",
            "growth_previous",
            "growth_change_pct"
        ]
    );
    // Feb 120 vs Jan 30: +300 %. Jan's growth vs Dec (0): NULL.
    assert_eq!(rows[1][..4], ["2024-02-01", "120", "30", "300.0"]);
    assert_eq!(rows[1][4], "300.0");
    assert_eq!(rows[1][5], "");
    // Mar 0 vs Feb 120: -100 %. Apr 1 vs Mar 0: NULL (division by zero).
    assert_eq!(rows[2][..5], ["2024-03-01", "0", "120", "-100.0", "-100.0"]);
    assert_eq!(rows[3][..5], ["2024-04-01", "1", "0", "", ""]);
}

#[test]
fn year_to_date_restarts_in_january() {
    let rows = sales().rows(&["ytd", "--from", "2024-01-01", "--to", "2024-05-01"]);
    // 30, 30 + 120, unchanged in March, + 1 in April.
    assert_eq!(
        rows[1..].iter().map(|r| r[1].as_str()).collect::<Vec<_>>(),
        ["30", "150", "150", "151"]
    );
}

#[test]
fn madrid_months_follow_local_midnight_across_dst() {
    let f = Fixture::new(
        &[("n.yaml", "source: events\ntime: at\nformula: count(*)\n")],
        &[(
            "events.csv",
            "id,at\n1,2025-03-31T22:30:00Z\n2,2025-02-28T23:30:00Z\n3,2025-03-31T21:59:59Z\n4,2025-03-31T22:00:00Z\n",
        )],
    );
    // Madrid is UTC+1 until 30 March 2025, then UTC+2. Event 1 is 1 April 00:30 local,
    // event 2 is 1 March 00:30 local, event 3 is 31 March 23:59:59 local, event 4 is
    // exactly local midnight of 1 April.
    let rows = f.rows(&[
        "n",
        "--tz",
        "Europe/Madrid",
        "--from",
        "2025-03-01",
        "--to",
        "2025-05-01",
    ]);
    assert_eq!(
        rows[1..],
        [vec!["2025-03-01", "2"], vec!["2025-04-01", "2"]]
    );
    // In UTC, event 2 is in February and the others in March.
    let rows = f.rows(&["n", "--from", "2025-02-01", "--to", "2025-04-01"]);
    assert_eq!(
        rows[1..],
        [vec!["2025-02-01", "1"], vec!["2025-03-01", "3"]]
    );
}

#[test]
fn state_at_an_instant_and_churn_at_boundaries() {
    let f = Fixture::new(
        &[
            (
                "models/subscriptions.yaml",
                "table: subscriptions\nactive: started_at < $at and (cancelled_at is null or cancelled_at >= $at)\n",
            ),
            (
                "active.yaml",
                "source: subscriptions\nat: end\nformula: count(*)\n",
            ),
            (
                "mrr.yaml",
                "source: subscriptions\nat: end\nformula: sum(mrr)\n",
            ),
            (
                "churn.yaml",
                "source: subscriptions\nat: start\nformula: 100 * count(*) filter (where cancelled_at >= $start and cancelled_at < $end) / count(*)\n",
            ),
        ],
        &[(
            "subscriptions.csv",
            "subscription_id,started_at,cancelled_at,mrr\n1,2024-01-10T00:00:00Z,2024-03-01T00:00:00Z,10\n2,2024-02-01T00:00:00Z,,20\n3,2024-01-31T00:00:00Z,2024-02-15T00:00:00Z,40\n",
        )],
    );
    let rows = f.rows(&[
        "active",
        "mrr",
        "churn",
        "--from",
        "2024-01-01",
        "--to",
        "2024-04-01",
    ]);
    // At 1 Feb: 1 (started 10 Jan) and 3 (started 31 Jan); 2 starts exactly at 1 Feb, so
    // not yet (started_at < t). At 1 Mar: 1 is cancelled exactly then (cancelled_at >= t
    // keeps it active), 2 active, 3 cancelled 15 Feb. At 1 Apr: only 2.
    // Churn of Jan: nothing active at 1 Jan: NULL. Feb: active at 1 Feb are 1 and 3; 3
    // cancelled in Feb: 50 %. Mar: active at 1 Mar are 1 and 2; 1 cancelled exactly at
    // 1 Mar, inside [start, end): 50 %.
    assert_eq!(
        rows[1..],
        [
            vec!["2024-01-01", "2", "50", ""],
            vec!["2024-02-01", "2", "30", "50.0"],
            vec!["2024-03-01", "1", "20", "50.0"],
        ]
    );
}

#[test]
fn windows_entities_and_lookups() {
    let f = Fixture::new(
        &[
            ("models/orders.yaml", "table: orders\ntime: ordered_at\n"),
            (
                "reached_90d.yaml",
                "source: orders\nwindow: 90 days\nformula: count(distinct customer_id)\n",
            ),
            (
                "cross_sell.yaml",
                "source: orders\nentity: customer_id\nentity_columns:\n  n: count(distinct category)\nformula: 100 * count(*) filter (where n >= 2) / count(*)\n",
            ),
            (
                "won_back.yaml",
                "source: orders\nwindow: all\nentity: customer_id\nentity_columns:\n  first: min(ordered_at) filter (where ordered_at >= $start)\n  last_before: max(ordered_at) filter (where ordered_at < $start)\nformula: count(*) filter (where days_between(last_before, first) > 180)\n",
            ),
            (
                "touches.yaml",
                "source: leads\ntime: created_at\nlookups:\n  first_touch:\n    from: activities\n    on: activities.lead_id = leads.lead_id and activities.occurred_at >= leads.created_at\n    value: min(occurred_at)\nformula: avg(hours_between(created_at, first_touch))\n",
            ),
        ],
        &[
            (
                "orders.csv",
                "order_id,customer_id,ordered_at,category\n1,1,2024-01-05T00:00:00Z,a\n2,1,2024-01-06T00:00:00Z,b\n3,2,2024-01-07T00:00:00Z,a\n4,1,2024-07-23T00:00:00Z,a\n5,2,2024-07-05T00:00:00Z,a\n",
            ),
            (
                "leads.csv",
                "lead_id,created_at\n1,2024-01-01T00:00:00Z\n2,2024-01-02T00:00:00Z\n3,2024-01-03T00:00:00Z\n",
            ),
            (
                "activities.csv",
                "activity_id,lead_id,occurred_at\n1,1,2024-01-01T01:30:00Z\n2,1,2024-01-01T00:30:00Z\n3,2,2024-01-01T00:00:00Z\n4,2,2024-01-03T00:00:00Z\n",
            ),
        ],
    );
    // reached_90d, window [end - 90 days, end): Jan [3 Nov, 1 Feb), Feb [2 Dec, 1 Mar) and
    // Mar [2 Jan, 1 Apr) all hold the orders of 5-7 Jan: customers 1, 2. Apr [1 Feb,
    // 1 May) to Jun hold none: 0. Jul [3 May, 1 Aug): customers 1, 2.
    let rows = f.rows(&[
        "reached_90d",
        "cross_sell",
        "won_back",
        "--from",
        "2024-01-01",
        "--to",
        "2024-08-01",
    ]);
    let col = |i: usize| rows[1..].iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    assert_eq!(col(1), ["2", "2", "2", "0", "0", "0", "2"]);
    // Jan: customer 1 bought a and b, customer 2 only a: 50 %. Jul: each bought one
    // category: 0 %. Other months have no buyers: NULL.
    assert_eq!(col(2), ["50.0", "", "", "", "", "", "0.0"]);
    // Jul: customer 1's first July order (23 Jul) is 199 days after 6 Jan: won back;
    // customer 2's (5 Jul) is 180 days after 7 Jan, not more than 180: not won back.
    assert_eq!(col(3), ["0", "0", "0", "0", "0", "0", "1"]);
    // Lead 1: first activity at or after its creation is at 00:30: 0.5 h. Lead 2: the
    // activity before its creation does not count; the next is 1 day later: 24 h.
    // Lead 3 has none and is left out: (0.5 + 24) / 2 = 12.25.
    let rows = f.rows(&["touches", "--from", "2024-01-01", "--to", "2024-02-01"]);
    assert_eq!(rows[1], ["2024-01-01", "12.25"]);
}

#[test]
fn lookups_over_a_multi_file_source_without_a_key() {
    // The source is three CSV files read in parallel; each lead must get its own lookup
    // value however the files' rows interleave.
    let f = Fixture::new(
        &[(
            "touched.yaml",
            "source: leads\ntime: created_at\nlookups:\n  n:\n    from: activities\n    on: activities.lead_id = leads.lead_id\n    value: count(*)\nformula: sum(n)\n",
        )],
        &[(
            "activities.csv",
            "lead_id,at\n1,2024-01-01T00:00:00Z\n2,2024-01-01T00:00:00Z\n2,2024-01-02T00:00:00Z\n5,2024-01-02T00:00:00Z\n",
        )],
    );
    let leads = f.dir.path().join("data/leads");
    std::fs::create_dir_all(&leads).unwrap();
    for (i, rows) in [
        "1,2024-01-01T00:00:00Z\n2,2024-01-01T00:00:00Z\n",
        "3,2024-01-05T00:00:00Z\n",
        "4,2024-02-01T00:00:00Z\n5,2024-02-02T00:00:00Z\n",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(
            leads.join(format!("part-{i}.csv")),
            format!("lead_id,created_at\n{rows}"),
        )
        .unwrap();
    }
    // Jan: leads 1, 2, 3 have 1, 2, 0 activities: 3. Feb: leads 4, 5 have 0, 1: 1.
    for _ in 0..5 {
        let rows = f.rows(&["--from", "2024-01-01", "--to", "2024-03-01"]);
        assert_eq!(
            rows[1..],
            [vec!["2024-01-01", "3"], vec!["2024-02-01", "1"]]
        );
    }
}

#[test]
fn lookups_by_kpis_operator_and_by_the_join_plan() {
    // Each lookup is a value per source row. Those with an equality between the sides
    // run in kpi's operator (an integer key by value, a text key by hash); a lookup that
    // reads another lookup's value, or has no equality, runs as the join plan. Lead 2
    // has two rows (its key is not unique here): each gets its own value.
    let lead = "source: leads\ntime: created_at\n";
    let by_id = "activities.lead_id = leads.lead_id";
    let metrics = [
        (
            "by_value.yaml",
            format!(
                "{lead}lookups:\n  n:\n    from: activities\n    on: {by_id} and activities.occurred_at >= leads.created_at\n    value: count(*)\nformula: sum(n)\n"
            ),
        ),
        (
            "by_hash.yaml",
            format!(
                "{lead}lookups:\n  v:\n    from: activities\n    on: leads.code = activities.code and activities.occurred_at >= leads.created_at\n    value: sum(n)\nformula: sum(v)\n"
            ),
        ),
        (
            "two.yaml",
            format!(
                "{lead}lookups:\n  web:\n    from: activities\n    on: {by_id} and leads.channel = 'web'\n    value: count(*)\n  late:\n    from: activities\n    on: {by_id}\n    value: max(n) filter (where occurred_at >= '2024-01-15')\nformula: sum(web) * 1000 + sum(late)\n"
            ),
        ),
        (
            "filtered.yaml",
            format!(
                "{lead}filter: channel = 'ads'\nlookups:\n  n:\n    from: activities\n    on: {by_id}\n    value: count(*)\nformula: sum(n)\n"
            ),
        ),
        (
            "chained.yaml",
            format!(
                "{lead}lookups:\n  a:\n    from: activities\n    on: {by_id}\n    value: count(*)\n  b:\n    from: activities\n    on: {by_id} and activities.n > leads.a\n    value: count(*)\nformula: sum(b)\n"
            ),
        ),
        (
            "no_equality.yaml",
            format!(
                "{lead}lookups:\n  n:\n    from: activities\n    on: activities.occurred_at >= leads.created_at\n    value: count(*)\nformula: sum(n)\n"
            ),
        ),
        (
            "latest_before.yaml",
            format!(
                "{lead}lookups:\n  v:\n    from: activities\n    on: {by_id} and activities.occurred_at < leads.created_at\n    value: max(n)\nformula: sum(v) * 10 + count(v)\n"
            ),
        ),
        (
            "first_after.yaml",
            format!(
                "{lead}lookups:\n  t:\n    from: activities\n    on: leads.lead_id = activities.lead_id and leads.created_at <= activities.occurred_at\n    value: min(occurred_at)\nformula: sum(hours_between(created_at, t))\n"
            ),
        ),
    ];
    let metrics: Vec<(&str, &str)> = metrics.iter().map(|(f, y)| (*f, y.as_str())).collect();
    let f = Fixture::new(
        &metrics,
        &[
            (
                "leads.csv",
                "lead_id,code,created_at,channel\n1,a,2024-01-01T00:00:00Z,web\n2,b,2024-01-02T00:00:00Z,web\n2,b,2024-01-20T00:00:00Z,ads\n,d,2024-01-04T00:00:00Z,web\n",
            ),
            (
                "activities.csv",
                "lead_id,code,occurred_at,n\n1,a,2024-01-01T01:00:00Z,1\n1,a,2023-12-31T00:00:00Z,2\n2,b,2024-01-10T00:00:00Z,3\n2,b,2024-01-25T00:00:00Z,4\n,d,2024-01-05T00:00:00Z,6\n",
            ),
        ],
    );
    let names = [
        "by_value",
        "by_hash",
        "two",
        "filtered",
        "chained",
        "no_equality",
        "latest_before",
        "first_after",
    ];
    // by_value: lead 1 (1 Jan 00:00) has activity 1 (01:00), not 2 (31 Dec): 1; lead 2's
    //   row of 2 Jan has activities 3 and 4: 2, its row of 20 Jan only 4: 1; the lead
    //   without an id matches nothing, not even the activity without one: 0. 1+2+1+0 = 4.
    // by_hash (on code, written source side last): a -> n 1; b (2 Jan) -> 3 + 4; b (20
    //   Jan) -> 4; d -> 6 (its NULL id does not matter). 1 + 7 + 4 + 6 = 18.
    // two: web rows' activities: lead 1 two, lead 2 (2 Jan) two, the ads row none: 4;
    //   late (from 15 Jan): only activity 4 (n 4), for both rows of lead 2: 8. 4008.
    // filtered: only the ads row (lead 2, 20 Jan) is read; lead 2 has 2 activities: 2.
    // chained: a = 2, 2, 2, 0 activities; b counts those with n > a: lead 1 (n 1, 2)
    //   none, each row of lead 2 (n 3, 4) two: 4.
    // no_equality: activities at or after each row's creation: 1 Jan -> 1, 3, 4, 5
    //   (4); 2 Jan -> 3, 4, 5 (3); 20 Jan -> 4 (1); 4 Jan -> 3, 4, 5 (3). 11.
    // latest_before: the largest n before each row's creation: lead 1 -> 2 (31 Dec);
    //   lead 2 (2 Jan) none, NULL; lead 2 (20 Jan) -> 3; the lead without an id NULL.
    //   (2 + 3) * 10 + 2 rows with a value = 52.
    // first_after (written source side first): the first activity at or after each row's
    //   creation: lead 1 at 01:00 (1 h), lead 2 (2 Jan) on 10 Jan (192 h), lead 2
    //   (20 Jan) on 25 Jan (120 h); none for the lead without an id. 313 (hours are
    //   microseconds over 3.6e9, in floating point: compared to 1e-9).
    let expected = vec!["2024-01-01", "4", "18", "4008", "2", "4", "11", "52"];
    let range = ["--from", "2024-01-01", "--to", "2024-02-01"];
    for extra in [&[][..], &["--threads", "1"], &["--memory-limit", "64MiB"]] {
        let args = [&names[..], &range, extra].concat();
        let rows = f.rows(&args);
        assert_eq!(rows[1][..8], expected, "{extra:?}");
        let hours: f64 = rows[1][8].parse().unwrap();
        assert!((hours - 313.0).abs() < 1e-9, "{extra:?}: {hours}");
    }
    // by_value's count with one comparison beyond its key is counted by rank (a
    // search among each key's rows sorted by created_at), not pair by pair; a min or
    // max with such a comparison still visits its pairs.
    for (name, operator, ranked) in [
        ("by_value", true, true),
        ("by_hash", true, false),
        ("two", true, false),
        ("filtered", true, false),
        ("chained", false, false),
        ("no_equality", false, false),
        ("latest_before", true, false),
        ("first_after", true, false),
    ] {
        let (code, out, err) = f.kpi("explain", &[&[name, "--physical"][..], &range].concat());
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.contains(&format!("FROM __lookups_{name} AS leads")),
            operator,
            "{name}: {out}"
        );
        assert_eq!(out.contains("counted by rank="), ranked, "{name}: {out}");
    }
}

#[test]
fn a_lookup_past_the_memory_limit_fails_naming_the_metric_and_the_operator() {
    // 30,000 source rows of two 8-byte columns are about 470 KB: more than a 256 KiB pool.
    let leads: String = std::iter::once("lead_id,created_at\n".to_string())
        .chain((0..30_000).map(|i| format!("{i},2024-01-01T00:00:00Z\n")))
        .collect();
    let f = Fixture::new(
        &[(
            "touched.yaml",
            "source: leads\ntime: created_at\nlookups:\n  n:\n    from: activities\n    on: activities.lead_id = leads.lead_id\n    value: count(*)\nformula: sum(n)\n",
        )],
        &[
            ("leads.csv", leads.as_str()),
            ("activities.csv", "lead_id,at\n1,2024-01-01T00:00:00Z\n"),
        ],
    );
    let range = ["--from", "2024-01-01", "--to", "2024-02-01"];
    let (code, out, err) = f.run(&[&range[..], &["--memory-limit", "256KiB"]].concat());
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    for part in [
        "computing `touched` needs more memory than the limit allows",
        "LookupExec",
        "raise --memory-limit",
        "table `leads` at data/leads.csv",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    assert!(!err.contains("__lookups_touched"), "{err}");
    // With room, lead 1's one activity: 1.
    let rows = f.rows(&[&range[..], &["--memory-limit", "64MiB"]].concat());
    assert_eq!(rows[1], ["2024-01-01", "1"]);
}

#[test]
fn json_jsonl_and_parquet_outputs_keep_nulls_and_full_precision() {
    let f = sales();
    let args = [
        "revenue",
        "avg_amount",
        "--from",
        "2024-02-01",
        "--to",
        "2024-04-01",
    ];
    let json = |fmt: &str| {
        let (code, out, err) = crate::run::kpi_in(
            f.dir.path(),
            &[
                &[
                    "run",
                    "--metrics",
                    "metrics",
                    "--data",
                    "data",
                    "--format",
                    fmt,
                ],
                &args[..],
            ]
            .concat(),
        );
        assert_eq!(code, 0, "{err}");
        out
    };
    let v: serde_json::Value = serde_json::from_str(&json("json")).unwrap();
    // Feb: avg of 40, 80, 5 = 41.666…; Mar: empty, avg NULL.
    assert_eq!(
        v,
        serde_json::json!([
            {"period": "2024-02-01", "revenue": 120, "avg_amount": 41.666666666666664},
            {"period": "2024-03-01", "revenue": 0, "avg_amount": null},
        ])
    );
    let lines: Vec<serde_json::Value> = json("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(serde_json::Value::Array(lines), v);
    let (code, _, err) = crate::run::kpi_in(
        f.dir.path(),
        &[
            &[
                "run",
                "--metrics",
                "metrics",
                "--data",
                "data",
                "--format",
                "parquet",
                "--out",
                "out.parquet",
            ],
            &args[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    let file = std::fs::File::open(f.dir.path().join("out.parquet")).unwrap();
    let reader =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(
        text.contains("| 2024-02-01 | 120     | 41.666666666666664 |"),
        "{text}"
    );
    assert!(
        text.contains("| 2024-03-01 | 0       |                    |"),
        "{text}"
    );
}

#[test]
fn empty_overrides_the_value_of_periods_without_rows_only() {
    let f = Fixture::new(
        &[
            (
                "avg0.yaml",
                "source: orders\ntime: ordered_at\nempty: zero\nformula: avg(amount)\n",
            ),
            (
                "n_null.yaml",
                "source: orders\ntime: ordered_at\nempty: null\nformula: count(*)\n",
            ),
            (
                "paid_avg0.yaml",
                "source: orders\ntime: ordered_at\nempty: zero\nformula: avg(amount) filter (where status = 'cancelled')\n",
            ),
        ],
        &[("orders.csv", ORDERS)],
    );
    let rows = f.rows(&[
        "avg0",
        "n_null",
        "paid_avg0",
        "--from",
        "2024-02-01",
        "--to",
        "2024-04-01",
    ]);
    // Feb has rows: avg of 40, 80, 5; 3 rows; no cancelled order, so that avg stays NULL
    // (the period is not empty). Mar has no rows: the overrides apply.
    assert_eq!(
        rows[1..],
        [
            vec!["2024-02-01", "41.666666666666664", "3", ""],
            vec!["2024-03-01", "0.0", "", "0.0"]
        ]
    );
}
