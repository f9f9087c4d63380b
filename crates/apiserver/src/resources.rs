//! The single-object endpoints: create, get, replace, patch, delete, and the `status`
//! subresource.
//!
//! Every write is the same short pipeline: resolve the kind from the URL, turn the request into
//! the desired object's JSON (the body; or the stored object with a patch applied; or, for an
//! apply, the stored object merged with the applied configuration), let the URL fill or check
//! namespace and name, decode and validate with `nimbus-api` (unknown fields as
//! `fieldValidation` says), stamp annotations, record field ownership, write to the store and
//! poke the write hook. DELETE answers with the deleted object (its last state).

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use nimbus_api::parse::decode_object_lenient;
use nimbus_api::{Kind, Object};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body;
use crate::fields::{self, Entry};
use crate::params::{FieldValidation, WriteParams};
use crate::patch::{self, PatchType};
use crate::path::{CollectionPath, ItemPath};
use crate::stamp;
use crate::state::{ApiState, Caller};
use crate::status::{ApiError, Details};
use crate::table::Format;
use crate::view::View;

/// How often a patch is retried when another write slipped in between its read and its write.
const PATCH_ATTEMPTS: usize = 5;

/// Query parameters of a single-object GET.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetParams {
    include_object: Option<String>,
}

/// Who writes, and how: shared by every write handler.
struct Writer<'a> {
    state: &'a ApiState,
    user: String,
    manager: String,
    params: WriteParams,
}

/// A write's result: the object and the warnings for the `Warning` header.
struct Written {
    code: StatusCode,
    object: Object,
    warnings: Vec<String>,
}

/// POST `/namespaces/{ns}/{plural}`: 201 with the stored object.
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    at: CollectionPath,
    params: WriteParams,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // POST is routed only under `namespaces/{ns}`, so the namespace is always there.
    let (kind, namespace) = (at.kind, at.namespace.unwrap_or_default());
    let mut value = at.view.to_stored(body::parse(&headers, body)?)?;
    body::set_namespace(&mut value, &namespace)?;
    let w = Writer::new(&state, caller, params, &headers);
    let (mut obj, warnings) = w.decode(kind, value)?;
    stamp::on_create(&mut obj, &w.user);
    let entries = fields::track_update(&json!({}), &obj.to_json(), vec![], &w.manager, &now());
    set_managed(&mut obj, &entries)?;
    let object = w.create(obj)?;
    Ok(Written::new(StatusCode::CREATED, object, warnings).into_response_in(at.view))
}

/// GET `/namespaces/{ns}/{plural}/{name}` (and `.../status`), as an object or a Table.
pub async fn get(
    State(state): State<ApiState>,
    at: ItemPath,
    headers: HeaderMap,
    Query(params): Query<GetParams>,
) -> Result<Response, ApiError> {
    let format = Format::negotiate(&headers, params.include_object.as_deref())?;
    let obj = state.store.must_get(at.kind, &at.namespace, &at.name)?;
    Ok(Json(format.render(&obj, at.view)).into_response())
}

/// PUT `/namespaces/{ns}/{plural}/{name}`: replace spec and metadata; status is kept.
pub async fn replace(
    State(state): State<ApiState>,
    caller: Caller,
    at: ItemPath,
    params: WriteParams,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    at.view.check_update()?;
    let value = body_for(&at, &headers, body)?;
    let w = Writer::new(&state, caller, params, &headers);
    let stored = state.store.must_get(at.kind, &at.namespace, &at.name)?;
    Ok(w.update(at.kind, &stored, value)?.into_response())
}

/// PUT `/namespaces/{ns}/{plural}/{name}/status`: replace only the status.
pub async fn replace_status(
    State(state): State<ApiState>,
    caller: Caller,
    at: ItemPath,
    params: WriteParams,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = body_for(&at, &headers, body)?;
    let w = Writer::new(&state, caller, params, &headers);
    Ok(w.update_status(at.kind, value)?.into_response())
}

