//! `kpi sql`: a run's plans as one SQL statement another engine runs as is.
//!
//! The statement is the program `kpi run` executes, unparsed from the plans by DataFusion's
//! unparser for the target dialect: the in-memory period tables become `VALUES` common
//! table expressions, each scan a common table expression named like the table its result
//! is registered as, and the assembly the final `SELECT`. Before unparsing, kpi's own
//! functions are rewritten into portable SQL — a row's period (`bucket_start`) into a
//! `CASE` over the run's boundaries, `hours_between` and `days_between` into epoch
//! arithmetic, the exact-sum conversion into a plain cast — and the float guard of the
//! output (`isnan`, infinity) is dropped, since the divisions it guards are already
//! `nullif`-protected. After unparsing, the syntax tree is fixed up where a dialect lacks
//! what the unparser emits: `median` becomes `percentile_cont(0.5) WITHIN GROUP` in
//! PostgreSQL, and `agg(x) FILTER (WHERE p)` becomes `agg(CASE WHEN p THEN x END)` in
//! dialects without `FILTER`.
//!
//! Instants in the statement are UTC: time columns must hold UTC instants (a `timestamp`
//! holding UTC wall time, or a `timestamptz` read in a UTC session).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Case, Expr, LogicalPlan, Operator, cast, lit, when};
use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::{
    BigQueryDialect, CustomDialectBuilder, Dialect, DuckDBDialect, MySqlDialect, PostgreSqlDialect,
    SnowflakeDialect, SqliteDialect,
};

use super::{Program, RunError, exec_error, scanned};
use crate::compile::bucket::BucketStart;
use crate::compile::exact::ExactDecimal;
use crate::source::UTC;
use crate::validate::Catalog;

/// The SQL dialects `kpi sql` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlDialect {
    /// PostgreSQL: every shipped KPI is run on a real server by the tests.
    Postgres,
    /// DuckDB: every shipped KPI is run on DuckDB by the tests.
    Duckdb,
    /// MySQL 8 (untested on a real engine).
    Mysql,
    /// SQLite 3.30+ (untested on a real engine).
    Sqlite,
    /// BigQuery (untested on a real engine).
    Bigquery,
    /// Snowflake (untested on a real engine).
    Snowflake,
    /// ANSI-ish SQL as DataFusion reads it (untested on another engine).
    Generic,
}

impl SqlDialect {
    fn unparser_dialect(self) -> Box<dyn Dialect> {
        match self {
            SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
            SqlDialect::Duckdb => Box::new(DuckDBDialect::new()),
            SqlDialect::Mysql => Box::new(MySqlDialect {}),
            SqlDialect::Sqlite => Box::new(SqliteDialect {}),
            SqlDialect::Bigquery => Box::new(BigQueryDialect {}),
            SqlDialect::Snowflake => Box::new(SnowflakeDialect::new()),
            SqlDialect::Generic => Box::new(CustomDialectBuilder::new().build()),
        }
    }

    /// Whether the dialect's aggregates take `FILTER (WHERE …)`.
    fn has_aggregate_filter(self) -> bool {
        matches!(
            self,
            SqlDialect::Postgres | SqlDialect::Duckdb | SqlDialect::Sqlite | SqlDialect::Generic
        )
    }
}

