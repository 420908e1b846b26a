//! The partials as the first step of their aggregation leaves them: the operator merges
//! every partial of a key anyway, so the final step of the aggregation over (interval,
//! keys), a hash table of one entry per partial, only repeats work the merge does.
//!
//! DataFusion plans the partials' aggregation in two steps, a partial aggregate per input
//! partition (which passes rows through as states once it sees that its groups are about
//! as many as its rows) and a final one per hash partition of the groups. Where each
//! aggregate's state is one column of its result's type (counts, sums, minima, maxima of
//! exact types), a key's partials read before the final step are the same partials split
//! into more rows, and merging them gives the same values; the operator then reads the
//! partial step's output, repartitioned by the keys alone.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::repartition::RepartitionExec;

/// `plan` (the partials) with its final aggregation step left out where that gives the
/// operator the same merged values, else `plan` unchanged.
pub(super) fn before_final_step(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    Ok(without_final(&plan)?.unwrap_or(plan))
}

fn without_final(plan: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let Some(input) = without_final(projection.input())? else {
            return Ok(None);
        };
        // The replacement keeps the final step's column order and names, so the
        // projection's expressions read the same columns.
        let exprs = projection.expr().to_vec();
        return Ok(Some(Arc::new(ProjectionExec::try_new(exprs, input)?)));
    }
    let Some(last) = plan.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    if !matches!(
        last.mode(),
        AggregateMode::Final | AggregateMode::FinalPartitioned
    ) {
        return Ok(None);
    }
    let Some(first) = partial_step(last.input()) else {
        return Ok(None);
    };
    if !one_state_of_the_result_type(last)? {
        return Ok(None);
    }
    // Rename the states after the final step's results: the same positions, types and
    // names, read by the projection above or by the operator itself.
    let input = first.schema();
    let exprs = last
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let column = Arc::new(PhysicalColumn::new(input.field(i).name(), i));
            ProjectionExpr::new(column as Arc<dyn PhysicalExpr>, field.name().clone())
        })
        .collect::<Vec<_>>();
    Ok(Some(Arc::new(ProjectionExec::try_new(exprs, first)?)))
}

/// The partial aggregation below the exchanges under a final step.
fn partial_step(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some(r) = plan.downcast_ref::<RepartitionExec>() {
        return partial_step(r.input());
    }
    if let Some(c) = plan.downcast_ref::<CoalescePartitionsExec>() {
        return partial_step(c.input());
    }
    let first = plan.downcast_ref::<AggregateExec>()?;
    (*first.mode() == AggregateMode::Partial && !first.group_expr().has_grouping_set())
        .then(|| plan.clone())
}

/// Whether every aggregate of the final step `last` has one state column, of its
/// result's type and not a float (whose sums would depend on how the rows were split):
/// the states then are partial values that merge as the results do.
fn one_state_of_the_result_type(last: &AggregateExec) -> DfResult<bool> {
    if last.group_expr().has_grouping_set() {
        return Ok(false);
    }
    for agg in last.aggr_expr() {
        let states = agg.state_fields()?;
        let result = agg.field();
        let [state] = states.as_slice() else {
            return Ok(false);
        };
        let exact = !matches!(
            result.data_type(),
            DataType::Float16 | DataType::Float32 | DataType::Float64
        );
        if state.data_type() != result.data_type() || !exact {
            return Ok(false);
        }
    }
    Ok(true)
}
