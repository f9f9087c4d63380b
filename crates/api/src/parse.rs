//! Manifests in, typed and validated objects out.
//!
//! YAML (and JSON, which the YAML parser also reads) is first read into a tree that remembers where
//! every key and value sits, then converted to JSON and decoded into the typed resources with
//! `serde_path_to_error`, so every error can be reported with its field path *and* its line.
//! Unknown fields are found by walking the input along the JSON schema the API serves for its kind
//! (`crate::schema`, through `$ref`s, `allOf`/`anyOf`/`oneOf` and the properties of `flatten`ed
//! structs and k8s-openapi's types), as Kubernetes prunes a CRD's input along its structural schema:
//! a key the schema does not declare is unknown whatever its value, `[]` and `{}` included.
//! Comparing the input with the re-serialised typed value also reports any non-empty key the typed
//! value dropped, should a type and its schema ever disagree.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::error::{FieldError, Location, ParseError};
use crate::object::{Kind, Object};
use crate::validate::validate;

/// Parse every document of a YAML/JSON manifest into validated objects. `source_name` (a file
/// name, or `-` for standard input) is used in error messages.
pub fn parse_manifests(source_name: &str, text: &str) -> Result<Vec<Object>, ParseError> {
    let docs: Vec<Spanned<Node>> = serde_saphyr::from_multiple(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        ParseError::Syntax {
            source_name: source_name.to_string(),
            line,
            column,
            message: first_line(&e.to_string()),
        }
    })?;
    let mut objects = Vec::new();
    for (document, doc) in docs.into_iter().enumerate() {
        let mut index = HashMap::new();
        let value = doc
            .value
            .into_json(String::new(), loc(&doc.referenced), &mut index);
        if value.is_null() {
            continue; // empty document (e.g. a trailing `---`)
        }
        let invalid = |errors: Vec<FieldError>| ParseError::Invalid {
            source_name: source_name.to_string(),
            document,
            errors: locate(errors, &index),
        };
        for item in expand_list(value).map_err(|e| invalid(vec![e]))? {
            let (prefix, value) = item;
            let obj = decode_object(None, value).map_err(|errs| {
                invalid(errs.into_iter().map(|e| prefix_path(&prefix, e)).collect())
            })?;
            objects.push(obj);
        }
    }
    Ok(objects)
}

/// Decode and validate one object given as JSON (the API server's entry point). `expected` is the
/// kind named by the URL, if any; `apiVersion`/`kind` in the body must agree with it.
pub fn decode_object(expected: Option<Kind>, value: Value) -> Result<Object, Vec<FieldError>> {
    let decoded = decode_object_lenient(expected, value)?;
    if decoded.unknown_fields.is_empty() {
        Ok(decoded.object)
    } else {
        Err(decoded.unknown_fields)
    }
}

/// A decoded, defaulted and valid object, and the unknown fields that were dropped from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub object: Object,
    /// One error per unknown field (`path`, message); empty when the input had none.
    pub unknown_fields: Vec<FieldError>,
}

/// Like [`decode_object`], but unknown fields do not fail the decode: they are dropped and
/// returned, so the caller can decide (the API server's `fieldValidation=Warn|Ignore`). Unknown
/// fields are still reported with the validation errors when the object is also invalid.
pub fn decode_object_lenient(
    expected: Option<Kind>,
    value: Value,
) -> Result<Decoded, Vec<FieldError>> {
    let kind = check_type_meta(expected, &value)?;
    let obj: Object = match kind {
        Kind::Service => Object::Service(decode_typed(&value)?),
        Kind::Configuration => Object::Configuration(decode_typed(&value)?),
        Kind::Revision => Object::Revision(decode_typed(&value)?),
        Kind::Route => Object::Route(decode_typed(&value)?),
        Kind::PodAutoscaler => Object::PodAutoscaler(decode_typed(&value)?),
        Kind::Ingress => Object::Ingress(decode_typed(&value)?),
        Kind::Secret => Object::Secret(decode_typed(&value).map_err(hide_values)?),
        Kind::ConfigMap => Object::ConfigMap(decode_typed(&value)?),
        Kind::Event => Object::Event(decode_typed(&value)?),
        Kind::Job => Object::Job(decode_typed(&value)?),
        Kind::Execution => Object::Execution(decode_typed(&value)?),
        Kind::Schedule => Object::Schedule(decode_typed(&value)?),
        Kind::ScaledObject => Object::ScaledObject(decode_typed(&value)?),
        Kind::TriggerAuthentication => Object::TriggerAuthentication(decode_typed(&value)?),
        Kind::RedisStreamSource => Object::RedisStreamSource(decode_typed(&value)?),
        Kind::RabbitmqSource => Object::RabbitmqSource(decode_typed(&value)?),
        Kind::RedisListSource => Object::RedisListSource(decode_typed(&value)?),
        Kind::NatsJetStreamSource => Object::NatsJetStreamSource(decode_typed(&value)?),
    };
    let mut obj = obj;
    let mut unknown = undeclared_fields(kind, &value);
    let mut dropped = Vec::new();
    unknown_fields(&value, &obj.to_json(), "", &mut dropped);
    for e in dropped {
        if !unknown.iter().any(|u| u.path == e.path) {
            unknown.push(e);
        }
    }
    crate::defaults::apply_defaults(&mut obj);
    let invalid = validate(&obj);
    if invalid.is_empty() {
        Ok(Decoded {
            object: obj,
            unknown_fields: unknown,
        })
    } else {
        unknown.extend(invalid);
        Err(unknown)
    }
}

