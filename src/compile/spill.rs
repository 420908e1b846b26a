//! Rows spilled into buckets of whole keys, for kpi's operators under a memory limit:
//! past its share of the pool, an operator writes its rows into [`BUCKETS`] temporary
//! files by a hash of their keys, and reads them back a bucket at a time. Every row of
//! a key lies in one bucket, so a bucket is a whole unit of work: the timeline merges a
//! bucket of entities' partials ([`super::timeline`]).
//!
//! Written once and read back once, with no comparison of rows, where DataFusion's sort
//! by key (which the timeline first asked for) spilled sorted runs and merged them: at
//! 100M orders under `--memory-limit 4GiB` the sort of `customer_retention_rate`'s 80M
//! partials took 25 s of its 29 s.
//!
//! (A per-entity aggregation given its rows a bucket of entities at a time, DataFusion's
//! aggregation reading them sorted by bucket and holding one bucket's groups, was built
//! and measured: `cross_sell_rate` at 100M under `4GiB` went from 42.2 to 38.4 s, but the
//! whole catalogue did not move (145.0 against 144.3 s), and at 10M under `1GiB` the
//! metric went from 2.4-2.7 to 3.0-3.2 s, spilling rows the pool could have held. It was
//! not kept.)

use std::io::BufWriter;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::spill_file::{SpillFile, SpillWriter};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::SpillMetrics;
use datafusion::physical_plan::spill::{SpillManager, get_record_batch_memory_size};
use futures::StreamExt;
use futures::stream::BoxStream;

/// Buckets an operator's partition spills its rows into: a bucket holds about 1/64 of
/// them when read back.
pub(super) const BUCKETS: usize = 64;

/// Rows a bucket gathers before they are written as one batch.
const WRITE_ROWS: usize = 8192;

/// Bytes a bucket's file buffers before a write.
const WRITE_BUFFER: usize = 64 << 10;

/// The seed of the bucket hash: any fixed value, other than the one the partitions were
/// cut by (a bucket would then see only the keys of some partitions).
const BUCKET_HASH: RandomState = RandomState::with_seed(0x6275_636b_6574_7321);

/// Where and how rows spill: the session's temporary files, and the operator's spill
/// metrics.
pub(super) struct Spilling {
    pub(super) env: Arc<RuntimeEnv>,
    pub(super) metrics: SpillMetrics,
}

/// The rows of `batch` ordered by the bucket of their keys `keys` (one counting sort,
/// one `take`), and where each bucket's rows start (`BUCKETS + 1` offsets).
fn by_bucket(
    batch: &RecordBatch,
    keys: &[Arc<dyn PhysicalExpr>],
) -> DfResult<(RecordBatch, [usize; BUCKETS + 1])> {
    let n = batch.num_rows();
    let columns = keys
        .iter()
        .map(|k| k.evaluate(batch)?.into_array(n))
        .collect::<DfResult<Vec<ArrayRef>>>()?;
    let mut hashes = vec![0u64; n];
    create_hashes(&columns, &BUCKET_HASH, &mut hashes)?;
    let bucket = |h: u64| (h % BUCKETS as u64) as usize;
    let mut starts = [0usize; BUCKETS + 1];
    for &h in &hashes {
        starts[bucket(h) + 1] += 1;
    }
    for b in 0..BUCKETS {
        starts[b + 1] += starts[b];
    }
    let mut next = starts;
    let mut order = vec![0u32; n];
    for (row, &h) in hashes.iter().enumerate() {
        let at = &mut next[bucket(h)];
        order[*at] = row as u32;
        *at += 1;
    }
    Ok((take_record_batch(batch, &UInt32Array::from(order))?, starts))
}

