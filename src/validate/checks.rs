//! The checks behind [`check`]: one pass over models, one over metrics, then references
//! and cycles. Every fault becomes a diagnostic; the catalogue keeps what passed.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Spanned as _, Visit, Visitor,
};
use datafusion::sql::sqlparser::tokenizer::Span;

use super::*;
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::spec::{DimensionSpec, JoinOn, Text};
use crate::sql::{self, Facts, function_name, parse_expr};

/// Placeholders a metric's SQL may use: the bounds of the period being computed.
pub const PERIOD_BOUNDS: &[&str] = &["$start", "$end"];
/// Placeholder of a model's `active` condition: the instant the state is taken at.
pub const AT_BOUND: &[&str] = &["$at"];
/// kpi's own functions of derived formulas.
pub const SHIFT_FUNCTIONS: &[&str] = &["prev", "year_ago"];

/// Checks loaded specs; every fault goes to `diags`, and the catalogue holds what is usable.
pub fn check(specs: Specs, diags: &mut Vec<Diagnostic>) -> Catalog {
    let mut cat = Catalog::default();
    check_models(specs.models, &mut cat, diags);
    // Flatten: top-level metrics, then their inline helpers, remembering each helper's scope.
    let mut pending: Vec<(MetricSpec, String, bool, Option<usize>)> = Vec::new();
    for m in specs.metrics {
        let name = m.name.value.clone();
        pending.push((m, name, true, None));
    }
    let mut i = 0;
    let mut scopes: HashMap<usize, HashMap<String, usize>> = HashMap::new();
    while i < pending.len() {
        let using = std::mem::take(&mut pending[i].0.using);
        let parent_name = pending[i].1.clone();
        let mut local = HashMap::new();
        for u in using {
            let local_name = u.name.value.clone();
            let idx = pending.len();
            if local.insert(local_name.clone(), idx).is_some() {
                diags.push(
                    Diagnostic::error(
                        Code::DuplicateName,
                        format!("`{local_name}` is defined twice under `using`"),
                    )
                    .at(u.file, u.name.span.clone(), ""),
                );
            }
            pending.push((u, format!("{parent_name}.{local_name}"), false, Some(i)));
        }
        scopes.insert(i, local);
        i += 1;
    }
    // Public names and duplicates.
    let mut first: HashMap<String, (FileId, Range<usize>)> = HashMap::new();
    for (idx, (spec, name, public, _)) in pending.iter().enumerate() {
        if !public {
            continue;
        }
        if let Some((f, span)) = first.get(name) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!("metric `{name}` is defined twice"),
                )
                .at(spec.file, name_span(spec), "second definition")
                .also(*f, span.clone(), "first definition")
                .help("metric names are file stems unless `name:` says otherwise; rename one"),
            );
        } else {
            first.insert(name.clone(), (spec.file, name_span(spec)));
            cat.index.insert(name.clone(), idx);
        }
    }
    // Check each metric; resolve derived references against its scope chain.
    let parents: Vec<Option<usize>> = pending.iter().map(|p| p.3).collect();
    let mut kinds: Vec<Option<Kind>> = Vec::new();
    for (idx, (spec, _, _, _)) in pending.iter().enumerate() {
        let resolve = |name: &str| -> Option<usize> {
            let mut scope = Some(idx);
            while let Some(s) = scope {
                if let Some(&t) = scopes.get(&s).and_then(|l| l.get(name)) {
                    return Some(t);
                }
                scope = parents[s];
            }
            cat.index.get(name).copied()
        };
        let candidates: Vec<String> = {
            let mut c: Vec<String> = cat.index.keys().cloned().collect();
            let mut scope = Some(idx);
            while let Some(s) = scope {
                c.extend(scopes.get(&s).into_iter().flat_map(|l| l.keys().cloned()));
                scope = parents[s];
            }
            c
        };
        kinds.push(check_metric(spec, &cat, &resolve, &candidates, diags));
    }
    for ((spec, name, public, _), kind) in pending.into_iter().zip(kinds) {
        // Unusable metrics keep a placeholder so ids stay stable; they are never compiled.
        let kind = kind.unwrap_or_else(|| {
            Kind::Derived(Derived {
                formula: Sql {
                    text: spec.formula.clone(),
                    ast: sql::ident("NULL"),
                },
                refs: vec![],
            })
        });
        cat.metrics.push(Metric {
            spec,
            name,
            public,
            kind,
        });
    }
    let before = diags.len();
    check_cycles(&cat, diags);
    if !diags[before..].iter().any(|d| d.code == Code::Cycle) {
        check_composed_depth(&cat, diags);
    }
    cat
}

