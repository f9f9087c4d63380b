//! Service-level tests: requests through `app()` with `oneshot`, over an in-memory store.

mod apply;
mod core;
mod crud;
mod discovery;
mod errors;
mod events;
mod groups;
mod immutable;
mod paging;
mod patch;
mod serve;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use nimbus_store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{API_PREFIX, ApiState, app};

fn store() -> Arc<Store> {
    Arc::new(Store::open_in_memory().expect("in-memory store"))
}

fn test_app() -> (Router, Arc<Store>) {
    let store = store();
    (app(ApiState::new(store.clone())), store)
}

fn url(rest: &str) -> String {
    format!("{API_PREFIX}{rest}")
}

fn request(method: Method, uri: &str, body: Option<&Value>) -> Request<Body> {
    let builder = Request::builder().method(method).uri(uri);
    match body {
        Some(v) => builder
            .header("content-type", "application/json")
            .body(Body::from(v.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("valid request")
}

/// Send one request; the response must be JSON (every answer, errors included, is).
async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        ct.as_deref(),
        Some("application/json"),
        "content-type of a {status} answer"
    );
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

/// A request with a JSON body of the given content type.
fn with_body(method: Method, uri: &str, content_type: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .expect("valid request")
}

/// A GET with an `Accept` header.
fn get_accepting(uri: &str, accept: &str) -> Request<Body> {
    Request::get(uri)
        .header("accept", accept)
        .body(Body::empty())
        .expect("valid request")
}

/// What kubectl get sends.
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    send(app, request(method, uri, body)).await
}

fn service(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": { "template": { "spec": { "containers": [{ "image": image }] } } }
    })
}

/// Assert a Status body with this code and reason; returns its message.
fn assert_status(body: &Value, code: u16, reason: &str) -> String {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    body["message"].as_str().expect("message").to_string()
}
