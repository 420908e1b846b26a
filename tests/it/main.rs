//! kpi's integration tests, in one binary so that DataFusion is linked once.

mod broken;
mod catalogue;
mod cli;
#[cfg(feature = "cluster")]
mod cluster;
mod diff;
mod engine;
mod errors;
mod explain;
mod fuzz;
mod hostile;
mod objectstore;
mod output;
mod partition;
mod postgres;
mod reference;
mod report;
mod run;
mod schema;
mod serve;
mod sources;
mod testing;
mod validate;

/// The path of a file or folder of the repository.
pub fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The path of the KPI catalogue: `../shared/kpi-catalogue.md` beside the repository (CI
/// checks a copy of `shared/` out beside the clone).
pub fn catalogue_path() -> std::path::PathBuf {
    repo("../shared/kpi-catalogue.md")
}

/// The KPI names of `../shared/kpi-catalogue.md`, in its order: the first column (`name`)
/// of every row of its definition tables. Panics when the catalogue cannot be read, so a
/// test that relies on it fails rather than checks nothing.
pub fn catalogue_names() -> Vec<String> {
    let path = catalogue_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the KPI catalogue {} must be readable: {e}", path.display()));
    names_of_catalogue(&text)
}

/// The `name` column of every table whose header row starts with `| name |`.
pub fn names_of_catalogue(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let first = line
            .trim_matches('|')
            .split('|')
            .next()
            .unwrap_or("")
            .trim();
        if first == "name" {
            in_table = true;
        } else if in_table && !first.starts_with("---") {
            let name = first
                .strip_prefix('`')
                .and_then(|n| n.strip_suffix('`'))
                .unwrap_or_else(|| panic!("a catalogue name is not in backticks: {line}"));
            names.push(name.to_string());
        }
    }
    names
}
