//! Per-entity windows merged for the periods an entity has rows in.
//!
//! A per-entity metric over a window (won-back customers, over all history) reads, for
//! each entity and period, the entity's rows in the period's window. Merging the
//! per-interval partials of [`super::partials`] for every period whose window holds
//! them pairs each (entity, interval) with every later period under `window: all`: a
//! customer seen once in 2019 is grouped again for each of the run's periods.
//!
//! Most such formulas ignore an entity in a period where it has no rows: won-back counts
//! customers whose *first order in the period* came long after their last before it, and
//! that first order is NULL where there is none. When the formula provably does, the
//! periods an entity has rows in (its anchors) are found first, and its partials are
//! joined to those periods only, on the entity: a customer's partials meet its own
//! active periods, not every period of the run. Each aggregate's conditions on the
//! bounds (`t < $start`, `t >= $start`) say whether it reads rows before the period; an
//! entity column whose aggregates read none has its empty value outside the anchors,
//! and the formula is checked against those values ([`ignores_empty`]).

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, col, lit,
};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use super::partials::{self, INTERVAL, Merge};
use super::period::Period;
use super::snippet::PERIOD;
use super::stage::{MIN_INSTANT, instant};
use super::{Diags, plan_error};

/// Whether each aggregate reads rows before the period (in its window), in order.
pub type ReadsBefore = Vec<bool>;

/// Whether each of `merges` reads rows of the window before the period, in order;
/// `None` when the conditions on the bounds of one do not say.
pub fn reads_before_each(merges: &[Merge], windows: &[(Period, i64)]) -> Option<ReadsBefore> {
    merges
        .iter()
        .map(|m| reads_before(m.period.as_ref(), windows))
        .collect()
}

/// The aggregates (aliased) of `rows` per period start and `keys`, merged from the
/// per-interval partials `level1` (split into `merges` by [`partials::per_interval`];
/// intervals cut by `bounds`; `map` the `__period` relation of
/// [`partials::interval_map`]) for the keys with rows in each period only. `None` when
/// a merge would change an aggregate's type.
#[allow(clippy::too_many_arguments)]
pub fn per_anchor(
    rows: &LogicalPlan,
    merges: &[Merge],
    level1: LogicalPlan,
    windows: &[(Period, i64)],
    bounds: &[i64],
    map: LogicalPlan,
    keys: &[(String, Expr)],
    aggregates: &[Expr],
) -> Result<Option<LogicalPlanBuilder>, Diags> {
    let bound = |name: &str| col(Column::new(Some(PERIOD), name));
    let anchor = |key: &str| format!("__anchor_{key}");
    // The (keys, period) pairs with rows in the period: each interval inside a period
    // belongs to that period alone.
    let inside = LogicalPlanBuilder::from(map)
        .filter(
            bound("iv")
                .gt_eq(bound("start"))
                .and(bound("iv").lt(bound("end"))),
        )
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    let mut columns: Vec<Expr> = keys
        .iter()
        .map(|(n, _)| col(n.as_str()).alias(anchor(n)))
        .collect();
    columns.extend(["start", "end", "wstart", "at"].map(|c| bound(c).alias(c)));
    let mut anchors = LogicalPlanBuilder::from(level1.clone())
        .join_on(inside, JoinType::Inner, vec![col(INTERVAL).eq(bound("iv"))])
        .and_then(|b| b.project(columns))
        .map_err(plan_error)?;
    // A partial is one per (interval, keys) without a distinct value, and a period of one
    // interval then has one per keys already.
    let one_interval = partials::one_interval_per_period(windows, bounds);
    if !(one_interval && partials::distinct_argument(aggregates) == Some(None)) {
        anchors = anchors.distinct().map_err(plan_error)?;
    }
    let anchors = anchors
        .alias(PERIOD)
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    let mut on: Vec<Expr> = keys
        .iter()
        .map(|(n, _)| col(n.as_str()).eq(col(Column::new(Some(PERIOD), anchor(n)))))
        .collect();
    if windows.iter().any(|(_, w)| *w > MIN_INSTANT) {
        on.push(col(INTERVAL).gt_eq(bound("wstart")));
    }
    // Intervals start at bounds, so with none inside a period `iv < end` is `iv <= start`,
    // and the join's table need not hold the ends.
    on.push(if one_interval {
        col(INTERVAL).lt_eq(bound("start"))
    } else {
        col(INTERVAL).lt(bound("end"))
    });
    let joined = LogicalPlanBuilder::from(level1)
        .join_on(anchors, JoinType::Inner, on)
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    partials::per_period(rows, joined, keys, merges, aggregates)
}

