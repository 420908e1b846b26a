//! The source rows by their keys, for the lookup operator to find a probe row's matches.
//!
//! Each key's last row, and for each row the one before it with the same key (rows
//! numbered from 1; 0 ends a chain). Rows with a NULL key are left out, as NULL equals
//! nothing. One integer key whose values span at most a few times the rows (ids, as a
//! rule) indexes an array by value; other keys go by hash, and a hash's rows are checked
//! for equal keys.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::{and, filter, take};
use datafusion::common::Result as DfResult;
use datafusion::common::hash_utils::{RandomState, create_hashes};

use crate::compile::dense;

/// The seed of the key hashes; any fixed value does, as both sides hash with it.
const HASHES: RandomState = RandomState::with_seed(0x6b70_695f_6c6b_7570);

/// See the module doc.
pub struct Chains {
    index: Index,
    before: Vec<u32>,
}

enum Index {
    /// `last[value - min]`.
    Dense {
        min: i64,
        last: Vec<u32>,
    },
    Hashed(HashMap<u64, u32, BuildHasherDefault<Unhashed>>),
}

impl Chains {
    /// The index of the `rows` source rows with keys `keys`.
    pub fn build(keys: &[ArrayRef], rows: u32) -> DfResult<Chains> {
        let n = rows as usize;
        let mut before = vec![0u32; n];
        let valid = valid(keys);
        let ok = |row: usize| valid.as_ref().is_none_or(|v| v.is_valid(row));
        if let Some(values) = dense::values(keys)?
            && let Some((min, max)) = dense::span(std::slice::from_ref(&values), n)
        {
            let mut last = vec![0u32; (max - min + 1) as usize];
            for (row, &v) in values.values().iter().enumerate() {
                if ok(row) {
                    let slot = &mut last[(v - min) as usize];
                    before[row] = *slot;
                    *slot = row as u32 + 1;
                }
            }
            return Ok(Chains {
                index: Index::Dense { min, last },
                before,
            });
        }
        let mut hashes = vec![0u64; n];
        create_hashes(keys, &HASHES, &mut hashes)?;
        let mut last: HashMap<u64, u32, BuildHasherDefault<Unhashed>> =
            HashMap::with_capacity_and_hasher(n, BuildHasherDefault::default());
        for (row, &h) in hashes.iter().enumerate() {
            if ok(row)
                && let Some(prev) = last.insert(h, row as u32 + 1)
            {
                before[row] = prev;
            }
        }
        Ok(Chains {
            index: Index::Hashed(last),
            before,
        })
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        let index = match &self.index {
            Index::Dense { last, .. } => last.len() * 4,
            Index::Hashed(m) => m.capacity() * (size_of::<(u64, u32)>() + 1),
        };
        index + self.before.len() * 4
    }

    /// The (probe row, source row) pairs whose keys are equal, `source` being the keys
    /// the index was built of.
    pub fn matches(
        &self,
        source: &[ArrayRef],
        probe: &[ArrayRef],
    ) -> DfResult<(UInt32Array, UInt32Array)> {
        let n = probe.first().map_or(0, |k| k.len());
        let valid = valid(probe);
        let ok = |row: usize| valid.as_ref().is_none_or(|v| v.is_valid(row));
        let mut probe_rows = Vec::with_capacity(n);
        let mut build_rows = Vec::with_capacity(n);
        let mut chain = |row: usize, mut at: u32| {
            while at != 0 {
                probe_rows.push(row as u32);
                build_rows.push(at - 1);
                at = self.before[(at - 1) as usize];
            }
        };
        match &self.index {
            Index::Dense { min, last } => {
                let values = dense::as_i64(&probe[0])?;
                for (row, &v) in values.values().iter().enumerate() {
                    // Wrapping: a value below `min` lands far above the array's end.
                    let slot = v.wrapping_sub(*min) as u64;
                    if ok(row) && slot < last.len() as u64 {
                        chain(row, last[slot as usize]);
                    }
                }
                Ok((probe_rows.into(), build_rows.into()))
            }
            Index::Hashed(last) => {
                let mut hashes = vec![0u64; n];
                create_hashes(probe, &HASHES, &mut hashes)?;
                for (row, h) in hashes.iter().enumerate() {
                    if ok(row)
                        && let Some(&at) = last.get(h)
                    {
                        chain(row, at);
                    }
                }
                same_keys(source, probe, probe_rows.into(), build_rows.into())
            }
        }
    }
}

