//! OpenAPI documents generated from the Rust types (`schemars`, with k8s-openapi's own schemas
//! for `ObjectMeta`, `Container` and friends), never written by hand.
//!
//! - `/openapi/v3` lists the group-versions; `/openapi/v3/apis/serving.knative.dev/v1` is the
//!   document kubectl reads for `kubectl explain` and to learn that PATCH takes
//!   `fieldValidation` (so `kubectl apply` leaves validation to the server rather than
//!   falling back to client-side validation with `/openapi/v2`).
//! - `/openapi/v2` is the same schemas as Swagger 2.0 JSON (`kubectl explain
//!   --output=plaintext-openapiv2`). Protobuf is not spoken: a client that only accepts it gets
//!   406.
//!
//! Schemas are post-processed into the shape Kubernetes publishes: `$ref`s with siblings wrapped
//! in `allOf`, no `nullable`/`default`, and `x-kubernetes-group-version-kind` on the kinds.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use nimbus_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status};
use nimbus_api::{API_VERSION, Configuration, GROUP, Kind, Revision, Route, Service};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// The generated documents, built once.
struct Documents {
    v3: Value,
    /// Changes whenever the document does; part of its URL so clients may cache it forever.
    v3_hash: String,
    v2: Value,
}

const REF_V3: &str = "#/components/schemas/";
const REF_V2: &str = "#/definitions/";
const GV_PATH: &str = "apis/serving.knative.dev/v1";

fn documents() -> &'static Documents {
    static DOCS: OnceLock<Documents> = OnceLock::new();
    DOCS.get_or_init(|| {
        let schemas = schemas();
        let v3 = v3_document(&schemas);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        v3.to_string().hash(&mut hasher);
        let v2 = v2_document(&schemas);
        Documents {
            v3,
            v3_hash: format!("{:016X}", hasher.finish()),
            v2,
        }
    })
}

/// GET `/openapi/v3`: where each group-version's document is.
pub async fn v3_root() -> Json<Value> {
    let url = format!("/openapi/v3/{GV_PATH}?hash={}", documents().v3_hash);
    Json(json!({ "paths": { GV_PATH: { "serverRelativeURL": url } } }))
}

/// GET `/openapi/v3/apis/serving.knative.dev/v1`.
pub async fn v3_serving(headers: HeaderMap) -> Result<Response, ApiError> {
    accepts_json(&headers)?;
    Ok(Json(documents().v3.clone()).into_response())
}

/// GET `/openapi/v2`.
pub async fn v2(headers: HeaderMap) -> Result<Response, ApiError> {
    accepts_json(&headers)?;
    Ok(Json(documents().v2.clone()).into_response())
}

fn accepts_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = accept.trim().is_empty()
        || accept.split(',').any(|r| {
            let mime = r.split(';').next().unwrap_or("").trim();
            matches!(mime, "application/json" | "application/*" | "*/*")
        });
    match ok {
        true => Ok(()),
        false => Err(ApiError::NotAcceptable(format!(
            "only application/json is served here, not {accept:?}"
        ))),
    }
}

// === schemas ===

/// Every schema, under its Kubernetes-style name, with `#/components/schemas/` references.
fn schemas() -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    for kind in Kind::ALL {
        match kind {
            Kind::Service => generator.subschema_for::<Service>(),
            Kind::Configuration => generator.subschema_for::<Configuration>(),
            Kind::Revision => generator.subschema_for::<Revision>(),
            Kind::Route => generator.subschema_for::<Route>(),
        };
    }
    generator.subschema_for::<ListMeta>();
    generator.subschema_for::<Status>();
    let mut schemas: Map<String, Value> = generator
        .take_definitions(true)
        .into_iter()
        .map(|(name, mut schema)| {
            normalize(&mut schema);
            (name, schema)
        })
        .collect();
    for kind in Kind::ALL {
        let name = schema_name(kind.as_str());
        if let Some(schema) = schemas.get_mut(&name) {
            describe_kind(schema, kind.as_str());
        }
        schemas.insert(schema_name(&format!("{kind}List")), list_schema(kind));
    }
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({ "type": "object", "description": "A patch: a JSON merge patch, a JSON patch or an apply configuration." }),
    );
    schemas
}

fn schema_name(kind: &str) -> String {
    format!("dev.knative.serving.v1.{kind}")
}

