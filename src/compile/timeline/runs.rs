//! How the partials reach the merger: a partition held whole, or, under a memory limit,
//! held while they fit its share and otherwise spilled into buckets of whole keys, each
//! merged on its own.
//!
//! Keys fall into buckets by a hash of their values, so a bucket holds every partial of
//! its keys: written once and read back once, where a sort by key (which this replaced)
//! compared every row, spilled sorted runs and merged them. At 100M orders under
//! `--memory-limit 4GiB` the sort of `customer_retention_rate`'s 80M partials took 25 s
//! of its 29 s.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::Result as DfResult;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::spill_file::{SpillFile, SpillWriter};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::metrics::SpillMetrics;
use datafusion::physical_plan::spill::SpillManager;
use futures::StreamExt;
use futures::stream::BoxStream;

/// Buckets a partition's partials are spilled into, once they pass its share of memory:
/// a bucket holds about 1/64 of them when read back.
const BUCKETS: usize = 64;

/// Rows a bucket gathers before they are written as one batch.
const WRITE_ROWS: usize = super::exec::CHUNK;

/// The seed of the bucket hash: any fixed value, other than the one the partitions were
/// cut by (a bucket would then see only the keys of some partitions).
const BUCKET_HASH: RandomState = RandomState::with_seed(0x6275_636b_6574_7321);

/// Partials merged together: whole keys, and the reservation counting them when the
/// run holds its own.
pub(super) struct Run {
    pub(super) batches: Vec<RecordBatch>,
    pub(super) held: Option<MemoryReservation>,
}

/// All of `input`, held as one run, counted by `reservation` (which may not fail: without
/// a memory limit).
pub(super) fn all_of(
    input: SendableRecordBatchStream,
    reservation: MemoryReservation,
) -> BoxStream<'static, DfResult<Run>> {
    futures::stream::once(async move {
        let mut batches = Vec::new();
        let mut input = input;
        while let Some(b) = input.next().await {
            let b = b?;
            reservation.try_grow(b.get_array_memory_size())?;
            batches.push(b);
        }
        Ok(Run {
            batches,
            held: Some(reservation),
        })
    })
    .boxed()
}

/// Where and how the partials spill: the session's temporary files, and the operator's
/// spill metrics.
pub(super) struct Spilling {
    pub(super) env: Arc<RuntimeEnv>,
    pub(super) metrics: SpillMetrics,
}

/// All of `input` as one run while `reservation` (a spillable consumer) can hold it;
/// past that, every partial spilled into [`BUCKETS`] buckets of whole keys, and each
/// bucket read back as one run, counted while it is merged.
pub(super) fn within_memory(
    input: SendableRecordBatchStream,
    keys: Vec<usize>,
    reservation: MemoryReservation,
    spill: Spilling,
) -> BoxStream<'static, DfResult<Run>> {
    futures::stream::once(async move {
        let mut input = input;
        let mut held = Vec::new();
        while let Some(b) = input.next().await {
            let b = b?;
            if reservation.try_grow(b.get_array_memory_size()).is_ok() {
                held.push(b);
                continue;
            }
            // Past the share: everything goes into the buckets, the held batches first.
            let mut buckets = Buckets::new(keys, input.schema(), spill);
            for h in held.drain(..).chain([b]) {
                buckets.add(&h)?;
            }
            reservation.free();
            while let Some(b) = input.next().await {
                buckets.add(&b?)?;
            }
            return buckets.read_back(reservation).await;
        }
        let run = Run {
            batches: held,
            held: Some(reservation),
        };
        Ok(futures::stream::once(async { Ok(run) }).boxed())
    })
    .map(|r| r.unwrap_or_else(|e| futures::stream::once(async { Err(e) }).boxed()))
    .flatten()
    .boxed()
}

/// A bucket's temporary file and the writer of its Arrow IPC stream.
type BucketFile = (Arc<dyn SpillFile>, StreamWriter<Box<dyn SpillWriter>>);

/// Partials spilled into files by a hash of their keys.
struct Buckets {
    keys: Vec<usize>,
    schema: SchemaRef,
    spill: Spilling,
    /// Each bucket's file, once it has rows, and its writer until it is finished.
    files: Vec<Option<BucketFile>>,
    /// Each bucket's rows not written yet.
    pending: Vec<Vec<RecordBatch>>,
    hashes: Vec<u64>,
}

impl Buckets {
    fn new(keys: Vec<usize>, schema: SchemaRef, spill: Spilling) -> Buckets {
        Buckets {
            keys,
            schema,
            spill,
            files: (0..BUCKETS).map(|_| None).collect(),
            pending: vec![Vec::new(); BUCKETS],
            hashes: Vec::new(),
        }
    }

    /// Puts each row of `batch` in its keys' bucket: the rows ordered by bucket (one
    /// counting sort, one `take`), each bucket's share a slice.
    fn add(&mut self, batch: &RecordBatch) -> DfResult<()> {
        let n = batch.num_rows();
        let columns: Vec<ArrayRef> = self.keys.iter().map(|&k| batch.column(k).clone()).collect();
        self.hashes.clear();
        self.hashes.resize(n, 0);
        create_hashes(&columns, &BUCKET_HASH, &mut self.hashes)?;
        let bucket = |h: u64| (h % BUCKETS as u64) as usize;
        let mut starts = [0usize; BUCKETS + 1];
        for &h in &self.hashes {
            starts[bucket(h) + 1] += 1;
        }
        for b in 0..BUCKETS {
            starts[b + 1] += starts[b];
        }
        let mut next = starts;
        let mut order = vec![0u32; n];
        for (row, &h) in self.hashes.iter().enumerate() {
            let at = &mut next[bucket(h)];
            order[*at] = row as u32;
            *at += 1;
        }
        let sorted = take_record_batch(batch, &UInt32Array::from(order))?;
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
        let batch = concat_batches(&self.schema, &pending)?;
        if self.files[b].is_none() {
            let file = self
                .spill
                .env
                .disk_manager
                .create_tmp_file("TimelineExec")?;
            let writer = StreamWriter::try_new(file.open_writer()?, &self.schema)?;
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

    /// Each bucket as one run, read back from its file, counted by a reservation of
    /// `reservation`'s consumer while it is merged.
    async fn read_back(
        mut self,
        reservation: MemoryReservation,
    ) -> DfResult<BoxStream<'static, DfResult<Run>>> {
        let mut files: Vec<Arc<dyn SpillFile>> = Vec::with_capacity(BUCKETS);
        for b in 0..BUCKETS {
            self.write_if_full(b, 1)?;
            if let Some((file, mut writer)) = self.files[b].take() {
                writer.finish()?;
                writer.into_inner()?.finish()?;
                files.push(file);
            }
        }
        let reader = SpillManager::new(
            self.spill.env.clone(),
            self.spill.metrics.clone(),
            self.schema.clone(),
        );
        let (reader, reservation) = (Arc::new(reader), Arc::new(reservation));
        let runs = futures::stream::iter(files).then(move |file| {
            let (reader, reservation) = (reader.clone(), reservation.clone());
            async move {
                let mut stream = reader.read_spill_as_stream(file, None)?;
                let held = reservation.new_empty();
                let mut batches = Vec::new();
                while let Some(b) = stream.next().await {
                    let b = b?;
                    held.try_grow(b.get_array_memory_size())?;
                    batches.push(b);
                }
                Ok(Run {
                    batches,
                    held: Some(held),
                })
            }
        });
        Ok(runs.boxed())
    }
}
