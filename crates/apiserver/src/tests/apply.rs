//! Server-side apply: create, update, field ownership, conflicts and `force`.

use super::*;

const SVC: &str = "/namespaces/default/services";

async fn apply(app: &Router, manager: &str, force: bool, config: &Value) -> (StatusCode, Value) {
    let uri = url(&format!("{SVC}/hello?fieldManager={manager}&force={force}"));
    send(
        app,
        with_body(
            Method::PATCH,
            &uri,
            "application/apply-patch+yaml",
            &config.to_string(),
        ),
    )
    .await
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn apply_creates_then_updates() {
    let (app, _) = test_app();
    let (code, created) = apply(&app, "kubectl", false, &service("hello", "img:1")).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(managers(&created), [("kubectl".into(), "Apply".into())]);
    let (code, updated) = apply(&app, "kubectl", false, &service("hello", "img:2")).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:2"
    );
    assert_eq!(updated["metadata"]["generation"], 2);
}

#[tokio::test]
async fn yaml_body_and_a_required_field_manager() {
    let (app, _) = test_app();
    let yaml = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n  template:\n    spec:\n      containers:\n        - image: img\n";
    let uri = url(&format!("{SVC}/hello?fieldManager=m"));
    let (code, body) = send(
        &app,
        with_body(Method::PATCH, &uri, "application/apply-patch+yaml", yaml),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let uri = url(&format!("{SVC}/hello"));
    let (code, body) = send(
        &app,
        with_body(Method::PATCH, &uri, "application/apply-patch+yaml", yaml),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(assert_status(&body, 422, "Invalid").contains("fieldManager"));
}

#[tokio::test]
async fn another_manager_changing_a_field_conflicts_unless_forced() {
    let (app, _) = test_app();
    apply(&app, "alice", false, &service("hello", "img:1")).await;
    // The same values: shared ownership, no conflict.
    let (code, shared) = apply(&app, "bob", false, &service("hello", "img:1")).await;
    assert_eq!(code, StatusCode::OK, "{shared}");
    assert_eq!(managers(&shared).len(), 2);
    // A different image: conflict, as Kubernetes reports it.
    let (code, body) = apply(&app, "bob", false, &service("hello", "img:2")).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let message = assert_status(&body, 409, "Conflict");
    assert_eq!(
        message,
        "Apply failed with 1 conflict: conflict with \"alice\" using serving.knative.dev/v1: .spec.template.spec.containers"
    );
    let cause = &body["details"]["causes"][0];
    assert_eq!(cause["reason"], "FieldManagerConflict");
    assert_eq!(cause["field"], ".spec.template.spec.containers");
    // Forced: bob takes the field.
    let (code, forced) = apply(&app, "bob", true, &service("hello", "img:2")).await;
    assert_eq!(code, StatusCode::OK, "{forced}");
    assert_eq!(
        forced["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:2"
    );
    let alice = forced["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "alice")
        .unwrap();
    assert!(
        alice["fieldsV1"]["f:spec"].get("f:template").is_none(),
        "{alice}"
    );
}

#[tokio::test]
async fn apply_removes_what_the_manager_stopped_applying() {
    let (app, _) = test_app();
    let mut config = service("hello", "img");
    config["metadata"]["labels"]["tier"] = json!("web");
    apply(&app, "m", false, &config).await;
    let (code, body) = apply(&app, "m", false, &service("hello", "img")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(body["metadata"]["labels"].get("tier").is_none(), "{body}");
    assert_eq!(body["metadata"]["labels"]["app"], "hello");
}

#[tokio::test]
async fn update_after_apply_moves_ownership() {
    let (app, _) = test_app();
    apply(&app, "kubectl", false, &service("hello", "img:1")).await;
    let uri = url(&format!("{SVC}/hello?fieldManager=editor"));
    let patch = r#"{"spec":{"template":{"spec":{"containers":[{"image":"img:9"}]}}}}"#;
    let (code, body) = send(
        &app,
        with_body(Method::PATCH, &uri, "application/merge-patch+json", patch),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // kubectl no longer owns the containers, so applying its old value conflicts with editor.
    let (code, body) = apply(&app, "kubectl", false, &service("hello", "img:1")).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("\"editor\""));
}
