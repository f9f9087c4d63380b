//! How the process runtime behaves: where logs go, how long stops drain and wait, how crashes
//! back off.
//! Plain data with documented defaults; no I/O.

use std::path::PathBuf;
use std::time::Duration;

/// Configuration of a [`crate::ProcessRuntime`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRuntimeConfig {
    /// Where instance output is appended, one file per instance:
    /// `<data_dir>/logs/<namespace>/<revision>/<instance>.log`. `None` keeps output in memory only.
    pub data_dir: Option<PathBuf>,
    /// Time between SIGTERM and SIGKILL when an instance is stopped (default 10 s).
    pub stop_grace: Duration,
    /// Longest wait, after an instance is unpublished for a scale-down, for its in-flight
    /// requests (as reported by the load probe) to finish before SIGTERM (default 30 s; Knative
    /// waits for the revision's request timeout).
    pub drain_timeout: Duration,
    /// Delays before restarting an instance that exited or failed to start.
    pub restart_backoff: RestartBackoff,
    /// Output lines kept in memory per instance for failure messages (default 50).
    pub output_lines: usize,
    /// The cgroup (under each hierarchy's root) [`crate::ProcessRuntime::new`] makes instances'
    /// cgroups in (default `nimbus`); `None` runs without limits.
    pub cgroup_parent: Option<String>,
    /// `pids.max` of an instance whose revision sets none (default 4096).
    pub default_pids_limit: u64,
    /// How instance stubs are started: processes made with each spare cgroup, already inside
    /// it, that a cold start only has to `execve` (keeping the cgroup attach off the cold
    /// start; see the `stub` module). Used for launchers that do not join the cgroup themselves
    /// (host processes), when cgroups are in use. `None` (the default, as finding a program is
    /// I/O): instances join their cgroup between fork and exec at start.
    pub instance_stub: Option<crate::StubCommand>,
}

impl Default for ProcessRuntimeConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            stop_grace: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            restart_backoff: RestartBackoff::default(),
            output_lines: 50,
            cgroup_parent: Some("nimbus".to_owned()),
            default_pids_limit: 4096,
            instance_stub: None,
        }
    }
}

/// Exponential restart back-off, like Kubernetes' CrashLoopBackOff: `initial`, doubling up to
/// `max`, forgotten once an instance has stayed ready for `reset_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartBackoff {
    /// Delay after the first failure (default 1 s).
    pub initial: Duration,
    /// Largest delay (default 60 s).
    pub max: Duration,
    /// Ready time after which the failure count resets (default 60 s).
    pub reset_after: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl RestartBackoff {
    /// The delay before the restart that follows the `failures`-th consecutive failure
    /// (1-based): `initial * 2^(failures-1)`, capped at `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = RestartBackoff::default();
        let secs: Vec<u64> = (1..=9).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.delay(0), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
    }
}
