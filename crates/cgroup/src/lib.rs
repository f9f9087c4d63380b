//! Resource limits with cgroups v1 and v2: memory, CPU, pids, and OOM detection.
//!
//! [`Cgroups::detect`] finds where the memory, cpu and pids controllers are mounted (from
//! `/proc/self/mountinfo`: cgroup v1 hierarchies where a controller is mounted as v1, as on
//! hybrid hosts, the unified cgroup v2 hierarchy otherwise) and prepares a parent cgroup Nimbus
//! owns (e.g. `nimbus`). [`Cgroups::create`] makes one [`Cgroup`] per instance below it with
//! [`Limits`] converted from a Kubernetes container's `resources` exactly as the kubelet does;
//! a child process joins it between fork and exec through a [`Joiner`], and the supervisor asks
//! it afterwards whether the kernel OOM-killed something, kills whatever is left, and removes it.
//!
//! This crate only ever touches cgroups below its parent. It never spawns or waits for
//! processes (that is the runtimes' job) and never decides what an OOM means for a revision.
//! Swap is not limited: on a host with swap, an instance may swap instead of being OOM-killed.
//!
//! ```no_run
//! # fn f() -> Result<(), nimbus_cgroup::CgroupError> {
//! use nimbus_cgroup::{Cgroups, Limits};
//! let cgroups = Cgroups::detect("nimbus")?;
//! cgroups.clean_stale()?;
//! let limits = Limits::from_kubernetes(Some(128 << 20), Some(1000), Some(125), Some(1024));
//! let cgroup = cgroups.create("default/hello-00001/hello-00001-1", &limits)?;
//! let joiner = cgroup.joiner()?; // then `pre_exec(move || joiner.join())`
//! // … the instance runs and exits …
//! let oom_killed = cgroup.oom_kills() > 0;
//! cgroup.remove()?;
//! # Ok(()) }
//! ```

mod cgroup;
mod cgroups;
mod error;
mod fsio;
mod joiner;
mod kill;
mod layout;
mod limits;
mod mountinfo;
mod name;
mod settings;
mod subtree;
mod usage;

pub use cgroup::Cgroup;
pub use cgroups::Cgroups;
pub use error::CgroupError;
pub use joiner::Joiner;
pub use layout::{CgroupVersion, Controller};
pub use limits::{
    CpuQuota, CpuWeight, KUBERNETES_CPU_PERIOD_US, KUBERNETES_MIN_QUOTA_US, Limits, MAX_SHARES,
    MIN_SHARES,
};
pub use mountinfo::mount_points;
pub use usage::InstanceUsage;
pub use usage::UsageReader;
