//! Discovery: what kubectl asks before anything else — the server version, the API groups
//! (`serving.knative.dev/v1`, and Knative's internal `autoscaling.internal.knative.dev/v1alpha1`
//! and `networking.internal.knative.dev/v1alpha1`), and each group-version's resources with
//! their short names, categories, verbs and subresources. kubectl builds its REST mapping
//! (`ksvc` → `services.serving.knative.dev`, `kpa` → `podautoscalers.autoscaling...`) from
//! these answers.
//!
//! Only the legacy (unaggregated) documents are served. kubectl 1.32 first asks `/api` and
//! `/apis` for the aggregated `apidiscovery.k8s.io/v2` format and falls back to these when the
//! answer's `Content-Type` is plain `application/json`. The core group (`/api/v1`) serves
//! Secrets, ConfigMaps and Events only, without a `status` subresource.

use axum::Json;
use axum::extract::Path;
use nimbus_api::Kind;
use nimbus_api::events::{EVENTS_API_VERSION, EVENTS_GROUP};
use serde_json::{Value, json};

use crate::status::ApiError;

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

/// GET `/api`: the core group's versions (`v1`, with Secrets and ConfigMaps).
pub async fn core_versions() -> Json<Value> {
    let versions = [nimbus_api::core::API_VERSION];
    Json(json!({ "kind": "APIVersions", "versions": versions, "serverAddressByClientCIDRs": [] }))
}

/// GET `/api/{version}`: the core group-version's resources.
pub async fn core_resources(Path(version): Path<String>) -> Result<Json<Value>, ApiError> {
    match version == nimbus_api::core::API_VERSION {
        true => Ok(Json(resource_list(&version))),
        false => Err(ApiError::no_such_path()),
    }
}

/// GET `/apis`: every group, in [`Kind::ALL`] order (`serving.knative.dev` first), then
/// `events.k8s.io` (the second version of the core Events).
pub async fn groups() -> Json<Value> {
    let groups: Vec<Value> = all_groups().into_iter().map(group).collect();
    Json(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }))
}

/// GET `/apis/{group}`.
pub async fn api_group(Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    match all_groups().into_iter().find(|g| *g == name) {
        Some(g) => Ok(Json(group(g))),
        None => Err(ApiError::no_such_path()),
    }
}

/// GET `/apis/{group}/{version}`.
pub async fn api_resources(
    Path((group, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let api_version = format!("{group}/{version}");
    if api_version == EVENTS_API_VERSION {
        return Ok(Json(events_resource_list()));
    }
    match Kind::of_api_version(&api_version).next() {
        Some(kind) => Ok(Json(resource_list(kind.api_version()))),
        None => Err(ApiError::no_such_path()),
    }
}

/// The named groups: the kinds' and `events.k8s.io`.
fn all_groups() -> Vec<&'static str> {
    let mut groups = Kind::groups();
    groups.push(EVENTS_GROUP);
    groups
}

/// `events.k8s.io/v1`'s resources: the core Events seen in that version.
fn events_resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": EVENTS_API_VERSION,
        "resources": resources_of(Kind::Event),
    })
}

/// A group's `APIGroup`: each group serves one version.
fn group(name: &str) -> Value {
    let kind = Kind::ALL.into_iter().find(|k| k.group() == name);
    let version = match kind {
        _ if name == EVENTS_GROUP => json!({ "groupVersion": EVENTS_API_VERSION, "version": "v1" }),
        Some(k) => json!({ "groupVersion": k.api_version(), "version": k.version() }),
        None => json!({}),
    };
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": [version],
        "preferredVersion": version,
    })
}

/// The `APIResourceList` of one group-version.
pub fn resource_list(api_version: &str) -> Value {
    let resources: Vec<Value> = Kind::of_api_version(api_version)
        .flat_map(resources_of)
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api_version,
        "resources": resources,
    })
}

/// A kind's resource and its `status` subresource (the core kinds have none).
fn resources_of(kind: Kind) -> Vec<Value> {
    let plural = kind.plural();
    let resource = json!({
        "name": plural,
        "singularName": kind.as_str().to_ascii_lowercase(),
        "namespaced": true,
        "kind": kind.as_str(),
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "shortNames": kind.short_names(),
        "categories": kind.categories(),
    });
    let status = json!({
        "name": format!("{plural}/status"),
        "singularName": "",
        "namespaced": true,
        "kind": kind.as_str(),
        "verbs": ["get", "patch", "update"],
    });
    match kind.is_core() {
        true => vec![resource],
        false => vec![resource, status],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_resource_and_a_status_subresource() {
        let list = resource_list(nimbus_api::API_VERSION);
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

    #[test]
    fn the_core_group_serves_secrets_and_config_maps_without_status() {
        let list = resource_list("v1");
        assert_eq!(list["groupVersion"], "v1");
        let resources = list["resources"].as_array().unwrap();
        let names: Vec<&str> = resources
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["secrets", "configmaps", "events"]);
        assert_eq!(resources[1]["shortNames"], json!(["cm"]));
        assert!(!Kind::groups().contains(&""));
        let events = events_resource_list();
        assert_eq!(events["resources"][0]["name"], "events");
        assert_eq!(events["groupVersion"], "events.k8s.io/v1");
        assert!(all_groups().contains(&"events.k8s.io"));
    }
}
