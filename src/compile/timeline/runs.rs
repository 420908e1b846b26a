//! How the partials reach the merger: a partition held whole, or, under a memory limit,
//! held while they fit its share and otherwise spilled into buckets of whole keys
//! ([`crate::compile::spill`]), each merged on its own.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result as DfResult;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::compile::spill::{Buckets, Spilling};

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

/// All of `input` as one run while `reservation` (a spillable consumer) can hold it;
/// past that, every partial spilled into buckets of whole keys (the columns
/// `keys`), and each bucket read back as one run, counted while it is merged.
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
            let schema = input.schema();
            let keys = keys
                .iter()
                .map(|&k| Arc::new(Column::new(schema.field(k).name(), k)) as Arc<dyn PhysicalExpr>)
                .collect();
            let mut buckets = Buckets::new(keys, schema, spill);
            for h in held.drain(..).chain([b]) {
                buckets.add(&h)?;
            }
            reservation.free();
            while let Some(b) = input.next().await {
                buckets.add(&b?)?;
            }
            let runs = buckets.read_back(reservation)?.map(|b| {
                b.map(|b| Run {
                    batches: b.batches,
                    held: Some(b.held),
                })
            });
            return Ok(runs.boxed());
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