/// PATCH `/namespaces/{ns}/{plural}/{name}`: merge patch, JSON patch or server-side apply.
pub async fn patch(
    State(state): State<ApiState>,
    caller: Caller,
    at: ItemPath,
    params: WriteParams,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    at.view.check_update()?;
    let patch_type = patch::patch_type(&headers, at.kind)?;
    let body = body.map_err(body::rejected)?;
    let w = Writer::new(&state, caller, params, &headers);
    let written = retry_conflicts(|| match patch_type {
        PatchType::Apply => w.apply(&at, &body),
        PatchType::Merge | PatchType::Json | PatchType::Strategic => {
            w.patch(&at, patch_type, &body, false)
        }
    })?;
    Ok(written.into_response())
}

/// PATCH `/namespaces/{ns}/{plural}/{name}/status`: merge or JSON patch of the status.
pub async fn patch_status(
    State(state): State<ApiState>,
    caller: Caller,
    at: ItemPath,
    params: WriteParams,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let patch_type = match patch::patch_type(&headers, at.kind)? {
        PatchType::Apply => {
            return Err(ApiError::UnsupportedMediaType(
                "server-side apply of the status subresource is not supported; use a merge or JSON patch".into(),
            ));
        }
        other => other,
    };
    let body = body.map_err(body::rejected)?;
    let w = Writer::new(&state, caller, params, &headers);
    Ok(retry_conflicts(|| w.patch(&at, patch_type, &body, true))?.into_response())
}

/// DELETE `/namespaces/{ns}/{plural}/{name}`: 200 with the object's last state.
pub async fn delete(
    State(state): State<ApiState>,
    at: ItemPath,
    params: WriteParams,
) -> Result<Json<Value>, ApiError> {
    if params.dry_run()? {
        let obj = state.store.must_get(at.kind, &at.namespace, &at.name)?;
        return Ok(Json(at.view.json(&obj)));
    }
    let deleted = state.store.delete(at.kind, &at.namespace, &at.name)?;
    state.written(&deleted);
    Ok(Json(at.view.json(&deleted)))
}

/// Parse a PUT body whose namespace and name the URL fixes.
fn body_for(
    at: &ItemPath,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let mut value = body::parse(headers, body)?;
    body::set_namespace(&mut value, &at.namespace)?;
    body::set_name(&mut value, &at.name)?;
    Ok(value)
}

/// A write that read the object first: run it again when the store says another write came in
/// between (a conflict the client did not ask for by pinning a resourceVersion).
fn retry_conflicts(
    mut attempt: impl FnMut() -> Result<Written, Attempt>,
) -> Result<Written, ApiError> {
    for _ in 1..PATCH_ATTEMPTS {
        match attempt() {
            Err(Attempt::Raced(_)) => continue,
            other => return other.map_err(Attempt::into_error),
        }
    }
    attempt().map_err(Attempt::into_error)
}

/// Why a read-modify-write attempt failed.
enum Attempt {
    /// The stored object changed between our read and our write.
    Raced(ApiError),
    Failed(ApiError),
}

impl Attempt {
    fn into_error(self) -> ApiError {
        match self {
            Attempt::Raced(e) | Attempt::Failed(e) => e,
        }
    }
}

impl From<ApiError> for Attempt {
    fn from(e: ApiError) -> Self {
        Attempt::Failed(e)
    }
}

// === impl Writer ===

impl<'a> Writer<'a> {
    fn new(state: &'a ApiState, caller: Caller, params: WriteParams, headers: &HeaderMap) -> Self {
        let manager = params.manager_or(&default_manager(headers));
        Self {
            state,
            user: caller.0,
            manager,
            params,
        }
    }

    /// Decode and validate, treating unknown fields as `fieldValidation` says.
    fn decode(&self, kind: Kind, value: Value) -> Result<(Object, Vec<String>), ApiError> {
        let validation = self.params.field_validation()?;
        let name = body::name_of(&value);
        let decoded = decode_object_lenient(Some(kind), value.clone())
            .map_err(|errors| ApiError::invalid(kind, &name, &errors, &value))?;
        let unknown = decoded.unknown_fields;
        match validation {
            FieldValidation::Strict if !unknown.is_empty() => {
                Err(ApiError::invalid(kind, &name, &unknown, &value))
            }
            FieldValidation::Warn => {
                let warnings = unknown
                    .iter()
                    .map(|e| format!("unknown field \"{}\"", e.path));
                Ok((decoded.object, warnings.collect()))
            }
            _ => Ok((decoded.object, Vec::new())),
        }
    }

