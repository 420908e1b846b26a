use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, Int32Array, Int64Array, RecordBatch,
    StringArray, StringViewArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::prelude::SessionContext;

use super::Role;
use super::set::DistinctGroups;

/// A deterministic stream of numbers (xorshift), so the tests need no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Values over every regime of the sets: a few per group (short lists), thousands
/// (bitmaps), negatives, the extremes of i64 and NULLs.
fn values(n: usize, rng: &mut Rng) -> Vec<Option<i64>> {
    (0..n)
        .map(|_| match rng.next() % 10 {
            0 => None,
            1 => Some(i64::MIN + (rng.next() % 3) as i64),
            2 => Some(i64::MAX - (rng.next() % 3) as i64),
            3 => Some(-((rng.next() % 50) as i64)),
            _ => Some((rng.next() % 20_000) as i64),
        })
        .collect()
}

/// Counts of `rows` (group, value) by an independent route: a BTreeSet per group.
fn expected(rows: &[(usize, Option<i64>)], groups: usize) -> Vec<i64> {
    let mut sets = vec![BTreeSet::new(); groups];
    for (g, v) in rows {
        if let Some(v) = v {
            sets[*g].insert(*v);
        }
    }
    sets.iter().map(|s| s.len() as i64).collect()
}

#[test]
fn counts_equal_a_set_per_group_whether_updated_at_once_or_merged_from_partial_states() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let groups = 7;
    let vals = values(60_000, &mut rng);
    let rows: Vec<(usize, Option<i64>)> = vals
        .iter()
        .map(|v| ((rng.next() % groups as u64) as usize, *v))
        .collect();
    // Group 6 gets three values only: it stays a short list.
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(g, v)| {
            if g == 6 {
                (6, v.map(|v| v % 3))
            } else {
                (g, v)
            }
        })
        .collect();
    let want = expected(&rows, groups);
    let batch = |rows: &[(usize, Option<i64>)]| -> (Vec<ArrayRef>, Vec<usize>) {
        let array: Int64Array = rows.iter().map(|r| r.1).collect();
        (vec![Arc::new(array)], rows.iter().map(|r| r.0).collect())
    };

    let mut whole = DistinctGroups::new(1, false);
    let (v, g) = batch(&rows);
    whole.update_batch(&v, &g, None, groups).unwrap();
    let got = whole.evaluate(EmitTo::All).unwrap();
    assert_eq!(got.as_primitive::<Int64Type>().values().to_vec(), want);

    // Three partial aggregations of thirds of the rows, merged in the final one.
    let mut last = DistinctGroups::new(1, false);
    for part in rows.chunks(20_000) {
        let mut first = DistinctGroups::new(1, false);
        let (v, g) = batch(part);
        first.update_batch(&v, &g, None, groups).unwrap();
        let state = first.state(EmitTo::All).unwrap();
        let ids: Vec<usize> = (0..groups).collect();
        last.merge_batch(&state, &ids, groups).unwrap();
    }
    let got = last.evaluate(EmitTo::All).unwrap();
    assert_eq!(got.as_primitive::<Int64Type>().values().to_vec(), want);
}

#[test]
fn tuple_keys_past_the_pending_buffer_settle_into_bitmaps_and_count_once_each() {
    // 1.5M (a, b) rows in 15 batches: the pending keys fill the buffer (2^19) and settle
    // twice on the way, and once more when counted. `a` spreads the keys over
    // thousands of bitmaps; half the pairs repeat often.
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let groups = 3;
    let mut acc = DistinctGroups::new(2, true);
    let mut sets = vec![BTreeSet::new(); groups];
    for _ in 0..15 {
        let batch: Vec<(usize, i64, i64)> = (0..100_000)
            .map(|_| {
                let g = (rng.next() % groups as u64) as usize;
                match rng.next() % 2 {
                    0 => (
                        g,
                        (rng.next() % 5_000) as i64,
                        (rng.next() % 3_000_000) as i64,
                    ),
                    _ => (g, (rng.next() % 3) as i64, (rng.next() % 1_000) as i64),
                }
            })
            .collect();
        for &(g, a, b) in &batch {
            sets[g].insert((a, b));
        }
        let a: Int64Array = batch.iter().map(|r| r.1).collect();
        let b: Int64Array = batch.iter().map(|r| r.2).collect();
        let ids: Vec<usize> = batch.iter().map(|r| r.0).collect();
        acc.update_batch(&[Arc::new(a), Arc::new(b)], &ids, None, groups)
            .unwrap();
    }
    let want: Vec<i64> = sets.iter().map(|s| s.len() as i64).collect();
    let first = acc.evaluate(EmitTo::First(1)).unwrap();
    assert_eq!(
        first.as_primitive::<Int64Type>().values().to_vec(),
        want[..1]
    );
    let rest = acc.evaluate(EmitTo::All).unwrap();
    assert_eq!(
        rest.as_primitive::<Int64Type>().values().to_vec(),
        want[1..]
    );
}

