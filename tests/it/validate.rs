//! `kpi validate` for CI: every output format on a folder of broken specs, warnings and
//! `--deny-warnings`, and the code list in `docs/diagnostics.md`.

use crate::cli::kpi;

/// 1-based (line, column) of the first `needle` in a fixture file, found independently
/// of kpi's own position mapping.
fn position(file: &str, needle: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(crate::repo(file)).unwrap();
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} in {file}"));
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line as u64, column as u64)
}

#[test]
fn every_format_renders_the_broken_folder() {
    for format in ["human", "json", "github", "sarif"] {
        let (code, out, _) = kpi(&["validate", "--metrics", "tests/formats", "--format", format]);
        assert_eq!(code, 1, "{format}");
        insta::assert_snapshot!(format!("formats_{format}"), out);
    }
}

#[test]
fn json_positions_are_those_of_the_fixture_text() {
    let (_, out, _) = kpi(&["validate", "--metrics", "tests/formats", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["summary"]["errors"], 2);
    assert_eq!(v["summary"]["warnings"], 2);
    let by_code = |c: &str| -> &serde_json::Value {
        v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["code"] == c)
            .unwrap_or_else(|| panic!("{c} in {out}"))
    };
    let unknown = by_code("KPI004");
    assert_eq!(unknown["name"], "unknown-key");
    assert_eq!(unknown["severity"], "error");
    assert_eq!(unknown["file"], "tests/formats/revenue.yaml");
    let (line, col) = position("tests/formats/revenue.yaml", "filtres");
    assert_eq!(
        (unknown["line"].as_u64(), unknown["column"].as_u64()),
        (Some(line), Some(col))
    );
    // The range ends just after `filtres`, exclusive.
    assert_eq!(unknown["end_line"].as_u64(), Some(line));
    assert_eq!(unknown["end_column"].as_u64(), Some(col + 7));
    assert!(unknown["label"].as_str().unwrap().contains("filters"));

    let cycle = by_code("KPI022");
    assert_eq!(cycle["related"].as_array().unwrap().len(), 1);
    assert_eq!(cycle["related"][0]["file"], "tests/formats/b.yaml");
    let (line, col) = position("tests/formats/b.yaml", "a\n");
    assert_eq!(cycle["related"][0]["line"].as_u64(), Some(line));
    assert_eq!(cycle["related"][0]["column"].as_u64(), Some(col));

    let zero = by_code("KPI102");
    assert_eq!(zero["severity"], "warning");
    let (line, col) = position("tests/formats/paid_share.yaml", "/ count(*)");
    assert_eq!(
        (zero["line"].as_u64(), zero["column"].as_u64()),
        (Some(line), Some(col + 2))
    );
    // The whole call is underlined, not only its name.
    assert_eq!(
        zero["end_column"].as_u64(),
        Some(col + 2 + "count(*)".len() as u64)
    );
    assert!(
        zero["help"]
            .as_str()
            .unwrap()
            .contains("nullif(count(*), 0)")
    );
}

#[test]
fn github_and_sarif_carry_codes_and_positions() {
    let (_, out, _) = kpi(&[
        "validate",
        "--metrics",
        "tests/formats",
        "--format",
        "github",
    ]);
    let (line, col) = position("tests/formats/revenue.yaml", "filtres");
    assert!(
        out.contains(&format!(
            "::error file=tests/formats/revenue.yaml,line={line},col={col},endLine={line},endColumn={},title=KPI004 unknown-key::",
            col + 7
        )),
        "{out}"
    );
    assert!(
        out.contains("::warning file=tests/formats/paid_share.yaml,"),
        "{out}"
    );

    let (_, out, _) = kpi(&[
        "validate",
        "--metrics",
        "tests/formats",
        "--format",
        "sarif",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for r in results {
        // Every result points at the rule that describes it.
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
    }
    let unknown = results.iter().find(|r| r["ruleId"] == "KPI004").unwrap();
    assert_eq!(unknown["level"], "error");
    let region = &unknown["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"].as_u64(), Some(line));
    assert_eq!(region["startColumn"].as_u64(), Some(col));
    assert_eq!(region["endColumn"].as_u64(), Some(col + 7));
    assert_eq!(
        unknown["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "tests/formats/revenue.yaml"
    );
}

#[test]
fn warnings_pass_unless_denied() {
    let (code, out, _) = kpi(&["validate", "--metrics", "tests/warnings"]);
    assert_eq!(code, 0, "{out}");
    insta::assert_snapshot!("warnings_human", out);
    let (code, out, _) = kpi(&[
        "validate",
        "--metrics",
        "tests/warnings",
        "--deny-warnings",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut codes: Vec<&str> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(
                d["severity"], "error",
                "denied warnings are reported as errors"
            );
            d["name"].as_str().unwrap()
        })
        .collect();
    codes.sort();
    // One of each warning, and a second zero denominator (the derived ratio); the ratio
    // that wraps its denominator in nullif draws none.
    assert_eq!(
        codes,
        [
            "missing-description",
            "unbounded-distinct",
            "unused-model",
            "zero-denominator",
            "zero-denominator"
        ]
    );
    assert!(!out.contains("safe_ratio"), "{out}");
}

#[test]
fn shipped_catalogue_has_no_warnings() {
    let (code, out, err) = kpi(&["validate", "--deny-warnings"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn docs_list_every_code() {
    let path = crate::repo("docs/diagnostics.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (start, end) = ("<!-- codes:start -->\n", "<!-- codes:end -->");
    let s = doc.find(start).expect("start marker") + start.len();
    let e = doc.find(end).expect("end marker");
    let table = kpi::diag::markdown_table();
    if doc[s..e] != table {
        if std::env::var_os("KPI_UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{table}{}", &doc[..s], &doc[e..])).unwrap();
        } else {
            panic!("docs/diagnostics.md lists other codes; rerun with KPI_UPDATE_DOCS=1");
        }
    }
}
