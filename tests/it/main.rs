//! kpi's integration tests, in one binary so that DataFusion is linked once.

mod broken;
mod catalogue;
mod cli;
mod errors;
mod explain;
mod fuzz;
mod run;

/// The path of a file or folder of the repository.
pub fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}
