//! The two ways the lookup operator computes its values: holding the source rows and
//! streaming each looked-up table past them ([`Run::compute`]), or holding the looked-up
//! tables and streaming the source past them, batch by batch ([`Run::extended`]).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatchOptions;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{
    concat_batches, filter, filter_record_batch, prep_null_mask_filter, take,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::{DataFusionError, Result as DfResult, internal_err};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, SendableRecordBatchStream, collect,
};
use futures::StreamExt;

use super::chains::Chains;
use super::exec::{Out, Side};
use super::ranked::{Ranked, Ranks, integers};
use crate::compile::dense;

/// Rows per output batch.
const CHUNK: usize = 8192;

/// The output batches, and the memory they hold counted by the pool.
pub(super) struct Held {
    pub(super) batches: Vec<RecordBatch>,
    _reservation: MemoryReservation,
}

/// The looked-up tables, held, with the memory they take.
pub(super) struct Lookups {
    sides: Vec<HeldSide>,
    _reservation: MemoryReservation,
}

/// One looked-up table held: its rows' keys in a hash table, and the columns a matched
/// pair's row takes of it; or, for a count by rank, its rows ranked by key and value.
enum HeldSide {
    Pairs {
        keys: Vec<ArrayRef>,
        chains: Chains,
        columns: Vec<ArrayRef>,
    },
    Ranked(Ranks),
}

/// The operator's inputs and what it computes of them, shared with the computation so
/// that it can outlive the `execute` call that starts it.
pub(super) struct Run {
    pub(super) source: Arc<dyn ExecutionPlan>,
    pub(super) others: Vec<Arc<dyn ExecutionPlan>>,
    pub(super) sides: Arc<Vec<Side>>,
    pub(super) outputs: Arc<Vec<Out>>,
    pub(super) schema: SchemaRef,
    pub(super) metrics: ExecutionPlanMetricsSet,
}

impl Run {
    pub(super) async fn compute(self: Arc<Self>, ctx: Arc<TaskContext>) -> DfResult<Held> {
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

    /// Each looked-up table, collected and indexed by its keys.
    pub(super) async fn hold_lookups(self: Arc<Self>, ctx: Arc<TaskContext>) -> DfResult<Lookups> {
        let reservation = MemoryConsumer::new("LookupExec").register(ctx.memory_pool());
        let mut sides = Vec::with_capacity(self.sides.len());
        for (side, other) in self.sides.iter().zip(&self.others) {
            let batches = collect(other.clone(), ctx.clone()).await?;
            let rows = concat_batches(&other.schema(), &batches)?;
            drop(batches);
            let Ok(n) = u32::try_from(rows.num_rows()) else {
                return internal_err!("a lookup holds at most {} rows", u32::MAX);
            };
            let keys = evaluate(&side.other_keys, &rows)?;
            if let Some(r) = side.ranked
                && let Some(ranks) = Ranks::build(&keys, &integers(rows.column(r.other))?)?
            {
                reservation.try_grow(ranks.size())?;
                sides.push(HeldSide::Ranked(ranks));
                continue;
            }
            let chains = Chains::build(&keys, n)?;
            let columns = taken_columns(&rows, &side.other_take);
            reservation.try_grow(rows.get_array_memory_size() + chains.size())?;
            sides.push(HeldSide::Pairs {
                keys,
                chains,
                columns,
            });
        }
        Ok(Lookups {
            sides,
            _reservation: reservation,
        })
    }

    /// `batch` of the source with each lookup's value, from the held looked-up tables.
    pub(super) fn extended(&self, batch: &RecordBatch, held: &Lookups) -> DfResult<RecordBatch> {
        let rows = batch.num_rows();
        let mut values = Vec::with_capacity(self.sides.len());
        for (side, h) in self.sides.iter().zip(&held.sides) {
            let keys = evaluate(&side.source_keys, batch)?;
            let (held_keys, chains, columns) = match (h, side.ranked) {
                (HeldSide::Ranked(ranks), Some(r)) => {
                    let counts = ranked_counts(ranks, r, &keys, batch)?;
                    values.push(side.value_from(vec![counts], rows)?);
                    continue;
                }
                (
                    HeldSide::Pairs {
                        keys,
                        chains,
                        columns,
                    },
                    _,
                ) => (keys, chains, columns),
                (HeldSide::Ranked(_), None) => {
                    return internal_err!("a lookup held by rank has no comparison");
                }
            };
            let (source_rows, other_rows) = chains.matches(held_keys, &keys)?;
            let mut accumulators = side.accumulators(rows)?;
            let source = taken_columns(batch, &side.source_take);
            feed(
                side,
                (&source, source_rows),
                (columns, other_rows),
                &mut accumulators,
                rows,
            )?;
            values.push(side.value_of(accumulators, rows)?);
        }
        let columns = self
            .outputs
            .iter()
            .map(|o| match o {
                Out::Source(c) => batch.column(*c).clone(),
                Out::Lookup(s) => values[*s].clone(),
            })
            .collect();
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
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
        if let Some(r) = side.ranked
            && let Some(ranks) = Ranks::build(&keys, &integers(source.column(r.source))?)?
        {
            reservation.try_grow(ranks.size())?;
            let counts = self
                .ranked(Arc::new(ranks), r, (i, rows as usize), other, ctx)
                .await?;
            return side.value_from(vec![counts], rows as usize);
        }
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
                reservation: reservation.new_empty(),
            };
            let (matched, probed) = (matched.clone(), probed.clone());
            tasks.push(SpawnedTask::spawn(async move {
                probe.run(stream, &matched, &probed).await
            }));
        }
        let mut merged: Option<Vec<Box<dyn GroupsAccumulator>>> = None;
        let mut first = None;
        for t in tasks {
            let (part, counted) = t
                .join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
            merged = Some(match merged {
                None => {
                    // The first partition's accumulators become the merged ones: counted
                    // as the partition's until `reservation` counts them below.
                    first = Some(counted);
                    part
                }
                Some(mut into) => {
                    merge(&mut into, part, rows as usize)?;
                    drop(counted);
                    into
                }
            });
        }
        let accumulators = match merged {
            Some(a) => a,
            None => side.accumulators(rows as usize)?,
        };
        // Counted once merged: a pool too small for them fails here, naming the
        // operator, rather than the process growing past the limit.
        reservation.try_grow(accumulators.iter().map(|a| a.size()).sum())?;
        drop(first);
        side.value_of(accumulators, rows as usize)
    }
}

