//! `kpi serve` as a real process on loopback: its answers are `kpi run`'s, bad input is a
//! 400 with kpi's diagnostics, it reloads changed definitions and keeps serving the last
//! valid ones, and 1,000 mixed requests 16 at a time leave it answering with steady memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::run::kpi_in;

/// A `kpi serve` process on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(metrics: &Path, data: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kpi"))
            .args(["serve", "--addr", "127.0.0.1:0", "--metrics"])
            .arg(metrics)
            .arg("--data")
            .arg(data)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("kpi serve: listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        // Keep draining stderr so that the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Server { child, addr }
    }

    /// `GET path` with `accept`: status and body.
    fn get(&self, path: &str, accept: &str) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let mut body = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = unchunk(&body);
        }
        (status, body)
    }

    fn text(&self, path: &str) -> (u16, String) {
        let (s, b) = self.get(path, "*/*");
        (s, String::from_utf8(b).unwrap())
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + n]);
        b = &b[end + 2 + n + 2..];
    }
}

/// `kpi run ARGS --format FORMAT` on the shipped metrics and sample data.
fn run(args: &[&str], format: &str) -> String {
    let metrics = crate::repo("metrics");
    let data = crate::repo("sample_data");
    let all = [
        args,
        &[
            "--metrics",
            metrics.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--format",
            format,
        ],
    ]
    .concat();
    let (code, out, err) = kpi_in(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &[&["run"][..], &all].concat(),
    );
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn the_api_answers_as_kpi_run_and_bad_input_is_a_400_with_diagnostics() {
    let server = Server::start(&crate::repo("metrics"), &crate::repo("sample_data"));
    let (code, body) = server.text("/api/metrics");
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 39);
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "revenue")
            .unwrap()["dimensions"],
        serde_json::json!(["category", "segment", "region"])
    );

    let q = "metrics=revenue,average_order_value&from=2024-01-01&to=2025-01-01&by=segment&compare=previous_period";
    let args = [
        "revenue",
        "average_order_value",
        "--from",
        "2024-01-01",
        "--to",
        "2025-01-01",
        "--by",
        "segment",
        "--compare",
        "previous_period",
    ];
    let (code, json) = server.text(&format!("/api/run?{q}"));
    assert_eq!(code, 200);
    assert_eq!(json, run(&args, "json"));
    let (code, csv) = server.get(&format!("/api/run?{q}"), "text/csv");
    assert_eq!(code, 200);
    assert_eq!(String::from_utf8(csv).unwrap(), run(&args, "csv"));
    let (code, arrow) = server.text(&format!("/api/run?{q}&format=csv"));
    assert_eq!((code, arrow), (200, run(&args, "csv")));
    let (code, ipc) = server.get(&format!("/api/run?{q}&format=arrow"), "*/*");
    assert_eq!(code, 200);
    let reader =
        datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
            .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, run(&args, "csv").lines().count() - 1);

    let (code, body) = server.text("/api/run?metrics=revenue&where=nosuch%20%3D%201");
    assert_eq!(code, 400);
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["error"]["message"], "unknown column `nosuch`");
    assert_eq!(e["error"]["diagnostics"][0]["code"], "KPI060");
    let (code, body) = server.text("/api/run?metrics=revenue&grain=fortnight");
    assert_eq!(code, 400);
    assert!(body.contains("grain `fortnight` is not one of"), "{body}");
    let (code, body) = server.text("/api/run?metrics=nosuch");
    assert_eq!(code, 400, "{body}");

    let (code, html) = server.text("/?metrics=revenue,paid_orders&from=2024-01-01&to=2024-07-01");
    assert_eq!(code, 200);
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 2);
    assert_eq!(html.matches("<circle class=\"point\"").count(), 12);
}

