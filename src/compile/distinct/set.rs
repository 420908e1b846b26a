//! The sets of a bitmap distinct count. With few groups (a count per period), each
//! group's keys are a short list until it holds [`SMALL`], then a Roaring bitmap. Past
//! [`FEW_GROUPS`] groups (a count per customer and month), where most sets hold a value
//! or two, every (group, key) pair of a count goes into one hash set instead, as
//! DataFusion's own count keeps them, and a set per group would cost more than its
//! values; a set or a union (a set per interval, united per period) gives or takes
//! whole sets, and keeps one per group however many. Tuples
//! without a key are kept beside, as themselves. A group's partial state is the list of
//! its keys and the list of its tuples (as bytes), merged by union: cheap to build for
//! one row when DataFusion skips the partial aggregation, and a bitmap's keys in order
//! go back into a bitmap at a few nanoseconds each.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, GenericListArray, Int64Array,
    ListBuilder, StructArray, UInt64Array, UInt64Builder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, UInt64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use roaring::RoaringTreemap;

use super::text::Texts;
use super::{Role, set_fields};

/// Keys a group lists before they go into a bitmap.
const SMALL: usize = 32;

/// Groups past which the sets become one hash set of (group, key) pairs.
const FEW_GROUPS: usize = 1024;

/// A tuple without a key: each part's value, NULL as `None`.
type Tuple = Box<[Option<i128>]>;

/// A group's keys while the groups are few.
#[derive(Debug, Default)]
struct Keys {
    small: Vec<u64>,
    bits: Option<RoaringTreemap>,
}

impl Keys {
    /// Adds `key` to a group without a bitmap; whether it is new.
    fn insert_small(&mut self, key: u64) -> bool {
        if self.small.contains(&key) {
            return false;
        }
        self.small.push(key);
        if self.small.len() > SMALL {
            self.bits = Some(self.small.drain(..).collect());
            self.small = Vec::new();
        }
        true
    }

    fn iter(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match &self.bits {
            Some(bits) => Box::new(bits.iter()),
            None => Box::new(self.small.iter().copied()),
        }
    }

    fn len(&self) -> u64 {
        match &self.bits {
            Some(bits) => bits.len(),
            None => self.small.len() as u64,
        }
    }
}

/// Keys of tuples waiting, with their group, to go into the groups' bitmaps:
/// [`Few::settle`] puts them in sorted, each group's as one bitmap built in order and
/// united with its own, container by container. One key at a time, a bitmap of tuple
/// keys (a part in the high bits, another in the low) finds its part's bitmap and its
/// container, and shifts the container's tail for each, its containers holding few keys
/// each: at 10M orders that was most of `campaign_response_rate`'s time, 14M
/// (campaign, customer) keys, which settled in sorted runs take 0.78-0.79 s instead of
/// 0.89-1.06 s. Keys of one value (ids) fill dense containers, where a key is one bit
/// set in place, and sorting them first cost more than it saved (5-10%): they go in at
/// once.
const PENDING: usize = 1 << 19;

/// The groups' keys while the groups are few.
#[derive(Debug, Default)]
struct Few {
    groups: Vec<Keys>,
    /// Whether keys are held pending before they go into a bitmap (keys of tuples).
    buffered: bool,
    /// Keys of groups that hold a bitmap, not in it yet (duplicates too), with their
    /// group.
    pending: Vec<(u32, u64)>,
}

impl Few {
    /// Adds `key` to `group`: how many keys the sets hold more (a key pending counts as
    /// one until it is settled; settling gives back the duplicates, a negative count).
    fn insert(&mut self, group: usize, key: u64) -> i64 {
        let keys = &mut self.groups[group];
        match &mut keys.bits {
            None => return keys.insert_small(key) as i64,
            Some(bits) if !self.buffered => return bits.insert(key) as i64,
            Some(_) => {}
        }
        self.pending.push((group as u32, key));
        match self.pending.len() >= PENDING {
            true => 1 + self.settle(),
            false => 1,
        }
    }

