//! No input panics the loader or the validator: arbitrary text, and arbitrary YAML trees
//! built from the language's own keys and SQL fragments (which reach much deeper than
//! random bytes). `PROPTEST_CASES=100000 cargo test --release --test it fuzz` runs it long.

use proptest::prelude::*;

fn check_files(files: &[(String, String)]) {
    kpi::harness::definitions(files);
}

const KEYS: &[&str] = &[
    "name",
    "description",
    "unit",
    "source",
    "formula",
    "filter",
    "time",
    "at",
    "window",
    "grain",
    "entity",
    "entity_columns",
    "lookups",
    "dimensions",
    "empty",
    "using",
    "table",
    "sql",
    "key",
    "joins",
    "active",
    "from",
    "on",
    "value",
    "relationship",
    "filtres",
];
const SQL: &[&str] = &[
    "sum(amount)",
    "count(*)",
    "count(distinct customer_id)",
    " filter (where status = 'paid')",
    "$start",
    "$end",
    "$at",
    "$x",
    " / ",
    " + ",
    " * 100",
    "(",
    ")",
    "prev(",
    "year_ago(",
    "revenue",
    "paid_orders",
    "a",
    "b",
    "median(",
    "hours_between(created_at, closed_at)",
    "interval '90 days'",
    "'",
    "\"",
    ",",
    " and ",
    " or ",
    "orders",
    "customers.segment",
    "90 days",
    "2 periods",
    "year_to_date",
    "all",
    "month",
    "end",
    "many_to_one",
    "one_to_many",
    "select 1",
    "select * from orders",
    "é",
    "🙂",
    "\t",
    "--",
    "/*",
    "case when",
    " over ()",
    "(select 1)",
    "null",
    "%",
];

fn sql() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SQL), 0..8).prop_map(|v| v.concat())
}

fn yaml(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        sql().prop_map(|s| format!("{s:?}")),
        sql().prop_map(|s| format!("|\n    {}", s.replace('\n', " "))),
        Just("~".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        any::<i32>().prop_map(|n| n.to_string()),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        3 => leaf,
        1 => prop::collection::vec(yaml(depth - 1), 0..3).prop_map(|v| format!("[{}]", v.iter().map(|x| x.replace('\n', " ")).collect::<Vec<_>>().join(", "))),
        2 => prop::collection::vec((prop::sample::select(KEYS), yaml(depth - 1)), 0..4)
            .prop_map(|kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("{k}: {}", v.replace('\n', " "))).collect::<Vec<_>>().join(", "))),
    ]
    .boxed()
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(KEYS), yaml(2)), 0..8).prop_map(|kv| {
        let mut seen = std::collections::HashSet::new();
        kv.into_iter()
            .filter(|(k, _)| seen.insert(*k))
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check_files(&[("m".to_string(), text)]);
    }

    #[test]
    fn arbitrary_yaml_trees_never_panic(docs in prop::collection::vec(document(), 1..5)) {
        let files: Vec<(String, String)> = docs.into_iter().enumerate().map(|(i, d)| (["revenue", "paid_orders", "a", "b", "orders"][i % 5].to_string(), d)).collect();
        check_files(&files);
    }
}

/// Every seed of `fuzz/seeds/` and every input a fuzzer found at fault
/// (`tests/fuzz_regressions/TARGET/`), through the fuzz targets' own entry points.
#[test]
fn fuzz_seeds_and_regressions_run_clean() {
    let mut ran = 0;
    for base in ["fuzz/seeds", "tests/fuzz_regressions"] {
        for target in ["yaml_loader", "formula", "test_file", "source"] {
            let dir = crate::repo(base).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                match target {
                    "yaml_loader" => {
                        kpi::harness::definitions_text(&String::from_utf8_lossy(&data))
                    }
                    "formula" => kpi::harness::formula(&String::from_utf8_lossy(&data)),
                    "test_file" => kpi::harness::test_file(&String::from_utf8_lossy(&data)),
                    _ => {
                        if let Some((&kind, bytes)) = data.split_first() {
                            kpi::harness::source(bytes, kind % 2 == 0);
                        }
                    }
                }
                ran += 1;
            }
        }
    }
    // The seeds alone are 96 files: a missing folder must not pass unseen.
    assert!(ran >= 96, "only {ran} inputs found");
}
