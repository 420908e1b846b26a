//! Renderers: one per output format, each a pure function of diagnostics and sources.
//!
//! * [`human`]: rustc/ruff-style snippets with a caret under the offending characters;
//! * [`json`]: a versioned document, one flat object per diagnostic (schema in
//!   `docs/diagnostics.md`);
//! * [`github`]: GitHub Actions workflow commands, which annotate a pull request's diff;
//! * [`sarif`]: SARIF 2.1.0, for code-scanning uploads.

mod github;
mod json;
mod sarif;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

pub use github::github;
pub use json::json;
pub use sarif::sarif;

use super::{Diagnostic, Label, LineCol, Severity, SourceDb};

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
        let title = level.primary_title(d.message.as_str()).id(d.code.id());
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

/// `span` inside `text` and on character boundaries (start moved back, end forward), so
/// that the renderer can slice it: a span that splits a character (found by `fuzz/`'s
/// `yaml_loader` on a file with invalid UTF-8 replaced) must not crash the report.
fn clamp(text: &str, span: &std::ops::Range<usize>) -> std::ops::Range<usize> {
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// A label's file and its start and end (exclusive) resolved to line and column.
pub(crate) struct Resolved {
    pub file: String,
    pub start: LineCol,
    pub end: LineCol,
}

pub(crate) fn resolve(db: &SourceDb, l: &Label) -> Resolved {
    let f = db.file(l.file);
    Resolved {
        // Forward slashes on every platform: annotations and SARIF take URIs.
        file: f.path.to_string_lossy().replace('\\', "/"),
        start: f.line_col(l.span.start),
        end: f.line_col(l.span.end),
    }
}