    /// Puts the pending keys into their groups' bitmaps; how many keys that removed
    /// from the count [`Few::insert`] gave (the duplicates among them), as a negative.
    fn settle(&mut self) -> i64 {
        if self.pending.is_empty() {
            return 0;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let added = pending.len() as i64;
        pending.sort_unstable();
        pending.dedup();
        let mut grew = 0i64;
        for run in pending.chunk_by(|a, b| a.0 == b.0) {
            let bits = self.groups[run[0].0 as usize]
                .bits
                .as_mut()
                .expect("only groups with a bitmap have pending keys");
            let before = bits.len();
            let sorted = run.iter().map(|&(_, k)| k);
            *bits |= RoaringTreemap::from_sorted_iter(sorted).expect("sorted and distinct");
            grew += (bits.len() - before) as i64;
        }
        // The buffer's room is kept for the next keys.
        pending.clear();
        self.pending = pending;
        grew - added
    }
}

/// Every group's keys.
#[derive(Debug)]
enum Sets {
    Few(Few),
    /// Past [`FEW_GROUPS`]: each group's first [`INLINE`] keys in `inline`, any more in
    /// `seen` with their group, and how many each group has in `counts`. Most groups of
    /// a count per customer and month hold a key or two, found in their own slots
    /// without a hash; a hash set of every pair cost a cache miss per key and rehashed
    /// millions of pairs as it grew.
    Many {
        inline: Vec<[u64; INLINE]>,
        seen: HashSet<(usize, u64), ahash::RandomState>,
        counts: Vec<i64>,
    },
}

/// Keys a group holds in its own slots when the groups are many.
const INLINE: usize = 2;

impl Sets {
    fn groups(&self) -> usize {
        match self {
            Sets::Few(few) => few.groups.len(),
            Sets::Many { counts, .. } => counts.len(),
        }
    }

    /// Room for `n` groups, turning into [`Sets::Many`] past [`FEW_GROUPS`] if `may_pair`.
    fn resize(&mut self, n: usize, may_pair: bool) {
        if let Sets::Few(few) = self
            && may_pair
            && n > FEW_GROUPS
        {
            few.settle();
            let few = std::mem::take(&mut few.groups);
            let mut many = Sets::Many {
                inline: Vec::with_capacity(n),
                seen: HashSet::default(),
                counts: Vec::with_capacity(n),
            };
            many.resize(few.len(), false);
            for (g, keys) in few.iter().enumerate() {
                for k in keys.iter() {
                    many.insert(g, k);
                }
            }
            *self = many;
        }
        match self {
            Sets::Few(few) => few
                .groups
                .resize_with(n.max(few.groups.len()), Keys::default),
            Sets::Many { inline, counts, .. } => {
                inline.resize(n.max(inline.len()), [0; INLINE]);
                counts.resize(n.max(counts.len()), 0);
            }
        }
    }

    /// Adds `key` to `group`: how many keys the sets hold more, as [`Few::insert`]
    /// counts them.
    fn insert(&mut self, group: usize, key: u64) -> i64 {
        match self {
            Sets::Few(few) => few.insert(group, key),
            Sets::Many {
                inline,
                seen,
                counts,
            } => {
                let n = counts[group] as usize;
                let slots = &mut inline[group];
                if slots[..n.min(INLINE)].contains(&key) {
                    return 0;
                }
                let new = match n < INLINE {
                    true => {
                        slots[n] = key;
                        true
                    }
                    false => seen.insert((group, key)),
                };
                counts[group] += new as i64;
                new as i64
            }
        }
    }

    /// Group `group`'s count; the pending keys must be settled ([`Sets::settle`]).
    fn len(&self, group: usize) -> u64 {
        match self {
            Sets::Few(few) => few.groups[group].len(),
            Sets::Many { counts, .. } => counts[group] as u64,
        }
    }

