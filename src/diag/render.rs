//! Renderers: one per output format, each a pure function of diagnostics and sources.
//!
//! * [`human`]: rustc/ruff-style snippets with a caret under the offending characters;
//! * [`json`]: one object per diagnostic, positions resolved to line and column;
//! * [`github`]: GitHub Actions workflow commands, which annotate a pull request's diff.

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use super::{Diagnostic, LineCol, Severity, SourceDb};

/// Renders diagnostics as human-readable snippets, followed by a one-line summary.
pub fn human(diags: &[Diagnostic], db: &SourceDb, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let mut out = String::new();
    for d in diags {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let title = level.primary_title(d.message.as_str()).id(d.code);
        let mut g = if let Some(primary) = &d.primary {
            let file = db.file(primary.file);
            let path = file.path.to_string_lossy().into_owned();
            let mut snippet = Snippet::source(&*file.text)
                .path(path)
                .fold(true)
                .annotation(
                    AnnotationKind::Primary
                        .span(clamp(&file.text, &primary.span))
                        .label((!primary.message.is_empty()).then_some(primary.message.as_str())),
                );
            for s in d.secondary.iter().filter(|s| s.file == primary.file) {
                snippet = snippet.annotation(
                    AnnotationKind::Context
                        .span(clamp(&file.text, &s.span))
                        .label(s.message.as_str()),
                );
            }
            let mut g = title.element(snippet);
            for s in d.secondary.iter().filter(|s| s.file != primary.file) {
                let other = db.file(s.file);
                g = g.element(
                    Snippet::source(&*other.text)
                        .path(other.path.to_string_lossy().into_owned())
                        .fold(true)
                        .annotation(
                            AnnotationKind::Context
                                .span(clamp(&other.text, &s.span))
                                .label(s.message.as_str()),
                        ),
                );
            }
            g
        } else {
            Group::with_title(title)
        };
        for n in &d.notes {
            g = g.element(Level::NOTE.message(n.as_str()));
        }
        if let Some(h) = &d.help {
            g = g.element(Level::HELP.message(h.as_str()));
        }
        out.push_str(&renderer.render(&[g]));
        out.push_str("\n\n");
    }
    out
}

/// A one-line count of errors and warnings, e.g. `2 errors, 1 warning in 3 files`.
pub fn summary(diags: &[Diagnostic]) -> String {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, w: &str| {
        if n == 1 {
            format!("{n} {w}")
        } else {
            format!("{n} {w}s")
        }
    };
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

fn clamp(text: &str, span: &std::ops::Range<usize>) -> std::ops::Range<usize> {
    let start = span.start.min(text.len());
    let end = span.end.clamp(start, text.len());
    start..end
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    file: String,
    start: LineCol,
    end: LineCol,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    severity: Severity,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<JsonLabel<'a>>,
    related: Vec<JsonLabel<'a>>,
    notes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
}

fn json_label<'a>(db: &SourceDb, l: &'a super::Label) -> JsonLabel<'a> {
    let f = db.file(l.file);
    JsonLabel {
        file: f.path.to_string_lossy().into_owned(),
        start: f.line_col(l.span.start),
        end: f.line_col(l.span.end),
        message: &l.message,
    }
}

/// Renders diagnostics as a JSON array (pretty-printed, one object per diagnostic).
pub fn json(diags: &[Diagnostic], db: &SourceDb) -> String {
    let items: Vec<JsonDiagnostic<'_>> = diags
        .iter()
        .map(|d| JsonDiagnostic {
            severity: d.severity,
            code: d.code,
            message: &d.message,
            location: d.primary.as_ref().map(|l| json_label(db, l)),
            related: d.secondary.iter().map(|l| json_label(db, l)).collect(),
            notes: &d.notes,
            help: d.help.as_deref(),
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&items).expect("diagnostics serialize");
    s.push('\n');
    s
}

/// Renders diagnostics as GitHub Actions workflow commands (`::error file=…,line=…::…`).
pub fn github(diags: &[Diagnostic], db: &SourceDb) -> String {
    let mut out = String::new();
    for d in diags {
        let kind = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut message = d.message.clone();
        if let Some(p) = d.primary.as_ref().filter(|p| !p.message.is_empty()) {
            message.push_str(": ");
            message.push_str(&p.message);
        }
        if let Some(h) = &d.help {
            message.push_str(" (");
            message.push_str(h);
            message.push(')');
        }
        let message = escape_data(&message);
        match &d.primary {
            Some(p) => {
                let f = db.file(p.file);
                let (s, e) = (f.line_col(p.span.start), f.line_col(p.span.end));
                out.push_str(&format!(
                    "::{kind} file={},line={},col={},endLine={},endColumn={},title={}::{message}\n",
                    escape_property(&f.path.to_string_lossy()),
                    s.line,
                    s.column,
                    e.line,
                    e.column,
                    d.code
                ));
            }
            None => out.push_str(&format!("::{kind} title={}::{message}\n", d.code)),
        }
    }
    out
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
