//! The rows a metric reads: its source (a table or a model's table or SQL), with the
//! model's joins and the metric's lookups, as one logical plan whose source columns are
//! qualified by the source's name.

use std::collections::HashSet;

use datafusion::common::{Column, JoinType};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;

use super::lookup;
use super::snippet::{self, Scope, columns_of};
use super::{Diags, plan_error};
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::source::{DataRoot, Declared, Origins, SourceError};
use crate::spec::JoinOn;
use crate::validate::{Aggregate, Catalog, Metric};

/// The names a metric's SQL mentions, to leave out the joins nothing reads.
#[derive(Debug, Default)]
pub struct Used {
    qualifiers: HashSet<String>,
    bare: HashSet<String>,
}

impl Used {
    /// Records the columns `sql` refers to.
    pub fn add(&mut self, sql: &crate::sql::Sql) {
        for c in crate::sql::Facts::of(&sql.ast).columns {
            match c.parts.as_slice() {
                [name] => self.bare.insert(name.clone()),
                [q, ..] => self.qualifiers.insert(q.clone()),
                [] => false,
            };
        }
    }

    /// Whether a join to `target` is read: named as a qualifier, or needed for a bare
    /// name the source itself lacks.
    fn needs(&self, target: &str, own: &HashSet<String>) -> bool {
        self.qualifiers.contains(target) || self.bare.iter().any(|n| !own.contains(n))
    }
}

/// A metric's rows.
pub struct Relation {
    pub plan: LogicalPlan,
    /// The source's name: the qualifier of its own columns.
    pub alias: String,
    /// The source's own column names (lookup columns included).
    pub own: HashSet<String>,
    /// The data files behind each qualifier, to explain a column's inferred type.
    pub origins: Origins,
}

impl Relation {
    /// The scope in which the metric's SQL resolves.
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            schema: self.plan.schema(),
            first: &self.alias,
            first_columns: &self.own,
            origins: Some(&self.origins),
        }
    }
}

/// The column types every model reading `table` declares.
fn declared(cat: &Catalog, table: &str) -> Vec<Declared> {
    cat.models
        .iter()
        .filter(|m| m.spec.table.as_ref().is_some_and(|t| t.value == table))
        .flat_map(|m| {
            m.spec.columns.iter().map(|(c, ty)| Declared {
                column: c.value.clone(),
                ty: ty.value,
                model: m.name().to_string(),
            })
        })
        .collect()
}

/// Where model `model` declares `column`, for a diagnostic.
fn declaration_span(
    cat: &Catalog,
    model: &str,
    column: &str,
) -> Option<(crate::diag::FileId, std::ops::Range<usize>)> {
    let m = cat.model(model)?;
    let (_, ty) = m.spec.columns.iter().find(|(c, _)| c.value == column)?;
    Some((m.spec.file, ty.span.clone()))
}

/// Scans table or model `name`, aliased `alias`.
pub(super) async fn scan(
    ctx: &SessionContext,
    root: &DataRoot,
    cat: &Catalog,
    name: &str,
    alias: &str,
    at: (crate::diag::FileId, std::ops::Range<usize>),
) -> Result<LogicalPlan, Diags> {
    let model = cat.model(name);
    let plan = match model {
        Some(m) if m.query.is_some() => {
            let q = m.query.clone().expect("checked");
            let statement = datafusion::sql::parser::Statement::Statement(Box::new(
                datafusion::sql::sqlparser::ast::Statement::Query(q),
            ));
            let tables = ctx
                .state()
                .resolve_table_references(&statement)
                .map_err(plan_error)?;
            for t in tables {
                root.register(ctx, t.table(), &declared(cat, t.table()))
                    .await
                    .map_err(|e| {
                        let sql = m.spec.sql.as_ref().expect("checked");
                        vec![Diagnostic::error(Code::UnknownTable, e.to_string()).at(
                            sql.file,
                            sql.span.clone(),
                            "in this query",
                        )]
                    })?;
            }
            ctx.state()
                .statement_to_plan(statement)
                .await
                .map_err(|e| {
                    let sql = m.spec.sql.as_ref().expect("checked");
                    vec![
                        Diagnostic::error(Code::SqlError, snippet::clean_message(&e.to_string()))
                            .at(sql.file, sql.span.clone(), ""),
                    ]
                })?
        }
        _ => {
            let table = model
                .and_then(|m| m.spec.table.as_ref())
                .map_or(name, |t| t.value.as_str());
            let (file, span) = match model
                .and_then(|m| m.spec.table.as_ref().map(|t| (m.spec.file, t.span.clone())))
            {
                Some(x) => x,
                None => at,
            };
            if let Err(e) = root.register(ctx, table, &declared(cat, table)).await {
                let via_model = model.is_some_and(|m| m.spec.table.is_some());
                let mut candidates: Vec<&str> = root.tables.keys().map(String::as_str).collect();
                if !via_model {
                    candidates.extend(cat.models.iter().map(|m| m.name()));
                }
                let d = match e {
                    SourceError::UnknownTable { .. } if via_model => {
                        let root_name = root.root.display();
                        let label = did_you_mean(table, candidates)
                            .unwrap_or_else(|| format!("not in data root {root_name}"));
                        Diagnostic::error(Code::UnknownTable, format!("data root {root_name} has no table `{table}`"))
                            .at(file, span, label)
                            .note(format!("a table is a file `{table}.csv` or `{table}.parquet`, or a folder `{table}/`"))
                    }
                    SourceError::UnknownTable { .. } => {
                        let label = did_you_mean(table, candidates)
                            .unwrap_or_else(|| "no such table or model".into());
                        Diagnostic::error(
                            Code::UnknownTable,
                            format!("no table or model `{table}`"),
                        )
                        .at(file, span, label)
                    }
                    SourceError::DeclaredMissing {
                        ref model,
                        ref column,
                        ..
                    }
                    | SourceError::DeclaredMismatch {
                        ref model,
                        ref column,
                        ..
                    } => {
                        let (file, span) =
                            declaration_span(cat, model, column).unwrap_or((file, span));
                        Diagnostic::error(Code::BadTable, e.to_string()).at(
                            file,
                            span,
                            "declared here",
                        )
                    }
                    other => {
                        Diagnostic::error(Code::BadTable, other.to_string()).at(file, span, "")
                    }
                };
                return Err(vec![d]);
            }
            ctx.table(table)
                .await
                .map_err(plan_error)?
                .into_unoptimized_plan()
        }
    };
    LogicalPlanBuilder::from(plan)
        .alias(alias)
        .and_then(|b| b.build())
        .map_err(plan_error)
}

