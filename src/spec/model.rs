//! The typed model of metric and model files, as written (not yet checked against each other).

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use super::yaml::Text;
use crate::diag::FileId;

/// A value with the byte range of the YAML node it came from.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Range<usize>) -> Self {
        Spanned { value, span }
    }
}

/// Everything loaded from a metrics directory.
#[derive(Debug, Default)]
pub struct Specs {
    pub metrics: Vec<MetricSpec>,
    pub models: Vec<ModelSpec>,
}

/// A calendar period length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Grain {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Grain {
    pub const NAMES: [&'static str; 5] = ["day", "week", "month", "quarter", "year"];

    pub fn parse(s: &str) -> Option<Grain> {
        Some(match s.trim().to_ascii_lowercase().trim_end_matches('s') {
            "day" => Grain::Day,
            "week" => Grain::Week,
            "month" => Grain::Month,
            "quarter" => Grain::Quarter,
            "year" => Grain::Year,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Grain::NAMES[self as usize]
    }
}

impl fmt::Display for Grain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rows count for a period `P = [start, end)`, beyond the period itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// `[end - n units, end)`, units in the calendar of the run's time zone.
    Trailing { n: u32, unit: Grain },
    /// The `n` periods ending with `P`: `[start of P-(n-1), end)`.
    Periods(u32),
    /// From the start of `P`'s enclosing `grain` to `end` (year to date, …).
    ToDate(Grain),
    /// Everything before `end`.
    All,
}

impl Window {
    pub const FORMS: &'static str = "`N days|weeks|months|quarters|years`, `N periods`, \
        `year_to_date`, `quarter_to_date`, `month_to_date`, `week_to_date` or `all`";

    pub fn parse(s: &str) -> Option<Window> {
        let s = s.trim().to_ascii_lowercase();
        if s == "all" {
            return Some(Window::All);
        }
        if let Some(g) = s.strip_suffix("_to_date") {
            return Grain::parse(g)
                .filter(|g| *g != Grain::Day)
                .map(Window::ToDate);
        }
        let (n, unit) = s.split_once(char::is_whitespace)?;
        let n: u32 = n.parse().ok().filter(|n| *n > 0)?;
        let unit = unit.trim();
        if unit == "period" || unit == "periods" {
            return Some(Window::Periods(n));
        }
        Grain::parse(unit).map(|unit| Window::Trailing { n, unit })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Trailing { n, unit } => {
                write!(f, "{n} {unit}{}", if *n == 1 { "" } else { "s" })
            }
            Window::Periods(n) => write!(f, "{n} period{}", if *n == 1 { "" } else { "s" }),
            Window::ToDate(g) => write!(f, "{g}_to_date"),
            Window::All => f.write_str("all"),
        }
    }
}

/// The instant of a period at which a state metric looks at its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum At {
    Start,
    End,
}

/// What a metric's value means; decides display and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Count,
    Currency,
    Percent,
    Hours,
    Days,
    Ratio,
}

impl Unit {
    pub const NAMES: [&'static str; 7] = [
        "count", "currency", "%", "percent", "hours", "days", "ratio",
    ];

    pub fn parse(s: &str) -> Option<Unit> {
        Some(match s.trim() {
            "count" => Unit::Count,
            "currency" => Unit::Currency,
            "%" | "percent" => Unit::Percent,
            "hours" => Unit::Hours,
            "days" => Unit::Days,
            "ratio" => Unit::Ratio,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Currency => "currency",
            Unit::Percent => "%",
            Unit::Hours => "hours",
            Unit::Days => "days",
            Unit::Ratio => "ratio",
        }
    }
}

/// What a period with no rows yields, when the formula's own rule is not wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    Zero,
    Null,
}

/// A dimension: a name users type after `--by`, and the SQL that computes it per row.
#[derive(Debug, Clone)]
pub struct DimensionSpec {
    pub name: Spanned<String>,
    pub expr: Text,
}

/// How many rows of a join's target match one row of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    ManyToOne,
    OneToOne,
    OneToMany,
}

impl Relationship {
    pub const NAMES: [&'static str; 3] = ["many_to_one", "one_to_one", "one_to_many"];

    pub fn parse(s: &str) -> Option<Relationship> {
        Some(match s.trim() {
            "many_to_one" => Relationship::ManyToOne,
            "one_to_one" => Relationship::OneToOne,
            "one_to_many" => Relationship::OneToMany,
            _ => return None,
        })
    }

    /// Whether a row of the model can appear several times after the join.
    pub fn fans_out(self) -> bool {
        self == Relationship::OneToMany
    }
}

/// How a join matches rows.
#[derive(Debug, Clone)]
pub enum JoinOn {
    /// Equal values of columns with the same name on both sides.
    Columns(Vec<Spanned<String>>),
    /// A SQL condition naming both sides by their relation names.
    Condition(Text),
}

/// A left join from a model to another table or model.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// The joined table or model, which is also its name in SQL.
    pub target: Spanned<String>,
    pub on: JoinOn,
    pub relationship: Spanned<Relationship>,
    /// The whole join entry, for messages.
    pub span: Range<usize>,
}

