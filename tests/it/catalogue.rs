//! The shipped catalogue: valid, complete, and compact.

use std::collections::BTreeSet;

use kpi::diag::SourceDb;
use kpi::validate::load_and_check;

#[test]
fn shipped_metrics_are_valid_without_warnings() {
    let mut db = SourceDb::default();
    let (cat, diags) = load_and_check(&crate::repo("metrics"), &mut db).unwrap();
    assert!(
        diags.is_empty(),
        "{}",
        kpi::diag::render::human(&diags, &db, false)
    );
    assert_eq!(cat.public_metrics().count(), 39);
}

#[test]
fn every_catalogue_kpi_is_shipped_and_every_shipped_kpi_is_in_the_catalogue() {
    // Panics, failing the test, when `../shared/kpi-catalogue.md` is missing.
    let names = crate::catalogue_names();
    assert_eq!(names.len(), 39, "the catalogue lists 39 KPIs: {names:?}");
    let unique: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), names.len(), "a KPI listed twice: {names:?}");
    let mut db = SourceDb::default();
    let (cat, _) = load_and_check(&crate::repo("metrics"), &mut db).unwrap();
    let shipped: BTreeSet<&str> = cat
        .public_metrics()
        .map(|m| cat.metrics[m].name.as_str())
        .collect();
    assert_eq!(
        shipped, unique,
        "the shipped public metrics are exactly the catalogue's KPIs"
    );
}

#[test]
fn catalogue_names_are_the_first_column_of_its_definition_tables() {
    let text = "# T\n\n| name | definition |\n|---|---|\n| `a` | x |\n| `b_c` | `y` \\| z |\n\n\
                Prose | with a bar.\n\n| other | table |\n|---|---|\n| `not_a_kpi` | q |\n\n\
                | name | definition |\n|---|---|\n| `d` | w |\n";
    assert_eq!(crate::names_of_catalogue(text), ["a", "b_c", "d"]);
    // The real catalogue: its first and last KPIs, as read by eye from the file.
    let names = crate::catalogue_names();
    assert_eq!(names.first().map(String::as_str), Some("revenue"));
    assert_eq!(names.last().map(String::as_str), Some("crm_roi"));
}

#[test]
fn sample_data_gives_every_kpi_meaningful_values() {
    let (code, out, err) = crate::run::kpi_in(&crate::repo(""), &["run", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    let rows = crate::run::csv_rows(&out);
    assert_eq!(rows.len(), 25, "24 months of sample data and a header");
    for (i, name) in rows[0].iter().enumerate().skip(1) {
        let values: Vec<&str> = rows[1..].iter().map(|r| r[i].as_str()).collect();
        let meaningful = values
            .iter()
            .filter(|v| !v.is_empty() && v.parse::<f64>().is_ok_and(|x| x != 0.0))
            .count();
        assert!(
            meaningful > 0,
            "{name} is entirely NULL or 0 on the sample data"
        );
        assert!(
            meaningful * 2 >= values.len(),
            "{name} has values in fewer than half the months: {values:?}"
        );
    }
    assert_eq!(rows[0].len(), 40, "all 39 KPIs");
}