/// Derived metrics are planned as one expression with the metrics they use inlined, so a
/// long chain of them is as deep as the sum of its formulas: bound it as a formula is.
fn check_composed_depth(cat: &Catalog, diags: &mut Vec<Diagnostic>) {
    fn composed(u: usize, cat: &Catalog, memo: &mut Vec<Option<usize>>) -> usize {
        if let Some(d) = memo[u] {
            return d;
        }
        let d = match &cat.metrics[u].kind {
            Kind::Aggregate(_) => 0,
            Kind::Derived(d) => {
                let below = d
                    .refs
                    .iter()
                    .map(|r| composed(r.target, cat, memo))
                    .max()
                    .unwrap_or(0);
                sql::depth(&d.formula.ast) + below
            }
        };
        memo[u] = Some(d);
        d
    }
    let mut memo = vec![None; cat.metrics.len()];
    for (u, m) in cat.metrics.iter().enumerate() {
        let depth = composed(u, cat, &mut memo);
        let Kind::Derived(d) = &m.kind else { continue };
        let below = d
            .refs
            .iter()
            .any(|r| memo[r.target].is_some_and(|x| x > sql::MAX_DEPTH));
        // Reported once, on the first metric of the chain past the bound.
        if depth > sql::MAX_DEPTH && !below {
            diags.push(
                Diagnostic::error(
                    Code::SqlSyntax,
                    format!(
                        "`{}` with the metrics it uses inlined is {depth} operations deep; \
                         kpi takes at most {}",
                        m.name,
                        sql::MAX_DEPTH
                    ),
                )
                .at(m.file(), d.formula.text.span.clone(), "")
                .help("shorten the chain of derived metrics, or fold some steps into one formula"),
            );
        }
    }
}

fn name_span(spec: &MetricSpec) -> Range<usize> {
    if spec.name.span.is_empty() {
        spec.span.start..spec.span.start
    } else {
        spec.name.span.clone()
    }
}

fn check_models(models: Vec<ModelSpec>, cat: &mut Catalog, diags: &mut Vec<Diagnostic>) {
    let mut first: HashMap<String, (FileId, Range<usize>)> = HashMap::new();
    for spec in models {
        let name = spec.name.value.clone();
        if let Some((f, s)) = first.get(&name) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!("model `{name}` is defined twice"),
                )
                .at(spec.file, spec.name.span.clone(), "second definition")
                .also(*f, s.clone(), "first definition"),
            );
            continue;
        }
        first.insert(name.clone(), (spec.file, spec.name.span.clone()));
        let time = spec
            .time
            .as_ref()
            .and_then(|t| row_expr(t, "time", &[], diags));
        let active = spec
            .active
            .as_ref()
            .and_then(|t| row_expr(t, "active", AT_BOUND, diags));
        let query = spec
            .sql
            .as_ref()
            .and_then(|t| sql::parse_query(t).map_err(|d| diags.push(d)).ok());
        let mut joins = Vec::new();
        for j in &spec.joins {
            if j.target.value == name {
                diags.push(
                    Diagnostic::error(Code::BadJoin, "a model cannot join itself").at(
                        spec.file,
                        j.target.span.clone(),
                        "",
                    ),
                );
                continue;
            }
            let condition = match &j.on {
                JoinOn::Condition(t) => match row_expr(t, "on", &[], diags) {
                    Some(s) => Some(s),
                    None => continue,
                },
                JoinOn::Columns(_) => None,
            };
            joins.push(Join {
                spec: j.clone(),
                condition,
            });
        }
        let dimensions = dimensions(&spec.dimensions, diags);
        cat.model_index.insert(name, cat.models.len());
        cat.models.push(Model {
            spec,
            time,
            active,
            query,
            joins,
            dimensions,
        });
    }
}

