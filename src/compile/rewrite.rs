//! Rewrites applied to every planned expression, whatever stage or assembly it ends up
//! in: true division that never yields infinity or NaN, and exact float sums.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, ExprSchemable, Operator, binary_expr, cast, lit};
use datafusion::prelude::nullif;

use super::exact::exact_decimal;

/// Rewrites every numeric division into true division that yields NULL instead of an
/// error, infinity or NaN: `CAST(a AS DOUBLE) / NULLIF(CAST(b AS DOUBLE), 0)`.
pub fn safe_division(e: Expr, schema: &DFSchema) -> Expr {
    e.transform_up(|x| {
        if let Expr::BinaryExpr(b) = &x
            && b.op == Operator::Divide
        {
            let numeric = |e: &Expr| {
                e.get_type(schema)
                    .is_ok_and(|t| t.is_numeric() || t == DataType::Null)
            };
            if numeric(&b.left) && numeric(&b.right) {
                let l = cast((*b.left).clone(), DataType::Float64);
                let r = cast((*b.right).clone(), DataType::Float64);
                // A denominator written `nullif(x, 0)` already states the rule.
                let r = if is_nullif_zero(&b.right) {
                    r
                } else {
                    nullif(r, lit(0f64))
                };
                return Ok(Transformed::yes(binary_expr(l, Operator::Divide, r)));
            }
        }
        Ok(Transformed::no(x))
    })
    .map(|t| t.data)
    .expect("infallible rewrite")
}

/// Whether `e` is `nullif(x, 0)` (any numeric zero).
fn is_nullif_zero(e: &Expr) -> bool {
    let Expr::ScalarFunction(f) = e else {
        return false;
    };
    f.name() == "nullif"
        && matches!(f.args.get(1), Some(Expr::Literal(v, _))
            if v.cast_to(&DataType::Float64).ok() == Some(ScalarValue::Float64(Some(0.0))))
}

/// Makes `sum` and `avg` of floats deterministic to the last bit: a float sum depends on
/// the order of its additions, which parallel execution does not fix, so the values are
/// accumulated as 256-bit decimals ([`super::exact`]) and the result converted back to
/// `DOUBLE`. The same data gives the same bytes in every layout and run.
pub fn exact_float_sums(e: Expr, schema: &DFSchema) -> Expr {
    e.transform_up(|x| {
        if let Expr::AggregateFunction(AggregateFunction { func, params }) = &x
            && matches!(func.name(), "sum" | "avg")
            && params.args.len() == 1
            && matches!(
                params.args[0].get_type(schema),
                Ok(DataType::Float64 | DataType::Float32)
            )
        {
            let exact = AggregateFunction::new_udf(
                func.clone(),
                vec![exact_decimal(params.args[0].clone())],
                params.distinct,
                params.filter.clone(),
                params.order_by.clone(),
                params.null_treatment,
            );
            return Ok(Transformed::yes(cast(
                Expr::AggregateFunction(exact),
                DataType::Float64,
            )));
        }
        Ok(Transformed::no(x))
    })
    .map(|t| t.data)
    .expect("infallible rewrite")
}