impl Run {
    /// Held the `rows` source rows ranked by key and compared value, the count of side
    /// `i` for each: every partition of the looked-up table adds the range each of its rows
    /// admits to a difference array of its own, and the arrays are summed.
    async fn ranked(
        &self,
        ranks: Arc<Ranks>,
        r: Ranked,
        (i, rows): (usize, usize),
        other: &Arc<dyn ExecutionPlan>,
        ctx: &Arc<TaskContext>,
    ) -> DfResult<ArrayRef> {
        let matched = MetricBuilder::new(&self.metrics).counter("matched_pairs", i);
        let probed = MetricBuilder::new(&self.metrics).counter("probe_rows", i);
        let mut tasks = Vec::new();
        for p in 0..other.output_partitioning().partition_count() {
            let mut stream = other.execute(p, ctx.clone())?;
            let (sides, ranks) = (self.sides.clone(), ranks.clone());
            let (matched, probed) = (matched.clone(), probed.clone());
            let diff_bytes = (ranks.len() + 1) * size_of::<i64>();
            let reservation = MemoryConsumer::new("LookupExec").register(ctx.memory_pool());
            tasks.push(SpawnedTask::spawn(async move {
                reservation.try_grow(diff_bytes)?;
                let mut diff = vec![0i64; ranks.len() + 1];
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    probed.add(batch.num_rows());
                    let keys = evaluate(&sides[i].other_keys, &batch)?;
                    let keys = dense::as_i64(&keys[0])?;
                    let xs = integers(batch.column(r.other))?;
                    let mut n = 0;
                    for row in 0..batch.num_rows() {
                        if keys.is_valid(row) && xs.is_valid(row) {
                            n += ranks.admit(keys.value(row), xs.value(row), r.op, &mut diff);
                        }
                    }
                    matched.add(n);
                }
                Ok::<_, DataFusionError>((diff, reservation))
            }));
        }
        let mut sum: Option<Vec<i64>> = None;
        // Each partition's array stays counted until the sum is taken.
        let mut counted = Vec::with_capacity(tasks.len());
        for t in tasks {
            let (diff, reservation) = t
                .join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
            counted.push(reservation);
            match &mut sum {
                None => sum = Some(diff),
                Some(s) => s.iter_mut().zip(&diff).for_each(|(a, b)| *a += b),
            }
        }
        let diff = sum.unwrap_or_else(|| vec![0; ranks.len() + 1]);
        Ok(Arc::new(Int64Array::from(ranks.counts(&diff, rows))))
    }
}