fn dimensions(specs: &[DimensionSpec], diags: &mut Vec<Diagnostic>) -> Vec<Dimension> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for d in specs {
        if !crate::spec::load::is_identifier(&d.name.value) {
            diags.push(
                Diagnostic::error(
                    Code::BadName,
                    format!("`{}` is not a valid dimension name", d.name.value),
                )
                .at(d.expr.file, d.name.span.clone(), "")
                .help("write `name: SQL` to name a computed dimension"),
            );
            continue;
        }
        if !seen.insert(d.name.value.clone()) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!("dimension `{}` is listed twice", d.name.value),
                )
                .at(d.expr.file, d.name.span.clone(), ""),
            );
            continue;
        }
        if let Some(sql) = row_expr(&d.expr, "dimension", &[], diags) {
            out.push(Dimension {
                name: d.name.clone(),
                sql,
            });
        }
    }
    out
}

/// Parses and checks `--where` as a filter is checked: per row, no period bounds, no
/// subquery, no window function.
pub fn run_filter(t: &Text) -> Result<Sql, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    row_expr(t, "filter", &[], &mut diags).ok_or(diags)
}

/// Parses a row-level expression (no aggregates) and checks its placeholders.
fn row_expr(t: &Text, what: &str, bounds: &[&str], diags: &mut Vec<Diagnostic>) -> Option<Sql> {
    let s = parse_expr(t).map_err(|d| diags.push(d)).ok()?;
    let facts = Facts::of(&s.ast);
    let mut ok = common_checks(&s, &facts, bounds, diags);
    for c in facts.calls.iter().filter(|c| c.aggregate) {
        diags.push(
            Diagnostic::error(Code::UnexpectedAggregate, format!("`{}` aggregates rows, but a {what} is computed per row", c.name))
                .at(t.file, s.span(c.span), "aggregate here")
                .help(if what == "filter" { "filters select rows before aggregation; put conditions on aggregates in the formula" } else { "remove the aggregate" }),
        );
        ok = false;
    }
    ok.then_some(s)
}

/// Checks shared by every snippet: placeholders, subqueries, window functions.
fn common_checks(s: &Sql, facts: &Facts, bounds: &[&str], diags: &mut Vec<Diagnostic>) -> bool {
    let mut ok = true;
    for (p, span) in &facts.placeholders {
        if !bounds.contains(&p.as_str()) {
            let all: Vec<&str> = PERIOD_BOUNDS.iter().chain(AT_BOUND).copied().collect();
            let help = if bounds.is_empty() {
                Some(
                    "period bounds are available in formulas, filters, entity columns and lookups"
                        .to_string(),
                )
            } else {
                did_you_mean(p, all.iter().copied().filter(|b| bounds.contains(b)))
            };
            diags.push(
                Diagnostic::error(
                    Code::UnknownPlaceholder,
                    if all.contains(&p.as_str()) {
                        format!("`{p}` cannot be used here")
                    } else {
                        format!("unknown period bound `{p}`")
                    },
                )
                .at(s.text.file, s.span(*span), "")
                .note(format!(
                    "allowed here: {}",
                    if bounds.is_empty() {
                        "none".to_string()
                    } else {
                        bounds.join(", ")
                    }
                ))
                .maybe_help(help),
            );
            ok = false;
        }
    }
    for span in &facts.subqueries {
        diags.push(
            Diagnostic::error(
                Code::UnsupportedSql,
                "subqueries are not supported in metric SQL",
            )
            .at(s.text.file, s.span(*span), "")
            .help("use `lookups:` to aggregate a related table per row, or a model with `sql:`"),
        );
        ok = false;
    }
    for c in facts.calls.iter().filter(|c| c.has_over) {
        diags.push(
            Diagnostic::error(
                Code::UnsupportedSql,
                format!("window function `{}` … OVER is not supported here", c.name),
            )
            .at(s.text.file, s.span(c.span), "")
            .help("periods, windows and previous periods are declared with `window:` and `prev()`"),
        );
        ok = false;
    }
    ok
}

