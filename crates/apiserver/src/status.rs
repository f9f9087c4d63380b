//! Errors as Kubernetes `Status` objects.
//!
//! Every failure the API server reports goes through [`ApiError`], which renders as a
//! `{"kind":"Status","apiVersion":"v1",...}` JSON body with the matching HTTP code and `reason`,
//! so kubectl prints `Error from server (NotFound): ...` and kube-rs decodes an `ErrorResponse`.
//! This module never decides *whether* something failed; it only says how a failure looks.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use nimbus_api::{FieldError, Kind};
use nimbus_store::StoreError;
use serde_json::{Value, json};

/// Why a request failed, carrying what the client needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The path names no resource we serve, or the object does not exist.
    #[error("{message}")]
    NotFound {
        message: String,
        details: Option<Details>,
    },
    /// Create of an object whose name is taken.
    #[error("{}.{} \"{}\" already exists", .details.kind, .details.group, .details.name)]
    AlreadyExists { details: Details },
    /// Optimistic concurrency: the given `resourceVersion` is stale.
    #[error("{message}")]
    Conflict { message: String, details: Details },
    /// The request itself is malformed (body syntax, namespace or name mismatch).
    #[error("{0}")]
    BadRequest(String),
    /// The object is well-formed but fails validation.
    #[error("{}", invalid_message(.kind, .details, .causes))]
    Invalid {
        kind: Kind,
        details: Details,
        causes: Vec<Cause>,
    },
    /// The body is larger than the server accepts.
    #[error("{0}")]
    TooLarge(String),
    /// A body in a format this endpoint does not take (e.g. a strategic merge patch).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No representation the client accepts.
    #[error("{0}")]
    NotAcceptable(String),
    /// A well-formed request that cannot be carried out as asked (e.g. a JSON patch whose
    /// `test` fails or whose path is missing).
    #[error("{0}")]
    Unprocessable(String),
    /// A server-side apply would change fields other managers own.
    #[error("{}", conflict_message(*.kind, .conflicts))]
    ApplyConflict {
        kind: Kind,
        details: Details,
        conflicts: Vec<FieldConflict>,
    },
    /// Missing or wrong bearer token.
    #[error("Unauthorized")]
    Unauthorized,
    /// The path exists but not with this method.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// Watch history needed to resume is gone; the client must list again.
    #[error("too old resource version: {0}")]
    Expired(String),
    /// The data directory has no room for the write; nothing was changed.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A fault in Nimbus (storage, corrupt data, a bug); the client did nothing wrong.
    #[error("{0}")]
    Internal(String),
}

/// `details` of a Status: which object, and for validation errors, which fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Details {
    pub name: String,
    /// The API group of the object's kind, e.g. `serving.knative.dev`.
    pub group: &'static str,
    /// The resource (plural), e.g. `services`, or for `Invalid` the kind, e.g. `Service`.
    pub kind: String,
}

pub use nimbus_api::fields::FieldConflict;

/// One entry of `details.causes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Kubernetes' cause type: `FieldValueInvalid`, `FieldValueForbidden`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

// === impl ApiError ===

impl ApiError {
    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::AlreadyExists { .. } | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ApplyConflict { .. } => StatusCode::CONFLICT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Expired(_) => StatusCode::GONE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Kubernetes `reason` (`NotFound`, `Invalid`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::BadRequest(_) => "BadRequest",
            Self::Invalid { .. } => "Invalid",
            Self::TooLarge(_) => "RequestEntityTooLarge",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Self::NotAcceptable(_) => "NotAcceptable",
            Self::Unprocessable(_) => "Invalid",
            Self::ApplyConflict { .. } => "Conflict",
            Self::Unauthorized => "Unauthorized",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::Expired(_) => "Expired",
            Self::InsufficientStorage(_) => "InternalError",
            Self::Internal(_) => "InternalError",
        }
    }

    /// The path names no resource: `the server could not find the requested resource`.
    pub fn no_such_path() -> Self {
        Self::NotFound {
            message: "the server could not find the requested resource".into(),
            details: None,
        }
    }

    /// A validation failure of `name` (a `kind`), with one cause per field error. `input` is
    /// the submitted object, used to quote the offending values as Kubernetes does — never a
    /// Secret's.
    pub fn invalid(kind: Kind, name: &str, errors: &[FieldError], input: &Value) -> Self {
        let input = match kind {
            Kind::Secret => &Value::Null,
            _ => input,
        };
        let causes = errors
            .iter()
            .map(|e| Cause::from_field_error(e, input))
            .collect();
        Self::Invalid {
            kind,
            details: Details::of_kind(kind, name),
            causes,
        }
    }

    /// A change that validation forbids (Knative's update rules: a Revision's spec never
    /// changes): 422 with one `FieldValueForbidden` cause per field, worded as Kubernetes
    /// words `field.Forbidden` (`spec: Forbidden: ...`).
    pub fn forbidden(kind: Kind, name: &str, errors: &[FieldError]) -> Self {
        let causes = errors.iter().map(Cause::forbidden).collect();
        Self::Invalid {
            kind,
            details: Details::of_kind(kind, name),
            causes,
        }
    }

    /// The Status object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if let Some(details) = self.details_json() {
            status["details"] = details;
        }
        status
    }

    fn details_json(&self) -> Option<Value> {
        let (details, causes) = match self {
            Self::NotFound {
                details: Some(d), ..
            } => (d, None),
            Self::AlreadyExists { details } | Self::Conflict { details, .. } => (details, None),
            Self::Invalid {
                details, causes, ..
            } => (details, Some(causes.iter().map(Cause::to_json).collect())),
            Self::ApplyConflict {
                kind,
                details,
                conflicts,
            } => (
                details,
                Some(conflicts.iter().map(|c| c.to_json(*kind)).collect()),
            ),
            _ => return None,
        };
        let mut out = json!({ "name": details.name, "group": details.group, "kind": details.kind });
        if let Some(causes) = causes {
            out["causes"] = Value::Array(causes);
        }
        Some(out)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(_) => {
                tracing::error!(error = %self, "internal error serving API request")
            }
            Self::InsufficientStorage(_) => {
                tracing::error!(error = %self, "the data directory is full")
            }
            _ => {}
        }
        (self.code(), Json(self.to_status())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, ref name, .. } => {
                let details = Details::new(kind, name);
                let message = format!("{} \"{name}\" not found", qualified(kind.plural(), kind));
                Self::NotFound {
                    message,
                    details: Some(details),
                }
            }
            StoreError::AlreadyExists { kind, ref name, .. } => Self::AlreadyExists {
                details: Details::new(kind, name),
            },
            StoreError::Conflict { kind, ref name, .. } => Self::Conflict {
                details: Details::new(kind, name),
                message: format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been \
                     modified; please apply your changes to the latest version and try again",
                    qualified(kind.plural(), kind),
                ),
            },
            StoreError::Invalid { .. } => Self::BadRequest(e.to_string()),
            StoreError::Gone { .. } => Self::Expired(e.to_string()),
            StoreError::Full(_) => Self::InsufficientStorage(e.to_string()),
            StoreError::Corrupt { .. } | StoreError::Sqlite(_) | StoreError::SecretsKey { .. } => {
                Self::Internal(e.to_string())
            }
        }
    }
}