#[test]
fn a_filter_leaves_rows_out_and_emitting_the_first_groups_keeps_the_rest() {
    let values: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 2, 3, 4, 5, 5, 6]));
    let groups = vec![0, 0, 0, 1, 1, 2, 2, 2];
    // Row 1 (value 2 of group 0) is filtered out, row 2 (also 2) is not; NULL drops.
    let filter = BooleanArray::from(vec![
        Some(true),
        Some(false),
        Some(true),
        None,
        Some(true),
        Some(true),
        Some(true),
        Some(false),
    ]);
    let mut acc = DistinctGroups::new(1, false);
    acc.update_batch(&[values], &groups, Some(&filter), 3)
        .unwrap();
    let first = acc.evaluate(EmitTo::First(2)).unwrap();
    assert_eq!(first.as_primitive::<Int64Type>().values().to_vec(), [2, 1]);
    let rest = acc.evaluate(EmitTo::All).unwrap();
    assert_eq!(rest.as_primitive::<Int64Type>().values().to_vec(), [1]);
}

#[test]
fn tuples_count_null_parts_and_values_beyond_a_keys_share_as_values_of_their_own() {
    // (a, b) pairs: a NULL part, a negative part and one past 2^32 have no key.
    let big = 1i64 << 40;
    let a: Vec<Option<i64>> = vec![
        Some(1),
        Some(1),
        Some(2),
        None,
        None,
        Some(-1),
        Some(-1),
        Some(big),
        Some(0),
        Some(4_294_967_295),
    ];
    let b: Vec<Option<i64>> = vec![
        Some(2),
        Some(2),
        Some(1),
        Some(2),
        Some(2),
        Some(2),
        None,
        Some(0),
        Some(big),
        Some(4_294_967_295),
    ];
    // Independent: the distinct (a, b) with NULL as a value.
    let want: BTreeSet<(Option<i64>, Option<i64>)> =
        a.iter().copied().zip(b.iter().copied()).collect();
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(a.clone())),
        Arc::new(Int64Array::from(b.clone())),
    ];
    let mut whole = DistinctGroups::new(2, true);
    whole.update_batch(&arrays, &[0; 10], None, 1).unwrap();
    let got = whole.evaluate(EmitTo::All).unwrap();
    assert_eq!(got.as_primitive::<Int64Type>().value(0), want.len() as i64);
    assert_eq!(want.len(), 8);

    // The same through two partial states.
    let mut last = DistinctGroups::new(2, true);
    for (lo, hi) in [(0, 5), (5, 10)] {
        let mut first = DistinctGroups::new(2, true);
        let part: Vec<ArrayRef> = arrays.iter().map(|a| a.slice(lo, hi - lo)).collect();
        first
            .update_batch(&part, &vec![0; hi - lo], None, 1)
            .unwrap();
        last.merge_batch(&first.state(EmitTo::All).unwrap(), &[0], 1)
            .unwrap();
    }
    let got = last.evaluate(EmitTo::All).unwrap();
    assert_eq!(got.as_primitive::<Int64Type>().value(0), 8);
}

