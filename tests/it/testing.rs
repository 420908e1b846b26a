//! `kpi test`: the shipped catalogue's tests pass, a broken metric fails with a readable
//! diff, and faults in test files are reported with their positions.

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

#[test]
fn every_catalogue_metric_has_a_test() {
    let mut text = String::new();
    for f in kpi::testing::discover(&crate::repo("metrics")).unwrap() {
        text.push_str(&std::fs::read_to_string(f).unwrap());
    }
    let missing: Vec<&str> = crate::catalogue_names()
        .into_iter()
        .filter(|m| {
            !text.contains(&format!("metric: {m}\n"))
                && !text.contains(&format!("[{m}]"))
                && !text.contains(&format!("[{m},"))
                && !text.contains(&format!(", {m}]"))
                && !text.contains(&format!(", {m},"))
        })
        .collect();
    assert!(missing.is_empty(), "no test names {missing:?}");
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