/// The statement computing `p` in `dialect`, with a comment header saying what it
/// expects of the tables it reads.
pub async fn export(p: &Program, cat: &Catalog, dialect: SqlDialect) -> Result<String, RunError> {
    let d = dialect.unparser_dialect();
    let unparser = Unparser::new(d.as_ref());
    let plans = p
        .scans
        .iter()
        .map(|s| Ok((s.table.clone(), portable(s.plan.clone())?)))
        .collect::<Result<Vec<(String, LogicalPlan)>, RunError>>()?;
    let main = portable(super::explain::planned_assembly(p, cat).await?)?;
    let results: BTreeSet<&str> = p.scans.iter().map(|s| s.table.as_str()).collect();
    let mut ctes = Vec::new();
    let mut sources = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for plan in plans.iter().map(|(_, plan)| plan).chain([&main]) {
        for name in scanned(plan) {
            if results.contains(name.as_str()) || !seen.insert(name.clone()) {
                continue;
            }
            match memory_rows(p, &name).await? {
                Some(batches) => ctes.push(values_cte(&name, &batches, &unparser, d.as_ref())?),
                None => {
                    sources.insert(name);
                }
            }
        }
    }
    for (name, plan) in &plans {
        ctes.push(format!(
            "{name} AS ({})",
            unparse(plan, &unparser, dialect)?
        ));
    }
    let body = unparse(&main, &unparser, dialect)?;
    let mut out = format!(
        "-- kpi sql --dialect {}: {} period(s) from {} ({}), reading {}.\n\
         -- Time columns must hold UTC instants; the statement's instants are UTC.\n",
        dialect_name(dialect),
        p.periods.len(),
        p.periods
            .first()
            .map(|x| x.date.to_string())
            .unwrap_or_default(),
        p.calendar.tz.name(),
        sources.into_iter().collect::<Vec<_>>().join(", "),
    );
    out.push_str("WITH ");
    out.push_str(&ctes.join(",\n"));
    out.push('\n');
    out.push_str(&body);
    out.push_str(";\n");
    Ok(out)
}