// === impl Details ===

impl Details {
    /// Details naming the resource (`services`), as Kubernetes does for most errors.
    pub fn new(kind: Kind, name: &str) -> Self {
        Self {
            name: name.to_string(),
            group: kind.group(),
            kind: kind.plural().to_string(),
        }
    }

    /// Details naming the kind (`Service`), as Kubernetes does for `Invalid`: kubectl prints
    /// `The Service "hello" is invalid: ...` from them.
    pub fn of_kind(kind: Kind, name: &str) -> Self {
        Self {
            name: name.to_string(),
            group: kind.group(),
            kind: kind.as_str().to_string(),
        }
    }
}

// === FieldConflict as a Status cause ===

trait ConflictJson {
    fn to_json(&self, kind: Kind) -> Value;
}

impl ConflictJson for FieldConflict {
    fn to_json(&self, kind: Kind) -> Value {
        let api_version = kind.api_version();
        json!({
            "reason": "FieldManagerConflict",
            "message": format!("conflict with \"{}\" using {api_version}", self.manager),
            "field": self.field,
        })
    }
}

/// Kubernetes' wording: `Apply failed with 1 conflict: conflict with "m" using g/v: .spec.x`,
/// where `g/v` is the object's group-version.
fn conflict_message(kind: Kind, conflicts: &[FieldConflict]) -> String {
    let api_version = kind.api_version();
    let n = conflicts.len();
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    if let ([one], [manager]) = (conflicts, managers.as_slice()) {
        return format!(
            "Apply failed with 1 conflict: conflict with \"{manager}\" using {api_version}: {}",
            one.field
        );
    }
    let mut text = format!("Apply failed with {n} conflicts:");
    for manager in managers {
        text.push_str(&format!(
            " conflicts with \"{manager}\" using {api_version}:"
        ));
        for c in conflicts.iter().filter(|c| c.manager == manager) {
            text.push_str(&format!("\n- {}", c.field));
        }
    }
    text
}

// === impl Cause ===

impl Cause {
    fn from_field_error(e: &FieldError, input: &Value) -> Self {
        let message = match value_at(input, &e.path) {
            Some(v) => format!("Invalid value: {}: {}", show_value(v), e.message),
            None => e.message.clone(),
        };
        Self {
            reason: "FieldValueInvalid",
            field: e.path.clone(),
            message,
        }
    }

    fn forbidden(e: &FieldError) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: e.path.clone(),
            message: format!("Forbidden: {}", e.message),
        }
    }

    fn to_json(&self) -> Value {
        json!({ "reason": self.reason, "message": self.message, "field": self.field })
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// `name.group` (`services.serving.knative.dev`), or `name` alone for the core group's kinds
/// (`secrets`), as Kubernetes writes resources in messages.
fn qualified(name: &str, kind: Kind) -> String {
    match kind.group() {
        "" => name.to_string(),
        group => format!("{name}.{group}"),
    }
}

/// `Service.serving.knative.dev "hello" is invalid: <cause>` or `...: [<cause>, <cause>]`.
fn invalid_message(kind: &Kind, details: &Details, causes: &[Cause]) -> String {
    let head = format!(
        "{} \"{}\" is invalid",
        qualified(kind.as_str(), *kind),
        details.name
    );
    match causes {
        [] => head,
        [one] => format!("{head}: {one}"),
        many => {
            let all: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("{head}: [{}]", all.join(", "))
        }
    }
}

/// The value at a field path like `spec.traffic[1].percent`, if present.
fn value_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    let mut v = root;
    for segment in path.split('.') {
        let (key, indices) = segment
            .split_once('[')
            .map_or((segment, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            v = v.get(key)?;
        }
        for index in indices.split('[').filter(|s| !s.is_empty()) {
            v = v.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(v)
}

/// The value as compact JSON, cut short past [`MAX_SHOWN`] characters.
fn show_value(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// How much of an invalid value a message quotes.
const MAX_SHOWN: usize = 120;

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
