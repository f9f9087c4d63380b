//! Kubernetes' rules for Secrets and ConfigMaps: names are DNS subdomains, keys
//! `[-._a-zA-Z0-9]+`, at most 1 MiB of data, and an `immutable` object keeps its data. Messages
//! name keys, never values.

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVarSource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Errors;
use crate::core::{ConfigMap, MAX_DATA_BYTES, Secret, is_valid_key};
use crate::error::FieldError;
use crate::names::{check_dns_label, check_dns_subdomain};
use crate::object::Object;

/// A Secret's or ConfigMap's problems (other objects: none).
pub(super) fn validate(v: &mut Errors, obj: &Object) {
    match obj {
        Object::Secret(s) => validate_secret(v, s),
        Object::ConfigMap(c) => validate_config_map(v, c),
        Object::Event(e) => validate_event(v, e),
        _ => {}
    }
}

/// Core objects' names are DNS subdomains (`tls.example.com` is a fine Secret name).
pub(super) fn validate_meta(v: &mut Errors, meta: &ObjectMeta) {
    match (&meta.name, &meta.generate_name) {
        (Some(name), _) => check(v, "metadata.name", check_dns_subdomain(name)),
        (None, Some(prefix)) => check(
            v,
            "metadata.generateName",
            check_dns_subdomain(&format!("{prefix}x")),
        ),
        (None, None) => v.add(
            "metadata.name",
            "is required (or set metadata.generateName)",
        ),
    }
    if let Some(ns) = &meta.namespace {
        check(v, "metadata.namespace", check_dns_label(ns));
    }
}

fn check(v: &mut Errors, path: &str, result: Result<(), String>) {
    if let Err(e) = result {
        v.add(path, e);
    }
}

fn validate_secret(v: &mut Errors, s: &Secret) {
    let data = s.data.iter().map(|(k, b)| (k, b.0.len()));
    let string_data = s.string_data.iter().map(|(k, x)| (k, x.len()));
    let size = validate_keys(v, "data", data) + validate_keys(v, "stringData", string_data);
    check_size(v, "data", size);
}

fn validate_config_map(v: &mut Errors, c: &ConfigMap) {
    let data = c.data.iter().map(|(k, x)| (k, x.len()));
    let binary = c.binary_data.iter().map(|(k, b)| (k, b.0.len()));
    let size = validate_keys(v, "data", data) + validate_keys(v, "binaryData", binary);
    check_size(v, "data", size);
    for key in c.data.keys().filter(|k| c.binary_data.contains_key(*k)) {
        v.add(
            format!("binaryData[{key}]"),
            "duplicate of a key in data; a key may be in data or binaryData, not both",
        );
    }
}

/// The kube-apiserver's rules for events (`ValidateEvent`): what it is about, a known type,
/// the note's length.
fn validate_event(v: &mut Errors, e: &crate::events::Event) {
    let r = &e.involved_object;
    for (field, value) in [("kind", &r.kind), ("name", &r.name)] {
        if value.as_deref().unwrap_or("").is_empty() {
            v.add(
                format!("involvedObject.{field}"),
                "is required: the object the event is about",
            );
        }
    }
    let (ns, obj_ns) = (e.metadata.namespace.as_deref(), r.namespace.as_deref());
    if obj_ns.is_some_and(|o| !o.is_empty() && Some(o) != ns) {
        v.add(
            "involvedObject.namespace",
            "does not match the event's namespace; create the event in the object's namespace",
        );
    }
    let known = [crate::events::TYPE_NORMAL, crate::events::TYPE_WARNING];
    if let Some(t) = e.type_.as_deref().filter(|t| !known.contains(t)) {
        v.add(
            "type",
            format!("{t:?} is not supported; use Normal or Warning"),
        );
    }
    if e.message.as_ref().is_some_and(|m| m.len() > NOTE_MAX_BYTES) {
        v.add("message", format!("must be at most {NOTE_MAX_BYTES} bytes"));
    }
}

/// The longest note an event may carry (the kube-apiserver's `NoteLengthLimit`).
pub const NOTE_MAX_BYTES: usize = 1024;

/// Check every key; the bytes keys and values take together.
fn validate_keys<'a>(
    v: &mut Errors,
    field: &str,
    entries: impl Iterator<Item = (&'a String, usize)>,
) -> usize {
    let mut size = 0;
    for (key, len) in entries {
        if !is_valid_key(key) {
            v.add(
                format!("{field}[{key}]"),
                "is not a valid key: use 1-253 letters, digits, '-', '_' or '.' (not \".\" or \"..\")",
            );
        }
        size += key.len() + len;
    }
    size
}

