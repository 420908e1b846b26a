//! `kpi explain`: the SQL and logical plans of metrics of every shape, as snapshots.

use crate::run::kpi_in;

fn explain(args: &[&str]) -> String {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--from", "2025-01-01", "--to", "2025-03-01"]);
    let (code, out, err) = kpi_in(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &all);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn explain_shows_sql_and_plans_for_each_shape() {
    for metric in [
        "revenue_growth",
        "lead_conversion_rate",
        "active_subscriptions",
        "customer_retention_rate",
    ] {
        insta::assert_snapshot!(metric, explain(&[metric]));
    }
    insta::assert_snapshot!(
        "revenue_by_segment",
        explain(&["revenue", "--by", "segment", "--where", "region = 'BR-SP'"])
    );
}

#[test]
fn explain_physical_and_analyze_run() {
    let out = explain(&["paid_orders", "--physical"]);
    assert!(
        out.contains("Physical plan:") && out.contains("AggregateExec"),
        "{out}"
    );
    let out = explain(&["paid_orders", "--analyze"]);
    assert!(out.contains("output_rows="), "{out}");
}
