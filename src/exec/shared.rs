//! Subplans that a scan's plan holds more than once, computed once before it runs.
//!
//! DataFusion plans and runs every occurrence of a repeated subtree on its own. kpi's
//! anchored per-entity windows read their per-interval partials twice (once to find each
//! entity's periods, once to merge them there), so the costliest aggregation of such a
//! plan ran twice. Here each repeated subtree that aggregates is run first, its batches
//! held in memory, and every occurrence reads them instead. A repeated join or scan
//! without an aggregate is left to run twice: holding its rows could cost more memory
//! than reading them again costs time.
//!
//! Only for local runs without a memory limit: held batches are outside the memory pool,
//! and a cluster would get them shipped inside the next plan.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, col};
use datafusion::prelude::SessionContext;

use super::{RunError, collect, exec_error};

/// How many repeated subplans one plan may have computed ahead; each is held in memory
/// while the plan runs.
const MOST: usize = 4;

/// `plan` with each repeated subtree that aggregates replaced by its batches,
/// computed once in `ctx`. Errors name `what`.
pub async fn computed_once(
    ctx: &SessionContext,
    mut plan: LogicalPlan,
    what: &str,
) -> Result<LogicalPlan, RunError> {
    for i in 0..MOST {
        let Some(sub) = first_repeated(&plan) else {
            break;
        };
        let batches = collect(ctx, sub.clone(), what).await?;
        // Batches that do not fit the logical schema (a column it says has no NULLs
        // holds one) leave the plan to compute the subplan at each occurrence.
        let Ok(held) = held(&sub, batches, i, ctx.copied_config().target_partitions()) else {
            break;
        };
        plan = plan
            .transform_down(|node| {
                Ok(if node == sub {
                    Transformed::new(held.clone(), true, TreeNodeRecursion::Jump)
                } else {
                    Transformed::no(node)
                })
            })
            .map_err(|e| exec_error(what, &e))?
            .data;
    }
    Ok(plan)
}

/// The first subtree, in pre-order, that occurs more than once in `plan` and
/// aggregates; pre-order makes it the largest such.
pub fn first_repeated(plan: &LogicalPlan) -> Option<LogicalPlan> {
    let mut seen: HashMap<&LogicalPlan, usize> = HashMap::new();
    let _ = plan.apply(|node| {
        *seen.entry(node).or_default() += 1;
        Ok(TreeNodeRecursion::Continue)
    });
    let mut found = None;
    let _ = plan.apply(|node| {
        if seen.get(node).copied().unwrap_or(0) > 1 && works(node) {
            found = Some(node.clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Whether computing `plan` costs more than reading what it returns.
fn works(plan: &LogicalPlan) -> bool {
    plan.exists(|n| Ok(matches!(n, LogicalPlan::Aggregate(_))))
        .unwrap_or(false)
}

/// A plan reading `batches`, the result of `sub`, with `sub`'s schema: its columns are
/// held under positional names (a join's output may repeat a name under two
/// qualifiers) and given their qualified names back by a projection.
fn held(
    sub: &LogicalPlan,
    batches: Vec<RecordBatch>,
    index: usize,
    partitions: usize,
) -> datafusion::error::Result<LogicalPlan> {
    let schema: &DFSchema = sub.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| f.as_ref().clone().with_name(format!("__held{i}")))
        .collect();
    let arrow = Arc::new(Schema::new(fields));
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions.max(1)];
    let count = parts.len();
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % count].push(RecordBatch::try_new(arrow.clone(), b.columns().to_vec())?);
    }
    let name = format!("__held_{index}");
    let table = MemTable::try_new(arrow, parts)?;
    let columns = schema.iter().enumerate().map(|(i, (qualifier, field))| {
        col(Column::new(Some(name.as_str()), format!("__held{i}")))
            .alias_qualified(qualifier.cloned(), field.name())
    });
    LogicalPlanBuilder::scan(name.as_str(), provider_as_source(Arc::new(table)), None)?
        .project(columns)?
        .build()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::datasource::MemTable;
    use datafusion::logical_expr::LogicalPlan;
    use datafusion::prelude::SessionContext;

    use super::{computed_once, first_repeated};

    fn context() -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 2])),
                Arc::new(Int64Array::from(vec![10, 5, 7])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![rows]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    async fn plan(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        ctx.sql(sql).await.unwrap().logical_plan().clone()
    }

    fn aggregates(plan: &LogicalPlan) -> usize {
        let mut n = 0;
        let _ = plan.apply(|p| {
            n += usize::from(matches!(p, LogicalPlan::Aggregate(_)));
            Ok(TreeNodeRecursion::Continue)
        });
        n
    }

    #[tokio::test]
    async fn an_aggregation_read_twice_is_computed_once_with_the_same_rows() {
        let ctx = context();
        let twice = plan(
            &ctx,
            "select a.k, a.s, b.s as s2 from (select k, sum(v) as s from t group by k) a \
             join (select k, sum(v) as s from t group by k) b on a.k = b.k order by a.k",
        )
        .await;
        assert_eq!(aggregates(&twice), 2);
        assert!(first_repeated(&twice).is_some());
        let once = computed_once(&ctx, twice, "test").await.unwrap();
        assert_eq!(aggregates(&once), 0, "{}", once.display_indent());
        let batches = ctx
            .execute_logical_plan(once)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let column = |i: usize| -> Vec<i64> {
            batches
                .iter()
                .flat_map(|b| {
                    let a = b.column(i).as_any().downcast_ref::<Int64Array>().unwrap();
                    (0..a.len()).map(|j| a.value(j)).collect::<Vec<_>>()
                })
                .collect()
        };
        // By hand: k = 1 sums 10 + 5, k = 2 sums 7, on both sides of the join.
        assert_eq!(column(0), vec![1, 2]);
        assert_eq!(column(1), vec![15, 7]);
        assert_eq!(column(2), vec![15, 7]);
    }

    #[tokio::test]
    async fn a_repeated_scan_without_an_aggregate_is_left_to_run_twice() {
        let ctx = context();
        let twice = plan(
            &ctx,
            "select a.k from (select k from t where v > 5) a \
             join (select k from t where v > 5) b on a.k = b.k",
        )
        .await;
        assert!(first_repeated(&twice).is_none());
    }
}