/// `batch` with its string and binary views copied into buffers of their own: a view
/// array sliced from a larger one (a bucket's share of an input batch) still holds all
/// of that one's data, which the file would get once per bucket.
fn compacted(batch: RecordBatch) -> DfResult<RecordBatch> {
    let views = |a: &ArrayRef| matches!(a.data_type(), DataType::Utf8View | DataType::BinaryView);
    if !batch.columns().iter().any(views) {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .map(|a| match a.data_type() {
            DataType::Utf8View => Arc::new(a.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView => Arc::new(a.as_binary_view().gc()) as ArrayRef,
            _ => a.clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// A bucket's temporary file and the writer of its Arrow IPC stream, buffered: the
/// stream writes each buffer of each column on its own, a system call each unbuffered.
type BucketFile = (
    Arc<dyn SpillFile>,
    StreamWriter<BufWriter<Box<dyn SpillWriter>>>,
);

/// Rows spilled into files by a hash of their keys.
pub(super) struct Buckets {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    spill: Spilling,
    /// Each bucket's file, once it has rows, and its writer until it is finished.
    files: Vec<Option<BucketFile>>,
    /// Each bucket's rows not written yet.
    pending: Vec<Vec<RecordBatch>>,
}

/// One bucket read back: its rows, and the reservation counting them.
pub(super) struct Bucket {
    pub(super) batches: Vec<RecordBatch>,
    pub(super) held: MemoryReservation,
}

impl Buckets {
    /// Empty buckets of rows of `schema`, by the values of `keys`.
    pub(super) fn new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        spill: Spilling,
    ) -> Buckets {
        Buckets {
            keys,
            schema,
            spill,
            files: (0..BUCKETS).map(|_| None).collect(),
            pending: vec![Vec::new(); BUCKETS],
        }
    }

    /// Puts each row of `batch` in its keys' bucket.
    pub(super) fn add(&mut self, batch: &RecordBatch) -> DfResult<()> {
        let (sorted, starts) = by_bucket(batch, &self.keys)?;
        for b in 0..BUCKETS {
            let (from, to) = (starts[b], starts[b + 1]);
            if from < to {
                self.pending[b].push(sorted.slice(from, to - from));
                self.write_if_full(b, WRITE_ROWS)?;
            }
        }
        Ok(())
    }

    /// Writes bucket `b`'s pending rows once they are `at_least` rows.
    fn write_if_full(&mut self, b: usize, at_least: usize) -> DfResult<()> {
        let rows: usize = self.pending[b].iter().map(RecordBatch::num_rows).sum();
        if rows == 0 || rows < at_least {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending[b]);
        let batch = compacted(concat_batches(&self.schema, &pending)?)?;
        if self.files[b].is_none() {
            let file = self.spill.env.disk_manager.create_tmp_file("kpi spill")?;
            let buffered = BufWriter::with_capacity(WRITE_BUFFER, file.open_writer()?);
            let writer = StreamWriter::try_new(buffered, &self.schema)?;
            self.files[b] = Some((file, writer));
            self.spill.metrics.spill_file_count.add(1);
        }
        let (_, writer) = self.files[b].as_mut().expect("opened above");
        writer.write(&batch)?;
        self.spill.metrics.spilled_rows.add(batch.num_rows());
        self.spill
            .metrics
            .spilled_bytes
            .add(batch.get_array_memory_size());
        Ok(())
    }

    /// Each bucket with rows, in bucket order, read back from its file, counted by a
    /// reservation of `reservation`'s consumer until the bucket is dropped.
    pub(super) fn read_back(
        mut self,
        reservation: MemoryReservation,
    ) -> DfResult<BoxStream<'static, DfResult<Bucket>>> {
        let mut files: Vec<Arc<dyn SpillFile>> = Vec::with_capacity(BUCKETS);
        for b in 0..BUCKETS {
            self.write_if_full(b, 1)?;
            if let Some((file, mut writer)) = self.files[b].take() {
                writer.finish()?;
                let buffered = writer.into_inner()?;
                buffered
                    .into_inner()
                    .map_err(|e| DataFusionError::IoError(e.into_error()))?
                    .finish()?;
                files.push(file);
            }
        }
        let reader = SpillManager::new(
            self.spill.env.clone(),
            self.spill.metrics.clone(),
            self.schema.clone(),
        );
        let (reader, reservation) = (Arc::new(reader), Arc::new(reservation));
        let buckets = futures::stream::iter(files).then(move |file| {
            let (reader, reservation) = (reader.clone(), reservation.clone());
            async move {
                let mut stream = reader.read_spill_as_stream(file, None)?;
                let held = reservation.new_empty();
                let mut batches = Vec::new();
                while let Some(b) = stream.next().await {
                    let b = b?;
                    // The columns of a batch read back share one buffer: counted once.
                    held.try_grow(get_record_batch_memory_size(&b))?;
                    batches.push(b);
                }
                Ok(Bucket { batches, held })
            }
        });
        Ok(buckets.boxed())
    }
}
