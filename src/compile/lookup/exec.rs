//! The lookup operator: the source rows held in a hash table on the equalities of each
//! lookup's condition, the looked-up table streamed past it once per partition, and each
//! match that the rest of the condition admits fed to the value's accumulators at its
//! source row's index.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatchOptions;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{
    concat_batches, filter, filter_record_batch, prep_null_mask_filter, take,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, internal_err};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{EquivalenceProperties, GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream, collect,
};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};

use super::chains::Chains;

/// Rows per output batch.
const CHUNK: usize = 8192;

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

type Computed = Shared<BoxFuture<'static, Result<Arc<Held>, Arc<DataFusionError>>>>;

/// The output batches, and the memory they hold counted by the pool.
struct Held {
    batches: Vec<RecordBatch>,
    _reservation: MemoryReservation,
}

/// Appends each lookup's value to the source rows (see the module doc).
pub struct LookupExec {
    run: Arc<Run>,
    properties: Arc<PlanProperties>,
    /// The one computation every output partition reads its share of.
    computed: Mutex<Option<Computed>>,
}

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
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions.max(1)),
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
            properties: Arc::new(properties),
            computed: Mutex::new(None),
        }
    }

    fn computed(&self, ctx: Arc<TaskContext>) -> Computed {
        let mut slot = self
            .computed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert_with(|| {
            let run = self.run.clone();
            async move { run.compute(ctx).await.map(Arc::new).map_err(Arc::new) }
                .boxed()
                .shared()
        })
        .clone()
    }
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
        write!(
            f,
            "LookupExec: lookups=[{}], on=[{}]",
            names.join(", "),
            keys.join(", ")
        )
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

/// The operator's inputs and what it computes of them, shared with the computation so
/// that it can outlive the `execute` call that starts it.
struct Run {
    source: Arc<dyn ExecutionPlan>,
    others: Vec<Arc<dyn ExecutionPlan>>,
    sides: Arc<Vec<Side>>,
    outputs: Arc<Vec<Out>>,
    schema: SchemaRef,
    metrics: ExecutionPlanMetricsSet,
}

impl Run {
    async fn compute(self: Arc<Self>, ctx: Arc<TaskContext>) -> DfResult<Held> {
        let mut reservation = MemoryConsumer::new("LookupExec").register(ctx.memory_pool());
        let batches = collect(self.source.clone(), ctx.clone()).await?;
        let source = concat_batches(&self.source.schema(), &batches)?;
        drop(batches);
        reservation.try_grow(source.get_array_memory_size())?;
        let rows = source.num_rows();
        let Ok(rows32) = u32::try_from(rows) else {
            return internal_err!("a lookup holds at most {} source rows", u32::MAX);
        };
        MetricBuilder::new(&self.metrics)
            .counter("source_rows", 0)
            .add(rows);
        let mut values = Vec::with_capacity(self.sides.len());
        for (i, other) in self.others.iter().enumerate() {
            let value = self
                .look_up(&source, rows32, i, other, &ctx, &mut reservation)
                .await?;
            values.push(value);
        }
        let mut out = Vec::with_capacity(rows.div_ceil(CHUNK));
        for start in (0..rows).step_by(CHUNK) {
            let len = CHUNK.min(rows - start);
            let columns = self
                .outputs
                .iter()
                .map(|o| match o {
                    Out::Source(c) => source.column(*c).slice(start, len),
                    Out::Lookup(s) => values[*s].slice(start, len),
                })
                .collect();
            out.push(RecordBatch::try_new_with_options(
                self.schema.clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(len)),
            )?);
        }
        Ok(Held {
            batches: out,
            _reservation: reservation,
        })
    }

    /// The value of side `i` for every source row.
    async fn look_up(
        &self,
        source: &RecordBatch,
        rows: u32,
        i: usize,
        other: &Arc<dyn ExecutionPlan>,
        ctx: &Arc<TaskContext>,
        reservation: &mut MemoryReservation,
    ) -> DfResult<ArrayRef> {
        let side = &self.sides[i];
        let keys = evaluate(&side.source_keys, source)?;
        let table = Arc::new(Chains::build(&keys, rows)?);
        reservation.try_grow(table.size())?;
        let source_part = Arc::new(taken_columns(source, &side.source_take));
        let matched = MetricBuilder::new(&self.metrics).counter("matched_pairs", i);
        let probed = MetricBuilder::new(&self.metrics).counter("probe_rows", i);
        let mut tasks = Vec::new();
        for p in 0..other.output_partitioning().partition_count() {
            let stream = other.execute(p, ctx.clone())?;
            let probe = Probe {
                sides: self.sides.clone(),
                i,
                table: table.clone(),
                keys: keys.clone(),
                source: source_part.clone(),
                rows,
            };
            let (matched, probed) = (matched.clone(), probed.clone());
            tasks.push(SpawnedTask::spawn(async move {
                probe.run(stream, &matched, &probed).await
            }));
        }
        let mut merged: Option<Vec<Box<dyn GroupsAccumulator>>> = None;
        for t in tasks {
            let part = t
                .join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
            merged = Some(match merged {
                None => part,
                Some(mut into) => {
                    merge(&mut into, part, rows as usize)?;
                    into
                }
            });
        }
        let mut accumulators = match merged {
            Some(a) => a,
            None => side.accumulators(rows as usize)?,
        };
        // Counted once merged: a pool too small for them fails here, naming the
        // operator, rather than the process growing past the limit.
        reservation.try_grow(accumulators.iter().map(|a| a.size()).sum())?;
        let mut results = Vec::with_capacity(accumulators.len());
        for a in &mut accumulators {
            results.push(a.evaluate(EmitTo::All)?);
        }
        let results = RecordBatch::try_new_with_options(
            side.results.clone(),
            results,
            &RecordBatchOptions::new().with_row_count(Some(rows as usize)),
        )?;
        side.value.evaluate(&results)?.into_array(rows as usize)
    }
}

