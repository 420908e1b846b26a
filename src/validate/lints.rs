//! Warnings: definitions that are valid and run, but that a reviewer would question. They
//! run on the checked catalogue, after every error check; `--deny-warnings` makes them fail.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, BinaryOperator, Expr, Spanned as _, Visit, Visitor};

use super::{Catalog, Kind, Metric};
use crate::diag::{Code, Diagnostic};
use crate::spec::Window;
use crate::sql::{Facts, Sql, function_name};

/// Adds every warning about `cat` to `diags`.
pub fn lint(cat: &Catalog, diags: &mut Vec<Diagnostic>) {
    for m in cat.metrics.iter() {
        missing_description(m, diags);
        zero_denominators(m, diags);
        unbounded_distinct(m, diags);
    }
    // A metric that failed its checks cannot say which models it reads.
    if !diags.iter().any(Diagnostic::is_error) {
        unused_models(cat, diags);
    }
}

fn missing_description(m: &Metric, diags: &mut Vec<Diagnostic>) {
    // Inline helpers are documented by the metric they serve.
    if !m.public
        || m.spec
            .description
            .as_deref()
            .is_some_and(|d| !d.trim().is_empty())
    {
        return;
    }
    let span = if m.spec.name.span.is_empty() {
        m.spec.span.start..m.spec.span.start
    } else {
        m.spec.name.span.clone()
    };
    diags.push(
        Diagnostic::warning(
            Code::MissingDescription,
            format!("metric `{}` has no description", m.name),
        )
        .at(m.file(), span, "")
        .help("add `description:` saying what the metric counts; `kpi list` and reviewers read it"),
    );
}

fn zero_denominators(m: &Metric, diags: &mut Vec<Diagnostic>) {
    let (formula, stated) = match &m.kind {
        Kind::Aggregate(a) => (&a.formula, m.spec.empty.is_some()),
        Kind::Derived(d) => (&d.formula, false),
    };
    if stated {
        return;
    }
    let mut v = Divisions(Vec::new());
    let _ = formula.ast.visit(&mut v);
    for denominator in v.0 {
        let shown = denominator.to_string();
        let shown = if shown.chars().count() <= 40 {
            shown
        } else {
            "…".to_string()
        };
        diags.push(
            Diagnostic::warning(
                Code::ZeroDenominator,
                format!(
                    "`{}` divides by a value that can be zero, with no rule stated for it",
                    m.name
                ),
            )
            .at(
                m.file(),
                denominator_span(formula, &denominator),
                "can be zero",
            )
            .note("kpi yields NULL for a division by zero")
            .help(format!(
                "state the rule: write `nullif({shown}, 0)`{}",
                if matches!(m.kind, Kind::Aggregate(_)) {
                    ", or set `empty: null` or `empty: zero`"
                } else {
                    ""
                }
            )),
        );
    }
}

/// Where a denominator is: a call with its arguments and filter, else the expression.
fn denominator_span(formula: &Sql, e: &Expr) -> std::ops::Range<usize> {
    match e {
        Expr::Function(f) => formula.call_span(f.name.span()),
        _ => formula.span_of(e),
    }
}

/// Denominators of `/` that are neither a non-zero literal nor `nullif(…, 0)`.
struct Divisions(Vec<Expr>);

impl Visitor for Divisions {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp {
            op: BinaryOperator::Divide,
            right,
            ..
        } = e
            && !safe_denominator(right)
        {
            self.0.push((**right).clone());
        }
        ControlFlow::Continue(())
    }
}

fn safe_denominator(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => safe_denominator(inner),
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse::<f64>().is_ok_and(|x| x != 0.0),
            _ => false,
        },
        Expr::Function(f) if function_name(f) == "nullif" => match &f.args {
            ast::FunctionArguments::List(l) => matches!(
                l.args.get(1),
                Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Value(v))))
                    if matches!(&v.value, ast::Value::Number(n, _) if n.parse::<f64>() == Ok(0.0))
            ),
            _ => false,
        },
        _ => false,
    }
}

