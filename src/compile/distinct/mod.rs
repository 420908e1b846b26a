//! Distinct counts in compressed bitmaps: `count(DISTINCT x)` of an integer column, and
//! `count(DISTINCT concat(a, '/', b))` of integer columns joined by separators, are
//! counted as sets of 64-bit keys in Roaring bitmaps (the `roaring` crate), one per
//! group, where DataFusion's `count(DISTINCT)` keeps a hash set of (group, value) pairs,
//! or of strings for the `concat`. (A count of text keeps DataFusion's plan, which
//! groups by (group, text) and then by group, and spills.) A bitmap of the customers of a
//! month is a few kilobytes in which an insert touches one word; the hash set is
//! megabytes in which each insert is a cache miss. At 10M orders the count of distinct
//! buyers per month cost more than every other aggregate of the paid orders together.
//!
//! The counts are exact, whatever the values: an integer maps to its own key, a tuple of
//! integers to one key when each part fits its share of the 64 bits, and any other tuple
//! (a part out of range, or NULL, which `concat` writes as nothing) is kept as itself
//! beside the bitmap ([`set`]).
//!
//! [`DistinctInBitmaps`] is an analyzer rule of the local session: the SQL of a metric,
//! what `kpi sql` exports and what a cluster runs keep DataFusion's `count(DISTINCT)`,
//! and the optimized plan in `kpi explain` shows the bitmap count where it is used.

mod set;
mod text;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, ScalarValue, plan_err};
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, ExprSchemable, GroupsAccumulator,
    LogicalPlan, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use set::{DistinctGroups, OneGroup};
use text::{Texts, is_text};

/// What a bitmap aggregate gives of each group's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Its size: `distinct_count(x)`, the number of distinct non-NULL values of the
    /// integer `x`, as `count(DISTINCT x)`; `distinct_tuples(a, b, …)`, the number of
    /// distinct tuples of the integers `a, b, …`, NULL being a value of its own in a
    /// tuple, as `count(DISTINCT concat(a, '/', b, …))` counts them.
    Count,
    /// The set itself (`distinct_set`, `distinct_tuple_set`), as a struct of its keys
    /// and its keyless tuples ([`set_type`]), for a [`Role::Union`] of several groups'.
    Set,
    /// `distinct_union(s)`: the size of the union of the sets `s`.
    Union,
}

/// A distinct count in bitmaps, in one of its [`Role`]s.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistinctCount {
    signature: Signature,
    /// Whether the arguments are a tuple (NULL counts) rather than one value.
    tuple: bool,
    role: Role,
    /// For a count of texts, the numbers its texts are counted as ([`text`]); two
    /// counts of texts are the same aggregate only with the same numbering.
    texts: Option<Arc<Texts>>,
}

impl DistinctCount {
    fn new(tuple: bool, role: Role) -> DistinctCount {
        DistinctCount {
            signature: Signature::user_defined(Volatility::Immutable),
            tuple,
            role,
            texts: None,
        }
    }
}

/// A call of the bitmap aggregate of `role` over `args` (one integer, a tuple of them
/// when `tuple`, or for [`Role::Union`] one set), under `filter`.
pub fn call(role: Role, tuple: bool, args: Vec<Expr>, filter: Option<Box<Expr>>) -> Expr {
    call_of(DistinctCount::new(tuple, role), args, filter)
}

/// A call of `count` over `args`, under `filter`.
fn call_of(count: DistinctCount, args: Vec<Expr>, filter: Option<Box<Expr>>) -> Expr {
    let udaf = AggregateUDF::new_from_impl(count);
    Expr::AggregateFunction(AggregateFunction::new_udf(
        Arc::new(udaf),
        args,
        false,
        filter,
        vec![],
        None,
    ))
}

/// A call of the bitmap count of the distinct non-NULL texts `arg`, under `filter`,
/// with a numbering of its own.
fn count_of_texts(arg: Expr, filter: Option<Box<Expr>>) -> Expr {
    let mut count = DistinctCount::new(false, Role::Count);
    count.texts = Some(Texts::shared());
    call_of(count, vec![arg], filter)
}