    fn create(&self, obj: Object) -> Result<Object, ApiError> {
        if self.params.dry_run()? {
            return Ok(obj);
        }
        let created = self.state.store.create(obj)?;
        self.state.written(&created);
        Ok(created)
    }

    /// Replace `stored` with the object `requested` describes (spec and metadata; status kept).
    fn update(&self, kind: Kind, stored: &Object, requested: Value) -> Result<Written, ApiError> {
        let (mut obj, warnings) = self.decode(kind, requested.clone())?;
        stamp::on_update(&mut obj, stored, &self.user);
        let old = stored.to_json();
        let base = base_entries(&old, &requested);
        let entries = fields::track_update(&old, &obj.to_json(), base, &self.manager, &now());
        set_managed(&mut obj, &entries)?;
        self.write_update(stored, obj, warnings)
    }

    /// Knative's rules that compare an update with the stored object (a Revision's spec never
    /// changes), checked before any write, dry runs included.
    fn check_update(&self, stored: &Object, obj: &Object) -> Result<(), ApiError> {
        let errors = nimbus_api::validate::validate_update(stored, obj);
        if errors.is_empty() {
            return Ok(());
        }
        // A Revision's spec may not change at all (Forbidden, as Knative words it); a reused
        // template name with another template is an invalid value of that name.
        Err(match obj.kind() {
            Kind::Revision => ApiError::forbidden(obj.kind(), obj.name(), &errors),
            _ => ApiError::invalid(obj.kind(), obj.name(), &errors, &obj.to_json()),
        })
    }

    /// Replace only the status of the object `requested` describes.
    fn update_status(&self, kind: Kind, requested: Value) -> Result<Written, ApiError> {
        let (obj, warnings) = self.decode(kind, requested)?;
        if self.params.dry_run()? {
            return Ok(Written::new(StatusCode::OK, obj, warnings));
        }
        let updated = self.state.store.update_status(obj)?;
        self.state.written(&updated);
        Ok(Written::new(StatusCode::OK, updated, warnings))
    }

    /// A merge or JSON patch of the stored object (or only its status).
    fn patch(
        &self,
        t: &ItemPath,
        patch_type: PatchType,
        body: &[u8],
        status: bool,
    ) -> Result<Written, Attempt> {
        let stored = self
            .state
            .store
            .must_get(t.kind, &t.namespace, &t.name)
            .map_err(ApiError::from)?;
        let old = stored.to_json();
        let mut doc = old.clone();
        match patch_type {
            PatchType::Json => patch::json(&mut doc, body)?,
            PatchType::Strategic => patch::strategic(&mut doc, body)?,
            _ => patch::merge(&mut doc, body)?,
        }
        body::set_namespace(&mut doc, &t.namespace)?;
        body::set_name(&mut doc, &t.name)?;
        let pinned = rv_of(&doc) != rv_of(&old);
        let result = match status {
            true => self.update_status(t.kind, doc),
            false => self.update(t.kind, &stored, doc),
        };
        result.map_err(|e| raced_unless(pinned, e))
    }

    /// Server-side apply of the configuration in `body` (creating the object if needed).
    fn apply(&self, t: &ItemPath, body: &[u8]) -> Result<Written, Attempt> {
        if self
            .params
            .field_manager
            .as_deref()
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::Unprocessable(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
            )
            .into());
        }
        let mut config = parse_apply(body)?;
        body::set_namespace(&mut config, &t.namespace)?;
        body::set_name(&mut config, &t.name)?;
        let stored = self
            .state
            .store
            .get(t.kind, &t.namespace, &t.name)
            .map_err(ApiError::from)?;
        let live = stored.as_ref().map_or_else(|| skeleton(t), Object::to_json);
        let entries = Entry::read_all(&live);
        let mut merged = fields::merge_applied(&live, &config, &entries, &self.manager);
        for key in ["apiVersion", "kind"] {
            if let Some(v) = config.get(key) {
                merged[key] = v.clone();
            }
        }
        let (mut obj, warnings) = self.decode(t.kind, merged)?;
        match &stored {
            Some(s) => stamp::on_update(&mut obj, s, &self.user),
            None => stamp::on_create(&mut obj, &self.user),
        }
        let forgiven = fields::forgiven_conflicts(&live, &self.manager);
        let entries = fields::settle_apply(
            &live,
            &obj.to_json(),
            &config,
            entries,
            &self.manager,
            self.params.force(),
            &forgiven,
            &now(),
        )
        .map_err(|conflicts| ApiError::ApplyConflict {
            kind: t.kind,
            details: Details::new(t.kind, &t.name),
            conflicts,
        })?;
        set_managed(&mut obj, &entries)?;
        let pinned = rv_of(&config).is_some();
        obj.metadata_mut().resource_version =
            rv_of(&config).or_else(|| rv_of(&live)).map(str::to_string);
        let written = match stored {
            Some(s) => self.write_update(&s, obj, warnings),
            None => self
                .create(obj)
                .map(|o| Written::new(StatusCode::CREATED, o, warnings)),
        };
        written.map_err(|e| raced_unless(pinned, e))
    }

    /// Write `obj` over `stored` (an update or an apply): the update rules, then the store
    /// (nothing on a dry run).
    fn write_update(
        &self,
        stored: &Object,
        obj: Object,
        warnings: Vec<String>,
    ) -> Result<Written, ApiError> {
        self.check_update(stored, &obj)?;
        if self.params.dry_run()? {
            return Ok(Written::new(StatusCode::OK, obj, warnings));
        }
        let updated = self.state.store.update(obj)?;
        self.state.written(&updated);
        Ok(Written::new(StatusCode::OK, updated, warnings))
    }
}

