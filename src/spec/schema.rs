//! The JSON Schema of metric and model files, for editors and linters.
//!
//! This module owns the schema's document types: a mirror of the YAML surface that
//! [`load`](super::load) reads by hand, written as Rust types only so that `schemars` can
//! derive the schema from them, doc comments becoming the descriptions editors show. Nothing
//! is ever deserialized into them; the loader stays the authority on what a file means. Tests
//! keep the mirror faithful: a unit test below holds each type's keys equal to the loader's
//! key lists, and `tests/it/schema.rs` holds the checked-in `schema/kpi-metric.schema.json`
//! equal to [`metric_schema_text`] and the schema's verdict equal to the loader's on every
//! fixture.
//!
//! The schema declares draft 2020-12 but uses only keywords draft 7 knows as well, because
//! VS Code's YAML support reads draft 7; the integration tests validate under both.
//!
//! The loader reads every YAML scalar as text, while editors (and the JSON a linter sees)
//! type `0` or `true` as a number or a boolean. SQL positions therefore accept any scalar,
//! since `filter: true` is SQL too; names and prose accept strings only.
//!
//! Optional keys carry `#[schemars(default)]`, which is how schemars learns a key may be left
//! out (an `Option` would also let the key be null, which the loader refuses for most keys).
//! That needs `Default` on the key's type; since no type here implements `Serialize`,
//! schemars cannot write that default into the schema, and does not.

use std::borrow::Cow;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use serde_json::{Map, Value};

/// The schema's `$id`: a name, not a location (the file ships in the repository).
pub const SCHEMA_ID: &str = "urn:kpi:schema:kpi-metric";

/// The JSON Schema (draft 2020-12) that every metric and model file under `metrics/` satisfies.
///
/// A file the loader faults (unknown key, wrong type, missing key, invalid enumeration value
/// or name) does not validate against it. A file `kpi validate` accepts does, unless it spells
/// what the loader forgives: a number or boolean where a name or prose goes (`tags: [2024]`),
/// an enumeration value in capitals (`grain: Month`), a name with non-ASCII letters, or a
/// model's `owner`/`tags` of another shape (the loader ignores them). Beyond the loader, as
/// validation does, it requires computed dimension names to be identifiers. Checks that need
/// other files or the data (unknown metrics, SQL, columns) are out of its reach. Object keys
/// are sorted, so the output does not depend on serde_json's `preserve_order` feature, which
/// a dependency may turn on in one build and not in another.
pub fn metric_schema() -> Value {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<KpiFile>();
    schema.insert("$id".into(), SCHEMA_ID.into());
    schema.insert("title".into(), "kpi metric or model file".into());
    tidy(schema.to_value())
}

/// [`metric_schema`] pretty-printed with a trailing newline: the exact bytes of
/// `schema/kpi-metric.schema.json` and of `kpi schema`'s output.
pub fn metric_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&metric_schema())
        .expect("a serde_json::Value always serializes");
    text.push('\n');
    text
}

/// `value` with every object's keys in lexical order, whatever map serde_json was built with,
/// and every description's wrapped doc-comment lines joined, since editors show them as text
/// where a lone line break is a break, not a space.
fn tidy(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::String(text) if k == "description" => {
                            let paragraphs: Vec<String> =
                                text.split("\n\n").map(|p| p.replace('\n', " ")).collect();
                            (k, Value::String(paragraphs.join("\n\n")))
                        }
                        v => (k, tidy(v)),
                    })
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(tidy).collect()),
        other => other,
    }
}

/// A metric file, or a model file: a file whose top level has `table:` or `sql:` is a model.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code, reason = "a document type is described, never built")]
enum KpiFile {
    Metric(Metric),
    Model(Model),
}

/// A KPI: an aggregate SQL formula over a source's rows in a period, or, without `source`,
/// a formula over other metrics by name (a derived metric).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code, reason = "a document type is described, never built")]
struct Metric {
    /// The metric's name, unique across the metrics directory (default: the file stem).
    #[schemars(default)]
    name: Name,
    #[schemars(flatten)]
    body: MetricBody,
}

/// A helper metric defined inline under a derived metric's `using:`, visible only to it;
/// its name is its key under `using:`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code, reason = "a document type is described, never built")]
struct InlineMetric {
    #[schemars(flatten)]
    body: MetricBody,
}

