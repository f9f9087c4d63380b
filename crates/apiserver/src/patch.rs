//! PATCH bodies: which kind of patch a `Content-Type` names, and applying JSON merge patches
//! (RFC 7386) and JSON patches (RFC 6902) to an object's JSON.
//!
//! Server-side apply (`application/apply-patch+yaml`) is a merge driven by field ownership and
//! lives in [`crate::fields`]. Strategic merge patches are refused with 415 for Knative's kinds,
//! as Kubernetes refuses them for custom resources: they need Go struct tags Nimbus's types do
//! not have. kubectl sends them for the core kinds (Secret, ConfigMap), whose fields are maps
//! and scalars, where a strategic merge patch without `$` directives is a JSON merge patch.

use http::HeaderMap;
use nimbus_api::Kind;
use serde_json::Value;

use crate::status::ApiError;

/// The patch types served, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
    /// `application/strategic-merge-patch+json`, for the core kinds only.
    Strategic,
}

/// The accepted media types, as Kubernetes lists them in its 415 answer.
const ACCEPTED: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// The patch type of a request to an object of `kind`, or 415 for any other `Content-Type`.
pub fn patch_type(headers: &HeaderMap, kind: Kind) -> Result<PatchType, ApiError> {
    match crate::body::mime(headers) {
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/apply-patch+yaml" => Ok(PatchType::Apply),
        "application/strategic-merge-patch+json" if kind.is_core() => Ok(PatchType::Strategic),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: {ACCEPTED}"
        ))),
    }
}

/// Apply a JSON merge patch to `doc`. A body that is not JSON is a 400.
pub fn merge(doc: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    merge_value(doc, &decode(body)?)
}

fn decode(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))
}

fn merge_value(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    if !patch.is_object() {
        return Err(ApiError::BadRequest(
            "error decoding patch: a merge patch must be a JSON object".into(),
        ));
    }
    json_patch::merge(doc, patch);
    Ok(())
}

/// Apply a strategic merge patch to a core object's `doc`: a JSON merge patch, as long as it
/// uses none of the `$` directives (`$patch`, `$retainKeys`, `$setElementOrder/...`).
pub fn strategic(doc: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let patch = decode(body)?;
    if let Some(directive) = directive(&patch) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "strategic merge patch directive {directive:?} is not supported; use a JSON merge patch"
        )));
    }
    merge_value(doc, &patch)
}

/// The first `$`-key of a patch, if any.
fn directive(v: &Value) -> Option<String> {
    match v {
        Value::Object(map) => map.iter().find_map(|(k, v)| match k.starts_with('$') {
            true => Some(k.clone()),
            false => directive(v),
        }),
        Value::Array(list) => list.iter().find_map(directive),
        _ => None,
    }
}

/// The most operations one JSON patch may hold (Kubernetes' `maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most bytes the `copy` operations of one JSON patch may copy in total, as Kubernetes
/// bounds it (`AccumulatedCopySizeLimit`: three request bodies). Without it a patch of a few
/// `copy` operations, each copying the object into itself, doubles the object each time
/// (issue #13: 22 of them grew the server by 13 GiB).
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * crate::MAX_BODY_BYTES;