/// Checks an aggregate expression: it aggregates, nothing outside an aggregate but `allowed`.
fn aggregate_expr(
    t: &Text,
    what: &str,
    allowed: &[String],
    diags: &mut Vec<Diagnostic>,
) -> Option<(Sql, Facts)> {
    let s = parse_expr(t).map_err(|d| diags.push(d)).ok()?;
    let facts = Facts::of(&s.ast);
    let mut ok = common_checks(&s, &facts, PERIOD_BOUNDS, diags);
    if !facts.has_aggregate() {
        let funcs: Vec<&str> = facts.calls.iter().map(|c| c.name.as_str()).collect();
        let mut d = Diagnostic::error(Code::NotAggregate, format!("the {what} does not aggregate rows"))
            .at(t.file, t.span.clone(), "no aggregate function here")
            .help("a metric with a `source` computes one value per period from many rows: use sum(…), count(*), avg(…), count(distinct …), median(…) …");
        if funcs.is_empty() && facts.columns.len() == 1 && allowed.is_empty() {
            d = d.note("to combine other metrics by name, remove `source:` (a derived metric)");
        }
        diags.push(d);
        return None;
    }
    for c in &facts.columns {
        let name = c.parts.last().cloned().unwrap_or_default();
        if !(c.in_aggregate || c.parts.len() == 1 && allowed.contains(&name)) {
            diags.push(
                Diagnostic::error(Code::BareColumn, format!("column `{}` is used outside an aggregate", c.parts.join(".")))
                    .at(t.file, s.span(c.span), "not aggregated")
                    .help(format!("a {what} yields one value per period: wrap it, e.g. `max({})`, or move it into `filter:`", c.parts.join("."))),
            );
            ok = false;
        }
    }
    for c in facts.calls.iter().filter(|c| c.aggregate && c.nested) {
        diags.push(Diagnostic::error(Code::NestedAggregate, format!("aggregate `{}` inside another aggregate", c.name)).at(t.file, s.span(c.span), "").help("for a two-step aggregation (per customer, then per period) use `entity:` and `entity_columns:`"));
        ok = false;
    }
    ok.then_some((s, facts))
}

fn check_metric(
    spec: &MetricSpec,
    cat: &Catalog,
    resolve: &dyn Fn(&str) -> Option<usize>,
    candidates: &[String],
    diags: &mut Vec<Diagnostic>,
) -> Option<Kind> {
    let file = spec.file;
    match &spec.source {
        None => {
            // A derived metric: row-level keys make no sense.
            let misplaced: Vec<(&str, Option<Range<usize>>)> = vec![
                ("filter", spec.filters.first().map(|f| f.span.clone())),
                ("time", spec.time.as_ref().map(|t| t.span.clone())),
                ("at", spec.at.as_ref().map(|a| a.span.clone())),
                ("window", spec.window.as_ref().map(|w| w.span.clone())),
                ("entity", spec.entity.as_ref().map(|e| e.span.clone())),
                (
                    "entity_columns",
                    spec.entity_columns.first().map(|e| e.0.span.clone()),
                ),
                ("lookups", spec.lookups.first().map(|l| l.name.span.clone())),
                (
                    "dimensions",
                    spec.dimensions.first().map(|d| d.name.span.clone()),
                ),
                ("empty", spec.empty.as_ref().map(|e| e.span.clone())),
            ];
            let mut bad = false;
            for (key, span) in misplaced {
                if let Some(span) = span {
                    diags.push(
                        Diagnostic::error(Code::NeedsSource, format!("`{key}` applies to rows, but this metric has no `source`"))
                            .at(file, span, "")
                            .help("add `source:` to aggregate a table's rows, or remove this key: a metric without a source combines other metrics"),
                    );
                    bad = true;
                }
            }
            let d = derived(spec, resolve, candidates, cat, diags);
            if bad { None } else { d.map(Kind::Derived) }
        }
        Some(source) => aggregate(spec, source, cat, diags).map(Kind::Aggregate),
    }
}

