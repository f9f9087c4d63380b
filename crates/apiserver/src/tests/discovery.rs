//! Discovery, OpenAPI and authentication: what kubectl asks before anything else.

use super::*;

#[tokio::test]
async fn version_groups_and_resources() {
    let (app, _) = test_app();
    let (code, v) = call(&app, Method::GET, "/version", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (v["major"].as_str(), v["minor"].as_str()),
        (Some("1"), Some(crate::KUBERNETES_MINOR))
    );
    let (_, api) = call(&app, Method::GET, "/api", None).await;
    assert_eq!(api["kind"], "APIVersions");
    let (_, groups) = call(&app, Method::GET, "/apis", None).await;
    assert_eq!(
        groups["groups"][0]["preferredVersion"]["groupVersion"],
        "serving.knative.dev/v1"
    );
    let (_, group) = call(&app, Method::GET, "/apis/serving.knative.dev", None).await;
    assert_eq!(group["kind"], "APIGroup");
    let (_, list) = call(&app, Method::GET, API_PREFIX, None).await;
    assert_eq!(list["kind"], "APIResourceList");
    let services = &list["resources"][0];
    assert_eq!(services["name"], "services");
    assert_eq!(services["namespaced"], true);
    assert_eq!(services["categories"], json!(["all", "knative", "serving"]));
    assert!(
        services["verbs"]
            .as_array()
            .unwrap()
            .contains(&json!("patch"))
    );
    assert!(
        services["verbs"]
            .as_array()
            .unwrap()
            .contains(&json!("watch"))
    );
}

#[tokio::test]
async fn aggregated_discovery_request_gets_the_legacy_document() {
    let (app, _) = test_app();
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let (code, groups) = send(&app, get_accepting("/apis", accept)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(groups["kind"], "APIGroupList");
}

#[tokio::test]
async fn openapi_v3_points_at_the_group_document() {
    let (app, _) = test_app();
    let (_, root) = call(&app, Method::GET, "/openapi/v3", None).await;
    let url = root["paths"]["apis/serving.knative.dev/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    assert!(
        url.starts_with("/openapi/v3/apis/serving.knative.dev/v1?hash="),
        "{url}"
    );
    let (code, doc) = call(&app, Method::GET, url, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.0");
    assert!(doc["components"]["schemas"]["dev.knative.serving.v1.Service"].is_object());
    let (code, v2) = send(&app, get_accepting("/openapi/v2", "application/json")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v2["swagger"], "2.0");
    let pb = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let (code, body) = send(&app, get_accepting("/openapi/v2", pb)).await;
    assert_eq!(code, StatusCode::NOT_ACCEPTABLE);
    assert_status(&body, 406, "NotAcceptable");
}

#[tokio::test]
async fn every_path_but_healthz_needs_the_token() {
    let app = app(ApiState::new(store()).with_token("s3cret"));
    for path in ["/version", "/apis", "/openapi/v3", &url("/services")] {
        let (code, body) = call(&app, Method::GET, path, None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
        assert_status(&body, 401, "Unauthorized");
    }
    let req = Request::get("/apis")
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::OK);
    let req = Request::get("/apis")
        .header("authorization", "Bearer wrong")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNAUTHORIZED);
    let resp = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
