//! `kpi test`: the shipped catalogue's tests pass, a broken metric fails with a readable
//! diff, and faults in test files are reported with their positions.

use std::collections::BTreeMap;

use crate::cli::kpi;

/// The report without its timings, which vary from run to run.
fn without_times(s: &str) -> String {
    let re = |line: &str| -> String {
        match line.rfind(" (") {
            Some(i) if line.ends_with(" ms)") => line[..i].to_string(),
            _ => match line.rfind(", ") {
                Some(i) if line.ends_with(" ms") => line[..i].to_string(),
                _ => line.to_string(),
            },
        }
    };
    s.lines().map(re).collect::<Vec<_>>().join("\n")
}

/// A copy of a metrics folder in a temporary directory.
fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn shipped_catalogue_tests_pass() {
    let (code, out, err) = kpi(&["test"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

/// Every YAML file inside a `tests` folder under `dir`, found by walking it here rather
/// than through kpi's own discovery.
fn test_files(dir: &std::path::Path, in_tests: bool, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            test_files(&path, in_tests || name == "tests", out);
        } else if in_tests && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            out.push(path);
        }
    }
}

/// For each metric, the cases (`file: name`) that assert it: the case lists the metric
/// under `metric` or `metrics`, has `expect` rows, every row gives the metric a value
/// (`null` included) and at least one row gives it a number. Read with saphyr directly,
/// not with kpi's loader.
fn asserted_metrics(files: &[std::path::PathBuf]) -> BTreeMap<String, Vec<String>> {
    use saphyr::{LoadableYamlNode, Yaml};
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let docs = Yaml::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(docs.len(), 1, "{}: one YAML document", f.display());
        let cases = docs[0]
            .as_mapping_get("tests")
            .and_then(Yaml::as_sequence)
            .unwrap_or_else(|| panic!("{}: no `tests` list", f.display()));
        for (i, case) in cases.iter().enumerate() {
            let label = format!(
                "{}: {}",
                f.display(),
                case.as_mapping_get("name")
                    .and_then(Yaml::as_str)
                    .map_or_else(|| format!("case {}", i + 1), str::to_string)
            );
            let mut metrics: Vec<&str> = Vec::new();
            if let Some(m) = case.as_mapping_get("metric").and_then(Yaml::as_str) {
                metrics.push(m);
            }
            if let Some(ms) = case.as_mapping_get("metrics").and_then(Yaml::as_sequence) {
                metrics.extend(ms.iter().filter_map(Yaml::as_str));
            }
            let rows = case
                .as_mapping_get("expect")
                .and_then(Yaml::as_sequence)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for m in metrics {
                let every_row = rows.iter().all(|r| r.as_mapping_get(m).is_some());
                let some_number = rows.iter().any(|r| {
                    r.as_mapping_get(m).is_some_and(|v| {
                        v.as_integer().is_some() || v.as_floating_point().is_some()
                    })
                });
                if !rows.is_empty() && every_row && some_number {
                    out.entry(m.to_string()).or_default().push(label.clone());
                }
            }
        }
    }
    out
}

#[test]
fn every_shipped_kpi_has_a_case_that_asserts_its_values() {
    let mut db = kpi::diag::SourceDb::default();
    let (cat, _) = kpi::validate::load_and_check(&crate::repo("metrics"), &mut db).unwrap();
    let shipped: Vec<&str> = cat
        .public_metrics()
        .map(|m| cat.metrics[m].name.as_str())
        .collect();
    assert_eq!(shipped.len(), 39, "every shipped KPI");
    let mut files = Vec::new();
    test_files(&crate::repo("metrics"), false, &mut files);
    let asserted = asserted_metrics(&files);
    let missing: Vec<&str> = shipped
        .into_iter()
        .filter(|m| !asserted.contains_key(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "no case lists these KPIs and expects numbers for them: {missing:?}"
    );
}

#[test]
fn a_case_asserts_a_metric_only_when_it_lists_it_and_expects_it_in_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("tests");
    std::fs::create_dir(&tests).unwrap();
    std::fs::write(
        tests.join("t.yaml"),
        r#"tests:
  - name: listed and expected
    metrics: [a, b]
    expect:
      - {period: 2024-01-01, a: 1, b: null}
      - {period: 2024-02-01, a: null, b: 2.5}
  - name: listed but one row lacks it  # c
    metric: d
    expect:
      - {period: 2024-01-01, d: 1}
      - {period: 2024-02-01, c: 1}
  - name: only NULLs
    metric: e
    expect:
      - {period: 2024-01-01, e: null}
  - name: no rows
    metric: f
    expect: []
  - name: expected but not listed
    metric: h
    expect:
      - {period: 2024-01-01, g: 1}
"#,
    )
    .unwrap();
    let asserted = asserted_metrics(&[tests.join("t.yaml")]);
    let names: Vec<&str> = asserted.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "b"], "{asserted:?}");
}

#[test]
fn fixture_cases_pass_with_zones_dimensions_csv_files_and_types() {
    let (code, out, err) = kpi(&["test", "--metrics", "tests/testing/good"]);
    assert_eq!(code, 0, "{out}{err}");
    insta::assert_snapshot!("good", without_times(&out));
}

#[test]
fn a_broken_metric_fails_with_expected_and_actual_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    copy(&crate::repo("tests/testing/good"), dir.path());
    // The bug: the largest order instead of the sum.
    let metric = dir.path().join("revenue.yaml");
    let text = std::fs::read_to_string(&metric).unwrap();
    std::fs::write(&metric, text.replace("sum(amount)", "max(amount)")).unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    let (code, out, _) = kpi(&["test", "--metrics", &path, "months in UTC"]);
    assert_eq!(code, 1, "{out}");
    // January: max(10, 5.5) = 10 instead of 15.5; February is NULL instead of 0, since
    // max over no rows is NULL.
    insta::assert_snapshot!("broken_metric", without_times(&out).replace(&path, "COPY"));

    let (_, out, _) = kpi(&["test", "--metrics", &path, "--format", "github"]);
    // The annotation lands on the first wrong expected row (line 15 of the test file).
    assert!(
        out.contains(&format!(
            "::error file={path}/tests/revenue.yaml,line=15,col=9,title=kpi test::test `months in UTC` failed: period=2024-01-01: revenue expected 15.5, got 10"
        )),
        "{out}"
    );
}

#[test]
fn breaking_a_shipped_kpi_fails_its_test() {
    let dir = tempfile::tempdir().unwrap();
    copy(&crate::repo("metrics"), dir.path());
    let metric = dir.path().join("sales/revenue.yaml");
    let text = std::fs::read_to_string(&metric).unwrap();
    assert!(text.contains("status = 'paid'"));
    // Counting refunded orders too.
    std::fs::write(&metric, text.replace("filter: status = 'paid'\n", "")).unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    let (code, out, _) = kpi(&["test", "--metrics", &path]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL "), "{out}");
    assert!(out.contains("revenue expected"), "{out}");
    assert!(out.contains("✗ revenue"), "{out}");
}

#[test]
fn faults_in_test_files_point_at_their_node() {
    let (code, out, err) = kpi(&["test", "--metrics", "tests/testing/bad"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.is_empty(), "no test runs: {out}");
    insta::assert_snapshot!("bad", err);
}
