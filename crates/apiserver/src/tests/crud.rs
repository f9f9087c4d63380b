//! The happy paths: create, get, list, replace, status, delete; annotations; the write hook.

use std::sync::atomic::{AtomicUsize, Ordering};

use nimbus_api::constants::{ANNOTATION_CREATOR, ANNOTATION_LAST_MODIFIER, DEFAULT_USER};

use super::*;

const SVC: &str = "/namespaces/default/services";

#[tokio::test]
async fn create_get_list_replace_delete_round_trip() {
    let (app, store) = test_app();
    let (code, created) = call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img:1")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["name"], "user-container",
        "defaulted"
    );

    let (code, got) = call(&app, Method::GET, &url(&format!("{SVC}/hello")), None).await;
    assert_eq!((code, &got), (StatusCode::OK, &created));

    let (code, list) = call(&app, Method::GET, &url(SVC), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "ServiceList");
    assert_eq!(list["apiVersion"], "serving.knative.dev/v1");
    assert_eq!(
        list["metadata"]["resourceVersion"],
        store.resource_version().unwrap().to_string()
    );
    assert_eq!(list["items"], json!([created]));

    let mut changed = got.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:2");
    let (code, replaced) = call(
        &app,
        Method::PUT,
        &url(&format!("{SVC}/hello")),
        Some(&changed),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert_eq!(
        replaced["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:2"
    );

    let (code, deleted) = call(&app, Method::DELETE, &url(&format!("{SVC}/hello")), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(deleted["metadata"]["name"], "hello");
    let (code, body) = call(&app, Method::GET, &url(&format!("{SVC}/hello")), None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        assert_status(&body, 404, "NotFound"),
        "services.serving.knative.dev \"hello\" not found"
    );
}

#[tokio::test]
async fn list_across_namespaces_and_by_label() {
    let (app, _) = test_app();
    for (ns, name) in [("default", "a"), ("default", "b"), ("other", "c")] {
        let mut svc = service(name, "img");
        svc["metadata"]["labels"]["tier"] = json!(if name == "b" { "db" } else { "web" });
        let (code, body) = call(
            &app,
            Method::POST,
            &url(&format!("/namespaces/{ns}/services")),
            Some(&svc),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = call(&app, Method::GET, &url("/services"), None).await;
    assert_eq!(names(&all), ["a", "b", "c"]);
    let (_, web) = call(
        &app,
        Method::GET,
        &url("/services?labelSelector=tier%3Dweb&limit=5"),
        None,
    )
    .await;
    assert_eq!(names(&web), ["a", "c"], "unknown params are ignored");
    let (_, not_web) = call(
        &app,
        Method::GET,
        &url("/namespaces/default/services?labelSelector=tier!%3Dweb"),
        None,
    )
    .await;
    assert_eq!(names(&not_web), ["b"]);
    let (_, none) = call(
        &app,
        Method::GET,
        &url("/services?labelSelector=!app"),
        None,
    )
    .await;
    assert_eq!(names(&none), Vec::<String>::new());
    let (code, body) = call(
        &app,
        Method::GET,
        &url("/services?labelSelector=a%20in%20(x)"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn yaml_bodies_are_accepted() {
    let (app, _) = test_app();
    let yaml = "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata:\n  name: rt\nspec:\n  traffic:\n    - revisionName: rt-00001\n      percent: 100\n";
    let req = Request::post(url("/namespaces/default/routes"))
        .header("content-type", "application/yaml")
        .body(Body::from(yaml))
        .unwrap();
    let (code, body) = send(&app, req).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "Route");
    assert_eq!(
        body["metadata"]["annotations"],
        Value::Null,
        "routes are not stamped"
    );
}

#[tokio::test]
async fn creator_and_last_modifier_annotations() {
    let (app, _) = test_app();
    let (_, created) = call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img:1")),
    )
    .await;
    let annotations = &created["metadata"]["annotations"];
    assert_eq!(annotations[ANNOTATION_CREATOR], DEFAULT_USER);
    assert_eq!(annotations[ANNOTATION_LAST_MODIFIER], DEFAULT_USER);

    let mut edit = created.clone();
    edit["metadata"]["annotations"] = json!({ ANNOTATION_CREATOR: "mallory", "note": "x" });
    let (_, replaced) = call(
        &app,
        Method::PUT,
        &url(&format!("{SVC}/hello")),
        Some(&edit),
    )
    .await;
    let annotations = &replaced["metadata"]["annotations"];
    assert_eq!(
        annotations[ANNOTATION_CREATOR], DEFAULT_USER,
        "creator is immutable"
    );
    assert_eq!(
        annotations[ANNOTATION_LAST_MODIFIER], DEFAULT_USER,
        "kept without a spec change"
    );
    assert_eq!(annotations["note"], "x");
}

#[tokio::test]
async fn status_subresource_changes_only_status() {
    let (app, _) = test_app();
    let (_, created) = call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img:1")),
    )
    .await;
    let mut body = created.clone();
    body["spec"]["template"]["spec"]["containers"][0]["image"] = json!("sneaky:2");
    body["status"] = json!({ "observedGeneration": 1, "url": "http://hello.default.localhost" });
    let path = url(&format!("{SVC}/hello/status"));
    let (code, updated) = call(&app, Method::PUT, &path, Some(&body)).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["status"]["url"], "http://hello.default.localhost");
    assert_eq!(
        updated["spec"], created["spec"],
        "spec unchanged by a status write"
    );
    assert_eq!(updated["metadata"]["generation"], 1);
    let (_, got) = call(&app, Method::GET, &path, None).await;
    assert_eq!(got, updated);

    let mut spec_edit = updated.clone();
    spec_edit["status"] = json!({ "url": "http://elsewhere" });
    let (_, replaced) = call(
        &app,
        Method::PUT,
        &url(&format!("{SVC}/hello")),
        Some(&spec_edit),
    )
    .await;
    assert_eq!(
        replaced["status"]["url"], "http://hello.default.localhost",
        "PUT keeps status"
    );
}

#[tokio::test]
async fn status_on_create_is_dropped() {
    let (app, _) = test_app();
    let mut svc = service("hello", "img");
    svc["status"] = json!({ "url": "http://forged" });
    let (_, created) = call(&app, Method::POST, &url(SVC), Some(&svc)).await;
    assert_eq!(created["status"], Value::Null);
}

#[tokio::test]
async fn write_hook_runs_after_each_successful_write() {
    let writes = Arc::new(AtomicUsize::new(0));
    let counter = writes.clone();
    let state = ApiState::new(store()).with_write_hook(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let app = app(state);
    call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img")),
    )
    .await;
    call(
        &app,
        Method::POST,
        &url(SVC),
        Some(&service("hello", "img")),
    )
    .await; // 409: no write
    let (_, got) = call(&app, Method::GET, &url(&format!("{SVC}/hello")), None).await;
    call(
        &app,
        Method::PUT,
        &url(&format!("{SVC}/hello/status")),
        Some(&got),
    )
    .await;
    call(&app, Method::DELETE, &url(&format!("{SVC}/hello")), None).await;
    assert_eq!(writes.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let app = app(ApiState::new(store()).with_token("s3cret"));
    let (code, body) = call(&app, Method::GET, &url(SVC), None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_status(&body, 401, "Unauthorized");
    let req = Request::get(url(SVC))
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::OK);
    let req = Request::get(url(SVC))
        .header("authorization", "Bearer s3cres")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNAUTHORIZED);
}
