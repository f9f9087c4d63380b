//! A Revision's spec never changes (Knative's rule): every write path refuses a change with a
//! 422 `Status` naming `spec`, and stores nothing; metadata and status writes still work.

use super::*;

const REV: &str = "/namespaces/default/revisions/hello-00001";

fn revision(image: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": { "name": "hello-00001", "labels": { "app": "hello" } },
        "spec": { "containers": [{ "image": image }] }
    })
}

async fn created(app: &Router) -> Value {
    let (code, body) = call(
        app,
        Method::POST,
        &url("/namespaces/default/revisions"),
        Some(&revision("img:1")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body
}

/// The answer refuses the change, naming `spec` and what changed; the stored spec is as created.
async fn assert_refused(app: &Router, code: StatusCode, body: &Value) {
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = assert_status(body, 422, "Invalid");
    assert!(
        message.starts_with(
            "Revision.serving.knative.dev \"hello-00001\" is invalid: spec: Forbidden: Immutable fields changed (-old +new): spec.containers[0].image: -\"img:1\" +\"img:2\""
        ),
        "{message}"
    );
    let details = &body["details"];
    assert_eq!(
        (&details["group"], &details["kind"], &details["name"]),
        (
            &json!("serving.knative.dev"),
            &json!("Revision"),
            &json!("hello-00001")
        )
    );
    assert_eq!(details["causes"][0]["field"], "spec");
    assert_eq!(details["causes"][0]["reason"], "FieldValueForbidden");
    let (_, stored) = call(app, Method::GET, &url(REV), None).await;
    assert_eq!(stored["spec"]["containers"][0]["image"], "img:1");
}

#[tokio::test]
async fn put_of_a_changed_revision_spec_is_422() {
    let (app, _) = test_app();
    let mut edited = created(&app).await;
    edited["spec"]["containers"][0]["image"] = json!("img:2");
    let (code, body) = call(&app, Method::PUT, &url(REV), Some(&edited)).await;
    assert_refused(&app, code, &body).await;
    let (code, body) = call(
        &app,
        Method::PUT,
        &url(&format!("{REV}?dryRun=All")),
        Some(&edited),
    )
    .await;
    assert_refused(&app, code, &body).await;
}

#[tokio::test]
async fn merge_and_json_patches_of_a_revision_spec_are_422() {
    let (app, _) = test_app();
    created(&app).await;
    let merge = r#"{"spec":{"containers":[{"image":"img:2"}]}}"#;
    let (code, body) = send(
        &app,
        with_body(
            Method::PATCH,
            &url(REV),
            "application/merge-patch+json",
            merge,
        ),
    )
    .await;
    assert_refused(&app, code, &body).await;
    let patch = r#"[{"op":"replace","path":"/spec/containers/0/image","value":"img:2"}]"#;
    let (code, body) = send(
        &app,
        with_body(
            Method::PATCH,
            &url(REV),
            "application/json-patch+json",
            patch,
        ),
    )
    .await;
    assert_refused(&app, code, &body).await;
}

#[tokio::test]
async fn server_side_apply_of_a_revision_spec_is_422() {
    let (app, _) = test_app();
    let apply = |image: &str| {
        with_body(
            Method::PATCH,
            &url(&format!("{REV}?fieldManager=kubectl")),
            "application/apply-patch+yaml",
            &revision(image).to_string(),
        )
    };
    assert_eq!(send(&app, apply("img:1")).await.0, StatusCode::CREATED);
    let (code, body) = send(&app, apply("img:2")).await;
    assert_refused(&app, code, &body).await;
}

#[tokio::test]
async fn revision_metadata_and_status_still_change() {
    let (app, _) = test_app();
    let mut edited = created(&app).await;
    edited["metadata"]["labels"]["tier"] = json!("web");
    let (code, body) = call(&app, Method::PUT, &url(REV), Some(&edited)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["metadata"]["labels"]["tier"], "web");

    let mut status = body.clone();
    status["status"] =
        json!({ "actualReplicas": 1, "conditions": [{ "type": "Ready", "status": "True" }] });
    let (code, body) = call(
        &app,
        Method::PUT,
        &url(&format!("{REV}/status")),
        Some(&status),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["actualReplicas"], 1);
    let patch = r#"{"status":{"desiredReplicas":2}}"#;
    let (code, body) = send(
        &app,
        with_body(
            Method::PATCH,
            &url(&format!("{REV}/status")),
            "application/merge-patch+json",
            patch,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["desiredReplicas"], 2);
}

/// A template name reused with another template is an invalid value of that name (not a
/// forbidden change: the Service itself may change).
#[tokio::test]
async fn a_reused_template_name_with_another_template_is_an_invalid_value() {
    let (app, _) = test_app();
    let service = |image: &str| {
        json!({
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": { "name": "hello" },
            "spec": { "template": {
                "metadata": { "name": "hello-a" },
                "spec": { "containers": [{ "image": image }] }
            } }
        })
    };
    let (code, body) = call(
        &app,
        Method::POST,
        &url("/namespaces/default/services"),
        Some(&service("img:1")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, body) = call(
        &app,
        Method::PUT,
        &url("/namespaces/default/services/hello"),
        Some(&service("img:2")),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let cause = &body["details"]["causes"][0];
    assert_eq!(cause["field"], "spec.template.metadata.name", "{body}");
    assert_eq!(cause["reason"], "FieldValueInvalid", "{body}");
}
