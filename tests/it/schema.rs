//! The JSON Schema of metric files: the checked-in copy is current, the shipped files satisfy
//! it, and it rejects what the loader rejects for a file's shape.

use std::path::{Path, PathBuf};
use std::process::Command;

use kpi::diag::SourceDb;
use kpi::spec::schema::metric_schema_text;
use kpi::spec::{Specs, load_file};
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Number, Value};

const CHECKED_IN: &str = "schema/kpi-metric.schema.json";

/// The schema read as the draft it declares, and as draft 7: VS Code's YAML support reads
/// only draft 7, so the schema must mean the same under both.
fn validators() -> Vec<(&'static str, jsonschema::Validator)> {
    let schema: Value = serde_json::from_str(&metric_schema_text()).unwrap();
    vec![
        (
            "draft 2020-12",
            jsonschema::draft202012::new(&schema).expect("a valid draft 2020-12 schema"),
        ),
        (
            "draft 7",
            jsonschema::draft7::new(&schema).expect("a valid draft 7 schema"),
        ),
    ]
}

/// The JSON an editor's YAML support sees for `text` (YAML 1.2 core schema: `0` is a number,
/// `true` a boolean, `~` null), or why there is none.
fn yaml_to_json(text: &str) -> Result<Value, String> {
    let docs = Yaml::load_from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    match docs.as_slice() {
        [] => Ok(Value::Null),
        [doc] => json(doc),
        _ => Err("more than one YAML document".into()),
    }
}

fn json(node: &Yaml<'_>) -> Result<Value, String> {
    Ok(match node {
        Yaml::Value(Scalar::Null) => Value::Null,
        Yaml::Value(Scalar::Boolean(b)) => Value::Bool(*b),
        Yaml::Value(Scalar::Integer(i)) => Value::Number((*i).into()),
        Yaml::Value(Scalar::FloatingPoint(f)) => Number::from_f64(f.into_inner())
            .map(Value::Number)
            .ok_or_else(|| format!("{f} has no JSON form"))?,
        Yaml::Value(Scalar::String(s)) => Value::String(s.to_string()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(json).collect::<Result<_, _>>()?),
        Yaml::Mapping(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let key = match json(k)? {
                    Value::String(s) => s,
                    // JSON keys are strings; an editor shows `1:` as the key "1".
                    Value::Null | Value::Array(_) | Value::Object(_) => {
                        return Err(format!("a mapping key that is not a scalar: {k:?}"));
                    }
                    other => other.to_string(),
                };
                map.insert(key, json(v)?);
            }
            Value::Object(map)
        }
        Yaml::Tagged(_, inner) => json(inner)?,
        other => return Err(format!("no JSON form for {other:?}")),
    })
}

/// Every `*.yaml`/`*.yml` file under `dir`, recursively, sorted, except in `tests` folders.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // Metric unit tests are not metric files (the loader skips them too).
                if !path.ends_with("tests") {
                    stack.push(path);
                }
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// One validator's complaints about `text`, one line each (an empty list when it is valid).
fn schema_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    match yaml_to_json(text) {
        Ok(doc) => validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect(),
        Err(e) => vec![e],
    }
}

/// The codes of the faults the loader finds in `text` alone, read as the file `path`.
fn loader_faults(path: &Path, text: &str) -> Vec<&'static str> {
    let mut db = SourceDb::default();
    let id = db.add(path.to_path_buf(), text.to_string());
    let mut diags = Vec::new();
    load_file(&db, id, &mut Specs::default(), &mut diags);
    diags.iter().map(|d| d.code.name()).collect()
}

/// Asserts that replacing `from` by `to` in the valid document `base` makes both the loader
/// and the schema reject it.
fn both_reject(
    validator: &jsonschema::Validator,
    draft: &str,
    file: &Path,
    base: &str,
    fault: &str,
    from: &str,
    to: &str,
) {
    assert!(
        base.contains(from),
        "{fault}: `{from}` is not in the base document"
    );
    let broken = base.replace(from, to);
    assert!(
        !loader_faults(file, &broken).is_empty(),
        "{fault}: the loader accepts\n{broken}"
    );
    assert!(
        !schema_errors(validator, &broken).is_empty(),
        "{fault}: the schema ({draft}) accepts\n{broken}"
    );
}