#[test]
fn changed_definitions_are_reloaded_and_an_invalid_change_keeps_the_last_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics");
    std::fs::create_dir_all(metrics.join("models")).unwrap();
    std::fs::write(
        metrics.join("models/orders.yaml"),
        "table: orders\ntime: ordered_at\n",
    )
    .unwrap();
    std::fs::write(
        metrics.join("n.yaml"),
        "source: orders\nformula: count(*)\n",
    )
    .unwrap();
    let server = Server::start(&metrics, &crate::repo("sample_data"));
    let names = |s: &Server| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&s.text("/api/metrics").1).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&server), ["n"]);
    let wait_for = |what: &dyn Fn() -> bool| {
        for _ in 0..100 {
            if what() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("no reload within 10 s");
    };
    std::fs::write(
        metrics.join("m.yaml"),
        "source: orders\nformula: sum(amount)\n",
    )
    .unwrap();
    wait_for(&|| names(&server) == ["m", "n"]);
    // A broken change: the last valid catalogue keeps answering, and status says why.
    std::fs::write(
        metrics.join("m.yaml"),
        "source: orders\nformula: sum(amout\n",
    )
    .unwrap();
    wait_for(&|| server.text("/api/status").1.contains("SQL syntax error"));
    assert_eq!(names(&server), ["m", "n"]);
    let (code, _) = server.text("/api/run?metrics=m&from=2024-01-01&to=2024-02-01");
    assert_eq!(code, 200);
}

#[test]
fn a_thousand_mixed_requests_sixteen_at_a_time_leave_it_answering_with_steady_memory() {
    let server = std::sync::Arc::new(Server::start(
        &crate::repo("metrics"),
        &crate::repo("sample_data"),
    ));
    let valid = "/api/run?metrics=revenue,paid_orders,nps&from=2024-01-01&to=2025-01-01";
    let expected = run(
        &[
            "revenue",
            "paid_orders",
            "nps",
            "--from",
            "2024-01-01",
            "--to",
            "2025-01-01",
        ],
        "json",
    );
    let invalid = [
        "/api/run?metrics=revenue&grain=fortnight",
        "/api/run?metrics=nosuch",
        "/api/run?metrics=revenue&where=amount%20%3E%20(select%201)",
        "/api/run?metrics=revenue&from=yesterday",
    ];
    let round = |n: usize| {
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let server = server.clone();
                let expected = expected.clone();
                std::thread::spawn(move || {
                    for i in (t..n).step_by(16) {
                        if i % 2 == 0 {
                            let (code, body) = server.text(valid);
                            assert_eq!(code, 200);
                            assert!(body == expected, "a valid answer differs from kpi run");
                        } else {
                            let (code, body) = server.text(invalid[(i / 2) % invalid.len()]);
                            assert_eq!(code, 400, "{body}");
                            assert!(body.starts_with("{\"error\":"), "{body}");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    round(200);
    let warm = server.rss_kib();
    round(1000);
    let after = server.rss_kib();
    assert!(
        after < warm + warm / 2 + 20_000,
        "memory grew from {warm} KiB to {after} KiB"
    );
    assert_eq!(server.text("/api/metrics").0, 200);
}

#[test]
fn the_served_page_loads_in_chromium_with_a_line_per_series() {
    let server = Server::start(&crate::repo("metrics"), &crate::repo("sample_data"));
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "http://{}/?metrics=average_order_value,leads&by=region&from=2024-01-01&to=2024-07-01",
        server.addr
    );
    let page = crate::report::dom_of(dir.path(), &url);
    assert_eq!(
        crate::report::attributes(&page, "svg", "data-metric"),
        ["average_order_value", "leads"]
    );
    // One line per region that `kpi run` shows, in each chart.
    let csv = run(
        &[
            "average_order_value",
            "leads",
            "--by",
            "region",
            "--from",
            "2024-01-01",
            "--to",
            "2024-07-01",
        ],
        "csv",
    );
    let mut regions: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .map(|r| {
            if r.is_empty() {
                "(none)".to_string()
            } else {
                r
            }
        })
        .collect();
    regions.sort();
    regions.dedup();
    let series = crate::report::attributes(&page, "path", "data-series");
    assert_eq!(series.len(), 2 * regions.len());
    let mut first: Vec<String> = series[..regions.len()].to_vec();
    first.sort();
    assert_eq!(first, regions);
}