/// The keys a metric file and an inline metric share (every metric key but `name`).
#[derive(JsonSchema)]
#[allow(dead_code, reason = "a document type is described, never built")]
struct MetricBody {
    /// What the metric measures, in an analyst's words.
    #[schemars(default)]
    description: Text,
    /// How values are displayed; the formula computes the number itself (a `%` formula
    /// multiplies by 100).
    #[schemars(default)]
    unit: Unit,
    /// Who answers for the metric.
    #[schemars(default)]
    owner: Text,
    /// Words to find the metric by.
    #[schemars(default)]
    tags: List<Text>,
    /// The table of the data root or the model whose rows the formula aggregates; absent
    /// for a derived metric, whose formula combines other metrics.
    #[schemars(default)]
    source: Text,
    /// With a `source`: SQL over aggregate calls of the source's rows, e.g. `sum(amount)`.
    /// Without one: SQL over other metrics by name, with `prev(m [, n])` and `year_ago(m)`.
    formula: Sql,
    /// A SQL predicate on the source's rows, or a list of them that must all hold; may use
    /// joined columns, `$start` and `$end`, never an aggregate.
    #[schemars(default)]
    filter: List<Sql>,
    /// Same as `filter`; rows must satisfy both when both are given.
    #[schemars(default)]
    filters: List<Sql>,
    /// The timestamp that places a row in a period; overrides the model's `time`.
    #[schemars(default)]
    time: Sql,
    /// Count the rows active at the period's start or end (the model's `active` condition)
    /// instead of the rows whose time falls in the period. Excludes `time` and `window`.
    #[schemars(default)]
    at: At,
    /// Widens the rows a period sees, always ending at the period's end.
    #[schemars(default)]
    window: Window,
    /// The metric's default period length (`month` when absent); `kpi run --grain` overrides it.
    #[schemars(default)]
    grain: Grain,
    /// The grouping expression of a per-entity step (e.g. `customer_id`): `entity_columns`
    /// are computed per entity and period, then the formula aggregates over entities.
    #[schemars(default)]
    entity: Sql,
    /// Values computed per entity, by name: aggregate SQL over the entity's rows. The formula
    /// reads them as columns.
    #[schemars(default)]
    entity_columns: Named<Sql>,
    /// Values computed for each source row from the matching rows of another table, by name;
    /// the formula and filters read them as columns.
    #[schemars(default)]
    lookups: Named<Lookup>,
    /// Extra dimensions `kpi run --by` can slice this metric by, besides its model's.
    #[schemars(default)]
    dimensions: List<Dimension>,
    /// What a period with no rows yields, overriding the formula's own value over no rows.
    #[schemars(default)]
    empty: Empty,
    /// Helper metrics of a derived metric, by name, visible only to it.
    #[schemars(default)]
    using: Named<InlineMetric>,
}

/// A model: a table of the data root or a SQL query, with the default time column, joins and
/// dimensions of every metric that reads it. It has `table` or `sql`, not both.
#[derive(JsonSchema)]
#[schemars(
    deny_unknown_fields,
    extend("oneOf" = [{"required": ["table"]}, {"required": ["sql"]}])
)]
#[allow(dead_code, reason = "a document type is described, never built")]
struct Model {
    /// The model's name, which metrics use as their `source` (default: the file stem).
    #[schemars(default)]
    name: Name,
    /// What a row of the model is.
    #[schemars(default)]
    description: Text,
    /// Who answers for the model.
    #[schemars(default)]
    owner: Text,
    /// Words to find the model by.
    #[schemars(default)]
    tags: List<Text>,
    /// The table of the data root (`orders.csv`, `orders.parquet` or a folder `orders/`).
    #[schemars(default)]
    table: Text,
    /// A SQL query over tables of the data root, instead of a `table`.
    #[schemars(default)]
    sql: Sql,
    /// The column, or list of columns, that identifies a row; lookups join their values back
    /// on it (without one, rows are numbered at the cost of a sort).
    #[schemars(default)]
    key: List<Text>,
    /// The timestamp that places a row in a period, for every metric of this model.
    #[schemars(default)]
    time: Sql,
    /// Left joins to other tables or models, by target name (also its name in SQL).
    #[schemars(default)]
    joins: Named<Join>,
    /// What metrics of this model can be sliced by with `kpi run --by`.
    #[schemars(default)]
    dimensions: List<Dimension>,
    /// When a row is active at the instant `$at`, for metrics with `at:`; e.g.
    /// `started_at < $at and (cancelled_at is null or cancelled_at >= $at)`.
    #[schemars(default)]
    active: Sql,
    /// Column types, by column name (`{amount: double, ordered_at: timestamp}`). CSV is
    /// read with them instead of types guessed from its values, so a value that does not
    /// parse is reported with its file and line; Parquet files must hold these types (or
    /// narrower ones that widen without loss).
    #[schemars(default)]
    columns: Columns,
}

