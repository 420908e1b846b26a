//! Exactness: every shipped KPI against an independent reference, to 1e-9 relative.
//!
//! The reference is plain SQL written from the words of `kpi-catalogue.md` (not from the
//! YAML), run directly through DataFusion over the generated CSV files, with periods as a
//! literal table. It is compared with `kpi run` over the same data as CSV, Parquet and
//! hive-partitioned Parquet, at two seeds, for every month, and with `--by` for every
//! dimension the catalogue lists. Ratios the catalogue defines from other KPIs are
//! computed here from the reference values of those KPIs.

use std::collections::HashMap;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{CsvReadOptions, SessionContext};

use crate::run::{csv_rows, kpi_in};

/// (period start `YYYY-MM-DD`, dimension value or "") → value.
type Values = HashMap<(String, String), Option<f64>>;

const FROM: &str = "2024-01-01";
const TO: &str = "2026-01-01";

/// Reference SQL per KPI: `{D}` is the dimension expression (or a constant), and each
/// query returns `s` (period start), `d` (dimension) and `v` for non-empty groups only.
fn sql(kpi: &str) -> Option<&'static str> {
    Some(match kpi {
        "revenue" => {
            "SELECT p.s, {D} AS d, sum(o.amount) AS v FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e LEFT JOIN customers c ON c.customer_id = o.customer_id WHERE o.status = 'paid' GROUP BY p.s, {D}"
        }
        "paid_orders" => {
            "SELECT p.s, {D} AS d, count(*) AS v FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e LEFT JOIN customers c ON c.customer_id = o.customer_id WHERE o.status = 'paid' GROUP BY p.s, {D}"
        }
        "orders_per_customer" => {
            "SELECT p.s, {D} AS d, count(*) * 1.0 / count(DISTINCT o.customer_id) AS v FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e WHERE o.status = 'paid' GROUP BY p.s, {D}"
        }
        "revenue_per_rep" => {
            "SELECT p.s, {D} AS d, sum(o.amount) / count(DISTINCT o.rep_id) AS v FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e WHERE o.status = 'paid' AND o.rep_id IS NOT NULL GROUP BY p.s, {D}"
        }
        "cross_sell_rate" => {
            "SELECT s, {D} AS d, 100.0 * sum(CASE WHEN n >= 2 THEN 1 ELSE 0 END) / count(*) AS v FROM (SELECT p.s, o.customer_id, count(DISTINCT o.category) AS n FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e WHERE o.status = 'paid' GROUP BY p.s, o.customer_id) GROUP BY s, {D}"
        }
        "revenue_ytd" => {
            "SELECT p.s, {D} AS d, sum(o.amount) AS v FROM p JOIN orders o ON o.ordered_at >= p.y AND o.ordered_at < p.e WHERE o.status = 'paid' GROUP BY p.s, {D}"
        }
        "won_revenue" => {
            "SELECT p.s, {D} AS d, sum(x.amount) AS v FROM p JOIN deals x ON x.closed_at >= p.s AND x.closed_at < p.e WHERE x.status = 'won' GROUP BY p.s, {D}"
        }
        "win_rate" => {
            "SELECT p.s, {D} AS d, 100.0 * sum(CASE WHEN x.status = 'won' THEN 1 ELSE 0 END) / count(*) AS v FROM p JOIN deals x ON x.closed_at >= p.s AND x.closed_at < p.e WHERE x.status IN ('won', 'lost') GROUP BY p.s, {D}"
        }
        "sales_cycle_days" => {
            "SELECT p.s, {D} AS d, avg((date_part('epoch', x.closed_at) - date_part('epoch', x.created_at)) / 86400.0) AS v FROM p JOIN deals x ON x.closed_at >= p.s AND x.closed_at < p.e WHERE x.status = 'won' GROUP BY p.s, {D}"
        }
        "leads" => {
            "SELECT p.s, {D} AS d, count(*) AS v FROM p JOIN leads l ON l.created_at >= p.s AND l.created_at < p.e GROUP BY p.s, {D}"
        }
        "lead_conversion_rate" => {
            "SELECT p.s, {D} AS d, 100.0 * sum(CASE WHEN w.won > 0 THEN 1 ELSE 0 END) / count(*) AS v FROM p JOIN leads l ON l.created_at >= p.s AND l.created_at < p.e LEFT JOIN (SELECT l2.lead_id, count(*) AS won FROM leads l2 JOIN deals x ON x.lead_id = l2.lead_id WHERE x.status = 'won' AND x.closed_at >= l2.created_at AND x.closed_at < l2.created_at + INTERVAL '90 days' GROUP BY l2.lead_id) w ON w.lead_id = l.lead_id GROUP BY p.s, {D}"
        }
        "lead_response_hours" => {
            "SELECT p.s, {D} AS d, avg((date_part('epoch', f.first) - date_part('epoch', l.created_at)) / 3600.0) AS v FROM p JOIN leads l ON l.created_at >= p.s AND l.created_at < p.e JOIN (SELECT l2.lead_id, min(a.occurred_at) AS first FROM leads l2 JOIN activities a ON a.lead_id = l2.lead_id WHERE a.direction = 'outbound' AND a.occurred_at >= l2.created_at GROUP BY l2.lead_id) f ON f.lead_id = l.lead_id GROUP BY p.s, {D}"
        }
        "activities_per_closed_deal" => {
            "SELECT s, {D} AS d, sum(n) * 1.0 / count(*) AS v FROM (SELECT p.s, x.deal_id, count(a.activity_id) AS n FROM p JOIN deals x ON x.closed_at >= p.s AND x.closed_at < p.e LEFT JOIN activities a ON a.lead_id = x.lead_id AND a.occurred_at <= x.closed_at WHERE x.status IN ('won', 'lost') AND x.lead_id IS NOT NULL GROUP BY p.s, x.deal_id) GROUP BY s, {D}"
        }
        "contact_frequency" => {
            "SELECT p.s, {D} AS d, count(*) * 1.0 / count(DISTINCT a.customer_id) AS v FROM p JOIN activities a ON a.occurred_at >= p.s AND a.occurred_at < p.e WHERE a.customer_id IS NOT NULL GROUP BY p.s, {D}"
        }
        "customer_coverage_90d" => {
            "SELECT p.s, {D} AS d, 100.0 * coalesce(t.n, 0) / c.n AS v FROM p LEFT JOIN (SELECT p.s, count(DISTINCT a.customer_id) AS n FROM p JOIN activities a ON a.occurred_at >= p.e - INTERVAL '90 days' AND a.occurred_at < p.e GROUP BY p.s) t ON t.s = p.s JOIN (SELECT p.s, count(*) AS n FROM p JOIN customers c ON c.created_at < p.e GROUP BY p.s) c ON c.s = p.s"
        }
        "customer_retention_rate" => {
            "SELECT b.s, {D} AS d, 100.0 * count(c.customer_id) / count(*) AS v FROM (SELECT DISTINCT p.s, p.ps, o.customer_id FROM p JOIN orders o ON o.ordered_at >= p.ps AND o.ordered_at < p.s WHERE o.status = 'paid') b LEFT JOIN (SELECT DISTINCT p.s, o.customer_id FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e WHERE o.status = 'paid') c ON c.s = b.s AND c.customer_id = b.customer_id GROUP BY b.s, {D}"
        }
        "won_back_customers" => {
            "SELECT s, {D} AS d, count(*) AS v FROM (SELECT f.s, f.customer_id, f.first, max(o.ordered_at) AS last FROM (SELECT p.s, o.customer_id, min(o.ordered_at) AS first FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e WHERE o.status = 'paid' GROUP BY p.s, o.customer_id) f JOIN orders o ON o.customer_id = f.customer_id AND o.status = 'paid' AND o.ordered_at < f.first GROUP BY f.s, f.customer_id, f.first) WHERE date_part('epoch', first) - date_part('epoch', last) > 180 * 86400 GROUP BY s, {D}"
        }
        "tickets_opened" => {
            "SELECT p.s, {D} AS d, count(*) AS v FROM p JOIN tickets t ON t.opened_at >= p.s AND t.opened_at < p.e GROUP BY p.s, {D}"
        }
        "first_response_hours" => {
            "SELECT p.s, {D} AS d, avg((date_part('epoch', t.first_response_at) - date_part('epoch', t.opened_at)) / 3600.0) AS v FROM p JOIN tickets t ON t.opened_at >= p.s AND t.opened_at < p.e WHERE t.first_response_at IS NOT NULL GROUP BY p.s, {D}"
        }
        "resolution_hours" => {
            "SELECT p.s, {D} AS d, avg((date_part('epoch', t.resolved_at) - date_part('epoch', t.opened_at)) / 3600.0) AS v FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e GROUP BY p.s, {D}"
        }
        // The median by hand: the mean of the middle value(s) of the sorted hours.
        "resolution_median_hours" => {
            "SELECT s, d, avg(h) AS v FROM (SELECT s, d, h, row_number() OVER (PARTITION BY s, d ORDER BY h) AS rn, count(*) OVER (PARTITION BY s, d) AS n FROM (SELECT p.s, {D} AS d, (date_part('epoch', t.resolved_at) - date_part('epoch', t.opened_at)) / 3600.0 AS h FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e)) WHERE rn = (n + 1) / 2 OR rn = (n + 2) / 2 GROUP BY s, d"
        }
        "tickets_per_agent" => {
            "SELECT p.s, {D} AS d, count(*) * 1.0 / count(DISTINCT t.agent_id) AS v FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e GROUP BY p.s, {D}"
        }
        "reopen_rate" => {
            "SELECT p.s, {D} AS d, 100.0 * sum(CASE WHEN t.reopened_count > 0 THEN 1 ELSE 0 END) / count(*) AS v FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e GROUP BY p.s, {D}"
        }
        "csat_rate" => {
            "SELECT p.s, {D} AS d, 100.0 * sum(CASE WHEN t.csat >= 4 THEN 1 ELSE 0 END) / count(*) AS v FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e WHERE t.csat IS NOT NULL GROUP BY p.s, {D}"
        }
        "nps" => {
            "SELECT p.s, {D} AS d, 100.0 * (sum(CASE WHEN r.score >= 9 THEN 1 ELSE 0 END) - sum(CASE WHEN r.score <= 6 THEN 1 ELSE 0 END)) / count(*) AS v FROM p JOIN nps_responses r ON r.responded_at >= p.s AND r.responded_at < p.e GROUP BY p.s, {D}"
        }
        "active_subscriptions" => {
            "SELECT p.s, {D} AS d, count(*) AS v FROM p JOIN subscriptions x ON x.started_at < p.e AND (x.cancelled_at IS NULL OR x.cancelled_at >= p.e) GROUP BY p.s, {D}"
        }
        "mrr" => {
            "SELECT p.s, {D} AS d, sum(x.mrr) AS v FROM p JOIN subscriptions x ON x.started_at < p.e AND (x.cancelled_at IS NULL OR x.cancelled_at >= p.e) GROUP BY p.s, {D}"
        }
        "churn_rate" => {
            "SELECT p.s, {D} AS d, 100.0 * sum(CASE WHEN x.cancelled_at >= p.s AND x.cancelled_at < p.e THEN 1 ELSE 0 END) / count(*) AS v FROM p JOIN subscriptions x ON x.started_at < p.s AND (x.cancelled_at IS NULL OR x.cancelled_at >= p.s) GROUP BY p.s, {D}"
        }
        "campaign_cost" => {
            "SELECT p.s, {D} AS d, sum(k.cost) AS v FROM p JOIN campaigns k ON k.started_at >= p.s AND k.started_at < p.e GROUP BY p.s, {D}"
        }
        "attributed_revenue" => {
            "SELECT p.s, {D} AS d, sum(o.amount) AS v FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e WHERE o.status = 'paid' AND o.campaign_id IS NOT NULL GROUP BY p.s, {D}"
        }
        "campaign_response_rate" => {
            "SELECT p.s, {D} AS d, 100.0 * count(DISTINCT CASE WHEN ev.event = 'response' THEN ev.campaign_id * 1000000000 + ev.customer_id END) / count(DISTINCT CASE WHEN ev.event = 'sent' THEN ev.campaign_id * 1000000000 + ev.customer_id END) AS v FROM p JOIN campaign_events ev ON ev.occurred_at >= p.s AND ev.occurred_at < p.e GROUP BY p.s, {D}"
        }
        "email_open_rate" => {
            "SELECT p.s, {D} AS d, 100.0 * sum(CASE WHEN ev.event = 'open' THEN 1 ELSE 0 END) / sum(CASE WHEN ev.event = 'sent' THEN 1 ELSE 0 END) AS v FROM p JOIN campaign_events ev ON ev.occurred_at >= p.s AND ev.occurred_at < p.e JOIN campaigns k ON k.campaign_id = ev.campaign_id WHERE k.channel = 'email' GROUP BY p.s, {D}"
        }
        "unsubscribe_rate" => {
            "SELECT p.s, {D} AS d, 100.0 * sum(CASE WHEN ev.event = 'unsubscribe' THEN 1 ELSE 0 END) / sum(CASE WHEN ev.event = 'sent' THEN 1 ELSE 0 END) AS v FROM p JOIN campaign_events ev ON ev.occurred_at >= p.s AND ev.occurred_at < p.e JOIN campaigns k ON k.campaign_id = ev.campaign_id WHERE k.channel = 'email' GROUP BY p.s, {D}"
        }
        "crm_cost" => {
            "SELECT p.s, {D} AS d, sum(x.amount) AS v FROM p JOIN crm_costs x ON x.incurred_at >= p.s AND x.incurred_at < p.e GROUP BY p.s, {D}"
        }
        _ => return None,
    })
}

