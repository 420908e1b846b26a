//! Data roots and results in object storage, against a real S3-compatible server: moto's
//! (PyPI's `moto[server]`, installed by `.ci/run`), started on loopback; with IAM checks
//! on, a wrong key is refused as S3 refuses it. The lakes are uploaded with
//! boto3, not by kpi, and read back with it; every run on S3 must print what the same run
//! prints on the local copy, byte for byte.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo;

/// A moto server on a loopback port.
pub struct S3 {
    child: Child,
    endpoint: String,
    key: String,
    secret: String,
}

/// The boto3 client of the tests' own uploads and reads, on the server at `argv[1]`.
const CLIENT: &str = r#"
import sys, boto3
def s3(key, secret):
    return boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret)
"#;

impl S3 {
    /// A server with bucket `lake`. With `iam`, requests must be signed with a key IAM
    /// knows, as on AWS; without, any key is taken. (moto's own check of a signature
    /// rejects a valid one when the query holds a `/`, as every listing of a prefix does:
    /// getmoto/moto#5948. So the lakes are read without it, and only the refusal of an
    /// unknown key is tested with it.)
    pub fn start(iam: bool) -> S3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Command::new("moto_server");
        server
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if iam {
            // The bucket's creation is let through unsigned; no later request is.
            server.env("INITIAL_NO_AUTH_ACTION_COUNT", "1");
        }
        let child = server
            .spawn()
            .expect("moto_server not found: pip install 'moto[server]' (.ci/run installs it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let s3 = S3 {
            child,
            endpoint,
            key: "AKIAKPITEST".into(),
            secret: "secret".into(),
        };
        s3.python(
            "s3(sys.argv[2], sys.argv[3]).create_bucket(Bucket='lake')",
            &[&s3.key, &s3.secret],
        );
        s3
    }

    /// Runs a Python script with the client helper; `argv[1]` is the endpoint.
    fn python(&self, script: &str, args: &[&str]) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!("{CLIENT}{script}"))
            .arg(&self.endpoint)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Uploads every file under `dir` to `s3://lake/PREFIX/`, keyed by its relative path.
    pub fn upload(&self, dir: &Path, prefix: &str) {
        self.python(
            r#"
import os
c = s3(sys.argv[4], sys.argv[5])
root, prefix = sys.argv[2], sys.argv[3]
for d, _, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        c.upload_file(p, "lake", prefix + "/" + os.path.relpath(p, root))
"#,
            &[dir.to_str().unwrap(), prefix, &self.key, &self.secret],
        );
    }

    /// The keys under `s3://lake/PREFIX/` with their bytes' length and SHA-256, sorted.
    fn objects(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.python(
            r#"
import hashlib
c = s3(sys.argv[3], sys.argv[4])
for o in c.list_objects_v2(Bucket="lake", Prefix=sys.argv[2] + "/").get("Contents", []):
    body = c.get_object(Bucket="lake", Key=o["Key"])["Body"].read()
    print(o["Key"][len(sys.argv[2]) + 1:], hashlib.sha256(body).hexdigest())
"#,
            &[prefix, &self.key, &self.secret],
        );
        sorted_pairs(&out)
    }

    /// The environment that points kpi (and a cluster's processes) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", self.key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }

    /// `kpi ARGS` with this server's endpoint and a key (`key`, `secret`).
    fn kpi_as(&self, key: &str, secret: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_kpi"))
            .args(args)
            .current_dir(repo(""))
            .env("NO_COLOR", "1")
            .envs(self.env())
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn kpi(&self, args: &[&str]) -> (i32, String, String) {
        self.kpi_as(&self.key, &self.secret, args)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn ok(run: (i32, String, String)) -> String {
    assert_eq!(run.0, 0, "kpi failed:\n{}", run.2);
    run.1
}

/// SHA-256 and relative path of every file under `dir`, sorted, as `objects` lists them.
fn local_files(dir: &Path) -> Vec<(String, String)> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import hashlib, os, sys
for d, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(d, f)
        print(os.path.relpath(p, sys.argv[1]), hashlib.sha256(open(p, "rb").read()).hexdigest())
"#,
        )
        .arg(dir)
        .output()
        .unwrap();
    sorted_pairs(&String::from_utf8_lossy(&out.stdout))
}

/// `path hash` lines as sorted pairs.
fn sorted_pairs(lines: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = lines
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, h)| (k.to_string(), h.to_string()))
        .collect();
    found.sort();
    found
}