fn unbounded_distinct(m: &Metric, diags: &mut Vec<Diagnostic>) {
    let Kind::Aggregate(a) = &m.kind else {
        return;
    };
    // Every other metric reads a bounded slice of time: its period, a finite window, or
    // the rows active at one instant (a metric without a time column is an error).
    if a.window != Some(Window::All) {
        return;
    }
    let snippets: Vec<&Sql> = std::iter::once(&a.formula)
        .chain(a.entity_columns.iter().map(|(_, s)| s))
        .chain(a.lookups.iter().map(|l| &l.value))
        .collect();
    for s in snippets {
        for c in Facts::of(&s.ast).calls {
            let kind = match c.name.as_str() {
                "median" => "median",
                "count" if c.distinct => "count(distinct …)",
                _ => continue,
            };
            diags.push(
                Diagnostic::warning(
                    Code::UnboundedDistinct,
                    format!(
                        "`{}` holds every distinct value in memory over rows not bounded by the period",
                        m.name
                    ),
                )
                .at(m.file(), s.call_span(c.span), format!("{kind} here"))
                .note("`window: all` reads every row up to each period's end")
                .help("bound the rows with `time:` and a finite `window:`, or accept the memory cost knowingly"),
            );
        }
    }
}

fn unused_models(cat: &Catalog, diags: &mut Vec<Diagnostic>) {
    let mut used: HashSet<&str> = HashSet::new();
    for m in &cat.metrics {
        if let Kind::Aggregate(a) = &m.kind {
            used.insert(&a.source);
            used.extend(a.lookups.iter().map(|l| l.from.as_str()));
        }
    }
    let mut in_sql: HashSet<String> = HashSet::new();
    for model in &cat.models {
        used.extend(model.joins.iter().map(|j| j.spec.target.value.as_str()));
        if let Some(q) = &model.query {
            let _ = ast::visit_relations(q.as_ref(), |r| {
                if let Some(last) = r.0.last().and_then(|p| p.as_ident()) {
                    in_sql.insert(last.value.clone());
                }
                ControlFlow::<()>::Continue(())
            });
        }
    }
    for model in &cat.models {
        let name = model.name();
        if used.contains(name) || in_sql.contains(name) {
            continue;
        }
        // A model named by its file has no `name:` node; its `table:` or `sql:` stands for it.
        let span = [
            Some(model.spec.name.span.clone()),
            model.spec.table.as_ref().map(|t| t.span.clone()),
            model.spec.sql.as_ref().map(|s| s.span.clone()),
        ]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .unwrap_or(0..0);
        diags.push(
            Diagnostic::warning(Code::UnusedModel, format!("no metric uses model `{name}`"))
                .at(model.spec.file, span, "")
                .help("delete the model, or read it with `source:`, a join or a lookup"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denominators(sql: &str) -> Vec<String> {
        let e = datafusion::sql::parser::DFParserBuilder::new(sql)
            .build()
            .and_then(|mut p| p.parse_into_expr())
            .expect("test SQL parses")
            .expr;
        let mut v = Divisions(Vec::new());
        let _ = e.visit(&mut v);
        v.0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn only_denominators_that_can_be_zero_are_reported() {
        assert_eq!(denominators("a / b"), ["b"]);
        assert_eq!(denominators("100 * a / count(*)"), ["count(*)"]);
        assert_eq!(denominators("a / nullif(b, 0)"), Vec::<String>::new());
        assert_eq!(denominators("a / (nullif(b, 0))"), Vec::<String>::new());
        assert_eq!(denominators("a / nullif(b, 1)"), ["nullif(b, 1)"]);
        assert_eq!(denominators("a / 3600.0 / 24"), Vec::<String>::new());
        assert_eq!(denominators("a / 0"), ["0"]);
        assert_eq!(denominators("(a / b) / c"), ["c", "b"]);
    }
}
