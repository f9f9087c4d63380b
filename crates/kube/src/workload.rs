//! A Revision as Kubernetes workload, the way Knative's revision reconciler makes it: a
//! Deployment `<revision>-deployment` whose pods run the revision's PodSpec with Knative's
//! runtime contract, and a Service `<revision>` selecting them (its EndpointSlices are what the
//! router sends requests to). Both are owned by the Revision, so the cluster's garbage
//! collector removes them with it. Unlike Knative, no `queue-proxy` sidecar is added: the
//! Nimbus router sees every request, so it counts, limits and drains without one.
//!
//! Pure: everything here is a function of the Revision.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, Probe, Service, ServicePort,
    ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nimbus_api::constants::{LABEL_REVISION, LABEL_REVISION_UID, LABEL_ROUTING_STATE};
use nimbus_api::runtime::runtime_choice;
use nimbus_api::{Kind, Revision};

use crate::install::{LABEL_MANAGED_BY, MANAGER};

/// The port a container serves on when it names none (Knative's default).
pub const DEFAULT_PORT: i32 = 8080;

/// The Deployment of a revision.
pub fn deployment_name(revision: &str) -> String {
    format!("{revision}-deployment")
}

/// The port the serving container listens on.
pub fn serving_port(rev: &Revision) -> i32 {
    rev.spec
        .containers
        .first()
        .and_then(|c| c.ports.as_ref()?.first())
        .map_or(DEFAULT_PORT, |p| p.container_port)
}

/// Labels on the Deployment, its pods and the Service: the revision's (without the routing
/// state, which changes) plus its own name and uid.
fn labels(rev: &Revision) -> BTreeMap<String, String> {
    let mut labels = rev.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_ROUTING_STATE);
    labels.insert(LABEL_REVISION.into(), rev.name().into());
    if let Some(uid) = &rev.metadata.uid {
        labels.insert(LABEL_REVISION_UID.into(), uid.clone());
    }
    labels.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
    labels
}

fn meta(rev: &Revision, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(rev.namespace().to_string()),
        labels: Some(labels(rev)),
        owner_references: Some(vec![OwnerReference {
            api_version: Kind::Revision.api_version().into(),
            kind: Kind::Revision.as_str().into(),
            name: rev.name().into(),
            uid: rev.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..Default::default()
    }
}

/// The selector of the revision's pods.
pub fn selector(rev: &Revision) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_REVISION.to_string(), rev.name().to_string())])
}

/// The Deployment running `replicas` pods of the revision.
pub fn deployment(rev: &Revision, replicas: u32) -> Deployment {
    Deployment {
        metadata: meta(rev, deployment_name(rev.name())),
        spec: DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector(rev)),
                ..Default::default()
            },
            // Knative's: new pods come up before old ones go (there are none: revisions are
            // immutable; this matters only for pod replacement).
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            progress_deadline_seconds: Some(600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(rev)),
                    annotations: rev.metadata.annotations.clone(),
                    ..Default::default()
                }),
                spec: Some(pod_spec(rev)),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Label of a revision's Service (and so of its EndpointSlices, which copy it) when a pod is
/// ready as soon as its serving port accepts connections: no readiness probe but the default
/// TCP one, no startup probe. The routers then connect to a starting pod themselves instead of
/// waiting for the kubelet's next probe, up to a second later (Knative's activator probes pods
/// the same way).
pub const LABEL_READY_ON_ACCEPT: &str = "nimbus.dev/ready-on-accept";

/// Whether the revision's serving container is ready once its port accepts (see
/// [`LABEL_READY_ON_ACCEPT`]).
pub fn ready_on_accept(rev: &Revision) -> bool {
    // The serving container is the first, as for `serving_port`.
    rev.spec.containers.first().is_some_and(|c| {
        c.startup_probe.is_none()
            && c.readiness_probe.as_ref().is_none_or(|p| {
                p.tcp_socket.is_some()
                    && p.http_get.is_none()
                    && p.exec.is_none()
                    && p.grpc.is_none()
                    && p.initial_delay_seconds.unwrap_or(0) == 0
            })
    })
}

