//! GitHub Actions workflow commands: `::error file=…,line=…,col=…::message`, which GitHub
//! shows as annotations on the pull request's diff.

use super::{Diagnostic, Severity, SourceDb, resolve};

/// Renders one workflow command per diagnostic. The code goes in the annotation's title;
/// the primary label and the help are appended to the message.
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
        let title = escape_property(&format!("{} {}", d.code.id(), d.code.name()));
        match &d.primary {
            Some(p) => {
                let r = resolve(db, p);
                out.push_str(&format!(
                    "::{kind} file={},line={},col={},endLine={},endColumn={},title={title}::{message}\n",
                    escape_property(&r.file),
                    r.start.line,
                    r.start.column,
                    r.end.line,
                    r.end.column,
                ));
            }
            None => out.push_str(&format!("::{kind} title={title}::{message}\n")),
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
