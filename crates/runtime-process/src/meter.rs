//! What the runtime measures about a revision's instances for `/metrics`: restarts by reason,
//! OOM kills, the cold-start phases "start" and "ready", and each running instance's CPU and
//! memory from its cgroup. The supervisor records (a few times per instance start, under the
//! state lock it takes anyway); [`Shared::metrics`] reads at scrape time, the cgroup files
//! outside the lock.

use std::collections::BTreeMap;
use std::time::Duration;

use nimbus_cgroup::UsageReader;
use nimbus_metrics::{COLD_START_BUCKETS, Histogram};
use nimbus_runtime::{InstanceUsage, RevisionKey, RevisionMetrics};

use crate::failure::{Failure, OOM_KILLED};
use crate::state::{RevisionState, Shared};
use crate::supervisor::Supervisor;

/// One revision's counters, kept in its [`RevisionState`].
#[derive(Debug)]
pub(crate) struct Meter {
    restarts: BTreeMap<String, u64>,
    oom_kills: u64,
    start: Histogram,
    ready: Histogram,
}

impl Default for Meter {
    fn default() -> Self {
        Self {
            restarts: BTreeMap::new(),
            oom_kills: 0,
            start: Histogram::new(COLD_START_BUCKETS),
            ready: Histogram::new(COLD_START_BUCKETS),
        }
    }
}

// === impl Meter ===

impl Meter {
    fn restarted(&mut self, failure: &Failure) {
        *self.restarts.entry(failure.reason.clone()).or_default() += 1;
        if failure.reason == OOM_KILLED {
            self.oom_kills += 1;
        }
    }

    fn snapshot(&self) -> RevisionMetrics {
        RevisionMetrics {
            restarts: self.restarts.clone(),
            oom_kills: self.oom_kills,
            start: self.start.snapshot(),
            ready: self.ready.snapshot(),
            instances: Vec::new(),
        }
    }
}

// === impl Supervisor (recording) ===

impl Supervisor {
    /// Whether the revision has no ready instance now (an instance starting now is a cold
    /// start's).
    pub(crate) fn revision_at_zero(&self) -> bool {
        let ready = |r: &mut RevisionState| r.instances.values().all(|s| s.endpoint.is_none());
        self.shared
            .record(&self.spec.revision, ready)
            .unwrap_or(false)
    }

    /// The instance's process runs after `took`; `cold`: record it as a cold start's phase.
    /// Its cgroup (if any) is read from now on.
    pub(crate) fn note_started(&self, usage: Option<UsageReader>, cold: bool, took: Duration) {
        let ordinal = self.ordinal;
        self.shared.record(&self.spec.revision, |r| {
            if cold {
                r.meter.start.record(took);
            }
            if let Some(slot) = r.instances.get_mut(&ordinal) {
                slot.usage = usage;
            }
        });
    }

    /// A cold start's instance became ready `took` after its process started.
    pub(crate) fn note_ready(&self, took: Duration) {
        self.shared
            .record(&self.spec.revision, |r| r.meter.ready.record(took));
    }

    /// The instance failed and will be started again.
    pub(crate) fn note_restart(&self, failure: &Failure) {
        self.shared
            .record(&self.spec.revision, |r| r.meter.restarted(failure));
    }
}

// === impl Shared (reading) ===

impl Shared {
    /// The revision's figures, with every running instance's cgroup read now.
    pub fn metrics(&self, key: &RevisionKey) -> Option<RevisionMetrics> {
        let (mut metrics, readers) = self.record(key, |r| {
            let id = |ordinal| format!("{}-{ordinal}", key.name);
            let readers: Vec<(String, UsageReader)> = r
                .instances
                .iter()
                .filter_map(|(n, s)| Some((id(n), s.usage.clone()?)))
                .collect();
            (r.meter.snapshot(), readers)
        })?;
        metrics.instances = readers
            .into_iter()
            .map(|(instance, reader)| InstanceUsage {
                instance,
                cpu_seconds: reader.cpu_seconds(),
                memory_bytes: reader.memory_bytes(),
            })
            .collect();
        Some(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_count_by_reason_and_oom_kills_apart() {
        let mut meter = Meter::default();
        let failure = |reason: &str| Failure {
            reason: reason.into(),
            message: String::new(),
        };
        meter.restarted(&failure("ExitCode1"));
        meter.restarted(&failure(OOM_KILLED));
        meter.restarted(&failure("ExitCode1"));
        let snap = meter.snapshot();
        assert_eq!(snap.restarts.get("ExitCode1"), Some(&2));
        assert_eq!(snap.restarts.get(OOM_KILLED), Some(&1));
        assert_eq!(snap.oom_kills, 1);
    }
}