fn check_type_meta(expected: Option<Kind>, value: &Value) -> Result<Kind, Vec<FieldError>> {
    let Some(map) = value.as_object() else {
        return Err(vec![FieldError::new(
            "",
            "expected a mapping with apiVersion, kind, metadata and spec",
        )]);
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind_str = map.get("kind").and_then(Value::as_str);
    let mut errors = Vec::new();
    let kind = match (kind_str, expected) {
        (None, Some(k)) => Some(k),
        (Some(s), _) => Kind::ALL.into_iter().find(|k| k.as_str() == s),
        (None, None) => None,
    };
    // The apiVersion the kind is served at; `Ingress` exists in several groups, so a wrong
    // group is reported against the apiVersion, not the kind.
    let served = kind.map_or(crate::API_VERSION, Kind::api_version);
    match api_version {
        Some(v) if v == served => {}
        None if expected.is_some() => {}
        other => errors.push(FieldError::new(
            "apiVersion",
            format!("{} is not served; use \"{served}\"", show(other)),
        )),
    }
    match (kind, expected) {
        (Some(k), Some(e)) if k != e => errors.push(FieldError::new(
            "kind",
            format!("is {k} but this endpoint serves {e}"),
        )),
        (None, _) => errors.push(FieldError::new(
            "kind",
            format!(
                "{} is not served; use one of {}",
                show(kind_str),
                Kind::ALL.map(Kind::as_str).join(", ")
            ),
        )),
        _ => {}
    }
    match kind {
        Some(k) if errors.is_empty() => Ok(k),
        _ => Err(errors),
    }
}

fn show(v: Option<&str>) -> String {
    v.map_or_else(|| "missing".to_string(), |s| format!("{s:?}"))
}

fn decode_typed<T: DeserializeOwned>(value: &Value) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![FieldError::new(path, e.into_inner().to_string())]
    })
}

/// A Secret's decode errors without the values serde quotes (`invalid type: integer 42`):
/// the path says where, the message what was expected.
fn hide_values(errors: Vec<FieldError>) -> Vec<FieldError> {
    let hide = |e: FieldError| match e.path.split('.').next() {
        Some("data") => {
            FieldError::new(e.path, "must be a base64-encoded string (value not shown)")
        }
        Some("stringData") => FieldError::new(e.path, "must be a string (value not shown)"),
        _ => e,
    };
    errors.into_iter().map(hide).collect()
}

