//! The instance runtime interface.
//!
//! A runtime is told, per revision, *how many instances should run* ([`Runtime::set_desired`]) and
//! publishes *which instances are ready to take traffic* into an [`EndpointRegistry`]. That is the
//! whole contract, and it maps one-to-one onto Kubernetes later: `set_desired` is a Deployment's
//! `replicas`, the registry is the EndpointSlices of the revision's Service.
//!
//! This crate owns only the interface and the shared endpoint registry; it never starts anything.
//! Backends live in their own crates (`nimbus-runtime-process`, later OCI and Wasm).

mod endpoints;
mod spec;

pub use endpoints::{Endpoint, EndpointRegistry, Protocol, RevisionEndpoints};

/// Tells a runtime how busy an endpoint is, so a scale-down can wait for in-flight requests to
/// finish before stopping the instance. The router implements it.
pub trait LoadProbe: Send + Sync + 'static {
    /// Requests currently in flight to `endpoint`.
    fn in_flight(&self, endpoint: &Endpoint) -> usize;
}
pub use spec::{
    InstanceSpec, Probe, ProbeAction, Probes, Resources, RevisionKey, RevisionPhase,
    RevisionRuntimeStatus, RuntimeEvent,
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

    /// Stop every instance of the revision and forget it.
    async fn remove(&self, revision: &RevisionKey);

    /// What the runtime knows about the revision right now (`None` if it never saw it).
    fn status(&self, revision: &RevisionKey) -> Option<RevisionRuntimeStatus>;

    /// Subscribe to changes: every time a revision's status changes, its key is sent.
    /// Receivers that lag simply miss keys; they should then re-list via [`Runtime::status`].
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent>;

    /// The registry this runtime publishes ready endpoints into.
    fn endpoints(&self) -> EndpointRegistry;

    /// Stop every instance (used on server shutdown).
    async fn shutdown(&self);
}