    /// The first `n` groups' keys, removed and the other groups renumbered from 0: in
    /// `keys` (a list per group), or in `blobs` as a serialized bitmap (tagged 1).
    fn take(
        &mut self,
        n: usize,
        keys: &mut ListBuilder<UInt64Builder>,
        blobs: &mut [Vec<Vec<u8>>],
    ) -> Result<()> {
        match self {
            Sets::Few(few) => {
                for (g, set) in few.groups.drain(..n).enumerate() {
                    if let Some(bits) = &set.bits {
                        let mut blob = vec![BITMAP];
                        bits.serialize_into(&mut blob)
                            .map_err(|e| DataFusionError::External(Box::new(e)))?;
                        blobs[g].push(blob);
                    }
                    keys.values().append_slice(&set.small);
                    keys.append(true);
                }
            }
            Sets::Many {
                inline,
                seen,
                counts,
            } => {
                let mut at: Vec<usize> = Vec::with_capacity(n + 1);
                at.push(0);
                for c in &counts[..n] {
                    at.push(at[at.len() - 1] + *c as usize);
                }
                let mut flat = vec![0u64; at[n]];
                let mut next = at.clone();
                for (g, slots) in inline.drain(..n).enumerate() {
                    let k = (counts[g] as usize).min(INLINE);
                    flat[next[g]..next[g] + k].copy_from_slice(&slots[..k]);
                    next[g] += k;
                }
                match n == counts.len() {
                    true => {
                        for (g, k) in seen.drain() {
                            flat[next[g]] = k;
                            next[g] += 1;
                        }
                    }
                    false => {
                        let mut rest = HashSet::default();
                        for (g, k) in seen.drain() {
                            if g < n {
                                flat[next[g]] = k;
                                next[g] += 1;
                            } else {
                                rest.insert((g - n, k));
                            }
                        }
                        *seen = rest;
                    }
                }
                counts.drain(..n);
                for g in 0..n {
                    keys.values().append_slice(&flat[at[g]..at[g + 1]]);
                    keys.append(true);
                }
            }
        }
        Ok(())
    }

    /// Puts pending keys into their sets ([`Few::settle`]): before the sets are read
    /// or their groups renumbered. How many keys the count of [`Sets::insert`] loses.
    fn settle(&mut self) -> i64 {
        match self {
            Sets::Few(few) => few.settle(),
            Sets::Many { .. } => 0,
        }
    }

