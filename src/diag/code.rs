//! The registry of diagnostic codes: one per kind of fault, each with a stable identifier
//! (`KPI012`) that tools may match on and a kebab-case name people can read.
//!
//! Identifiers are never reused or renumbered: a retired code keeps its number. The list
//! in `docs/diagnostics.md` is generated from [`Code::ALL`] and a test keeps it current.

use std::fmt;

macro_rules! codes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $id:literal, $name:literal, $severity:ident; )*) => {
        /// A kind of diagnostic. See the module documentation for the stability contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( $(#[doc = $doc])+ $variant, )*
        }

        impl Code {
            /// Every code, in identifier order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable identifier, `KPI` and three digits.
            pub fn id(self) -> &'static str {
                match self { $(Code::$variant => $id,)* }
            }

            /// The kebab-case name (`unknown-key`), stable as well.
            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The severity a finding of this kind has unless the user promotes warnings.
            pub fn default_severity(self) -> super::Severity {
                match self { $(Code::$variant => super::Severity::$severity,)* }
            }

            /// One sentence saying what the code reports.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => concat!($($doc),+).trim(),)* }
            }
        }
    };
}

codes! {
    /// A metrics file or directory cannot be read.
    Io = "KPI001", "io", Error;
    /// A file is not valid YAML, or holds more than one document.
    YamlSyntax = "KPI002", "yaml-syntax", Error;
    /// A file or a value that must be a mapping of keys is something else.
    ExpectedMapping = "KPI003", "expected-mapping", Error;
    /// A key the language does not know (with the closest known key as help).
    UnknownKey = "KPI004", "unknown-key", Error;
    /// A mapping key that is not a plain name.
    BadKey = "KPI005", "bad-key", Error;
    /// A required key is missing.
    MissingKey = "KPI006", "missing-key", Error;
    /// A value of the wrong YAML type (a list where text is expected, …).
    WrongType = "KPI007", "wrong-type", Error;
    /// A value outside its enumeration (a unit, `at`, `empty`, a relationship).
    BadValue = "KPI008", "bad-value", Error;
    /// A grain that is not day, week, month, quarter or year.
    BadGrain = "KPI009", "bad-grain", Error;
    /// A window that is not one of the documented forms.
    BadWindow = "KPI010", "bad-window", Error;
    /// Two keys that exclude each other.
    ConflictingKeys = "KPI011", "conflicting-keys", Error;
    /// A metric, model, dimension or column name that is not a valid identifier.
    BadName = "KPI012", "bad-name", Error;
    /// Two metrics, models or dimensions with the same name.
    DuplicateName = "KPI020", "duplicate-name", Error;
    /// A reference to a metric that does not exist.
    UnknownMetric = "KPI021", "unknown-metric", Error;
    /// Metrics that refer to each other in a cycle.
    Cycle = "KPI022", "cycle", Error;
    /// A source, join or lookup naming a table or model that does not exist.
    UnknownTable = "KPI023", "unknown-table", Error;
    /// A table of the data root that cannot be opened as a relation.
    BadTable = "KPI024", "bad-table", Error;
    /// A join that cannot be built (joins itself, no columns).
    BadJoin = "KPI025", "bad-join", Error;
    /// A lookup that cannot be built.
    BadLookup = "KPI026", "bad-lookup", Error;
    /// A `$name` placeholder other than `$start`, `$end` and `$at`.
    UnknownPlaceholder = "KPI027", "unknown-placeholder", Error;
    /// A derived formula that refers to no metric.
    NoMetrics = "KPI028", "no-metrics", Error;
    /// SQL that does not parse.
    SqlSyntax = "KPI030", "sql-syntax", Error;
    /// SQL that parses but that a metric cannot use (a subquery, a window function, …).
    UnsupportedSql = "KPI031", "unsupported-sql", Error;
    /// SQL that DataFusion's planner rejects for another reason.
    SqlError = "KPI032", "sql-error", Error;
    /// A metric formula that does not aggregate rows.
    NotAggregate = "KPI040", "not-aggregate", Error;
    /// A column used outside an aggregate in a metric formula.
    BareColumn = "KPI041", "bare-column", Error;
    /// An aggregate inside another aggregate.
    NestedAggregate = "KPI042", "nested-aggregate", Error;
    /// An aggregate where values are computed per row (a filter, a dimension, a lookup's `on`).
    UnexpectedAggregate = "KPI043", "unexpected-aggregate", Error;
    /// Row-level keys or aggregates in a metric that has no `source`.
    NeedsSource = "KPI044", "needs-source", Error;
    /// A `prev`/`year_ago` offset that is not a positive integer literal.
    BadOffset = "KPI045", "bad-offset", Error;
    /// A metric whose source has no time column, where one is needed.
    MissingTime = "KPI046", "missing-time", Error;
    /// An `at:` metric whose source has no `active` condition.
    MissingActive = "KPI047", "missing-active", Error;
    /// An aggregate over a one-to-many join, which would count rows again per match.
    FanOut = "KPI048", "fan-out", Error;
    /// A column that the relation does not have.
    UnknownColumn = "KPI060", "unknown-column", Error;
    /// A column name that more than one joined relation has.
    AmbiguousColumn = "KPI061", "ambiguous-column", Error;
    /// An expression whose types do not fit (`sum` of text, comparing a date with a number).
    TypeError = "KPI062", "type-error", Error;
    /// A `--by` dimension that the metric does not have.
    UnknownDimension = "KPI063", "unknown-dimension", Error;
    /// A plan DataFusion could not build for a reason no other code names.
    Plan = "KPI069", "plan", Error;
    /// A metric without a `description`.
    MissingDescription = "KPI100", "missing-description", Warning;
    /// A model no metric reads, joins or looks up.
    UnusedModel = "KPI101", "unused-model", Warning;
    /// A division whose denominator can be zero, with no rule stated for that case.
    ZeroDenominator = "KPI102", "zero-denominator", Warning;
    /// A `median` or `count(distinct)` over `window: all`, whose memory grows with the data.
    UnboundedDistinct = "KPI103", "unbounded-distinct", Warning;
    /// A metric test file that cannot be run as written.
    BadTest = "KPI120", "bad-test", Error;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The Markdown table of every code, as `docs/diagnostics.md` lists it.
pub fn markdown_table() -> String {
    let mut s = String::from("| Code | Name | Severity | Reports |\n|---|---|---|---|\n");
    for c in Code::ALL {
        let sev = match c.default_severity() {
            super::Severity::Error => "error",
            super::Severity::Warning => "warning",
        };
        s.push_str(&format!(
            "| `{}` | `{}` | {sev} | {} |\n",
            c.id(),
            c.name(),
            c.summary()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_names_are_unique_and_well_formed() {
        let mut ids = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(ids.insert(c.id()), "{} twice", c.id());
            assert!(names.insert(c.name()), "{} twice", c.name());
            let digits = c.id().strip_prefix("KPI").expect("KPI prefix");
            assert!(digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()));
        }
        let sorted: Vec<_> = Code::ALL.iter().map(|c| c.id()).collect();
        assert!(sorted.is_sorted(), "keep Code::ALL in identifier order");
    }
}