/// Into Kubernetes' shape: optional values are not `nullable`, references with siblings sit in
/// `allOf`, and no `default`s (the server applies defaults, the schema does not promise them).
fn normalize(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    if let Some(inner) = unwrap_nullable(map) {
        map.remove("anyOf");
        map.extend(inner);
    }
    map.remove("nullable");
    map.remove("default");
    if map.len() > 1
        && let Some(reference) = map.remove("$ref")
    {
        map.insert("allOf".into(), json!([{ "$ref": reference }]));
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(props)) = map.get_mut(key) {
            props.values_mut().for_each(normalize);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = map.get_mut(key) {
            normalize(v);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = map.get_mut(key) {
            list.iter_mut().for_each(normalize);
        }
    }
}

/// `anyOf: [X, {"nullable": true, ...}]` (how schemars writes `Option<X>`) → X's keys.
fn unwrap_nullable(map: &Map<String, Value>) -> Option<Map<String, Value>> {
    let Some(Value::Array(any)) = map.get("anyOf") else {
        return None;
    };
    let is_null = |v: &Value| {
        v.get("nullable") == Some(&json!(true))
            && v.get("$ref").is_none()
            && v.get("type").is_none()
    };
    match any.as_slice() {
        [x, n] | [n, x] if is_null(n) && !is_null(x) => x.as_object().cloned(),
        _ => None,
    }
}

/// Kubernetes' descriptions of the type fields, and the kind's GVK.
fn describe_kind(schema: &mut Value, kind: &str) {
    let describe = [
        (
            "apiVersion",
            "APIVersion defines the versioned schema of this representation of an object: serving.knative.dev/v1.",
        ),
        (
            "kind",
            "Kind is a string value representing the REST resource this object represents.",
        ),
        ("metadata", "Standard object's metadata."),
        ("spec", "The desired state, written by users."),
        (
            "status",
            "The observed state, written by Nimbus's controller (the status subresource).",
        ),
    ];
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for (field, text) in describe {
            if let Some(Value::Object(p)) = props.get_mut(field) {
                p.entry("description").or_insert_with(|| json!(text));
            }
        }
    }
    schema["x-kubernetes-group-version-kind"] = json!([gvk(kind)]);
}

fn gvk(kind: &str) -> Value {
    json!({ "group": GROUP, "version": "v1", "kind": kind })
}

fn list_schema(kind: Kind) -> Value {
    json!({
        "type": "object",
        "description": format!("A list of {}.", kind.plural()),
        "required": ["items"],
        "properties": {
            "apiVersion": { "type": "string", "description": "serving.knative.dev/v1" },
            "kind": { "type": "string", "description": format!("{kind}List") },
            "metadata": { "allOf": [{ "$ref": format!("{REF_V3}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta") }] },
            "items": { "type": "array", "items": { "$ref": format!("{REF_V3}{}", schema_name(kind.as_str())) } },
        },
        "x-kubernetes-group-version-kind": [gvk(&format!("{kind}List"))],
    })
}

// === documents ===

