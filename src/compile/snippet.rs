//! Planning one SQL snippet into a DataFusion [`Expr`] against a relation's schema, with
//! kpi's name rules, and turning DataFusion's errors back into positioned diagnostics.

use std::collections::HashSet;
use std::sync::LazyLock;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::{DFSchema, DataFusionError, SchemaError};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::sql::sqlparser::ast::ExprWithAlias;

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::source::utc_timestamp;
use crate::sql::{self, Facts, Sql};

/// The relation name of the period being computed, as placeholders are rewritten to it.
pub const PERIOD: &str = "__period";

/// The columns of [`PERIOD`]: its bounds, and the instant of a state metric.
pub static PERIOD_SCHEMA: LazyLock<DFSchema> = LazyLock::new(|| {
    let schema = Schema::new(vec![
        Field::new("start", utc_timestamp(), false),
        Field::new("end", utc_timestamp(), false),
        Field::new("at", utc_timestamp(), false),
    ]);
    DFSchema::try_from_qualified_schema(PERIOD, &schema).expect("period schema")
});

/// Where a snippet's names resolve: a schema, and the relation that bare names belong to
/// first when it has a column of that name.
pub struct Scope<'a> {
    pub schema: &'a DFSchema,
    pub first: &'a str,
    pub first_columns: &'a HashSet<String>,
    /// The data behind the scope's columns, to say why a column was read as text.
    pub origins: Option<&'a crate::source::Origins>,
}

/// Plans `sql` in `scope`, checking its types. Placeholders become [`PERIOD`] columns.
pub fn plan(state: &SessionState, sql: &Sql, scope: &Scope<'_>) -> Result<Expr, Diagnostic> {
    let mut ast = sql.ast.clone();
    sql::replace_placeholders(&mut ast, &|p| {
        let col = p.strip_prefix('$')?;
        ["start", "end", "at"]
            .contains(&col)
            .then(|| sql::compound(PERIOD, col))
    });
    sql::qualify(&mut ast, scope.first, &|name| {
        scope.first_columns.contains(name)
    });
    let schema = scope
        .schema
        .join(&PERIOD_SCHEMA)
        .unwrap_or_else(|_| scope.schema.clone());
    let expr = state
        .create_logical_expr_from_sql_expr(
            ExprWithAlias {
                expr: ast,
                alias: None,
            },
            &schema,
        )
        .map_err(|e| error(sql, &e))?;
    if let Err(e) = expr.get_type(&schema) {
        return Err(locate_type_error(state, sql, scope, &e).unwrap_or_else(|| error(sql, &e)));
    }
    Ok(expr)
}

/// For "function X does not accept type T" errors, finds the call of X whose argument has
/// type T, and says so in a sentence.
fn locate_type_error(
    state: &SessionState,
    sql: &Sql,
    scope: &Scope<'_>,
    e: &DataFusionError,
) -> Option<Diagnostic> {
    let text = e.to_string();
    let (_, after) = text.split_once("(DataType: ")?;
    let found = after.split(')').next()?.to_string();
    let facts = Facts::of(&sql.ast);
    for call in &facts.calls {
        if !text.contains(&format!("'{}'", call.name)) {
            continue;
        }
        for arg in &call.args {
            let sub = Sql {
                text: sql.text.clone(),
                ast: arg.clone(),
            };
            let Ok(planned) = plan(state, &sub, scope) else {
                continue;
            };
            let schema = scope.schema.join(&PERIOD_SCHEMA).ok()?;
            if planned
                .get_type(&schema)
                .is_ok_and(|t| t.to_string() == found)
            {
                let causes: Vec<String> = match scope.origins {
                    Some(o) if found.contains("Utf8") => planned
                        .column_refs()
                        .into_iter()
                        .filter_map(|c| o.why_text(c.relation.as_ref().map(|r| r.table()), &c.name))
                        .collect(),
                    _ => vec![],
                };
                return Some(
                    Diagnostic::error(
                        Code::TypeError,
                        format!("`{}` cannot take a {found} argument", call.name),
                    )
                    .at(sql.text.file, sql.span_of(arg), format!("this is {found}"))
                    .also(sql.text.file, sql.span(call.span), "")
                    .help(format!(
                        "`{}` needs a numeric argument; filter or cast the column",
                        call.name
                    ))
                    .notes(causes),
                );
            }
        }
    }
    None
}

