//! `linux.resources` of the runtime spec from the revision's requests and limits, converted
//! exactly as the kubelet converts them: memory limit in bytes; CPU limit as a CFS quota of
//! `millis × 100` µs per 100 ms period (at least 1 ms); CPU request as `cpu.shares` of
//! `millis × 1024 / 1000`, at least 2 (runc turns shares into `cpu.weight` on cgroup v2 the
//! same way the kubelet does). A CPU limit without a request uses the limit as the request
//! (Kubernetes' defaulting). The pids limit is the revision's, else the configured default.
//! Device access is denied except for runc's default devices. Pure; no I/O.

use nimbus_runtime::Resources;
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder,
};

/// The CFS period the kubelet uses (100 ms).
pub const CFS_PERIOD_US: u64 = 100_000;
/// The kubelet's smallest quota (1 ms).
const MIN_QUOTA_US: i64 = 1_000;
/// `cpu.shares` bounds.
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;

/// CFS quota (µs per [`CFS_PERIOD_US`]) for a CPU limit in millicores.
pub fn cpu_quota(limit_millis: u64) -> i64 {
    let quota = limit_millis.saturating_mul(CFS_PERIOD_US) / 1000;
    i64::try_from(quota).unwrap_or(i64::MAX).max(MIN_QUOTA_US)
}

/// `cpu.shares` for a CPU request in millicores.
pub fn cpu_shares(request_millis: u64) -> u64 {
    (request_millis.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The whole `linux.resources` object.
pub fn linux_resources(
    resources: &Resources,
    default_pids_limit: u64,
) -> Result<LinuxResources, OciSpecError> {
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?;
    let pids = resources.pids_limit.unwrap_or(default_pids_limit);
    let mut builder = LinuxResourcesBuilder::default()
        .devices(vec![deny_all])
        .pids(LinuxPidsBuilder::default().limit(to_i64(pids)).build()?);
    if let Some(bytes) = resources.memory_limit {
        builder = builder.memory(LinuxMemoryBuilder::default().limit(to_i64(bytes)).build()?);
    }
    let request = resources.cpu_request_millis.or(resources.cpu_limit_millis);
    if request.is_some() || resources.cpu_limit_millis.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(millis) = request {
            cpu = cpu.shares(cpu_shares(millis));
        }
        if let Some(millis) = resources.cpu_limit_millis {
            cpu = cpu.quota(cpu_quota(millis)).period(CFS_PERIOD_US);
        }
        builder = builder.cpu(cpu.build()?);
    }
    builder.build()
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_conversions() {
        assert_eq!(cpu_quota(1000), 100_000);
        assert_eq!(cpu_quota(250), 25_000);
        assert_eq!(cpu_quota(1), MIN_QUOTA_US);
        assert_eq!(cpu_shares(125), 128);
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1_000_000), MAX_SHARES);
    }

    #[test]
    fn the_contract_example_serializes_as_runc_expects() {
        let resources = Resources {
            memory_limit: Some(128 * 1024 * 1024),
            cpu_limit_millis: Some(1000),
            cpu_request_millis: Some(125),
            ..Default::default()
        };
        let json = serde_json::to_value(linux_resources(&resources, 4096).unwrap()).unwrap();
        assert_eq!(json["memory"]["limit"], 134_217_728);
        assert_eq!(json["cpu"]["quota"], 100_000);
        assert_eq!(json["cpu"]["period"], 100_000);
        assert_eq!(json["cpu"]["shares"], 128);
        assert_eq!(json["pids"]["limit"], 4096);
        assert_eq!(json["devices"][0]["allow"], false);
        assert_eq!(json["devices"][0]["access"], "rwm");
    }

    #[test]
    fn unset_values_stay_unset() {
        let none = linux_resources(&Resources::default(), 64).unwrap();
        assert!(none.memory().is_none());
        assert!(none.cpu().is_none());
        assert_eq!(none.pids().as_ref().unwrap().limit(), 64);
        let own = Resources {
            pids_limit: Some(10),
            ..Default::default()
        };
        let own = linux_resources(&own, 64).unwrap();
        assert_eq!(own.pids().as_ref().unwrap().limit(), 10);
    }

    #[test]
    fn a_limit_alone_is_also_the_request() {
        let resources = Resources {
            cpu_limit_millis: Some(500),
            ..Default::default()
        };
        let cpu = linux_resources(&resources, 1)
            .unwrap()
            .cpu()
            .clone()
            .unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50_000));
    }
}
