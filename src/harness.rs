//! Entry points for fuzzers and property tests. Each runs one stage of kpi on arbitrary
//! input, as far as the input lets it go, and renders whatever it reports; none may
//! panic, overflow its stack or hang. `fuzz/` drives them with libFuzzer, `tests/it/fuzz.rs`
//! with proptest and with every input a fuzzer ever found at fault.

use std::path::Path;

use crate::diag::{Diagnostic, SourceDb};
use crate::spec::{Specs, load_file};

/// Loads `files` (name, YAML text) as one metrics folder, validates them, and renders
/// every diagnostic in every format (which checks that each span lies inside its file).
pub fn definitions(files: &[(String, String)]) {
    let mut db = SourceDb::default();
    let mut specs = Specs::default();
    let mut diags = Vec::new();
    for (name, text) in files {
        let id = db.add(format!("metrics/{name}.yaml"), text.as_str());
        load_file(&db, id, &mut specs, &mut diags);
    }
    let cat = crate::validate::check(specs, &mut diags);
    render(&diags, &db);
    for id in cat.public_metrics() {
        let _ = cat.dimensions(id);
        let _ = cat.shape(id);
    }
}

/// [`definitions`] of one text holding several files, split at lines `---8<---`.
pub fn definitions_text(text: &str) {
    let files: Vec<(String, String)> = text
        .split("\n---8<---\n")
        .enumerate()
        .map(|(i, t)| (format!("f{i}"), t.to_string()))
        .collect();
    definitions(&files);
}

/// `formula` as the formula and filter of a metric over a small model.
pub fn formula(formula: &str) {
    let block = |s: &str| s.lines().map(|l| format!("  {l}\n")).collect::<String>();
    let metric = format!(
        "source: orders\nformula: |\n{}filter: |\n{}",
        block(formula),
        block(formula)
    );
    definitions(&[
        (
            "models/orders".to_string(),
            "table: orders\ntime: ordered_at\ndimensions: [status]\n".to_string(),
        ),
        ("m".to_string(), metric),
    ]);
}

/// Loads `text` as a metric test file and renders what it reports.
pub fn test_file(text: &str) {
    let mut db = SourceDb::default();
    let id = db.add("metrics/tests/t.yaml", text);
    let mut diags = Vec::new();
    let _ = crate::testing::load::load_file(&db, id, &mut diags);
    render(&diags, &db);
}

/// Reads `bytes` as table `orders` (a CSV or a Parquet file) through the source layer and
/// scans every column. Every failure must be an error value, never a panic.
pub fn source(bytes: &[u8], csv: bool) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let file = dir
        .path()
        .join(if csv { "orders.csv" } else { "orders.parquet" });
    if std::fs::write(&file, bytes).is_err() {
        return;
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(scan(dir.path()));
}

async fn scan(root: &Path) {
    let Ok(root) = crate::source::DataRoot::open(root) else {
        return;
    };
    let ctx = crate::compile::session();
    if root.register(&ctx, "orders", &[]).await.is_err() {
        return;
    }
    for q in ["select count(*) from orders", "select * from orders"] {
        if let Ok(df) = ctx.sql(q).await {
            let _ = crate::exec::collect(&ctx, df.into_unoptimized_plan(), q).await;
        }
    }
}

fn render(diags: &[Diagnostic], db: &SourceDb) {
    let _ = crate::diag::render::human(diags, db, false);
    let _ = crate::diag::render::human(diags, db, true);
    let _ = crate::diag::render::json(diags, db);
    let _ = crate::diag::render::github(diags, db);
    let _ = crate::diag::render::sarif(diags, db);
}
