//! The rows a metric reads: its source (a table or a model's table or SQL), with the
//! model's joins and the metric's lookups, as one logical plan whose source columns are
//! qualified by the source's name.

use std::collections::HashSet;

use datafusion::common::{Column, JoinType};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, col};
use datafusion::prelude::SessionContext;

use super::aggregate::{Split, aggregate_renamed};
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
async fn scan(
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
    // Lookups read the source alone. Each lookup's per-row values are joined back on the
    // model's declared key, or else on a row number in a total order of every column: the
    // source plan runs twice (once per side), and only a deterministic numbering matches
    // up; rows equal in every column may swap numbers, which changes no result.
    let mut keys: Vec<Expr> = Vec::new();
    if !agg.lookups.is_empty() {
        let declared = cat
            .model(&agg.source)
            .map(|md| md.spec.key.clone())
            .unwrap_or_default();
        let own = columns_of(plan.schema(), &alias);
        if !declared.is_empty() {
            for k in &declared {
                if !own.contains(&k.value) {
                    let file = cat.model(&agg.source).map_or(m.file(), |md| md.spec.file);
                    return Err(vec![
                        Diagnostic::error(
                            Code::UnknownColumn,
                            format!("key column `{}` is not a column of `{alias}`", k.value),
                        )
                        .at(file, k.span.clone(), ""),
                    ]);
                }
                keys.push(Expr::Column(Column::new(
                    Some(alias.as_str()),
                    k.value.as_str(),
                )));
            }
        } else {
            let order: Vec<_> = plan
                .schema()
                .columns()
                .into_iter()
                .map(|c| Expr::Column(c).sort(true, true))
                .collect();
            let rn = row_number()
                .order_by(order)
                .build()
                .map_err(plan_error)?
                .alias("__rid");
            plan = LogicalPlanBuilder::from(plan)
                .window(vec![rn])
                .and_then(|b| b.alias(&alias))
                .and_then(|b| b.build())
                .map_err(plan_error)?;
            keys.push(Expr::Column(Column::new(Some(alias.as_str()), "__rid")));
        }
        for (i, l) in agg.lookups.iter().enumerate() {
            let other = scan(
                ctx,
                root,
                cat,
                &l.from,
                &l.from,
                (m.file(), l.from_span.clone()),
            )
            .await?;
            let joined_schema = plan.schema().join(other.schema()).map_err(plan_error)?;
            let own = columns_of(plan.schema(), &alias);
            let on = snippet::plan(
                &state,
                &l.on,
                &Scope {
                    schema: &joined_schema,
                    first: &alias,
                    first_columns: &own,
                    origins: None,
                },
            )
            .map_err(|d| vec![d])?;
            let joined = LogicalPlanBuilder::from(plan.clone())
                .join_on(other.clone(), JoinType::Inner, vec![on])
                .and_then(|b| b.build())
                .map_err(plan_error)?;
            let theirs = columns_of(other.schema(), &l.from);
            let value = snippet::plan(
                &state,
                &l.value,
                &Scope {
                    schema: joined.schema(),
                    first: &l.from,
                    first_columns: &theirs,
                    origins: None,
                },
            )
            .map_err(|d| vec![d])?;
            let split = Split::new(&value, "__v").map_err(plan_error)?;
            let side = format!("__lookup{i}");
            let group: Vec<Expr> = keys
                .iter()
                .enumerate()
                .map(|(j, k)| k.clone().alias(format!("__k{j}")))
                .collect();
            let per_row = aggregate_renamed(
                LogicalPlanBuilder::from(joined),
                group,
                split.aggregates.clone(),
            )
            .and_then(|b| b.alias(&side))
            .and_then(|b| b.build())
            .map_err(plan_error)?;
            let keep: Vec<Expr> = plan
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            let filled = split.post_filled().map_err(plan_error)?;
            // The per-row aggregates come qualified by `side`; the formula reads them bare.
            let filled = requalify(filled, &split.names, &side);
            let mut exprs = keep;
            exprs.push(filled.alias_qualified(Some(alias.as_str()), l.name.as_str()));
            plan = LogicalPlanBuilder::from(plan)
                .join_on(
                    per_row,
                    JoinType::Left,
                    keys.iter().enumerate().map(|(j, k)| {
                        k.clone().eq(Expr::Column(Column::new(
                            Some(side.as_str()),
                            format!("__k{j}"),
                        )))
                    }),
                )
                .and_then(|b| b.project(exprs))
                .and_then(|b| b.build())
                .map_err(plan_error)?;
        }
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

fn requalify(e: Expr, names: &[String], side: &str) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    e.transform_up(|x| match &x {
        Expr::Column(c) if c.relation.is_none() && names.contains(&c.name) => Ok(Transformed::yes(
            col(Column::new(Some(side), c.name.as_str())),
        )),
        _ => Ok(Transformed::no(x)),
    })
    .map(|t| t.data)
    .unwrap_or_else(|_| unreachable!("infallible rewrite"))
}
