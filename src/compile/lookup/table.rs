//! The lookup operator as a table the relation scans: its scan plans the source (with
//! the filters pushed into it) and each looked-up table, splits each condition into
//! the equalities the operator hashes, the conjuncts on the other table alone (pushed
//! into its scan) and the rest, and hands them to [`super::exec::LookupExec`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, DFSchema, Result as DfResult, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    BinaryExpr, EmptyRelation, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator,
    TableProviderFilterPushDown, TableType,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_plan::ExecutionPlan;

use super::exec::{Aggregate, LookupExec, Out, Side};
use super::ranked::ranked;
use super::{Planned, qualified};
use crate::compile::aggregate::Split;

/// The type of a lookup's value, over the rows `joined` of the source and the other
/// table.
pub(super) fn value_type(split: &Split, joined: &DFSchema) -> DfResult<DataType> {
    split.post_filled()?.get_type(&results(split, joined)?)
}

/// The schema of a value's aggregate results, as the value reads them.
fn results(split: &Split, joined: &DFSchema) -> DfResult<DFSchema> {
    let mut fields = Vec::with_capacity(split.names.len());
    for (a, n) in split.aggregates.iter().zip(&split.names) {
        fields.push(Field::new(n.as_str(), a.get_type(joined)?, true));
    }
    DFSchema::try_from(Schema::new(fields))
}

/// One lookup as the operator runs it.
#[derive(Debug)]
struct Lookup {
    name: String,
    other: LogicalPlan,
    /// Equalities: the source's expression, the other table's.
    pairs: Vec<(Expr, Expr)>,
    residual: Option<Expr>,
    split: Split,
}

/// The source rows with their lookup values, computed by the operator.
#[derive(Debug)]
struct Looked {
    source: LogicalPlan,
    alias: String,
    lookups: Vec<Lookup>,
    schema: SchemaRef,
}

/// The source (qualified `alias`) with each lookup's value as a column, as a scan of
/// the operator's table `name`, or `None` when a lookup does not suit it: no equality between
/// the sides, keys of different or float types, or a condition that reads another
/// lookup's value.
pub(super) fn operator(
    name: &str,
    source: &LogicalPlan,
    alias: &str,
    planned: &[Planned],
) -> DfResult<Option<LogicalPlan>> {
    let mut lookups = Vec::with_capacity(planned.len());
    let mut fields: Vec<Field> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let own = source.schema();
    for l in planned {
        let Some(Split3 {
            pairs,
            other_only,
            residual,
        }) = split_on(&l.on, own, l.other.schema())
        else {
            return Ok(None);
        };
        let reads_other_lookup = l
            .split
            .aggregates
            .iter()
            .chain(residual.iter())
            .any(|e| !within(e, own, l.other.schema()));
        if reads_other_lookup {
            return Ok(None);
        }
        for (a, b) in &pairs {
            let (ta, tb) = (a.get_type(own)?, b.get_type(l.other.schema())?);
            if ta != tb || ta.is_floating() {
                return Ok(None);
            }
        }
        let other = match conjunction(other_only) {
            Some(p) => LogicalPlanBuilder::from(l.other.clone())
                .filter(p)?
                .build()?,
            None => l.other.clone(),
        };
        let joined = own.join(l.other.schema())?;
        fields.push(Field::new(
            l.name.as_str(),
            value_type(&l.split, &joined)?,
            true,
        ));
        lookups.push(Lookup {
            name: l.name.clone(),
            other,
            pairs,
            residual: conjunction(residual),
            split: l.split.clone(),
        });
    }
    let table = Arc::new(Looked {
        source: source.clone(),
        alias: alias.to_string(),
        lookups,
        schema: Arc::new(Schema::new(fields)),
    });
    // Named after the metric: plans are compared by their tables' names (to fuse the
    // metrics that read the same rows), and another metric's lookups are other rows.
    Ok(Some(
        LogicalPlanBuilder::scan(name, provider_as_source(table), None)?
            .alias(alias)?
            .build()?,
    ))
}

/// A condition's conjuncts: equalities between the sides, those on the other table
/// alone, the rest.
struct Split3 {
    pairs: Vec<(Expr, Expr)>,
    other_only: Vec<Expr>,
    residual: Vec<Expr>,
}