/// A named relation metrics read: a table of the data root or a SQL query, with joins,
/// dimensions and, for stateful entities, the condition that makes a row active at `$at`.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub file: FileId,
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub table: Option<Spanned<String>>,
    pub sql: Option<Text>,
    pub key: Vec<Spanned<String>>,
    pub time: Option<Text>,
    pub joins: Vec<JoinSpec>,
    pub dimensions: Vec<DimensionSpec>,
    pub active: Option<Text>,
    /// Declared column types (`columns:`), in file order: the table is read with them,
    /// not with types guessed from its values.
    pub columns: Vec<(Spanned<String>, Spanned<ColumnType>)>,
}

/// The type a model declares for a column (`columns: {amount: double}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// A 64-bit signed integer; narrower integers on disk widen to it.
    Integer,
    /// A 64-bit float; 32-bit floats and integers on disk widen to it.
    Double,
    /// A decimal of up to 38 digits, 10 after the point.
    Decimal,
    /// UTF-8 text.
    String,
    /// `true`/`false`.
    Boolean,
    /// An instant, read in microseconds, UTC; a zone-less timestamp on disk means UTC.
    Timestamp,
    /// A calendar date.
    Date,
}

impl ColumnType {
    /// The canonical names, in the order of the variants.
    pub const NAMES: [&'static str; 7] = [
        "integer",
        "double",
        "decimal",
        "string",
        "boolean",
        "timestamp",
        "date",
    ];

    /// Every spelling [`ColumnType::parse`] reads (in lower case).
    pub const SPELLINGS: [&'static str; 20] = [
        "integer",
        "int",
        "int64",
        "bigint",
        "long",
        "double",
        "float",
        "float64",
        "real",
        "decimal",
        "numeric",
        "string",
        "text",
        "utf8",
        "varchar",
        "boolean",
        "bool",
        "timestamp",
        "datetime",
        "date",
    ];

    /// Reads a canonical name or a common synonym (`bigint`, `int64`, `float`, `text`, …).
    pub fn parse(s: &str) -> Option<ColumnType> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "integer" | "int" | "int64" | "bigint" | "long" => ColumnType::Integer,
            "double" | "float" | "float64" | "real" => ColumnType::Double,
            "decimal" | "numeric" => ColumnType::Decimal,
            "string" | "text" | "utf8" | "varchar" => ColumnType::String,
            "boolean" | "bool" => ColumnType::Boolean,
            "timestamp" | "datetime" => ColumnType::Timestamp,
            "date" => ColumnType::Date,
            _ => return None,
        })
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        ColumnType::NAMES[self as usize]
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value computed for each source row from matching rows of another relation.
#[derive(Debug, Clone)]
pub struct LookupSpec {
    pub name: Spanned<String>,
    pub from: Spanned<String>,
    pub on: Text,
    pub value: Text,
}

/// One metric as written in its file (or inline under a derived metric's `using:`).
#[derive(Debug, Clone)]
pub struct MetricSpec {
    pub file: FileId,
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub unit: Option<Spanned<Unit>>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub source: Option<Spanned<String>>,
    pub formula: Text,
    pub filters: Vec<Text>,
    pub time: Option<Text>,
    pub at: Option<Spanned<At>>,
    pub window: Option<Spanned<Window>>,
    pub grain: Option<Spanned<Grain>>,
    pub entity: Option<Text>,
    pub entity_columns: Vec<(Spanned<String>, Text)>,
    pub lookups: Vec<LookupSpec>,
    pub dimensions: Vec<DimensionSpec>,
    pub empty: Option<Spanned<Empty>>,
    pub using: Vec<MetricSpec>,
    /// The key whose node spans the whole metric (for "defined here" labels).
    pub span: Range<usize>,
}

#[cfg(test)]
mod tests {
    use super::ColumnType;

    #[test]
    fn every_spelling_reads_and_every_type_has_its_name_among_them() {
        for s in ColumnType::SPELLINGS {
            assert!(ColumnType::parse(s).is_some(), "{s}");
        }
        for n in ColumnType::NAMES {
            assert_eq!(ColumnType::parse(n).map(ColumnType::name), Some(n));
            assert!(ColumnType::SPELLINGS.contains(&n));
        }
        assert_eq!(ColumnType::parse("money"), None);
    }
}
