//! The shipped catalogue: valid, complete, and compact.

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
fn every_catalogue_kpi_is_shipped() {
    let text = std::fs::read_to_string(crate::repo("../shared/kpi-catalogue.md"))
        .or_else(|_| std::fs::read_to_string("/work/shared/kpi-catalogue.md"));
    let Ok(text) = text else { return };
    let mut db = SourceDb::default();
    let (cat, _) = load_and_check(&crate::repo("metrics"), &mut db).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert_eq!(names.len(), 39, "the catalogue lists 39 KPIs");
    for n in names {
        assert!(
            cat.metric(n).is_some(),
            "KPI `{n}` of the catalogue is not shipped"
        );
    }
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
