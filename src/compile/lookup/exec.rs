//! The lookup operator: the source rows held in a hash table on the equalities of each
//! lookup's condition, the looked-up table streamed past it once per partition, and each
//! match that the rest of the condition admits fed to the value's accumulators at its
//! source row's index; or, when the statistics put the looked-up tables far below the
//! source, those held and the source streamed past them. This module is the operator
//! and the choice between the two; [`super::run`] computes either.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, SharedResult, internal_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::TryStreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};

use super::ranked::Ranked;
use super::run::{Held, Lookups, Run};

/// One lookup, planned against the source rows the operator collects and the rows of
/// the looked-up table.
#[derive(Debug)]
pub struct Side {
    pub name: String,
    /// The equalities of the condition: the source's side, then the other's, pairwise.
    pub source_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub other_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// A matched pair's row: these source columns, then these columns of the other table.
    pub source_take: Vec<usize>,
    pub other_take: Vec<usize>,
    pub joined: SchemaRef,
    /// The rest of the condition, over a matched pair's row.
    pub residual: Option<Arc<dyn PhysicalExpr>>,
    /// The value's aggregates over the matched pairs, each with its FILTER.
    pub aggregates: Vec<Aggregate>,
    /// The aggregates' results, as the value reads them.
    pub results: SchemaRef,
    /// The value over the aggregates' results, with the empty-set rule applied.
    pub value: Arc<dyn PhysicalExpr>,
    /// A `count(*)` whose residual is one comparison of a column of each side: counted
    /// by searches among sorted values where the key is one dense integer column.
    pub ranked: Option<Ranked>,
}

/// An aggregate of a lookup's value, with its FILTER.
pub type Aggregate = (Arc<AggregateFunctionExpr>, Option<Arc<dyn PhysicalExpr>>);

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
pub enum Out {
    /// A column of the collected source rows.
    Source(usize),
    /// The value of a lookup.
    Lookup(usize),
}

/// A computation every output partition awaits, run once.
type Once<T> = Shared<BoxFuture<'static, SharedResult<Arc<T>>>>;

/// Appends each lookup's value to the source rows (see the module doc).
pub struct LookupExec {
    run: Arc<Run>,
    /// Whether the looked-up tables are held and the source streamed past them, which
    /// the statistics choose when every looked-up table is the far smaller; else the
    /// source is held and the looked-up tables streamed.
    holds_lookups: bool,
    properties: Arc<PlanProperties>,
    /// The one computation every output partition reads its share of, or, holding the
    /// looked-up tables, their hash tables.
    computed: Mutex<Option<Once<Held>>>,
    held: Mutex<Option<Once<Lookups>>>,
}

/// Row count estimates must put a looked-up table below the source by this factor for
/// the operator to hold it instead of the source.
const SMALLER_BY: usize = 4;

impl fmt::Debug for LookupExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupExec")
            .field("sides", &self.run.sides)
            .finish_non_exhaustive()
    }
}

