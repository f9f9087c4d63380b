//! Revision → [`InstanceSpec`]: the translation from the Knative/Kubernetes container fields to
//! the plain values a runtime needs (quantities as numbers, probes with their defaults, the
//! user). Pure; validation already refused what cannot be translated, so anything odd left
//! here falls back to the runtime's defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe as K8sProbe};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nimbus_api::Revision;
use nimbus_api::constants::*;
use nimbus_api::duration::parse_duration;
use nimbus_api::k8s_openapi;
use nimbus_api::quantity::{parse_bytes, parse_millis};
use nimbus_runtime::{
    InstanceSpec, Probe, ProbeAction, Probes, Protocol, Resources, RevisionKey, Seccomp, Security,
};

/// What a runtime needs to start an instance of `rev`.
pub(crate) fn instance_spec(rev: &Revision, class: &str) -> InstanceSpec {
    let c = rev.spec.containers.first().cloned().unwrap_or_default();
    let port = c.ports.as_deref().and_then(|p| p.first());
    let protocol = match port.and_then(|p| p.name.as_deref()) {
        Some("h2c") => Protocol::H2c,
        _ => Protocol::Http1,
    };
    let startup_timeout = rev
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_PROGRESS_DEADLINE))
        .and_then(|d| parse_duration(d).ok())
        .unwrap_or(Duration::from_secs(DEFAULT_PROGRESS_DEADLINE_SECONDS));
    let labels = rev.metadata.labels.clone().unwrap_or_default();
    let own_port = OwnPort {
        number: port.map(|p| p.container_port),
    };
    let (run_as_user, run_as_group) = user(rev, &c);
    let (volumes, volume_mounts) = crate::volumes::of(rev, &c);
    InstanceSpec {
        revision: RevisionKey::new(rev.namespace(), rev.name()),
        runtime_class: class.to_string(),
        image: c.image.clone(),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env: env(rev, &c),
        env_refs: crate::env_refs::of(&c),
        volumes,
        volume_mounts,
        working_dir: c.working_dir.clone().map(Into::into),
        protocol,
        container_port: port.and_then(|p| u16::try_from(p.container_port).ok()),
        startup_timeout,
        socket_activation: annotation_flag(rev, ANNOTATION_SOCKET_ACTIVATION),
        labels,
        resources: resources(rev, &c),
        probes: Probes {
            readiness: c.readiness_probe.as_ref().and_then(|p| probe(p, &own_port)),
            liveness: c.liveness_probe.as_ref().and_then(|p| probe(p, &own_port)),
            startup: c.startup_probe.as_ref().and_then(|p| probe(p, &own_port)),
        },
        run_as_user,
        run_as_group,
        run_as_non_root: run_as_non_root(rev, &c),
        security: security(rev, &c),
        termination_grace: None,
        request_timeout: rev
            .spec
            .timeout_seconds
            .and_then(|t| u64::try_from(t).ok())
            .map(Duration::from_secs),
        container_concurrency: rev
            .spec
            .container_concurrency
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
        allowed_outbound_hosts: annotation(rev, ANNOTATION_ALLOWED_OUTBOUND_HOSTS)
            .map(|hosts| {
                hosts
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The manifest's literal env (references are in `env_refs`), then Knative's runtime contract
/// (`K_SERVICE`, `K_CONFIGURATION`, `K_REVISION`; empty when the revision has no such owner),
/// built here once for every runtime. Runtimes add only `PORT`, which they choose.
fn env(rev: &Revision, c: &Container) -> Vec<(String, String)> {
    let manifest = c
        .env
        .iter()
        .flatten()
        .filter(|e| crate::env_refs::is_literal(e))
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()));
    let contract = nimbus_api::runtime::contract_env(rev)
        .into_iter()
        .map(|(name, value)| (name.to_string(), value));
    manifest.chain(contract).collect()
}

fn annotation<'a>(rev: &'a Revision, key: &str) -> Option<&'a str> {
    rev.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn annotation_flag(rev: &Revision, key: &str) -> bool {
    annotation(rev, key) == Some("true")
}