    /// Forgets the first `n` groups and renumbers the others from 0.
    fn forget(&mut self, n: usize) {
        match self {
            Sets::Few(few) => {
                few.groups.drain(..n);
            }
            Sets::Many {
                inline,
                seen,
                counts,
            } => {
                inline.drain(..n);
                if n == counts.len() {
                    seen.clear();
                } else {
                    let rest = seen
                        .drain()
                        .filter(|(g, _)| *g >= n)
                        .map(|(g, k)| (g - n, k));
                    *seen = rest.collect();
                }
                counts.drain(..n);
            }
        }
    }
}

/// The tag of a blob holding a serialized bitmap of keys; a blob tagged 0 is a tuple.
const BITMAP: u8 = 1;

/// What a key and a keyless tuple are counted to hold, for the memory pool: a key of
/// a bitmap costs at most two bytes once its container holds more than a few, more in a
/// short list or the hash set; a tuple is a boxed slice in a hash set.
const KEY_BYTES: usize = 8;
const TUPLE_BYTES: usize = 64;

/// One argument's values: signed integers widened to i64, or u64 as they are.
enum Part {
    Signed(Int64Array),
    Unsigned(UInt64Array),
}

impl Part {
    fn of(a: &ArrayRef) -> Result<Part> {
        Ok(match a.data_type() {
            DataType::UInt64 => Part::Unsigned(a.as_primitive::<UInt64Type>().clone()),
            _ => Part::Signed(
                cast(a, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            ),
        })
    }

    fn value(&self, row: usize) -> Option<i128> {
        match self {
            Part::Signed(a) => a.is_valid(row).then(|| a.value(row) as i128),
            Part::Unsigned(a) => a.is_valid(row).then(|| a.value(row) as i128),
        }
    }

    /// The key of one value: an order-keeping bijection of its type onto u64.
    fn key(&self, row: usize) -> Option<u64> {
        match self {
            Part::Signed(a) => a.is_valid(row).then(|| (a.value(row) as u64) ^ (1 << 63)),
            Part::Unsigned(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

/// The distinct count of every group, as DataFusion's grouped aggregation drives it.
#[derive(Debug)]
pub(super) struct DistinctGroups {
    sets: Sets,
    /// Tuples without a key, with their group, and how many each group has.
    side: HashSet<(usize, Tuple)>,
    side_counts: HashMap<usize, i64>,
    tuple: bool,
    /// Each part's share of a tuple's key, in bits.
    share: u32,
    /// The memory the sets are counted to hold.
    bytes: usize,
    role: Role,
    /// For a count of texts, their numbering ([`super::text`]), and the bytes the
    /// texts first seen here added to it.
    texts: Option<Arc<Texts>>,
    text_bytes: AtomicUsize,
}

impl DistinctGroups {
    /// The sets of a count of `arity` arguments, a tuple or one value.
    pub(super) fn new(arity: usize, tuple: bool) -> DistinctGroups {
        DistinctGroups {
            sets: Sets::Few(Few {
                buffered: tuple,
                ..Few::default()
            }),
            side: HashSet::new(),
            side_counts: HashMap::new(),
            tuple,
            share: 64 / arity.max(1) as u32,
            bytes: 0,
            role: Role::Count,
            texts: None,
            text_bytes: AtomicUsize::new(0),
        }
    }

    /// The same sets, of the numbers of texts when `texts` is a numbering.
    pub(super) fn with_texts(mut self, texts: Option<Arc<Texts>>) -> DistinctGroups {
        self.texts = texts;
        self
    }

    /// The arguments as the sets take them: texts as their numbers.
    fn keyed<'a>(&self, values: &'a [ArrayRef]) -> Result<Cow<'a, [ArrayRef]>> {
        let Some(texts) = &self.texts else {
            return Ok(Cow::Borrowed(values));
        };
        let (numbers, added) = texts.numbers(&values[0])?;
        self.text_bytes.fetch_add(added, Ordering::Relaxed);
        Ok(Cow::Owned(vec![numbers]))
    }

    /// Room for `n` groups. Only the sets of a count turn into one hash set of (group,
    /// key) pairs: a set and a union give or take whole sets, which bitmaps hold best.
    fn resize(&mut self, n: usize) {
        self.sets.resize(n, self.role == Role::Count);
    }

    /// The same sets, giving what `role` says of them.
    pub(super) fn with_role(mut self, role: Role) -> DistinctGroups {
        self.role = role;
        self
    }

    fn insert_key(&mut self, group: usize, key: u64) {
        let more = self.sets.insert(group, key);
        self.counted(more);
    }

    /// Counts `more` keys held (fewer when negative) in the sets' bytes.
    fn counted(&mut self, more: i64) {
        let bytes = more * KEY_BYTES as i64;
        self.bytes = self.bytes.saturating_add_signed(bytes as isize);
    }

    /// Settles the pending keys ([`Sets::settle`]), before the sets are read.
    fn settle(&mut self) {
        let more = self.sets.settle();
        self.counted(more);
    }

    fn insert_tuple(&mut self, group: usize, t: Tuple) {
        if self.side.insert((group, t)) {
            *self.side_counts.entry(group).or_default() += 1;
            self.bytes += TUPLE_BYTES;
        }
    }

    fn add(&mut self, parts: &[Part], group: usize, row: usize) {
        if !self.tuple {
            if let Some(k) = parts[0].key(row) {
                self.insert_key(group, k);
            }
            return;
        }
        match tuple_key(parts, row, self.share, 1i128 << self.share) {
            Some(key) => self.insert_key(group, key),
            None => {
                let t: Tuple = parts.iter().map(|p| p.value(row)).collect();
                self.insert_tuple(group, t);
            }
        }
    }

    /// Group `group`'s count; the pending keys must be settled ([`DistinctGroups::settle`]).
    fn count(&self, group: usize) -> i64 {
        self.sets.len(group) as i64 + self.side_counts.get(&group).copied().unwrap_or(0)
    }

    /// The partial states of the groups `emit_to` takes, which leave the sets: per
    /// group the list of its keys and the list of its blobs (tuples without a key, and
    /// its bitmap where it has one).
    fn take_states(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.settle();
        let n = match emit_to {
            EmitTo::All => self.sets.groups(),
            EmitTo::First(n) => n,
        };
        let mut blobs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); n];
        for (g, t) in &self.side {
            if *g < n {
                blobs[*g].push(tuple_bytes(t));
            }
        }
        let mut keys = ListBuilder::new(UInt64Builder::new());
        self.sets.take(n, &mut keys, &mut blobs)?;
        let mut lists = ListBuilder::new(BinaryBuilder::new());
        for group in &blobs {
            for b in group {
                lists.values().append_value(b);
            }
            lists.append(true);
        }
        self.drop_side(n);
        Ok(vec![Arc::new(keys.finish()), Arc::new(lists.finish())])
    }

    /// The counts of the groups `emit_to` takes, which leave the sets.
    fn take_counts(&mut self, emit_to: EmitTo) -> Vec<i64> {
        self.settle();
        let n = match emit_to {
            EmitTo::All => self.sets.groups(),
            EmitTo::First(n) => n,
        };
        let counts = (0..n).map(|g| self.count(g)).collect();
        self.sets.forget(n);
        self.drop_side(n);
        counts
    }

    /// Forgets the tuples of the first `n` groups and renumbers the others from 0.
    fn drop_side(&mut self, n: usize) {
        if !self.side.is_empty() {
            let side = std::mem::take(&mut self.side);
            self.side = side
                .into_iter()
                .filter(|(g, _)| *g >= n)
                .map(|(g, t)| (g - n, t))
                .collect();
            let counts = std::mem::take(&mut self.side_counts);
            self.side_counts = counts
                .into_iter()
                .filter(|(g, _)| *g >= n)
                .map(|(g, c)| (g - n, c))
                .collect();
        }
        if self.sets.groups() == 0 {
            self.bytes = 0;
        }
    }

    /// Adds the keys `keys` and the blobs `blobs` (bitmaps, and tuples of
    /// [`tuple_bytes`]) to `group`.
    fn merge_state<'a>(
        &mut self,
        group: usize,
        keys: &[u64],
        blobs: impl Iterator<Item = &'a [u8]>,
    ) -> Result<()> {
        for &k in keys {
            self.insert_key(group, k);
        }
        for blob in blobs {
            match blob.split_first() {
                Some((&BITMAP, bytes)) => self.merge_bitmap(group, bytes)?,
                _ => {
                    let t = tuple_from_bytes(blob)?;
                    self.insert_tuple(group, t);
                }
            }
        }
        Ok(())
    }

