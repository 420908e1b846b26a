//! SARIF 2.1.0 (the OASIS static-analysis results format), which GitHub code scanning and
//! other tools ingest. Every [`Code`] is a rule of the run's tool, so viewers can show each
//! code's summary and default level; results point at rules by id and index.

use serde_json::{Value, json};

use super::{Diagnostic, Severity, SourceDb, resolve};
use crate::diag::{Code, Label};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn location(db: &SourceDb, l: &Label) -> Value {
    let r = resolve(db, l);
    let mut loc = json!({
        "physicalLocation": {
            // Relative to the directory kpi ran in, which in CI is the repository's root.
            "artifactLocation": { "uri": r.file, "uriBaseId": "%SRCROOT%" },
            "region": {
                "startLine": r.start.line,
                "startColumn": r.start.column,
                "endLine": r.end.line,
                "endColumn": r.end.column,
            }
        }
    });
    if !l.message.is_empty() {
        loc["message"] = json!({ "text": l.message });
    }
    loc
}

/// Renders diagnostics as one SARIF 2.1.0 log with a single run.
pub fn sarif(diags: &[Diagnostic], db: &SourceDb) -> String {
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|c| {
            json!({
                "id": c.id(),
                "name": c.name(),
                "shortDescription": { "text": c.summary() },
                "defaultConfiguration": { "level": level(c.default_severity()) },
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let mut text = d.message.clone();
            if let Some(h) = &d.help {
                text.push_str("\nhelp: ");
                text.push_str(h);
            }
            for n in &d.notes {
                text.push_str("\nnote: ");
                text.push_str(n);
            }
            let mut r = json!({
                "ruleId": d.code.id(),
                "ruleIndex": Code::ALL.iter().position(|c| *c == d.code),
                "level": level(d.severity),
                "message": { "text": text },
            });
            if let Some(p) = &d.primary {
                r["locations"] = json!([location(db, p)]);
            }
            if !d.secondary.is_empty() {
                r["relatedLocations"] = d
                    .secondary
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let mut v = location(db, l);
                        v["id"] = json!(i);
                        v
                    })
                    .collect();
            }
            r
        })
        .collect();
    let log = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "kpi",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    let mut s = serde_json::to_string_pretty(&log).expect("SARIF serializes");
    s.push('\n');
    s
}
