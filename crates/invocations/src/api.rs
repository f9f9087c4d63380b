//! The invocations on the API port (behind its bearer token), Kubernetes-style under
//! `nimbus.dev/v1`:
//!
//! | request | does |
//! |---|---|
//! | `GET /apis/nimbus.dev/v1/invocations` | every namespace's, newest first |
//! | `GET /apis/nimbus.dev/v1/namespaces/{ns}/invocations?service=S&state=Failed&limit=N` | a namespace's |
//! | `POST /apis/nimbus.dev/v1/namespaces/{ns}/invocations` | invoke a Service asynchronously: `{"service": "hello", "method": "POST", "path": "/", "headers": {"k": "v"}, "body": "text"}` (or `bodyBase64`); `201` once stored |
//! | `GET .../invocations/{id}` | one, with its attempts and last response |
//! | `DELETE .../invocations/{id}` | cancel a pending one (`409` once finished) |
//!
//! Invocation objects carry `metadata` (`name` is the id), `spec` (target and request) and
//! `status` (state, attempts, response); the request body is not shown.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{Invocation, State, StoredRequest, StoredResponse};
use crate::{AcceptError, Invocations};

/// The group/version of Invocation objects.
pub const API_VERSION: &str = "nimbus.dev/v1";
const PREFIX: &str = "/apis/nimbus.dev/v1";
/// Most invocations one list returns.
const MAX_LIST: usize = 10_000;

/// The routes above, to be put behind the API's authentication.
pub fn routes(invocations: Arc<Invocations>) -> Router {
    Router::new()
        .route(&format!("{PREFIX}/invocations"), get(list_all))
        .route(
            &format!("{PREFIX}/namespaces/{{ns}}/invocations"),
            get(list).post(create),
        )
        .route(
            &format!("{PREFIX}/namespaces/{{ns}}/invocations/{{id}}"),
            get(read).delete(cancel),
        )
        .with_state(invocations)
}