/// A conflict (or a create that lost a race) is retried unless the client pinned the version.
fn raced_unless(pinned: bool, e: ApiError) -> Attempt {
    match e {
        ApiError::Conflict { .. } | ApiError::AlreadyExists { .. } if !pinned => Attempt::Raced(e),
        e => Attempt::Failed(e),
    }
}

/// An apply body: YAML (of which JSON is a subset).
fn parse_apply(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not UTF-8: {e}")))?;
    let value: Value = serde_saphyr::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "an apply configuration must be an object".into(),
        ));
    }
    Ok(value)
}

/// What an apply to a missing object starts from.
fn skeleton(t: &ItemPath) -> Value {
    json!({
        "apiVersion": t.kind.api_version(),
        "kind": t.kind.as_str(),
        "metadata": { "name": t.name, "namespace": t.namespace },
    })
}

fn rv_of(v: &Value) -> Option<&str> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The ownership an update starts from: the request's `managedFields` when it changed them
/// (kubectl does, migrating client-side apply to server-side apply), the stored ones otherwise.
fn base_entries(stored: &Value, requested: &Value) -> Vec<Entry> {
    let given = requested.pointer("/metadata/managedFields");
    match given {
        Some(g) if Some(g) != stored.pointer("/metadata/managedFields") => {
            Entry::read_all(requested)
        }
        _ => Entry::read_all(stored),
    }
}

fn set_managed(obj: &mut Object, entries: &[Entry]) -> Result<(), ApiError> {
    let mut v = json!({ "apiVersion": obj.kind().api_version(), "metadata": {} });
    Entry::write_all(&mut v, entries);
    let list = match v["metadata"].get("managedFields") {
        Some(l) => Some(
            serde_json::from_value(l.clone())
                .map_err(|e| ApiError::Internal(format!("writing managedFields: {e}")))?,
        ),
        None => None,
    };
    obj.metadata_mut().managed_fields = list;
    Ok(())
}

/// Kubernetes' default field manager: the client's program name from `User-Agent`.
fn default_manager(headers: &HeaderMap) -> String {
    let agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    agent.unwrap_or("unknown").chars().take(128).collect()
}

/// Now, to the second, as RFC 3339.
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    nimbus_api::k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

// === impl Written ===

impl Written {
    fn new(code: StatusCode, object: Object, warnings: Vec<String>) -> Self {
        Self {
            code,
            object,
            warnings,
        }
    }

    /// The response, the object seen through `view`.
    fn into_response_in(self, view: View) -> Response {
        let mut resp = (self.code, Json(view.json(&self.object))).into_response();
        for w in &self.warnings {
            let text = format!("299 - {}", Value::String(w.clone()));
            if let Ok(v) = HeaderValue::from_str(&text) {
                resp.headers_mut().append(http::header::WARNING, v);
            }
        }
        resp
    }
}

impl IntoResponse for Written {
    fn into_response(self) -> Response {
        self.into_response_in(View::Stored)
    }
}