fn split_on(on: &Expr, own: &DFSchema, other: &DFSchema) -> Option<Split3> {
    let mut out = Split3 {
        pairs: Vec::new(),
        other_only: Vec::new(),
        residual: Vec::new(),
    };
    let only = |e: &Expr, s: &DFSchema| {
        let refs = e.column_refs();
        !refs.is_empty() && refs.iter().all(|c| s.has_column(c))
    };
    // An equality of the two sides, the source's expression first, written either way.
    let pair = |c: &Expr| match c {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => [(left, right), (right, left)]
            .into_iter()
            .find(|(a, b)| only(a, own) && only(b, other))
            .map(|(a, b)| (a.as_ref().clone(), b.as_ref().clone())),
        _ => None,
    };
    for c in split_conjunction(on) {
        if let Some(p) = pair(c) {
            out.pairs.push(p);
        } else if only(c, other) && !c.is_volatile() {
            out.other_only.push(c.clone());
        } else {
            out.residual.push(c.clone());
        }
    }
    (!out.pairs.is_empty()).then_some(out)
}

/// Whether every column `e` reads is one of the source's or the other table's.
fn within(e: &Expr, own: &DFSchema, other: &DFSchema) -> bool {
    e.column_refs()
        .iter()
        .all(|c| own.has_column(c) || other.has_column(c))
}

/// The positions in `schema` of the columns `exprs` read.
fn positions<'a>(exprs: impl IntoIterator<Item = &'a Expr>, schema: &DFSchema) -> BTreeSet<usize> {
    exprs
        .into_iter()
        .flat_map(|e| e.column_refs())
        .filter_map(|c| schema.index_of_column(c).ok())
        .collect()
}

/// `plan` cut to the columns at `keep`.
fn projected(plan: LogicalPlan, keep: &BTreeSet<usize>) -> DfResult<LogicalPlan> {
    let columns: Vec<Expr> = keep
        .iter()
        .map(|&i| Expr::Column(Column::from(plan.schema().qualified_field(i))))
        .collect();
    LogicalPlanBuilder::from(plan).project(columns)?.build()
}

impl Lookup {
    /// What a matched pair's row and the aggregates over it read.
    fn pair_reads(&self) -> impl Iterator<Item = &Expr> {
        self.residual.iter().chain(&self.split.aggregates)
    }

    /// The operator's side of this lookup, over the collected source rows `own`.
    async fn side(
        &self,
        state: &dyn Session,
        own: &DFSchema,
    ) -> DfResult<(Side, Arc<dyn ExecutionPlan>)> {
        let theirs = self.other.schema();
        let mut needed = positions(self.pairs.iter().map(|(_, b)| b), theirs);
        needed.extend(positions(self.pair_reads(), theirs));
        let other = projected(self.other.clone(), &needed)?;
        let theirs = other.schema().as_ref();
        let source_take: Vec<usize> = positions(self.pair_reads(), own).into_iter().collect();
        let other_take: Vec<usize> = positions(self.pair_reads(), theirs).into_iter().collect();
        let qualified = |s: &DFSchema, i: usize| {
            let (q, f) = s.qualified_field(i);
            (q.cloned(), Arc::new(f.as_ref().clone()))
        };
        let fields: Vec<(Option<TableReference>, Arc<Field>)> = source_take
            .iter()
            .map(|&i| qualified(own, i))
            .chain(other_take.iter().map(|&i| qualified(theirs, i)))
            .collect();
        let joined = DFSchema::new_with_metadata(fields, HashMap::new())?;
        let physical = |e: &Expr, s: &DFSchema| physical(state, e, s);
        let residual = self
            .residual
            .as_ref()
            .map(|r| physical(r, &joined))
            .transpose()?;
        let results_schema = results(&self.split, &joined)?;
        let value = physical(&self.split.post_filled()?, &results_schema)?;
        let side = Side {
            name: self.name.clone(),
            source_keys: self
                .pairs
                .iter()
                .map(|(a, _)| physical(a, own))
                .collect::<DfResult<_>>()?,
            other_keys: self
                .pairs
                .iter()
                .map(|(_, b)| physical(b, theirs))
                .collect::<DfResult<_>>()?,
            source_take,
            other_take,
            joined: Arc::new(joined.as_arrow().clone()),
            residual,
            aggregates: aggregates(state, &self.split.aggregates, &joined)?,
            results: Arc::new(results_schema.as_arrow().clone()),
            value,
            ranked: ranked(self.residual.as_ref(), &self.split, own, theirs),
        };
        Ok((side, state.create_physical_plan(&other).await?))
    }
}

/// `e` over `schema` as a physical expression, simplified first as the optimizer would
/// (the physical planner takes some functions, such as `coalesce`, only rewritten).
fn physical(
    state: &dyn Session,
    e: &Expr,
    schema: &DFSchema,
) -> DfResult<Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .build();
    let simplifier = ExprSimplifier::new(context);
    let e = simplifier.simplify(simplifier.coerce(e.clone(), schema)?)?;
    state.create_physical_expr(e, schema)
}