fn derived(
    spec: &MetricSpec,
    resolve: &dyn Fn(&str) -> Option<usize>,
    candidates: &[String],
    cat: &Catalog,
    diags: &mut Vec<Diagnostic>,
) -> Option<Derived> {
    let file = spec.file;
    let formula = parse_expr(&spec.formula).map_err(|d| diags.push(d)).ok()?;
    let facts = Facts::of(&formula.ast);
    let mut ok = common_checks(&formula, &facts, &[], diags);
    for c in facts.calls.iter().filter(|c| c.aggregate) {
        diags.push(
            Diagnostic::error(Code::NeedsSource, format!("`{}` aggregates rows, but this metric has no `source`", c.name))
                .at(file, formula.span(c.span), "")
                .help("add `source: TABLE` to aggregate rows; without a source, a formula combines metrics by name"),
        );
        ok = false;
    }
    let mut v = RefVisitor {
        shifts: Vec::new(),
        refs: Vec::new(),
        errors: Vec::new(),
    };
    let _ = formula.ast.visit(&mut v);
    for (msg, span) in v.errors {
        diags.push(
            Diagnostic::error(Code::BadOffset, msg)
                .at(file, formula.span(span), "")
                .help("write `prev(metric)`, `prev(metric, N)` or `year_ago(metric)`"),
        );
        ok = false;
    }
    let mut refs = Vec::new();
    for (parts, span, shift) in v.refs {
        let fspan = formula.span(span);
        if parts.len() != 1 {
            diags.push(
                Diagnostic::error(
                    Code::UnknownMetric,
                    format!("`{}` is not a metric name", parts.join(".")),
                )
                .at(file, fspan, "")
                .help("a derived formula refers to metrics by their plain names"),
            );
            ok = false;
            continue;
        }
        let name = &parts[0];
        match resolve(name) {
            Some(target) => refs.push(MetricRef {
                name: name.clone(),
                target,
                span: fspan,
                shift,
            }),
            None => {
                let model_hint = cat.model(name).map(|_| format!("`{name}` is a model; a metric aggregating it needs `source: {name}` and an aggregate formula"));
                diags.push(
                    Diagnostic::error(Code::UnknownMetric, format!("unknown metric `{name}`"))
                        .at(
                            file,
                            fspan,
                            did_you_mean(name, candidates.iter().map(String::as_str))
                                .unwrap_or_else(|| "no metric has this name".into()),
                        )
                        .maybe_help(model_hint),
                );
                ok = false;
            }
        }
    }
    if refs.is_empty() && ok {
        diags.push(
            Diagnostic::error(Code::NoMetrics, "this formula refers to no metric")
                .at(file, spec.formula.span.clone(), "")
                .help("add `source:` to aggregate a table, or name metrics in the formula"),
        );
        ok = false;
    }
    ok.then_some(Derived { formula, refs })
}

/// Collects metric references of a derived formula with the shifts around each.
struct RefVisitor {
    shifts: Vec<Option<Shift>>,
    refs: Vec<(Vec<String>, Span, Vec<Shift>)>,
    errors: Vec<(String, Span)>,
}

impl Visitor for RefVisitor {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        let mut pushed = None;
        match e {
            Expr::Function(f) => {
                let name = function_name(f);
                if SHIFT_FUNCTIONS.contains(&name.as_str()) {
                    let args: Vec<&FunctionArg> = match &f.args {
                        FunctionArguments::List(l) => l.args.iter().collect(),
                        _ => vec![],
                    };
                    let first_is_name = matches!(
                        args.first(),
                        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(_)))
                    );
                    let n = match (name.as_str(), args.get(1)) {
                        (_, None) => Some(1),
                        (
                            "prev",
                            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))),
                        ) => match &v.value {
                            ast::Value::Number(n, _) => {
                                n.parse::<u32>().ok().filter(|n| *n > 0 && *n <= 1000)
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    match (first_is_name, n, args.len() <= 2) {
                        (true, Some(n), true) => {
                            pushed = Some(if name == "prev" {
                                Shift::Periods(n)
                            } else {
                                Shift::Year
                            })
                        }
                        _ => self.errors.push((
                            format!(
                                "`{name}` takes a metric{}",
                                if name == "prev" {
                                    " and an optional positive number of periods"
                                } else {
                                    ""
                                }
                            ),
                            f.name.span(),
                        )),
                    }
                }
            }
            Expr::Identifier(i) => self
                .refs
                .push((vec![i.value.clone()], i.span, self.current())),
            Expr::CompoundIdentifier(p) => self.refs.push((
                p.iter().map(|i| i.value.clone()).collect(),
                e.span(),
                self.current(),
            )),
            _ => {}
        }
        self.shifts.push(pushed);
        ControlFlow::Continue(())
    }
    fn post_visit_expr(&mut self, _e: &Expr) -> ControlFlow<()> {
        self.shifts.pop();
        ControlFlow::Continue(())
    }
}

impl RefVisitor {
    fn current(&self) -> Vec<Shift> {
        self.shifts.iter().rev().flatten().copied().collect()
    }
}

