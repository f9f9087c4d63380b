//! [`Limits`]: the resource limits of one instance, and the pure conversions from a Kubernetes
//! container's `resources` to cgroup values, done exactly as the kubelet does them
//! (`pkg/kubelet/kuberuntime/kuberuntime_container_linux.go` and `pkg/kubelet/cm/helpers_linux.go`)
//! so that Knative's runtime-contract checks read the same numbers. No I/O here.

/// The CFS period Kubernetes uses for every container, in microseconds.
pub const KUBERNETES_CPU_PERIOD_US: u64 = 100_000;
/// Kubernetes' smallest CFS quota, in microseconds (1 ms per period).
pub const KUBERNETES_MIN_QUOTA_US: u64 = 1_000;
/// Kubernetes' smallest `cpu.shares` (what a container without any CPU request gets).
pub const MIN_SHARES: u64 = 2;
/// Kubernetes' (and the kernel's) largest `cpu.shares`.
pub const MAX_SHARES: u64 = 262_144;
/// `cpu.shares` for one whole CPU.
const SHARES_PER_CPU: u64 = 1024;
/// The kernel's default `cpu.shares` (v1), written when no weight is set.
pub(crate) const DEFAULT_SHARES: u64 = 1024;
/// The kernel's default `cpu.weight` (v2), written when no weight is set.
pub(crate) const DEFAULT_WEIGHT: u64 = 100;

/// The resource limits of one cgroup. `None` means unlimited (the kernel's default), and is
/// written as such, so re-applying limits to a reused cgroup resets what is no longer set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes (`memory.limit_in_bytes` / `memory.max`). Swap is left alone: on
    /// hosts with swap, an instance may swap beyond this instead of being OOM-killed.
    pub memory_max: Option<u64>,
    /// CFS bandwidth limit (`cpu.cfs_quota_us` + `cpu.cfs_period_us` / `cpu.max`).
    pub cpu_quota: Option<CpuQuota>,
    /// Relative CPU weight under contention (`cpu.shares` / `cpu.weight`).
    pub cpu_weight: Option<CpuWeight>,
    /// Most processes and threads at once (`pids.max`).
    pub pids_max: Option<u64>,
}

/// A CFS bandwidth limit: at most `quota_us` of CPU time in every `period_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuQuota {
    /// CPU time allowed per period, in microseconds (may exceed the period on several CPUs).
    pub quota_us: u64,
    /// The period, in microseconds.
    pub period_us: u64,
}

/// A relative CPU weight, kept as cgroup v1 `cpu.shares`; [`CpuWeight::v2_weight`] gives the
/// matching cgroup v2 `cpu.weight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuWeight {
    /// `cpu.shares`, 2..=262144 (1024 is one CPU's worth).
    pub shares: u64,
}

// === impl Limits ===

impl Limits {
    /// The limits Kubernetes gives a container with these `resources`:
    ///
    /// - memory limit: bytes as is (`128Mi` → 134217728); none or 0 → unlimited.
    /// - cpu limit (millicores): quota `millis * 100000 / 1000` per period 100000 (`1000m` →
    ///   100000/100000), at least 1000 µs; none or 0 → no quota.
    /// - cpu request (millicores): shares `millis * 1024 / 1000`, clamped to 2..=262144
    ///   (`125m` → 128). Without a request, the request defaults to the limit (the API server
    ///   and the kubelet both do this); with neither, or a request of 0, the container gets the
    ///   minimum, 2 shares — Kubernetes' BestEffort weight. So the weight is always set.
    /// - pids: as given.
    pub fn from_kubernetes(
        memory_limit: Option<u64>,
        cpu_limit_millis: Option<u64>,
        cpu_request_millis: Option<u64>,
        pids_max: Option<u64>,
    ) -> Self {
        let cpu_limit = cpu_limit_millis.filter(|&m| m > 0);
        let cpu_request = cpu_request_millis.or(cpu_limit).unwrap_or(0);
        Self {
            memory_max: memory_limit.filter(|&b| b > 0),
            cpu_quota: cpu_limit.map(CpuQuota::from_millis),
            cpu_weight: Some(CpuWeight::from_millis(cpu_request)),
            pids_max,
        }
    }
}

// === impl CpuQuota ===

impl CpuQuota {
    /// Kubernetes' `milliCPUToQuota` over its fixed 100 ms period, for a non-zero limit.
    pub fn from_millis(millis: u64) -> Self {
        let quota = u128::from(millis) * u128::from(KUBERNETES_CPU_PERIOD_US) / 1000;
        Self {
            quota_us: u64::try_from(quota)
                .unwrap_or(u64::MAX)
                .max(KUBERNETES_MIN_QUOTA_US),
            period_us: KUBERNETES_CPU_PERIOD_US,
        }
    }

    /// The cgroup v2 `cpu.max` line.
    pub fn v2_line(&self) -> String {
        format!("{} {}", self.quota_us, self.period_us)
    }
}

// === impl CpuWeight ===