    /// Adds each row's lists of keys and blobs (a partial state, or a set) to the
    /// row's group, for the rows `take` admits.
    fn merge_lists(
        &mut self,
        keys: &GenericListArray<i32>,
        blobs: &GenericListArray<i32>,
        group_indices: &[usize],
        take: impl Fn(usize) -> bool,
    ) -> Result<()> {
        let key_values = keys.values().as_primitive::<UInt64Type>().values();
        let blob_values = blobs.values().as_binary::<i32>();
        let (offsets, blob_offsets) = (keys.offsets(), blobs.offsets());
        for (row, &g) in group_indices.iter().enumerate() {
            if !take(row) {
                continue;
            }
            let (lo, hi) = (offsets[row] as usize, offsets[row + 1] as usize);
            let (blo, bhi) = (blob_offsets[row] as usize, blob_offsets[row + 1] as usize);
            let row_blobs = (blo..bhi).map(|i| blob_values.value(i));
            self.merge_state(g, &key_values[lo..hi], row_blobs)?;
        }
        Ok(())
    }

    fn merge_bitmap(&mut self, group: usize, bytes: &[u8]) -> Result<()> {
        let other = RoaringTreemap::deserialize_from(bytes)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        match &mut self.sets {
            Sets::Few(few) => {
                let set = &mut few.groups[group];
                let before = set.len();
                let mut bits = set.bits.take().unwrap_or_default();
                bits.extend(set.small.drain(..));
                bits |= other;
                set.bits = Some(bits);
                self.bytes += (set.len() - before) as usize * KEY_BYTES;
            }
            Sets::Many { .. } => {
                for k in other.iter() {
                    self.insert_key(group, k);
                }
            }
        }
        Ok(())
    }
}

/// Whether `opt_filter` admits row `row`: no filter, or true there (NULL is not).
fn admitted(opt_filter: Option<&BooleanArray>, row: usize) -> bool {
    opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

/// Sets as the partial states of a union of each row's own set: its lists, emptied
/// where `opt_filter` (or a NULL set) leaves the row out.
fn union_as_state(sets: &StructArray, opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
    let (keys, blobs) = (sets.column(0), sets.column(1));
    let all = sets.null_count() == 0 && opt_filter.is_none();
    if all {
        return Ok(vec![keys.clone(), blobs.clone()]);
    }
    let (keys, blobs) = (keys.as_list::<i32>(), blobs.as_list::<i32>());
    let mut k = ListBuilder::new(UInt64Builder::new());
    let mut b = ListBuilder::new(BinaryBuilder::new());
    for row in 0..sets.len() {
        let take = sets.is_valid(row) && admitted(opt_filter, row);
        if take {
            k.values()
                .append_slice(keys.value(row).as_primitive::<UInt64Type>().values());
            let row_blobs = blobs.value(row);
            let row_blobs = row_blobs.as_binary::<i32>();
            for i in 0..row_blobs.len() {
                b.values().append_value(row_blobs.value(i));
            }
        }
        k.append(true);
        b.append(true);
    }
    Ok(vec![Arc::new(k.finish()), Arc::new(b.finish())])
}

/// The key of row `row`'s tuple: its parts side by side, `share` bits each, when each
/// is in `0..limit` (`limit` = 2^share).
fn tuple_key(parts: &[Part], row: usize, share: u32, limit: i128) -> Option<u64> {
    let mut key: u64 = 0;
    for p in parts {
        let v = p.value(row).filter(|v| (0..limit).contains(v))?;
        key = (key << share) | v as u64;
    }
    Some(key)
}

/// A tuple's blob: the tag 0, then per part a validity byte and 16 bytes.
fn tuple_bytes(t: &Tuple) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + t.len() * 17);
    out.push(0);
    for part in t.iter() {
        out.push(part.is_some() as u8);
        out.extend(part.unwrap_or(0).to_le_bytes());
    }
    out
}