/// The value of `columns:`; its description is in the schema.
#[derive(Default)]
struct Columns;

impl JsonSchema for Columns {
    fn schema_name() -> Cow<'static, str> {
        "Columns".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = crate::spec::ColumnType::SPELLINGS.to_vec();
        json_schema!({
            "type": "object",
            "propertyNames": { "pattern": NAME_PATTERN },
            "additionalProperties": {
                "description": "A column type: integer, double, decimal, string, boolean, \
                    timestamp or date (or a synonym such as bigint, float or text).",
                "enum": names,
            },
        })
    }
}

/// A left join from a model to another table or model.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code, reason = "a document type is described, never built")]
struct Join {
    /// A column both sides share, a list of them, or a SQL condition naming both sides
    /// (`orders.customer_id = customers.customer_id`).
    on: JoinOn,
    /// How many rows of the target match one row of the model.
    relationship: Relationship,
}

/// A value computed per source row from the matching rows of another table; a row with no
/// match gets the empty-set value (0 for `count`/`sum`, else NULL).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code, reason = "a document type is described, never built")]
struct Lookup {
    /// The table (or model) whose rows are looked up.
    from: Text,
    /// The SQL condition a looked-up row must meet, naming both sides; bare names are the
    /// source's columns.
    on: Sql,
    /// An aggregate over the matching rows, e.g. `count(*)`; bare names are the looked-up
    /// table's columns.
    value: Sql,
}

/// How values are displayed: `count`, `currency`, `%` (or `percent`), `hours`, `days`, `ratio`.
#[derive(JsonSchema, Default)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "a document type is described, never built")]
enum Unit {
    #[default]
    Count,
    Currency,
    #[schemars(rename = "%")]
    Percent,
    #[schemars(rename = "percent")]
    PercentWord,
    Hours,
    Days,
    Ratio,
}

/// A calendar period length (the loader also takes the plural).
#[derive(JsonSchema, Default)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "a document type is described, never built")]
enum Grain {
    Day,
    Week,
    #[default]
    Month,
    Quarter,
    Year,
    Days,
    Weeks,
    Months,
    Quarters,
    Years,
}

/// The instant of the period a state metric looks at: `start` or `end`.
#[derive(JsonSchema, Default)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "a document type is described, never built")]
enum At {
    Start,
    #[default]
    End,
}

/// How many rows of a join's target match one row of the model: `many_to_one` (at most one,
/// e.g. orders → customers), `one_to_one`, or `one_to_many` (rows repeat after the join, so
/// `sum`, `count` and `avg` over joined rows are refused).
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code, reason = "a document type is described, never built")]
enum Relationship {
    ManyToOne,
    OneToOne,
    OneToMany,
}

/// SQL text. The loader reads any scalar as text, so a bare number or boolean is SQL too.
#[derive(Default)]
struct Sql;

impl JsonSchema for Sql {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Sql".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// A plain string: prose, or the name of a table, model or column.
#[derive(Default)]
struct Text;

impl JsonSchema for Text {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

/// The identifier the loader requires of `name:` (`is_identifier`), restricted to ASCII: the
/// loader also takes other Unicode letters, which JSON Schema regexes spell unportably.
const NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// A metric or model name: letters, digits and `_`, not starting with a digit.
#[derive(Default)]
struct Name;

impl JsonSchema for Name {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Name".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": NAME_PATTERN })
    }
}

/// The forms `Window::parse` accepts, in the spelling the docs teach (lower case).
const WINDOW_PATTERN: &str = r"^\s*(all|(week|month|quarter|year)s?_to_date|\+?0*[1-9][0-9]*\s+(period|day|week|month|quarter|year)s?)\s*$";

/// A `window:` value; its description is in the schema.
#[derive(Default)]
struct Window;

