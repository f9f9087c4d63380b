//! Discovery: what kubectl asks before anything else — the server version, the API groups, and
//! the resources of `serving.knative.dev/v1` with their short names, categories, verbs and
//! subresources. kubectl builds its REST mapping (`ksvc` → `services.serving.knative.dev`) from
//! these answers.
//!
//! Only the legacy (unaggregated) documents are served. kubectl 1.32 first asks `/api` and
//! `/apis` for the aggregated `apidiscovery.k8s.io/v2` format and falls back to these when the
//! answer's `Content-Type` is plain `application/json`. There is no core (`/api/v1`) group.

use axum::Json;
use nimbus_api::{API_VERSION, GROUP, Kind};
use serde_json::{Value, json};

/// The Kubernetes minor version whose API conventions Nimbus follows (kubectl warns beyond a
/// skew of one minor version).
pub const KUBERNETES_MINOR: &str = "32";

/// GET `/version`.
pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-nimbus.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    }))
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// GET `/api`: the core group's versions; none are served.
pub async fn core_versions() -> Json<Value> {
    Json(json!({ "kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": [] }))
}

/// GET `/apis`.
pub async fn groups() -> Json<Value> {
    Json(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": [group()] }))
}

/// GET `/apis/serving.knative.dev`.
pub async fn serving_group() -> Json<Value> {
    Json(group())
}

fn group() -> Value {
    let version = json!({ "groupVersion": API_VERSION, "version": "v1" });
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    })
}

/// GET `/apis/serving.knative.dev/v1`.
pub async fn serving_resources() -> Json<Value> {
    Json(resource_list())
}

/// The `APIResourceList` of `serving.knative.dev/v1`.
pub fn resource_list() -> Value {
    let resources: Vec<Value> = Kind::ALL.into_iter().flat_map(resources_of).collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": resources,
    })
}

/// A kind's resource and its `status` subresource.
fn resources_of(kind: Kind) -> [Value; 2] {
    let plural = kind.plural();
    let resource = json!({
        "name": plural,
        "singularName": kind.as_str().to_ascii_lowercase(),
        "namespaced": true,
        "kind": kind.as_str(),
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "shortNames": short_names(kind),
        "categories": ["all", "knative", "serving"],
    });
    let status = json!({
        "name": format!("{plural}/status"),
        "singularName": "",
        "namespaced": true,
        "kind": kind.as_str(),
        "verbs": ["get", "patch", "update"],
    });
    [resource, status]
}

/// Knative's short names. (`svc` is Kubernetes' Service; Nimbus's own CLI also accepts it.)
pub fn short_names(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Service => &["kservice", "ksvc"],
        Kind::Configuration => &["config", "cfg"],
        Kind::Revision => &["rev"],
        Kind::Route => &["rt"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_resource_and_a_status_subresource() {
        let list = resource_list();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "services",
                "services/status",
                "configurations",
                "configurations/status",
                "revisions",
                "revisions/status",
                "routes",
                "routes/status"
            ]
        );
        assert_eq!(
            list["resources"][0]["shortNames"],
            json!(["kservice", "ksvc"])
        );
        for short in ["ksvc", "kservice", "cfg", "config", "rev", "rt"] {
            assert!(Kind::parse(short).is_some(), "{short}");
        }
    }
}
