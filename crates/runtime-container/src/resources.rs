//! `linux.resources` of the runtime spec from the revision's requests and limits, converted by
//! [`nimbus_cgroup::Limits::from_kubernetes`] — the one place that knows the kubelet's rules — so
//! a container's cgroup gets the same values whether runc or the supervisor writes them. The
//! pids limit is the revision's, else the configured default. Device access is denied except for
//! runc's default devices. Pure; no I/O.

use nimbus_cgroup::Limits;
use nimbus_runtime::Resources;
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder,
};

/// The whole `linux.resources` object.
pub fn linux_resources(
    resources: &Resources,
    default_pids_limit: u64,
) -> Result<LinuxResources, OciSpecError> {
    let limits = Limits::from_kubernetes(
        resources.memory_limit,
        resources.cpu_limit_millis,
        resources.cpu_request_millis,
        Some(resources.pids_limit.unwrap_or(default_pids_limit)),
    );
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?;
    let mut builder = LinuxResourcesBuilder::default().devices(vec![deny_all]);
    if let Some(pids) = limits.pids_max {
        builder = builder.pids(LinuxPidsBuilder::default().limit(to_i64(pids)).build()?);
    }
    if let Some(bytes) = limits.memory_max {
        builder = builder.memory(LinuxMemoryBuilder::default().limit(to_i64(bytes)).build()?);
    }
    let explicit = resources.cpu_request_millis.is_some() || resources.cpu_limit_millis.is_some();
    if explicit {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(weight) = limits.cpu_weight {
            cpu = cpu.shares(weight.shares);
        }
        if let Some(q) = limits.cpu_quota {
            cpu = cpu.quota(to_i64(q.quota_us)).period(q.period_us);
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
