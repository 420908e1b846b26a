//! Assembly: the output table from the stages' results.
//!
//! Every output period × every combination of `--by` values that any stage produced (the
//! domain), each base metric's stage left-joined at the period it needs (its own, or a
//! shifted one for `prev()`, `year_ago()` and `--compare`), the empty-set rule applied,
//! derived formulas computed over those columns, NaN and infinity turned into NULL.
//! Stage results are small (periods × combinations), so this is cheap whatever the data.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::source::{UTC, utc_timestamp};
use datafusion::arrow::array::{ArrayRef, Date32Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, JoinType, ScalarValue};
use datafusion::functions::math::expr_fn::{abs, isnan};
use datafusion::logical_expr::{
    Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, binary_expr, col, lit, when,
};
use datafusion::prelude::{SessionContext, coalesce};
use datafusion::sql::sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, VisitMut, VisitorMut,
};

use super::period::{Calendar, Period};
use super::rewrite::safe_division;
use super::snippet::{self, Scope};
use super::stage::{START, Stage, register_memory};
use super::{Diags, plan_error};
use crate::sql::{Sql, function_name};
use crate::validate::{Catalog, Kind, MetricId, Shift};

/// Everything the assembly needs besides the stage tables.
pub struct Layout<'a> {
    pub calendar: Calendar,
    pub periods: &'a [Period],
    pub dims: &'a [String],
    /// Output columns after `period` and the dimensions.
    pub columns: Vec<OutputColumn>,
}

/// An output column.
#[derive(Debug, Clone)]
pub enum OutputColumn {
    /// A metric's value at a shift.
    Value {
        name: String,
        metric: MetricId,
        shift: Vec<Shift>,
    },
    /// The relative change in % from `previous` to `current` (both output column names).
    Change {
        name: String,
        current: String,
        previous: String,
    },
}