fn tuple_from_bytes(blob: &[u8]) -> Result<Tuple> {
    let bytes = blob.get(1..).unwrap_or_default();
    if bytes.len() % 17 != 0 {
        return Err(DataFusionError::Internal(
            "a distinct count's partial state is cut short".into(),
        ));
    }
    Ok(bytes
        .chunks(17)
        .map(|c| {
            let v = i128::from_le_bytes(c[1..].try_into().expect("16 bytes"));
            (c[0] == 1).then_some(v)
        })
        .collect())
}

impl GroupsAccumulator for DistinctGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        if self.role == Role::Union {
            let sets = values[0].as_struct();
            let rows = |row: usize| sets.is_valid(row) && admitted(opt_filter, row);
            let (keys, blobs) = (sets.column(0).as_list(), sets.column(1).as_list());
            return self.merge_lists(keys, blobs, group_indices, rows);
        }
        let values = self.keyed(values)?;
        let parts = values.iter().map(Part::of).collect::<Result<Vec<_>>>()?;
        for (row, &g) in group_indices.iter().enumerate() {
            if !admitted(opt_filter, row) {
                continue;
            }
            self.add(&parts, g, row);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        match self.role {
            Role::Set => {
                let columns = self.take_states(emit_to)?;
                Ok(Arc::new(StructArray::try_new(set_fields(), columns, None)?))
            }
            Role::Count | Role::Union => Ok(Arc::new(Int64Array::from(self.take_counts(emit_to)))),
        }
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.take_states(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let (keys, blobs) = (values[0].as_list(), values[1].as_list());
        self.merge_lists(keys, blobs, group_indices, |_| true)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        if self.role == Role::Union {
            return union_as_state(values[0].as_struct(), opt_filter);
        }
        let values = self.keyed(values)?;
        let parts = values.iter().map(Part::of).collect::<Result<Vec<_>>>()?;
        let rows = values.first().map_or(0, |v| v.len());
        // Each row as the state of a group of its own value (or of none).
        let mut keys = ListBuilder::with_capacity(UInt64Builder::with_capacity(rows), rows);
        let mut tuples = ListBuilder::new(BinaryBuilder::new());
        let limit = 1i128 << self.share;
        for row in 0..rows {
            if admitted(opt_filter, row) {
                match self.tuple {
                    false => {
                        if let Some(k) = parts[0].key(row) {
                            keys.values().append_value(k);
                        }
                    }
                    true => match tuple_key(&parts, row, self.share, limit) {
                        Some(k) => keys.values().append_value(k),
                        None => {
                            let t: Tuple = parts.iter().map(|p| p.value(row)).collect();
                            tuples.values().append_value(tuple_bytes(&t));
                        }
                    },
                }
            }
            keys.append(true);
            tuples.append(true);
        }
        Ok(vec![Arc::new(keys.finish()), Arc::new(tuples.finish())])
    }

    fn size(&self) -> usize {
        let groups = match &self.sets {
            Sets::Few(few) => {
                few.groups.capacity() * size_of::<Keys>()
                    + few.pending.capacity() * size_of::<(u32, u64)>()
            }
            Sets::Many { inline, counts, .. } => {
                inline.capacity() * size_of::<[u64; INLINE]>()
                    + counts.capacity() * size_of::<i64>()
            }
        };
        size_of::<Self>() + groups + self.bytes + self.text_bytes.load(Ordering::Relaxed)
    }
}

