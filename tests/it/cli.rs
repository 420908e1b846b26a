//! The `kpi` binary as users and CI call it: exit codes, formats, streams.

use std::process::Command;

/// Runs the `kpi` binary in the repository's root: exit code, stdout, stderr.
pub fn kpi(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("kpi runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_exit_codes() {
    assert_eq!(kpi(&["validate"]).0, 0);
    assert_eq!(kpi(&["validate", "--metrics", "tests/broken/cycle"]).0, 1);
    let (code, _, err) = kpi(&["validate", "--metrics", "no/such/dir"]);
    assert_eq!(code, 2);
    assert!(err.contains("no/such/dir"), "{err}");
    assert_eq!(kpi(&["validate", "--format", "nope"]).0, 2);
}

#[test]
fn list_json_has_every_metric_with_its_dimensions() {
    let (code, out, _) = kpi(&["list", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 39);
    let revenue = rows.iter().find(|r| r["name"] == "revenue").unwrap();
    assert_eq!(
        revenue["dimensions"],
        serde_json::json!(["category", "segment", "region"])
    );
    let aov = rows
        .iter()
        .find(|r| r["name"] == "average_order_value")
        .unwrap();
    assert_eq!(aov["kind"], "derived");
    assert_eq!(
        aov["dimensions"],
        serde_json::json!(["category", "segment", "region"])
    );
}

/// The shipped run as a table at `COLUMNS` (or unset): stdout and stderr.
fn table_at(columns: Option<&str>) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kpi"));
    cmd.args(["run", "--format", "table"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env_remove("COLUMNS");
    if let Some(c) = columns {
        cmd.env("COLUMNS", c);
    }
    let out = cmd.output().expect("kpi runs");
    assert!(out.status.success());
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_table_wider_than_the_terminal_is_split_into_blocks_that_fit() {
    // Into a pipe with no width known: one wide table, a header, a rule and 24 months.
    let (wide, note) = table_at(None);
    assert_eq!(wide.lines().count(), 26);
    assert!(note.is_empty(), "{note}");
    let width_of = |s: &str| s.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(width_of(&wide) > 100);

    let (text, note) = table_at(Some("100"));
    assert!(width_of(&text) <= 100, "{text}");
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert!(blocks.len() > 1);
    assert!(
        note.contains(&format!(
            "the table is {} characters wide and the terminal 100: printed as {} blocks",
            width_of(&wide),
            blocks.len()
        )),
        "{note}"
    );
    // Each block: header, rule, the 24 months in order; every metric in exactly one block.
    let wide_header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    let mut seen: Vec<&str> = vec!["period"];
    for b in &blocks {
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines.len(), 26, "{b}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header[0], "period");
        seen.extend(&header[1..]);
        assert!(lines[2].starts_with("2024-01-01") && lines[25].starts_with("2025-12-01"));
    }
    assert_eq!(seen, wide_header);
    // The same cells: the first row's values, block by block, are the wide row's.
    let wide_row: Vec<&str> = wide.lines().nth(2).unwrap().split_whitespace().collect();
    let split_row: Vec<&str> = std::iter::once("2024-01-01")
        .chain(
            blocks
                .iter()
                .flat_map(|b| b.lines().nth(2).unwrap().split_whitespace().skip(1)),
        )
        .collect();
    assert_eq!(split_row, wide_row);
}

/// Without the `cluster` feature, Ballista's entry points say how to get them.
#[cfg(not(feature = "cluster"))]
#[test]
fn ballista_without_the_feature_says_how_to_build_it() {
    let hint = "build it with `cargo build --release --features cluster`";
    for args in [
        &[
            "run",
            "revenue",
            "--engine",
            "ballista",
            "--scheduler",
            "df://localhost:50050",
        ][..],
        &["run", "revenue", "--engine", "ballista-standalone"][..],
        &["cluster", "scheduler"][..],
        &["cluster", "executor"][..],
    ] {
        let (code, out, err) = kpi(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains(hint), "{args:?}: {err}");
    }
    let (code, _, err) = kpi(&["run", "revenue", "--engine", "ballista"]);
    assert_eq!(code, 2);
    assert!(err.contains("--scheduler"), "{err}");
}
