//! What a runtime measures about a revision's instances, read by `/metrics` at scrape time.

use std::collections::BTreeMap;

use nimbus_metrics::HistogramSnapshot;

/// A revision's instance figures (see [`crate::Runtime::metrics`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevisionMetrics {
    /// Instance failures that were followed by a restart, by reason (`OOMKilled`,
    /// `ExitCode1`, `StartupTimeout`, …; the reasons of `RevisionPhase::Failed`).
    pub restarts: BTreeMap<String, u64>,
    /// Instances the kernel killed for exceeding their memory limit.
    pub oom_kills: u64,
    /// Cold-start phase "start": from the runtime starting an instance while the revision had
    /// none ready to the process running (image and cgroup preparation included).
    pub start: HistogramSnapshot,
    /// Cold-start phase "ready": from that process running to the instance passing readiness.
    pub ready: HistogramSnapshot,
    /// Resource use of each running instance that has a cgroup.
    pub instances: Vec<InstanceUsage>,
}

/// One instance's resource use from its cgroup's accounting.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceUsage {
    /// The instance's id (its endpoint id, `<revision>-<ordinal>`).
    pub instance: String,
    /// CPU time its processes used, in seconds (`None`: unreadable).
    pub cpu_seconds: Option<f64>,
    /// Memory charged to it now, in bytes (`None`: unreadable).
    pub memory_bytes: Option<u64>,
}