fn aggregate(
    spec: &MetricSpec,
    source: &Spanned<String>,
    cat: &Catalog,
    diags: &mut Vec<Diagnostic>,
) -> Option<Aggregate> {
    let file = spec.file;
    let before = diags.len();
    let model = cat.model(&source.value);
    let filters: Vec<Sql> = spec
        .filters
        .iter()
        .filter_map(|f| row_expr(f, "filter", PERIOD_BOUNDS, diags))
        .collect();
    let time = match (&spec.time, model.and_then(|m| m.time.as_ref())) {
        (Some(t), _) => row_expr(t, "time", &[], diags),
        (None, Some(t)) if spec.at.is_none() => Some(t.clone()),
        _ => None,
    };
    // Entity columns, then the formula over them (or over rows).
    let mut entity_columns = Vec::new();
    let entity = spec
        .entity
        .as_ref()
        .and_then(|e| row_expr(e, "entity", &[], diags));
    for (name, t) in &spec.entity_columns {
        if let Some((s, _)) = aggregate_expr(t, "entity column", &[], diags) {
            entity_columns.push((name.value.clone(), s));
        }
    }
    if spec.entity.is_some() == spec.entity_columns.is_empty() {
        let (span, msg) = match &spec.entity {
            Some(e) => (
                e.span.clone(),
                "`entity` needs `entity_columns`: the values computed per entity",
            ),
            None => (
                spec.entity_columns[0].0.span.clone(),
                "`entity_columns` need `entity`: the column identifying an entity",
            ),
        };
        diags.push(Diagnostic::error(Code::MissingKey, msg).at(file, span, ""));
    }
    let mut lookups = Vec::new();
    let mut lookup_names: Vec<String> = Vec::new();
    for l in &spec.lookups {
        let on = row_expr(&l.on, "lookup condition", PERIOD_BOUNDS, diags);
        let value = aggregate_expr(&l.value, "lookup value", &[], diags).map(|v| v.0);
        if l.from.value == source.value {
            diags.push(
                Diagnostic::error(
                    Code::BadLookup,
                    "a lookup reads another relation than the metric's source",
                )
                .at(file, l.from.span.clone(), ""),
            );
            continue;
        }
        lookup_names.push(l.name.value.clone());
        if let (Some(on), Some(value)) = (on, value) {
            lookups.push(Lookup {
                name: l.name.value.clone(),
                from: l.from.value.clone(),
                from_span: l.from.span.clone(),
                on,
                value,
            });
        }
    }
    let allowed: Vec<String> = if spec.entity.is_some() {
        let mut a: Vec<String> = spec
            .entity_columns
            .iter()
            .map(|(n, _)| n.value.clone())
            .collect();
        if let Some(e) = &spec.entity {
            a.push(e.value.trim().to_string());
        }
        a
    } else {
        Vec::new()
    };
    let what = if spec.entity.is_some() {
        "formula (over entities)"
    } else {
        "formula"
    };
    let formula = aggregate_expr(&spec.formula, what, &allowed, diags);
    // Shape keys.
    if let Some(at) = &spec.at {
        if model.and_then(|m| m.active.as_ref()).is_none() {
            let help = match model {
                Some(m) => format!(
                    "add `active: <condition using $at>` to model `{}`",
                    m.name()
                ),
                None => format!(
                    "declare a model `{}` with `table:` and `active:`",
                    source.value
                ),
            };
            diags.push(
                Diagnostic::error(
                    Code::MissingActive,
                    format!(
                        "`at` needs the source to say when a row is active, and `{}` does not",
                        source.value
                    ),
                )
                .at(file, at.span.clone(), "")
                .help(help),
            );
        }
        for (key, span) in [
            ("time", spec.time.as_ref().map(|t| t.span.clone())),
            ("window", spec.window.as_ref().map(|w| w.span.clone())),
        ] {
            if let Some(span) = span {
                diags.push(Diagnostic::error(Code::ConflictingKeys, format!("`{key}` and `at` exclude each other")).at(file, span, "").also(file, at.span.clone(), "state taken at this instant").help("`at` counts rows active at an instant; `time`/`window` count rows whose time falls in the period"));
            }
        }
    }
    if spec.at.is_none() && time.is_none() && spec.time.is_none() {
        let uses_bounds = filters
            .iter()
            .map(|f| &f.ast)
            .chain(formula.iter().map(|f| &f.0.ast))
            .any(|e| !Facts::of(e).placeholders.is_empty());
        if !uses_bounds {
            let help = match model {
                Some(m) => format!(
                    "add `time: COLUMN` here or to model `{}`, or `at: end` for a state metric",
                    m.name()
                ),
                None => "add `time: COLUMN` (the timestamp placing a row in a period)".to_string(),
            };
            diags.push(
                Diagnostic::error(
                    Code::MissingTime,
                    "this metric does not say which period a row belongs to",
                )
                .at(file, source.span.clone(), "")
                .help(help),
            );
        } else if let Some(w) = &spec.window {
            diags.push(
                Diagnostic::error(Code::MissingTime, "`window` needs a time column").at(
                    file,
                    w.span.clone(),
                    "",
                ),
            );
        }
    }
    // Fan-out: a one-to-many join repeats rows under non-distinct aggregates.
    if let (Some(model), Some((f, facts))) = (model, &formula) {
        for j in model
            .joins
            .iter()
            .filter(|j| j.spec.relationship.value.fans_out())
        {
            for c in facts.calls.iter().filter(|c| {
                c.aggregate
                    && !c.distinct
                    && !matches!(c.name.as_str(), "min" | "max" | "bool_and" | "bool_or")
            }) {
                diags.push(
                    Diagnostic::error(Code::FanOut, format!("`{}` over `{}` counts rows again for every matching `{}` row", c.name, model.name(), j.spec.target.value))
                        .at(file, f.span(c.span), "would count duplicated rows")
                        .also(model.spec.file, j.spec.span.clone(), "declared one_to_many here")
                        .help("use count(distinct …), a `lookups:` entry, or a model whose join is many_to_one"),
                );
            }
        }
    }
    let dims = dimensions(&spec.dimensions, diags);
    if diags.len() > before {
        return None;
    }
    let _ = lookup_names;
    Some(Aggregate {
        source: source.value.clone(),
        source_span: source.span.clone(),
        formula: formula?.0,
        filters,
        time,
        at: spec.at.as_ref().map(|a| a.value),
        window: spec.window.as_ref().map(|w| w.value),
        entity,
        entity_columns,
        lookups,
        dimensions: dims,
    })
}

