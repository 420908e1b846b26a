//! Crash-safe output: a killed run leaves the previous file intact and its temporary file
//! is removed by the next run; two runs writing one `--out` end with one complete file;
//! a full disk is a clear error that leaves the previous file and no temporary one.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::run::{Fixture, kpi_in};

const METRICS: &[(&str, &str)] = &[
    ("models/orders.yaml", "table: orders\ntime: ordered_at\n"),
    (
        "revenue.yaml",
        "source: orders\nfilter: status = 'paid'\nformula: sum(amount)\n",
    ),
    ("orders_count.yaml", "source: orders\nformula: count(*)\n"),
];

/// `n` orders, one per hour from 2024-01-01: enough rows for a run to take a while.
fn orders(n: usize) -> String {
    let mut s = String::from("order_id,ordered_at,amount,status\n");
    let start = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
    for i in 0..n {
        let t = start + chrono::Duration::hours(i as i64);
        s.push_str(&format!(
            "{i},{},{}.25,{}\n",
            t.format("%Y-%m-%dT%H:%M:%SZ"),
            i % 100,
            if i % 3 == 0 { "refunded" } else { "paid" }
        ));
    }
    s
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kpi-"))
        .collect()
}

fn run_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "run",
        "--metrics",
        "metrics",
        "--data",
        "data",
        "--format",
        "csv",
        "--out",
        out,
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn a_killed_run_leaves_the_previous_file_and_the_next_run_cleans_up() {
    let f = Fixture::new(METRICS, &[("orders.csv", &orders(200_000))]);
    let out = f.dir.path().join("out.csv");
    std::fs::write(&out, "previous\n").unwrap();
    // A temporary file as a run killed mid-write leaves it: its writer's PID is dead.
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let stale = f.dir.path().join(format!(".kpi-{pid}-AbCdEf.tmp"));
    std::fs::write(&stale, "half a fi").unwrap();
    // A live writer's temporary file must be left alone.
    let live = f
        .dir
        .path()
        .join(format!(".kpi-{}-LiVeXx.tmp", std::process::id()));
    std::fs::write(&live, "being written").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .args(run_args("out.csv", &["--grain", "day"]))
        .current_dir(f.dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous\n");

    let (code, _, err) = kpi_in(f.dir.path(), &run_args("out.csv", &[]));
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("period,orders_count,revenue\n2024-01-01,744,"),
        "{text}"
    );
    let left = temporaries(f.dir.path());
    assert_eq!(
        left,
        vec![live.file_name().unwrap().to_string_lossy().into_owned()]
    );
}

#[test]
fn two_runs_writing_one_file_end_with_one_complete_file() {
    let f = Fixture::new(METRICS, &[("orders.csv", &orders(20_000))]);
    let alone = |metric: &str| {
        let (code, out, err) = kpi_in(
            f.dir.path(),
            &[
                "run",
                "--metrics",
                "metrics",
                "--data",
                "data",
                "--format",
                "csv",
                metric,
            ],
        );
        assert_eq!(code, 0, "{err}");
        out
    };
    let (a, b) = (alone("revenue"), alone("orders_count"));
    assert_ne!(a, b);
    for _ in 0..5 {
        let spawn = |metric: &str| {
            Command::new(env!("CARGO_BIN_EXE_kpi"))
                .args(run_args("out.csv", &[metric]))
                .current_dir(f.dir.path())
                .spawn()
                .unwrap()
        };
        let (mut x, mut y) = (spawn("revenue"), spawn("orders_count"));
        assert!(x.wait().unwrap().success() && y.wait().unwrap().success());
        let text = std::fs::read_to_string(f.dir.path().join("out.csv")).unwrap();
        assert!(text == a || text == b, "a mix of two runs:\n{text}");
        assert!(temporaries(f.dir.path()).is_empty());
    }
}

#[test]
fn a_full_disk_is_an_error_that_keeps_the_previous_file() {
    let f = Fixture::new(METRICS, &[("orders.csv", &orders(20_000))]);
    let kpi = env!("CARGO_BIN_EXE_kpi");
    // A 64 KiB tmpfs in a private mount namespace, holding the previous result, then
    // filled to the last byte; kpi then writes its ~2 KB result there.
    let script = format!(
        "set -e
         mkdir -p full
         mount -t tmpfs -o size=64k tmpfs full
         echo previous > full/out.csv
         head -c 1000000 /dev/zero > full/filler 2>/dev/null || true
         set +e
         {kpi} run --metrics metrics --data data --format csv --out full/out.csv 2> err.txt
         echo $? > code.txt
         cat full/out.csv > after.txt
         ls -a full > listing.txt"
    );
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .current_dir(f.dir.path())
        .env("NO_COLOR", "1")
        .status()
        .unwrap();
    assert!(status.success(), "the tmpfs could not be set up");
    let read = |n: &str| std::fs::read_to_string(f.dir.path().join(n)).unwrap();
    let err = read("err.txt");
    assert_eq!(read("code.txt").trim(), "2", "{err}");
    assert!(
        err.contains("cannot write full/out.csv: No space left on device"),
        "{err}"
    );
    assert_eq!(read("after.txt"), "previous\n");
    assert!(
        !read("listing.txt").contains(".kpi-"),
        "{}",
        read("listing.txt")
    );
}