/// Limits and requests as numbers, plus the `nimbus.dev/pids-limit` annotation.
fn resources(rev: &Revision, c: &Container) -> Resources {
    let r = c.resources.as_ref();
    let get = |which: Option<&BTreeMap<String, Quantity>>, name: &str| {
        which.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let limits = r.and_then(|r| r.limits.as_ref());
    let requests = r.and_then(|r| r.requests.as_ref());
    let bytes = |q: Option<String>| q.and_then(|q| parse_bytes(&q).ok());
    let millis = |q: Option<String>| q.and_then(|q| parse_millis(&q).ok());
    let pids_limit = annotation(rev, ANNOTATION_PIDS_LIMIT).and_then(|v| v.parse().ok());
    Resources {
        memory_limit: bytes(get(limits, "memory")),
        memory_request: bytes(get(requests, "memory")),
        cpu_limit_millis: millis(get(limits, "cpu")),
        // Kubernetes: a limit without a request requests the limit.
        cpu_request_millis: millis(get(requests, "cpu").or_else(|| get(limits, "cpu"))),
        pids_limit,
    }
}

/// `runAsUser`/`runAsGroup`: the container's security context wins over the pod's.
fn user(rev: &Revision, c: &Container) -> (Option<u32>, Option<u32>) {
    let container = c.security_context.as_ref();
    let pod = rev.spec.security_context.as_ref();
    let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let uid = container
        .and_then(|s| s.run_as_user)
        .or_else(|| pod.and_then(|s| s.run_as_user));
    let gid = container
        .and_then(|s| s.run_as_group)
        .or_else(|| pod.and_then(|s| s.run_as_group));
    (id(uid), id(gid))
}

/// `runAsNonRoot`: the container's security context wins over the pod's.
fn run_as_non_root(rev: &Revision, c: &Container) -> bool {
    let container = c.security_context.as_ref().and_then(|s| s.run_as_non_root);
    let pod = rev
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root);
    container.or(pod).unwrap_or(false)
}

/// The rest of the security context (validation refused what no runtime honours).
fn security(rev: &Revision, c: &Container) -> Security {
    let container = c.security_context.as_ref();
    let pod = rev.spec.security_context.as_ref();
    let caps = container.and_then(|s| s.capabilities.as_ref());
    let seccomp = container
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod.and_then(|s| s.seccomp_profile.as_ref()));
    Security {
        supplemental_groups: pod
            .and_then(|s| s.supplemental_groups.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|g| u32::try_from(*g).ok())
            .collect(),
        allow_privilege_escalation: container
            .and_then(|s| s.allow_privilege_escalation)
            .unwrap_or(false),
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        read_only_root_filesystem: container
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        seccomp: match seccomp.map(|p| p.type_.as_str()) {
            Some("Unconfined") => Seccomp::Unconfined,
            _ => Seccomp::RuntimeDefault,
        },
        host_network: annotation_flag(rev, ANNOTATION_HOST_NETWORK),
    }
}

/// The container's own serving port, which probes address by number, by name, or by omission.
struct OwnPort {
    number: Option<i32>,
}

impl OwnPort {
    /// `None` for the instance's serving port, else the literal port. Validation allows names
    /// only for the serving port.
    fn resolve(&self, port: &IntOrString) -> Option<u16> {
        match port {
            IntOrString::Int(0) => None,
            IntOrString::Int(p) if Some(*p) == self.number => None,
            IntOrString::Int(p) => u16::try_from(*p).ok(),
            IntOrString::String(_) => None,
        }
    }
}