#[derive(Deserialize)]
struct ListQuery {
    service: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

async fn list_all(
    AxumState(inv): AxumState<Arc<Invocations>>,
    Query(q): Query<ListQuery>,
) -> Response {
    listing(&inv, None, q)
}

async fn list(
    AxumState(inv): AxumState<Arc<Invocations>>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    listing(&inv, Some(&ns), q)
}

fn listing(inv: &Invocations, ns: Option<&str>, q: ListQuery) -> Response {
    let state = match q.state.as_deref().map(|s| (s, State::parse(s))) {
        Some((s, None)) => {
            return status(
                StatusCode::BAD_REQUEST,
                format!("state {s:?} is not one of Pending, Succeeded, Failed, Cancelled"),
            );
        }
        Some((_, state)) => state,
        None => None,
    };
    let limit = q.limit.unwrap_or(MAX_LIST).min(MAX_LIST);
    match inv.queue().list(ns, q.service.as_deref(), state, limit) {
        Ok(items) => Json(json!({
            "apiVersion": API_VERSION,
            "kind": "InvocationList",
            "metadata": {},
            "items": items.iter().map(|i| object(i, false)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn read(
    AxumState(inv): AxumState<Arc<Invocations>>,
    Path((ns, id)): Path<(String, String)>,
) -> Response {
    match inv.queue().get(&ns, &id) {
        Ok(Some(found)) => Json(object(&found, true)).into_response(),
        Ok(None) => not_found(&ns, &id),
        Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn cancel(
    AxumState(inv): AxumState<Arc<Invocations>>,
    Path((ns, id)): Path<(String, String)>,
) -> Response {
    match inv.queue().cancel(&ns, &id).await {
        Ok(Some((_, true))) => match inv.queue().get(&ns, &id) {
            Ok(Some(found)) => Json(object(&found, true)).into_response(),
            _ => not_found(&ns, &id),
        },
        Ok(Some((other, false))) => status(
            StatusCode::CONFLICT,
            format!(
                "invocation {id} is {} already; only a pending invocation can be cancelled",
                other.as_str()
            ),
        ),
        Ok(None) => not_found(&ns, &id),
        Err(e) => status(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST` body: what to send to which Service.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Create {
    service: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

async fn create(
    AxumState(inv): AxumState<Arc<Invocations>>,
    Path(ns): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let create: Create = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return status(StatusCode::BAD_REQUEST, format!("the invocation: {e}")),
    };
    let body = match (create.body, create.body_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => match STANDARD.decode(b64.trim()) {
            Ok(bytes) => bytes,
            Err(e) => return status(StatusCode::BAD_REQUEST, format!("bodyBase64: {e}")),
        },
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => {
            return status(StatusCode::BAD_REQUEST, "give body or bodyBase64, not both");
        }
    };
    let path = create.path.unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        return status(
            StatusCode::BAD_REQUEST,
            format!(
                "path {path:?} must start with '/' and be a valid path and query (escape spaces as %20)"
            ),
        );
    }
    let method = create
        .method
        .unwrap_or_else(|| "POST".into())
        .to_ascii_uppercase();
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return status(
            StatusCode::BAD_REQUEST,
            format!("method {method:?} is not an HTTP method"),
        );
    }
    for (name, value) in &create.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            return status(
                StatusCode::BAD_REQUEST,
                format!("header {name:?} is not a valid HTTP header"),
            );
        }
        let lower = name.to_ascii_lowercase();
        if ["host", "content-length", "transfer-encoding"].contains(&lower.as_str())
            || lower.starts_with(crate::dispatcher::RESERVED_PREFIX)
        {
            return status(
                StatusCode::BAD_REQUEST,
                format!("header {name:?} is set by Nimbus; remove it"),
            );
        }
    }
    let request = StoredRequest {
        method,
        target: path,
        headers: create.headers.into_iter().collect(),
        size: body.len(),
        body: body.into(),
    };
    match inv.accept(&ns, &create.service, None, request).await {
        Ok(accepted) => (StatusCode::CREATED, Json(object(&accepted, true))).into_response(),
        Err(e @ AcceptError::Unknown(_)) => status(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ AcceptError::Full { .. }) => status(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        Err(e @ AcceptError::TooLarge { .. }) => {
            status(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Err(e) => status(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// An invocation as an API object (`detail`: with attempts and the response).
pub fn object(i: &Invocation, detail: bool) -> Value {
    let time = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    let mut status = json!({
        "state": i.state.as_str(),
        "attemptCount": i.attempts.len(),
        "throttleCount": i.throttles,
        "lastUpdateTime": time(i.updated_ms),
    });
    if i.state == State::Pending {
        status["nextAttemptTime"] = json!(time(i.next_ms));
    }
    if let Some(r) = &i.response {
        status["response"] = response(r, detail);
    }
    if let Some(e) = &i.error {
        status["error"] = json!(e);
    }
    if detail {
        status["attempts"] = json!(
            i.attempts
                .iter()
                .map(|a| json!({
                    "time": time(a.at_ms),
                    "durationMs": a.took_ms,
                    "statusCode": a.status,
                    "error": a.error,
                }))
                .collect::<Vec<_>>()
        );
    }
    let mut spec = json!({
        "target": i.target.to_string(),
        "method": i.request.method,
        "path": i.request.target,
        "bodyBytes": i.request.size.max(i.request.body.len()),
        "maxAttempts": i.policy.max_attempts,
        "maxEventAgeSeconds": i.policy.max_event_age_ms / 1000,
    });
    for (key, value) in [
        ("onSuccess", &i.policy.on_success),
        ("onFailure", &i.policy.on_failure),
    ] {
        if let Some(v) = value {
            spec[key] = json!(v);
        }
    }
    if let Some(cause) = &i.cause {
        spec["cause"] = json!(cause);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "Invocation",
        "metadata": {
            "name": i.id,
            "namespace": i.namespace,
            "creationTimestamp": time(i.created_ms),
        },
        "spec": spec,
        "status": status,
    })
}

fn response(r: &StoredResponse, detail: bool) -> Value {
    let mut out = json!({"statusCode": r.status});
    if detail {
        match std::str::from_utf8(&r.body) {
            Ok(text) => out["body"] = json!(text),
            Err(_) => out["bodyBase64"] = json!(STANDARD.encode(&r.body)),
        }
        out["headers"] = json!(r.headers.iter().cloned().collect::<BTreeMap<_, _>>());
        if r.truncated {
            out["truncated"] = json!(true);
        }
    }
    out
}

fn not_found(ns: &str, id: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        format!("invocation {ns}/{id} not found"),
    )
}

/// A Kubernetes `Status` error.
fn status(code: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        _ => "InternalError",
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}
