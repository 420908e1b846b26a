//! `kpi cluster scheduler|executor`: resolve the arguments and run the process until it
//! is stopped.

use super::args::{ClusterCommand, ExecutorArgs, SchedulerArgs};
use super::{CliError, Exit};

pub fn run(command: ClusterCommand) -> Result<Exit, CliError> {
    let rt = super::run::runtime();
    match command {
        ClusterCommand::Scheduler(a) => rt.block_on(scheduler(a)),
        ClusterCommand::Executor(a) => rt.block_on(executor(a)),
    }
    .map_err(|e| CliError::Message(e.to_string()))?;
    Ok(Exit::Ok)
}

#[cfg(feature = "cluster")]
async fn scheduler(a: SchedulerArgs) -> Result<(), crate::cluster::ClusterError> {
    crate::cluster::scheduler(crate::cluster::SchedulerOptions {
        bind: a.bind,
        external_host: a.external_host,
        executor_timeout: a.executor_timeout,
    })
    .await
}

#[cfg(feature = "cluster")]
async fn executor(a: ExecutorArgs) -> Result<(), crate::cluster::ClusterError> {
    use crate::cluster::ClusterError;
    let (host, port) = a
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            ClusterError::Ballista(format!("--scheduler {} is not HOST:PORT", a.scheduler))
        })?;
    let work_dir = a.work_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kpi-executor-{}-{}", a.port, std::process::id()))
    });
    crate::cluster::executor(crate::cluster::ExecutorOptions {
        scheduler_host: host,
        scheduler_port: port,
        bind_host: a.bind_host,
        external_host: a.external_host,
        port: a.port,
        grpc_port: a.grpc_port,
        concurrent_tasks: a.concurrent_tasks,
        work_dir,
        heartbeat: a.heartbeat,
    })
    .await
}

#[cfg(not(feature = "cluster"))]
async fn scheduler(_: SchedulerArgs) -> Result<(), crate::cluster::ClusterError> {
    Err(crate::cluster::ClusterError::NotBuilt)
}

#[cfg(not(feature = "cluster"))]
async fn executor(_: ExecutorArgs) -> Result<(), crate::cluster::ClusterError> {
    Err(crate::cluster::ClusterError::NotBuilt)
}
