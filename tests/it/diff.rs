//! `kpi diff` between two fixture folders: what is reported changed, the SQL diff, and the
//! values per period (computed by hand from `tests/diff/data/orders.csv`).

use crate::cli::kpi;

const RANGE: [&str; 4] = ["--from", "2024-01-01", "--to", "2024-03-01"];

fn diff(extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["diff", "tests/diff/base", "tests/diff/head"];
    args.extend_from_slice(extra);
    kpi(&args)
}

#[test]
fn changes_are_classified_and_values_compared() {
    let mut args = vec!["--data", "tests/diff/data", "--format", "json"];
    args.extend_from_slice(&RANGE);
    let (code, out, err) = diff(&args);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    let kinds: Vec<(&str, &str)> = kinds
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    // average_order's file is identical: it changes through the revenue it divides.
    assert_eq!(
        kinds,
        [
            ("all_orders", "removed"),
            ("average_order", "changed"),
            ("paid_orders", "metadata"),
            ("refunds", "added"),
            ("revenue", "changed"),
        ]
    );
    let values = |name: &str| -> Vec<(String, Option<f64>, Option<f64>)> {
        v.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["period"].as_str().unwrap().into(),
                    r["base"].as_f64(),
                    r["head"].as_f64(),
                )
            })
            .collect()
    };
    let row = |p: &str, b: Option<f64>, h: Option<f64>| (p.to_string(), b, h);
    // January: paid 100 and refunded 50; February: paid 30.
    assert_eq!(
        values("revenue"),
        [
            row("2024-01-01", Some(100.0), Some(150.0)),
            row("2024-02-01", Some(30.0), Some(30.0))
        ]
    );
    // One paid order each month.
    assert_eq!(
        values("average_order"),
        [
            row("2024-01-01", Some(100.0), Some(150.0)),
            row("2024-02-01", Some(30.0), Some(30.0))
        ]
    );
    assert_eq!(
        values("refunds"),
        [
            row("2024-01-01", None, Some(1.0)),
            row("2024-02-01", None, Some(0.0))
        ]
    );
    assert_eq!(
        values("all_orders"),
        [
            row("2024-01-01", Some(2.0), None),
            row("2024-02-01", Some(1.0), None)
        ]
    );
    assert_eq!(
        values("paid_orders"),
        [
            row("2024-01-01", Some(1.0), Some(1.0)),
            row("2024-02-01", Some(1.0), Some(1.0))
        ]
    );
}

#[test]
fn human_and_markdown_reports() {
    let mut args = vec!["--data", "tests/diff/data"];
    args.extend_from_slice(&RANGE);
    let (code, out, err) = diff(&args);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("human_values", out);
    args.extend_from_slice(&["--format", "markdown"]);
    let (_, out, _) = diff(&args);
    insta::assert_snapshot!("markdown_values", out);
}

#[test]
fn the_change_column_is_the_relative_change_of_each_differing_period() {
    let mut args = vec!["--data", "tests/diff/data"];
    args.extend_from_slice(&RANGE);
    let (code, out, err) = diff(&args);
    assert_eq!(code, 0, "{err}");
    // The cells of a metric's value table, row by row (period, base, head, change).
    let table = |name: &str| -> Vec<Vec<String>> {
        let start = out
            .find(&format!("── {name} ("))
            .unwrap_or_else(|| panic!("no section for {name}\n{out}"));
        let section = &out[start..];
        let end = section.find("\n\n── ").unwrap_or(section.len());
        section[..end]
            .lines()
            .filter(|l| l.starts_with("2024-"))
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    };
    // revenue, January: base sums the paid order (100), head the paid and the refunded
    // ones (100 + 50 = 150): (150 - 100) / 100 = +50 %. February (30 on both sides) is
    // not listed, since it did not change.
    assert_eq!(table("revenue"), [["2024-01-01", "100", "150", "+50.00%"]]);
    // average_order, January: one paid order on both sides, so 100 / 1 against
    // 150 / 1: +50 % as well.
    assert_eq!(
        table("average_order"),
        [["2024-01-01", "100", "150", "+50.00%"]]
    );
    // A metric only on one side has no change to give.
    assert_eq!(
        table("refunds"),
        [["2024-01-01", "null", "1"], ["2024-02-01", "null", "0"]]
    );
}

#[test]
fn without_data_only_definitions_are_compared() {
    // Without --data, sample_data supplies the schemas (its orders table has these
    // columns) and nothing is computed.
    let (code, out, err) = diff(&RANGE);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed                  all_orders"), "{out}");
    assert!(
        out.contains("FILTER (WHERE orders.\"status\" IN ('paid', 'refunded')) AS revenue__0"),
        "{out}"
    );
    assert!(!out.contains("values:"), "no values without --data: {out}");
}

#[test]
fn the_same_folder_twice_has_no_change_and_bad_input_fails() {
    let (code, out, _) = kpi(&["diff", "tests/diff/base", "tests/diff/base"]);
    assert_eq!((code, out.as_str()), (0, "no metric changed\n"));
    let (code, _, err) = kpi(&["diff", "tests/diff/base"]);
    assert_eq!(code, 2);
    assert!(err.contains("give two metric folders"), "{err}");
    let (code, _, err) = kpi(&["diff", "--base", "no-such-ref-xyz"]);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-ref-xyz"), "{err}");
    let (code, _, err) = kpi(&["diff", "tests/diff/base", "tests/broken/cycle"]);
    assert_eq!(code, 1);
    assert!(err.contains("KPI022"), "{err}");
}
