//! PATCH bodies as the API server applies them: JSON merge patches and JSON patches
//! (`nimbus_apiserver::patch`, with its limits) and server-side apply (`nimbus_api::fields`:
//! merge, decode, ownership and conflicts, `managedFields`).
//!
//! Input: a mode byte, then the body; or the mode byte, the live object as JSON, a NUL byte and
//! the body (without the NUL the live object is a Service with two field managers).
//!
//! - merge patch: no panic; applying the same patch twice is applying it once (RFC 7386).
//! - JSON patch: no panic; the result is never bigger than the object, twice the patch (values
//!   and keys it adds) and the accumulated `copy` limit, so a small body cannot grow an object
//!   (issue #13).
//! - apply: no panic; the new `managedFields` read back as written; applying the same
//!   configuration again as the same manager changes nothing and conflicts with no one.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nimbus_api::Kind;
use nimbus_api::fields::{self, Entry, FieldSet};
use nimbus_api::parse::decode_object_lenient;
use nimbus_apiserver::patch::{self, MAX_JSON_PATCH_COPY_BYTES, MAX_JSON_PATCH_OPERATIONS};
use serde_json::{Value, json};

const NOW: &str = "2026-01-01T00:00:00Z";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (live, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => match serde_json::from_slice::<Value>(&rest[..i]) {
            Ok(live) => (live, &rest[i + 1..]),
            Err(_) => return,
        },
        None => (LIVE.clone(), rest),
    };
    match mode % 4 {
        0 => merge(live, body),
        1 => json_patch(live, body),
        _ => {
            let manager = match mode & 0x10 {
                0 => "fuzzer",
                _ => fields::KUBECTL_APPLY_MANAGER,
            };
            apply(&live, body, manager, mode % 4 == 3);
        }
    }
});

fn merge(mut doc: Value, body: &[u8]) {
    if patch::merge(&mut doc, body).is_ok() {
        let once = doc.clone();
        patch::merge(&mut doc, body).expect("the same patch applies again");
        assert_eq!(doc, once, "a merge patch is not idempotent");
    }
}

fn json_patch(mut doc: Value, body: &[u8]) {
    let before = size(&doc);
    let ops = serde_json::from_slice::<json_patch::Patch>(body).map_or(0, |p| p.0.len());
    if patch::json(&mut doc, body).is_ok() {
        assert!(ops <= MAX_JSON_PATCH_OPERATIONS, "{ops} operations applied");
        let bound = before + 2 * body.len() + MAX_JSON_PATCH_COPY_BYTES;
        assert!(
            size(&doc) <= bound,
            "{} bytes grew to {}",
            before,
            size(&doc)
        );
    }
}

fn size(v: &Value) -> usize {
    serde_json::to_vec(v)
        .expect("a JSON value serialises")
        .len()
}

/// A server-side apply of `body` to `live`, then the same apply once more.
fn apply(live: &Value, body: &[u8], manager: &str, force: bool) {
    let Some(config) = parse_apply(body) else {
        return;
    };
    let Some((new, entries)) = apply_once(live, &config, manager, force) else {
        return;
    };
    let mut written = new.clone();
    Entry::write_all(&mut written, &entries);
    if written.get("metadata").is_some_and(Value::is_object) {
        assert_eq!(
            Entry::read_all(&written),
            entries,
            "managedFields read back differently"
        );
    }
    let (again, entries_again) = apply_once(&written, &config, manager, false)
        .unwrap_or_else(|| panic!("the same apply, again, fails on {written:#}"));
    assert_eq!(
        without_managed(again),
        without_managed(new),
        "applying again changed it"
    );
    assert_eq!(
        entries_again, entries,
        "applying again changed the ownership"
    );
}

/// The API server's apply (`resources.rs`): merge, decode (defaults, validation), settle who
/// owns what. `None` when the object is invalid or the apply conflicts.
fn apply_once(
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
) -> Option<(Value, Vec<Entry>)> {
    let kind = live
        .get("kind")
        .and_then(Value::as_str)
        .and_then(Kind::parse)
        .unwrap_or(Kind::Service);
    let entries = Entry::read_all(live);
    let mut merged = fields::merge_applied(live, config, &entries, manager);
    for key in ["apiVersion", "kind"] {
        if let (Some(v), Some(m)) = (config.get(key), merged.as_object_mut()) {
            m.insert(key.into(), v.clone());
        }
    }
    let new = decode_object_lenient(Some(kind), merged)
        .ok()?
        .object
        .to_json();
    let forgiven: FieldSet = fields::forgiven_conflicts(live, manager);
    let entries =
        fields::settle_apply(live, &new, config, entries, manager, force, &forgiven, NOW).ok()?;
    Some((new, entries))
}

/// As the API server reads an apply body (`parse_apply` in `resources.rs`): YAML, an object.
fn parse_apply(body: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    serde_saphyr::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
}

fn without_managed(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    v
}

/// The live object patches start from: a defaulted Service whose containers kubectl updated
/// and whose traffic a controller applied.
static LIVE: LazyLock<Value> = LazyLock::new(|| {
    let service = json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": "hello", "namespace": "default", "labels": {"app": "hello"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration":
                    "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"image\":\"x\"}]}}}}"
            },
            "managedFields": [
                {"manager": "kubectl", "operation": "Update", "apiVersion": "serving.knative.dev/v1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                 "f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}},
                {"manager": "controller", "operation": "Apply", "apiVersion": "serving.knative.dev/v1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:traffic": {}}}}
            ]
        },
        "spec": {
            "template": {"spec": {"containers": [{"image": "x", "env": [{"name": "A", "value": "b"}]}]}},
            "traffic": [{"latestRevision": true, "percent": 80}, {"revisionName": "hello-00001", "percent": 20, "tag": "old"}]
        }
    });
    decode_object_lenient(Some(Kind::Service), service)
        .expect("the sample Service is valid")
        .object
        .to_json()
});
