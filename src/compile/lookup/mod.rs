//! Lookups: a value for each source row, aggregated from the rows of another table that
//! match a condition. Two routes give the same values:
//!
//! * the **join plan**, which clusters and exported SQL can run: the source joined to the
//!   other table, aggregated per source row (on the model's `key`, or on a row number in
//!   a total order of every column), and joined back to the source;
//! * kpi's own **operator** on a local run, when the condition has an equality between
//!   the two sides ([`table`], [`exec::LookupExec`]): the source rows go into a hash
//!   table once, the other table streams past it, and each match feeds the value's
//!   accumulators at its source row's index. At 10M orders the join plan of
//!   `lead_response_hours` hashed 5.6M leads three times (two joins and a group-by,
//!   5.4 s in all); the operator hashes them once. As a row's value depends on that row
//!   alone, the metric's filters on the source's own columns are applied before it.

mod chains;
mod exec;
mod ranked;
mod run;
mod table;

use datafusion::common::{Column, DFSchema, JoinType};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;

use super::aggregate::{Split, aggregate_renamed};
use super::relation::scan;
use super::snippet::{self, Scope, columns_of};
use super::{Diags, plan_error};
use crate::diag::{Code, Diagnostic};
use crate::source::DataRoot;
use crate::validate::{Aggregate, Catalog, Metric};

pub use table::read_by;

/// One lookup, planned against the source's rows and the other table's.
pub(super) struct Planned {
    name: String,
    /// The looked-up table, qualified by its name.
    other: LogicalPlan,
    /// The condition, over the source's columns and the other table's.
    on: Expr,
    /// The value's aggregates and the formula over them.
    split: Split,
}

/// Plans each lookup of `agg` against `source` (qualified `alias`); a lookup may read the
/// values of the lookups before it, as source columns.
pub(super) async fn planned(
    ctx: &SessionContext,
    root: &DataRoot,
    cat: &Catalog,
    m: &Metric,
    agg: &Aggregate,
    source: &LogicalPlan,
    alias: &str,
) -> Result<Vec<Planned>, Diags> {
    let state = ctx.state();
    let mut own_schema = source.schema().as_ref().clone();
    let mut out = Vec::new();
    for l in &agg.lookups {
        let other = scan(
            ctx,
            root,
            cat,
            &l.from,
            &l.from,
            (m.file(), l.from_span.clone()),
        )
        .await?;
        let joined = own_schema.join(other.schema()).map_err(plan_error)?;
        let own = columns_of(&own_schema, alias);
        let on = snippet::plan(
            &state,
            &l.on,
            &Scope {
                schema: &joined,
                first: alias,
                first_columns: &own,
                origins: None,
            },
        )
        .map_err(|d| vec![d])?;
        let theirs = columns_of(other.schema(), &l.from);
        let value = snippet::plan(
            &state,
            &l.value,
            &Scope {
                schema: &joined,
                first: &l.from,
                first_columns: &theirs,
                origins: None,
            },
        )
        .map_err(|d| vec![d])?;
        let split = Split::new(&value, "__v").map_err(plan_error)?;
        let ty = table::value_type(&split, &joined).map_err(plan_error)?;
        let field = datafusion::arrow::datatypes::Field::new(l.name.as_str(), ty, true);
        let added = DFSchema::try_from_qualified_schema(
            alias,
            &datafusion::arrow::datatypes::Schema::new(vec![field]),
        )
        .map_err(plan_error)?;
        own_schema.merge(&added);
        out.push(Planned {
            name: l.name.clone(),
            other,
            on,
            split,
        });
    }
    Ok(out)
}

/// The source with each lookup's value as a column of `alias`: by kpi's operator when
/// `local` and every condition allows, else by the join plan.
pub(super) fn with_lookups(
    cat: &Catalog,
    m: &Metric,
    agg: &Aggregate,
    source: LogicalPlan,
    alias: &str,
    lookups: Vec<Planned>,
    local: bool,
) -> Result<LogicalPlan, Diags> {
    if local
        && let Some(plan) = table::operator(
            &format!("__lookups_{}", super::ident(&m.name)),
            &source,
            alias,
            &lookups,
        )
        .map_err(plan_error)?
    {
        return Ok(plan);
    }
    joined(cat, m, agg, source, alias, lookups)
}

/// The join plan. Each lookup's per-row values are joined back on the model's declared
/// key, or else on a row number in a total order of every column: the source plan runs
/// twice (once per side), and only a deterministic numbering matches up; rows equal in
/// every column may swap numbers, which changes no result.
fn joined(
    cat: &Catalog,
    m: &Metric,
    agg: &Aggregate,
    mut plan: LogicalPlan,
    alias: &str,
    lookups: Vec<Planned>,
) -> Result<LogicalPlan, Diags> {
    let declared = cat
        .model(&agg.source)
        .map(|md| md.spec.key.clone())
        .unwrap_or_default();
    let own = columns_of(plan.schema(), alias);
    let mut keys: Vec<Expr> = Vec::new();
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
            keys.push(Expr::Column(Column::new(Some(alias), k.value.as_str())));
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
            .and_then(|b| b.alias(alias))
            .and_then(|b| b.build())
            .map_err(plan_error)?;
        keys.push(Expr::Column(Column::new(Some(alias), "__rid")));
    }
    for (i, l) in lookups.into_iter().enumerate() {
        let joined = LogicalPlanBuilder::from(plan.clone())
            .join_on(l.other, JoinType::Inner, vec![l.on])
            .and_then(|b| b.build())
            .map_err(plan_error)?;
        let side = format!("__lookup{i}");
        let group: Vec<Expr> = keys
            .iter()
            .enumerate()
            .map(|(j, k)| k.clone().alias(format!("__k{j}")))
            .collect();
        let per_row = aggregate_renamed(
            LogicalPlanBuilder::from(joined),
            group,
            l.split.aggregates.clone(),
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
        let filled = l.split.post_filled().map_err(plan_error)?;
        // The per-row aggregates come qualified by `side`; the formula reads them bare.
        let filled = qualified(filled, &side, |n| l.split.names.iter().any(|m| m == n));
        let mut exprs = keep;
        exprs.push(filled.alias_qualified(Some(alias), l.name.as_str()));
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
    Ok(plan)
}

/// `e` with its bare columns that `owns` names qualified by `qualifier` (as
/// [`crate::sql::qualify`] does to SQL text).
fn qualified(e: Expr, qualifier: &str, owns: impl Fn(&str) -> bool) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    e.transform_up(|x| match &x {
        Expr::Column(c) if c.relation.is_none() && owns(&c.name) => Ok(Transformed::yes(
            Expr::Column(Column::new(Some(qualifier), c.name.as_str())),
        )),
        _ => Ok(Transformed::no(x)),
    })
    .map(|t| t.data)
    .unwrap_or_else(|_| unreachable!("infallible rewrite"))
}