fn dialect_name(d: SqlDialect) -> String {
    use clap::ValueEnum;
    d.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The rows of `name` when it is one of the program's in-memory tables (the period
/// spines), `None` for a table of the data root.
async fn memory_rows(p: &Program, name: &str) -> Result<Option<Vec<RecordBatch>>, RunError> {
    let provider = p
        .ctx
        .table_provider(name)
        .await
        .map_err(|e| exec_error("kpi sql", &e))?;
    let any: &dyn std::any::Any = provider.as_ref();
    if any.downcast_ref::<MemTable>().is_none() {
        return Ok(None);
    }
    let df = p
        .ctx
        .table(name)
        .await
        .map_err(|e| exec_error("kpi sql", &e))?;
    df.collect()
        .await
        .map(Some)
        .map_err(|e| exec_error("kpi sql", &e))
}

/// `name (c1, c2) AS (VALUES (…), …)`, each cell a literal of the dialect.
fn values_cte(
    name: &str,
    batches: &[RecordBatch],
    unparser: &Unparser,
    d: &dyn Dialect,
) -> Result<String, RunError> {
    let quote = |id: &str| match d.identifier_quote_style(id) {
        Some(q) => format!("{q}{id}{q}"),
        None => id.to_string(),
    };
    let fail = |e: datafusion::error::DataFusionError| exec_error("kpi sql", &e);
    let mut rows = Vec::new();
    let mut columns = Vec::new();
    for b in batches {
        if columns.is_empty() {
            columns = b
                .schema()
                .fields()
                .iter()
                .map(|f| quote(f.name()))
                .collect();
        }
        for r in 0..b.num_rows() {
            let mut cells = Vec::new();
            for c in b.columns() {
                let v = ScalarValue::try_from_array(c, r).map_err(fail)?;
                cells.push(unparser.expr_to_sql(&lit(v)).map_err(fail)?.to_string());
            }
            rows.push(format!("({})", cells.join(", ")));
        }
    }
    if rows.is_empty() {
        return Err(RunError::Execution(format!(
            "kpi sql: the in-memory table {name} is empty, and SQL has no empty VALUES"
        )));
    }
    Ok(format!(
        "{name} ({}) AS (VALUES {})",
        columns.join(", "),
        rows.join(", ")
    ))
}

fn unparse(
    plan: &LogicalPlan,
    unparser: &Unparser,
    dialect: SqlDialect,
) -> Result<String, RunError> {
    let mut stmt = unparser.plan_to_sql(plan).map_err(|e| {
        RunError::Execution(format!(
            "kpi sql: a plan is not expressible in SQL: {}",
            crate::compile::snippet_error(&e)
        ))
    })?;
    let _ = stmt.visit(&mut Fixups { dialect });
    Ok(stmt.to_string())
}

/// `plan` with kpi's own functions rewritten into SQL any engine has.
fn portable(plan: LogicalPlan) -> Result<LogicalPlan, RunError> {
    plan.transform_up_with_subqueries(|node| node.map_expressions(|e| e.transform_up(rewrite)))
        .map(|t| t.data)
        .map_err(|e| exec_error("kpi sql", &e))
}

fn rewrite(e: Expr) -> datafusion::error::Result<Transformed<Expr>> {
    let Expr::ScalarFunction(f) = &e else {
        return Ok(match guarded(&e) {
            Some(inner) => Transformed::yes(inner),
            None => Transformed::no(e),
        });
    };
    let fun: &dyn std::any::Any = f.func.inner().as_ref();
    if let Some(b) = fun.downcast_ref::<BucketStart>() {
        return bucket_case(&f.args[0], b.boundaries()).map(Transformed::yes);
    }
    if fun.downcast_ref::<ExactDecimal>().is_some() {
        return Ok(Transformed::yes(cast(
            f.args[0].clone(),
            datafusion::arrow::datatypes::DataType::Float64,
        )));
    }
    let unit = match f.name() {
        "hours_between" => 3600.0,
        "days_between" => 86400.0,
        _ => return Ok(Transformed::no(e)),
    };
    Ok(Transformed::yes(between(f, unit)))
}

/// `(epoch(to) - epoch(from)) / unit`: the duration in fractional units.
fn between(f: &ScalarFunction, unit_seconds: f64) -> Expr {
    use datafusion::functions::datetime::expr_fn::date_part;
    let epoch = |t: &Expr| date_part(lit("epoch"), t.clone());
    (epoch(&f.args[1]) - epoch(&f.args[0])) / lit(unit_seconds)
}

/// `CASE WHEN t >= b0 AND t < b1 THEN b0 WHEN t < b2 THEN b1 … END`: the start of the
/// bucket holding `t`, NULL outside `[b0, bn)`.
fn bucket_case(t: &Expr, b: &[i64]) -> datafusion::error::Result<Expr> {
    let at = |v: i64| lit(ScalarValue::TimestampMicrosecond(Some(v), Some(UTC.into())));
    let mut case = when(
        t.clone().gt_eq(at(b[0])).and(t.clone().lt(at(b[1]))),
        at(b[0]),
    );
    for w in b.windows(2).skip(1) {
        case.when(t.clone().lt(at(w[1])), at(w[0]));
    }
    case.otherwise(lit(ScalarValue::TimestampMicrosecond(
        None,
        Some(UTC.into()),
    )))
}

/// The value inside the output's float guard `CASE WHEN isnan(x) OR abs(x) = inf THEN
/// NULL ELSE x END`, which kpi adds for its own engine's division by zero.
fn guarded(e: &Expr) -> Option<Expr> {
    let Expr::Case(Case {
        expr: None,
        when_then_expr,
        else_expr: Some(inner),
    }) = e
    else {
        return None;
    };
    let [(cond, _)] = when_then_expr.as_slice() else {
        return None;
    };
    let Expr::BinaryExpr(b) = cond.as_ref() else {
        return None;
    };
    let is_nan = matches!(b.left.as_ref(), Expr::ScalarFunction(f) if f.name() == "isnan");
    (b.op == Operator::Or && is_nan).then(|| inner.as_ref().clone())
}

/// Syntax the unparser emits that a dialect lacks, rewritten in the statement's tree.
struct Fixups {
    dialect: SqlDialect,
}

impl VisitorMut for Fixups {
    type Break = ();

    fn post_visit_select(&mut self, select: &mut ast::Select) -> ControlFlow<()> {
        unqualify_over_derived(select);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        let ast::Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        if self.dialect == SqlDialect::Postgres && f.name.to_string().eq_ignore_ascii_case("median")
        {
            median_as_percentile(f);
        }
        if !self.dialect.has_aggregate_filter()
            && let Some(p) = f.filter.take()
        {
            filter_as_case(f, *p);
        }
        ControlFlow::Continue(())
    }
}

/// `median(x)` as PostgreSQL's `percentile_cont(0.5) WITHIN GROUP (ORDER BY x)`, which
/// interpolates between the two middle values as DataFusion's median does.
fn median_as_percentile(f: &mut ast::Function) {
    let ast::FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x))] = list.args.as_mut_slice()
    else {
        return;
    };
    let x = std::mem::replace(x, ast::Expr::value(ast::Value::Number("0.5".into(), false)));
    f.name = ast::ObjectName::from(vec![ast::Ident::new("percentile_cont")]);
    f.within_group = vec![ast::OrderByExpr {
        expr: x,
        options: ast::OrderByOptions {
            asc: None,
            nulls_first: None,
        },
        with_fill: None,
    }];
}

