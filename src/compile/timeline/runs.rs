//! How the partials reach the merger: a partition held whole, or, sorted by key, cut
//! into runs of whole keys so that only one run is held at a time.

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::partition;
use datafusion::common::Result as DfResult;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use futures::stream::BoxStream;

/// Input rows gathered, in sorted mode, before the whole keys among them are merged: a
/// run costs little to set up, and small runs keep what is held small.
const SORTED_RUN: usize = super::exec::CHUNK;

/// Partials merged together: whole keys, and the reservation counting them when the
/// run holds its own.
pub(super) struct Run {
    pub(super) batches: Vec<RecordBatch>,
    pub(super) held: Option<MemoryReservation>,
}

/// All of `input`, held as one run, counted by `reservation`.
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

/// `input`, sorted by `keys`, cut into runs of whole keys of about [`SORTED_RUN`] rows;
/// `reservation` counts the run held and the rows gathered for the next.
pub(super) fn whole_keys(
    input: SendableRecordBatchStream,
    keys: Vec<usize>,
    reservation: MemoryReservation,
) -> BoxStream<'static, DfResult<Run>> {
    struct Cutting {
        input: SendableRecordBatchStream,
        keys: Vec<usize>,
        reservation: MemoryReservation,
        pending: Vec<RecordBatch>,
        done: bool,
    }
    let size = |batches: &[RecordBatch]| -> usize {
        batches.iter().map(RecordBatch::get_array_memory_size).sum()
    };
    let state = Cutting {
        input,
        keys,
        reservation,
        pending: Vec::new(),
        done: false,
    };
    futures::stream::unfold(state, move |mut s| async move {
        // The run handed out last has been merged by now: only `pending` is held.
        s.reservation.resize(size(&s.pending));
        while !s.done {
            let b = match s.input.next().await {
                None => {
                    s.done = true;
                    break;
                }
                Some(Err(e)) => return Some((Err(e), s)),
                Some(Ok(b)) if b.num_rows() == 0 => continue,
                Some(Ok(b)) => b,
            };
            if let Err(e) = s.reservation.try_grow(b.get_array_memory_size()) {
                return Some((Err(e), s));
            }
            let rows: usize = s.pending.iter().map(RecordBatch::num_rows).sum();
            let cut = match rows + b.num_rows() >= SORTED_RUN {
                true => match last_key_starts(&b, &s.keys) {
                    Ok(cut) => cut,
                    Err(e) => return Some((Err(e), s)),
                },
                false => 0,
            };
            if cut == 0 {
                // No key of `b` is known whole yet.
                s.pending.push(b);
                continue;
            }
            s.pending.push(b.slice(0, cut));
            let tail = b.slice(cut, b.num_rows() - cut);
            let batches = std::mem::replace(&mut s.pending, vec![tail]);
            return Some((
                Ok(Run {
                    batches,
                    held: None,
                }),
                s,
            ));
        }
        let batches = std::mem::take(&mut s.pending);
        (!batches.is_empty()).then_some((
            Ok(Run {
                batches,
                held: None,
            }),
            s,
        ))
    })
    .boxed()
}

/// The first row of the last key of `batch`, a run sorted by `keys`.
fn last_key_starts(batch: &RecordBatch, keys: &[usize]) -> DfResult<usize> {
    let columns: Vec<ArrayRef> = keys.iter().map(|&k| batch.column(k).clone()).collect();
    let ranges = partition(&columns)?.ranges();
    Ok(ranges.last().map_or(0, |r| r.start))
}