fn check_size(v: &mut Errors, field: &str, size: usize) {
    if size > MAX_DATA_BYTES {
        v.add(
            field,
            format!("holds {size} bytes; at most {MAX_DATA_BYTES} (1 MiB) are allowed"),
        );
    }
}

// === references from a container ===

/// `env[].valueFrom`: exactly one `secretKeyRef` or `configMapKeyRef` with a name and a
/// valid key; Nimbus has no pods, so `fieldRef` and `resourceFieldRef` are refused.
pub(super) fn validate_value_from(
    v: &mut Errors,
    path: &str,
    has_value: bool,
    from: &EnvVarSource,
) {
    let path = format!("{path}.valueFrom");
    if has_value {
        v.add(&path, "may not be set together with value");
    }
    if from.field_ref.is_some() {
        v.add(
            format!("{path}.fieldRef"),
            "is not supported by Nimbus (instances are not pods); use secretKeyRef or configMapKeyRef, or a literal value",
        );
    }
    if from.resource_field_ref.is_some() {
        v.add(
            format!("{path}.resourceFieldRef"),
            "is not supported by Nimbus yet; use secretKeyRef or configMapKeyRef, or a literal value",
        );
    }
    let refs = [
        from.secret_key_ref
            .as_ref()
            .map(|r| ("secretKeyRef", &r.name, &r.key)),
        from.config_map_key_ref
            .as_ref()
            .map(|r| ("configMapKeyRef", &r.name, &r.key)),
    ];
    let refs: Vec<_> = refs.into_iter().flatten().collect();
    match refs.as_slice() {
        [] if from.field_ref.is_none() && from.resource_field_ref.is_none() => {
            v.add(&path, "must set secretKeyRef or configMapKeyRef")
        }
        [(field, name, key)] => {
            check_ref_name(v, &format!("{path}.{field}.name"), name);
            if !is_valid_key(key) {
                v.add(
                    format!("{path}.{field}.key"),
                    format!("{key:?} is not a valid key"),
                );
            }
        }
        [] => {}
        _ => v.add(
            &path,
            "may set only one of secretKeyRef and configMapKeyRef",
        ),
    }
}

/// `envFrom[]`: exactly one of `secretRef` and `configMapRef`, naming an object.
pub(super) fn validate_env_from(v: &mut Errors, path: &str, e: &EnvFromSource) {
    let name = match (&e.secret_ref, &e.config_map_ref) {
        (Some(s), None) => Some(("secretRef", &s.name)),
        (None, Some(c)) => Some(("configMapRef", &c.name)),
        (None, None) => {
            v.add(path, "must set secretRef or configMapRef");
            None
        }
        (Some(_), Some(_)) => {
            v.add(path, "may set only one of secretRef and configMapRef");
            None
        }
    };
    if let Some((field, name)) = name {
        check_ref_name(v, &format!("{path}.{field}.name"), name);
    }
    if let Some(prefix) = &e.prefix
        && prefix.contains('=')
    {
        v.add(format!("{path}.prefix"), "may not contain '='");
    }
}

fn check_ref_name(v: &mut Errors, path: &str, name: &str) {
    match name.is_empty() {
        true => v.add(path, "is required"),
        false => check(v, path, check_dns_subdomain(name)),
    }
}

