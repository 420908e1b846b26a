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
    /// What `message`, a failed plan's error, says in plain words when it is a node of
    /// the cluster that could not be reached: `None` for any other error.
    pub fn unreachable(&self, message: &str) -> Option<String> {
        if !message.contains("tcp connect error") {
            return None;
        }
        let at = message
            .split("\"tcp connect error\", ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or("?");
        let scheduler = match self {
            Target::Remote(url) => url.as_str(),
            Target::Standalone => "in this process",
        };
        Some(format!(
            "cannot reach the Ballista cluster at {at} (connection refused; scheduler \
             {scheduler}): is `kpi cluster scheduler` running there, and its executors?"
        ))
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
