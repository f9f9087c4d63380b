//! The single-object endpoints: create, get, replace, delete, and the `status` subresource.
//!
//! Each handler is the same short pipeline: resolve the kind from the URL, parse the body, let the
//! URL fill or check namespace and name, decode and validate with `nimbus-api`, stamp annotations,
//! write to the store, poke the write hook. DELETE answers with the deleted object (its last
//! state), never a `Success` Status, so clients always get an object back from a successful write.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use nimbus_api::parse::decode_object;
use nimbus_api::{Kind, Object};
use serde_json::Value;

use crate::body;
use crate::stamp;
use crate::state::{ApiState, Caller};
use crate::status::ApiError;

/// `{plural}` of a URL: exactly one of the served resources' plural names.
pub fn kind_of(plural: &str) -> Result<Kind, ApiError> {
    Kind::ALL
        .into_iter()
        .find(|k| k.plural() == plural)
        .ok_or_else(ApiError::no_such_path)
}

/// POST `/namespaces/{ns}/{plural}`: 201 with the stored object.
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path((namespace, plural)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural)?;
    let mut value = body::parse(&headers, body)?;
    body::set_namespace(&mut value, &namespace)?;
    let mut obj = decode(kind, value)?;
    stamp::on_create(&mut obj, &caller.0);
    let created = state.store.create(obj)?;
    state.written(&created);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// GET `/namespaces/{ns}/{plural}/{name}` (and `.../status`).
pub async fn get(
    State(state): State<ApiState>,
    Path((namespace, plural, name)): Path<(String, String, String)>,
) -> Result<Json<Object>, ApiError> {
    let kind = kind_of(&plural)?;
    Ok(Json(state.store.must_get(kind, &namespace, &name)?))
}

/// PUT `/namespaces/{ns}/{plural}/{name}`: replace spec and metadata; status is kept.
pub async fn replace(
    State(state): State<ApiState>,
    caller: Caller,
    Path((namespace, plural, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Object>, ApiError> {
    let (kind, mut obj) = decode_for(&namespace, &plural, &name, &headers, body)?;
    let stored = state.store.must_get(kind, &namespace, &name)?;
    stamp::on_update(&mut obj, &stored, &caller.0);
    let updated = state.store.update(obj)?;
    state.written(&updated);
    Ok(Json(updated))
}

/// PUT `/namespaces/{ns}/{plural}/{name}/status`: replace only the status.
pub async fn replace_status(
    State(state): State<ApiState>,
    Path((namespace, plural, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Object>, ApiError> {
    let (_, obj) = decode_for(&namespace, &plural, &name, &headers, body)?;
    let updated = state.store.update_status(obj)?;
    state.written(&updated);
    Ok(Json(updated))
}

/// DELETE `/namespaces/{ns}/{plural}/{name}`: 200 with the object's last state.
pub async fn delete(
    State(state): State<ApiState>,
    Path((namespace, plural, name)): Path<(String, String, String)>,
) -> Result<Json<Object>, ApiError> {
    let kind = kind_of(&plural)?;
    let deleted = state.store.delete(kind, &namespace, &name)?;
    state.written(&deleted);
    Ok(Json(deleted))
}

/// Parse and decode a PUT body whose namespace and name the URL fixes.
fn decode_for(
    namespace: &str,
    plural: &str,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Kind, Object), ApiError> {
    let kind = kind_of(plural)?;
    let mut value = body::parse(headers, body)?;
    body::set_namespace(&mut value, namespace)?;
    body::set_name(&mut value, name)?;
    Ok((kind, decode(kind, value)?))
}

fn decode(kind: Kind, value: Value) -> Result<Object, ApiError> {
    decode_object(Some(kind), value.clone())
        .map_err(|errors| ApiError::invalid(kind, &body::name_of(&value), &errors, &value))
}