/// Kubernetes' update rule: once `immutable: true`, the data (and a Secret's type) stay as
/// they are and `immutable` cannot be unset. The message names the fields, never values.
pub(super) fn validate_update(old: &Object, new: &Object) -> Vec<FieldError> {
    let (was_immutable, data_changed, immutable_now) = match (old, new) {
        (Object::Secret(a), Object::Secret(b)) => (
            a.immutable == Some(true),
            a.data != b.data || a.type_ != b.type_,
            b.immutable == Some(true),
        ),
        (Object::ConfigMap(a), Object::ConfigMap(b)) => (
            a.immutable == Some(true),
            a.data != b.data || a.binary_data != b.binary_data,
            b.immutable == Some(true),
        ),
        _ => return vec![],
    };
    let mut errors = Vec::new();
    if was_immutable && !immutable_now {
        errors.push(FieldError::new(
            "immutable",
            "field is immutable when `immutable` is set; delete and recreate the object instead",
        ));
    }
    if was_immutable && data_changed {
        errors.push(FieldError::new(
            "data",
            "field is immutable when `immutable` is set; delete and recreate the object instead",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;
    use crate::validate::{validate, validate_update};

    fn secret(data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("db.example".into());
        for (k, val) in data {
            s.data
                .insert(k.to_string(), ByteString(val.as_bytes().to_vec()));
        }
        s
    }

    #[test]
    fn keys_sizes_and_names() {
        assert_eq!(
            validate(&Object::Secret(secret(&[("password", "x")]))),
            vec![]
        );
        let errors = validate(&Object::Secret(secret(&[("a/b", "s3cr3t")])));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "data[a/b]");
        assert!(!errors[0].message.contains("s3cr3t"));
        let big = "x".repeat(MAX_DATA_BYTES);
        let errors = validate(&Object::Secret(secret(&[("big", &big)])));
        assert_eq!(errors[0].path, "data");
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("Bad_Name".into());
        cm.data.insert("k".into(), "v".into());
        cm.binary_data.insert("k".into(), ByteString(vec![1]));
        let paths: Vec<String> = validate(&Object::ConfigMap(cm))
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, ["metadata.name", "binaryData[k]"]);
    }

    fn service_with(container: serde_json::Value) -> Result<Object, Vec<FieldError>> {
        let mut c = serde_json::json!({"image": "x"});
        c.as_object_mut()
            .unwrap()
            .extend(container.as_object().unwrap().clone());
        crate::parse::decode_object(
            None,
            serde_json::json!({
                "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"template": {"spec": {"containers": [c]}}}
            }),
        )
    }

    fn paths(result: Result<Object, Vec<FieldError>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.path)
            .collect::<Vec<_>>()
    }

    #[test]
    fn env_may_reference_secrets_and_config_maps() {
        let ok = service_with(serde_json::json!({
            "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "b", "optional": true}}}
            ],
            "envFrom": [{"secretRef": {"name": "db"}}, {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}]
        }));
        assert!(ok.is_ok(), "{ok:?}");
        let bad = service_with(serde_json::json!({
            "env": [
                {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "B", "value": "x", "valueFrom": {"secretKeyRef": {"name": "db", "key": "a/b"}}},
                {"name": "C", "valueFrom": {}}
            ],
            "envFrom": [{"prefix": "X"}, {"secretRef": {"name": ""}}]
        }));
        let c = "spec.template.spec.containers[0]";
        assert_eq!(
            paths(bad),
            [
                format!("{c}.env[0].valueFrom.fieldRef"),
                format!("{c}.env[1].valueFrom"),
                format!("{c}.env[1].valueFrom.secretKeyRef.key"),
                format!("{c}.env[2].valueFrom"),
                format!("{c}.envFrom[0]"),
                format!("{c}.envFrom[1].secretRef.name"),
            ]
        );
    }

    #[test]
    fn string_data_is_merged_and_decode_errors_hide_values() {
        let decoded = crate::parse::decode_object(
            None,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                "data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "s3cr3t"}
            }),
        );
        let Ok(Object::Secret(s)) = decoded else {
            panic!("{decoded:?}")
        };
        assert_eq!(s.data["b"].0, b"s3cr3t");
        assert!(s.string_data.is_empty());
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let bad = crate::parse::decode_object(
            None,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                "stringData": {"b": 424242}
            }),
        );
        let errors = bad.unwrap_err();
        assert_eq!(errors[0].path, "stringData.b");
        assert!(
            !errors[0].message.contains("424242"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn immutable_objects_keep_their_data() {
        let mut old = secret(&[("password", "s3cr3t")]);
        old.immutable = Some(true);
        let mut new = secret(&[("password", "other")]);
        new.immutable = Some(true);
        let errors = validate_update(&Object::Secret(old.clone()), &Object::Secret(new));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "data");
        assert!(!errors[0].message.contains("s3cr3t") && !errors[0].message.contains("other"));
        let mut relabelled = old.clone();
        relabelled.metadata.labels = Some([("a".into(), "b".into())].into());
        assert_eq!(
            validate_update(&Object::Secret(old.clone()), &Object::Secret(relabelled)),
            vec![]
        );
        let mut unset = old.clone();
        unset.immutable = None;
        assert_eq!(
            validate_update(&Object::Secret(old), &Object::Secret(unset))[0].path,
            "immutable"
        );
        let mutable = secret(&[("password", "s3cr3t")]);
        let changed = secret(&[("password", "other")]);
        assert_eq!(
            validate_update(&Object::Secret(mutable), &Object::Secret(changed)),
            vec![]
        );
    }
}
