//! What kpi's plans hold that datafusion-proto cannot carry by itself, encoded for the
//! trip to a Ballista scheduler (logical plans) and on to its executors (physical plans):
//!
//! - kpi's scalar functions. `bucket_start` holds the run's period boundaries, so it
//!   travels with them, as does `bucket_bit` with its word; the others
//!   (`exact_decimal`, `hours_between`, `days_between`) travel by a tag. The receiver
//!   rebuilds each from these bytes, never by looking a name up, so a scheduler or
//!   executor cannot silently use another run's boundaries.
//! - in-memory tables (the period spine, the scans' results the assembly reads), as an
//!   Arrow IPC stream.
//!
//! Everything else is Ballista's own codecs' business. They leave aggregate, window and
//! expression extensions to the traits' defaults, and so do these.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::compile::bucket::{BucketBit, BucketStart};
use crate::compile::{exact, functions};

/// The first byte of an encoded function: which of kpi's it is.
const BUCKET_START: u8 = 1;
const STATELESS: u8 = 2;
const BUCKET_BIT: u8 = 3;
/// The first bytes of an encoded in-memory table.
const MEM_TABLE: &[u8] = b"kpi-mem1";

/// kpi's functions without state, by name.
fn stateless() -> Vec<ScalarUDF> {
    let mut all = functions::all();
    all.push(exact::exact_decimal_udf());
    all
}

/// Writes `node` into `buf` when it is one of kpi's functions; other functions are left
/// to DataFusion's registry (`buf` stays empty).
fn encode_udf(node: &ScalarUDF, buf: &mut Vec<u8>) {
    if let Some(bucket) = node.inner().downcast_ref::<BucketStart>() {
        buf.push(BUCKET_START);
        push_boundaries(buf, bucket.boundaries());
    } else if let Some(bit) = node.inner().downcast_ref::<BucketBit>() {
        buf.push(BUCKET_BIT);
        buf.extend_from_slice(&(bit.word() as u64).to_le_bytes());
        push_boundaries(buf, bit.boundaries());
    } else if stateless().iter().any(|f| f.name() == node.name()) {
        buf.push(STATELESS);
    }
}

/// The function `encode_udf` wrote into `buf`; `None` when `buf` is not one of kpi's.
fn decode_udf(name: &str, buf: &[u8]) -> Option<Result<Arc<ScalarUDF>>> {
    let bad = |what: &str| DataFusionError::Internal(format!("kpi codec: {what} `{name}`"));
    match buf.split_first() {
        Some((&BUCKET_START, rest)) => Some(
            boundaries(rest)
                .map(|b| Arc::new(ScalarUDF::new_from_impl(BucketStart::new(b))))
                .map_err(&bad),
        ),
        Some((&BUCKET_BIT, rest)) if rest.len() >= 8 => {
            let (word, rest) = rest.split_at(8);
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes")) as usize;
            Some(
                boundaries(rest)
                    .map(|b| Arc::new(ScalarUDF::new_from_impl(BucketBit::new(b, word))))
                    .map_err(&bad),
            )
        }
        Some((&BUCKET_BIT, _)) => Some(Err(bad("truncated word of"))),
        Some((&STATELESS, _)) => Some(
            stateless()
                .into_iter()
                .find(|f| f.name() == name)
                .map(Arc::new)
                .ok_or_else(|| bad("no function")),
        ),
        _ => None,
    }
}

/// `boundaries` as little-endian bytes, as [`boundaries`] reads them.
fn push_boundaries(buf: &mut Vec<u8>, boundaries: &[i64]) {
    for b in boundaries {
        buf.extend_from_slice(&b.to_le_bytes());
    }
}

/// Sorted, distinct boundaries (at least two) from their little-endian bytes; what is
/// wrong with them otherwise.
fn boundaries(bytes: &[u8]) -> std::result::Result<Vec<i64>, &'static str> {
    if !bytes.len().is_multiple_of(8) || bytes.len() < 16 {
        return Err("truncated boundaries of");
    }
    let b: Vec<i64> = bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    if b.windows(2).any(|w| w[0] >= w[1]) {
        return Err("unsorted boundaries of");
    }
    Ok(b)
}

/// The batches of `table` when it is an in-memory table, as an IPC stream.
fn encode_mem_table(table: &MemTable, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(MEM_TABLE);
    let mut w = StreamWriter::try_new(&mut *buf, &table.schema())?;
    for partition in &table.batches {
        let batches = partition
            .try_read()
            .map_err(|_| DataFusionError::Internal("kpi codec: a table is being written".into()))?;
        for batch in batches.iter() {
            w.write(batch)?;
        }
    }
    w.finish()?;
    Ok(())
}

fn decode_mem_table(ipc: &[u8], schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
    let reader = StreamReader::try_new(ipc, None)?;
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

/// Ballista's logical codec, plus kpi's functions and in-memory tables.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(MEM_TABLE) {
            Some(ipc) => decode_mem_table(ipc, schema),
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let any: &dyn std::any::Any = node.as_ref();
        match any.downcast_ref::<MemTable>() {
            Some(mem) => encode_mem_table(mem, buf),
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf).unwrap_or_else(|| self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf);
        Ok(())
    }
}

/// Ballista's physical codec, plus kpi's functions (in-memory scans are datafusion-proto's
/// own `MemoryScan` there).
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf).unwrap_or_else(|| self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_start_travels_with_its_boundaries() {
        let udf = ScalarUDF::new_from_impl(BucketStart::new(vec![-5, 0, 1_000_000]));
        let mut buf = Vec::new();
        encode_udf(&udf, &mut buf);
        assert_eq!(buf.len(), 1 + 3 * 8);
        let back = decode_udf("bucket_start", &buf).unwrap().unwrap();
        let b = back.inner().downcast_ref::<BucketStart>().unwrap();
        assert_eq!(b.boundaries(), &[-5, 0, 1_000_000]);
        assert!(decode_udf("bucket_start", &buf[..9]).unwrap().is_err());
    }

    #[test]
    fn bucket_bit_travels_with_its_word_and_boundaries() {
        let udf = ScalarUDF::new_from_impl(BucketBit::new(vec![-5, 0, 1_000_000], 2));
        let mut buf = Vec::new();
        encode_udf(&udf, &mut buf);
        assert_eq!(buf.len(), 1 + 8 + 3 * 8);
        let back = decode_udf("bucket_bit", &buf).unwrap().unwrap();
        let b = back.inner().downcast_ref::<BucketBit>().unwrap();
        assert_eq!((b.word(), b.boundaries()), (2, &[-5, 0, 1_000_000][..]));
        assert!(decode_udf("bucket_bit", &buf[..5]).unwrap().is_err());
        assert!(decode_udf("bucket_bit", &buf[..17]).unwrap().is_err());
    }

    #[test]
    fn builtin_functions_are_left_to_the_registry() {
        let mut buf = Vec::new();
        encode_udf(
            &datafusion::functions::string::lower().as_ref().clone(),
            &mut buf,
        );
        assert!(buf.is_empty());
        let mut buf = Vec::new();
        encode_udf(&stateless()[0], &mut buf);
        assert_eq!(buf, [STATELESS]);
        let back = decode_udf("hours_between", &buf).unwrap().unwrap();
        assert_eq!(back.name(), "hours_between");
    }
}
