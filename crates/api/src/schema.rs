//! JSON schemas of the resource kinds, generated from the Rust types with `schemars` (and
//! k8s-openapi's own schemas for `ObjectMeta`, `Container` and friends), never written by hand.
//!
//! One generator and one post-processing step serve both places that publish them: the
//! embedded API server's OpenAPI documents (`nimbus-apiserver`) and the CustomResourceDefinitions
//! a cluster installs (`nimbus-kube`), so `kubectl explain` reads the same schema in both modes.
//! Definitions are named as Kubernetes names a CRD's types (`dev.knative.serving.v1.Service`)
//! and referenced as `#/components/schemas/<name>` (OpenAPI 3).

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::object::Kind;
use crate::serving::{Configuration, Revision, Route, Service};

/// Where definitions live, as `$ref`s name them.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// The generator every kind's schema comes from: OpenAPI 3.0, one definition per type.
pub fn generator() -> SchemaGenerator {
    SchemaSettings::openapi3().into_generator()
}

/// Add `kind`'s schema (and every type it reaches) to the generator's definitions.
pub fn add_kind(generator: &mut SchemaGenerator, kind: Kind) {
    match kind {
        Kind::Service => generator.subschema_for::<Service>(),
        Kind::Configuration => generator.subschema_for::<Configuration>(),
        Kind::Revision => generator.subschema_for::<Revision>(),
        Kind::Route => generator.subschema_for::<Route>(),
        Kind::PodAutoscaler => generator.subschema_for::<crate::PodAutoscaler>(),
        Kind::Ingress => generator.subschema_for::<crate::KIngress>(),
        Kind::Secret => generator.subschema_for::<crate::Secret>(),
        Kind::ConfigMap => generator.subschema_for::<crate::ConfigMap>(),
        Kind::Event => generator.subschema_for::<crate::Event>(),
        Kind::Job => generator.subschema_for::<crate::jobs::Job>(),
        Kind::Execution => generator.subschema_for::<crate::jobs::Execution>(),
        Kind::Schedule => generator.subschema_for::<crate::jobs::Schedule>(),
        Kind::ScaledObject => generator.subschema_for::<crate::ScaledObject>(),
        Kind::TriggerAuthentication => generator.subschema_for::<crate::TriggerAuthentication>(),
        Kind::RedisStreamSource => generator.subschema_for::<crate::sources::RedisStreamSource>(),
        Kind::RabbitmqSource => generator.subschema_for::<crate::sources::RabbitmqSource>(),
        Kind::RedisListSource => generator.subschema_for::<crate::sources::RedisListSource>(),
        Kind::NatsJetStreamSource => {
            generator.subschema_for::<crate::sources::NatsJetStreamSource>()
        }
    };
}

/// The generator's definitions, each in Kubernetes' shape (see [`normalize`]).
pub fn take_definitions(generator: &mut SchemaGenerator) -> Map<String, Value> {
    generator
        .take_definitions(true)
        .into_iter()
        .map(|(name, mut schema)| {
            normalize(&mut schema);
            (name, schema)
        })
        .collect()
}

/// The definitions of every kind and every type they reach.
pub fn definitions() -> Map<String, Value> {
    let mut generator = generator();
    for kind in Kind::ALL {
        add_kind(&mut generator, kind);
    }
    take_definitions(&mut generator)
}

/// A kind's own definition name: the reversed group, the version and the type
/// (`dev.knative.internal.autoscaling.v1alpha1.PodAutoscaler`); the core kinds' are
/// Kubernetes' own (`io.k8s.api.core.v1.Secret`).
pub fn definition_name(kind: Kind, type_name: &str) -> String {
    if kind.is_core() {
        return format!("io.k8s.api.core.{}.{type_name}", kind.version());
    }
    let group: Vec<&str> = kind.group().rsplit('.').collect();
    format!("{}.{}.{type_name}", group.join("."), kind.version())
}

/// Into Kubernetes' shape: optional values are not `nullable` (schemars writes `Option<X>` as
/// `anyOf: [X, null]`), references with siblings sit in `allOf`, and no `default`s (the server
/// applies defaults, the schema does not promise them).
pub fn normalize(schema: &mut Value) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_references_are_wrapped_in_all_of() {
        let mut s = json!({"anyOf": [{"$ref": "#/x"}, {"enum": [null], "nullable": true}], "description": "d"});
        normalize(&mut s);
        assert_eq!(s, json!({"allOf": [{"$ref": "#/x"}], "description": "d"}));
    }

    #[test]
    fn every_kind_has_its_definition() {
        let defs = definitions();
        for kind in Kind::ALL {
            let name = definition_name(kind, kind.as_str());
            assert!(defs.contains_key(&name), "{name}");
        }
        assert!(!Value::Object(defs).to_string().contains("\"nullable\""));
    }
}