#[test]
fn checked_in_schema_is_current() {
    let checked_in = std::fs::read_to_string(crate::repo(CHECKED_IN)).unwrap_or_default();
    assert!(
        checked_in == metric_schema_text(),
        "{CHECKED_IN} is out of date with the document types in src/spec/schema.rs; \
         regenerate it with\n\n    cargo run -- schema > {CHECKED_IN}\n"
    );
}

#[test]
fn kpi_schema_prints_the_schema() {
    let out = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("schema")
        .output()
        .expect("kpi runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == metric_schema_text().as_bytes(),
        "`kpi schema` prints something else than metric_schema_text()"
    );
}

#[test]
fn every_shipped_file_satisfies_the_schema() {
    let files = yaml_files(&crate::repo("metrics"));
    assert!(files.len() >= 45, "found only {} files", files.len());
    let mut failures = String::new();
    for (draft, validator) in validators() {
        for path in &files {
            let text = std::fs::read_to_string(path).unwrap();
            for e in schema_errors(&validator, &text) {
                failures.push_str(&format!("{} ({draft}): {e}\n", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// A valid metric and model, and each with one fault, which the schema must refuse as the
/// loader does.
#[test]
fn faults_are_rejected() {
    for (draft, validator) in validators() {
        faults_are_rejected_by(draft, &validator);
    }
}

fn faults_are_rejected_by(draft: &str, validator: &jsonschema::Validator) {
    let valid = "unit: currency\nsource: orders\nwindow: 90 days\nformula: sum(amount)\n";
    let file = Path::new("metrics/revenue.yaml");
    assert_eq!(schema_errors(validator, valid), Vec::<String>::new());
    assert_eq!(loader_faults(file, valid), Vec::<&str>::new());
    for (fault, from, to) in [
        ("misspelt key", "formula:", "fromula:"),
        ("unknown unit", "unit: currency", "unit: dollars"),
        ("unknown window unit", "window: 90 days", "window: 90 dayz"),
        ("zero-length window", "window: 90 days", "window: 0 days"),
        (
            "grain that is not a period",
            "unit: currency",
            "grain: fortnight",
        ),
        (
            "list where SQL goes",
            "formula: sum(amount)",
            "formula: [sum(amount)]",
        ),
        ("name with a dash", "unit: currency", "name: net-revenue"),
        ("model key in a metric", "unit: currency", "key: order_id"),
        ("no formula", "formula: sum(amount)", "description: x"),
    ] {
        both_reject(validator, draft, file, valid, fault, from, to);
    }

    let model =
        "table: orders\njoins:\n  customers: {on: customer_id, relationship: many_to_one}\n";
    assert_eq!(schema_errors(validator, model), Vec::<String>::new());
    assert_eq!(loader_faults(file, model), Vec::<&str>::new());
    for (fault, from, to) in [
        (
            "table and sql",
            "table: orders",
            "table: orders\nsql: select 1",
        ),
        ("unknown relationship", "many_to_one", "many_to_many"),
        (
            "join without relationship",
            ", relationship: many_to_one",
            "",
        ),
        ("misspelt join key", "on:", "onn:"),
        (
            "metric key in a model",
            "table: orders",
            "table: orders\nformula: count(*)",
        ),
    ] {
        both_reject(validator, draft, file, model, fault, from, to);
    }
}

/// The schema and the loader agree on every fixture: a file the loader reads without a
/// structural fault satisfies the schema, and a file it faults does not. Faults that need
/// other files or the data (unknown metrics, SQL, cycles) are the validator's, so those
/// fixtures must pass the schema.
#[test]
fn schema_and_loader_agree_on_every_fixture() {
    let validators = validators();
    let mut files = Vec::new();
    for dir in ["metrics", "tests/broken", "tests/broken_data"] {
        files.extend(yaml_files(&crate::repo(dir)));
    }
    let mut disagreements = String::new();
    let mut faulted = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let loader = loader_faults(path, &text);
        if !loader.is_empty() {
            faulted.push(path.display().to_string());
        }
        for (draft, validator) in &validators {
            let schema = schema_errors(validator, &text);
            if loader.is_empty() != schema.is_empty() {
                disagreements.push_str(&format!(
                    "{}: loader {loader:?}, schema ({draft}) {schema:?}\n",
                    path.display()
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements}");
    // Each structural fixture (unknown key, wrong type, bad unit, grain, window or
    // relationship, missing key, malformed YAML, two documents) was refused by both.
    assert!(faulted.len() >= 9, "only {faulted:?} were refused");
}

/// Spellings the loader accepts that a schema could easily refuse (nulls read as empty,
/// plurals, numbers and booleans as SQL), and a few it refuses that a schema could accept.
#[test]
fn schema_and_loader_agree_on_edge_forms() {
    let accepted = [
        "formula: count(*)\nempty: null",
        "formula: count(*)\nempty: 'null'",
        "formula: count(*)\nempty: 0",
        "formula: count(*)\nempty: zero",
        "formula: count(*)\ngrain: months",
        "formula: count(*)\nwindow: 1 period",
        "formula: count(*)\nwindow: quarter_to_date",
        "formula: count(*)\nwindow: 007 days",
        "formula: count(*)\nfilter:\ntags:\ndimensions:\nlookups:\nentity_columns:\nusing:",
        "formula: count(*)\nfilter: true\nfilters: [a > 1, b < 2]",
        "formula: 0",
        "formula: count(*)\ntags: sales\nowner: ops",
        "formula: count(*)\ndimensions: {size: \"case when amount > 9 then 'l' else 's' end\"}",
        "formula: count(*)\ndimensions: [category, customers.segment, {big: amount > 9}]",
        "formula: count(*)\nentity: customer_id\nentity_columns: {n: count(*), one: 1}",
        "formula: a / b\nusing:\n  a: {source: t, formula: count(*)}\n  b: {source: t, formula: sum(x), using: {}}",
        "sql: |\n  select 1 as a\nkey: [a, b]\nactive: true",
        "table: t\nkey:\njoins:\n  c: {on: [a, b], relationship: one_to_many}\n  d: {on: d.a = t.a, relationship: one_to_one}",
        "table: t\njoins:",
    ];
    let refused = [
        "formula: a\nusing:\n  a: {name: b, formula: count(*)}",
        "formula: count(*)\nname:",
        "formula: count(*)\nunit:",
        "formula: count(*)\nlookups: {n: {from: t, on: x}}",
        "formula: count(*)\nfilter: [a, [b]]",
        "formula: count(*)\nwindow: 0 periods",
        "formula: count(*)\nwindow: day_to_date",
        "table: t\njoins:\n  c: {on: a}",
        "table: t\njoins:\n  c:",
        "- formula: count(*)",
    ];
    let file = Path::new("metrics/m.yaml");
    let mut disagreements = String::new();
    for (draft, validator) in validators() {
        for (docs, want) in [(&accepted[..], true), (&refused[..], false)] {
            for doc in docs {
                let loader = loader_faults(file, doc);
                let schema = schema_errors(&validator, doc);
                if loader.is_empty() != want || schema.is_empty() != want {
                    disagreements.push_str(&format!(
                        "{doc:?}: loader {loader:?}, schema ({draft}) {schema:?}\n"
                    ));
                }
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements}");
    // Stricter than the loader, as `kpi validate` is: it refuses a computed dimension whose
    // name is not an identifier (`bad-name`), so editors may flag it too.
    let bad_dimension = "formula: count(*)\ndimensions: [{bad-name: x}]";
    assert_eq!(loader_faults(file, bad_dimension), Vec::<&str>::new());
    for (draft, validator) in validators() {
        assert!(
            !schema_errors(&validator, bad_dimension).is_empty(),
            "{draft} accepts a dimension named `bad-name`"
        );
    }
}
