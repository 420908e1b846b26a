//! `kpi run --engine ballista` on a real Ballista cluster: a scheduler and two executors,
//! each its own `kpi cluster` process on loopback. The catalogue computed there must be
//! byte for byte what the local engine computes, also when an executor is killed in the
//! middle of the run.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo;
use crate::run::kpi_in;

/// A free loopback port (free when asked; the processes bind it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kpi_process(args: &[&str], log: &Path, env: &[(&str, String)]) -> Process {
    let log = std::fs::File::create(log).unwrap();
    Process(
        Command::new(env!("CARGO_BIN_EXE_kpi"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A scheduler and executors, each a `kpi cluster` process.
struct Cluster {
    scheduler: u16,
    /// Where the processes' logs are: `scheduler.log`, `executor-N.log`.
    dir: std::path::PathBuf,
    executors: Vec<Process>,
    _scheduler: Process,
}

impl Cluster {
    fn start(executors: usize, dir: &Path) -> Cluster {
        Cluster::start_with(executors, dir, &[])
    }

    /// A cluster whose processes also get the environment `env`.
    fn start_with(executors: usize, dir: &Path, env: &[(&str, String)]) -> Cluster {
        let port = free_port();
        // An executor silent for 3 s is taken for dead; they beat every second.
        let scheduler = kpi_process(
            &[
                "cluster",
                "scheduler",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--executor-timeout",
                "3",
            ],
            &dir.join("scheduler.log"),
            env,
        );
        wait_for(port, "the scheduler");
        let mut started = Vec::new();
        for i in 0..executors {
            let (flight, grpc) = (free_port(), free_port());
            let work = dir.join(format!("executor-{i}"));
            started.push(kpi_process(
                &[
                    "cluster",
                    "executor",
                    "--scheduler",
                    &format!("127.0.0.1:{port}"),
                    "--port",
                    &flight.to_string(),
                    "--grpc-port",
                    &grpc.to_string(),
                    "--concurrent-tasks",
                    "2",
                    "--heartbeat",
                    "1",
                    "--work-dir",
                    work.to_str().unwrap(),
                ],
                &dir.join(format!("executor-{i}.log")),
                env,
            ));
            wait_for(flight, "an executor");
        }
        // Registration follows the listening: give the first heartbeats time to land.
        std::thread::sleep(Duration::from_secs(2));
        Cluster {
            scheduler: port,
            dir: dir.to_path_buf(),
            executors: started,
            _scheduler: scheduler,
        }
    }

    /// The arguments that send a run's plans to this cluster, four partitions each, so
    /// that every stage has tasks for both executors.
    fn engine(&self) -> Vec<String> {
        let url = format!("df://127.0.0.1:{}", self.scheduler);
        [
            "--engine",
            "ballista",
            "--scheduler",
            &url,
            "--threads",
            "4",
        ]
        .map(String::from)
        .to_vec()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap()
    }
}

fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = kpi_in(&repo(""), args);
    assert_eq!(code, 0, "kpi {args:?} failed:\n{err}");
    out
}

/// A small generated hive lake under `dir`.
fn generated_lake(dir: &Path) -> std::path::PathBuf {
    let lake = dir.join("lake");
    run_ok(&[
        "gen",
        "--scale",
        "2",
        "--format",
        "hive",
        lake.to_str().unwrap(),
    ]);
    lake
}

#[test]
fn the_catalogue_on_a_cluster_is_the_local_engines_to_the_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = generated_lake(tmp.path());
    let lake = lake.to_str().unwrap();
    let cluster = Cluster::start(2, tmp.path());
    let engine = cluster.engine();
    let engine: Vec<&str> = engine.iter().map(String::as_str).collect();

    let local = run_ok(&["run", "--data", lake, "--format", "csv"]);
    let mut remote = vec!["run", "--data", lake, "--format", "csv"];
    remote.extend(&engine);
    let remote = run_ok(&remote);
    assert!(local.lines().count() > 20, "{local}");
    assert_eq!(remote, local);
    // Both executors took part.
    for i in 0..2 {
        let log = cluster.log(&format!("executor-{i}.log"));
        assert!(
            log.contains("Finished task"),
            "executor {i} ran no task:\n{log}"
        );
    }

    // Sliced, in a zone whose months are not UTC's, with windows over entities.
    let sliced = [
        "run",
        "revenue",
        "customer_retention_rate",
        "won_back_customers",
        "--by",
        "segment",
        "--tz",
        "America/New_York",
        "--data",
        lake,
        "--format",
        "csv",
    ];
    let local = run_ok(&sliced);
    let mut on_cluster = sliced.to_vec();
    on_cluster.extend(&engine);
    assert_eq!(run_ok(&on_cluster), local);
}

/// An executor killed one second into a run of the catalogue. kpi's scheduler cancels the
/// jobs running when it removes the executor, and the client submits them again on the
/// executor left: the run ends with the local engine's bytes, and says what happened.
#[test]
fn a_run_survives_an_executor_killed_in_the_middle() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = generated_lake(tmp.path());
    let lake = lake.to_str().unwrap();
    let expected = run_ok(&["run", "--data", lake, "--format", "csv"]);
    let mut cluster = Cluster::start(2, tmp.path());
    let out = tmp.path().join("out.csv");
    let mut run = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .args(["run", "--data", lake, "--format", "csv"])
        .args(cluster.engine())
        .args(["--out", out.to_str().unwrap(), "--plan-timeout", "60"])
        .current_dir(repo(""))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run takes several seconds here; the second executor dies one second in.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run ended before the kill"
    );
    let mut victim = cluster.executors.pop().unwrap();
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    let done = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    let log = cluster.log("scheduler.log");
    assert!(done.status.success(), "{err}\n{log}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected, "{err}");
    // The scheduler removed the executor and cancelled what was running then, rather
    // than roll its stages back; the client said which plan it submitted again.
    assert!(log.contains("Removing executor"), "{log}");
    assert!(log.contains("cancelling the job"), "{log}");
    assert!(
        err.contains("the cluster lost an executor while computing `"),
        "{err}"
    );
    assert!(
        err.contains("submitting it again (attempt 2 of 4)"),
        "{err}"
    );
}

