//! Which control files to write, in which order, to apply [`Limits`] through one controller of
//! one cgroup version. Pure: the caller writes them. Unset limits are written as the kernel's
//! defaults so a reused cgroup loses limits it no longer has. Swap limits
//! (`memory.memsw.limit_in_bytes`, `memory.swap.max`) are never touched.

use crate::limits::{DEFAULT_SHARES, DEFAULT_WEIGHT, KUBERNETES_CPU_PERIOD_US};
use crate::{CgroupVersion, Controller, Limits};

/// One write to a control file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Setting {
    pub file: &'static str,
    pub value: String,
    /// Skip silently when the file does not exist (a feature of newer kernels).
    pub optional: bool,
}

/// The writes for `controller` on a `version` hierarchy.
pub(crate) fn settings(
    controller: Controller,
    version: CgroupVersion,
    limits: &Limits,
) -> Vec<Setting> {
    match (controller, version) {
        (Controller::Memory, CgroupVersion::V1) => memory_v1(limits),
        (Controller::Memory, CgroupVersion::V2) => memory_v2(limits),
        (Controller::Cpu, CgroupVersion::V1) => cpu_v1(limits),
        (Controller::Cpu, CgroupVersion::V2) => cpu_v2(limits),
        (Controller::Pids, _) => vec![required("pids.max", or_max(limits.pids_max))],
    }
}

fn memory_v1(limits: &Limits) -> Vec<Setting> {
    let value = limits.memory_max.map_or("-1".to_owned(), |b| b.to_string());
    vec![required("memory.limit_in_bytes", value)]
}

/// `memory.oom.group` makes the kernel kill the whole instance on OOM, not one process of it.
fn memory_v2(limits: &Limits) -> Vec<Setting> {
    vec![
        required("memory.max", or_max(limits.memory_max)),
        optional("memory.oom.group", "1".to_owned()),
    ]
}

/// The quota is lifted before the period changes, so no intermediate state is rejected
/// against the new period.
fn cpu_v1(limits: &Limits) -> Vec<Setting> {
    let period = limits
        .cpu_quota
        .map_or(KUBERNETES_CPU_PERIOD_US, |q| q.period_us);
    let shares = limits.cpu_weight.map_or(DEFAULT_SHARES, |w| w.shares);
    let mut out = vec![
        required("cpu.cfs_quota_us", "-1".to_owned()),
        required("cpu.cfs_period_us", period.to_string()),
    ];
    if let Some(quota) = limits.cpu_quota {
        out.push(required("cpu.cfs_quota_us", quota.quota_us.to_string()));
    }
    out.push(required("cpu.shares", shares.to_string()));
    out
}

fn cpu_v2(limits: &Limits) -> Vec<Setting> {
    let max = limits.cpu_quota.map_or_else(
        || format!("max {KUBERNETES_CPU_PERIOD_US}"),
        |q| q.v2_line(),
    );
    let weight = limits.cpu_weight.map_or(DEFAULT_WEIGHT, |w| w.v2_weight());
    vec![
        required("cpu.max", max),
        required("cpu.weight", weight.to_string()),
    ]
}

fn or_max(value: Option<u64>) -> String {
    value.map_or("max".to_owned(), |v| v.to_string())
}

fn required(file: &'static str, value: String) -> Setting {
    Setting {
        file,
        value,
        optional: false,
    }
}

fn optional(file: &'static str, value: String) -> Setting {
    Setting {
        file,
        value,
        optional: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(controller: Controller, version: CgroupVersion, limits: &Limits) -> Vec<String> {
        settings(controller, version, limits)
            .into_iter()
            .map(|s| format!("{}={}", s.file, s.value))
            .collect()
    }

    fn contract() -> Limits {
        Limits::from_kubernetes(Some(128 << 20), Some(1000), Some(125), Some(10))
    }

    #[test]
    fn v1_values_match_kubernetes() {
        let l = contract();
        assert_eq!(
            written(Controller::Memory, CgroupVersion::V1, &l),
            ["memory.limit_in_bytes=134217728"]
        );
        assert_eq!(
            written(Controller::Cpu, CgroupVersion::V1, &l),
            [
                "cpu.cfs_quota_us=-1",
                "cpu.cfs_period_us=100000",
                "cpu.cfs_quota_us=100000",
                "cpu.shares=128"
            ]
        );
        assert_eq!(
            written(Controller::Pids, CgroupVersion::V1, &l),
            ["pids.max=10"]
        );
    }

    #[test]
    fn v2_values_match_kubernetes() {
        let l = contract();
        assert_eq!(
            written(Controller::Memory, CgroupVersion::V2, &l),
            ["memory.max=134217728", "memory.oom.group=1"]
        );
        assert_eq!(
            written(Controller::Cpu, CgroupVersion::V2, &l),
            ["cpu.max=100000 100000", "cpu.weight=5"]
        );
        assert!(settings(Controller::Memory, CgroupVersion::V2, &l)[1].optional);
    }

    #[test]
    fn unset_limits_reset_to_kernel_defaults() {
        let l = Limits::default();
        assert_eq!(
            written(Controller::Memory, CgroupVersion::V1, &l),
            ["memory.limit_in_bytes=-1"]
        );
        assert_eq!(
            written(Controller::Cpu, CgroupVersion::V1, &l),
            [
                "cpu.cfs_quota_us=-1",
                "cpu.cfs_period_us=100000",
                "cpu.shares=1024"
            ]
        );
        assert_eq!(
            written(Controller::Cpu, CgroupVersion::V2, &l),
            ["cpu.max=max 100000", "cpu.weight=100"]
        );
        assert_eq!(
            written(Controller::Pids, CgroupVersion::V2, &l),
            ["pids.max=max"]
        );
        assert_eq!(
            written(Controller::Memory, CgroupVersion::V2, &l)[0],
            "memory.max=max"
        );
    }
}