/// One Kubernetes probe with Kubernetes' defaults; `None` if it has no supported handler.
fn probe(p: &K8sProbe, port: &OwnPort) -> Option<Probe> {
    let action = if let Some(http) = &p.http_get {
        ProbeAction::HttpGet {
            path: http.path.clone().unwrap_or_else(|| "/".into()),
            port: port.resolve(&http.port),
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        }
    } else if let Some(tcp) = &p.tcp_socket {
        ProbeAction::TcpSocket {
            port: port.resolve(&tcp.port),
        }
    } else if let Some(exec) = &p.exec {
        ProbeAction::Exec {
            command: exec.command.clone().unwrap_or_default(),
        }
    } else {
        return None;
    };
    let secs = |v: Option<i32>, default: u64| {
        v.and_then(|v| u64::try_from(v).ok())
            .map_or(Duration::from_secs(default), Duration::from_secs)
    };
    let count = |v: Option<i32>, default: u32| {
        v.and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    Some(Probe {
        action,
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10),
        timeout: secs(p.timeout_seconds, 1),
        success_threshold: count(p.success_threshold, 1),
        failure_threshold: count(p.failure_threshold, 3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(yaml_container: serde_json::Value) -> Revision {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {"name": "hello-00001", "namespace": "default",
                         "annotations": {"nimbus.dev/pids-limit": "64"}},
            "spec": {"containers": [yaml_container], "securityContext": {"runAsUser": 7}}
        }))
        .unwrap()
    }

    #[test]
    fn resources_become_numbers() {
        let rev = revision(serde_json::json!({
            "image": "x",
            "resources": {"limits": {"memory": "128Mi", "cpu": "1"}, "requests": {"cpu": "125m"}}
        }));
        let r = instance_spec(&rev, "oci").resources;
        assert_eq!(r.memory_limit, Some(134_217_728));
        assert_eq!(r.cpu_limit_millis, Some(1000));
        assert_eq!(r.cpu_request_millis, Some(125));
        assert_eq!(r.pids_limit, Some(64));
    }

    #[test]
    fn a_cpu_limit_alone_is_also_the_request() {
        let rev =
            revision(serde_json::json!({"image": "x", "resources": {"limits": {"cpu": "500m"}}}));
        assert_eq!(
            instance_spec(&rev, "oci").resources.cpu_request_millis,
            Some(500)
        );
    }

    #[test]
    fn probes_get_kubernetes_defaults_and_own_port_is_none() {
        let rev = revision(serde_json::json!({
            "image": "x",
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
            "livenessProbe": {"tcpSocket": {"port": 9090}, "periodSeconds": 2, "failureThreshold": 1},
            "startupProbe": {"exec": {"command": ["true"]}}
        }));
        let p = instance_spec(&rev, "oci").probes;
        let readiness = p.readiness.unwrap();
        assert_eq!(
            readiness.action,
            ProbeAction::HttpGet {
                path: "/ready".into(),
                port: None,
                headers: vec![]
            }
        );
        assert_eq!(readiness.period, Duration::from_secs(10));
        assert_eq!(readiness.failure_threshold, 3);
        let liveness = p.liveness.unwrap();
        assert_eq!(liveness.action, ProbeAction::TcpSocket { port: Some(9090) });
        assert_eq!(
            (liveness.period, liveness.failure_threshold),
            (Duration::from_secs(2), 1)
        );
        assert_eq!(
            p.startup.unwrap().action,
            ProbeAction::Exec {
                command: vec!["true".into()]
            }
        );
    }

    #[test]
    fn serving_fields_and_outbound_hosts() {
        let mut rev = revision(serde_json::json!({"image": "x"}));
        rev.spec.timeout_seconds = Some(30);
        rev.spec.container_concurrency = Some(4);
        rev.metadata.annotations.get_or_insert_default().insert(
            ANNOTATION_ALLOWED_OUTBOUND_HOSTS.into(),
            "example.com, api.local:8443,".into(),
        );
        let s = instance_spec(&rev, "wasm");
        assert_eq!(s.request_timeout, Some(Duration::from_secs(30)));
        assert_eq!(s.container_concurrency, 4);
        assert_eq!(s.allowed_outbound_hosts, ["example.com", "api.local:8443"]);
    }

    #[test]
    fn the_runtime_contract_env_follows_the_manifest_env() {
        let mut rev =
            revision(serde_json::json!({"image": "x", "env": [{"name": "A", "value": "1"}]}));
        rev.metadata.labels = Some([(LABEL_CONFIGURATION.to_string(), "hello".to_string())].into());
        let names: Vec<(String, String)> = instance_spec(&rev, "oci").env;
        assert_eq!(
            names,
            [
                ("A".into(), "1".into()),
                ("K_SERVICE".into(), "".into()),
                ("K_CONFIGURATION".into(), "hello".into()),
                ("K_REVISION".into(), "hello-00001".into()),
            ]
        );
    }

    #[test]
    fn container_user_wins_over_pod_user() {
        let rev = revision(serde_json::json!({"image": "x"}));
        assert_eq!(instance_spec(&rev, "oci").run_as_user, Some(7));
        let rev = revision(
            serde_json::json!({"image": "x", "securityContext": {"runAsUser": 1000, "runAsGroup": 1000}}),
        );
        let s = instance_spec(&rev, "oci");
        assert_eq!((s.run_as_user, s.run_as_group), (Some(1000), Some(1000)));
    }

    #[test]
    fn run_as_non_root_comes_from_the_container_else_the_pod() {
        let rev = revision(serde_json::json!({"image": "x"}));
        assert!(!instance_spec(&rev, "oci").run_as_non_root);
        let mut rev = revision(serde_json::json!({"image": "x"}));
        rev.spec.security_context.as_mut().unwrap().run_as_non_root = Some(true);
        assert!(instance_spec(&rev, "oci").run_as_non_root);
        rev.spec.containers[0].security_context = Some(Default::default());
        rev.spec.containers[0]
            .security_context
            .as_mut()
            .unwrap()
            .run_as_non_root = Some(false);
        assert!(
            !instance_spec(&rev, "oci").run_as_non_root,
            "the container's wins"
        );
    }
}