/// The physical aggregates of `exprs` over `joined`, their arguments coerced as the
/// analyzer coerces them in a plan.
fn aggregates(state: &dyn Session, exprs: &[Expr], joined: &DFSchema) -> DfResult<Vec<Aggregate>> {
    let empty = LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(joined.clone()),
    });
    let plan = LogicalPlanBuilder::from(empty)
        .aggregate(Vec::<Expr>::new(), exprs.to_vec())?
        .build()?;
    let plan = TypeCoercion::new().analyze(plan, state.config_options())?;
    let LogicalPlan::Aggregate(agg) = plan else {
        return datafusion::common::internal_err!("an aggregate plan stays one");
    };
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::new(joined.clone()))
            .build(),
    );
    agg.aggr_expr
        .iter()
        .map(|e| {
            let e = simplifier.simplify(e.clone())?;
            let lowered = LoweredAggregateBuilder::new(
                &e,
                joined,
                joined.as_arrow(),
                state.execution_props(),
                &PhysicalPlanningContext::default(),
            )
            .build()?;
            Ok((lowered.aggregate, lowered.filter))
        })
        .collect()
}

#[async_trait]
impl TableProvider for Looked {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    /// Filters on the source's own columns apply to the source rows before the lookup:
    /// a row's values depend on that row alone.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let own = self.source.schema();
        Ok(filters
            .iter()
            .map(|f| {
                let on_source = f.column_refs().iter().all(|c| {
                    own.has_column_with_unqualified_name(&c.name)
                        && !self.lookups.iter().any(|l| l.name == c.name)
                });
                if on_source && !f.is_volatile() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let own = self.source.schema();
        let n_own = own.fields().len();
        let projection = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let mut needed: BTreeSet<usize> =
            projection.iter().copied().filter(|&i| i < n_own).collect();
        for l in &self.lookups {
            needed.extend(positions(l.pairs.iter().map(|(a, _)| a), own));
            needed.extend(positions(l.pair_reads(), own));
        }
        let mut source = LogicalPlanBuilder::from(self.source.clone());
        // The planner hands a scan its filters unqualified.
        let pushed = filters
            .iter()
            .map(|f| qualified(f.clone(), &self.alias, |_| true));
        if let Some(p) = conjunction(pushed) {
            source = source.filter(p)?;
        }
        let source = projected(source.build()?, &needed)?;
        let own = source.schema().as_ref();
        let mut sides = Vec::with_capacity(self.lookups.len());
        let mut others = Vec::with_capacity(self.lookups.len());
        for l in &self.lookups {
            let (side, other) = l.side(state, own).await?;
            sides.push(side);
            others.push(other);
        }
        let at: Vec<usize> = needed.iter().copied().collect();
        let outputs = projection
            .iter()
            .map(|&i| match at.iter().position(|&j| j == i) {
                Some(p) => Out::Source(p),
                None => Out::Lookup(i - n_own),
            })
            .collect();
        Ok(Arc::new(LookupExec::new(
            state.create_physical_plan(&source).await?,
            others,
            Arc::new(sides),
            Arc::new(outputs),
            Arc::new(self.schema.project(&projection)?),
            state.config().target_partitions(),
        )))
    }
}

/// The plans each lookup table that `plan` scans runs, with what `kpi explain` says of
/// each: the source rows, and for each lookup the rows it matches and how.
pub fn read_by(plan: &LogicalPlan) -> Vec<(String, LogicalPlan)> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
            && let Some(t) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<Looked>()
        {
            let table = scan.table_name.table();
            let keys: Vec<String> = t
                .lookups
                .iter()
                .flat_map(|l| l.pairs.iter().map(|(a, _)| sql(a)))
                .collect();
            found.push((
                format!(
                    "SQL of the rows `{table}` looks values up for (the filters on their own \
                     columns apply first), held in a hash table on {}",
                    keys.join(", ")
                ),
                t.source.clone(),
            ));
            for l in &t.lookups {
                let on: Vec<String> = l
                    .pairs
                    .iter()
                    .map(|(a, b)| format!("{} = {}", sql(a), sql(b)))
                    .collect();
                let rest = l
                    .residual
                    .as_ref()
                    .map_or(String::new(), |r| format!(" where {}", sql(r)));
                let value: Vec<String> = l.split.aggregates.iter().map(sql).collect();
                found.push((
                    format!(
                        "SQL of the rows lookup `{}` streams past them, matched on {}{rest}, \
                         aggregated per source row as {}",
                        l.name,
                        on.join(" and "),
                        value.join(", ")
                    ),
                    l.other.clone(),
                ));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// `e` as SQL, without its alias.
fn sql(e: &Expr) -> String {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    datafusion::sql::unparser::expr_to_sql(e).map_or_else(|_| e.to_string(), |s| s.to_string())
}
