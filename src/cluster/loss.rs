//! What kpi's scheduler does when an executor is lost: it cancels every job running at
//! that moment, before Ballista's own recovery can touch them, and the client (see
//! [`super::lost_executor`]) submits the cancelled plan again as a new job.
//!
//! Ballista 55 recovers a running job in place: it rolls back the stages whose tasks or
//! shuffle output were on the lost executor and runs them again. Tried here on a
//! two-executor cluster, that recovery sometimes never ran the rolled-back stages (the
//! job waited for ever) and once returned wrong numbers (a recovered stage's output read
//! twice). A job planned afresh on the executors left has neither fault, and kpi's plans
//! are deterministic, so resubmitting gives the bytes an undisturbed run gives.
//!
//! The cancel has to come first. Ballista removes an executor through its
//! [`ClusterState`] and only then posts the event that rolls its jobs back; this wrapper
//! posts each job's cancel from inside that removal, so the scheduler's event loop
//! handles the cancels before the rollback (its queue is first in, first out).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use ballista_core::JobId;
use ballista_core::error::Result;
use ballista_core::serde::protobuf::ExecutorHeartbeat;
use ballista_core::serde::scheduler::{ExecutorData, ExecutorMetadata};
use ballista_scheduler::cluster::{BoundTask, ClusterState, ClusterStateEventStream, ExecutorSlot};
use ballista_scheduler::config::TaskDistributionPolicy;
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::state::task_manager::JobInfoCache;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

/// The scheduler kpi runs.
pub type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// Ballista's cluster state, whose executor removal first cancels the running jobs.
pub struct CancelOnLoss {
    inner: Arc<dyn ClusterState>,
    /// The scheduler whose jobs are cancelled. It is built from this state, so it is set
    /// afterwards; until it is, no job can be running.
    scheduler: Arc<OnceLock<Scheduler>>,
}

impl CancelOnLoss {
    /// `inner`, and the slot the scheduler built on it is put in once it exists.
    pub fn new(inner: Arc<dyn ClusterState>, scheduler: Arc<OnceLock<Scheduler>>) -> Self {
        CancelOnLoss { inner, scheduler }
    }

    async fn cancel_running_jobs(&self, executor_id: &str) {
        let Some(scheduler) = self.scheduler.get() else {
            return;
        };
        let jobs: Vec<JobId> = scheduler
            .state
            .task_manager
            .get_running_job_cache()
            .keys()
            .cloned()
            .collect();
        for job in jobs {
            log::warn!(
                "kpi: executor {executor_id} lost while job {job} ran: cancelling the job \
                 (kpi's client submits it again) instead of recovering it in place"
            );
            if let Err(e) = scheduler.cancel_job(job.clone()).await {
                log::error!("kpi: could not cancel job {job}: {e}");
            }
        }
    }
}

#[async_trait::async_trait]
impl ClusterState for CancelOnLoss {
    async fn init(&self) -> Result<()> {
        self.inner.init().await
    }

    async fn bind_schedulable_tasks(
        &self,
        distribution: TaskDistributionPolicy,
        active_jobs: Arc<HashMap<JobId, JobInfoCache>>,
        executors: Option<HashSet<String>>,
    ) -> Result<Vec<BoundTask>> {
        self.inner
            .bind_schedulable_tasks(distribution, active_jobs, executors)
            .await
    }

    async fn unbind_tasks(&self, executor_slots: Vec<ExecutorSlot>) -> Result<()> {
        self.inner.unbind_tasks(executor_slots).await
    }

    async fn register_executor(
        &self,
        metadata: ExecutorMetadata,
        spec: ExecutorData,
    ) -> Result<()> {
        self.inner.register_executor(metadata, spec).await
    }

    async fn save_executor_metadata(&self, metadata: ExecutorMetadata) -> Result<()> {
        self.inner.save_executor_metadata(metadata).await
    }

    async fn get_executor_metadata(&self, executor_id: &str) -> Result<ExecutorMetadata> {
        self.inner.get_executor_metadata(executor_id).await
    }

    async fn registered_executor_metadata(&self) -> Vec<ExecutorMetadata> {
        self.inner.registered_executor_metadata().await
    }

    async fn save_executor_heartbeat(&self, heartbeat: ExecutorHeartbeat) -> Result<()> {
        self.inner.save_executor_heartbeat(heartbeat).await
    }

    async fn remove_executor(&self, executor_id: &str) -> Result<()> {
        self.cancel_running_jobs(executor_id).await;
        self.inner.remove_executor(executor_id).await
    }

    fn executor_heartbeats(&self) -> HashMap<String, ExecutorHeartbeat> {
        self.inner.executor_heartbeats()
    }

    fn get_executor_heartbeat(&self, executor_id: &str) -> Option<ExecutorHeartbeat> {
        self.inner.get_executor_heartbeat(executor_id)
    }

    async fn cluster_state_events(&self) -> Result<ClusterStateEventStream> {
        self.inner.cluster_state_events().await
    }
}
