//! One folder of broken specs per fault under `tests/broken/`; each renders to a snapshot.
//! Every snapshot's `file:line:col` was checked by hand against the fixture.

use kpi::diag::{SourceDb, render};
use kpi::validate::load_and_check;

fn render_case(dir: &std::path::Path) -> (String, Vec<kpi::diag::Code>) {
    let mut db = SourceDb::default();
    let (_, mut diags) = load_and_check(dir, &mut db).expect("fixture folder readable");
    // These fixtures are about errors; warnings have fixtures of their own.
    diags.retain(|d| d.is_error());
    let text = render::human(&diags, &db, false);
    // Paths relative to the repository, whatever the working directory.
    let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    (
        text.replace(&root, ""),
        diags.iter().map(|d| d.code).collect(),
    )
}

#[test]
fn every_broken_fixture_fails_with_its_own_code_and_a_position() {
    let root = crate::repo("tests/broken");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "at least 15 faults are covered");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (text, codes) = render_case(&case);
        assert!(!codes.is_empty(), "{name}: no diagnostic");
        assert!(
            text.contains("-->"),
            "{name}: every error has a file:line:col\n{text}"
        );
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn one_pass_reports_every_broken_file() {
    // The whole folder at once: one broken file does not hide another's errors.
    let mut db = SourceDb::default();
    let root = crate::repo("tests/broken");
    let (_, diags) = load_and_check(&root, &mut db).unwrap();
    let files: std::collections::HashSet<_> = diags
        .iter()
        .filter_map(|d| d.primary.as_ref())
        .map(|p| p.file)
        .collect();
    // Every fixture folder has at least one file with an error of its own.
    let folders: std::collections::HashSet<_> = files
        .iter()
        .map(|f| db.path(*f).parent().unwrap().to_path_buf())
        .collect();
    assert!(folders.len() >= 20, "{} folders reported", folders.len());
}

#[test]
fn unknown_key_suggests_the_close_one_and_points_at_it() {
    let (text, codes) = render_case(&crate::repo("tests/broken/unknown_key"));
    assert_eq!(codes, [kpi::diag::Code::UnknownKey]);
    assert!(text.contains("did you mean `filters`?"), "{text}");
    // `filtres:` is line 4, column 1 of the fixture.
    assert!(text.contains("unknown_key/revenue.yaml:4:1"), "{text}");
}

#[test]
fn cycle_names_every_metric_of_it() {
    let (text, codes) = render_case(&crate::repo("tests/broken/cycle"));
    assert_eq!(codes, [kpi::diag::Code::Cycle]);
    assert!(text.contains("a → b → c → a"), "{text}");
}

#[test]
fn errors_inside_a_block_scalar_point_into_the_yaml_file() {
    let (text, _) = render_case(&crate::repo("tests/broken/sql_syntax_in_block"));
    // `wher` is on line 5 of the file; the block is indented by two spaces plus four.
    assert!(text.contains("win_rate.yaml:5:"), "{text}");
}

#[test]
fn every_schema_fault_is_found_with_data_and_points_at_its_token() {
    let root = crate::repo("tests/broken_data");
    let data = crate::repo("tests/data/mini");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let mut db = SourceDb::default();
        let (cat, mut diags) = load_and_check(&case, &mut db).unwrap();
        diags.retain(|d| d.is_error());
        assert!(diags.is_empty(), "{name}: valid without data");
        diags.extend(kpi::compile::check_against_data(&cat, &data).unwrap());
        assert!(!diags.is_empty(), "{name}: the data check finds the fault");
        let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
        let text = render::human(&diags, &db, false).replace(&root, "");
        insta::assert_snapshot!(format!("data_{name}"), text);
    }
}

#[test]
fn shipped_catalogue_is_valid_against_data() {
    let mut db = SourceDb::default();
    let (cat, diags) = load_and_check(&crate::repo("metrics"), &mut db).unwrap();
    assert!(diags.is_empty());
    let diags = kpi::compile::check_against_data(&cat, &crate::repo("tests/data/mini")).unwrap();
    assert!(diags.is_empty(), "{}", render::human(&diags, &db, false));
}