/// Report every key of `input` that did not survive decoding into the typed object.
fn unknown_fields(input: &Value, decoded: &Value, path: &str, out: &mut Vec<FieldError>) {
    match (input, decoded) {
        (Value::Object(inp), Value::Object(dec)) => {
            for (k, v) in inp {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match dec.get(k) {
                    None if !is_empty_value(v) => out.push(unknown_field(p)),
                    Some(d) => unknown_fields(v, d, &p, out),
                    None => {}
                }
            }
        }
        (Value::Array(inp), Value::Array(dec)) => {
            for (i, (v, d)) in inp.iter().zip(dec).enumerate() {
                unknown_fields(v, d, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The error for a key the schema does not declare, worded as Kubernetes words it.
fn unknown_field(path: String) -> FieldError {
    FieldError::new(
        path,
        "field not declared in schema (unknown field); check its spelling and indentation",
    )
}

/// Every key of `value` that `kind`'s served schema does not declare, at any depth.
#[cfg(feature = "schemars")]
pub fn undeclared_fields(kind: Kind, value: &Value) -> Vec<FieldError> {
    use std::sync::OnceLock;
    static DEFINITIONS: OnceLock<serde_json::Map<String, Value>> = OnceLock::new();
    let defs = DEFINITIONS.get_or_init(crate::schema::definitions);
    let root = crate::schema::definition_name(kind, kind.as_str());
    let mut out = Vec::new();
    if let Some(schema) = defs.get(&root) {
        walk_schema(defs, schema, value, "", &mut out);
    }
    out
}

/// Without the schemas (the `schemars` feature, on by default) only the comparison with the
/// re-serialised value finds unknown fields.
#[cfg(not(feature = "schemars"))]
pub fn undeclared_fields(_kind: Kind, _value: &Value) -> Vec<FieldError> {
    Vec::new()
}

/// What a schema says about an object's keys: the declared ones, and what any other key is.
#[cfg(feature = "schemars")]
#[derive(Default)]
struct Shape<'a> {
    properties: Vec<&'a serde_json::Map<String, Value>>,
    /// The schema of undeclared keys (a map's values); `None` when they are unknown fields.
    additional: Option<&'a Value>,
    /// Any key is accepted and nothing below is checked (free-form JSON).
    open: bool,
    items: Vec<&'a Value>,
}

#[cfg(feature = "schemars")]
const ANY: Value = Value::Bool(true);

#[cfg(feature = "schemars")]
fn collect_shape<'a>(
    defs: &'a serde_json::Map<String, Value>,
    schema: &'a Value,
    shape: &mut Shape<'a>,
    depth: usize,
) {
    let Value::Object(map) = schema else {
        // `true` (anything) or `false`
        shape.open |= schema == &Value::Bool(true);
        return;
    };
    if depth > 32 {
        shape.open = true;
        return;
    }
    let mut declares = false;
    if let Some(Value::String(r)) = map.get("$ref") {
        declares = true;
        match r
            .strip_prefix(crate::schema::REF_PREFIX)
            .and_then(|n| defs.get(n))
        {
            Some(target) => collect_shape(defs, target, shape, depth + 1),
            None => shape.open = true,
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = map.get(key) {
            declares = true;
            for s in list {
                collect_shape(defs, s, shape, depth + 1);
            }
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        declares = true;
        shape.properties.push(props);
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(false)) | None => {}
        Some(Value::Bool(true)) => shape.additional = Some(&ANY),
        Some(s) => shape.additional = Some(s),
    }
    if map.contains_key("additionalProperties") || map.contains_key("patternProperties") {
        declares = true;
        if map.contains_key("patternProperties") {
            shape.open = true;
        }
    }
    if let Some(items) = map.get("items") {
        shape.items.push(items);
    }
    // A schema that says nothing about keys (`{}`, `type: object` alone, a `serde_json::Value`
    // field) or keeps them (`x-kubernetes-preserve-unknown-fields`) accepts any.
    if map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || (!declares && !map.contains_key("type") && !map.contains_key("enum"))
        || (!declares && map.get("type") == Some(&Value::String("object".into())))
    {
        shape.open = true;
    }
}

#[cfg(feature = "schemars")]
fn walk_schema(
    defs: &serde_json::Map<String, Value>,
    schema: &Value,
    value: &Value,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let mut shape = Shape::default();
    collect_shape(defs, schema, &mut shape, 0);
    if shape.open {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let declared = shape.properties.iter().find_map(|props| props.get(k));
                match (declared, shape.additional) {
                    (Some(s), _) => walk_schema(defs, s, v, &p, out),
                    (None, Some(s)) => walk_schema(defs, s, v, &p, out),
                    (None, None) => out.push(unknown_field(p)),
                }
            }
        }
        Value::Array(list) if !shape.items.is_empty() => {
            let items = match shape.items.as_slice() {
                [one] => (*one).clone(),
                all => serde_json::json!({ "allOf": all }),
            };
            for (i, v) in list.iter().enumerate() {
                walk_schema(defs, &items, v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A `kind: List` document expands to its items (as `kubectl get -o yaml` prints them).
fn expand_list(value: Value) -> Result<Vec<(String, Value)>, FieldError> {
    if value.get("kind").and_then(Value::as_str) != Some("List") {
        return Ok(vec![(String::new(), value)]);
    }
    match value.get("items") {
        Some(Value::Array(items)) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("items[{i}]"), v.clone()))
            .collect()),
        _ => Err(FieldError::new("items", "a List must have an items array")),
    }
}

fn prefix_path(prefix: &str, mut e: FieldError) -> FieldError {
    if !prefix.is_empty() {
        e.path = if e.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", e.path)
        };
    }
    e
}

/// Attach source locations: the deepest known ancestor of each error's path.
fn locate(mut errors: Vec<FieldError>, index: &HashMap<String, Location>) -> Vec<FieldError> {
    for e in &mut errors {
        let mut p = e.path.as_str();
        e.location = loop {
            if let Some(l) = index.get(p) {
                break Some(*l);
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => break index.get("").copied(),
            }
        };
    }
    errors
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

fn loc(l: &serde_saphyr::Location) -> Location {
    Location {
        line: l.line() as usize,
        column: l.column() as usize,
    }
}

// === Node: a YAML tree that remembers locations ===

/// A YAML value whose keys and children carry their positions.
#[derive(Debug)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
}

impl Node {
    fn into_json(self, path: String, at: Location, index: &mut HashMap<String, Location>) -> Value {
        index.insert(path.clone(), at);
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(i) => Value::from(i),
            Node::UInt(u) => Value::from(u),
            Node::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Node::Str(s) => Value::String(s),
            Node::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| {
                        n.value
                            .into_json(format!("{path}[{i}]"), loc(&n.referenced), index)
                    })
                    .collect(),
            ),
            Node::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    let p = if path.is_empty() {
                        k.value.0.clone()
                    } else {
                        format!("{path}.{}", k.value.0)
                    };
                    let value = v.value.into_json(p, loc(&k.referenced), index);
                    map.insert(k.value.0, value);
                }
                Value::Object(map)
            }
        }
    }
}

/// A mapping key: any scalar, kept as its text.
#[derive(Debug)]
pub(crate) struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(Spanned<Key>, Spanned<Node>)> = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Key>>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

#[cfg(all(test, feature = "schemars"))]
#[path = "unknown_fields_tests.rs"]
mod unknown_fields_tests;