/// Apply a JSON patch to `doc`: an undecodable patch is a 400, one that cannot be applied
/// (a failed `test`, a missing path) or that exceeds the limits above a 422, as in
/// Kubernetes. On an error `doc` may be partly patched: the caller drops it.
pub fn json(doc: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let patch: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
    if patch.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::Unprocessable(format!(
            "the allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, \
             but found {}",
            patch.0.len()
        )));
    }
    let mut copied = 0usize;
    for op in &patch.0 {
        if let json_patch::PatchOperation::Copy(copy) = op {
            let size = doc
                .pointer(copy.from.as_str())
                .map_or(0, |v| serde_json::to_vec(v).map_or(0, |b| b.len()));
            copied = copied.saturating_add(size);
            if copied > MAX_JSON_PATCH_COPY_BYTES {
                return Err(ApiError::Unprocessable(format!(
                    "the allowed maximum accumulated copy size of a JSON patch \
                     ({MAX_JSON_PATCH_COPY_BYTES} bytes) was exceeded"
                )));
            }
        }
        json_patch::patch(doc, std::slice::from_ref(op))
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    #[test]
    fn content_types() {
        let t = |ct| patch_type(&headers(ct), Kind::Service);
        assert_eq!(t("application/merge-patch+json").unwrap(), PatchType::Merge);
        assert_eq!(
            t("application/json-patch+json; charset=utf-8").unwrap(),
            PatchType::Json
        );
        assert_eq!(t("application/apply-patch+yaml").unwrap(), PatchType::Apply);
        let err = t("application/strategic-merge-patch+json").unwrap_err();
        assert_eq!(err.code(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(patch_type(&HeaderMap::new(), Kind::Service).is_err());
        let core = patch_type(
            &headers("application/strategic-merge-patch+json"),
            Kind::ConfigMap,
        );
        assert_eq!(core.unwrap(), PatchType::Strategic);
    }

    #[test]
    fn strategic_patches_of_core_kinds_merge_without_directives() {
        let mut doc = json!({"data": {"a": "1", "b": "2"}});
        strategic(&mut doc, br#"{"data": {"a": null, "c": "3"}}"#).unwrap();
        assert_eq!(doc, json!({"data": {"b": "2", "c": "3"}}));
        let err = strategic(&mut doc, br#"{"data": {"$patch": "replace"}}"#).unwrap_err();
        assert_eq!(err.code(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn merge_and_json_patches() {
        let mut doc = json!({"spec": {"a": 1, "b": 2}});
        merge(&mut doc, br#"{"spec": {"a": null, "c": 3}}"#).unwrap();
        assert_eq!(doc, json!({"spec": {"b": 2, "c": 3}}));
        json(
            &mut doc,
            br#"[{"op": "replace", "path": "/spec/b", "value": 5}]"#,
        )
        .unwrap();
        assert_eq!(doc["spec"]["b"], 5);
    }

    #[test]
    fn malformed_patches_are_400_and_failed_ones_422() {
        let mut doc = json!({});
        assert_eq!(
            merge(&mut doc, b"{").unwrap_err().code(),
            http::StatusCode::BAD_REQUEST
        );
        assert_eq!(
            merge(&mut doc, b"[1]").unwrap_err().code(),
            http::StatusCode::BAD_REQUEST
        );
        assert_eq!(
            json(&mut doc, br#"[{"op": "frobnicate"}]"#)
                .unwrap_err()
                .code(),
            http::StatusCode::BAD_REQUEST
        );
        let err = json(&mut doc, br#"[{"op": "test", "path": "/x", "value": 1}]"#).unwrap_err();
        assert_eq!(err.code(), http::StatusCode::UNPROCESSABLE_ENTITY);
    }

    /// Issue #13, 9: copies of the object into itself double it each time; the accumulated
    /// copy size is bounded, and so is the number of operations.
    #[test]
    fn json_patches_cannot_grow_without_bound() {
        let mut doc = json!({"spec": {"blob": "x".repeat(100_000)}});
        let ops: Vec<Value> = (0..40)
            .map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/c{i}")}))
            .collect();
        let err = json(&mut doc, &serde_json::to_vec(&ops).unwrap()).unwrap_err();
        assert_eq!(err.code(), http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.to_string().contains("accumulated copy size"), "{err}");

        let many: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/spec", "value": null}))
            .collect();
        let err = json(&mut json!({}), &serde_json::to_vec(&many).unwrap()).unwrap_err();
        assert!(err.to_string().contains("maximum operations"), "{err}");

        let mut small = json!({"spec": {"a": 1}});
        let ok = json!([{"op": "copy", "from": "/spec/a", "path": "/spec/b"}]);
        json(&mut small, &serde_json::to_vec(&ok).unwrap()).unwrap();
        assert_eq!(small, json!({"spec": {"a": 1, "b": 1}}));
    }
}
