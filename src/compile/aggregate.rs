//! Splitting an aggregate formula into its aggregate calls and the expression over them,
//! and the empty-set rule: over no rows, `count` and `sum` are 0, every other aggregate
//! is NULL, and the formula is computed from those — so `revenue / paid_orders` of an
//! empty period is 0 / 0 = NULL, while `count(*)` is 0, as the catalogue requires.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::find_aggregate_exprs;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, col, lit};
use datafusion::prelude::coalesce;

/// An aggregate formula split in two.
#[derive(Debug, Clone)]
pub struct Split {
    /// The distinct aggregate calls, each aliased to a column name.
    pub aggregates: Vec<Expr>,
    /// Output column names of `aggregates`, in order.
    pub names: Vec<String>,
    /// Whether each aggregate is a count or a sum (0 over no rows).
    pub additive: Vec<bool>,
    /// The formula over the aggregates' columns.
    pub post: Expr,
}

impl Split {
    /// Splits `expr`, naming aggregate columns `{prefix}{i}`.
    pub fn new(expr: &Expr, prefix: &str) -> Result<Split> {
        let found = find_aggregate_exprs(std::iter::once(expr));
        let names: Vec<String> = (0..found.len()).map(|i| format!("{prefix}{i}")).collect();
        let additive = found.iter().map(is_additive).collect();
        let post = expr
            .clone()
            .transform_up(|e| match found.iter().position(|f| f == &e) {
                Some(i) => Ok(Transformed::yes(col(names[i].as_str()))),
                None => Ok(Transformed::no(e)),
            })?
            .data;
        let aggregates = found
            .into_iter()
            .zip(&names)
            .map(|(e, n)| e.alias(n))
            .collect();
        Ok(Split {
            aggregates,
            names,
            additive,
            post,
        })
    }

    /// The formula with counts and sums read as 0 when missing: correct both for groups
    /// with rows and for the empty groups an outer join brings in.
    pub fn post_filled(&self) -> Result<Expr> {
        fill(&self.post, &self.names, &self.additive)
    }
}

/// Wraps the additive columns of `names` in `coalesce(…, 0)` inside `expr`.
pub fn fill(expr: &Expr, names: &[String], additive: &[bool]) -> Result<Expr> {
    Ok(expr
        .clone()
        .transform_up(|e| match &e {
            Expr::Column(c) if c.relation.is_none() => {
                match names.iter().position(|n| n == &c.name) {
                    Some(i) if additive[i] => {
                        Ok(Transformed::yes(coalesce(vec![e.clone(), lit(0i64)])))
                    }
                    _ => Ok(Transformed::no(e)),
                }
            }
            _ => Ok(Transformed::no(e)),
        })?
        .data)
}

fn is_additive(e: &Expr) -> bool {
    match e {
        Expr::AggregateFunction(AggregateFunction { func, .. }) => {
            matches!(func.name().to_ascii_lowercase().as_str(), "count" | "sum")
        }
        _ => false,
    }
}

/// `input.aggregate(group, aggregates)` with each aggregate computed un-aliased, as
/// DataFusion's SQL planner builds it, and renamed by a projection just above. Optimizer
/// rules recognize only bare aggregate calls: `count(DISTINCT x)` per group, for one, is
/// rewritten into a two-level group-by instead of a hash set per group. Equal calls (two
/// fused metrics both counting rows) are computed once and named twice. Group
/// expressions and aggregates may carry aliases; the output columns are those aliases.
pub fn aggregate_renamed(
    input: LogicalPlanBuilder,
    group: Vec<Expr>,
    aggregates: Vec<Expr>,
) -> Result<LogicalPlanBuilder> {
    let n_group = group.len();
    let mut bare: Vec<Expr> = Vec::new();
    let mut outputs: Vec<(usize, Option<String>)> = Vec::new();
    for e in aggregates {
        let (e, name) = match e {
            Expr::Alias(a) => (*a.expr, Some(a.name)),
            other => (other, None),
        };
        let i = bare.iter().position(|b| b == &e).unwrap_or_else(|| {
            bare.push(e);
            bare.len() - 1
        });
        outputs.push((i, name));
    }
    let b = input.aggregate(group, bare)?;
    let fields: Vec<Expr> = b
        .schema()
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect();
    let mut columns: Vec<Expr> = fields[..n_group].to_vec();
    for (i, name) in outputs {
        let c = fields[n_group + i].clone();
        columns.push(match name {
            Some(n) => c.alias(n),
            None => c,
        });
    }
    b.project(columns)
}

/// Aggregate `a` (possibly aliased) counting only rows where `c` holds (and
/// its own filter, if any).
pub fn with_filter(a: &Expr, c: &Expr) -> Expr {
    match a {
        Expr::Alias(al) => with_filter(&al.expr, c).alias(al.name.as_str()),
        Expr::AggregateFunction(AggregateFunction { func, params }) => {
            let filter = match &params.filter {
                Some(f) => c.clone().and((**f).clone()),
                None => c.clone(),
            };
            Expr::AggregateFunction(AggregateFunction::new_udf(
                func.clone(),
                params.args.clone(),
                params.distinct,
                Some(Box::new(filter)),
                params.order_by.clone(),
                params.null_treatment,
            ))
        }
        other => other.clone(),
    }
}