fn v3_document(schemas: &Map<String, Value>) -> Value {
    let mut paths = Map::new();
    for kind in Kind::ALL {
        paths.extend(kind_paths(kind));
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Nimbus", "version": API_VERSION },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// The collection, item and status paths of a kind, with their operations.
fn kind_paths(kind: Kind) -> Vec<(String, Value)> {
    let base = format!("/apis/{API_VERSION}");
    let plural = kind.plural();
    let ns = format!("{base}/namespaces/{{namespace}}/{plural}");
    let list = format!("{kind}List");
    vec![
        (
            format!("{base}/{plural}"),
            json!({ "get": op(kind, "list", &list, false) }),
        ),
        (
            ns.clone(),
            json!({
                "parameters": [path_param("namespace")],
                "get": op(kind, "list", &list, false),
                "post": write_op(kind, "post", &[]),
            }),
        ),
        (
            format!("{ns}/{{name}}"),
            json!({
                "parameters": [path_param("name"), path_param("namespace")],
                "get": op(kind, "get", kind.as_str(), false),
                "put": write_op(kind, "put", &[]),
                "patch": write_op(kind, "patch", &["force"]),
                "delete": op(kind, "delete", kind.as_str(), true),
            }),
        ),
        (
            format!("{ns}/{{name}}/status"),
            json!({
                "parameters": [path_param("name"), path_param("namespace")],
                "get": op(kind, "get", kind.as_str(), false),
                "put": write_op(kind, "put", &[]),
                "patch": write_op(kind, "patch", &[]),
            }),
        ),
    ]
}

/// A read (or delete) operation answering with `answer`.
fn op(kind: Kind, action: &str, answer: &str, dry_run: bool) -> Value {
    let params: Vec<Value> = match dry_run {
        true => vec![query_param(
            "dryRun",
            "When present (All), nothing is stored.",
        )],
        false => Vec::new(),
    };
    json!({
        "tags": ["servingKnativeDev_v1"],
        "operationId": format!("{action}{kind}"),
        "parameters": params,
        "responses": { "200": response(answer) },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind.as_str()),
    })
}

/// A create, replace or patch: takes the write parameters kubectl looks for.
fn write_op(kind: Kind, action: &str, extra: &[&str]) -> Value {
    let mut params = vec![
        query_param("dryRun", "When present (All), nothing is stored."),
        query_param(
            "fieldManager",
            "The actor making the change, recorded in managedFields.",
        ),
        query_param(
            "fieldValidation",
            "Strict (the default here), Warn or Ignore: what to do with unknown fields.",
        ),
    ];
    if extra.contains(&"force") {
        params.push(query_param(
            "force",
            "Apply patches: take fields other managers own.",
        ));
    }
    let schema = match action {
        "patch" => "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".to_string(),
        _ => schema_name(kind.as_str()),
    };
    let types: &[&str] = match action {
        "patch" => &[
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
        ],
        _ => &["application/json", "application/yaml"],
    };
    let content: Map<String, Value> = types
        .iter()
        .map(|t| {
            (
                t.to_string(),
                json!({ "schema": { "$ref": format!("{REF_V3}{schema}") } }),
            )
        })
        .collect();
    json!({
        "tags": ["servingKnativeDev_v1"],
        "operationId": format!("{action}{kind}"),
        "parameters": params,
        "requestBody": { "content": content, "required": true },
        "responses": { "200": response(kind.as_str()), "201": response(kind.as_str()) },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind.as_str()),
    })
}

fn response(kind: &str) -> Value {
    let schema = json!({ "$ref": format!("{REF_V3}{}", schema_name(kind)) });
    json!({ "description": "OK", "content": { "application/json": { "schema": schema } } })
}

fn path_param(name: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": format!("{name} of the resource"),
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn query_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

/// Swagger 2.0: the same schemas under `definitions`, no paths.
fn v2_document(schemas: &Map<String, Value>) -> Value {
    let text = Value::Object(schemas.clone())
        .to_string()
        .replace(REF_V3, REF_V2);
    let definitions: Value = serde_json::from_str(&text).unwrap_or_default();
    json!({
        "swagger": "2.0",
        "info": { "title": "Nimbus", "version": API_VERSION },
        "paths": {},
        "definitions": definitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_carry_their_gvk_and_traffic_is_documented() {
        let doc = &documents().v3;
        let schemas = &doc["components"]["schemas"];
        let svc = &schemas["dev.knative.serving.v1.Service"];
        assert_eq!(svc["x-kubernetes-group-version-kind"][0]["kind"], "Service");
        let spec = &schemas["dev.knative.serving.v1.ServiceSpec"];
        assert_eq!(spec["properties"]["traffic"]["type"], "array");
        let target = &schemas["dev.knative.serving.v1.TrafficTarget"];
        assert_eq!(target["properties"]["percent"]["type"], "integer");
        assert!(target["properties"]["percent"].get("nullable").is_none());
        assert!(schemas["io.k8s.api.core.v1.Container"]["properties"]["image"].is_object());
        assert_eq!(
            schemas["dev.knative.serving.v1.RevisionList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "RevisionList"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = &documents().v3;
        let text = doc.to_string();
        for piece in text.split(REF_V3).skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn patch_advertises_field_validation_for_kubectl() {
        let doc = &documents().v3;
        let patch = &doc["paths"]["/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}"]
            ["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Service");
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"fieldValidation"), "{names:?}");
    }

    #[test]
    fn optional_references_are_wrapped_in_all_of() {
        let mut s = json!({"anyOf": [{"$ref": "#/x"}, {"enum": [null], "nullable": true}], "description": "d"});
        normalize(&mut s);
        assert_eq!(s, json!({"allOf": [{"$ref": "#/x"}], "description": "d"}));
        let v2 = &documents().v2;
        assert!(!v2.to_string().contains(REF_V3));
    }
}