/// Whether a merge with conditions `period` (over [`INTERVAL`] and the bounds) reads
/// rows of the window before the period, for some period; `None` when that cannot be
/// decided. The conditions compare the interval with the bounds alone, so they hold
/// alike for every interval in `[window start, start)`.
fn reads_before(period: Option<&Expr>, windows: &[(Period, i64)]) -> Option<bool> {
    let mut any = false;
    for (p, w) in windows {
        if *w >= p.start {
            continue;
        }
        any |= match period {
            None => true,
            Some(f) => holds(f, p.start - 1, p, *w)?,
        };
    }
    Some(any)
}

/// The value of `f` for a row of interval `iv` in period `p` with window start `w`.
fn holds(f: &Expr, iv: i64, p: &Period, w: i64) -> Option<bool> {
    let bound = |name: &str| match name {
        "start" => Some(p.start),
        "end" | "at" => Some(p.end),
        "wstart" => Some(w),
        _ => None,
    };
    let mut unknown = false;
    let fixed = f
        .clone()
        .transform_up(|x| match &x {
            Expr::Column(c) if c.relation.is_none() && c.name == INTERVAL => {
                Ok(Transformed::yes(instant(iv)))
            }
            Expr::Column(c) if c.relation.as_ref().is_some_and(|r| r.table() == PERIOD) => {
                match bound(&c.name) {
                    Some(v) => Ok(Transformed::yes(instant(v))),
                    None => {
                        unknown = true;
                        Ok(Transformed::no(x))
                    }
                }
            }
            _ => Ok(Transformed::no(x)),
        })
        .ok()?
        .data;
    if unknown {
        return None;
    }
    match ExprSimplifier::new(SimplifyContext::default())
        .simplify(fixed)
        .ok()?
    {
        Expr::Literal(ScalarValue::Boolean(b), _) => Some(b.unwrap_or(false)),
        _ => None,
    }
}

/// Whether every aggregate of `aggregates` ignores an entity row whose columns `empty`
/// hold their values for an entity without rows in the period (the other columns
/// unknown): such rows can be left out.
pub fn ignores_empty(aggregates: &[Expr], empty: &[(String, Expr)]) -> bool {
    aggregates.iter().all(|a| {
        let inner = match a {
            Expr::Alias(al) => al.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
            return false;
        };
        let fixed = |e: &Expr| substitute(e, empty);
        if let Some(f) = &params.filter
            && rejects(&fixed(f))
        {
            return true;
        }
        // An aggregate that skips NULLs skips a row whose argument is NULL.
        matches!(func.name(), "count" | "sum" | "min" | "max" | "avg")
            && params.args.len() == 1
            && null_when(&fixed(&params.args[0]))
    })
}