fn key(shift: &[Shift]) -> String {
    shift
        .iter()
        .map(|s| match s {
            Shift::Periods(n) => format!("p{n}"),
            Shift::Year => "y".to_string(),
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// Every (base metric, shift) a list of output columns needs.
pub fn needs(cat: &Catalog, columns: &[OutputColumn]) -> Vec<(MetricId, Vec<Shift>)> {
    fn walk(cat: &Catalog, m: MetricId, shift: Vec<Shift>, out: &mut Vec<(MetricId, Vec<Shift>)>) {
        match &cat.metrics[m].kind {
            Kind::Aggregate(_) => {
                if !out.contains(&(m, shift.clone())) {
                    out.push((m, shift));
                }
            }
            Kind::Derived(d) => {
                for r in &d.refs {
                    let mut s = shift.clone();
                    s.extend(r.shift.iter().copied());
                    walk(cat, r.target, s, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for c in columns {
        if let OutputColumn::Value { metric, shift, .. } = c {
            walk(cat, *metric, shift.clone(), &mut out);
        }
    }
    out
}

/// Builds the assembly plan over the tables `Stage::table` registered in `ctx`.
pub async fn build(
    ctx: &SessionContext,
    cat: &Catalog,
    stages: &HashMap<MetricId, Stage>,
    layout: &Layout<'_>,
) -> Result<LogicalPlan, Diags> {
    let needed = needs(cat, &layout.columns);
    let mut shifts: Vec<Vec<Shift>> = vec![vec![]];
    for (_, s) in &needed {
        if !shifts.contains(s) {
            shifts.push(s.clone());
        }
    }
    // The periods, with the start of every shifted period they need.
    let cal = layout.calendar;
    let mut fields = vec![
        Field::new("period", DataType::Date32, false),
        Field::new(START, utc_timestamp(), false),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(
            layout
                .periods
                .iter()
                .map(|p| date32(p.date))
                .collect::<Vec<_>>(),
        )),
        Arc::new(
            TimestampMicrosecondArray::from(
                layout.periods.iter().map(|p| p.start).collect::<Vec<_>>(),
            )
            .with_timezone(UTC),
        ),
    ];
    for s in shifts.iter().skip(1) {
        fields.push(Field::new(
            format!("{START}_{}", key(s)),
            utc_timestamp(),
            false,
        ));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(
                layout
                    .periods
                    .iter()
                    .map(|p| cal.shift(*p, s).start)
                    .collect::<Vec<_>>(),
            )
            .with_timezone(UTC),
        ));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| plan_error(e.into()))?;
    register_memory(ctx, "__periods", batch)?;
    let scan = ctx
        .table("__periods")
        .await
        .map_err(plan_error)?
        .into_unoptimized_plan();
    let mut grid = LogicalPlanBuilder::from(scan)
        .alias("__grid")
        .map_err(plan_error)?;
    // The domain of dimension values: every combination any stage produced.
    if !layout.dims.is_empty() {
        let mut domain: Option<LogicalPlanBuilder> = None;
        let mut seen = Vec::new();
        for (m, _) in &needed {
            if seen.contains(m) {
                continue;
            }
            seen.push(*m);
            let t = ctx
                .table(stages[m].table.as_str())
                .await
                .map_err(plan_error)?
                .into_unoptimized_plan();
            let d = LogicalPlanBuilder::from(t)
                .project(layout.dims.iter().map(|n| col(n.as_str())))
                .map_err(plan_error)?;
            domain = Some(match domain {
                None => d,
                Some(acc) => acc
                    .union(d.build().map_err(plan_error)?)
                    .map_err(plan_error)?,
            });
        }
        let domain = domain
            .expect("some stage")
            .distinct()
            .and_then(|b| b.alias("__domain"))
            .and_then(|b| b.build())
            .map_err(plan_error)?;
        grid = grid
            .join_on(domain, JoinType::Inner, vec![])
            .map_err(plan_error)?;
    }
    // Each base metric at each shift, left-joined.
    let mut values: HashMap<(MetricId, Vec<Shift>), Expr> = HashMap::new();
    for (j, (m, s)) in needed.iter().enumerate() {
        let alias = format!("__v{j}");
        let t = ctx
            .table(stages[m].table.as_str())
            .await
            .map_err(plan_error)?
            .into_unoptimized_plan();
        let right = LogicalPlanBuilder::from(t)
            .alias(&alias)
            .and_then(|b| b.build())
            .map_err(plan_error)?;
        let start_col = if s.is_empty() {
            START.to_string()
        } else {
            format!("{START}_{}", key(s))
        };
        let mut on = vec![
            col(Column::new(Some("__grid"), start_col))
                .eq(col(Column::new(Some(alias.as_str()), START))),
        ];
        for d in layout.dims {
            on.push(binary_expr(
                col(Column::new(Some("__domain"), d.as_str())),
                Operator::IsNotDistinctFrom,
                col(Column::new(Some(alias.as_str()), d.as_str())),
            ));
        }
        grid = grid
            .join_on(right, JoinType::Left, on)
            .map_err(plan_error)?;
        let stage = &stages[m];
        let v = stage
            .post_filled()
            .transform_up(|x| match &x {
                Expr::Column(c) if c.relation.is_none() && stage.names.contains(&c.name) => Ok(
                    Transformed::yes(col(Column::new(Some(alias.as_str()), c.name.as_str()))),
                ),
                _ => Ok(Transformed::no(x)),
            })
            .map(|t| t.data)
            .map_err(plan_error)?;
        // `empty:` replaces the value of periods without rows.
        let v = match (
            &stage.rows,
            cat.metrics[*m].spec.empty.as_ref().map(|e| e.value),
        ) {
            (Some(r), Some(empty)) => {
                // A fused scan gives a count of 0 where the metric had no rows.
                let none = coalesce(vec![
                    col(Column::new(Some(alias.as_str()), r.as_str())),
                    lit(0i64),
                ])
                .eq(lit(0i64));
                let value = match empty {
                    crate::spec::Empty::Zero => lit(0i64),
                    crate::spec::Empty::Null => lit(ScalarValue::Null),
                };
                when(none, value).otherwise(v).map_err(plan_error)?
            }
            _ => v,
        };
        values.insert((*m, s.clone()), v);
    }
    let grid = grid.build().map_err(plan_error)?;
    let schema = grid.schema().clone();
    // Output columns.
    let mut exprs: Vec<Expr> = vec![col(Column::new(Some("__grid"), "period")).alias("period")];
    exprs.extend(
        layout
            .dims
            .iter()
            .map(|d| col(Column::new(Some("__domain"), d.as_str())).alias(d.as_str())),
    );
    let mut computed: HashMap<String, Expr> = HashMap::new();
    for c in &layout.columns {
        let (name, e) = match c {
            OutputColumn::Value {
                name,
                metric,
                shift,
            } => (
                name.clone(),
                value(ctx, cat, *metric, shift, &values, &schema)?,
            ),
            OutputColumn::Change {
                name,
                current,
                previous,
            } => {
                let (cur, prev) = (computed[current].clone(), computed[previous].clone());
                let e = lit(100f64) * (cur - prev.clone()) / prev;
                (name.clone(), safe_division(e, &schema))
            }
        };
        computed.insert(name.clone(), e.clone());
        exprs.push(finite(e, &schema).alias(name.as_str()));
    }
    let mut sort = vec![col("period").sort(true, false)];
    sort.extend(
        layout
            .dims
            .iter()
            .map(|d| col(d.as_str()).sort(true, false)),
    );
    LogicalPlanBuilder::from(grid)
        .project(exprs)
        .and_then(|b| b.sort(sort))
        .and_then(|b| b.build())
        .map_err(plan_error)
}

fn date32(d: chrono::NaiveDate) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    (d - epoch).num_days() as i32
}

/// NULL for NaN and ±infinity of a float expression.
fn finite(e: Expr, schema: &DFSchema) -> Expr {
    match e.get_type(schema) {
        Ok(DataType::Float64 | DataType::Float32) => when(
            isnan(e.clone()).or(abs(e.clone()).eq(lit(f64::INFINITY))),
            lit(ScalarValue::Float64(None)),
        )
        .otherwise(e)
        .expect("valid CASE"),
        _ => e,
    }
}

/// The expression of metric `m` at `shift` over the assembly grid.
fn value(
    ctx: &SessionContext,
    cat: &Catalog,
    m: MetricId,
    shift: &[Shift],
    base: &HashMap<(MetricId, Vec<Shift>), Expr>,
    schema: &DFSchema,
) -> Result<Expr, Diags> {
    let metric = &cat.metrics[m];
    match &metric.kind {
        Kind::Aggregate(_) => Ok(base[&(m, shift.to_vec())].clone()),
        Kind::Derived(d) => {
            // Each reference becomes a column `__r{i}`; prev()/year_ago() disappear into
            // the shift of the reference they wrap.
            let mut ast = d.formula.ast.clone();
            let mut v = Rewrite {
                shifts: Vec::new(),
                refs: Vec::new(),
                resolve: &|name: &str| d.refs.iter().find(|r| r.name == name).map(|r| r.target),
            };
            let _ = ast.visit(&mut v);
            let mut fields = Vec::new();
            let mut subs = HashMap::new();
            for (i, (target, extra)) in v.refs.iter().enumerate() {
                let mut s = shift.to_vec();
                s.extend(extra.iter().copied());
                let e = value(ctx, cat, *target, &s, base, schema)?;
                let t = e.get_type(schema).map_err(plan_error)?;
                fields.push(Field::new(format!("__r{i}"), t, true));
                subs.insert(format!("__r{i}"), e);
            }
            let local = DFSchema::try_from(Arc::new(Schema::new(fields))).map_err(plan_error)?;
            let none = Default::default();
            let sql = Sql {
                text: d.formula.text.clone(),
                ast,
            };
            let e = snippet::plan(
                &ctx.state(),
                &sql,
                &Scope {
                    schema: &local,
                    first: "",
                    first_columns: &none,
                    origins: None,
                },
            )
            .map_err(|d| vec![d])?;
            let e = safe_division(e, &local);
            e.transform_up(|x| match &x {
                Expr::Column(c) if c.relation.is_none() && subs.contains_key(&c.name) => {
                    Ok(Transformed::yes(subs[&c.name].clone()))
                }
                _ => Ok(Transformed::no(x)),
            })
            .map(|t| t.data)
            .map_err(plan_error)
        }
    }
}

/// Rewrites a derived formula's references into `__r{i}` columns, unwrapping shifts.
struct Rewrite<'a> {
    shifts: Vec<Option<Shift>>,
    refs: Vec<(MetricId, Vec<Shift>)>,
    resolve: &'a dyn Fn(&str) -> Option<MetricId>,
}

impl VisitorMut for Rewrite<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut ast::Expr) -> ControlFlow<()> {
        let mut pushed = None;
        match e {
            ast::Expr::Function(f) => {
                let name = function_name(f);
                if name == "prev" || name == "year_ago" {
                    let n = match &f.args {
                        FunctionArguments::List(l) => match l.args.get(1) {
                            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(
                                ast::Expr::Value(v),
                            ))) => v.value.to_string().parse::<u32>().unwrap_or(1),
                            _ => 1,
                        },
                        _ => 1,
                    };
                    pushed = Some(if name == "prev" {
                        Shift::Periods(n)
                    } else {
                        Shift::Year
                    });
                }
            }
            ast::Expr::Identifier(i) => {
                if let Some(t) = (self.resolve)(&i.value) {
                    let shift: Vec<Shift> = self.shifts.iter().rev().flatten().copied().collect();
                    let idx = self
                        .refs
                        .iter()
                        .position(|r| r == &(t, shift.clone()))
                        .unwrap_or_else(|| {
                            self.refs.push((t, shift));
                            self.refs.len() - 1
                        });
                    *e = ast::Expr::Identifier(Ident::new(format!("__r{idx}")));
                }
            }
            _ => {}
        }
        self.shifts.push(pushed);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut ast::Expr) -> ControlFlow<()> {
        if self.shifts.pop().flatten().is_some()
            && let ast::Expr::Function(f) = e
            && let FunctionArguments::List(l) = &f.args
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))) = l.args.first()
        {
            *e = inner.clone();
        }
        ControlFlow::Continue(())
    }
}
