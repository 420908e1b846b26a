//! The timeline operator: a table whose scan plans the partials and merges them per
//! key, in [`TimelineExec`], one partition of keys at a time.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, internal_err};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{EmitTo, Expr, GroupsAccumulator, LogicalPlan, TableType};
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::{EquivalenceProperties, GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

use super::{MergeSpec, Spec};

/// Output rows an accumulator gathers before they are emitted as one batch.
const CHUNK: usize = 8192;

/// The table that runs the operator over `partials` when scanned.
pub(super) fn table(
    partials: LogicalPlan,
    spec: Spec,
    schema: SchemaRef,
) -> Arc<dyn TableProvider> {
    Arc::new(Timeline {
        partials,
        spec: Arc::new(spec),
        schema,
    })
}

/// The table the operator's output is read as.
#[derive(Debug)]
struct Timeline {
    partials: LogicalPlan,
    spec: Arc<Spec>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Timeline {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The operator asks for its input partitioned by the keys, and the physical
        // optimizer, which runs over the whole plan after this scan, repartitions it.
        let input = state.create_physical_plan(&self.partials).await?;
        let projection = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        Ok(Arc::new(TimelineExec::new(
            input,
            self.spec.clone(),
            self.schema.clone(),
            projection,
        )?))
    }
}

/// Merges each entity's partials into the periods they reach, per partition of
/// partials hash-partitioned by the keys.
#[derive(Debug)]
pub struct TimelineExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<Spec>,
    /// All the output columns, before `projection`.
    full: SchemaRef,
    projection: Vec<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl TimelineExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        spec: Arc<Spec>,
        full: SchemaRef,
        projection: Vec<usize>,
    ) -> DfResult<TimelineExec> {
        let schema = Arc::new(full.project(&projection)?);
        let partitions = input.properties().output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(TimelineExec {
            input,
            spec,
            full,
            projection,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for TimelineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let merges: Vec<String> = self
            .spec
            .merges
            .iter()
            .map(|m| {
                let input = self.input.schema();
                format!("{}({})", m.func.name(), input.field(m.column).name())
            })
            .collect();
        write!(
            f,
            "TimelineExec: periods={}, intervals={}, merges=[{}]{}",
            self.spec.starts.len(),
            self.spec.bounds.len() - 1,
            merges.join(", "),
            if self.spec.anchored {
                ", at the periods each key has partials in"
            } else {
                ""
            }
        )
    }
}

impl ExecutionPlan for TimelineExec {
    fn name(&self) -> &str {
        "TimelineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        let schema = self.input.schema();
        let keys = self
            .spec
            .keys
            .iter()
            .map(|&i| {
                Arc::new(PhysicalColumn::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
            })
            .collect();
        vec![Distribution::KeyPartitioned(keys)]
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
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("TimelineExec has one input".into()))?;
        Ok(Arc::new(TimelineExec::new(
            input,
            self.spec.clone(),
            self.full.clone(),
            self.projection.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (spec, full, projection) = (
            self.spec.clone(),
            self.full.clone(),
            self.projection.clone(),
        );
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let in_schema = self.input.schema();
        let schema = self.schema();
        let batches = async move {
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            let timer = baseline.elapsed_compute().timer();
            let out = merge_partition(&spec, &in_schema, &full, &batches)?;
            timer.done();
            let out = out
                .into_iter()
                .map(|b| {
                    baseline.record_output(b.num_rows());
                    b.project(&projection).map_err(DataFusionError::from)
                })
                .collect::<Vec<_>>();
            baseline.done();
            Ok::<_, DataFusionError>(futures::stream::iter(out))
        };
        let stream = futures::stream::once(batches).try_flatten().boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The output rows of one partition's partials.
fn merge_partition(
    spec: &Spec,
    in_schema: &SchemaRef,
    full: &SchemaRef,
    batches: &[RecordBatch],
) -> DfResult<Vec<RecordBatch>> {
    let batch = concat_batches(in_schema, batches)?;
    if batch.num_rows() == 0 {
        return Ok(vec![]);
    }
    let intervals = spec.bounds.len() - 1;
    let keys: Vec<ArrayRef> = spec.keys.iter().map(|&i| batch.column(i).clone()).collect();
    let runs = runs_of_keys(spec, &batch, &keys)?;
    let mut chunk = Chunk::new(spec, in_schema);
    let mut out = Vec::new();
    let mut periods: Vec<u32> = Vec::new();
    for run in runs.order.chunk_by(|a, b| a.0 == b.0) {
        let first = run[0].2;
        // A key with a NULL matches no anchor in an equality join.
        if spec.anchored && keys.iter().any(|c| c.is_null(first as usize)) {
            continue;
        }
        periods.clear();
        periods.extend(
            run.iter()
                .flat_map(|r| spec.reach[r.1 as usize].iter().copied()),
        );
        periods.sort_unstable();
        periods.dedup();
        for &k in &periods {
            let o = chunk.starts.len();
            chunk.starts.push(spec.starts[k as usize]);
            chunk.key_rows.push(first);
            let base = k as usize * intervals;
            for (j, m) in spec.merges.iter().enumerate() {
                let before = chunk.takes[j].len();
                for &(_, i, r) in run {
                    if m.include[base + i as usize] {
                        chunk.push(j, r, o, true);
                    }
                }
                if chunk.takes[j].len() == before {
                    // DataFusion's accumulators take a group given no row, without a
                    // filter, as one that saw a value (their state's default), where
                    // the merge of no partials is NULL: a row the filter drops.
                    chunk.push(j, first, o, false);
                }
            }
            if chunk.starts.len() >= CHUNK {
                out.push(chunk.emit(spec, &batch, full)?);
            }
        }
    }
    if !chunk.starts.is_empty() {
        out.push(chunk.emit(spec, &batch, full)?);
    }
    Ok(out)
}

/// The partials' rows as (group of their keys, interval index, row), sorted by group
/// and interval; rows without an interval are left out.
struct Runs {
    order: Vec<(u32, u32, u32)>,
}

/// The rows of `batch` grouped by `keys` as DataFusion's group-by does (NULL is a
/// value), then placed by two counting sorts: by interval, then stably by group.
fn runs_of_keys(spec: &Spec, batch: &RecordBatch, keys: &[ArrayRef]) -> DfResult<Runs> {
    let fields: Vec<Field> = keys
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("k{i}"), c.data_type().clone(), true))
        .collect();
    let mut values = new_group_values(Arc::new(Schema::new(fields)), &GroupOrdering::None)?;
    let mut groups = Vec::with_capacity(batch.num_rows());
    values.intern(keys, &mut groups)?;
    let ngroups = values.len();
    let ivs = batch
        .column(spec.interval)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| DataFusionError::Internal("partials' interval is not a timestamp".into()))?;
    let starts = &spec.bounds[..spec.bounds.len() - 1];
    let mut by_interval: Vec<Vec<(u32, u32)>> = vec![Vec::new(); starts.len()];
    for (r, g) in groups.iter().enumerate() {
        if ivs.is_null(r) {
            continue;
        }
        let Ok(i) = starts.binary_search(&ivs.value(r)) else {
            return internal_err!("a partial's interval {} is no bound", ivs.value(r));
        };
        by_interval[i].push((*g as u32, r as u32));
    }
    let mut offsets = vec![0usize; ngroups + 1];
    for &(g, _) in by_interval.iter().flatten() {
        offsets[g as usize + 1] += 1;
    }
    for g in 0..ngroups {
        offsets[g + 1] += offsets[g];
    }
    let mut order = vec![(0u32, 0u32, 0u32); offsets[ngroups]];
    for (i, rows) in by_interval.iter().enumerate() {
        for &(g, r) in rows {
            let at = &mut offsets[g as usize];
            order[*at] = (g, i as u32, r);
            *at += 1;
        }
    }
    Ok(Runs { order })
}

/// Output rows being gathered: per row its period start and the partial row of its
/// keys; per merge, the partial rows it takes, the output row each goes to, and
/// whether it passes (a placeholder for an output row that takes none does not).
struct Chunk {
    starts: Vec<i64>,
    key_rows: Vec<u32>,
    takes: Vec<Vec<u32>>,
    groups: Vec<Vec<usize>>,
    passes: Vec<Vec<bool>>,
    /// Whether a row of `passes` is false.
    dropped: Vec<bool>,
    in_schema: SchemaRef,
}

impl Chunk {
    fn new(spec: &Spec, in_schema: &SchemaRef) -> Chunk {
        let n = spec.merges.len();
        Chunk {
            starts: Vec::new(),
            key_rows: Vec::new(),
            takes: vec![Vec::new(); n],
            groups: vec![Vec::new(); n],
            passes: vec![Vec::new(); n],
            dropped: vec![false; n],
            in_schema: in_schema.clone(),
        }
    }

    /// Partial row `row` for output row `o` of merge `j`, or with `passes` false only
    /// the output row.
    fn push(&mut self, j: usize, row: u32, o: usize, passes: bool) {
        self.takes[j].push(row);
        self.groups[j].push(o);
        self.passes[j].push(passes);
        self.dropped[j] |= !passes;
    }

    /// The gathered rows as a batch of `full`, leaving the chunk empty.
    fn emit(
        &mut self,
        spec: &Spec,
        batch: &RecordBatch,
        full: &SchemaRef,
    ) -> DfResult<RecordBatch> {
        let n = self.starts.len();
        let tz = match full.field(0).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let mut columns: Vec<ArrayRef> = vec![Arc::new(
            TimestampMicrosecondArray::from(std::mem::take(&mut self.starts)).with_timezone_opt(tz),
        )];
        let key_rows = UInt32Array::from(std::mem::take(&mut self.key_rows));
        for &k in &spec.keys {
            columns.push(take(batch.column(k), &key_rows, None)?);
        }
        for (j, m) in spec.merges.iter().enumerate() {
            let rows = UInt32Array::from(std::mem::take(&mut self.takes[j]));
            let values = take(batch.column(m.column), &rows, None)?;
            let groups = std::mem::take(&mut self.groups[j]);
            let passes = std::mem::take(&mut self.passes[j]);
            let filter = std::mem::take(&mut self.dropped[j]).then(|| BooleanArray::from(passes));
            let mut acc = accumulator(m, &self.in_schema)?;
            acc.update_batch(&[values], &groups, filter.as_ref(), n)?;
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        Ok(RecordBatch::try_new(full.clone(), columns)?)
    }
}

/// A fresh accumulator of merge `m` over its partial column.
fn accumulator(m: &MergeSpec, in_schema: &SchemaRef) -> DfResult<Box<dyn GroupsAccumulator>> {
    let name = in_schema.field(m.column).name();
    let arg = Arc::new(PhysicalColumn::new(name, m.column)) as Arc<dyn PhysicalExpr>;
    let expr = AggregateExprBuilder::new(m.func.clone(), vec![arg])
        .schema(in_schema.clone())
        .alias(name)
        .build()?;
    if expr.groups_accumulator_supported() {
        return expr.create_groups_accumulator();
    }
    let expr = Arc::new(expr);
    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
        expr.create_accumulator()
    })))
}

/// The partials each timeline table that `plan` scans merges, by table name: what
/// `kpi explain` shows beside the SQL that reads the table.
pub fn partials_read_by(plan: &LogicalPlan) -> Vec<(String, LogicalPlan)> {
    use datafusion::common::tree_node::TreeNode;
    let mut found = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
            && let Some(t) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<Timeline>()
        {
            found.push((scan.table_name.table().to_string(), t.partials.clone()));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// `plan` and, after it, the partials of every timeline table it reads (and theirs):
/// every plan whose tables a run of `plan` reads.
pub fn with_partials(plan: &LogicalPlan) -> Vec<LogicalPlan> {
    let mut all = vec![plan.clone()];
    let mut i = 0;
    while i < all.len() {
        let inner = partials_read_by(&all[i]);
        all.extend(inner.into_iter().map(|(_, p)| p));
        i += 1;
    }
    all
}
