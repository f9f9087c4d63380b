//! The control loop: reconcilers that turn what users asked for into what runs, after Knative
//! Serving's controllers.
//!
//! ```text
//!  Service ──► Configuration ──► Revision (one per template generation) ──► PodAutoscaler
//!     │                              │  instances in a Runtime                 │ scaler: desired scale
//!     └──────► Route ──► Ingress ──► router (IngressSink)                       ▼ (status)
//! ```
//!
//! Each reconciler is an idempotent function of (desired object, observed children) that
//! writes children by server-side apply and status with resourceVersion preconditions through
//! the [`Resources`] trait, and keeps no state of its own: what must survive a restart lives in
//! API objects (a revision's scale in its PodAutoscaler, the data path's programming in
//! Ingresses). The embedded store is one implementation of `Resources`; a kube-rs client is the
//! other, so the same reconcilers can run against a Kubernetes API server.
//!
//! This crate never does HTTP or spawns processes itself: it talks to a [`Runtime`] and an
//! [`IngressSink`].
//!
//! [`Runtime`]: nimbus_runtime::Runtime

mod configuration;
mod context;
mod env_refs;
mod error;
pub mod gc;
mod ingress;
mod instance;
mod jobs;
mod labeler;
mod manager;
mod podautoscaler;
mod queue;
mod reconcile_events;
pub mod recorder;
mod removals;
mod resources;
mod revision;
mod route;
mod scaler;
mod scaler_events;
mod service;
mod status;
mod store_resources;
mod telemetry;
mod tracker;
mod volumes;

pub use context::{Clock, Context, ControllerConfig, SystemClock};
pub use error::ControllerError;
pub use gc::RevisionGcConfig;
pub use ingress::{IngressSink, program as ingress_program};
pub use jobs::execution::as_revision as task_revision;
pub use jobs::job::new_execution;
pub use jobs::{EventSink, ScheduledDelivery};
pub use manager::{Controller, ObjectKey};
pub use recorder::{EventConfig, Note, Recorder};
pub use removals::Removal;
pub use resources::{
    Action, Change, Listed, ResourceError, Resources, Retry, Selector, update_meta, update_status,
};
pub use scaler::{MetricsSource, NoLoad, RevisionLoad, ScaleView, Scaler, ScalerConfig};
pub use store_resources::StoreResources;
pub use telemetry::ControllerMetrics;

#[cfg(test)]
mod tests;