/// Each interval's set, built by two partial aggregations merged as DataFusion's final
/// step merges them, then united over windows of intervals (one under a filter, one
/// empty, one read as partial states when DataFusion skips the partial step): the
/// counts equal a BTreeSet union of the rows' values. 1,500 intervals: more groups
/// than a count keeps sets for, which sets and unions keep all the same.
#[test]
fn sets_per_interval_united_over_windows_count_the_union_of_their_values() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let intervals = 1_500;
    let vals = values(80_000, &mut rng);
    let rows: Vec<(usize, Option<i64>)> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| {
            // Most values in the first intervals, so some sets become bitmaps.
            let g = match i % 4 {
                0 => (rng.next() % intervals as u64) as usize,
                _ => (rng.next() % 3) as usize,
            };
            (g, *v)
        })
        .collect();
    let mut last = DistinctGroups::new(1, false).with_role(Role::Set);
    for part in rows.chunks(40_000) {
        let mut first = DistinctGroups::new(1, false).with_role(Role::Set);
        let array: ArrayRef = Arc::new(part.iter().map(|r| r.1).collect::<Int64Array>());
        let groups: Vec<usize> = part.iter().map(|r| r.0).collect();
        first
            .update_batch(&[array], &groups, None, intervals)
            .unwrap();
        let state = first.state(EmitTo::All).unwrap();
        let ids: Vec<usize> = (0..intervals).collect();
        last.merge_batch(&state, &ids, intervals).unwrap();
    }
    let sets = last.evaluate(EmitTo::All).unwrap();
    assert_eq!(sets.data_type(), &super::set_type());
    assert_eq!(sets.len(), intervals);

    // Windows of intervals, as the join to the periods gives them: (window, interval).
    let windows: Vec<Vec<usize>> = vec![vec![0, 1, 2], vec![2, 3, 1_499], vec![7], vec![]];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (w, ivs) in windows.iter().enumerate() {
        pairs.extend(ivs.iter().map(|&iv| (w, iv)));
    }
    let take: Vec<u32> = pairs.iter().map(|p| p.1 as u32).collect();
    let taken = datafusion::arrow::compute::take(
        &sets,
        &datafusion::arrow::array::UInt32Array::from(take),
        None,
    )
    .unwrap();
    let window_of: Vec<usize> = pairs.iter().map(|p| p.0).collect();
    // Window 1 leaves interval 3 out by a filter.
    let filter: BooleanArray = pairs.iter().map(|p| Some(*p != (1, 3))).collect();
    let mut union = DistinctGroups::new(1, false).with_role(Role::Union);
    union
        .update_batch(
            std::slice::from_ref(&taken),
            &window_of,
            Some(&filter),
            windows.len(),
        )
        .unwrap();
    let got = union.evaluate(EmitTo::All).unwrap();

    let want: Vec<i64> = windows
        .iter()
        .enumerate()
        .map(|(w, ivs)| {
            let mut all: BTreeSet<i64> = BTreeSet::new();
            for (g, v) in &rows {
                if ivs.contains(g) && !(w == 1 && *g == 3) {
                    all.extend(v);
                }
            }
            all.len() as i64
        })
        .collect();
    assert!(want[0] > 1_000 && want[3] == 0, "{want:?}");
    assert_eq!(got.as_primitive::<Int64Type>().values().to_vec(), want);

    // Each row's set as a partial state of the union, merged as the final step would.
    let union = DistinctGroups::new(1, false).with_role(Role::Union);
    let states = union.convert_to_state(&[taken], Some(&filter)).unwrap();
    let mut merged = DistinctGroups::new(1, false).with_role(Role::Union);
    merged
        .merge_batch(&states, &window_of, windows.len())
        .unwrap();
    let got = merged.evaluate(EmitTo::All).unwrap();
    assert_eq!(got.as_primitive::<Int64Type>().values().to_vec(), want);
}

/// A session with the rule and one without, over the same table.
async fn sessions(batch: RecordBatch) -> (SessionContext, SessionContext) {
    let with = crate::compile::session();
    let without = SessionContext::new();
    for ctx in [&with, &without] {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
    }
    (with, without)
}

async fn rows(ctx: &SessionContext, sql: &str) -> (Vec<RecordBatch>, String) {
    let df = ctx.sql(sql).await.unwrap();
    let plan = df
        .clone()
        .into_optimized_plan()
        .unwrap()
        .display_indent()
        .to_string();
    (df.collect().await.unwrap(), plan)
}

