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
