//! Hostile definitions: each is refused with a clear error (or handled) within bounded
//! time, never a crash or a stack overflow; and no formula, filter, `--where` or model SQL
//! reads a file, runs DDL/DML/COPY or reaches the network.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::run::Fixture;

const MODEL: (&str, &str) = ("models/orders.yaml", "table: orders\ntime: ordered_at\n");
const ORDERS: &str = "order_id,ordered_at,amount,status
1,2024-01-05T00:00:00Z,10.5,paid
2,2024-01-09T00:00:00Z,20,paid
";

/// Runs kpi in `f` with `args`; fails the test past `limit` or on a crash. Returns the
/// exit code and stderr (where `run` reports) followed by stdout (where `validate` does).
fn bounded(f: &Fixture, args: &[&str], limit: Duration) -> (i32, String) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .args(args)
        .current_dir(f.dir.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let errors = drain(Box::new(child.stderr.take().unwrap()));
    let output = drain(Box::new(child.stdout.take().unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("kpi {args:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = errors.join().unwrap() + &output.join().unwrap();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("kpi {args:?} died by a signal ({status}):\n{err}"));
    assert!(
        !err.contains("panicked") && !err.contains("overflow"),
        "{err}"
    );
    (code, err)
}

fn validate(f: &Fixture) -> (i32, String) {
    bounded(
        f,
        &["validate", "--metrics", "metrics"],
        Duration::from_secs(60),
    )
}

fn run(f: &Fixture, args: &[&str]) -> (i32, String) {
    let all = [&["run", "--metrics", "metrics", "--data", "data"], args].concat();
    bounded(f, &all, Duration::from_secs(60))
}

fn one(name: &str, body: &str) -> Fixture {
    Fixture::new(&[MODEL, (name, body)], &[("orders.csv", ORDERS)])
}

#[test]
fn a_yaml_alias_bomb_is_refused() {
    let mut s = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        s.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    s.push_str("source: orders\nformula: count(*)\n");
    let (code, err) = validate(&one("bomb.yaml", &s));
    assert_eq!(code, 1);
    assert!(err.contains("alias expansion exceeded"), "{err}");
    assert!(err.contains("--> metrics/bomb.yaml:"), "{err}");
}

#[test]
fn a_50_mb_metric_file_is_refused_unread() {
    let f = one("revenue.yaml", "source: orders\nformula: sum(amount)\n");
    let big = format!(
        "source: orders\nformula: count(*)\ndescription: \"{}\"\n",
        "x".repeat(50_000_000)
    );
    std::fs::write(f.dir.path().join("metrics/big.yaml"), big).unwrap();
    let (code, err) = validate(&f);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read metrics/big.yaml: it holds 50000049 bytes, and a metric or model file holds at most 1048576"),
        "{err}"
    );
}

#[test]
fn a_formula_10000_parentheses_deep_is_refused() {
    let formula = format!("{}count(*){}", "(".repeat(10_000), ")".repeat(10_000));
    let (code, err) = validate(&one(
        "deep.yaml",
        &format!("source: orders\nformula: {formula}\n"),
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("the expression nests deeper than 64 levels of parentheses or calls"),
        "{err}"
    );
    assert!(err.contains("--> metrics/deep.yaml:2:"), "{err}");
}

#[test]
fn a_10000_term_formula_is_refused_and_a_256_deep_one_runs() {
    let terms = |n: usize| vec!["count(*)"; n].join(" + ");
    let f = one(
        "long.yaml",
        &format!("source: orders\nformula: {}\n", terms(10_000)),
    );
    let (code, err) = run(&f, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("this expression is 10000 operations deep; kpi takes at most 256"),
        "{err}"
    );
    // 255 additions are 256 deep: two orders in January, 255 × 2 + 2 = 512.
    let f = one(
        "long.yaml",
        &format!("source: orders\nformula: {}\n", terms(256)),
    );
    assert_eq!(
        f.rows(&[]),
        vec![vec!["period", "long"], vec!["2024-01-01", "512"]]
    );
}

#[test]
fn a_chain_of_derived_metrics_too_deep_to_plan_is_refused_once() {
    let mut files = vec![MODEL, ("m0.yaml", "source: orders\nformula: count(*)\n")];
    let bodies: Vec<(String, String)> = (1..1000)
        .map(|i| (format!("m{i}.yaml"), format!("formula: m{} + 1\n", i - 1)))
        .collect();
    files.extend(bodies.iter().map(|(n, b)| (n.as_str(), b.as_str())));
    let f = Fixture::new(&files, &[("orders.csv", ORDERS)]);
    let (code, err) = run(&f, &["m999"]);
    assert_eq!(code, 1);
    // Each `mN + 1` adds two levels: m128 is 256 deep, m129 the first past the bound.
    assert!(
        err.contains("`m129` with the metrics it uses inlined is 258 operations deep"),
        "{err}"
    );
    assert_eq!(err.matches("operations deep").count(), 1, "{err}");
}

#[test]
fn ten_thousand_metric_files_validate_in_bounded_time() {
    let bodies: Vec<(String, String)> = (0..10_000)
        .map(|i| {
            (
                format!("m{i}.yaml"),
                format!("description: m{i}\nsource: orders\nformula: count(*) + {i}\n"),
            )
        })
        .collect();
    let mut files = vec![MODEL];
    files.extend(bodies.iter().map(|(n, b)| (n.as_str(), b.as_str())));
    let f = Fixture::new(&files, &[("orders.csv", ORDERS)]);
    let (code, err) = bounded(
        &f,
        &["validate", "--metrics", "metrics"],
        Duration::from_secs(180),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("10000 metrics and 1 models are valid"),
        "{err}"
    );
}

#[test]
fn a_10000_character_name_is_refused() {
    let name = "n".repeat(10_000);
    let (code, err) = validate(&one(
        "long_name.yaml",
        &format!("name: {name}\nsource: orders\nformula: count(*)\n"),
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("a name of 10000 characters is too long; names have at most 63"),
        "{err}"
    );
}

#[test]
fn invalid_utf8_is_located_at_its_byte() {
    let f = one("revenue.yaml", "source: orders\nformula: sum(amount)\n");
    std::fs::write(
        f.dir.path().join("metrics/bad.yaml"),
        b"source: orders\nformula: count(\xff)\n",
    )
    .unwrap();
    let (code, err) = validate(&f);
    assert_eq!(code, 1);
    assert!(err.contains("a metric file must be UTF-8"), "{err}");
    assert!(err.contains("--> metrics/bad.yaml:2:16"), "{err}");
    assert!(err.contains("byte 0xFF is not UTF-8 here"), "{err}");
}

#[test]
fn a_symlink_loop_under_metrics_is_an_error_not_a_hang() {
    let f = one("revenue.yaml", "source: orders\nformula: sum(amount)\n");
    let m = f.dir.path().join("metrics");
    std::os::unix::fs::symlink(".", m.join("again")).unwrap();
    std::os::unix::fs::symlink("self.yaml", m.join("self.yaml")).unwrap();
    let (code, err) = validate(&f);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read metrics/self.yaml: Too many levels of symbolic links"),
        "{err}"
    );
}

/// Every construct that could reach outside the data root, with where it goes.
#[test]
fn no_sql_reads_files_runs_ddl_or_reaches_the_network() {
    let leak = "leak.csv";
    let formulas = [
        // Table functions and URL tables inside a formula or filter.
        (
            "source: orders\nformula: (select count(*) from read_csv('/etc/passwd'))\n",
            "subqueries are not supported in metric SQL",
        ),
        (
            "source: orders\nformula: count(*)\nfilter: amount > (select 1 from '/etc/passwd')\n",
            "subqueries are not supported in metric SQL",
        ),
        (
            "source: orders\nformula: count(*)\nfilter: exists (select 1 from read_parquet('http://127.0.0.1:9/x.parquet'))\n",
            "subqueries are not supported in metric SQL",
        ),
    ];
    for (body, expected) in formulas {
        let (code, err) = run(&one("x.yaml", body), &[]);
        assert_eq!(code, 1, "{body}");
        assert!(err.contains(expected), "{body}\n{err}");
    }
    let models = [
        (
            "sql: select * from '/etc/hosts'\n",
            "no table `/etc/hosts` in data root",
        ),
        (
            "sql: select * from 'http://127.0.0.1:9/x.csv'\n",
            "no table `http://127.0.0.1:9/x.csv` in data root",
        ),
        (
            "sql: COPY (select 1) TO 'leak.csv'\n",
            "a model's `sql` must be a query (SELECT …)",
        ),
        (
            "sql: CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'\n",
            "a model's `sql` must be a query (SELECT …)",
        ),
        (
            "sql: select * from orders; drop table orders\n",
            "a model's `sql` holds exactly one SELECT statement",
        ),
        (
            "sql: INSERT INTO orders VALUES (1)\n",
            "a model's `sql` must be a query (SELECT …)",
        ),
    ];
    for (model, expected) in models {
        let f = Fixture::new(
            &[
                MODEL,
                ("models/q.yaml", model),
                ("x.yaml", "source: q\ntime: ordered_at\nformula: count(*)\n"),
            ],
            &[("orders.csv", ORDERS)],
        );
        let (code, err) = run(&f, &["x"]);
        assert_ne!(code, 0, "{model}");
        assert!(err.contains(expected), "{model}\n{err}");
        assert!(!f.dir.path().join(leak).exists());
    }
    let wheres = [
        (
            "amount > (select count(*) from read_csv('/etc/passwd'))",
            "subqueries are not supported",
        ),
        (
            "amount > (select max(amount) from orders)",
            "subqueries are not supported",
        ),
        ("1 = 1); drop table orders; --", "SQL syntax error"),
    ];
    for (w, expected) in wheres {
        let f = one("x.yaml", "source: orders\nformula: count(*)\n");
        let (code, err) = run(&f, &["--where", w]);
        assert_ne!(code, 0, "{w}");
        assert!(err.contains(expected), "{w}\n{err}");
    }
}