/// Reports every cycle between derived metrics once, naming each step.
fn check_cycles(cat: &Catalog, diags: &mut Vec<Diagnostic>) {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Active,
        Done,
    }
    let n = cat.metrics.len();
    let mut state = vec![State::New; n];
    let mut reported: HashSet<Vec<usize>> = HashSet::new();
    fn visit(
        u: usize,
        cat: &Catalog,
        state: &mut Vec<State>,
        stack: &mut Vec<(usize, Option<MetricRef>)>,
        reported: &mut HashSet<Vec<usize>>,
        diags: &mut Vec<Diagnostic>,
    ) {
        state[u] = State::Active;
        if let Kind::Derived(d) = &cat.metrics[u].kind {
            for r in &d.refs {
                let v = r.target;
                match state[v] {
                    State::New => {
                        stack.push((u, Some(r.clone())));
                        visit(v, cat, state, stack, reported, diags);
                        stack.pop();
                    }
                    State::Active => {
                        let mut path: Vec<(usize, MetricRef)> = stack
                            .iter()
                            .skip_while(|(m, _)| *m != v)
                            .filter_map(|(m, r)| r.clone().map(|r| (*m, r)))
                            .collect();
                        path.push((u, r.clone()));
                        let mut key: Vec<usize> = path.iter().map(|p| p.0).collect();
                        key.sort();
                        if !reported.insert(key) {
                            continue;
                        }
                        let names: Vec<&str> = path
                            .iter()
                            .map(|(m, _)| cat.metrics[*m].name.as_str())
                            .chain(std::iter::once(cat.metrics[v].name.as_str()))
                            .collect();
                        let (m0, r0) = &path[0];
                        let mut d = Diagnostic::error(
                            Code::Cycle,
                            format!(
                                "metrics refer to each other in a cycle: {}",
                                names.join(" → ")
                            ),
                        )
                        .at(
                            cat.metrics[*m0].file(),
                            r0.span.clone(),
                            format!("`{}` uses `{}`", cat.metrics[*m0].name, r0.name),
                        );
                        for (m, r) in path.iter().skip(1) {
                            d = d.also(
                                cat.metrics[*m].file(),
                                r.span.clone(),
                                format!("`{}` uses `{}`", cat.metrics[*m].name, r.name),
                            );
                        }
                        diags.push(d.help("a metric cannot depend on itself, even through others; break one of these references"));
                    }
                    State::Done => {}
                }
            }
        }
        state[u] = State::Done;
    }
    for u in 0..n {
        if state[u] == State::New {
            let mut stack = Vec::new();
            visit(u, cat, &mut state, &mut stack, &mut reported, diags);
        }
    }
}