/// Builds the rows of aggregate metric `m`.
pub async fn build(
    ctx: &SessionContext,
    root: &DataRoot,
    cat: &Catalog,
    m: &Metric,
    agg: &Aggregate,
    used: Option<&Used>,
    local: bool,
) -> Result<Relation, Diags> {
    let state = ctx.state();
    let alias = agg.source.clone();
    let mut plan = scan(
        ctx,
        root,
        cat,
        &agg.source,
        &alias,
        (m.file(), agg.source_span.clone()),
    )
    .await?;
    if !agg.lookups.is_empty() {
        let planned = lookup::planned(ctx, root, cat, m, agg, &plan, &alias).await?;
        plan = lookup::with_lookups(cat, m, agg, plan, &alias, planned, local)?;
    }
    // The model's joins.
    if let Some(model) = cat.model(&agg.source) {
        let own_before_joins = columns_of(plan.schema(), &alias);
        for j in &model.joins {
            let target = &j.spec.target.value;
            if !used.is_none_or(|u| u.needs(target, &own_before_joins)) {
                continue;
            }
            let right = scan(
                ctx,
                root,
                cat,
                target,
                target,
                (model.spec.file, j.spec.target.span.clone()),
            )
            .await?;
            let cond = match (&j.spec.on, &j.condition) {
                (JoinOn::Columns(cols), _) => {
                    let mut e: Option<Expr> = None;
                    for c in cols {
                        let l = Expr::Column(Column::new(Some(alias.as_str()), c.value.as_str()));
                        let r = Expr::Column(Column::new(Some(target.as_str()), c.value.as_str()));
                        for (side, schema, q) in [
                            (&l, plan.schema(), alias.as_str()),
                            (&r, right.schema(), target.as_str()),
                        ] {
                            let _ = side;
                            if !columns_of(schema, q).contains(&c.value) {
                                return Err(vec![
                                    Diagnostic::error(
                                        Code::UnknownColumn,
                                        format!("`{q}` has no column `{}` to join on", c.value),
                                    )
                                    .at(
                                        model.spec.file,
                                        c.span.clone(),
                                        "",
                                    ),
                                ]);
                            }
                        }
                        let eq = l.eq(r);
                        e = Some(match e {
                            None => eq,
                            Some(prev) => prev.and(eq),
                        });
                    }
                    e.ok_or_else(|| {
                        vec![
                            Diagnostic::error(Code::BadJoin, "a join needs at least one column")
                                .at(model.spec.file, j.spec.span.clone(), ""),
                        ]
                    })?
                }
                (JoinOn::Condition(_), Some(sql)) => {
                    let schema = plan.schema().join(right.schema()).map_err(plan_error)?;
                    let own = columns_of(plan.schema(), &alias);
                    snippet::plan(
                        &state,
                        sql,
                        &Scope {
                            schema: &schema,
                            first: &alias,
                            first_columns: &own,
                            origins: None,
                        },
                    )
                    .map_err(|d| vec![d])?
                }
                (JoinOn::Condition(_), None) => continue,
            };
            plan = LogicalPlanBuilder::from(plan)
                .join_on(right, JoinType::Left, vec![cond])
                .and_then(|b| b.build())
                .map_err(plan_error)?;
        }
    }
    let own = columns_of(plan.schema(), &alias);
    let origins = Origins::of(&plan, root);
    Ok(Relation {
        plan,
        alias,
        own,
        origins,
    })
}
