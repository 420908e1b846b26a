//! The metric language: the spec model and loading it from YAML files.
//!
//! This stage owns everything up to typed specs: reading files, YAML with positions
//! ([`yaml`]), the model of metric and model files ([`model`]) and structural checks
//! ([`load`]), plus the JSON Schema that lets editors make the same structural checks
//! ([`schema`]). Checking specs against each other and against data is [`crate::validate`]'s.

pub mod load;
pub mod model;
pub mod schema;
pub mod yaml;

pub use load::{load_dir, load_file};
pub use model::*;
pub use yaml::Text;
