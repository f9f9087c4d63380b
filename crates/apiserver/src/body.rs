//! Request bodies: JSON or YAML text to a JSON value, and the URL's say over namespace and name.
//!
//! Only syntax is checked here; types, unknown fields and validation are `nimbus-api`'s job.

use axum::extract::rejection::BytesRejection;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

use crate::status::ApiError;

/// The largest body accepted (Kubernetes' limit).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Parse a body as YAML when `Content-Type` says so, protobuf for kubectl's typed Secrets and
/// ConfigMaps (see [`crate::proto`]), JSON otherwise.
pub fn parse(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(rejected)?;
    if mime(headers) == crate::proto::PROTOBUF {
        return crate::proto::decode(&body);
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not UTF-8: {e}")))?;
    if is_yaml(headers) {
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::BadRequest(format!("malformed YAML: {e}")))
    } else {
        serde_json::from_str(text).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
    }
}

fn is_yaml(headers: &HeaderMap) -> bool {
    mime(headers).ends_with("yaml")
}

/// The media type of `Content-Type`, without parameters.
pub(crate) fn mime(headers: &HeaderMap) -> &str {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ct.split(';').next().unwrap_or("").trim()
}

pub(crate) fn rejected(e: BytesRejection) -> ApiError {
    if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!(
            "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
        ))
    } else {
        ApiError::BadRequest(format!(
            "could not read the request body: {}",
            e.body_text()
        ))
    }
}

/// Fill `metadata.namespace` from the URL; a different one in the body is an error.
pub fn set_namespace(value: &mut Value, namespace: &str) -> Result<(), ApiError> {
    set_meta_field(value, "namespace", namespace, |given| {
        format!(
            "the namespace of the provided object ({given}) does not match the namespace sent on the request ({namespace})"
        )
    })
}

/// Fill `metadata.name` from the URL; a different one in the body is an error.
pub fn set_name(value: &mut Value, name: &str) -> Result<(), ApiError> {
    set_meta_field(value, "name", name, |given| {
        format!("the name of the object ({given}) does not match the name on the URL ({name})")
    })
}

fn set_meta_field(
    value: &mut Value,
    field: &str,
    want: &str,
    mismatch: impl Fn(&str) -> String,
) -> Result<(), ApiError> {
    let Some(obj) = value.as_object_mut() else {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON/YAML object".into(),
        ));
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return Err(ApiError::BadRequest("metadata must be an object".into()));
    };
    match meta.get(field).and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != want => {
            Err(ApiError::BadRequest(mismatch(given)))
        }
        _ => {
            meta.insert(field.to_string(), Value::String(want.to_string()));
            Ok(())
        }
    }
}

/// `metadata.name` (or `generateName`) of a submitted object, for error messages.
pub fn name_of(value: &Value) -> String {
    let meta = value.get("metadata");
    let get = |k| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    get("name")
        .or_else(|| get("generateName"))
        .unwrap_or_default()
        .to_string()
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
    fn json_and_yaml() {
        let v = parse(&HeaderMap::new(), Ok(Bytes::from_static(b"{\"a\":1}"))).unwrap();
        assert_eq!(v, json!({"a": 1}));
        let v = parse(
            &headers("application/yaml; charset=utf-8"),
            Ok(Bytes::from_static(b"a: 1\nb: [x]\n")),
        )
        .unwrap();
        assert_eq!(v, json!({"a": 1, "b": ["x"]}));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse(&HeaderMap::new(), Ok(Bytes::from_static(b"{\"a\":\n}"))).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = parse(
            &headers("application/yaml"),
            Ok(Bytes::from_static(b"a: [1\nb: 2\n")),
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn namespace_filled_or_checked() {
        let mut v = json!({"metadata": {"name": "x"}});
        set_namespace(&mut v, "ns").unwrap();
        assert_eq!(v["metadata"]["namespace"], "ns");
        let mut v = json!({"metadata": {"namespace": "other"}});
        assert!(set_namespace(&mut v, "ns").is_err());
        let mut v = json!({});
        set_name(&mut v, "n").unwrap();
        assert_eq!(name_of(&v), "n");
        assert!(set_name(&mut json!([1]), "n").is_err());
    }
}