/// Turns a DataFusion error about `sql` into a diagnostic at the offending token.
pub fn error(sql: &Sql, e: &DataFusionError) -> Diagnostic {
    let file = sql.text.file;
    let span_hint = e.diagnostic().and_then(|d| d.span).map(|s| {
        // DataFusion's spans are sqlparser's, inside the snippet.
        let s = datafusion::sql::sqlparser::tokenizer::Span::new(
            datafusion::sql::sqlparser::tokenizer::Location::new(s.start.line, s.start.column),
            datafusion::sql::sqlparser::tokenizer::Location::new(s.end.line, s.end.column),
        );
        sql.span(s)
    });
    let facts = Facts::of(&sql.ast);
    if let DataFusionError::SchemaError(err, _) = e.find_root() {
        if let SchemaError::FieldNotFound {
            field,
            valid_fields,
        } = err.as_ref()
        {
            let name = field.name().to_string();
            let qualifier = field.relation.as_ref().map(|r| r.to_string());
            let shown = match &qualifier {
                Some(q) => format!("{q}.{name}"),
                None => name.clone(),
            };
            let candidates: Vec<String> = valid_fields
                .iter()
                .filter(|c| {
                    c.relation.as_ref().map(|r| r.to_string()) == qualifier || qualifier.is_none()
                })
                .filter(|c| {
                    !c.name.starts_with("__")
                        && c.relation.as_ref().is_none_or(|r| r.table() != PERIOD)
                })
                .map(|c| c.name.clone())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let span = span_hint.or_else(|| {
                facts
                    .columns
                    .iter()
                    .find(|c| c.parts.last() == Some(&name))
                    .map(|c| sql.span(c.span))
            });
            let mut sorted = candidates.clone();
            sorted.sort();
            let d = Diagnostic::error(Code::UnknownColumn, format!("unknown column `{shown}`")).at(
                file,
                span.unwrap_or_else(|| sql.text.span.clone()),
                did_you_mean(&name, candidates.iter().map(String::as_str))
                    .unwrap_or_else(|| "not in the data".into()),
            );
            return if sorted.is_empty() {
                d
            } else {
                d.note(format!("columns here: {}", sorted.join(", ")))
            };
        }
        if let SchemaError::AmbiguousReference { field } = err.as_ref() {
            let span = facts
                .columns
                .iter()
                .find(|c| c.parts.last() == Some(&field.name))
                .map(|c| sql.span(c.span));
            return Diagnostic::error(
                Code::AmbiguousColumn,
                format!("column `{}` exists in several joined tables", field.name),
            )
            .at(file, span.unwrap_or_else(|| sql.text.span.clone()), "")
            .help("qualify it with its table's name, e.g. `customers.region`");
        }
    }
    let message = clean_message(&e.find_root().to_string());
    // Point at the call the message is about, when it names one.
    let span = span_hint.or_else(|| {
        facts
            .calls
            .iter()
            .find(|c| {
                message.contains(&format!("'{}'", c.name))
                    || message.contains(&format!("{}(", c.name))
                    || message.contains(&format!("`{}`", c.name))
            })
            .map(|c| sql.span(c.span))
    });
    let code = if message.contains("oerc") || message.contains("type") || message.contains("Type") {
        Code::TypeError
    } else {
        Code::SqlError
    };
    Diagnostic::error(code, message).at(file, span.unwrap_or_else(|| sql.text.span.clone()), "")
}

/// DataFusion's error text without its layer prefixes.
pub fn clean_message(s: &str) -> String {
    let mut s = s.lines().next().unwrap_or("").to_string();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "Execution error: ",
        "Optimizer rule ",
        "type_coercion\ncaused by\n",
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.to_string();
        }
    }
    s
}

/// Column names of a relation's fields that carry `qualifier`.
pub fn columns_of(schema: &DFSchema, qualifier: &str) -> HashSet<String> {
    schema
        .iter()
        .filter(|(q, _)| q.is_some_and(|q| q.table() == qualifier))
        .map(|(_, f)| f.name().clone())
        .collect()
}