/// The fields of a set: the list of its keys and the list of its blobs (a serialized
/// bitmap of more keys, or a tuple without a key), as its partial state holds them.
pub(super) fn set_fields() -> Fields {
    Fields::from(vec![
        Field::new_list("keys", Field::new_list_field(DataType::UInt64, true), true),
        Field::new_list(
            "tuples",
            Field::new_list_field(DataType::Binary, true),
            true,
        ),
    ])
}

/// The type of a set of [`Role::Set`].
pub fn set_type() -> DataType {
    DataType::Struct(set_fields())
}

/// Whether values of type `t` are keys of the bitmaps.
fn integer(t: &DataType) -> bool {
    t.is_integer()
}

impl AggregateUDFImpl for DistinctCount {
    fn name(&self) -> &str {
        match (self.role, self.tuple) {
            (Role::Count, true) => "distinct_tuples",
            (Role::Count, false) => "distinct_count",
            (Role::Set, true) => "distinct_tuple_set",
            (Role::Set, false) => "distinct_set",
            (Role::Union, _) => "distinct_union",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let ok = match (self.role, self.tuple) {
            (Role::Union, _) => matches!(arg_types, [t] if t == &set_type()),
            _ if self.texts.is_some() => matches!(arg_types, [t] if is_text(t)),
            (_, true) => (2..=8).contains(&arg_types.len()) && arg_types.iter().all(integer),
            (_, false) => matches!(arg_types, [t] if integer(t)),
        };
        if !ok {
            return plan_err!("{} takes integers or texts, got {arg_types:?}", self.name());
        }
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.role {
            Role::Set => set_type(),
            Role::Count | Role::Union => DataType::Int64,
        })
    }