/// KPIs whose empty-period value is 0 (counts and sums); all others are NULL.
const ZERO_WHEN_EMPTY: &[&str] = &[
    "revenue",
    "paid_orders",
    "revenue_ytd",
    "won_revenue",
    "leads",
    "won_back_customers",
    "tickets_opened",
    "active_subscriptions",
    "mrr",
    "campaign_cost",
    "attributed_revenue",
    "crm_cost",
];

/// The months of the range, plus December 2023 for previous-period KPIs.
fn periods_sql() -> String {
    let mut rows = Vec::new();
    let mut d = chrono::NaiveDate::from_ymd_opt(2023, 12, 1).unwrap();
    let end = chrono::NaiveDate::parse_from_str(TO, "%Y-%m-%d").unwrap();
    while d < end {
        let next = d.checked_add_months(chrono::Months::new(1)).unwrap();
        let prev = d.checked_sub_months(chrono::Months::new(1)).unwrap();
        let year = chrono::NaiveDate::from_ymd_opt(chrono::Datelike::year(&d), 1, 1).unwrap();
        rows.push(format!("(TIMESTAMP '{d} 00:00:00', TIMESTAMP '{next} 00:00:00', TIMESTAMP '{year} 00:00:00', TIMESTAMP '{prev} 00:00:00')"));
        d = next;
    }
    format!(
        "CREATE VIEW p AS SELECT column1 AS s, column2 AS e, column3 AS y, column4 AS ps FROM (VALUES {})",
        rows.join(", ")
    )
}