/// Held the looked-up rows ranked by key and compared value, the count of each source
/// row of `batch` (with keys `keys`).
fn ranked_counts(
    ranks: &Ranks,
    r: Ranked,
    keys: &[ArrayRef],
    batch: &RecordBatch,
) -> DfResult<ArrayRef> {
    let keys = dense::as_i64(&keys[0])?;
    let ys = integers(batch.column(r.source))?;
    let counts: Int64Array = (0..batch.num_rows())
        .map(|row| {
            let count = match keys.is_valid(row) && ys.is_valid(row) {
                true => ranks.count(keys.value(row), ys.value(row), r.op),
                false => 0,
            };
            Some(count as i64)
        })
        .collect();
    Ok(Arc::new(counts))
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
    /// The memory of this partition's accumulators, one per source row each.
    reservation: MemoryReservation,
}

impl Probe {
    async fn run(
        self,
        mut stream: SendableRecordBatchStream,
        matched: &datafusion::physical_plan::metrics::Count,
        probed: &datafusion::physical_plan::metrics::Count,
    ) -> DfResult<(Vec<Box<dyn GroupsAccumulator>>, MemoryReservation)> {
        let side = &self.sides[self.i];
        let rows = self.rows as usize;
        let mut accumulators = side.accumulators(rows)?;
        // Released when this partition's accumulators are merged and dropped.
        self.reservation
            .try_grow(accumulators.iter().map(|a| a.size()).sum())?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            probed.add(batch.num_rows());
            let keys = evaluate(&side.other_keys, &batch)?;
            let (probe_rows, build_rows) = self.table.matches(&self.keys, &keys)?;
            if probe_rows.is_empty() {
                continue;
            }
            let other = taken_columns(&batch, &side.other_take);
            let n = feed(
                side,
                (&self.source, build_rows),
                (&other, probe_rows),
                &mut accumulators,
                rows,
            )?;
            matched.add(n);
        }
        Ok((accumulators, self.reservation))
    }
}

/// Feeds the matched pairs, each a row of `source` and a row of `other` (the columns
/// a pair's row takes of each, and the rows matched), that the rest of the condition
/// admits to `accumulators`, grouped by their source row; the number fed.
fn feed(
    side: &Side,
    source: (&[ArrayRef], UInt32Array),
    other: (&[ArrayRef], UInt32Array),
    accumulators: &mut [Box<dyn GroupsAccumulator>],
    groups: usize,
) -> DfResult<usize> {
    let (source, mut source_rows) = source;
    let (other, other_rows) = other;
    if source_rows.is_empty() {
        return Ok(0);
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(side.joined.fields().len());
    for c in source {
        columns.push(take(c, &source_rows, None)?);
    }
    for c in other {
        columns.push(take(c, &other_rows, None)?);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(source_rows.len()));
    let mut joined = RecordBatch::try_new_with_options(side.joined.clone(), columns, &options)?;
    if let Some(residual) = &side.residual {
        let admitted = admitted(residual, &joined)?;
        joined = filter_record_batch(&joined, &admitted)?;
        source_rows = filter(&source_rows, &admitted)?.as_primitive().clone();
    }
    let group_of: Vec<usize> = source_rows.values().iter().map(|&r| r as usize).collect();
    // Always a filter: without one, an accumulator may take every group below `groups`
    // as seen (the contract of a hash aggregate's groups, each of which has a row), and
    // a source row without a match has none.
    let every = BooleanArray::from(vec![true; joined.num_rows()]);
    for ((aggregate, only), acc) in side.aggregates.iter().zip(accumulators) {
        let args = evaluate(&aggregate.expressions(), &joined)?;
        let only = match only {
            Some(f) => admitted(f, &joined)?,
            None => every.clone(),
        };
        acc.update_batch(&args, &group_of, Some(&only), groups)?;
    }
    Ok(joined.num_rows())
}

impl Side {
    /// The value for each of `rows` source rows, from the accumulators of its matches.
    fn value_of(
        &self,
        mut accumulators: Vec<Box<dyn GroupsAccumulator>>,
        rows: usize,
    ) -> DfResult<ArrayRef> {
        let mut results = Vec::with_capacity(accumulators.len());
        for a in &mut accumulators {
            results.push(a.evaluate(EmitTo::All)?);
        }
        self.value_from(results, rows)
    }

    /// The value for each of `rows` source rows, from its aggregates' `results`.
    fn value_from(&self, results: Vec<ArrayRef>, rows: usize) -> DfResult<ArrayRef> {
        let results = RecordBatch::try_new_with_options(
            self.results.clone(),
            results,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        self.value.evaluate(&results)?.into_array(rows)
    }

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