    fn is_nullable(&self) -> bool {
        // A union takes a NULL set as an empty one.
        self.role == Role::Set
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        match self.role {
            Role::Set => ScalarValue::try_from(data_type),
            Role::Count | Role::Union => Ok(ScalarValue::Int64(Some(0))),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let keys = Field::new_list_field(DataType::UInt64, true);
        let tuples = Field::new_list_field(DataType::Binary, true);
        Ok(vec![
            Arc::new(Field::new_list(
                format_state_name(args.name, "keys"),
                keys,
                true,
            )),
            Arc::new(Field::new_list(
                format_state_name(args.name, "tuples"),
                tuples,
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneGroup::new(self.groups(&args)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.groups(&args)?))
    }
}

impl DistinctCount {
    fn groups(&self, args: &AccumulatorArgs) -> Result<DistinctGroups> {
        let types_ok = match (self.role, &self.texts) {
            (Role::Union, _) => args.expr_fields.len() == 1,
            (_, Some(_)) => matches!(args.expr_fields, [f] if is_text(f.data_type())),
            (Role::Count | Role::Set, None) => {
                args.expr_fields.iter().all(|f| integer(f.data_type()))
            }
        };
        if !types_ok {
            return plan_err!("{} takes integers or texts", self.name());
        }
        Ok(DistinctGroups::new(args.expr_fields.len(), self.tuple)
            .with_role(self.role)
            .with_texts(self.texts.clone()))
    }
}

/// Rewrites the distinct counts of integers and of texts of every aggregation into
/// bitmap counts.
#[derive(Debug, Default)]
pub struct DistinctInBitmaps;

impl AnalyzerRule for DistinctInBitmaps {
    fn name(&self) -> &str {
        "kpi_distinct_in_bitmaps"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Aggregate(agg) = node else {
                return Ok(Transformed::no(node));
            };
            let schema = agg.input.schema().clone();
            let mut changed = false;
            let mut exprs = Vec::with_capacity(agg.aggr_expr.len());
            for e in &agg.aggr_expr {
                match in_bitmaps(e, &schema)? {
                    Some(new) => {
                        changed = true;
                        exprs.push(new);
                    }
                    None => exprs.push(e.clone()),
                }
            }
            if !changed {
                return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
            }
            let group = agg.group_expr.clone();
            let plan =
                datafusion::logical_expr::Aggregate::try_new(agg.input.clone(), group, exprs)?;
            Ok(Transformed::yes(LogicalPlan::Aggregate(plan)))
        })
        .map(|t| t.data)
    }
}

/// `e` as a bitmap count under its own name, when it is a distinct count of integers
/// or of texts.
fn in_bitmaps(e: &Expr, schema: &DFSchema) -> Result<Option<Expr>> {
    let (inner, name) = match e {
        Expr::Alias(a) => (a.expr.as_ref(), a.name.clone()),
        other => (other, other.schema_name().to_string()),
    };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
        return Ok(None);
    };
    let AggregateFunctionParams {
        args,
        distinct,
        filter,
        order_by,
        null_treatment,
    } = params;
    if func.name() != "count" || !distinct || !order_by.is_empty() || null_treatment.is_some() {
        return Ok(None);
    }
    let [arg] = args.as_slice() else {
        return Ok(None);
    };
    let Some((args, tuple)) = in_keys(arg, schema)? else {
        // Any other text, a `concat` that glues integers among them, by its numbers.
        if is_text(&arg.get_type(schema)?) {
            return Ok(Some(
                count_of_texts(arg.clone(), filter.clone()).alias(name),
            ));
        }
        return Ok(None);
    };
    Ok(Some(
        call(Role::Count, tuple, args, filter.clone()).alias(name),
    ))
}

/// The arguments of a bitmap count of the distinct values of `arg`, and whether they
/// are a tuple: `arg` itself when it is an integer, the integer parts of a `concat`
/// that keeps them apart ([`concat_parts`]); `None` for any other value.
pub fn in_keys(arg: &Expr, schema: &DFSchema) -> Result<Option<(Vec<Expr>, bool)>> {
    if integer(&arg.get_type(schema)?) {
        return Ok(Some((vec![arg.clone()], false)));
    }
    Ok(concat_parts(arg, schema)?.map(|parts| (parts, true)))
}

/// The integer parts of `concat(...)` when its text tells them apart: integers (cast to
/// text) separated by literals of characters that no integer's text holds (neither
/// digits nor `-`), with any literal before the first and after the last.
fn concat_parts(e: &Expr, schema: &DFSchema) -> Result<Option<Vec<Expr>>> {
    let Expr::ScalarFunction(f) = e else {
        return Ok(None);
    };
    if f.func.name() != "concat" {
        return Ok(None);
    }
    let mut parts = Vec::new();
    // The literal text since the last part.
    let mut between = String::new();
    for a in &f.args {
        if let Some(text) = string_literal(a) {
            let Some(text) = text else {
                return Ok(None);
            };
            between.push_str(text);
            continue;
        }
        // Only a cast to text is looked through: a cast to a narrower integer would
        // change the value the text shows.
        let part = match a {
            Expr::Cast(c) if text(c.field.data_type()) => c.expr.as_ref(),
            Expr::TryCast(c) if text(c.field.data_type()) => c.expr.as_ref(),
            other => other,
        };
        if !integer(&part.get_type(schema)?) {
            return Ok(None);
        }
        let splits =
            !between.is_empty() && between.chars().all(|c| !c.is_ascii_digit() && c != '-');
        if !parts.is_empty() && !splits {
            return Ok(None);
        }
        parts.push(part.clone());
        between.clear();
    }
    Ok((parts.len() >= 2 && parts.len() <= 8).then_some(parts))
}

fn text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

/// `Some(text)` of a string literal (`Some(None)` for a NULL one), `None` otherwise.
fn string_literal(e: &Expr) -> Option<Option<&str>> {
    match e {
        Expr::Literal(ScalarValue::Utf8(s), _)
        | Expr::Literal(ScalarValue::Utf8View(s), _)
        | Expr::Literal(ScalarValue::LargeUtf8(s), _) => Some(s.as_deref()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