#[tokio::test]
async fn the_rule_gives_datafusions_own_distinct_counts_of_integers_and_texts() {
    let mut rng = Rng(42);
    let n = 30_000;
    let g: Int32Array = (0..n).map(|_| Some((rng.next() % 5) as i32)).collect();
    let a: Int64Array = values(n, &mut rng).into_iter().collect();
    let b: UInt64Array = (0..n)
        .map(|_| match rng.next() % 7 {
            0 => None,
            1 => Some(u64::MAX - rng.next() % 2),
            _ => Some(rng.next() % 300),
        })
        .collect();
    let kind: StringArray = (0..n)
        .map(|_| {
            Some(if rng.next().is_multiple_of(3) {
                "x"
            } else {
                "y"
            })
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int32, false),
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::UInt64, true),
        Field::new("kind", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![Arc::new(g), Arc::new(a), Arc::new(b), Arc::new(kind)];
    let batch = RecordBatch::try_new(schema, columns).unwrap();
    let (with, without) = sessions(batch).await;
    let sql = "SELECT g, count(DISTINCT a) AS da, count(DISTINCT b) FILTER (WHERE kind = 'x') AS db, \
               count(DISTINCT concat(a, '/', b)) AS pairs, \
               count(DISTINCT concat('<', b, ', ', a, '>')) FILTER (WHERE kind = 'y') AS tagged, \
               count(DISTINCT concat(a, b)) AS glued, count(DISTINCT concat(a, '1', b)) AS digit, \
               count(DISTINCT kind) AS kinds, count(DISTINCT kind) FILTER (WHERE a > 0) AS pos \
               FROM t GROUP BY g ORDER BY g";
    let (got, plan) = rows(&with, sql).await;
    let (want, reference) = rows(&without, sql).await;
    assert_eq!(got, want);
    // Both separated pairs are counted as tuples of integers; the integers, the texts,
    // the glued pair and the pair split by a digit (texts whose integers cannot be told
    // apart) as values.
    assert_eq!(plan.matches("distinct_count(").count(), 6, "{plan}");
    assert!(plan.contains("distinct_count(t.kind)"), "{plan}");
    assert!(plan.contains("distinct_count(concat("), "{plan}");
    assert_eq!(plan.matches("distinct_tuples(").count(), 2, "{plan}");
    let aggregate = plan
        .lines()
        .find(|l| l.trim_start().starts_with("Aggregate:"))
        .unwrap();
    let kept = aggregate.matches("count(DISTINCT").count()
        - aggregate.matches("AS count(DISTINCT").count();
    assert_eq!(kept, 0, "{aggregate}");
    assert!(!reference.contains("distinct_"), "{reference}");
    // And without GROUP BY, where DataFusion uses a plain accumulator.
    let total =
        "SELECT count(DISTINCT a), count(DISTINCT concat(a, '/', b)), count(DISTINCT kind) FROM t";
    assert_eq!(rows(&with, total).await.0, rows(&without, total).await.0);
}

#[tokio::test]
async fn texts_per_thousands_of_groups_count_as_datafusion_counts_them_in_every_type() {
    let mut rng = Rng(7);
    let n = 40_000;
    // 6,000 groups: most get a text or two, held in their own slots; a group below 40
    // gets many rows, and more than two texts, the rest of them kept in the hash set.
    let g: Int64Array = (0..n)
        .map(|_| {
            Some(match rng.next() % 4 {
                0 => (rng.next() % 40) as i64,
                _ => (rng.next() % 6_000) as i64,
            })
        })
        .collect();
    let pool = ["", "a", "b", "ab", "software", "hardware", "é", "a\u{0}b"];
    let text = |rng: &mut Rng| match rng.next() % 9 {
        8 => None,
        i => Some(pool[i as usize]),
    };
    let plain: StringArray = (0..n).map(|_| text(&mut rng)).collect();
    let view = StringViewArray::from_iter((0..n).map(|_| text(&mut rng)));
    let dict: DictionaryArray<Int32Type> = (0..n).map(|_| text(&mut rng)).collect();
    let keep: BooleanArray = (0..n)
        .map(|_| Some(!rng.next().is_multiple_of(3)))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int64, false),
        Field::new("plain", DataType::Utf8, true),
        Field::new("view", DataType::Utf8View, true),
        Field::new("dict", dict.data_type().clone(), true),
        Field::new("keep", DataType::Boolean, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(g),
        Arc::new(plain),
        Arc::new(view),
        Arc::new(dict),
        Arc::new(keep),
    ];
    let batch = RecordBatch::try_new(schema, columns).unwrap();
    // Two partitions of many batches: partial counts per partition, merged in the final.
    let with = crate::compile::session();
    let without = SessionContext::new();
    let parts: Vec<Vec<RecordBatch>> = (0..2)
        .map(|p| {
            (0..10)
                .map(|i| batch.slice((p * 10 + i) * 2_000, 2_000))
                .collect()
        })
        .collect();
    for ctx in [&with, &without] {
        let table = MemTable::try_new(batch.schema(), parts.clone()).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
    }
    let sql = "SELECT g, count(DISTINCT plain) AS p, count(DISTINCT view) AS v, \
               count(DISTINCT dict) AS d, count(DISTINCT plain) FILTER (WHERE keep) AS k \
               FROM t GROUP BY g ORDER BY g";
    let (got, plan) = rows(&with, sql).await;
    let (want, _) = rows(&without, sql).await;
    assert_eq!(plan.matches("distinct_count(").count(), 4, "{plan}");
    assert_eq!(got, want);
    let counts = got
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec());
    assert!(counts.clone().any(|c| c > 2) && counts.clone().any(|c| c == 1));
    let total = "SELECT count(DISTINCT plain), count(DISTINCT dict) FROM t";
    assert_eq!(rows(&with, total).await.0, rows(&without, total).await.0);
}
