//! A kind's schema as a CustomResourceDefinition needs it: Kubernetes' *structural* OpenAPI
//! v3 schema, made from the definitions `nimbus_api::schema` generates for the embedded API
//! server's OpenAPI documents (one source for both).
//!
//! - Every `$ref` is inlined (a CRD schema has no definitions to refer to); a recursive type
//!   is an error rather than an endless schema.
//! - The root's `metadata` is `type: object` and nothing else (not even a description): the
//!   API server owns ObjectMeta's schema there. Nested ObjectMeta (a template's `metadata`)
//!   keeps k8s-openapi's schema, so its fields are validated as Nimbus's parser does.
//! - Container `name` is optional, as in Knative's CRDs (its webhook defaults it, and Nimbus's
//!   parser accepts a container without one).
//! - kube-rs's `StructuralSchemaRewriter` hoists enum variants out of `oneOf`/`anyOf` (none
//!   of today's types needs it; a data-carrying enum added later will).
//! - An object schema with no properties (free-form JSON such as `FieldsV1`) keeps what it is
//!   given (`x-kubernetes-preserve-unknown-fields`), instead of being pruned to `{}`; nothing
//!   else does, so unknown fields are reported or pruned as for built-in kinds.
//! - `uniqueItems` and formats Kubernetes does not know (schemars' `uint32`, ...) are dropped.
//! - Descriptions are cut to their first paragraph, and left out deep inside the pod spec
//!   (see [`DESCRIBED_DEPTH`]).

use kube_core::schema::StructuralSchemaRewriter;
use nimbus_api::Kind;
use nimbus_api::schema::{REF_PREFIX, definition_name};
use schemars::transform::Transform;
use serde_json::{Map, Value, json};

/// The schema could not be made structural.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema {0} is not among the generated definitions")]
    Missing(String),
    #[error("schema {0} refers to itself; a CRD schema cannot express a recursive type")]
    Recursive(String),
    #[error("schema of {kind}: {message}")]
    Unsupported { kind: Kind, message: String },
}

const CONTAINER: &str = "io.k8s.api.core.v1.Container";

/// Formats the API server validates (others are dropped, as it would ignore them with a
/// warning).
const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "duration",
    "uri",
    "uuid",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "email",
    "password",
];

/// The structural schema of `kind` (the `openAPIV3Schema` of its CRD version).
pub fn kind_schema(definitions: &Map<String, Value>, kind: Kind) -> Result<Value, SchemaError> {
    let name = definition_name(kind, kind.as_str());
    let mut root = definitions
        .get(&name)
        .cloned()
        .ok_or(SchemaError::Missing(name.clone()))?;
    inline(&mut root, definitions, &mut vec![name])?;
    let mut schema = schemars::Schema::try_from(root).map_err(|e| SchemaError::Unsupported {
        kind,
        message: e.to_string(),
    })?;
    StructuralSchemaRewriter.transform(&mut schema);
    let mut root = schema.to_value();
    tidy(&mut root, 0);
    // The API server's own ObjectMeta, which a CRD may not restate.
    root["properties"]["metadata"] = json!({ "type": "object" });
    Ok(root)
}

/// Replace every `$ref` (bare, or alone in an `allOf`) under `schema` with its definition,
/// keeping the referring node's own keys (its description).
fn inline(
    schema: &mut Value,
    definitions: &Map<String, Value>,
    stack: &mut Vec<String>,
) -> Result<(), SchemaError> {
    let Value::Object(map) = schema else {
        return Ok(());
    };
    if let Some(name) = referenced(map) {
        map.remove("$ref");
        map.remove("allOf");
        if stack.contains(&name) {
            return Err(SchemaError::Recursive(name));
        }
        let mut target = definitions
            .get(&name)
            .cloned()
            .ok_or(SchemaError::Missing(name.clone()))?;
        adjust(&name, &mut target);
        stack.push(name);
        inline(&mut target, definitions, stack)?;
        stack.pop();
        if let Value::Object(target) = target {
            for (k, v) in target {
                map.entry(k).or_insert(v);
            }
        }
        return Ok(());
    }
    for_each_child(map, |child| inline(child, definitions, stack))
}

/// The definition a node stands for: `{"$ref": R}` or `{"allOf": [{"$ref": R}], ...}`.
fn referenced(map: &Map<String, Value>) -> Option<String> {
    let reference = match map.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 => all[0].get("$ref"),
        _ => map.get("$ref"),
    };
    let name = reference?.as_str()?.strip_prefix(REF_PREFIX)?;
    Some(name.to_string())
}

/// Where a CRD's schema of a type differs from the embedded API server's.
fn adjust(name: &str, schema: &mut Value) {
    if name == CONTAINER
        && let Some(Value::Array(required)) = schema.get_mut("required")
    {
        required.retain(|r| r != "name");
        if required.is_empty() {
            schema.as_object_mut().map(|m| m.remove("required"));
        }
    }
}

/// The node's subschemas: properties, items, additionalProperties and junctor branches.
fn for_each_child<E>(
    map: &mut Map<String, Value>,
    mut f: impl FnMut(&mut Value) -> Result<(), E>,
) -> Result<(), E> {
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for v in props.values_mut() {
            f(v)?;
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = map.get_mut(key).filter(|v| v.is_object()) {
            f(v)?;
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = map.get_mut(key) {
            for v in list {
                f(v)?;
            }
        }
    }
    Ok(())
}

/// The last touches: free-form objects preserve their fields; no `uniqueItems`, no unknown
/// formats; descriptions cut to their first paragraph and left out below
/// [`DESCRIBED_DEPTH`]. `depth` counts the fields above `schema`.
fn tidy(schema: &mut Value, depth: usize) {
    let Value::Object(map) = schema else { return };
    map.remove("uniqueItems");
    let format = map.get("format").and_then(Value::as_str);
    if format.is_some_and(|f| !KNOWN_FORMATS.contains(&f)) {
        map.remove("format");
    }
    let free_form = map.get("type") == Some(&json!("object"))
        && !map.contains_key("properties")
        && !map.contains_key("additionalProperties");
    // Any JSON (a `serde_json::Value` field, such as KEDA's `fallback`): kept as given.
    let any = !UNTYPED_BUT_SHAPED.iter().any(|k| map.contains_key(*k));
    if free_form || any {
        map.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
    shorten_description(map, depth);
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        props.values_mut().for_each(|p| tidy(p, depth + 1));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = map.get_mut(key) {
            tidy(v, depth);
        }
    }
}

/// Keywords that give a schema its shape: without any, it accepts any JSON.
const UNTYPED_BUT_SHAPED: &[&str] = &[
    "type",
    "properties",
    "additionalProperties",
    "items",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "enum",
    "x-kubernetes-int-or-string",
];

/// How many fields deep descriptions are kept (`spec.template.spec.containers[].ports[].name`
/// is six). Deeper ones (volume sources, affinity terms) are left out, as Knative's CRDs
/// leave those fields out entirely: with them, each revision-carrying CRD would pass the 256
/// KiB that `kubectl apply` without `--server-side` can record.
pub const DESCRIBED_DEPTH: usize = 6;

fn shorten_description(map: &mut Map<String, Value>, depth: usize) {
    if depth > DESCRIBED_DEPTH {
        map.remove("description");
    } else if let Some(Value::String(text)) = map.get_mut("description")
        && let Some((first, _)) = text.split_once("\n\n")
    {
        *text = first.to_string();
    }
}
