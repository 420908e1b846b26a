//! One folder of broken specs per fault under `tests/broken/`; each renders to a snapshot.
//! Every snapshot's `file:line:col` was checked by hand against the fixture.

use std::collections::{BTreeMap, BTreeSet};

use kpi::diag::{Code, SourceDb, render};
use kpi::validate::load_and_check;

fn render_case(dir: &std::path::Path) -> (String, Vec<Code>) {
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

/// Each fixture of `tests/broken/` and the one code its fault must produce, read from the
/// fixture and the registry's summaries in `src/diag/code.rs`.
const BROKEN: &[(&str, Code)] = &[
    // `filter: sum(amount) > 100`: an aggregate where values are per row.
    ("aggregate_in_filter", Code::UnexpectedAggregate),
    // `at: end` over `subscriptions`, a bare table with no `active` condition.
    ("at_without_active", Code::MissingActive),
    // `grain: monthly` is not day, week, month, quarter or year.
    ("bad_grain", Code::BadGrain),
    // `prev(revenue, 0)`: the offset must be a positive integer.
    ("bad_offset", Code::BadOffset),
    // `relationship: many_to_won`: a relationship outside its enumeration.
    ("bad_relationship", Code::BadValue),
    // `unit: curency`: a unit outside its enumeration.
    ("bad_unit", Code::BadValue),
    // `window: 90 dayz` is none of the documented forms.
    ("bad_window", Code::BadWindow),
    // `sum(amount) / amount`: a column outside an aggregate.
    ("bare_column", Code::BareColumn),
    // a → b → c → a.
    ("cycle", Code::Cycle),
    // `filter:` on a derived metric (no `source`): a row-level key.
    ("derived_with_filter", Code::NeedsSource),
    // `sales_total.yaml` says `name: revenue`, which `revenue.yaml` already is.
    ("duplicate_name", Code::DuplicateName),
    // `sum(orders.amount)` over customers joined one-to-many to orders.
    ("fan_out", Code::FanOut),
    // `sum(amount` continued by an indented `filter: …` line: a mapping inside a plain
    // scalar, which YAML does not allow.
    ("malformed_yaml", Code::YamlSyntax),
    // No `formula`.
    ("missing_key", Code::MissingKey),
    // `source: leads`, a bare table, and no `time:`.
    ("missing_time", Code::MissingTime),
    // `sum(count(amount))`.
    ("nested_aggregate", Code::NestedAggregate),
    // `amount * 2` aggregates nothing.
    ("not_aggregate", Code::NotAggregate),
    // `… and)`: SQL that does not parse.
    ("sql_syntax", Code::SqlSyntax),
    // `filter (wher …)` inside a block scalar.
    ("sql_syntax_in_block", Code::SqlSyntax),
    // Two YAML documents in one file.
    ("two_documents", Code::YamlSyntax),
    // `filtres:`.
    ("unknown_key", Code::UnknownKey),
    // `revnue / paid_orders`.
    ("unknown_metric", Code::UnknownMetric),
    // `$strat` is not `$start`, `$end` or `$at`.
    ("unknown_placeholder", Code::UnknownPlaceholder),
    // `formula:` is a list where SQL text is expected.
    ("wrong_type", Code::WrongType),
];

/// Each fixture of `tests/broken_data/` (valid without data) and the code the check
/// against `tests/data/mini` must give it.
const BROKEN_DATA: &[(&str, Code)] = &[
    // `time: category`: a text column where a timestamp is needed.
    ("time_not_timestamp", Code::TypeError),
    // `sum(status)`: a sum of text.
    ("type_error", Code::TypeError),
    // `sum(amout)`: orders has no column `amout`.
    ("unknown_column", Code::UnknownColumn),
    // `on: customer`: neither orders nor customers has a column `customer`.
    ("unknown_join_column", Code::UnknownColumn),
    // `source: order`: no table or model `order`.
    ("unknown_table", Code::UnknownTable),
];

/// The fixture folders under `root`, by name, sorted.
fn fixture_names(root: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The distinct codes of a list, sorted.
fn distinct(codes: &[Code]) -> Vec<Code> {
    let set: BTreeSet<Code> = codes.iter().copied().collect();
    set.into_iter().collect()
}

#[test]
fn every_broken_fixture_fails_with_its_own_code_and_a_position() {
    let root = crate::repo("tests/broken");
    let expected: Vec<&str> = BROKEN.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        fixture_names(&root),
        expected,
        "every fixture has an expected code, and every expected code a fixture"
    );
    for (name, code) in BROKEN {
        let (text, codes) = render_case(&root.join(name));
        assert_eq!(
            distinct(&codes),
            [*code],
            "{name}: its code and no other\n{text}"
        );
        assert!(
            text.contains("-->"),
            "{name}: every error has a file:line:col\n{text}"
        );
        insta::assert_snapshot!(*name, text);
    }
}

#[test]
fn one_pass_reports_every_broken_file() {
    // The whole folder at once: one broken file does not hide another's errors.
    let mut db = SourceDb::default();
    let root = crate::repo("tests/broken");
    let (_, diags) = load_and_check(&root, &mut db).unwrap();
    // The codes reported in each fixture folder.
    let mut by_folder: BTreeMap<String, BTreeSet<Code>> = BTreeMap::new();
    for d in diags.iter().filter(|d| d.is_error()) {
        let Some(p) = d.primary.as_ref() else {
            continue;
        };
        let path = db.path(p.file);
        // Paths are kept as given, or relative to the working directory (the repository's).
        let rel = path
            .strip_prefix(&root)
            .or_else(|_| path.strip_prefix("tests/broken"))
            .unwrap_or_else(|_| panic!("{} is not a file of the fixtures", path.display()));
        let folder = rel.components().next().unwrap().as_os_str();
        by_folder
            .entry(folder.to_string_lossy().into_owned())
            .or_default()
            .insert(d.code);
    }
    let folders: Vec<&str> = by_folder.keys().map(String::as_str).collect();
    let expected: Vec<&str> = BROKEN.iter().map(|(n, _)| *n).collect();
    assert_eq!(folders, expected, "every fixture folder has an error");
    // Loaded together, the fixtures also clash (many define `revenue`), but each
    // folder's own fault is still reported.
    for (name, code) in BROKEN {
        assert!(
            by_folder[*name].contains(code),
            "{name}: {code:?} not reported in one pass, only {:?}",
            by_folder[*name]
        );
    }
}

#[test]
fn unknown_key_suggests_the_close_one_and_points_at_it() {
    let (text, codes) = render_case(&crate::repo("tests/broken/unknown_key"));
    assert_eq!(codes, [Code::UnknownKey]);
    assert!(text.contains("did you mean `filters`?"), "{text}");
    // `filtres:` is line 4, column 1 of the fixture.
    assert!(text.contains("unknown_key/revenue.yaml:4:1"), "{text}");
}

#[test]
fn cycle_names_every_metric_of_it() {
    let (text, codes) = render_case(&crate::repo("tests/broken/cycle"));
    assert_eq!(codes, [Code::Cycle]);
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
    let expected: Vec<&str> = BROKEN_DATA.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        fixture_names(&root),
        expected,
        "every fixture has an expected code"
    );
    for (name, code) in BROKEN_DATA {
        let case = root.join(name);
        let mut db = SourceDb::default();
        let (cat, mut diags) = load_and_check(&case, &mut db).unwrap();
        diags.retain(|d| d.is_error());
        assert!(diags.is_empty(), "{name}: valid without data");
        diags.extend(kpi::compile::check_against_data(&cat, &data).unwrap());
        let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
        let text = render::human(&diags, &db, false).replace(&root, "");
        let codes: Vec<Code> = diags.iter().map(|d| d.code).collect();
        assert_eq!(
            distinct(&codes),
            [*code],
            "{name}: its code and no other\n{text}"
        );
        assert!(text.contains("-->"), "{name}: a file:line:col\n{text}");
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