impl JsonSchema for Window {
    fn schema_name() -> Cow<'static, str> {
        "Window".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`N days|weeks|months|quarters|years` (the N units up to the \
                period's end), `N periods` (the period and the N-1 before it), \
                `year_to_date`, `quarter_to_date`, `month_to_date`, `week_to_date`, or `all` \
                (everything before the period's end).",
            "type": "string",
            "pattern": WINDOW_PATTERN,
            "examples": ["90 days", "2 periods", "year_to_date", "all"],
        })
    }
}

/// An `empty:` value. The loader also reads a YAML null (`empty: null` unquoted) and `0` as
/// the words `null` and `zero`, so the schema takes them too.
#[derive(Default)]
struct Empty;

impl JsonSchema for Empty {
    fn schema_name() -> Cow<'static, str> {
        "Empty".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`zero` or `null`: the value of a period with no rows.",
            "enum": ["zero", "null", null, 0, "0"],
        })
    }
}

/// One entry of `dimensions:`; its description is in the schema.
#[derive(Default)]
struct Dimension;

impl JsonSchema for Dimension {
    fn schema_name() -> Cow<'static, str> {
        "Dimension".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A column, a joined column (`customers.segment`, named \
                `segment`), or computed dimensions as `name: SQL`.",
            "anyOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "propertyNames": { "pattern": NAME_PATTERN },
                    "additionalProperties": generator.subschema_for::<Sql>(),
                },
            ],
        })
    }
}

/// How a join matches: one column name, a list of them, or a SQL condition.
struct JoinOn;

impl JsonSchema for JoinOn {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "JoinOn".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } },
            ],
        })
    }
}

/// One `T`, a list of them, or nothing: the loader reads a YAML null as an empty list.
struct List<T>(PhantomData<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(PhantomData)
    }
}

impl<T: JsonSchema> JsonSchema for List<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("List_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let item = generator.subschema_for::<T>();
        json_schema!({
            "anyOf": [
                item,
                { "type": "array", "items": item },
                { "type": "null" },
            ],
        })
    }
}

/// A mapping of names to `V`, or nothing: the loader reads a YAML null as an empty mapping.
struct Named<V>(PhantomData<V>);

impl<V> Default for Named<V> {
    fn default() -> Self {
        Named(PhantomData)
    }
}

impl<V: JsonSchema> JsonSchema for Named<V> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("Named_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["object", "null"],
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::spec::load::{JOIN_KEYS, LOOKUP_KEYS, METRIC_KEYS, MODEL_KEYS};

    /// The property names of `T`'s schema, flattened fields included.
    fn keys<T: JsonSchema>() -> BTreeSet<String> {
        let schema = SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<T>();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{} has no properties", T::schema_name()));
        properties.keys().cloned().collect()
    }

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn document_keys_are_the_loaders_keys() {
        assert_eq!(keys::<Metric>(), set(METRIC_KEYS), "metric file keys");
        assert_eq!(keys::<Model>(), set(MODEL_KEYS), "model file keys");
        assert_eq!(keys::<Lookup>(), set(LOOKUP_KEYS), "lookup keys");
        assert_eq!(keys::<Join>(), set(JOIN_KEYS), "join keys");
        // The loader reads an inline metric's name from its key under `using:` and reports
        // a `name:` inside it as unknown.
        let mut inline = set(METRIC_KEYS);
        inline.remove("name");
        assert_eq!(keys::<InlineMetric>(), inline, "inline metric keys");
    }

    /// Only the keys the loader requires are required, so a key list match cannot hide a
    /// forgotten `#[schemars(default)]`.
    #[test]
    fn required_keys_are_the_loaders_required_keys() {
        let required = |schema: Schema| -> BTreeSet<String> {
            schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let root = |f: fn(&mut SchemaGenerator) -> Schema| {
            f(&mut SchemaSettings::draft2020_12().into_generator())
        };
        assert_eq!(required(root(Metric::json_schema)), set(&["formula"]));
        assert_eq!(required(root(InlineMetric::json_schema)), set(&["formula"]));
        assert_eq!(required(root(Model::json_schema)), set(&[]));
        assert_eq!(required(root(Lookup::json_schema)), set(LOOKUP_KEYS));
        assert_eq!(required(root(Join::json_schema)), set(JOIN_KEYS));
    }

    #[test]
    fn text_is_the_pretty_schema_with_a_final_newline() {
        let text = metric_schema_text();
        assert!(text.ends_with("}\n") && !text.ends_with("\n\n"));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, metric_schema());
        assert_eq!(parsed["$id"], SCHEMA_ID);
        assert_eq!(
            parsed["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }
}