/// The pairs whose keys are equal, of those whose hashes are.
fn same_keys(
    source: &[ArrayRef],
    probe: &[ArrayRef],
    probe_rows: UInt32Array,
    build_rows: UInt32Array,
) -> DfResult<(UInt32Array, UInt32Array)> {
    let mut same: Option<BooleanArray> = None;
    for (s, p) in source.iter().zip(probe) {
        let e = eq(&take(s, &build_rows, None)?, &take(p, &probe_rows, None)?)?;
        same = Some(match same {
            None => e,
            Some(prev) => and(&prev, &e)?,
        });
    }
    match same {
        Some(same) if same.true_count() < same.len() => Ok((
            filter(&probe_rows, &same)?.as_primitive().clone(),
            filter(&build_rows, &same)?.as_primitive().clone(),
        )),
        _ => Ok((probe_rows, build_rows)),
    }
}

/// Where every key is non-NULL (`None`: everywhere).
fn valid(keys: &[ArrayRef]) -> Option<NullBuffer> {
    keys.iter().fold(None, |acc, k| {
        NullBuffer::union(acc.as_ref(), k.logical_nulls().as_ref())
    })
}

/// The key hashes are already hashes: the map keeps them as they are.
#[derive(Default)]
struct Unhashed(u64);

impl Hasher for Unhashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    /// The pairs as (probe row, source row), sorted, and whether the array index was used.
    fn pairs(source: Vec<ArrayRef>, probe: Vec<ArrayRef>) -> (Vec<(u32, u32)>, bool) {
        let rows = source[0].len() as u32;
        let c = Chains::build(&source, rows).unwrap();
        let (p, b) = c.matches(&source, &probe).unwrap();
        let mut out: Vec<(u32, u32)> = p
            .values()
            .iter()
            .copied()
            .zip(b.values().iter().copied())
            .collect();
        out.sort_unstable();
        (out, matches!(c.index, Index::Dense { .. }))
    }

    fn ints(v: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(v.to_vec()))
    }

    #[test]
    fn each_probe_row_meets_every_source_row_with_its_key_and_null_meets_none() {
        let source = ints(&[Some(7), Some(3), None, Some(7), Some(-2)]);
        let probe = ints(&[Some(7), None, Some(5), Some(-2), Some(3), Some(i64::MIN)]);
        let want = vec![(0, 0), (0, 3), (3, 4), (4, 1)];
        assert_eq!(
            pairs(vec![source.clone()], vec![probe.clone()]),
            (want.clone(), true)
        );
        // Values far apart go by hash, with the same pairs.
        let far = |a: &ArrayRef| -> ArrayRef {
            let a = a.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            Arc::new(
                a.unary::<_, datafusion::arrow::datatypes::Int64Type>(|v| v.wrapping_mul(1 << 40)),
            )
        };
        assert_eq!(pairs(vec![far(&source)], vec![far(&probe)]), (want, false));
    }

    #[test]
    fn text_and_two_column_keys_go_by_hash_and_match_on_every_column() {
        let s = |v: &[&str]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
        let source = vec![s(&["a", "b", "a"]), ints(&[Some(1), Some(1), Some(2)])];
        let probe = vec![
            s(&["a", "a", "b", "c"]),
            ints(&[Some(2), Some(1), Some(2), Some(1)]),
        ];
        assert_eq!(pairs(source, probe), (vec![(0, 2), (1, 0)], false));
    }
}
