//! OpenAPI documents generated from the Rust types (`schemars`, with k8s-openapi's own schemas
//! for `ObjectMeta`, `Container` and friends), never written by hand.
//!
//! - `/openapi/v3` lists the group-versions; `/openapi/v3/apis/{group}/{version}` (the core
//!   group's: `/openapi/v3/api/v1`) is one group-version's document (its paths, and the schemas they reach), which kubectl reads for
//!   `kubectl explain` and to learn that PATCH takes `fieldValidation` (so `kubectl apply`
//!   leaves validation to the server rather than falling back to client-side validation with
//!   `/openapi/v2`).
//! - `/openapi/v2` is the same schemas as Swagger 2.0 JSON (`kubectl explain
//!   --output=plaintext-openapiv2`). Protobuf is not spoken: a client that only accepts it gets
//!   406.
//!
//! Schemas come from `nimbus_api::schema` (shared with the CRDs a cluster installs) in the shape
//! Kubernetes publishes: `$ref`s with siblings wrapped in `allOf`, no `nullable`/`default`; this
//! module adds the list kinds, `Status` and `x-kubernetes-group-version-kind` on the kinds.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::Json;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use nimbus_api::Kind;
use nimbus_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status};
use nimbus_api::schema::{self, definition_name};
use serde_json::{Map, Value, json};

use crate::list::list_kind;
use crate::status::ApiError;

/// The generated documents, built once.
struct Documents {
    /// One per group-version, in [`Kind::ALL`] order.
    v3: Vec<GroupVersionDocument>,
    v2: Value,
}

/// The OpenAPI v3 document of one group-version.
struct GroupVersionDocument {
    /// `serving.knative.dev/v1`, ...
    api_version: &'static str,
    document: Value,
    /// Changes whenever the document does; part of its URL so clients may cache it forever.
    hash: String,
}

const REF_V3: &str = schema::REF_PREFIX;
const REF_V2: &str = "#/definitions/";

fn documents() -> &'static Documents {
    static DOCS: OnceLock<Documents> = OnceLock::new();
    DOCS.get_or_init(|| {
        let schemas = schemas();
        let v3 = Kind::api_versions()
            .into_iter()
            .map(|api_version| GroupVersionDocument::new(api_version, &schemas))
            .collect();
        Documents {
            v3,
            v2: v2_document(&schemas),
        }
    })
}

/// GET `/openapi/v3`: where each group-version's document is.
pub async fn v3_root() -> Json<Value> {
    let paths: Map<String, Value> = documents()
        .v3
        .iter()
        .map(|d| {
            let path = rest_prefix(d.api_version)[1..].to_string();
            let url = format!("/openapi/v3/{path}?hash={}", d.hash);
            (path, json!({ "serverRelativeURL": url }))
        })
        .collect();
    Json(json!({ "paths": paths }))
}