/// The Service whose EndpointSlices list the revision's ready pods.
pub fn service(rev: &Revision) -> Service {
    let port = serving_port(rev);
    let mut metadata = meta(rev, rev.name().to_string());
    if ready_on_accept(rev) {
        metadata
            .labels
            .get_or_insert_default()
            .insert(LABEL_READY_ON_ACCEPT.into(), "true".into());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            selector: Some(selector(rev)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The revision's PodSpec: its containers with the runtime contract, every pass-through
/// PodSpec field, and Knative's defaults (no service links; grace period = the request
/// timeout, so draining pods finish their requests).
pub fn pod_spec(rev: &Revision) -> PodSpec {
    let s = &rev.spec;
    let choice = runtime_choice(rev.metadata.annotations.as_ref(), s);
    let port = serving_port(rev);
    let containers = s
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| container(rev, c, (i == 0).then_some(port)))
        .collect();
    PodSpec {
        containers,
        init_containers: s.init_containers.clone(),
        volumes: s.volumes.clone(),
        service_account_name: s.service_account_name.clone(),
        image_pull_secrets: s.image_pull_secrets.clone(),
        enable_service_links: Some(s.enable_service_links.unwrap_or(false)),
        automount_service_account_token: s.automount_service_account_token,
        node_selector: s.node_selector.clone(),
        tolerations: s.tolerations.clone(),
        affinity: s.affinity.clone(),
        security_context: s.security_context.clone(),
        priority_class_name: s.priority_class_name.clone(),
        scheduler_name: s.scheduler_name.clone(),
        host_aliases: s.host_aliases.clone(),
        topology_spread_constraints: s.topology_spread_constraints.clone(),
        dns_policy: s.dns_policy.clone(),
        dns_config: s.dns_config.clone(),
        runtime_class_name: choice.runtime_class,
        termination_grace_period_seconds: Some(s.timeout_seconds_or_default()),
        ..Default::default()
    }
}

/// One container; the serving one (`port`) gets the port, `PORT` and a readiness probe on it.
fn container(rev: &Revision, c: &Container, port: Option<i32>) -> Container {
    let mut c = c.clone();
    let env = c.env.get_or_insert_default();
    for (name, value) in nimbus_api::runtime::contract_env(rev) {
        env.push(EnvVar {
            name: name.into(),
            value: Some(value),
            ..Default::default()
        });
    }
    let Some(port) = port else {
        return c;
    };
    env.push(EnvVar {
        name: "PORT".into(),
        value: Some(port.to_string()),
        ..Default::default()
    });
    let named = c
        .ports
        .as_ref()
        .and_then(|p| p.first()?.name.clone())
        .unwrap_or_else(|| "user-port".into());
    c.ports = Some(vec![ContainerPort {
        name: Some(named),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }]);
    for probe in [
        &mut c.readiness_probe,
        &mut c.liveness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        aim_at(probe, port);
    }
    if c.readiness_probe.is_none() {
        c.readiness_probe = Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            period_seconds: Some(1),
            failure_threshold: Some(3),
            ..Default::default()
        });
    }
    c
}

