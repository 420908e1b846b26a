//! The JSON format: a versioned document whose schema `docs/diagnostics.md` documents.
//! Fields are only ever added; a breaking change would bump `version`.

use serde::Serialize;

use super::{Diagnostic, Severity, SourceDb, resolve};
use crate::diag::Label;

/// The format's version, the document's first field.
pub const JSON_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    summary: Summary,
    diagnostics: Vec<Item<'a>>,
}

#[derive(Serialize)]
struct Summary {
    errors: usize,
    warnings: usize,
}

/// A position range; `end_*` is the position just after the last character, as in LSP.
#[derive(Serialize)]
struct Location<'a> {
    file: String,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    /// The text drawn under the range, if any.
    #[serde(skip_serializing_if = "str::is_empty")]
    label: &'a str,
}

#[derive(Serialize)]
struct Item<'a> {
    code: &'static str,
    name: &'static str,
    severity: Severity,
    message: &'a str,
    /// Flattened so that `file`, `line`, … sit on the diagnostic itself; all absent for a
    /// finding that belongs to no file.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    location: Option<Location<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notes: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related: Vec<Location<'a>>,
}

fn location<'a>(db: &SourceDb, l: &'a Label) -> Location<'a> {
    let r = resolve(db, l);
    Location {
        file: r.file,
        line: r.start.line,
        column: r.start.column,
        end_line: r.end.line,
        end_column: r.end.column,
        label: &l.message,
    }
}

/// Renders diagnostics as one pretty-printed JSON document ending in a newline.
pub fn json(diags: &[Diagnostic], db: &SourceDb) -> String {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let doc = Document {
        version: JSON_VERSION,
        summary: Summary {
            errors,
            warnings: diags.len() - errors,
        },
        diagnostics: diags
            .iter()
            .map(|d| Item {
                code: d.code.id(),
                name: d.code.name(),
                severity: d.severity,
                message: &d.message,
                location: d.primary.as_ref().map(|l| location(db, l)),
                help: d.help.as_deref(),
                notes: &d.notes,
                related: d.secondary.iter().map(|l| location(db, l)).collect(),
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("diagnostics serialize");
    s.push('\n');
    s
}
