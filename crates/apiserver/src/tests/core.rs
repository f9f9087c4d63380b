//! The core group: Secrets and ConfigMaps under `/api/v1`, without a `status` subresource;
//! an immutable one keeps its data; errors never quote a value.

use super::*;

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

fn secret(name: &str, password: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name },
        "stringData": { "password": password }
    })
}

#[tokio::test]
async fn discovery_lists_the_core_group() {
    let (app, _) = test_app();
    let (code, versions) = call(&app, Method::GET, "/api", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(versions["versions"], json!(["v1"]));
    let (_, list) = call(&app, Method::GET, "/api/v1", None).await;
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["secrets", "configmaps", "events"]);
    assert_eq!(
        call(&app, Method::GET, "/api/v2", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, groups) = call(&app, Method::GET, "/apis", None).await;
    assert!(!groups.to_string().contains("\"name\":\"\""), "{groups}");
    let (code, doc) = call(&app, Method::GET, "/openapi/v3/api/v1", None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"].is_object());
}

#[tokio::test]
async fn secrets_are_created_read_listed_and_deleted() {
    let (app, _) = test_app();
    let (code, created) = call(&app, Method::POST, SECRETS, Some(&secret("db", "s3cr3t"))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["data"]["password"], "czNjcjN0");
    assert!(created.get("stringData").is_none(), "{created}");
    assert_eq!(created["type"], "Opaque");
    let (code, got) = call(&app, Method::GET, &format!("{SECRETS}/db"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got["data"]["password"], "czNjcjN0");
    let (_, all) = call(&app, Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(all["kind"], "SecretList");
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    let (_, table) = send(&app, get_accepting(SECRETS, TABLE)).await;
    assert_eq!(table["rows"][0]["cells"][1], "Opaque");
    let status = format!("{SECRETS}/db/status");
    assert_eq!(
        call(&app, Method::GET, &status, None).await.0,
        StatusCode::NOT_FOUND
    );
    let wrong_group = "/apis/serving.knative.dev/v1/namespaces/default/secrets";
    assert_eq!(
        call(&app, Method::GET, wrong_group, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (code, _) = call(&app, Method::DELETE, &format!("{SECRETS}/db"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        call(&app, Method::GET, &format!("{SECRETS}/db"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_immutable_secret_keeps_its_data_and_errors_hide_values() {
    let (app, _) = test_app();
    let mut body = secret("db", "s3cr3t");
    body["immutable"] = json!(true);
    assert_eq!(
        call(&app, Method::POST, SECRETS, Some(&body)).await.0,
        StatusCode::CREATED
    );
    let patch = json!({ "stringData": { "password": "n3w-s3cr3t" } });
    let req = with_body(
        Method::PATCH,
        &format!("{SECRETS}/db"),
        "application/merge-patch+json",
        &patch.to_string(),
    );
    let (code, status) = send(&app, req).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    let text = status.to_string();
    assert!(
        !text.contains("s3cr3t") && !text.contains("czNjcjN0"),
        "{text}"
    );
    let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"},
        "data": {"bad/key": "czNjcjN0"}});
    let (code, status) = call(&app, Method::POST, SECRETS, Some(&bad)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!status.to_string().contains("czNjcjN0"), "{status}");
    let not_text = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "y"},
        "stringData": {"password": 424242}, "type": "x/y"});
    let (code, status) = call(&app, Method::POST, SECRETS, Some(&not_text)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert!(!status.to_string().contains("424242"), "{status}");
}

#[tokio::test]
async fn kubectl_strategic_merge_patches_work_on_core_kinds_only() {
    let (app, _) = test_app();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
        "data": {"a": "1", "b": "2"}});
    let cms = "/api/v1/namespaces/default/configmaps";
    assert_eq!(
        call(&app, Method::POST, cms, Some(&cm)).await.0,
        StatusCode::CREATED
    );
    let smp = "application/strategic-merge-patch+json";
    let req = with_body(
        Method::PATCH,
        &format!("{cms}/cfg"),
        smp,
        r#"{"data":{"a":null,"c":"3"}}"#,
    );
    let (code, patched) = send(&app, req).await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(patched["data"], json!({"b": "2", "c": "3"}));
    assert_eq!(
        call(
            &app,
            Method::POST,
            &url("/namespaces/default/services"),
            Some(&service("s", "x"))
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let req = with_body(
        Method::PATCH,
        &url("/namespaces/default/services/s"),
        smp,
        "{}",
    );
    assert_eq!(send(&app, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn config_maps_apply_with_their_short_name_in_discovery() {
    let (app, _) = test_app();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
        "data": {"greeting": "hello"}});
    let req = with_body(
        Method::PATCH,
        "/api/v1/namespaces/default/configmaps/cfg?fieldManager=kubectl",
        "application/apply-patch+yaml",
        &cm.to_string(),
    );
    let (code, applied) = send(&app, req).await;
    assert_eq!(code, StatusCode::CREATED, "{applied}");
    assert_eq!(applied["data"]["greeting"], "hello");
}
