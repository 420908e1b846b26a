//! `kpi sql` run for real. PostgreSQL: a server (Debian's package, installed by `.ci/run`)
//! is started on a Unix socket, the sample data is loaded into it with column types
//! inferred here from the CSV text (not by kpi), and the exported SQL of every shipped KPI
//! must give `kpi run`'s values to 1e-9. DuckDB: the same through its Python package
//! (PyPI's `duckdb`, installed by `.ci/run`), reading the CSV files with its own reader.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::run::kpi_in;

/// A PostgreSQL server in a temporary folder, listening only on a socket in it.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

fn server_binaries() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect(
        "no PostgreSQL server under /usr/lib/postgresql: apt-get install postgresql \
         (.ci/run installs it)",
    )
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `program` run as `nobody` when the tests run as root: PostgreSQL refuses root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Server {
    fn start() -> Server {
        let bin = server_binaries();
        let dir = tempfile::Builder::new().prefix("pg").tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let init = as_server_user(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "kpi",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let child = as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "TimeZone=UTC",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while server.psql(&["-c", "select 1"]).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        server
    }

    /// Runs psql with `args` against the server; its CSV output, or its error text.
    fn psql(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "--csv",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "kpi",
                "-d",
                "postgres",
                "-h",
            ])
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGQUIT: the postmaster stops its children at once, and the folder can go.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL type for a CSV column, from its values: what every non-empty value
/// parses as.
fn column_type(values: &[&str]) -> &'static str {
    let present: Vec<&&str> = values.iter().filter(|v| !v.is_empty()).collect();
    if present.iter().all(|v| v.parse::<i64>().is_ok()) {
        "bigint"
    } else if present.iter().all(|v| v.parse::<f64>().is_ok()) {
        "double precision"
    } else if present
        .iter()
        .all(|v| chrono::DateTime::parse_from_rfc3339(v).is_ok())
    {
        "timestamp"
    } else if present.iter().all(|v| **v == "true" || **v == "false") {
        "boolean"
    } else {
        "text"
    }
}

/// Creates one table per CSV file of `folder` and copies the rows in.
fn load(server: &Server, folder: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let table = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        let columns: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let values: Vec<&str> = rows.iter().map(|r| r[i]).collect();
                format!("\"{name}\" {}", column_type(&values))
            })
            .collect();
        server
            .psql(&[
                "-c",
                &format!("create table {table} ({})", columns.join(", ")),
            ])
            .unwrap();
        let copy = format!(
            "\\copy {table} from '{}' with (format csv, header true)",
            file.display()
        );
        server.psql(&["-c", &copy]).unwrap();
    }
}

/// Cells equal as text, or as numbers to 1e-9 (relative to their size past 1).
fn same(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

fn compare(query: &str, expected: &str, got: &str) {
    let e: Vec<Vec<&str>> = expected.lines().map(|l| l.split(',').collect()).collect();
    let g: Vec<Vec<&str>> = got.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(e[0], g[0], "{query}: columns differ");
    assert_eq!(e.len(), g.len(), "{query}: row counts differ");
    assert!(e.len() > 12, "{query}: too few rows to mean anything");
    let mut numbers = 0;
    for (row, (er, gr)) in e.iter().zip(&g).enumerate().skip(1) {
        for (col, (a, b)) in er.iter().zip(gr).enumerate() {
            assert!(
                same(a, b),
                "{query}: row {row} column {}: kpi run {a}, PostgreSQL {b}",
                e[0][col]
            );
            numbers += usize::from(a.parse::<f64>().is_ok_and(|x| x != 0.0));
        }
    }
    assert!(
        numbers > 50,
        "{query}: only {numbers} non-zero numbers compared"
    );
}

#[test]
fn every_shipped_kpi_exported_to_postgres_gives_kpi_runs_values() {
    let server = Server::start();
    let repo = crate::repo("");
    load(&server, &repo.join("sample_data"));
    // Every metric with a `segment` dimension, as `kpi list` states them.
    let (code, list, err) = kpi_in(&repo, &["list", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let mut by_segment: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d == "segment")
        })
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(by_segment.len() >= 5, "{by_segment:?}");
    by_segment.extend([
        "--by",
        "segment",
        "--from",
        "2024-07-01",
        "--to",
        "2025-07-01",
    ]);
    let queries: [&[&str]; 4] = [
        &[],
        &by_segment,
        &[
            "revenue",
            "churn_rate",
            "--tz",
            "Europe/Madrid",
            "--grain",
            "week",
        ],
        &[
            "revenue",
            "nps",
            "mrr",
            "--compare",
            "previous_year",
            "--from",
            "2025-01-01",
        ],
    ];
    for extra in queries {
        exported_matches_run(
            "postgres",
            extra,
            &server.dir.path().join("query.sql"),
            |f| server.psql(&["-f", f.to_str().unwrap()]),
        );
    }
}