/// GET `/openapi/v3/apis/{group}/{version}`.
pub async fn v3_group_version(
    Path((group, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    v3_document_of(&format!("{group}/{version}"), &headers)
}

/// GET `/openapi/v3/api/{version}`: the core group's document (Secrets, ConfigMaps).
pub async fn v3_core(
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    v3_document_of(&version, &headers)
}

/// The v3 document of `api_version`, or 404.
fn v3_document_of(api_version: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let found = documents().v3.iter().find(|d| d.api_version == api_version);
    let doc = found.ok_or_else(ApiError::no_such_path)?;
    accepts_json(headers)?;
    Ok(Json(doc.document.clone()).into_response())
}

/// Where a group-version's resources are: `/apis/{group}/{version}`, or `/api/{version}` for
/// the core group.
fn rest_prefix(api_version: &str) -> String {
    match api_version.contains('/') {
        true => format!("/apis/{api_version}"),
        false => format!("/api/{api_version}"),
    }
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

/// Every schema of every group-version, under its Kubernetes-style name, with
/// `#/components/schemas/` references.
fn schemas() -> Map<String, Value> {
    let mut generator = schema::generator();
    for kind in Kind::ALL {
        schema::add_kind(&mut generator, kind);
    }
    generator.subschema_for::<ListMeta>();
    generator.subschema_for::<Status>();
    let mut schemas = schema::take_definitions(&mut generator);
    for kind in Kind::ALL {
        if let Some(schema) = schemas.get_mut(&definition_name(kind, kind.as_str())) {
            describe_kind(schema, kind);
        }
        schemas.insert(definition_name(kind, &list_kind(kind)), list_schema(kind));
    }
    schemas.insert(
        PATCH.into(),
        json!({ "type": "object", "description": "A patch: a JSON merge patch, a JSON patch or an apply configuration." }),
    );
    schemas
}

const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";

/// Kubernetes' descriptions of the type fields, and the kind's GVK.
fn describe_kind(schema: &mut Value, kind: Kind) {
    let api_version = format!(
        "APIVersion defines the versioned schema of this representation of an object: {}.",
        kind.api_version()
    );
    let describe = [
        ("apiVersion", api_version.as_str()),
        (
            "kind",
            "Kind is a string value representing the REST resource this object represents.",
        ),
        ("metadata", "Standard object's metadata."),
        (
            "spec",
            match kind.is_internal() {
                true => {
                    "The desired state, written by Nimbus's controllers (Knative's internal kind)."
                }
                false => "The desired state, written by users.",
            },
        ),
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
    schema["x-kubernetes-group-version-kind"] = json!([gvk(kind, kind.as_str())]);
}

/// `{group, version, kind}` of `type_name` (`kind` or its list) in `kind`'s group-version.
fn gvk(kind: Kind, type_name: &str) -> Value {
    json!({ "group": kind.group(), "version": kind.version(), "kind": type_name })
}

fn list_schema(kind: Kind) -> Value {
    let list = list_kind(kind);
    json!({
        "type": "object",
        "description": format!("A list of {}.", kind.plural()),
        "required": ["items"],
        "properties": {
            "apiVersion": { "type": "string", "description": kind.api_version() },
            "kind": { "type": "string", "description": list },
            "metadata": { "allOf": [{ "$ref": format!("{REF_V3}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta") }] },
            "items": { "type": "array", "items": { "$ref": format!("{REF_V3}{}", definition_name(kind, kind.as_str())) } },
        },
        "x-kubernetes-group-version-kind": [gvk(kind, &list)],
    })
}

// === documents ===

impl GroupVersionDocument {
    fn new(api_version: &'static str, all: &Map<String, Value>) -> Self {
        let document = v3_document(api_version, all);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        document.to_string().hash(&mut hasher);
        Self {
            api_version,
            document,
            hash: format!("{:016X}", hasher.finish()),
        }
    }
}

/// One group-version's paths, and of `all` the schemas they reach (with `Status`).
fn v3_document(api_version: &str, all: &Map<String, Value>) -> Value {
    let mut paths = Map::new();
    for kind in Kind::of_api_version(api_version) {
        paths.extend(kind_paths(kind));
    }
    let mut roots = vec![STATUS.to_string()];
    for kind in Kind::of_api_version(api_version) {
        roots.push(definition_name(kind, kind.as_str()));
        roots.push(definition_name(kind, &list_kind(kind)));
    }
    roots.extend(references(&Value::Object(paths.clone())));
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Nimbus", "version": api_version },
        "paths": paths,
        "components": { "schemas": reachable(all, roots) },
    })
}

/// The schemas of `all` named in `roots`, and every schema they refer to, transitively.
fn reachable(all: &Map<String, Value>, mut roots: Vec<String>) -> Map<String, Value> {
    let mut found = Map::new();
    while let Some(name) = roots.pop() {
        if found.contains_key(&name) {
            continue;
        }
        if let Some(schema) = all.get(&name) {
            roots.extend(references(schema));
            found.insert(name, schema.clone());
        }
    }
    found
}

/// The schema names a value refers to with `$ref`.
fn references(v: &Value) -> Vec<String> {
    match v {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(r)) => r
                    .strip_prefix(REF_V3)
                    .map(str::to_string)
                    .into_iter()
                    .collect(),
                _ => references(v),
            })
            .collect(),
        Value::Array(list) => list.iter().flat_map(references).collect(),
        _ => Vec::new(),
    }
}

/// The collection, item and status paths of a kind (the core kinds have no status), with
/// their operations.
fn kind_paths(kind: Kind) -> Vec<(String, Value)> {
    let base = rest_prefix(kind.api_version());
    let plural = kind.plural();
    let ns = format!("{base}/namespaces/{{namespace}}/{plural}");
    let list = list_kind(kind);
    let mut paths = vec![
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
    ];
    if kind.is_core() {
        return paths;
    }
    paths.push((
        format!("{ns}/{{name}}/status"),
        json!({
            "parameters": [path_param("name"), path_param("namespace")],
            "get": op(kind, "get", kind.as_str(), false),
            "put": write_op(kind, "put", &[]),
            "patch": write_op(kind, "patch", &[]),
        }),
    ));
    paths
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
        "tags": [tag(kind)],
        "operationId": format!("{action}{kind}"),
        "parameters": params,
        "responses": { "200": response(kind, answer) },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind, kind.as_str()),
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
        "patch" => PATCH.to_string(),
        _ => definition_name(kind, kind.as_str()),
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
        "tags": [tag(kind)],
        "operationId": format!("{action}{kind}"),
        "parameters": params,
        "requestBody": { "content": content, "required": true },
        "responses": { "200": response(kind, kind.as_str()), "201": response(kind, kind.as_str()) },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind, kind.as_str()),
    })
}

/// Kubernetes' operation tag: the group in camel case and the version
/// (`servingKnativeDev_v1`).
fn tag(kind: Kind) -> String {
    if kind.is_core() {
        return format!("core_{}", kind.version());
    }
    let mut words = kind.group().split('.');
    let mut text = words.next().unwrap_or("").to_string();
    for word in words {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            text.push(first.to_ascii_uppercase());
            text.push_str(chars.as_str());
        }
    }
    format!("{text}_{}", kind.version())
}

fn response(kind: Kind, answer: &str) -> Value {
    let schema = json!({ "$ref": format!("{REF_V3}{}", definition_name(kind, answer)) });
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
        "info": { "title": "Nimbus", "version": env!("CARGO_PKG_VERSION") },
        "paths": {},
        "definitions": definitions,
    })
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
