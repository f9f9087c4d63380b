//! PATCH: merge and JSON patches, refused strategic merge patches, `fieldValidation`, dry runs.

use super::*;

const SVC: &str = "/namespaces/default/services";

async fn created(app: &Router) -> Value {
    let (code, body) = call(
        app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img:1")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body
}

async fn patch(app: &Router, content_type: &str, body: &str) -> (StatusCode, Value) {
    let uri = url(&format!("{SVC}/hello?fieldManager=kubectl-patch"));
    send(app, with_body(Method::PATCH, &uri, content_type, body)).await
}

#[tokio::test]
async fn merge_patch_changes_traffic_and_records_the_manager() {
    let (app, _) = test_app();
    created(&app).await;
    let (code, body) = patch(
        &app,
        "application/merge-patch+json",
        r#"{"spec":{"traffic":[{"latestRevision":true,"percent":100,"tag":"now"}]}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["spec"]["traffic"][0]["tag"], "now");
    assert_eq!(body["metadata"]["generation"], 2);
    let managers: Vec<&str> = body["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"kubectl-patch"), "{managers:?}");
    let entry = body["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubectl-patch")
        .unwrap();
    assert_eq!(entry["operation"], "Update");
    assert!(
        entry["fieldsV1"]["f:spec"]["f:traffic"].is_object(),
        "{entry}"
    );
}

#[tokio::test]
async fn json_patch_and_its_failures() {
    let (app, _) = test_app();
    created(&app).await;
    let ops = r#"[{"op":"add","path":"/metadata/labels/tier","value":"web"}]"#;
    let (code, body) = patch(&app, "application/json-patch+json", ops).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["metadata"]["labels"]["tier"], "web");

    let (code, body) = patch(
        &app,
        "application/json-patch+json",
        r#"[{"op":"frobnicate"}]"#,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&body, 400, "BadRequest");
    let failing = r#"[{"op":"test","path":"/metadata/labels/tier","value":"db"}]"#;
    let (code, body) = patch(&app, "application/json-patch+json", failing).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(&body, 422, "Invalid");
}

#[tokio::test]
async fn strategic_merge_patch_is_415_as_for_custom_resources() {
    let (app, _) = test_app();
    created(&app).await;
    let (code, body) = patch(&app, "application/strategic-merge-patch+json", "{}").await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let message = assert_status(&body, 415, "UnsupportedMediaType");
    assert!(
        message.contains("application/merge-patch+json"),
        "{message}"
    );
}

#[tokio::test]
async fn patch_to_an_invalid_object_is_422_naming_the_field() {
    let (app, store) = test_app();
    let before = created(&app).await;
    let (code, body) = patch(
        &app,
        "application/merge-patch+json",
        r#"{"spec":{"traffic":[{"percent":"fifty"}]}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(&body, 422, "Invalid");
    assert_eq!(body["details"]["kind"], "Service");
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.traffic[0].percent"
    );
    let (code, body) = patch(&app, "application/merge-patch+json", "not json").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let now = store
        .must_get(nimbus_api::Kind::Service, "default", "hello")
        .unwrap();
    assert_eq!(
        now.metadata().resource_version,
        before["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from)
    );
}

#[tokio::test]
async fn patch_with_a_stale_resource_version_is_409() {
    let (app, _) = test_app();
    created(&app).await;
    let (code, body) = patch(
        &app,
        "application/merge-patch+json",
        r#"{"metadata":{"resourceVersion":"1","labels":{"a":"b"}}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "the current version: {body}");
    let (code, body) = patch(
        &app,
        "application/merge-patch+json",
        r#"{"metadata":{"resourceVersion":"1","labels":{"x":"y"}}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_status(&body, 409, "Conflict");
}

#[tokio::test]
async fn field_validation_strict_warn_ignore() {
    let (app, _) = test_app();
    let mut svc = service("hello", "img");
    svc["spec"]["bogus"] = json!(1);
    let uri = |mode: &str| url(&format!("{SVC}?fieldValidation={mode}"));
    let (code, body) = call(&app, Method::POST, &uri("Strict"), Some(&svc)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["details"]["causes"][0]["field"], "spec.bogus");

    let resp = app
        .clone()
        .oneshot(request(Method::POST, &uri("Warn"), Some(&svc)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["warning"],
        r#"299 - "unknown field \"spec.bogus\"""#
    );

    svc["metadata"]["name"] = json!("quiet");
    let resp = app
        .clone()
        .oneshot(request(Method::POST, &uri("Ignore"), Some(&svc)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.headers().get("warning").is_none());

    let (code, _) = call(&app, Method::POST, &uri("Loud"), Some(&svc)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let (app, store) = test_app();
    let (code, body) = call(
        &app,
        Method::POST,
        &url(&format!("{SVC}?dryRun=All")),
        Some(&service("hello", "img")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert!(
        store
            .list(nimbus_api::Kind::Service, None)
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn status_subresource_patch_changes_only_status() {
    let (app, _) = test_app();
    created(&app).await;
    let uri = url(&format!("{SVC}/hello/status"));
    let body = r#"{"status":{"url":"http://x"},"spec":{"traffic":[{"latestRevision":true,"percent":100,"tag":"t"}]}}"#;
    let (code, out) = send(
        &app,
        with_body(Method::PATCH, &uri, "application/merge-patch+json", body),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{out}");
    assert_eq!(out["status"]["url"], "http://x");
    assert!(out["spec"]["traffic"][0].get("tag").is_none(), "{out}");
}
