//! Every failure is a Kubernetes Status with the right code and reason, and changes nothing.

use super::*;

const SVC: &str = "/namespaces/default/services";

#[tokio::test]
async fn validation_errors_are_422_with_every_cause() {
    let (app, store) = test_app();
    let mut svc = service("hello", "img");
    svc["spec"]["traffic"] = json!([{ "latestRevision": true, "percent": 90 }]);
    svc["spec"]["template"]["spec"]["timeoutSeconds"] = json!(100000);
    let (code, body) = call(&app, Method::POST, &url(SVC), Some(&svc)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let message = assert_status(&body, 422, "Invalid");
    assert!(
        message.starts_with("Service.serving.knative.dev \"hello\" is invalid: ["),
        "{message}"
    );
    assert!(
        message.contains("spec.traffic: Invalid value: "),
        "{message}"
    );
    assert!(message.contains("traffic percents sum to 90"), "{message}");
    let details = &body["details"];
    assert_eq!(details["name"], "hello");
    assert_eq!(details["group"], "serving.knative.dev");
    assert_eq!(details["kind"], "Service");
    let fields: Vec<&str> = details["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"spec.traffic"), "{fields:?}");
    assert!(
        fields.contains(&"spec.template.spec.timeoutSeconds"),
        "{fields:?}"
    );
    assert!(
        details["causes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["reason"] == "FieldValueInvalid")
    );
    assert!(
        store
            .list(nimbus_api::Kind::Service, None)
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_field_is_422_naming_it() {
    let (app, _) = test_app();
    let mut svc = service("hello", "img");
    svc["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("typo");
    let (code, body) = call(&app, Method::POST, &url(SVC), Some(&svc)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(&body, 422, "Invalid");
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.template.spec.containers[0].imagee"
    );
}

#[tokio::test]
async fn malformed_json_is_400_with_position() {
    let (app, _) = test_app();
    let req = Request::post(url(SVC))
        .header("content-type", "application/json")
        .body(Body::from("{\"a\":\n}"))
        .unwrap();
    let (code, body) = send(&app, req).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let message = assert_status(&body, 400, "BadRequest");
    assert!(message.contains("line 2 column 1"), "{message}");
}

#[tokio::test]
async fn malformed_yaml_is_400() {
    let (app, _) = test_app();
    let req = Request::post(url(SVC))
        .header("content-type", "application/yaml")
        .body(Body::from("a: [1\nb: 2\n"))
        .unwrap();
    let (code, body) = send(&app, req).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(assert_status(&body, 400, "BadRequest").contains("malformed YAML"));
}

#[tokio::test]
async fn stale_resource_version_is_409_and_changes_nothing() {
    let (app, store) = test_app();
    let (_, created) = call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img:1")),
    )
    .await;
    let mut first = created.clone();
    first["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:2");
    let (code, current) = call(
        &app,
        Method::PUT,
        &url(&format!("{SVC}/hello")),
        Some(&first),
    )
    .await;
    assert_eq!(code, StatusCode::OK);

    let mut stale = created.clone(); // still carries the first resourceVersion
    stale["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:3");
    let (code, body) = call(
        &app,
        Method::PUT,
        &url(&format!("{SVC}/hello")),
        Some(&stale),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(assert_status(&body, 409, "Conflict").contains("the object has been modified"));
    assert_eq!(body["details"]["name"], "hello");
    let stored = store
        .must_get(nimbus_api::Kind::Service, "default", "hello")
        .unwrap();
    assert_eq!(stored.to_json(), current);
}

#[tokio::test]
async fn create_twice_is_409_already_exists() {
    let (app, _) = test_app();
    call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img")),
    )
    .await;
    let (code, body) = call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img")),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    let message = assert_status(&body, 409, "AlreadyExists");
    assert_eq!(
        message,
        "services.serving.knative.dev \"hello\" already exists"
    );
}

#[tokio::test]
async fn replace_or_delete_of_missing_is_404() {
    let (app, _) = test_app();
    let (code, body) = call(
        &app,
        Method::PUT,
        &url(&format!("{SVC}/nope")),
        Some(&service("nope", "img")),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_status(&body, 404, "NotFound");
    let (code, _) = call(&app, Method::DELETE, &url(&format!("{SVC}/nope")), None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn namespace_and_name_must_match_the_url() {
    let (app, _) = test_app();
    let mut svc = service("hello", "img");
    svc["metadata"]["namespace"] = json!("other");
    let (code, body) = call(&app, Method::POST, &url(SVC), Some(&svc)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(assert_status(&body, 400, "BadRequest").contains("does not match the namespace"));

    call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img")),
    )
    .await;
    let (code, body) = call(
        &app,
        Method::PUT,
        &url(&format!("{SVC}/hello")),
        Some(&service("bye", "img")),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(assert_status(&body, 400, "BadRequest").contains("does not match the name"));
}

#[tokio::test]
async fn wrong_kind_in_body_is_422() {
    let (app, _) = test_app();
    let (code, body) = call(
        &app,
        Method::POST,
        &url("/namespaces/default/routes"),
        Some(&service("x", "img")),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["details"]["causes"][0]["field"], "kind");
}

#[tokio::test]
async fn unknown_plurals_and_paths_are_404() {
    let (app, _) = test_app();
    for path in [
        url("/namespaces/default/pods"),
        url("/pods"),
        url("/namespaces/default/pods/x"),
        "/nope".into(),
    ] {
        let (code, body) = call(&app, Method::GET, &path, None).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            assert_status(&body, 404, "NotFound"),
            "the server could not find the requested resource"
        );
    }
    let (code, _) = call(
        &app,
        Method::POST,
        &url("/namespaces/default/pods"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_method_is_405_status() {
    let (app, _) = test_app();
    let (code, body) = call(&app, Method::DELETE, &url(SVC), None).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_status(&body, 405, "MethodNotAllowed");
}

#[tokio::test]
async fn oversized_body_is_413_status() {
    let (app, _) = test_app();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(crate::MAX_BODY_BYTES));
    let req = Request::post(url(SVC))
        .header("content-type", "application/json")
        .body(Body::from(big))
        .unwrap();
    let (code, body) = send(&app, req).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert_status(&body, 413, "RequestEntityTooLarge");
}