async fn reference_ctx(data: &Path) -> SessionContext {
    let ctx = SessionContext::new();
    for t in [
        "customers",
        "reps",
        "leads",
        "activities",
        "deals",
        "orders",
        "tickets",
        "nps_responses",
        "campaigns",
        "campaign_events",
        "subscriptions",
        "crm_costs",
    ] {
        let path = data.join(format!("{t}.csv"));
        ctx.register_csv(
            t,
            path.to_str().unwrap(),
            CsvReadOptions::new().schema_infer_max_records(1_000_000),
        )
        .await
        .unwrap();
    }
    ctx.sql(&periods_sql()).await.unwrap();
    ctx
}

async fn reference(ctx: &SessionContext, kpi: &str, dim: &str) -> Values {
    let q = sql(kpi)
        .unwrap_or_else(|| panic!("no reference for {kpi}"))
        .replace("{D}", dim);
    let batches = ctx
        .sql(&q)
        .await
        .unwrap_or_else(|e| panic!("{kpi}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{kpi}: {e}"));
    let mut out = Values::new();
    for b in batches {
        let s = cast(b.column(0), &DataType::Date32).unwrap();
        let s = s.as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        let d = cast(b.column(1), &DataType::Utf8).unwrap();
        let d = d.as_string::<i32>();
        let v = cast(b.column(2), &DataType::Float64).unwrap();
        let v = v.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        for i in 0..b.num_rows() {
            let date = s.value_as_date(i).unwrap().to_string();
            let dv = if d.is_null(i) {
                String::new()
            } else {
                d.value(i).to_string()
            };
            out.insert((date, dv), (!v.is_null(i)).then(|| v.value(i)));
        }
    }
    out
}

