//! Watch streams, read incrementally with a deadline.

use std::time::Duration;

use futures::StreamExt;

use super::*;

const SVC: &str = "/namespaces/default/services";
const DEADLINE: Duration = Duration::from_secs(5);

/// Reads newline-delimited JSON events from a streaming body.
pub(super) struct Events {
    body: axum::body::BodyDataStream,
    buffer: Vec<u8>,
}

impl Events {
    pub(super) async fn open(app: &Router, uri: &str) -> Self {
        Self::open_request(app, request(Method::GET, uri, None)).await
    }

    pub(super) async fn open_request(app: &Router, req: Request<Body>) -> Self {
        let resp = app.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/json");
        Self {
            body: resp.into_body().into_data_stream(),
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` when the stream ended; panics past the deadline.
    pub(super) async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(DEADLINE, self.read_line())
            .await
            .expect("no watch event before the deadline")
    }

    async fn read_line(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("each line is JSON"));
            }
            let chunk = self.body.next().await?.expect("body chunk");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// `(type, name)` of the next event.
    async fn next_summary(&mut self) -> (String, String) {
        let e = self.next().await.expect("an event");
        (
            e["type"].as_str().unwrap().to_string(),
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    }
}

fn ev(t: &str, name: &str) -> (String, String) {
    (t.to_string(), name.to_string())
}

#[tokio::test]
async fn watch_yields_added_modified_deleted() {
    let (app, _) = test_app();
    call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("before", "img")),
    )
    .await;
    let mut events = Events::open(&app, &url(&format!("{SVC}?watch=true"))).await;
    assert_eq!(
        events.next_summary().await,
        ev("ADDED", "before"),
        "current objects first"
    );

    let (_, created) = call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img:1")),
    )
    .await;
    let mut changed = created.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:2");
    call(
        &app,
        Method::PUT,
        &url(&format!("{SVC}/hello")),
        Some(&changed),
    )
    .await;
    call(
        &app,
        Method::POST,
        &url("/namespaces/other/services"),
        Some(&service("elsewhere", "img")),
    )
    .await;
    call(
        &app,
        Method::POST,
        &url("/namespaces/default/routes"),
        Some(&route("rt")),
    )
    .await;
    call(&app, Method::DELETE, &url(&format!("{SVC}/hello")), None).await;

    assert_eq!(events.next_summary().await, ev("ADDED", "hello"));
    let modified = events.next().await.unwrap();
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(
        modified["object"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:2"
    );
    assert_eq!(
        events.next_summary().await,
        ev("DELETED", "hello"),
        "other namespaces and kinds filtered out"
    );
}

#[tokio::test]
async fn watch_from_resource_version_replays_history() {
    let (app, store) = test_app();
    call(&app, Method::POST, &url(SVC), Some(&service("a", "img"))).await;
    let rv = store.resource_version().unwrap();
    call(&app, Method::POST, &url(SVC), Some(&service("b", "img"))).await;
    call(&app, Method::DELETE, &url(&format!("{SVC}/a")), None).await;
    let mut events = Events::open(
        &app,
        &url(&format!("/services?watch=1&resourceVersion={rv}")),
    )
    .await;
    assert_eq!(events.next_summary().await, ev("ADDED", "b"));
    assert_eq!(events.next_summary().await, ev("DELETED", "a"));
    call(&app, Method::POST, &url(SVC), Some(&service("c", "img"))).await;
    assert_eq!(
        events.next_summary().await,
        ev("ADDED", "c"),
        "then live events, without repeats"
    );
}

#[tokio::test]
async fn watch_filters_by_label_selector() {
    let (app, _) = test_app();
    let mut events = Events::open(
        &app,
        &url(&format!("{SVC}?watch=true&labelSelector=app%3Dkeep")),
    )
    .await;
    call(&app, Method::POST, &url(SVC), Some(&service("drop", "img"))).await;
    call(&app, Method::POST, &url(SVC), Some(&service("keep", "img"))).await;
    assert_eq!(events.next_summary().await, ev("ADDED", "keep"));
}

#[tokio::test]
async fn watch_ends_after_timeout_seconds() {
    let (app, _) = test_app();
    let mut events = Events::open(&app, &url(&format!("{SVC}?watch=true&timeoutSeconds=0"))).await;
    assert_eq!(events.next().await, None);
}

#[tokio::test]
async fn watch_from_pruned_history_is_one_410_error_event() {
    let (app, store) = test_app();
    // The store prunes history in steps of 1000, keeping 10 000 events: at 11 000, 1..=1000 go.
    for i in 0..11_000 {
        let route = nimbus_api::parse::decode_object(None, route(&format!("r{i}"))).unwrap();
        store.create(route).unwrap();
    }
    let mut events = Events::open(&app, &url(&format!("{SVC}?watch=true&resourceVersion=1"))).await;
    let error = events.next().await.expect("an error event");
    assert_eq!(error["type"], "ERROR");
    assert_status(&error["object"], 410, "Expired");
    assert_eq!(events.next().await, None, "the stream ends");
}

fn route(name: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Route",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "traffic": [{ "revisionName": format!("{name}-00001"), "percent": 100 }] }
    })
}
