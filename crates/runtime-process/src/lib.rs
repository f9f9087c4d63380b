//! The host-process runtime: runs each revision instance as a local process group.
//!
//! For every instance it leases a free loopback port, starts `command + args` with the Knative
//! runtime contract (`PORT`, `K_SERVICE`, `K_CONFIGURATION`, `K_REVISION`, then the spec's env;
//! stdin at EOF; the spec's working directory), waits until the port accepts connections
//! (deadline: the spec's startup timeout) and then publishes it into the [`EndpointRegistry`].
//! Revisions that opt into socket activation get a socket bound by Nimbus on fd 3 instead and are
//! published the moment the process exists: the first request waits in the kernel's backlog, not
//! for readiness polling. Instances that exit are unpublished at once and restarted with
//! exponential back-off while the revision still wants them; while a revision has no ready
//! instance because they failed, the failure is published instead, so waiting requests fail at
//! once. Scaling down picks the least busy instances, unpublishes them first, waits for their
//! in-flight requests (per the router's [`LoadProbe`]), then stops them (SIGTERM to the process
//! group, SIGKILL after the grace period).
//!
//! Each instance runs in its own cgroup with the revision's limits, made ahead of time (a spare
//! per revision). For host processes the spare also holds a stub process already inside the
//! cgroup; a cold start hands it the program to `execve`, so neither a fork nor a cgroup attach
//! (which waits for an RCU grace period after an idle spell) is on the cold path, and limits
//! hold from the program's first instruction. Embedders that want stubs set
//! [`ProcessRuntimeConfig::instance_stub`] to a program that runs [`run_instance_stub`].
//!
//! This crate decides nothing about *how many* instances run (that is the autoscaler and the
//! controller); it never reads API objects and never proxies traffic.
//!
//! [`EndpointRegistry`]: nimbus_runtime::EndpointRegistry
//! [`LoadProbe`]: nimbus_runtime::LoadProbe

mod activation;
mod cgroup_pool;
mod config;
mod env;
mod failure;
mod health;
mod host;
mod instance;
mod launcher;
mod meter;
mod mount_ns;
mod output;
mod ports;
mod probe;
mod process;
mod readiness;
mod runtime;
mod state;
mod status;
mod stub;
mod supervisor;
mod task;

pub use cgroup_pool::revision_of_cgroup;
pub use config::{ProcessRuntimeConfig, RestartBackoff};
pub use host::HostLauncher;
pub use launcher::{ExecSpec, LaunchContext, LaunchError, Launcher};
pub use process::StartError;
pub use runtime::{LoadProbeAlreadySet, ProcessRuntime};
pub use stub::{STUB_ARG, StubCommand, requested as stub_requested, run as run_instance_stub};