impl LookupExec {
    /// The operator over `source` and one looked-up input per side, with `partitions`
    /// output partitions.
    pub fn new(
        source: Arc<dyn ExecutionPlan>,
        others: Vec<Arc<dyn ExecutionPlan>>,
        sides: Arc<Vec<Side>>,
        outputs: Arc<Vec<Out>>,
        schema: SchemaRef,
        partitions: usize,
    ) -> LookupExec {
        let holds_lookups = far_smaller(&source, &others);
        let partitions = match holds_lookups {
            true => source.output_partitioning().partition_count(),
            false => partitions.max(1),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        LookupExec {
            run: Arc::new(Run {
                source,
                others,
                sides,
                outputs,
                schema,
                metrics: ExecutionPlanMetricsSet::new(),
            }),
            holds_lookups,
            properties: Arc::new(properties),
            computed: Mutex::new(None),
            held: Mutex::new(None),
        }
    }

    fn held(&self, ctx: Arc<TaskContext>) -> Once<Lookups> {
        let run = self.run.clone();
        once(&self.held, || run.hold_lookups(ctx))
    }

    fn computed(&self, ctx: Arc<TaskContext>) -> Once<Held> {
        let run = self.run.clone();
        once(&self.computed, || run.compute(ctx))
    }
}

/// The computation in `slot`, started by `start` on first use: every output partition
/// awaits the same one.
fn once<T, F>(slot: &Mutex<Option<Once<T>>>, start: impl FnOnce() -> F) -> Once<T>
where
    T: Send + Sync + 'static,
    F: std::future::Future<Output = DfResult<T>> + Send + 'static,
{
    let mut slot = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    slot.get_or_insert_with(|| {
        let f = start();
        async move { f.await.map(Arc::new).map_err(Arc::new) }
            .boxed()
            .shared()
    })
    .clone()
}

impl DisplayAs for LookupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.run.sides.iter().map(|s| s.name.as_str()).collect();
        let keys: Vec<String> = self
            .run
            .sides
            .iter()
            .flat_map(|s| {
                s.source_keys
                    .iter()
                    .zip(&s.other_keys)
                    .map(|(a, b)| format!("{a} = {b}"))
            })
            .collect();
        let held = match self.holds_lookups {
            true => "lookups",
            false => "source",
        };
        write!(
            f,
            "LookupExec: lookups=[{}], on=[{}], held={held}",
            names.join(", "),
            keys.join(", ")
        )?;
        let ranked: Vec<&str> = self
            .run
            .sides
            .iter()
            .filter(|s| s.ranked.is_some())
            .map(|s| s.name.as_str())
            .collect();
        if !ranked.is_empty() {
            write!(f, ", counted by rank=[{}]", ranked.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for LookupExec {
    fn name(&self) -> &str {
        "LookupExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        std::iter::once(&self.run.source)
            .chain(&self.run.others)
            .collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut children = children.into_iter();
        let Some(source) = children.next() else {
            return internal_err!("LookupExec has a source input");
        };
        let others: Vec<_> = children.collect();
        if others.len() != self.run.sides.len() {
            return internal_err!("LookupExec has one input per lookup");
        }
        Ok(Arc::new(LookupExec::new(
            source,
            others,
            self.run.sides.clone(),
            self.run.outputs.clone(),
            self.run.schema.clone(),
            self.properties.output_partitioning().partition_count(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if self.holds_lookups {
            return self.streamed(partition, context);
        }
        let computed = self.computed(context);
        let every = self.properties.output_partitioning().partition_count();
        let baseline = BaselineMetrics::new(&self.run.metrics, partition);
        let batches = futures::stream::once(async move {
            let held = computed.await.map_err(DataFusionError::Shared)?;
            let mine: Vec<DfResult<RecordBatch>> = held
                .batches
                .iter()
                .skip(partition)
                .step_by(every)
                .map(|b| Ok(b.clone()))
                .collect();
            Ok::<_, DataFusionError>(futures::stream::iter(mine))
        })
        .try_flatten()
        .inspect_ok(move |b| baseline.record_output(b.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.run.schema.clone(),
            batches,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.run.metrics.clone_inner())
    }
}

impl LookupExec {
    /// Source partition `partition`, each batch with its lookup values.
    fn streamed(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let held = self.held(context.clone());
        let source = self.run.source.execute(partition, context)?;
        let baseline = BaselineMetrics::new(&self.run.metrics, partition);
        let run = self.run.clone();
        let batches = source
            .and_then(move |batch| {
                let (held, run, baseline) = (held.clone(), run.clone(), baseline.clone());
                async move {
                    let held = held.await.map_err(DataFusionError::Shared)?;
                    let timer = baseline.elapsed_compute().timer();
                    let out = run.extended(&batch, &held);
                    timer.done();
                    out
                }
            })
            .inspect_ok({
                let baseline = BaselineMetrics::new(&self.run.metrics, partition);
                move |b| baseline.record_output(b.num_rows())
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.run.schema.clone(),
            batches,
        )))
    }
}

/// Whether the statistics estimate every looked-up table at under a [`SMALLER_BY`]th of
/// the source's rows; unknown counts (CSV) say no.
fn far_smaller(source: &Arc<dyn ExecutionPlan>, others: &[Arc<dyn ExecutionPlan>]) -> bool {
    let rows = |p: &Arc<dyn ExecutionPlan>| {
        StatisticsContext::new()
            .compute(p.as_ref(), &StatisticsArgs::new())
            .ok()
            .and_then(|s| s.num_rows.get_value().copied())
    };
    let Some(source) = rows(source) else {
        return false;
    };
    others
        .iter()
        .all(|o| rows(o).is_some_and(|r| r.saturating_mul(SMALLER_BY) < source))
}