#[test]
fn a_scheduler_that_is_not_there_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.csv");
    let url = format!("df://127.0.0.1:{}", free_port());
    let (code, _, err) = kpi_in(
        &repo(""),
        &[
            "run",
            "revenue",
            "--engine",
            "ballista",
            "--scheduler",
            &url,
        ]
        .into_iter()
        .chain(["--out", out.to_str().unwrap()])
        .collect::<Vec<_>>(),
    );
    assert_eq!(code, 2, "{err}");
    let port = url.rsplit(':').next().unwrap();
    assert!(
        err.contains(&format!(
            "cannot reach the Ballista cluster at 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(!out.exists());
}

/// A scheduler without executors holds a job for minutes: the plan timeout ends the run
/// with its error and no output file (the path a run takes when Ballista fails to
/// reschedule a lost executor's stages).
#[test]
fn a_plan_timeout_ends_a_run_the_cluster_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(0, tmp.path());
    let out = tmp.path().join("out.csv");
    let mut args = vec!["run", "revenue", "--out", out.to_str().unwrap()];
    let engine = cluster.engine();
    args.extend(engine.iter().map(String::as_str));
    args.extend(["--plan-timeout", "3"]);
    let started = Instant::now();
    let (code, _, err) = kpi_in(&repo(""), &args);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "computing `revenue` took longer than --plan-timeout 3 s; nothing was written"
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!out.exists());
}

/// A lake in S3 (a real moto server) read by the cluster: the scheduler lists it and the
/// executors read it with their own environment's credentials, and the output is the
/// local engine's on the local copy.
#[test]
fn a_cluster_reads_a_lake_in_object_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = generated_lake(tmp.path());
    let s3 = crate::objectstore::S3::start(false);
    s3.upload(&lake, "hive");
    let cluster = Cluster::start_with(2, tmp.path(), &s3.env());
    let expected = run_ok(&["run", "--data", lake.to_str().unwrap(), "--format", "csv"]);
    let mut args = vec!["run", "--data", "s3://lake/hive", "--format", "csv"];
    let engine = cluster.engine();
    args.extend(engine.iter().map(String::as_str));
    let (code, out, err) = s3.kpi(&args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, expected);
}
