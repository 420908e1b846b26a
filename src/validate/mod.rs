//! Validation: turns loaded specs into a checked [`Catalog`], without touching data.
//!
//! It owns every check that needs only the definitions: SQL syntax of every formula and
//! filter, aggregate versus row-level expressions, references between metrics and models
//! (with suggestions), cycles, the shape keys (`time`, `at`, `window`, `entity`) and fan-out
//! joins. Checks against a data root's schema happen when the catalogue is compiled
//! ([`crate::compile`]), which `kpi validate --data` does without running anything.

mod checks;
mod lints;

use std::collections::HashMap;
use std::ops::Range;

use datafusion::sql::sqlparser::ast;

use crate::diag::{Diagnostic, FileId, SourceDb};
use crate::spec::{At, JoinSpec, MetricSpec, ModelSpec, Spanned, Specs, Window};
use crate::sql::Sql;

pub use checks::{check, run_filter};
pub use lints::lint;

/// Index of a metric in [`Catalog::metrics`].
pub type MetricId = usize;

/// Checked definitions: every SQL snippet parsed, every reference resolved.
#[derive(Debug, Default)]
pub struct Catalog {
    pub metrics: Vec<Metric>,
    pub models: Vec<Model>,
    index: HashMap<String, MetricId>,
    model_index: HashMap<String, usize>,
}

impl Catalog {
    /// A public (top-level) metric by name.
    pub fn metric(&self, name: &str) -> Option<MetricId> {
        self.index.get(name).copied()
    }

    /// A model by name.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.model_index.get(name).map(|&i| &self.models[i])
    }

    /// Public metrics in file order.
    pub fn public_metrics(&self) -> impl Iterator<Item = MetricId> + '_ {
        (0..self.metrics.len()).filter(|&i| self.metrics[i].public)
    }

    /// Names of every public metric (for suggestions).
    pub fn metric_names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The dimensions a metric can be sliced by: its source's and its own for an aggregate
    /// metric; those all its components share for a derived one.
    pub fn dimensions(&self, id: MetricId) -> Vec<String> {
        let mut seen = vec![false; self.metrics.len()];
        self.dims_inner(id, &mut seen).unwrap_or_default()
    }

    fn dims_inner(&self, id: MetricId, seen: &mut [bool]) -> Option<Vec<String>> {
        if std::mem::replace(&mut seen[id], true) {
            return None;
        }
        let m = &self.metrics[id];
        let out = match &m.kind {
            Kind::Aggregate(a) => {
                let mut dims: Vec<String> = Vec::new();
                if let Some(model) = self.model(&a.source) {
                    dims.extend(model.dimensions.iter().map(|d| d.name.value.clone()));
                }
                for d in &a.dimensions {
                    if !dims.contains(&d.name.value) {
                        dims.push(d.name.value.clone());
                    }
                }
                dims
            }
            Kind::Derived(d) => {
                let mut acc: Option<Vec<String>> = None;
                for r in &d.refs {
                    let sub = self.dims_inner(r.target, seen).unwrap_or_default();
                    acc = Some(match acc {
                        None => sub,
                        Some(a) => a.into_iter().filter(|x| sub.contains(x)).collect(),
                    });
                }
                acc.unwrap_or_default()
            }
        };
        seen[id] = false;
        Some(out)
    }

    /// A short word for the metric's shape, as `kpi list` shows it.
    pub fn shape(&self, id: MetricId) -> &'static str {
        match &self.metrics[id].kind {
            Kind::Derived(d) if d.refs.iter().any(|r| !r.shift.is_empty()) => "derived (offset)",
            Kind::Derived(_) => "derived",
            Kind::Aggregate(a) if a.at.is_some() => "state",
            Kind::Aggregate(a) if a.entity.is_some() => "per-entity",
            Kind::Aggregate(a) if !a.lookups.is_empty() => "lookup",
            Kind::Aggregate(a) if matches!(a.window, Some(Window::ToDate(_))) => "to-date",
            Kind::Aggregate(a) if a.window.is_some() => "windowed",
            Kind::Aggregate(_) => "simple",
        }
    }
}

/// A model with its SQL parsed.
#[derive(Debug)]
pub struct Model {
    pub spec: ModelSpec,
    pub time: Option<Sql>,
    pub active: Option<Sql>,
    pub query: Option<Box<ast::Query>>,
    pub joins: Vec<Join>,
    pub dimensions: Vec<Dimension>,
}

impl Model {
    pub fn name(&self) -> &str {
        &self.spec.name.value
    }
}

/// A model's join with its condition parsed (when written as SQL).
#[derive(Debug)]
pub struct Join {
    pub spec: JoinSpec,
    pub condition: Option<Sql>,
}

/// A dimension with its expression parsed.
#[derive(Debug, Clone)]
pub struct Dimension {
    pub name: Spanned<String>,
    pub sql: Sql,
}

/// One checked metric.
#[derive(Debug)]
pub struct Metric {
    pub spec: MetricSpec,
    /// The name users see: the file's metric name, or `parent.local` for an inline helper.
    pub name: String,
    /// Top-level (selectable by name) or an inline helper under `using:`.
    pub public: bool,
    pub kind: Kind,
}

impl Metric {
    pub fn file(&self) -> FileId {
        self.spec.file
    }
}

/// What a metric computes.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per metric, built once; boxing buys nothing"
)]
pub enum Kind {
    /// Aggregates rows of a source.
    Aggregate(Aggregate),
    /// Combines other metrics.
    Derived(Derived),
}

/// A metric that aggregates the rows of a source in each period.
#[derive(Debug)]
pub struct Aggregate {
    /// A model's or a table's name.
    pub source: String,
    pub source_span: Range<usize>,
    pub formula: Sql,
    pub filters: Vec<Sql>,
    /// The row's time; from the metric, else from its model. `None` for state metrics.
    pub time: Option<Sql>,
    pub at: Option<At>,
    pub window: Option<Window>,
    pub entity: Option<Sql>,
    pub entity_columns: Vec<(String, Sql)>,
    pub lookups: Vec<Lookup>,
    /// The metric's own dimensions (its model's come through the model).
    pub dimensions: Vec<Dimension>,
}

/// A per-row value aggregated from matching rows of another relation.
#[derive(Debug)]
pub struct Lookup {
    pub name: String,
    pub from: String,
    pub from_span: Range<usize>,
    pub on: Sql,
    pub value: Sql,
}

/// A metric computed from other metrics.
#[derive(Debug)]
pub struct Derived {
    pub formula: Sql,
    pub refs: Vec<MetricRef>,
}

/// A reference from a derived formula to a metric, possibly at an earlier period.
#[derive(Debug, Clone)]
pub struct MetricRef {
    /// The name as written.
    pub name: String,
    pub target: MetricId,
    pub span: Range<usize>,
    /// The period shift (`prev(m)`, `year_ago(m)`), innermost first.
    pub shift: Vec<Shift>,
}

/// A move back in time applied to a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shift {
    /// `n` periods of the run's grain.
    Periods(u32),
    /// The same period one year earlier.
    Year,
}

/// Loads and checks a metrics directory: the specs, the catalogue and every diagnostic.
pub fn load_and_check(
    dir: &std::path::Path,
    db: &mut SourceDb,
) -> Result<(Catalog, Vec<Diagnostic>), std::io::Error> {
    let mut diags = Vec::new();
    let specs: Specs = crate::spec::load_dir(dir, db, &mut diags)?;
    let catalog = check(specs, &mut diags);
    lint(&catalog, &mut diags);
    Ok((catalog, diags))
}