/// A ratio of two reference KPIs, ×`scale`, NULL when the denominator is 0 or missing.
fn ratio(
    num: &Values,
    den: &Values,
    keys: impl Iterator<Item = (String, String)>,
    scale: f64,
    minus: Option<&Values>,
) -> Values {
    keys.map(|k| {
        let n = num.get(&k).copied().flatten().unwrap_or(0.0)
            - minus
                .and_then(|m| m.get(&k).copied().flatten())
                .unwrap_or(0.0);
        let d = den.get(&k).copied().flatten().unwrap_or(0.0);
        let v = (d != 0.0).then(|| scale * n / d);
        (k, v)
    })
    .collect()
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The (period, dimension value) keys of a run's rows, in the order printed.
type Keys = std::collections::BTreeSet<(String, String)>;

/// Compares kpi's CSV output with references for every KPI column. Returns the number
/// of cells checked and the rows' keys (each must be printed once).
fn compare(
    label: &str,
    out: &str,
    refs: &HashMap<String, Values>,
    dim: Option<&str>,
) -> (usize, Keys) {
    let rows = csv_rows(out);
    let header = &rows[0];
    let first_metric = if dim.is_some() { 2 } else { 1 };
    let mut checked = 0;
    let mut keys = Keys::new();
    for r in &rows[1..] {
        let period = r[0].clone();
        let d = if dim.is_some() {
            r[1].clone()
        } else {
            String::new()
        };
        assert!(
            keys.insert((period.clone(), d.clone())),
            "{label}: the row {period} {d:?} is printed twice"
        );
        for (i, name) in header.iter().enumerate().skip(first_metric) {
            let Some(reference) = refs.get(name) else {
                continue;
            };
            let got: Option<f64> = (!r[i].is_empty()).then(|| r[i].parse().unwrap());
            let want = match reference.get(&(period.clone(), d.clone())) {
                Some(v) => *v,
                None if ZERO_WHEN_EMPTY.contains(&name.as_str()) => Some(0.0),
                None => None,
            };
            let ok = match (got, want) {
                (Some(a), Some(b)) => close(a, b),
                (None, None) => true,
                _ => false,
            };
            assert!(
                ok,
                "{label}: {name} at {period} {d:?}: kpi {got:?}, reference {want:?}"
            );
            checked += 1;
        }
    }
    (checked, keys)
}

/// The rows a run by a dimension must print: every month of the range for every value of
/// the dimension that some reference group of the range has (the README's rule: every
/// period appears, with every combination of dimension values seen in the range). The
/// references' December 2023 period, there for previous-period KPIs, is not in the range.
fn expected_keys<'a>(refs: impl IntoIterator<Item = &'a Values>) -> Keys {
    let in_range: std::collections::BTreeSet<String> =
        months().into_iter().map(|(m, _)| m).collect();
    let values: std::collections::BTreeSet<String> = refs
        .into_iter()
        .flat_map(|r| r.keys())
        .filter(|(s, _)| in_range.contains(s))
        .map(|(_, d)| d.clone())
        .collect();
    in_range
        .iter()
        .flat_map(|m| values.iter().map(move |d| (m.clone(), d.clone())))
        .collect()
}

