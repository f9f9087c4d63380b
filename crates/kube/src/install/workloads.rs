//! The operator's and the router's Deployments and Services. Both run the one `nimbus` image
//! (`nimbus operator`, `nimbus router`), unprivileged (uid 65532, read-only root with an
//! `emptyDir` on `/tmp`, no capabilities), ready when `/healthz` on their named port answers,
//! and know their pod's name and namespace from the downward API (`POD_NAME`,
//! `POD_NAMESPACE`). The operator reads load from the pods behind the router Service's port
//! `admin`; routers send activations to the pods behind the operator Service's port
//! `metrics` (both found through EndpointSlices, as `nimbus operator` and `nimbus router`
//! default to).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    InstallOptions, Manifest, OPERATOR, OPERATOR_METRICS_PORT, ROUTER, ROUTER_ADMIN_PORT,
    ROUTER_REPLICAS, labels, meta, selector,
};

/// The unprivileged user the image declares (`scripts/nimbus-image`).
pub const RUN_AS_USER: i64 = 65532;

/// One component's Deployment, as the two differ.
struct Workload<'a> {
    name: &'static str,
    component: &'static str,
    replicas: i32,
    args: Vec<String>,
    ports: &'a [(&'static str, i32)],
    /// The named port serving `/healthz`.
    health_port: &'static str,
    cpu: &'static str,
    memory: &'static str,
}

pub(super) fn manifests(options: &InstallOptions) -> Vec<Manifest> {
    vec![
        Manifest::of(&operator(options)),
        Manifest::of(&router(options)),
        Manifest::of(&router_service()),
        Manifest::of(&operator_service()),
    ]
}

fn operator(options: &InstallOptions) -> Deployment {
    let ports = options.ports();
    Workload {
        name: OPERATOR,
        component: "operator",
        replicas: 1,
        args: args(&["operator", "--metrics-addr", &addr(ports.operator_metrics)]),
        ports: &[("metrics", ports.operator_metrics)],
        health_port: "metrics",
        cpu: "100m",
        memory: "128Mi",
    }
    .deployment(options)
}

fn router(options: &InstallOptions) -> Deployment {
    let ports = options.ports();
    Workload {
        name: ROUTER,
        component: "router",
        replicas: match options.host_network {
            Some(_) => 1,
            None => ROUTER_REPLICAS,
        },
        args: args(&[
            "router",
            "--http-addr",
            &addr(ports.router_http),
            "--admin-addr",
            &addr(ports.router_admin),
        ]),
        ports: &[("http", ports.router_http), ("admin", ports.router_admin)],
        health_port: "admin",
        cpu: "200m",
        memory: "128Mi",
    }
    .deployment(options)
}

/// The router's Service: port 80 to the routers' HTTP port, on every node's port too, and
/// the admin port the operator reads load from.
fn router_service() -> Service {
    service(
        ROUTER,
        "router",
        Some("NodePort"),
        &[("http", 80), ("admin", ROUTER_ADMIN_PORT)],
    )
}

/// The operator's Service: where routers send activations.
fn operator_service() -> Service {
    service(
        OPERATOR,
        "operator",
        None,
        &[("metrics", OPERATOR_METRICS_PORT)],
    )
}

/// A Service of `component`'s pods with `ports` (name, port) to the pods' port of that name.
fn service(name: &str, component: &str, type_: Option<&str>, ports: &[(&str, i32)]) -> Service {
    Service {
        metadata: meta(name, true, Some(component)),
        spec: Some(ServiceSpec {
            type_: type_.map(str::to_string),
            selector: Some(selector(component)),
            ports: Some(
                ports
                    .iter()
                    .map(|(port_name, port)| ServicePort {
                        name: Some(port_name.to_string()),
                        port: *port,
                        target_port: Some(IntOrString::String(port_name.to_string())),
                        protocol: Some("TCP".into()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn addr(port: i32) -> String {
    format!("0.0.0.0:{port}")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Written out either way, so that the field manager owns it and a later install switching
/// between the two leaves no field of the other behind (the API server refuses
/// `rollingUpdate` beside `Recreate`).
fn strategy(options: &InstallOptions) -> DeploymentStrategy {
    match options.host_network {
        // On the host network a pod holds the node's ports: a new one can only start once the
        // old one has stopped.
        Some(_) => DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        },
        // Start a new pod before stopping an old one: routers are the data path, and an
        // operator waiting for the Lease is ready (its `/healthz` does not depend on leading).
        None => DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(1)),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        },
    }
}

// === impl Workload ===

impl Workload<'_> {
    fn deployment(self, options: &InstallOptions) -> Deployment {
        Deployment {
            metadata: meta(self.name, true, Some(self.component)),
            spec: DeploymentSpec {
                replicas: Some(self.replicas),
                selector: LabelSelector {
                    match_labels: Some(selector(self.component)),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(Some(self.component))),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(self.pod_spec(options)),
                },
                strategy: Some(strategy(options)),
                ..DeploymentSpec::default()
            },
            status: None,
        }
    }

    fn pod_spec(&self, options: &InstallOptions) -> PodSpec {
        PodSpec {
            service_account_name: Some(self.name.to_string()),
            host_network: options.host_network.as_ref().map(|_| true),
            dns_policy: options
                .host_network
                .as_ref()
                .map(|_| "ClusterFirstWithHostNet".to_string()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![self.container(options)],
            // The root filesystem is read-only; /tmp is the pod's own.
            volumes: Some(vec![Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }
    }

    fn container(&self, options: &InstallOptions) -> Container {
        Container {
            name: self.component.to_string(),
            image: Some(options.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            args: Some(self.args.clone()),
            ports: Some(self.ports.iter().map(|(n, p)| port(n, *p)).collect()),
            env: Some(self.env(options)),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/healthz".into()),
                    port: IntOrString::String(self.health_port.into()),
                    ..HTTPGetAction::default()
                }),
                period_seconds: Some(5),
                ..Probe::default()
            }),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity(self.cpu.into())),
                    ("memory".to_string(), Quantity(self.memory.into())),
                ])),
                ..ResourceRequirements::default()
            }),
            volume_mounts: Some(vec![VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            }]),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            ..Container::default()
        }
    }
}

impl Workload<'_> {
    fn env(&self, options: &InstallOptions) -> Vec<EnvVar> {
        let mut env = vec![
            downward("POD_NAME", "metadata.name"),
            downward("POD_NAMESPACE", "metadata.namespace"),
        ];
        // The in-cluster configuration reads the API server's address from these; a
        // container's own values win over the ones the kubelet sets from the Service.
        if let Some(host) = &options.host_network {
            env.push(value("KUBERNETES_SERVICE_HOST", &host.api_host));
            env.push(value("KUBERNETES_SERVICE_PORT", &host.api_port.to_string()));
        }
        env
    }
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn downward(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}
