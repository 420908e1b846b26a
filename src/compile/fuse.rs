//! Fusion: the bucketed parts of a run that read the same rows (table, joins, lookups),
//! time column and dimensions compute in one aggregate over one scan — each metric's
//! aggregates under `FILTER (WHERE its filters and its range)`, the scan filtered by the
//! range they span and the OR of their filters. Each table is then read about once per
//! run instead of once per metric.

use std::collections::HashMap;

use datafusion::logical_expr::{Expr, LogicalPlanBuilder};

use super::aggregate::{aggregate_renamed, with_filter};
use super::stage::{Bucketed, Part, PartPlan, START, Scan, Stage, and_all, instant};
use super::window::period_bucket;
use super::{Diags, plan_error};
use crate::validate::MetricId;

/// Groups `parts` into scans: bucketed parts with equal keys share one; every other part
/// is a scan of its own. Returns the scans, in the order of their first part, and every
/// metric's stage pointing at its scan's table.
pub fn fuse(parts: Vec<Part>) -> Result<(Vec<Scan>, HashMap<MetricId, Stage>), Diags> {
    let mut scans = Vec::new();
    let mut stages = HashMap::new();
    let mut groups: Vec<(String, Vec<(Stage, Bucketed)>)> = Vec::new();
    for part in parts {
        match part.plan {
            PartPlan::Alone(plan) => {
                scans.push(Scan {
                    table: part.stage.table.clone(),
                    plan,
                    members: vec![part.stage.metric],
                    shape: part.stage.shape.clone(),
                });
                stages.insert(part.stage.metric, part.stage);
            }
            PartPlan::Bucketed(b) => match groups.iter_mut().find(|(k, _)| k == &b.key) {
                Some((_, members)) => members.push((part.stage, *b)),
                None => groups.push((b.key.clone(), vec![(part.stage, *b)])),
            },
        }
    }
    for (i, (_, members)) in groups.into_iter().enumerate() {
        let table = format!("__scan_{i}");
        let scan = fused_scan(&table, &members)?;
        for (mut stage, _) in members {
            stage.table = table.clone();
            stages.insert(stage.metric, stage);
        }
        scans.push(scan);
    }
    Ok((scans, stages))
}

/// One aggregate over the rows of `members`, which share their key.
fn fused_scan(table: &str, members: &[(Stage, Bucketed)]) -> Result<Scan, Diags> {
    let first = &members[0].1;
    let time = &first.time;
    let lo = members
        .iter()
        .map(|(_, b)| b.range.0)
        .min()
        .expect("a member");
    let hi = members
        .iter()
        .map(|(_, b)| b.range.1)
        .max()
        .expect("a member");
    // The hull bounds the scan; a member's own range matters only when ranges differ
    // (a metric needed a period earlier for `prev()`).
    let same_range = members.iter().all(|(_, b)| b.range == first.range);
    let condition = |b: &Bucketed| {
        let mut c = b.filters.clone();
        if !same_range {
            c.push(time.clone().gt_eq(instant(b.range.0)));
            c.push(time.clone().lt(instant(b.range.1)));
        }
        and_all(c).unwrap_or(datafusion::logical_expr::lit(true))
    };
    let per_member: Vec<Expr> = members.iter().map(|(_, b)| condition(b)).collect();
    let mut conditions: Vec<Expr> = Vec::new();
    for c in &per_member {
        if !conditions.contains(c) {
            conditions.push(c.clone());
        }
    }
    let shared = conditions.len() == 1;
    // The hull first, so that the range prunes files and row groups.
    let hull = time
        .clone()
        .gt_eq(instant(lo))
        .and(time.clone().lt(instant(hi)));
    let any = conditions
        .iter()
        .cloned()
        .reduce(Expr::or)
        .expect("non-empty");
    let filter = hull.and(any);
    let mut aggregates = Vec::new();
    for ((_, b), c) in members.iter().zip(&per_member) {
        for a in &b.aggregates {
            aggregates.push(if shared { a.clone() } else { with_filter(a, c) });
        }
    }
    let mut group = vec![period_bucket(time.clone(), first.calendar, lo, hi).alias(START)];
    group.extend(first.dims.iter().map(|(n, e)| e.clone().alias(n.as_str())));
    let plan = LogicalPlanBuilder::from(first.rows.clone())
        .filter(filter)
        .and_then(|b| aggregate_renamed(b, group, aggregates))
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    let shape = if members.len() == 1 {
        members[0].0.shape.clone()
    } else {
        format!(
            "{}, {} metrics in one aggregate over one scan",
            members[0].0.shape,
            members.len()
        )
    };
    Ok(Scan {
        table: table.to_string(),
        plan,
        members: members.iter().map(|(s, _)| s.metric).collect(),
        shape,
    })
}