/// The count of one group, for aggregations without GROUP BY.
#[derive(Debug)]
pub(super) struct OneGroup {
    inner: DistinctGroups,
}

impl OneGroup {
    pub(super) fn new(mut inner: DistinctGroups) -> OneGroup {
        inner.resize(1);
        OneGroup { inner }
    }
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values.first().map_or(0, |v| v.len());
        self.inner.update_batch(values, &vec![0; n], None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let n = states.first().map_or(0, |v| v.len());
        self.inner.merge_batch(states, &vec![0; n], 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.inner.role {
            Role::Set => {
                let columns = self
                    .state()?
                    .iter()
                    .map(|v| v.to_array())
                    .collect::<Result<Vec<_>>>()?;
                let one = StructArray::try_new(set_fields(), columns, None)?;
                Ok(ScalarValue::Struct(Arc::new(one)))
            }
            Role::Count | Role::Union => {
                self.inner.settle();
                Ok(ScalarValue::Int64(Some(self.inner.count(0))))
            }
        }
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.settle();
        // A copy of the one group's state, which the accumulator keeps.
        let keys: Vec<u64> = match &self.inner.sets {
            Sets::Few(few) => few.groups[0].iter().collect(),
            Sets::Many {
                inline,
                seen,
                counts,
            } => {
                let k = (counts[0] as usize).min(INLINE);
                inline[0][..k]
                    .iter()
                    .copied()
                    .chain(seen.iter().map(|(_, k)| *k))
                    .collect()
            }
        };
        let mut k = ListBuilder::new(UInt64Builder::new());
        k.values().append_slice(&keys);
        k.append(true);
        let mut t = ListBuilder::new(BinaryBuilder::new());
        for (_, tuple) in &self.inner.side {
            t.values().append_value(tuple_bytes(tuple));
        }
        t.append(true);
        let (k, t) = (k.finish(), t.finish());
        Ok(vec![
            ScalarValue::List(Arc::new(k)),
            ScalarValue::List(Arc::new(t)),
        ])
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}
