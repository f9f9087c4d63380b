//! The control loop: reconcilers that turn what users asked for into what runs.
//!
//! ```text
//!  Service ──► Configuration ──► Revision (one per template generation) ──► Runtime (instances)
//!     └──────► Route ──► resolved traffic ──► Ingress (the router's table)
//! ```
//!
//! Each reconciler is an idempotent function of (desired object, observed children) that writes
//! children and status through the [`Resources`] trait; nothing is remembered between runs except
//! what is observable (the store, the runtime, the ingress). The embedded store is the first
//! implementation of `Resources`; a kube-rs one can run the same reconcilers against a cluster.
//!
//! This crate never does HTTP or spawns processes itself: it talks to a [`Runtime`] and an
//! [`IngressSink`].
//!
//! [`Runtime`]: nimbus_runtime::Runtime

mod configuration;
mod context;
mod error;
mod ingress;
mod instance;
mod manager;
mod resources;
mod revision;
mod route;
mod scaler;
mod service;
mod status;

pub use context::{Context, ControllerConfig};
pub use error::ControllerError;
pub use ingress::IngressSink;
pub use manager::{Controller, ObjectKey};
pub use resources::{Resources, StoreResources};
pub use scaler::{MetricsSource, RevisionLoad, Scaler, ScalerConfig};

#[cfg(test)]
mod tests;
