//! `kpi cluster scheduler` and `kpi cluster executor`: Ballista's scheduler and executor
//! processes, each given kpi's codec so that plans with kpi's functions and in-memory
//! tables decode there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service};

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;

use super::ClusterError;
use super::codec::{LogicalCodec, PhysicalCodec};
use super::loss::{CancelOnLoss, Scheduler};
use crate::store::EnvStores;

/// How to start a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// The address its gRPC service listens on.
    pub bind: SocketAddr,
    /// The host name executors and clients reach it by.
    pub external_host: String,
    /// Seconds without a heartbeat after which an executor is taken for dead and its
    /// tasks run elsewhere.
    pub executor_timeout: u64,
}

/// How to start an executor.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's `HOST:PORT`.
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// The host it listens on, and the name the scheduler and clients reach it by.
    pub bind_host: String,
    pub external_host: Option<String>,
    /// Its Arrow Flight port (results and shuffles) and its gRPC port (tasks).
    pub port: u16,
    pub grpc_port: u16,
    /// Tasks it runs at once.
    pub concurrent_tasks: usize,
    /// Where its shuffle files go.
    pub work_dir: PathBuf,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat: u64,
}

/// Ballista's log on stderr, at `RUST_LOG`'s levels (`info` when unset): tasks received
/// and finished, executors joining and lost.
fn start_log() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env).try_init();
}

fn ballista(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Ballista(e.to_string())
}

/// Runs a scheduler until the process ends.
pub async fn scheduler(opts: SchedulerOptions) -> Result<(), ClusterError> {
    start_log();
    let config = SchedulerConfig {
        bind_host: opts.bind.ip().to_string(),
        bind_port: opts.bind.port(),
        external_host: opts.external_host,
        executor_timeout_seconds: opts.executor_timeout,
        // Ballista's default fills one executor's slots before the next one's; a run's
        // few small stages would then mostly land on one machine.
        task_distribution: TaskDistributionPolicy::RoundRobin,
        // Dead executors are looked for a few times per timeout.
        expire_dead_executor_interval_seconds: (opts.executor_timeout / 4).clamp(1, 15),
        // A failed task or shuffle fetch fails its job instead of being run again inside
        // it: the client submits the whole plan again (see `loss`), which Ballista 55's
        // in-place recovery did not always get right.
        task_max_failures: 1,
        stage_max_failures: 1,
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        // Planning lists the files of object-store lakes too.
        override_session_builder: Some(Arc::new(|config| {
            let state = ballista_core::utils::default_session_builder(config)?;
            let runtime = RuntimeEnvBuilder::new()
                .with_object_store_registry(Arc::new(EnvStores::default()))
                .build_arc()?;
            Ok(SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime)
                .build())
        })),
        ..Default::default()
    };
    config.validate().map_err(ballista)?;
    let plain = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista)?;
    let slot = Arc::new(OnceLock::new());
    let guarded = CancelOnLoss::new(plain.cluster_state(), slot.clone());
    let cluster = BallistaCluster::new(Arc::new(guarded), plain.job_state());
    let scheduler: Scheduler = create_scheduler(cluster, Arc::new(config))
        .await
        .map_err(ballista)?;
    // The state holds the scheduler it belongs to, for the life of the process.
    let _ = slot.set(scheduler.clone());
    log::info!("kpi: Ballista scheduler listening on {}", opts.bind);
    start_grpc_service(opts.bind, scheduler)
        .await
        .map_err(ballista)
}

/// Runs an executor registered with its scheduler until the process is stopped
/// (SIGTERM or Ctrl-C, after which it leaves the cluster).
pub async fn executor(opts: ExecutorOptions) -> Result<(), ClusterError> {
    start_log();
    std::fs::create_dir_all(&opts.work_dir).map_err(|e| {
        ballista(format!(
            "cannot create work dir {}: {e}",
            opts.work_dir.display()
        ))
    })?;
    let work_dir = opts.work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: opts.bind_host.clone(),
        external_host: opts.external_host,
        port: opts.port,
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler_host.clone(),
        scheduler_port: opts.scheduler_port,
        // Retry the scheduler for a while, so that a cluster may start in any order.
        scheduler_connect_timeout_seconds: 30,
        vcores: opts.concurrent_tasks,
        work_dir: Some(work_dir.to_string_lossy().into_owned()),
        executor_heartbeat_interval_seconds: opts.heartbeat,
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        override_runtime_producer: Some(Arc::new(move |_| {
            RuntimeEnvBuilder::new()
                .with_temp_file_path(&work_dir)
                .with_object_store_registry(Arc::new(EnvStores::default()))
                .build_arc()
        })),
        ..Default::default()
    };
    log::info!(
        "kpi: Ballista executor on {}:{} (flight) / {} (grpc), scheduler {}:{}",
        opts.bind_host,
        opts.port,
        opts.grpc_port,
        opts.scheduler_host,
        opts.scheduler_port
    );
    start_executor_process(Arc::new(config))
        .await
        .map_err(ballista)
}
