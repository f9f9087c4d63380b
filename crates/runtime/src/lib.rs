//! The instance runtime interface.
//!
//! A runtime is told, per revision, *how many instances should run* ([`Runtime::set_desired`]) and
//! publishes *which instances are ready to take traffic* into an [`EndpointRegistry`]. That is the
//! whole contract, and it maps one-to-one onto Kubernetes: `set_desired` is a Deployment's
//! `replicas`, the registry is the EndpointSlices of the revision's Service.
//!
//! This crate owns only the interface and the shared endpoint registry; it never starts anything.
//! Backends live in their own crates (`nimbus-runtime-process` for host processes and, through
//! `nimbus-runtime-container`, containers; `nimbus-runtime-wasm`). An instance is reached over a
//! socket or, when it lives inside the server process, through a [`LocalHandle`].

mod endpoints;
pub mod env;
mod local;
mod metrics;
mod notices;
mod source;
mod spec;
mod task;
pub mod volumes;

pub use endpoints::{
    Endpoint, EndpointRegistry, Milestone, Protocol, RevisionEndpoints, StartMilestones, Transport,
};
pub use local::{BoxError, LocalBody, LocalHandle, LocalResponse, LocalService};
pub use metrics::{InstanceUsage, RevisionMetrics};
pub use notices::{InstanceNotice, InstanceNotices};
pub use task::{DEFAULT_TASK_GRACE, TaskEnd, TaskOutcome, TaskRun, cancelled};

/// Tells a runtime how busy an endpoint is, so a scale-down can wait for in-flight requests to
/// finish before stopping the instance. The router implements it.
pub trait LoadProbe: Send + Sync + 'static {
    /// Requests currently in flight to `endpoint`.
    fn in_flight(&self, endpoint: &Endpoint) -> usize;
}
pub use spec::{
    InstanceSpec, Probe, ProbeAction, Probes, Resources, RevisionKey, RevisionPhase,
    RevisionRuntimeStatus, RuntimeEvent, Seccomp, Security,
};

use async_trait::async_trait;

/// Errors a runtime reports when it cannot take a request at all (as opposed to an instance
/// failing later, which is reported through [`RevisionRuntimeStatus`]).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The instance spec cannot be run by this runtime (for example: no command given).
    #[error("revision {revision}: {message}")]
    InvalidSpec {
        revision: RevisionKey,
        message: String,
    },
    /// The runtime is shutting down and accepts no new work.
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

/// A backend that runs instances of revisions.
///
/// Implementations must make every method idempotent: the controller calls them on every
/// reconcile with the full desired state, not with deltas.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Ensure `replicas` instances of the revision run. `0` stops them all (draining first).
    /// Changing `spec` for an existing revision is not allowed (revisions are immutable);
    /// implementations may ignore a changed spec.
    async fn set_desired(&self, spec: &InstanceSpec, replicas: u32) -> Result<(), RuntimeError>;

    /// Applies [`Runtime::set_desired`] at once on the caller's thread, if this runtime can do
    /// so without blocking or awaiting: its instances start without I/O (in-process Wasm
    /// instances of an already loaded revision). Returns `false`, having done nothing, when the
    /// caller must use `set_desired` instead (the default).
    ///
    /// The autoscaler uses it to scale from zero on the thread of the request that is waiting,
    /// so a cold start does not wait for another thread to be scheduled.
    fn set_desired_now(&self, spec: &InstanceSpec, replicas: u32) -> bool {
        let _ = (spec, replicas);
        false
    }

    /// Stop every instance of the revision and forget it.
    async fn remove(&self, revision: &RevisionKey);

    /// What the runtime knows about the revision right now (`None` if it never saw it).
    fn status(&self, revision: &RevisionKey) -> Option<RevisionRuntimeStatus>;

    /// What the runtime measured about the revision's instances (restarts, OOM kills,
    /// cold-start phases, per-instance CPU and memory), for `/metrics`; `None` when it measures
    /// nothing (the default) or never saw the revision. Called at scrape time, never per request.
    fn metrics(&self, revision: &RevisionKey) -> Option<RevisionMetrics> {
        let _ = revision;
        None
    }

    /// Subscribe to changes: every time a revision's status changes, its key is sent.
    /// Receivers that lag simply miss keys; they should then re-list via [`Runtime::status`].
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent>;

    /// The registry this runtime publishes ready endpoints into.
    fn endpoints(&self) -> EndpointRegistry;

    /// Stop every instance (used on server shutdown).
    async fn shutdown(&self);

    /// Run one task of a Job to completion: an instance of `spec` with `task.env` added, no
    /// probes and no restarts, its output in the logs of `spec.revision` (the execution) under
    /// `task.id`. Runtimes that cannot say so.
    async fn run_task(&self, spec: &InstanceSpec, task: TaskRun) -> TaskOutcome {
        let _ = (spec, task);
        TaskOutcome::unsupported(
            "this runtime (Kubernetes mode does not run Jobs yet; embedded mode does)",
        )
    }
}