#[test]
fn lakes_in_s3_read_as_their_local_copies_and_results_land_there() {
    let s3 = S3::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let hive = tmp.path().join("hive");
    let generated = crate::run::kpi_in(
        &repo(""),
        &[
            "gen",
            "--scale",
            "2",
            "--format",
            "hive",
            hive.to_str().unwrap(),
        ],
    );
    assert_eq!(generated.0, 0, "{}", generated.2);
    s3.upload(&repo("sample_data"), "csv");
    s3.upload(&hive, "hive");

    // Every KPI, by month, on CSV files and on a hive-partitioned Parquet lake; and a
    // sliced run in another zone, whose periods are not UTC months.
    let sliced = [
        "revenue",
        "average_order_value",
        "customer_retention_rate",
        "won_back_customers",
        "--by",
        "segment",
        "--tz",
        "America/New_York",
    ];
    for (local, remote) in [
        (repo("sample_data"), "s3://lake/csv"),
        (hive.clone(), "s3://lake/hive"),
    ] {
        for extra in [&[][..], &sliced[..]] {
            let args = |data: &str| {
                let mut a = vec!["run", "--format", "csv", "--data", data];
                a.extend_from_slice(extra);
                a.into_iter().map(str::to_string).collect::<Vec<_>>()
            };
            let local_args = args(local.to_str().unwrap());
            let here = ok(crate::run::kpi_in(&repo(""), &strs(&local_args)));
            let there = ok(s3.kpi(&strs(&args(remote))));
            assert!(here.lines().count() > 20, "{here}");
            assert_eq!(
                there,
                here,
                "{remote} {extra:?} differs from {}",
                local.display()
            );
        }
    }

    // Schemas are read there too: the catalogue checks against the lake.
    let (code, _, err) = s3.kpi(&["validate", "--data", "s3://lake/hive"]);
    assert_eq!(code, 0, "{err}");

    // Hive folders are pruned by the run's range there as on disk: of the order files,
    // one month's is opened.
    let one_month = [
        "explain",
        "--analyze",
        "revenue",
        "--from",
        "2025-03-01",
        "--to",
        "2025-04-01",
        "--data",
        "s3://lake/hive",
    ];
    let text = ok(s3.kpi(&one_month));
    let scan = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("file scan: files "))
        .unwrap_or_else(|| panic!("no file scan in:\n{text}"));
    let (total, matched) = scan.split_once(" total → ").unwrap();
    let listed = local_files(&hive.join("orders")).len();
    assert_eq!(total.parse::<usize>().unwrap(), listed, "{scan}");
    assert!(listed > 12, "{listed} order files");
    assert!(matched.starts_with("1 matched"), "{scan}");

    // Results as one object, and as a lake of one object per period: the bytes are those
    // of the same run written to a local folder.
    let local_out = tmp.path().join("out");
    let run = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "run",
            "revenue",
            "paid_orders",
            "--data",
            "sample_data",
            "--out",
            out,
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let parquet = ["--format", "parquet", "--partition-by", "period"];
    let lake_local = local_out.join("lake");
    let file_local = local_out.join("one/run.csv");
    std::fs::create_dir_all(file_local.parent().unwrap()).unwrap();
    ok(crate::run::kpi_in(
        &repo(""),
        &strs(&run(lake_local.to_str().unwrap(), &parquet)),
    ));
    ok(crate::run::kpi_in(
        &repo(""),
        &strs(&run(file_local.to_str().unwrap(), &["--format", "csv"])),
    ));
    ok(s3.kpi(&strs(&run("s3://lake/results/lake", &parquet))));
    ok(s3.kpi(&strs(&run(
        "s3://lake/results/one/run.csv",
        &["--format", "csv"],
    ))));
    let written = s3.objects("results");
    let mut expected: Vec<(String, String)> = local_files(&lake_local)
        .into_iter()
        .map(|(k, h)| (format!("lake/{k}"), h))
        .chain(
            local_files(file_local.parent().unwrap())
                .into_iter()
                .map(|(k, h)| (format!("one/{k}"), h)),
        )
        .collect();
    expected.sort();
    assert!(expected.len() > 12, "{expected:?}");
    assert!(
        expected[0]
            .0
            .starts_with("lake/period=2024-01-01/part-0.parquet"),
        "{expected:?}"
    );
    assert_eq!(written, expected);
}

#[test]
fn a_bad_bucket_or_a_bad_key_is_named_and_nothing_is_written() {
    let s3 = S3::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.csv");
    let out = out.to_str().unwrap();

    let (code, _, err) = s3.kpi(&["run", "--data", "s3://nobucket/crm", "--out", out]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("listing s3://nobucket/crm failed: The specified bucket does not exist"),
        "{err}"
    );

    // A prefix with nothing under it is a root that does not exist.
    let (code, _, err) = s3.kpi(&["run", "--data", "s3://lake/nothing", "--out", out]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("data root s3://lake/nothing does not exist"),
        "{err}"
    );

    // Results to a bucket that does not exist: the upload's error, and no object.
    let to_nowhere = [
        "run",
        "revenue",
        "--out",
        "s3://nobucket/r.csv",
        "--format",
        "csv",
    ];
    let (code, _, err) = s3.kpi(&to_nowhere);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("writing s3://nobucket/r.csv failed"), "{err}");
    assert!(err.contains("The specified bucket does not exist"), "{err}");

    let guarded = S3::start(true);
    let (code, _, err) = guarded.kpi_as(
        "AKIANOTAKEY",
        "wrong",
        &["run", "--data", "s3://lake/crm", "--out", out],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("listing s3://lake/crm failed"), "{err}");
    assert!(err.contains("(InvalidAccessKeyId)"), "{err}");
    assert!(!Path::new(out).exists());
}
