//! The `log` subresource through `app()` with `oneshot`, over an in-memory store and temporary
//! log files.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use nimbus_api::{Kind, Object};
use nimbus_logs::{LogLimits, LogWriter, Stream, Timestamp};
use nimbus_store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::{API_PREFIX, app};

fn t(second: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + second).unwrap()
}

fn object(kind: Kind, name: &str, labels: Value) -> Object {
    let spec = match kind {
        Kind::Service => json!({ "template": { "spec": { "containers": [{ "image": "x" }] } } }),
        _ => json!({ "containers": [{ "image": "x" }] }),
    };
    let value = json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": kind.as_str(),
        "metadata": { "name": name, "namespace": "default", "labels": labels },
        "spec": spec,
    });
    Object::from_json(kind, value).unwrap()
}

/// Services `hello` (revisions 1 and 2) and `other` (one revision), with log lines written at
/// interleaved times; and the app serving them with the token `secret`.
fn fixture(root: &Path) -> (Router, Arc<Store>) {
    let store = Arc::new(Store::open_in_memory().unwrap());
    for svc in ["hello", "other"] {
        store.create(object(Kind::Service, svc, json!({}))).unwrap();
    }
    for (svc, rev) in [
        ("hello", "hello-00001"),
        ("hello", "hello-00002"),
        ("other", "other-00001"),
    ] {
        let labels = json!({ LABEL_SERVICE: svc });
        store.create(object(Kind::Revision, rev, labels)).unwrap();
    }
    write(root, "hello-00001", 0, Stream::Stdout, "first");
    write(root, "other-00001", 1, Stream::Stdout, "not mine");
    write(root, "hello-00002", 2, Stream::Stderr, "second");
    write(root, "hello-00001", 3, Stream::Stdout, "third");
    let state = ApiState::new(store.clone())
        .with_token("secret")
        .with_logs_root(root);
    (app(state), store)
}

fn write(root: &Path, rev: &str, second: i64, stream: Stream, text: &str) {
    let path = nimbus_logs::instance_file(root, "default", rev, &format!("{rev}-1"));
    let mut w = LogWriter::open(path, LogLimits::default()).unwrap();
    w.try_write(t(second), stream, text).unwrap();
}

fn get(rest: &str) -> Request<Body> {
    Request::get(format!("{API_PREFIX}/namespaces/default/{rest}"))
        .header("authorization", "Bearer secret")
        .body(Body::empty())
        .unwrap()
}

async fn text(app: &Router, rest: &str) -> (StatusCode, String) {
    let resp = app.clone().oneshot(get(rest)).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn a_service_shows_its_revisions_merged_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = fixture(dir.path());
    let resp = app
        .clone()
        .oneshot(get("services/hello/log"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let (_, body) = text(&app, "services/hello/log").await;
    assert_eq!(
        body,
        "hello-00001-1 first\nhello-00002-1 second\nhello-00001-1 third\n"
    );
}

#[tokio::test]
async fn options_pick_lines_and_add_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = fixture(dir.path());
    let (_, body) = text(&app, "services/hello/log?tailLines=1&timestamps=true").await;
    assert_eq!(body, "hello-00001-1 2023-11-14T22:13:23.000000000Z third\n");
    let since = "2023-11-14T22:13:22Z";
    let (_, body) = text(&app, &format!("services/hello/log?sinceTime={since}")).await;
    assert_eq!(body, "hello-00002-1 second\nhello-00001-1 third\n");
    let (_, body) = text(&app, "services/hello/log?revision=hello-00001").await;
    assert_eq!(body, "hello-00001-1 first\nhello-00001-1 third\n");
    let (_, body) = text(&app, "revisions/other-00001/log").await;
    assert_eq!(body, "other-00001-1 not mine\n");
    // Every line above is from 2023: none is in the last hour.
    let (_, body) = text(&app, "services/hello/log?sinceSeconds=3600").await;
    assert_eq!(body, "");
}

#[tokio::test]
async fn missing_objects_and_bad_options_are_status_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = fixture(dir.path());
    for (rest, code, reason) in [
        ("services/nope/log", 404, "NotFound"),
        ("revisions/nope/log", 404, "NotFound"),
        ("services/hello/log?revision=nope", 404, "NotFound"),
        ("services/hello/log?revision=other-00001", 400, "BadRequest"),
        ("services/hello/log?sinceSeconds=0", 400, "BadRequest"),
        (
            "services/hello/log?sinceSeconds=1&sinceTime=2027-01-01T00:00:00Z",
            400,
            "BadRequest",
        ),
        ("services/hello/log?sinceTime=yesterday", 400, "BadRequest"),
        ("services/hello/log?tailLines=-1", 400, "BadRequest"),
        ("configurations/hello/log", 404, "NotFound"),
    ] {
        let (status, body) = text(&app, rest).await;
        let status_json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status.as_u16(), code, "{rest}: {body}");
        assert_eq!(status_json["reason"], reason, "{rest}: {body}");
    }
    let (_, body) = text(&app, "services/nope/log").await;
    assert!(
        body.contains(r#"services.serving.knative.dev \"nope\" not found"#),
        "{body}"
    );
}

#[tokio::test]
async fn the_token_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = fixture(dir.path());
    let req = Request::get(format!(
        "{API_PREFIX}/namespaces/default/services/hello/log"
    ))
    .body(Body::empty())
    .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_status_subresource_still_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = fixture(dir.path());
    let (status, body) = text(&app, "services/hello/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn follow_streams_new_lines_and_new_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = fixture(dir.path());
    let resp = app
        .oneshot(get("services/hello/log?follow=true&tailLines=1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = String::new();
    let next_until = async |body: &mut Body, got: &mut String, want: &str| {
        while !got.contains(want) {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .unwrap_or_else(|_| panic!("no {want:?} within 10 s; got {got:?}"))
                .expect("the stream goes on")
                .unwrap();
            got.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
        }
    };
    next_until(&mut body, &mut got, "third\n").await;
    assert_eq!(got, "hello-00001-1 third\n");
    write(dir.path(), "hello-00002", 4, Stream::Stdout, "fourth");
    next_until(&mut body, &mut got, "fourth\n").await;
    let labels = json!({ LABEL_SERVICE: "hello" });
    store
        .create(object(Kind::Revision, "hello-00003", labels))
        .unwrap();
    write(dir.path(), "hello-00003", 5, Stream::Stdout, "fifth");
    next_until(&mut body, &mut got, "fifth\n").await;
    assert_eq!(
        got,
        "hello-00001-1 third\nhello-00002-1 fourth\nhello-00003-1 fifth\n"
    );
}

#[test]
fn since_seconds_counts_back_from_now() {
    let params = LogParams {
        since_seconds: Some("10".into()),
        follow: Some("true".into()),
        ..LogParams::default()
    };
    let query = LogQuery::parse(&params, t(100)).unwrap();
    assert_eq!(
        query,
        LogQuery {
            follow: true,
            since: Some(t(90)),
            tail: None,
            timestamps: false
        }
    );
}