fn substitute(e: &Expr, empty: &[(String, Expr)]) -> Expr {
    e.clone()
        .transform_up(|x| match &x {
            Expr::Column(c) if c.relation.is_none() => {
                match empty.iter().find(|(n, _)| n == &c.name) {
                    Some((_, v)) => Ok(Transformed::yes(v.clone())),
                    None => Ok(Transformed::no(x)),
                }
            }
            _ => Ok(Transformed::no(x)),
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| e.clone())
}

/// Whether the filter `f` is false or NULL whatever the unknown columns hold.
fn rejects(f: &Expr) -> bool {
    if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = f {
        match op {
            Operator::And => return rejects(left) || rejects(right),
            Operator::Or => return rejects(left) && rejects(right),
            _ => {}
        }
    }
    if f.column_refs().is_empty() {
        return matches!(
            ExprSimplifier::new(SimplifyContext::default()).simplify(f.clone()),
            Ok(Expr::Literal(ScalarValue::Boolean(None | Some(false)), _))
        );
    }
    null_when(f)
}

/// Whether `e` is NULL whatever the unknown columns hold: a NULL reaches it through
/// operators and functions that return NULL on a NULL argument.
fn null_when(e: &Expr) -> bool {
    match e {
        Expr::Literal(v, _) => v.is_null(),
        Expr::Alias(a) => null_when(&a.expr),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let strict = matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::Plus
                    | Operator::Minus
                    | Operator::Multiply
                    | Operator::Divide
                    | Operator::Modulo
            );
            strict && (null_when(left) || null_when(right))
        }
        Expr::Cast(c) => null_when(&c.expr),
        Expr::TryCast(c) => null_when(&c.expr),
        Expr::Negative(x) | Expr::Not(x) => null_when(x),
        // kpi's own functions are NULL where an argument is.
        Expr::ScalarFunction(f) if matches!(f.name(), "days_between" | "hours_between") => {
            f.args.iter().any(null_when)
        }
        _ => false,
    }
}

/// The value of an entity column for an entity without rows in the period: `column`
/// (over aggregates `names`) with those aggregates NULL, as merged over no partials.
pub fn empty_value(column: &Expr, names: &[String]) -> Expr {
    let nulled = column
        .clone()
        .transform_up(|x| match &x {
            Expr::Column(c) if c.relation.is_none() && names.contains(&c.name) => {
                Ok(Transformed::yes(lit(ScalarValue::Null)))
            }
            _ => Ok(Transformed::no(x)),
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| column.clone());
    ExprSimplifier::new(SimplifyContext::default())
        .simplify(nulled.clone())
        .unwrap_or(nulled)
}

#[cfg(test)]
mod tests {
    use datafusion::functions_aggregate::expr_fn::{count, sum};
    use datafusion::logical_expr::{ExprFunctionExt, col, lit};
    use datafusion::prelude::coalesce;

    use super::*;

    fn filtered_count(f: Expr) -> Expr {
        count(lit(1)).filter(f).build().unwrap()
    }

    /// `first` is NULL and `during` is 0 for an entity without rows in the period.
    fn empty() -> Vec<(String, Expr)> {
        vec![
            ("first".into(), lit(ScalarValue::Null)),
            ("during".into(), lit(0i64)),
        ]
    }

    #[test]
    fn a_formula_ignores_entities_without_rows_only_where_every_aggregate_provably_does() {
        let cases = [
            // NULL compared is NULL: won-back's condition.
            (
                filtered_count((col("first") - col("last")).gt(lit(180i64))),
                true,
            ),
            // 0 > 0 is false, whatever `total` holds.
            (
                filtered_count(
                    col("during")
                        .gt(lit(0i64))
                        .and(col("total").gt_eq(lit(3i64))),
                ),
                true,
            ),
            // One side of an OR may hold.
            (
                filtered_count(col("during").gt(lit(0i64)).or(col("total").gt(lit(0i64)))),
                false,
            ),
            // coalesce turns the NULL into a value.
            (
                filtered_count(coalesce(vec![col("first"), col("last")]).gt(lit(0i64))),
                false,
            ),
            // Every row counts.
            (count(lit(1)), false),
            // A sum skips a NULL argument.
            (sum(col("first")), true),
            (sum(col("last")), false),
        ];
        for (aggregate, ignores) in cases {
            assert_eq!(
                ignores_empty(std::slice::from_ref(&aggregate), &empty()),
                ignores,
                "{aggregate}"
            );
        }
    }

    #[test]
    fn an_entity_columns_empty_value_is_its_merge_over_no_partials() {
        let filled = coalesce(vec![col("__e0_0"), lit(0i64)]);
        assert_eq!(empty_value(&filled, &["__e0_0".into()]), lit(0i64));
        assert_eq!(
            empty_value(&col("__e1_0"), &["__e1_0".into()]),
            lit(ScalarValue::Null)
        );
    }
}