/// Folds the accumulators of one probed partition into `into`.
fn merge(
    into: &mut [Box<dyn GroupsAccumulator>],
    from: Vec<Box<dyn GroupsAccumulator>>,
    rows: usize,
) -> DfResult<()> {
    let groups: Vec<usize> = (0..rows).collect();
    for (a, mut b) in into.iter_mut().zip(from) {
        let state = b.state(EmitTo::All)?;
        let len = state.first().map_or(0, |s| s.len());
        a.merge_batch(&state, &groups[..len], rows)?;
    }
    Ok(())
}

/// One partition of the looked-up table, probed against the source rows.
struct Probe {
    sides: Arc<Vec<Side>>,
    i: usize,
    table: Arc<Chains>,
    keys: Vec<ArrayRef>,
    /// The source columns a matched pair's row takes.
    source: Arc<Vec<ArrayRef>>,
    rows: u32,
}

impl Probe {
    async fn run(
        self,
        mut stream: SendableRecordBatchStream,
        matched: &datafusion::physical_plan::metrics::Count,
        probed: &datafusion::physical_plan::metrics::Count,
    ) -> DfResult<Vec<Box<dyn GroupsAccumulator>>> {
        let side = &self.sides[self.i];
        let rows = self.rows as usize;
        let mut accumulators = side.accumulators(rows)?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            probed.add(batch.num_rows());
            let keys = evaluate(&side.other_keys, &batch)?;
            let (probe_rows, build_rows) = self.table.matches(&self.keys, &keys)?;
            if probe_rows.is_empty() {
                continue;
            }
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(side.joined.fields().len());
            for c in self.source.iter() {
                columns.push(take(c, &build_rows, None)?);
            }
            for &c in &side.other_take {
                columns.push(take(batch.column(c), &probe_rows, None)?);
            }
            let options = RecordBatchOptions::new().with_row_count(Some(probe_rows.len()));
            let mut joined =
                RecordBatch::try_new_with_options(side.joined.clone(), columns, &options)?;
            let mut build_rows = build_rows;
            if let Some(residual) = &side.residual {
                let admitted = admitted(residual, &joined)?;
                joined = filter_record_batch(&joined, &admitted)?;
                build_rows = filter(&build_rows, &admitted)?.as_primitive().clone();
            }
            matched.add(joined.num_rows());
            let groups: Vec<usize> = build_rows.values().iter().map(|&r| r as usize).collect();
            for ((aggregate, only), acc) in side.aggregates.iter().zip(&mut accumulators) {
                let args = evaluate(&aggregate.expressions(), &joined)?;
                // Always a filter: without one, an accumulator may take every group
                // below `rows` as seen (the contract of a hash aggregate's groups,
                // each of which has a row), and a source row without a match has none.
                let only = match only {
                    Some(f) => admitted(f, &joined)?,
                    None => BooleanArray::from(vec![true; joined.num_rows()]),
                };
                acc.update_batch(&args, &groups, Some(&only), rows)?;
            }
        }
        Ok(accumulators)
    }
}

impl Side {
    /// Fresh accumulators of the value's aggregates, sized to `rows` groups, so that
    /// each evaluates to one value per source row even when nothing matched.
    fn accumulators(&self, rows: usize) -> DfResult<Vec<Box<dyn GroupsAccumulator>>> {
        let empty = RecordBatch::new_empty(self.joined.clone());
        let mut out = Vec::with_capacity(self.aggregates.len());
        for (aggregate, _) in &self.aggregates {
            let mut acc: Box<dyn GroupsAccumulator> = if aggregate.groups_accumulator_supported() {
                aggregate.create_groups_accumulator()?
            } else {
                let aggregate = aggregate.clone();
                Box::new(GroupsAccumulatorAdapter::new(move || {
                    aggregate.create_accumulator()
                }))
            };
            let args = evaluate(&aggregate.expressions(), &empty)?;
            acc.update_batch(
                &args,
                &[],
                Some(&BooleanArray::from(Vec::<bool>::new())),
                rows,
            )?;
            out.push(acc);
        }
        Ok(out)
    }
}

/// Where a boolean expression is true over `batch` (NULL is not).
fn admitted(e: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> DfResult<BooleanArray> {
    let v = e.evaluate(batch)?.into_array(batch.num_rows())?;
    let b = v.as_boolean_opt().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "a lookup condition is {}, not boolean",
            v.data_type()
        ))
    })?;
    Ok(if b.null_count() > 0 {
        prep_null_mask_filter(b)
    } else {
        b.clone()
    })
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> DfResult<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

fn taken_columns(batch: &RecordBatch, columns: &[usize]) -> Vec<ArrayRef> {
    columns.iter().map(|&c| batch.column(c).clone()).collect()
}
