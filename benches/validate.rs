//! Validation speed: 1,000 generated metric files and the shipped catalogue.
//!
//! Run with `cargo bench --bench validate`. Times are medians of repeated runs; each is
//! also given as a ratio to a baseline measured in the same run — reading the same files
//! and parsing their YAML only — since absolute times on a shared machine mean little.

use std::path::Path;
use std::time::{Duration, Instant};

use kpi::diag::SourceDb;

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// Writes `n` metric files of every shape (and the models they need) under `dir`.
fn generate(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::write(
        dir.join("models/orders.yaml"),
        "table: orders\ntime: ordered_at\njoins:\n  customers: {on: customer_id, relationship: many_to_one}\ndimensions: [category, customers.segment]\n",
    )
    .unwrap();
    std::fs::write(dir.join("models/subs.yaml"), "table: subscriptions\nactive: started_at < $at and (cancelled_at is null or cancelled_at >= $at)\n").unwrap();
    for i in 0..n {
        let body = match i % 6 {
            0 => format!(
                "description: Revenue variant {i}\nunit: currency\nsource: orders\nfilter: status = 'paid' and amount > {i}\nformula: sum(amount)\n"
            ),
            1 => format!(
                "source: orders\nfilter: [status = 'paid', category = 'c{i}']\nformula: 100 * count(*) filter (where amount > {i}) / nullif(count(*), 0)\n"
            ),
            2 => format!(
                "formula: 100 * (m{a} - prev(m{a})) / nullif(prev(m{a}), 0)\n",
                a = i - 2
            ),
            3 => format!(
                "source: orders\nwindow: {} days\nentity: customer_id\nentity_columns:\n  n: count(distinct category)\nformula: count(*) filter (where n >= 2)\n",
                i % 90 + 1
            ),
            4 => "source: subs\nat: end\nformula: sum(mrr)\n".to_string(),
            _ => format!("formula: m{} / nullif(m{}, 0)\n", i - 5, i - 4),
        };
        // Every metric is described and states its division rule, so the run is warning-free
        // and the warnings' checks run in full without reporting anything.
        let body = if body.starts_with("description:") {
            body
        } else {
            format!("description: Metric {i}\n{body}")
        };
        std::fs::write(dir.join(format!("m{i}.yaml")), body).unwrap();
    }
}

fn validate(dir: &Path) -> usize {
    let mut db = SourceDb::default();
    let (cat, diags) = kpi::validate::load_and_check(dir, &mut db).unwrap();
    assert!(
        diags.is_empty(),
        "{}",
        kpi::diag::render::human(&diags, &db, false)
    );
    cat.metrics.len()
}

fn baseline(dir: &Path) -> usize {
    // Read every file and parse its YAML: the floor any validator pays.
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                // As the loader does: `tests/` folders hold metric tests, not metrics.
                if !p.ends_with("tests") {
                    stack.push(p);
                }
            } else {
                let text = std::fs::read_to_string(&p).unwrap();
                n += usize::from(kpi::spec::yaml::parse(kpi::diag::FileId(0), &text).is_ok());
            }
        }
    }
    n
}

fn main() {
    // Warm up the aggregate-function registry (built once per process).
    let _ = kpi::sql::is_aggregate("sum");
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), 1000);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("metrics");

    let runs = 15;
    let base_gen = median(|| assert_eq!(baseline(tmp.path()), 1002), runs);
    let gen_time = median(|| assert_eq!(validate(tmp.path()), 1000), runs);
    let base_ship = median(|| assert!(baseline(&shipped) > 0), runs);
    let ship_time = median(|| assert!(validate(&shipped) >= 39), runs);

    println!("kpi validate benchmark (median of {runs} runs)");
    println!(
        "  1,000 generated metrics: {:>8.2} ms   ({:.1}x reading + YAML parsing alone: {:.2} ms)",
        gen_time.as_secs_f64() * 1e3,
        gen_time.as_secs_f64() / base_gen.as_secs_f64(),
        base_gen.as_secs_f64() * 1e3
    );
    println!(
        "  shipped catalogue:       {:>8.2} ms   ({:.1}x reading + YAML parsing alone: {:.2} ms)",
        ship_time.as_secs_f64() * 1e3,
        ship_time.as_secs_f64() / base_ship.as_secs_f64(),
        base_ship.as_secs_f64() * 1e3
    );
}
