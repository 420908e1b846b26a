//! Scale-out on Apache DataFusion Ballista: where a run's plans execute when one machine
//! is not enough. kpi plans a run as always; a Ballista client context then submits each
//! plan to a scheduler, which splits it into stages for its executors. `kpi cluster
//! scheduler` and `kpi cluster executor` start Ballista's own scheduler and executor with
//! [`codec`], which carries what datafusion-proto cannot: kpi's functions (with the run's
//! period boundaries) and in-memory tables.
//!
//! Ballista is behind the `cluster` cargo feature; without it every entry point here says
//! how to build it.

#[cfg(feature = "cluster")]
pub mod codec;
#[cfg(feature = "cluster")]
mod loss;
#[cfg(feature = "cluster")]
mod process;

#[cfg(feature = "cluster")]
pub use process::{ExecutorOptions, SchedulerOptions, executor, scheduler};

use datafusion::prelude::{SessionConfig, SessionContext};

/// Where a run's plans execute, when not in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A running scheduler, `df://HOST:PORT`.
    Remote(String),
    /// A scheduler and an executor started in this process, for demos and tests.
    Standalone,
}

impl Target {
    /// The address a failed plan's error says a connection to was refused, if any.
    fn refused(message: &str) -> Option<&str> {
        let rest = message.split("\"tcp connect error\", ").nth(1)?;
        Some(rest.split(',').next().unwrap_or(rest))
    }

    /// What `message`, a failed plan's error, says in plain words when it is a node of
    /// the cluster that could not be reached: `None` for any other error.
    pub fn unreachable(&self, message: &str) -> Option<String> {
        if !message.contains("tcp connect error") {
            return None;
        }
        let at = Target::refused(message).unwrap_or("?");
        let scheduler = match self {
            Target::Remote(url) => url.as_str(),
            Target::Standalone => "in this process",
        };
        Some(format!(
            "cannot reach the Ballista cluster at {at} (connection refused; scheduler \
             {scheduler}): is `kpi cluster scheduler` running there, and its executors?"
        ))
    }

    /// Whether `message`, a failed plan's error, is the cluster losing an executor while
    /// the plan ran, so that the plan may be submitted again as a new job: kpi's
    /// scheduler cancelled the job when it removed the executor (`loss`); a task or a
    /// shuffle fetch failed, which fails the job at once (kpi's scheduler allows no
    /// retry inside a job); or the results could not be fetched from an executor. A
    /// query error, a timeout or an unreachable scheduler is not.
    pub fn lost_executor(&self, message: &str) -> bool {
        let Target::Remote(url) = self else {
            return false;
        };
        if let Some(at) = Target::refused(message) {
            return at != url.trim_start_matches("df://");
        }
        message.contains("failed: Cancelled")
            || message.contains("has failed 1 times")
            || message.contains("failed 1 times, fail the stage")
            || message.contains("Shuffle fetch partition error")
    }
}

/// Why a cluster cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "this kpi was built without Ballista; build it with \
         `cargo build --release --features cluster`"
    )]
    NotBuilt,
    #[error("{0}")]
    Ballista(String),
}

/// A client context that runs every plan given to it on `target`, with `config`'s
/// settings (partitions, memory) and kpi's codec.
#[cfg(feature = "cluster")]
pub async fn context(
    target: &Target,
    config: SessionConfig,
) -> Result<SessionContext, ClusterError> {
    use std::sync::Arc;

    use ballista::prelude::{SessionConfigExt, SessionContextExt};
    use datafusion::execution::SessionStateBuilder;

    // Ballista 55's adaptive planner rolls stages back when an executor is lost but then
    // never runs them again: the job waits for ever. Its static planner re-runs the lost
    // tasks on the executors left.
    let config = config
        .upgrade_for_ballista()
        .set_bool(
            ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED,
            false,
        )
        .with_ballista_logical_extension_codec(Arc::new(codec::LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(codec::PhysicalCodec::default()));
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build();
    // No function is registered: the context only runs plans built elsewhere, which hold
    // their functions, and the codec carries them.
    match target {
        Target::Remote(url) => SessionContext::remote_with_state(url, state).await,
        Target::Standalone => SessionContext::standalone_with_state(state).await,
    }
    .map_err(|e| ClusterError::Ballista(e.to_string()))
}

/// Without the `cluster` feature: the error saying how to build it.
#[cfg(not(feature = "cluster"))]
pub async fn context(_: &Target, _: SessionConfig) -> Result<SessionContext, ClusterError> {
    Err(ClusterError::NotBuilt)
}

#[cfg(test)]
mod tests {
    use super::Target;

    fn remote() -> Target {
        Target::Remote("df://10.0.0.1:50050".into())
    }

    /// tonic's error for a refused connection, as Ballista's client passes it on.
    fn refused(at: &str) -> String {
        format!(
            "computing `revenue`: Execution(\"transport error: ConnectError(\\\"tcp connect \
             error\\\", {at}, Os {{ code: 111, kind: ConnectionRefused }})\")"
        )
        .replace("\\\"tcp connect error\\\"", "\"tcp connect error\"")
    }

    #[test]
    fn a_job_failed_by_a_lost_executor_may_be_submitted_again() {
        let lost = [
            "computing `revenue`: Job 7Zq failed: Cancelled",
            "computing `mrr`: Job 7Zq failed: Stage 2 has failed 1 times, most recent failure \
             reason: \"Shuffle fetch partition error from Executor e1, map_stage 1\"",
            "computing `mrr`: Job 7Zq failed: Task 3 in Stage 1 failed 1 times, fail the \
             stage, most recent failure reason: \"IoError\"",
        ];
        for message in lost {
            assert!(remote().lost_executor(message), "{message}");
            // In-process, there is no executor to lose.
            assert!(!Target::Standalone.lost_executor(message), "{message}");
        }
        // Results held by an executor that no longer answers: lost too.
        assert!(remote().lost_executor(&refused("10.0.0.2:50051")));
    }

    #[test]
    fn a_query_error_or_an_absent_scheduler_is_not_run_again() {
        let kept = [
            "computing `revenue`: Job 7Zq failed: Arrow error: Parser error: Error parsing \
             timestamp from 'x'",
            "computing `revenue` took longer than --plan-timeout 20 s; nothing was written",
        ];
        for message in kept {
            assert!(!remote().lost_executor(message), "{message}");
        }
        let scheduler = refused("10.0.0.1:50050");
        assert!(!remote().lost_executor(&scheduler), "{scheduler}");
        let named = remote().unreachable(&scheduler).unwrap();
        assert!(
            named.starts_with("cannot reach the Ballista cluster at 10.0.0.1:50050"),
            "{named}"
        );
    }
}
