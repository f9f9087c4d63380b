//! `networking.internal.knative.dev/v1alpha1` Ingress ("KIngress", as Knative's short name
//! says): what a Route asks the data path to serve — hosts, and how each host's traffic splits
//! over revisions. The route reconciler writes the spec; the router reconciles it into its
//! table and reports `Ready` in status. Kept in the store, so routing resumes after a
//! restart from what was last programmed, and a Route keeps serving the previous split while a
//! new target is not ready.
//!
//! The shape is Knative's (rules → hosts, http.paths[].splits[]); each split also carries the
//! revision's data-path settings the router enforces (Nimbus extensions, since Nimbus's router
//! is also the activator and queue-proxy: Knative's read them from the Revision).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// `networking.internal.knative.dev`
pub const GROUP: &str = "networking.internal.knative.dev";
/// `networking.internal.knative.dev/v1alpha1`
pub const API_VERSION: &str = "networking.internal.knative.dev/v1alpha1";

/// Rules are served on the public domain.
pub const VISIBILITY_EXTERNAL: &str = "ExternalIP";
/// Rules are served on cluster-local hosts only.
pub const VISIBILITY_CLUSTER_LOCAL: &str = "ClusterLocal";

/// The data-path programming of one Route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.networking.v1alpha1.Ingress")
)]
#[serde(rename_all = "camelCase")]
pub struct KIngress {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: IngressSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IngressStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.networking.v1alpha1.IngressSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<IngressRuleSpec>,
}

/// Hosts and how their traffic splits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.networking.v1alpha1.IngressRule")
)]
#[serde(rename_all = "camelCase")]
pub struct IngressRuleSpec {
    /// Lower-case host names without port.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `ExternalIP` or `ClusterLocal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    #[serde(default)]
    pub http: HttpIngressRuleValue,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.networking.v1alpha1.HTTPIngressRuleValue")
)]
#[serde(rename_all = "camelCase")]
pub struct HttpIngressRuleValue {
    /// Nimbus routes by host only, so a rule has one path entry (all paths).
    #[serde(default)]
    pub paths: Vec<HttpIngressPath>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.networking.v1alpha1.HTTPIngressPath")
)]
#[serde(rename_all = "camelCase")]
pub struct HttpIngressPath {
    /// The revisions and their shares; percents sum to 100.
    #[serde(default)]
    pub splits: Vec<IngressBackendSplit>,
}

/// A share of a rule's traffic sent to one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.networking.v1alpha1.IngressBackendSplit")
)]
#[serde(rename_all = "camelCase")]
pub struct IngressBackendSplit {
    #[serde(default)]
    pub service_namespace: String,
    /// The revision (Knative: the revision's Kubernetes Service, which has its name).
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub percent: i64,
    /// Headers added to requests sent to this split (`Knative-Serving-Revision`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_headers: Option<BTreeMap<String, String>>,
    /// Nimbus extension: the revision's `containerConcurrency` (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i64>,
    /// Nimbus extension: the revision's `timeoutSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Nimbus extension: the revision's `responseStartTimeoutSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_start_timeout_seconds: Option<i64>,
    /// Nimbus extension: the revision's `idleTimeoutSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.networking.v1alpha1.IngressStatus")
)]
#[serde(rename_all = "camelCase")]
pub struct IngressStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (= `NetworkConfigured` and `LoadBalancerReady`), with the reason when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