/// `kpi sql --dialect DIALECT EXTRA`, written to `file` and run by `engine`, must print
/// what `kpi run --format csv EXTRA` prints, to 1e-9.
fn exported_matches_run(
    dialect: &str,
    extra: &[&str],
    file: &Path,
    engine: impl Fn(&Path) -> Result<String, String>,
) {
    let repo = crate::repo("");
    let label = format!("kpi sql --dialect {dialect} {}", extra.join(" "));
    let (code, expected, err) = kpi_in(&repo, &[&["run", "--format", "csv"], extra].concat());
    assert_eq!(code, 0, "kpi run: {err}");
    let (code, sql, err) = kpi_in(&repo, &[&["sql", "--dialect", dialect], extra].concat());
    assert_eq!(code, 0, "{label}: {err}");
    std::fs::write(file, &sql).unwrap();
    let got = engine(file).unwrap_or_else(|e| panic!("{label}: the engine refused the SQL: {e}"));
    compare(&label, &expected, &got);
}

/// The DuckDB engine (its Python package) loading `sample_data/` with its own CSV reader,
/// running the statement in `sql_file` and printing the result as CSV.
const DUCKDB: &str = r#"
import csv, glob, os, sys
import duckdb
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.csv"))):
    name = os.path.basename(f)[:-4]
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_csv('{f}', header = true, "
                "timestampformat = '%Y-%m-%dT%H:%M:%SZ')")
res = con.execute(open(sys.argv[2]).read())
out = csv.writer(sys.stdout, lineterminator="\n")
out.writerow([d[0] for d in res.description])
for row in res.fetchall():
    out.writerow(["" if v is None else v for v in row])
"#;

#[test]
fn every_shipped_kpi_exported_to_duckdb_gives_kpi_runs_values() {
    let repo = crate::repo("");
    let dir = tempfile::tempdir().unwrap();
    // Days across New York's change to summer time (2025-03-09).
    let days = [
        "--tz",
        "America/New_York",
        "--grain",
        "day",
        "--from",
        "2025-03-01",
        "--to",
        "2025-04-15",
    ];
    for extra in [&[][..], &days] {
        exported_matches_run("duckdb", extra, &dir.path().join("query.sql"), |f| {
            let out = Command::new("python3")
                .args(["-c", DUCKDB])
                .arg(repo.join("sample_data"))
                .arg(f)
                .output()
                .unwrap();
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(format!(
                    "(pip install duckdb; .ci/run does) {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        });
    }
}

/// Dialects without `FILTER (WHERE …)` get `CASE` inside the aggregate instead; those
/// with it keep it; `--help` says which dialects no engine has run.
#[test]
fn dialects_without_aggregate_filters_get_case_and_untested_ones_say_so() {
    let repo = crate::repo("");
    let sql = |dialect: &str| {
        let (code, out, err) = kpi_in(
            &repo,
            &[
                "sql",
                "csat_rate",
                "resolution_median_hours",
                "--dialect",
                dialect,
            ],
        );
        assert_eq!(code, 0, "{dialect}: {err}");
        out
    };
    for dialect in ["mysql", "bigquery", "snowflake"] {
        let out = sql(dialect);
        assert!(!out.contains("FILTER"), "{dialect}:\n{out}");
        assert!(out.contains("count(CASE WHEN"), "{dialect}:\n{out}");
    }
    for dialect in ["postgres", "duckdb", "sqlite"] {
        assert!(sql(dialect).contains("FILTER (WHERE"), "{dialect}");
    }
    let pg = sql("postgres");
    assert!(
        pg.contains("percentile_cont(0.5) WITHIN GROUP (ORDER BY"),
        "{pg}"
    );
    assert!(!pg.contains("median("), "{pg}");
    assert!(sql("duckdb").contains("median("));
    let (code, help, _) = kpi_in(&repo, &["sql", "--help"]);
    assert_eq!(code, 0);
    for name in ["mysql", "sqlite", "bigquery", "snowflake"] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("- {name}:")))
            .unwrap_or_else(|| panic!("{name} not in --help:\n{help}"));
        assert!(line.contains("untested"), "{line}");
    }
    for name in ["postgres", "duckdb"] {
        let prefix = format!("- {name}:");
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&prefix))
            .unwrap();
        assert!(!line.contains("untested"), "{line}");
    }
}
