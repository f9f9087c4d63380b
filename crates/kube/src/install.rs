//! What `nimbus install` puts on a cluster, as objects: the namespace `nimbus-system`, the
//! CRDs (Knative's kinds, Jobs, the event sources and KEDA's), the operator's and the router's ServiceAccounts and RBAC, their Deployments, and
//! their Services (the router's takes traffic; both name the ports each finds the other by). Pure: [`manifests`] builds them; [`crate::apply`] sends them.
//!
//! Every object carries `app.kubernetes.io/managed-by: nimbus` and
//! `app.kubernetes.io/part-of: nimbus`; an install refuses to touch a CRD of the same name
//! without that label (Knative Serving's).

mod rbac;
mod workloads;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use serde::Serialize;
use serde_json::Value;

use crate::structural::SchemaError;

pub use rbac::{operator_rules, router_rules};

/// The namespace the operator and the router run in.
pub const NAMESPACE: &str = "nimbus-system";
/// The field manager of `nimbus install --apply`'s server-side applies.
pub const FIELD_MANAGER: &str = "nimbus-install";
/// `app.kubernetes.io/managed-by`, set to [`MANAGER`] on everything installed.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/part-of`, set to [`MANAGER`] on everything installed.
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// `nimbus`.
pub const MANAGER: &str = "nimbus";

/// The operator: controller, autoscaler and revision runtime (`nimbus operator`).
pub const OPERATOR: &str = "nimbus-operator";
/// The router: data path and activator (`nimbus router`).
pub const ROUTER: &str = "nimbus-router";
/// The operator's metrics and `/healthz` port (`--metrics-addr`).
pub const OPERATOR_METRICS_PORT: i32 = 9090;
/// The router's HTTP port (`--http-addr`), behind the router Service's port 80.
pub const ROUTER_HTTP_PORT: i32 = 8080;
/// The router's admin port with `/healthz` (`--admin-addr`).
pub const ROUTER_ADMIN_PORT: i32 = 9091;
/// Router replicas: two, so one can restart while the other serves.
pub const ROUTER_REPLICAS: i32 = 2;

/// What varies between installs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallOptions {
    /// The image of the operator and the router (both run the `nimbus` binary).
    pub image: String,
    /// Run the operator and the router in the node's network namespace.
    pub host_network: Option<HostNetwork>,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            image: default_image(),
            host_network: None,
        }
    }
}

/// For clusters whose pods cannot reach the API server through the `kubernetes` Service (no
/// kube-proxy, an API server on the node's loopback: the test cluster of
/// `scripts/kube-cluster`): the operator and the router run with `hostNetwork`, reach the API
/// server at `api_host:api_port` as the node does, and listen on node ports unlikely to be
/// taken ([`HOST_PORTS`]). One router replica, replaced by stopping it first, as two cannot
/// bind one node's port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostNetwork {
    pub api_host: String,
    pub api_port: u16,
}

/// The listening ports with [`HostNetwork`]: router HTTP, router admin, operator metrics.
pub const HOST_PORTS: Ports = Ports {
    router_http: 31080,
    router_admin: 31091,
    operator_metrics: 31090,
};

/// Where the operator and the router listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub router_http: i32,
    pub router_admin: i32,
    pub operator_metrics: i32,
}

impl InstallOptions {
    /// The ports the pods listen on.
    pub fn ports(&self) -> Ports {
        match self.host_network {
            Some(_) => HOST_PORTS,
            None => Ports {
                router_http: ROUTER_HTTP_PORT,
                router_admin: ROUTER_ADMIN_PORT,
                operator_metrics: OPERATOR_METRICS_PORT,
            },
        }
    }
}

/// `localhost/nimbus/nimbus:<version>`, the tag `scripts/nimbus-image` builds.
pub fn default_image() -> String {
    format!("localhost/nimbus/nimbus:{}", env!("CARGO_PKG_VERSION"))
}

/// One object to install, with what kube-rs needs to address it.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub resource: ApiResource,
    /// The object as JSON, `apiVersion` and `kind` included.
    pub object: Value,
}

// === impl Manifest ===

impl Manifest {
    /// A typed k8s-openapi object.
    pub fn of<K>(obj: &K) -> Self
    where
        K: k8s_openapi::Resource + kube::Resource<DynamicType = ()> + Serialize,
    {
        Self {
            resource: ApiResource::erase::<K>(&()),
            object: serde_json::to_value(obj).unwrap_or_default(),
        }
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }

    /// The namespace of a namespaced object.
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }

    /// kubectl's name for it: `customresourcedefinition.apiextensions.k8s.io/services.serving.knative.dev`,
    /// `namespace/nimbus-system`.
    pub fn display_name(&self) -> String {
        let kind = self.resource.kind.to_ascii_lowercase();
        match self.resource.group.as_str() {
            "" => format!("{kind}/{}", self.name()),
            group => format!("{kind}.{group}/{}", self.name()),
        }
    }

    /// Whether this is one of the CRDs.
    pub fn is_crd(&self) -> bool {
        self.resource.kind == "CustomResourceDefinition"
    }

    /// Whether this is the CRD of a kind another installation may own (KEDA's, the event
    /// sources'; see [`nimbus_api::Kind::is_optional_on_cluster`]).
    pub fn is_optional_crd(&self) -> bool {
        self.is_crd()
            && nimbus_api::Kind::on_cluster()
                .any(|k| k.is_optional_on_cluster() && crate::crds::crd_name(k) == self.name())
    }
}

/// Everything to install, in the order to apply it: namespace, CRDs, service accounts and
/// RBAC, then the workloads.
pub fn manifests(options: &InstallOptions) -> Result<Vec<Manifest>, SchemaError> {
    let mut out = vec![Manifest::of(&namespace())];
    out.extend(crate::crds::crds()?.iter().map(Manifest::of));
    out.extend(rbac::manifests());
    out.extend(workloads::manifests(options));
    Ok(out)
}

/// The labels of every installed object; `component` (`operator`, `router`) adds
/// `app.kubernetes.io/name: nimbus-<component>` and `app.kubernetes.io/component`.
pub fn labels(component: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        (LABEL_PART_OF.to_string(), MANAGER.to_string()),
        (
            "app.kubernetes.io/version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]);
    if let Some(component) = component {
        labels.extend(selector(component));
        labels.insert("app.kubernetes.io/component".into(), component.into());
    }
    labels
}

/// The labels a component's pods are selected by (stable across versions).
pub fn selector(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/name".to_string(),
        format!("nimbus-{component}"),
    )])
}

/// Metadata of an installed object (`namespace`: in `nimbus-system`).
fn meta(name: &str, namespaced: bool, component: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespaced.then(|| NAMESPACE.to_string()),
        labels: Some(labels(component)),
        ..ObjectMeta::default()
    }
}

fn namespace() -> Namespace {
    Namespace {
        metadata: meta(NAMESPACE, false, None),
        ..Namespace::default()
    }
}

#[cfg(test)]
#[path = "install_tests.rs"]
mod tests;
