//! The host-process runtime: runs each revision instance as a local process group.
//!
//! For every instance it leases a free loopback port, starts `command + args` with the Knative
//! runtime contract (`PORT`, `K_SERVICE`, `K_CONFIGURATION`, `K_REVISION`, then the spec's env;
//! stdin at EOF; the spec's working directory), waits until the port accepts connections
//! (deadline: the spec's startup timeout) and then publishes it into the [`EndpointRegistry`].
//! Instances that exit are unpublished at once and restarted with exponential back-off while the
//! revision still wants them. Scaling down unpublishes first, then stops (SIGTERM to the process
//! group, SIGKILL after the grace period).
//!
//! This crate decides nothing about *how many* instances run (that is the autoscaler and the
//! controller); it never reads API objects and never proxies traffic.
//!
//! [`EndpointRegistry`]: nimbus_runtime::EndpointRegistry

mod config;
mod failure;
mod output;
mod ports;
mod process;
mod readiness;
mod runtime;
mod state;
mod status;
mod supervisor;

pub use config::{ProcessRuntimeConfig, RestartBackoff};
pub use process::StartError;
pub use runtime::ProcessRuntime;