impl CpuWeight {
    /// Kubernetes' `MilliCPUToShares`: 0 → 2, otherwise `millis * 1024 / 1000` clamped.
    pub fn from_millis(millis: u64) -> Self {
        if millis == 0 {
            return Self { shares: MIN_SHARES };
        }
        let shares = u128::from(millis) * u128::from(SHARES_PER_CPU) / 1000;
        let shares = u64::try_from(shares).unwrap_or(MAX_SHARES);
        Self {
            shares: shares.clamp(MIN_SHARES, MAX_SHARES),
        }
    }

    /// The cgroup v2 `cpu.weight` for these shares: `1 + ((shares - 2) * 9999) / 262142`, the
    /// formula Kubernetes and runc used for years (1024 shares → 39, 2 → 1, 262144 → 10000).
    /// Newer runc releases moved to a curve that maps 1024 to 100; we keep the Kubernetes one
    /// so the numbers match what its conformance tests expect.
    pub fn v2_weight(&self) -> u64 {
        let shares = self.shares.clamp(MIN_SHARES, MAX_SHARES);
        1 + ((shares - MIN_SHARES) * 9999) / (MAX_SHARES - MIN_SHARES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MI: u64 = 1024 * 1024;

    #[test]
    fn kubernetes_contract_values() {
        let limits = Limits::from_kubernetes(Some(128 * MI), Some(1000), Some(125), Some(100));
        assert_eq!(limits.memory_max, Some(134_217_728));
        assert_eq!(
            limits.cpu_quota,
            Some(CpuQuota {
                quota_us: 100_000,
                period_us: 100_000
            })
        );
        assert_eq!(limits.cpu_weight, Some(CpuWeight { shares: 128 }));
        assert_eq!(limits.pids_max, Some(100));
    }

    #[test]
    fn request_defaults_to_limit() {
        let limits = Limits::from_kubernetes(None, Some(500), None, None);
        assert_eq!(limits.cpu_weight, Some(CpuWeight { shares: 512 }));
        assert_eq!(limits.cpu_quota.map(|q| q.quota_us), Some(50_000));
    }

    #[test]
    fn no_cpu_resources_get_min_shares_and_no_quota() {
        let limits = Limits::from_kubernetes(None, None, None, None);
        assert_eq!(
            limits,
            Limits {
                cpu_weight: Some(CpuWeight { shares: 2 }),
                ..Limits::default()
            }
        );
    }

    #[test]
    fn zero_means_unset_like_kubernetes() {
        let limits = Limits::from_kubernetes(Some(0), Some(0), Some(0), None);
        assert_eq!(limits.memory_max, None);
        assert_eq!(limits.cpu_quota, None);
        assert_eq!(limits.cpu_weight, Some(CpuWeight { shares: 2 }));
        // An explicit zero request does not fall back to the limit.
        let limits = Limits::from_kubernetes(None, Some(2000), Some(0), None);
        assert_eq!(limits.cpu_weight, Some(CpuWeight { shares: 2 }));
    }

    #[test]
    fn quota_has_a_floor_of_one_millisecond() {
        assert_eq!(CpuQuota::from_millis(1).quota_us, 1_000);
        assert_eq!(CpuQuota::from_millis(10).quota_us, 1_000);
        assert_eq!(CpuQuota::from_millis(11).quota_us, 1_100);
        assert_eq!(CpuQuota::from_millis(2500).v2_line(), "250000 100000");
    }

    #[test]
    fn shares_clamp_and_weights() {
        assert_eq!(CpuWeight::from_millis(1).shares, 2);
        assert_eq!(CpuWeight::from_millis(1000).shares, 1024);
        assert_eq!(CpuWeight::from_millis(1_000_000).shares, MAX_SHARES);
        assert_eq!(CpuWeight { shares: 1024 }.v2_weight(), 39);
        assert_eq!(CpuWeight { shares: 128 }.v2_weight(), 5);
        assert_eq!(CpuWeight { shares: 2 }.v2_weight(), 1);
        assert_eq!(CpuWeight { shares: MAX_SHARES }.v2_weight(), 10_000);
    }

    proptest! {
        #[test]
        fn conversions_stay_in_kernel_ranges(millis in any::<u64>()) {
            let weight = CpuWeight::from_millis(millis);
            prop_assert!((MIN_SHARES..=MAX_SHARES).contains(&weight.shares));
            prop_assert!((1..=10_000).contains(&weight.v2_weight()));
            let quota = CpuQuota::from_millis(millis);
            prop_assert!(quota.quota_us >= KUBERNETES_MIN_QUOTA_US);
            prop_assert_eq!(quota.period_us, KUBERNETES_CPU_PERIOD_US);
        }

        #[test]
        fn conversions_are_monotonic(a in 0u64..10_000_000, b in 0u64..10_000_000) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(CpuWeight::from_millis(lo).shares <= CpuWeight::from_millis(hi).shares);
            prop_assert!(
                CpuWeight::from_millis(lo).v2_weight() <= CpuWeight::from_millis(hi).v2_weight()
            );
            prop_assert!(CpuQuota::from_millis(lo).quota_us <= CpuQuota::from_millis(hi).quota_us);
        }
    }
}