/// `agg(x) FILTER (WHERE p)` as `agg(CASE WHEN p THEN x END)`, and `count(*)` as
/// `count(CASE WHEN p THEN 1 END)`: the same value, since aggregates skip NULLs.
fn filter_as_case(f: &mut ast::Function, p: ast::Expr) {
    let ast::FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    for arg in &mut list.args {
        let ast::FunctionArg::Unnamed(a) = arg else {
            continue;
        };
        let x = match std::mem::replace(a, ast::FunctionArgExpr::Wildcard) {
            ast::FunctionArgExpr::Expr(x) => x,
            _ => ast::Expr::value(ast::Value::Number("1".into(), false)),
        };
        *a = ast::FunctionArgExpr::Expr(ast::Expr::Case {
            case_token: ast::helpers::attached_token::AttachedToken::empty(),
            end_token: ast::helpers::attached_token::AttachedToken::empty(),
            operand: None,
            conditions: vec![ast::CaseWhen {
                condition: p.clone(),
                result: x,
            }],
            else_result: None,
        });
    }
}

/// Column references of a `SELECT` over one derived table, written with the qualifier of
/// a table inside it, as plain names. The unparser writes a filter over a projection as
/// `SELECT … FROM (SELECT t.a …) AS derived_projection WHERE t.a …` (DataFusion issue
/// 25545; without the alias in dialects that do not require one), where `t` is out of
/// scope; with one relation in `FROM`, the plain name is
/// unambiguous.
fn unqualify_over_derived(select: &mut ast::Select) {
    let [from] = select.from.as_slice() else {
        return;
    };
    let ast::TableFactor::Derived { alias, .. } = &from.relation else {
        return;
    };
    if !from.joins.is_empty() {
        return;
    }
    let own = alias
        .as_ref()
        .map(|a| a.name.value.clone())
        .unwrap_or_default();
    let strip = |e: &mut ast::Expr| {
        if let ast::Expr::CompoundIdentifier(parts) = e
            && parts.len() == 2
            && parts[0].value != own
        {
            *e = ast::Expr::Identifier(parts[1].clone());
        }
        ControlFlow::<()>::Continue(())
    };
    for item in &mut select.projection {
        if let ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } =
            item
        {
            let _ = ast::visit_expressions_mut(e, strip);
        }
    }
    if let Some(w) = &mut select.selection {
        let _ = ast::visit_expressions_mut(w, strip);
    }
    if let ast::GroupByExpr::Expressions(es, _) = &mut select.group_by {
        for e in es {
            let _ = ast::visit_expressions_mut(e, strip);
        }
    }
    if let Some(h) = &mut select.having {
        let _ = ast::visit_expressions_mut(h, strip);
    }
}