/// Asserts that kpi printed exactly the expected rows, naming the difference.
fn assert_keys(label: &str, got: &Keys, want: &Keys) {
    let missing: Vec<_> = want.difference(got).collect();
    let extra: Vec<_> = got.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{label}: rows the reference has but kpi lacks: {missing:?}; rows kpi has but \
         the reference does not: {extra:?}"
    );
}

async fn references(ctx: &SessionContext, kpis: &[&str], dim: &str) -> HashMap<String, Values> {
    let mut refs = HashMap::new();
    for k in kpis {
        if sql(k).is_some() {
            refs.insert(k.to_string(), reference(ctx, k, dim).await);
        }
    }
    refs
}

fn months() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut d = chrono::NaiveDate::parse_from_str(FROM, "%Y-%m-%d").unwrap();
    let end = chrono::NaiveDate::parse_from_str(TO, "%Y-%m-%d").unwrap();
    while d < end {
        out.push((d.to_string(), String::new()));
        d = d.checked_add_months(chrono::Months::new(1)).unwrap();
    }
    out
}

fn generate(dir: &Path, seed: u64, layout: &str) {
    let (code, _, err) = kpi_in(
        dir,
        &[
            "gen",
            "data",
            "--seed",
            &seed.to_string(),
            "--format",
            layout,
            "--from",
            FROM,
            "--to",
            TO,
        ],
    );
    assert_eq!(code, 0, "{err}");
}

