//! `kpi run --engine ballista` on a real Ballista cluster: a scheduler and two executors,
//! each its own `kpi cluster` process on loopback. The catalogue computed there must be
//! byte for byte what the local engine computes; an executor killed in the middle of a
//! run must not change the result: the scheduler runs the dead one's tasks again on the
//! other (Ballista's static planner; its adaptive one waits for ever, see
//! `src/cluster/mod.rs`).

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

fn kpi_process(args: &[&str], log: &Path) -> Process {
    let log = std::fs::File::create(log).unwrap();
    Process(
        Command::new(env!("CARGO_BIN_EXE_kpi"))
            .args(args)
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

#[test]
fn the_catalogue_on_a_cluster_is_the_local_engines_to_the_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_ok(&[
        "gen",
        "--scale",
        "2",
        "--format",
        "hive",
        lake.to_str().unwrap(),
    ]);
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

#[test]
fn a_run_survives_an_executor_killed_in_the_middle() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_ok(&[
        "gen",
        "--scale",
        "2",
        "--format",
        "hive",
        lake.to_str().unwrap(),
    ]);
    let lake = lake.to_str().unwrap();
    let expected = run_ok(&["run", "--data", lake, "--format", "csv"]);
    let mut cluster = Cluster::start(2, tmp.path());
    let out = tmp.path().join("out.csv");
    let mut run = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .args(["run", "--data", lake, "--format", "csv"])
        .args(cluster.engine())
        .args(["--out", out.to_str().unwrap()])
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
    assert!(
        done.status.success(),
        "the run failed after the kill:\n{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    // The scheduler saw it go, and ran its tasks again on the executor left.
    let log = cluster.log("scheduler.log");
    assert!(log.contains("Removing executor"), "{log}");
    assert!(log.contains("on lost Executor"), "{log}");
}