/// A probe without a port (Knative lets users leave it out) probes the serving port.
fn aim_at(probe: &mut Probe, port: i32) {
    let unset = |p: &IntOrString| matches!(p, IntOrString::Int(0));
    if let Some(h) = probe.http_get.as_mut()
        && unset(&h.port)
    {
        h.port = IntOrString::Int(port);
    }
    if let Some(t) = probe.tcp_socket.as_mut()
        && unset(&t.port)
    {
        t.port = IntOrString::Int(port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::parse::parse_manifests;

    fn revision(extra: &str) -> Revision {
        let yaml = format!(
            "apiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata:\n  name: hello-00001\n  namespace: apps\n  uid: u-1\n  labels: {{serving.knative.dev/configuration: hello, serving.knative.dev/service: hello, serving.knative.dev/routingState: active}}\nspec:\n{extra}  containers:\n    - image: example.com/hello\n      env: [{{name: TARGET, value: x}}]\n"
        );
        match parse_manifests("t", &yaml).unwrap().remove(0) {
            nimbus_api::Object::Revision(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_pods_get_knatives_runtime_contract_and_no_sidecar() {
        let d = deployment(&revision(""), 3);
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(3));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.containers.len(), 1, "no queue-proxy");
        let c = &pod.containers[0];
        let env: Vec<(String, String)> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            env,
            [
                ("TARGET".into(), "x".into()),
                ("K_SERVICE".into(), "hello".into()),
                ("K_CONFIGURATION".into(), "hello".into()),
                ("K_REVISION".into(), "hello-00001".into()),
                ("PORT".into(), "8080".into()),
            ]
        );
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
        let probe = c.readiness_probe.as_ref().unwrap();
        assert_eq!(
            probe.tcp_socket.as_ref().unwrap().port,
            IntOrString::Int(8080)
        );
        assert_eq!(pod.enable_service_links, Some(false));
        assert_eq!(pod.termination_grace_period_seconds, Some(300));
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels[LABEL_REVISION], "hello-00001");
        assert!(
            !labels.contains_key(LABEL_ROUTING_STATE),
            "it changes; pods must not"
        );
    }

    #[test]
    fn pod_spec_fields_pass_through_and_runtime_classes_keep_their_meaning() {
        let rev = revision(
            "  runtimeClassName: gvisor\n  nodeSelector: {disk: ssd}\n  timeoutSeconds: 30\n",
        );
        let pod = pod_spec(&rev);
        assert_eq!(pod.runtime_class_name.as_deref(), Some("gvisor"));
        assert_eq!(pod.node_selector.unwrap()["disk"], "ssd");
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        let legacy = revision("  runtimeClassName: oci\n");
        assert_eq!(
            pod_spec(&legacy).runtime_class_name,
            None,
            "a Nimbus backend name"
        );
    }

    #[test]
    fn the_service_and_deployment_are_owned_by_the_revision() {
        let rev = revision("");
        let svc = service(&rev);
        assert_eq!(svc.metadata.name.as_deref(), Some("hello-00001"));
        let owner = &svc.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Revision", "u-1")
        );
        let port = &svc.spec.unwrap().ports.unwrap()[0];
        assert_eq!(port.target_port, Some(IntOrString::Int(8080)));
        assert_eq!(
            deployment(&rev, 1).metadata.name.as_deref(),
            Some("hello-00001-deployment")
        );
    }

    #[test]
    fn pods_are_ready_on_accept_only_with_the_default_tcp_readiness() {
        let with = |container: serde_json::Value| -> Revision {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "r-00001", "namespace": "default"},
                "spec": {"containers": [container]}
            }))
            .unwrap()
        };
        let plain = with(serde_json::json!({"image": "x"}));
        assert!(ready_on_accept(&plain));
        assert_eq!(
            service(&plain).metadata.labels.unwrap()[LABEL_READY_ON_ACCEPT],
            "true"
        );
        let tcp =
            with(serde_json::json!({"image": "x", "readinessProbe": {"tcpSocket": {"port": 0}}}));
        assert!(ready_on_accept(&tcp));
        for probe in [
            serde_json::json!({"readinessProbe": {"httpGet": {"path": "/healthz"}}}),
            serde_json::json!({"readinessProbe": {"tcpSocket": {"port": 0}, "initialDelaySeconds": 5}}),
            serde_json::json!({"startupProbe": {"tcpSocket": {"port": 0}}}),
        ] {
            let mut c = serde_json::json!({"image": "x"});
            c.as_object_mut()
                .unwrap()
                .extend(probe.as_object().unwrap().clone());
            let rev = with(c);
            assert!(!ready_on_accept(&rev), "{probe}");
            assert!(
                !service(&rev)
                    .metadata
                    .labels
                    .unwrap_or_default()
                    .contains_key(LABEL_READY_ON_ACCEPT)
            );
        }
    }

    #[test]
    fn secret_and_config_map_references_pass_through_to_the_pod() {
        let rev: Revision = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hello-00001", "namespace": "apps"},
            "spec": {"containers": [{
                "image": "example.com/hello",
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "m", "optional": true}}}
                ],
                "envFrom": [{"secretRef": {"name": "db"}, "prefix": "DB_"}, {"configMapRef": {"name": "cfg"}}]
            }]}
        }))
        .unwrap();
        let original = rev.spec.containers[0].clone();
        let c = &pod_spec(&rev).containers[0];
        assert_eq!(c.env_from, original.env_from);
        let env = c.env.as_ref().unwrap();
        assert_eq!(env[..3], original.env.unwrap()[..]);
        assert!(
            env[3..].iter().all(|e| e.value_from.is_none()),
            "the contract is literal"
        );
    }
}