fn run_kpi(dir: &Path, args: &[&str]) -> String {
    let metrics = crate::repo("metrics");
    let mut all = vec![
        "run",
        "--metrics",
        metrics.to_str().unwrap(),
        "--data",
        "data",
        "--format",
        "csv",
        "--from",
        FROM,
        "--to",
        TO,
    ];
    all.extend_from_slice(args);
    let (code, out, err) = kpi_in(dir, &all);
    assert_eq!(code, 0, "{err}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kpi_matches_the_reference_on_every_layout_and_seed() {
    for seed in [7, 2024] {
        let csv = tempfile::tempdir().unwrap();
        generate(csv.path(), seed, "csv");
        let ctx = reference_ctx(&csv.path().join("data")).await;
        let names = crate::catalogue_names();
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut refs = references(&ctx, &all, "CAST(NULL AS VARCHAR)").await;
        // KPIs the catalogue defines from other KPIs.
        let keys = || months().into_iter();
        let rev = refs["revenue"].clone();
        let mut prev_rev = Values::new();
        for (k, v) in &rev {
            let d = chrono::NaiveDate::parse_from_str(&k.0, "%Y-%m-%d")
                .unwrap()
                .checked_add_months(chrono::Months::new(1))
                .unwrap();
            prev_rev.insert((d.to_string(), k.1.clone()), *v);
        }
        refs.insert(
            "average_order_value".into(),
            ratio(&rev, &refs["paid_orders"], keys(), 1.0, None),
        );
        refs.insert(
            "revenue_growth".into(),
            ratio(&rev, &prev_rev, keys(), 100.0, Some(&prev_rev)),
        );
        refs.insert(
            "tickets_per_100_orders".into(),
            ratio(
                &refs["tickets_opened"],
                &refs["paid_orders"],
                keys(),
                100.0,
                None,
            ),
        );
        refs.insert(
            "marketing_roi".into(),
            ratio(
                &refs["attributed_revenue"],
                &refs["campaign_cost"],
                keys(),
                100.0,
                Some(&refs["campaign_cost"]),
            ),
        );
        refs.insert(
            "crm_roi".into(),
            ratio(
                &refs["won_revenue"],
                &refs["crm_cost"],
                keys(),
                100.0,
                Some(&refs["crm_cost"]),
            ),
        );
        assert_eq!(refs.len(), 39, "a reference for every KPI");
        let mut outputs = Vec::new();
        for layout in ["csv", "parquet", "hive"] {
            let dir = if layout == "csv" {
                csv.path().to_path_buf()
            } else {
                let d = tempfile::tempdir().unwrap().keep();
                generate(&d, seed, layout);
                d
            };
            let out = run_kpi(&dir, &[]);
            let label = format!("seed {seed}, {layout}");
            let (n, keys) = compare(&label, &out, &refs, None);
            assert_keys(&label, &keys, &months().into_iter().collect());
            assert_eq!(n, 39 * 24, "every KPI in every month");
            outputs.push(out);
        }
        // The same data in every layout gives the same output, to the last digit.
        assert_eq!(
            outputs[0], outputs[1],
            "seed {seed}: CSV and Parquet differ"
        );
        assert_eq!(
            outputs[0], outputs[2],
            "seed {seed}: CSV and hive Parquet differ"
        );
    }
}

/// KPIs sharing dimensions, and each dimension's name and reference SQL expression.
type DimGroup = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

#[tokio::test(flavor = "multi_thread")]
async fn every_catalogue_dimension_matches_the_reference() {
    let groups: &[DimGroup] = &[
        (
            &["revenue", "paid_orders"],
            &[
                ("category", "o.category"),
                ("segment", "c.segment"),
                ("region", "c.region"),
            ],
        ),
        (
            &["leads", "lead_conversion_rate", "lead_response_hours"],
            &[("channel", "l.channel"), ("region", "l.region")],
        ),
        (
            &[
                "tickets_opened",
                "first_response_hours",
                "resolution_hours",
                "tickets_per_agent",
                "reopen_rate",
                "csat_rate",
            ],
            &[("channel", "t.channel"), ("agent_id", "t.agent_id")],
        ),
        (
            &["won_revenue", "win_rate", "sales_cycle_days"],
            &[("rep_id", "x.rep_id")],
        ),
    ];
    for layout in ["csv", "hive"] {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), 11, layout);
        let csv = tempfile::tempdir().unwrap();
        generate(csv.path(), 11, "csv");
        let ctx = reference_ctx(&csv.path().join("data")).await;
        for (kpis, dims) in groups {
            for (dim, expr) in *dims {
                let refs = references(&ctx, kpis, expr).await;
                let mut args: Vec<&str> = kpis.to_vec();
                args.extend_from_slice(&["--by", dim]);
                let out = run_kpi(dir.path(), &args);
                let label = format!("{layout} --by {dim}");
                let (n, keys) = compare(&label, &out, &refs, Some(dim));
                let want = expected_keys(refs.values());
                // More than one value, so that the dimension splits the rows at all.
                assert!(want.len() > 24, "{label}: {} rows expected", want.len());
                assert_keys(&label, &keys, &want);
                assert_eq!(
                    n,
                    want.len() * kpis.len(),
                    "{label}: every KPI in every row"
                );
            }
        }
        // A derived KPI by a dimension: average ticket by segment from its parts.
        let refs = references(&ctx, &["revenue", "paid_orders"], "c.segment").await;
        let keys: Vec<_> = refs["revenue"].keys().cloned().collect();
        let aov = ratio(
            &refs["revenue"],
            &refs["paid_orders"],
            keys.into_iter(),
            1.0,
            None,
        );
        let out = run_kpi(dir.path(), &["average_order_value", "--by", "segment"]);
        let label = format!("{layout} aov by segment");
        let (n, keys) = compare(
            &label,
            &out,
            &HashMap::from([("average_order_value".to_string(), aov)]),
            Some("segment"),
        );
        // The segments of its parts' groups, every month for each.
        let want = expected_keys([&refs["revenue"], &refs["paid_orders"]]);
        assert!(want.len() > 24, "{label}: {} rows expected", want.len());
        assert_keys(&label, &keys, &want);
        assert_eq!(n, want.len(), "{label}: one average per row");
    }
}
