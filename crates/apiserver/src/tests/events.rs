//! Events: one stored object seen as core `v1` and as `events.k8s.io/v1`, the field selectors
//! kubectl sends, and `kubectl get events`' table.

use super::*;

const CORE: &str = "/api/v1/namespaces/default/events";
const EVENTS_V1: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

fn event(name: &str, about: &str, type_: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event", "metadata": { "name": name },
        "involvedObject": { "apiVersion": "serving.knative.dev/v1", "kind": "Service",
                            "name": about, "namespace": "default", "uid": "u-1" },
        "reason": "ScaledUp", "message": "scaled from 1 to 3", "type": type_,
        "firstTimestamp": "2026-12-08T00:00:00Z", "lastTimestamp": "2026-12-08T00:00:00Z",
        "count": 1, "source": { "component": "nimbus-autoscaler" }
    })
}

#[tokio::test]
async fn one_event_seen_through_both_versions() {
    let (app, _) = test_app();
    let (code, _) = call(
        &app,
        Method::POST,
        CORE,
        Some(&event("a.1", "hello", "Normal")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, v1) = call(&app, Method::GET, &format!("{EVENTS_V1}/a.1"), None).await;
    assert_eq!(code, StatusCode::OK, "{v1}");
    assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
    assert_eq!(v1["regarding"]["name"], "hello");
    assert_eq!(v1["note"], "scaled from 1 to 3");
    assert_eq!(v1["deprecatedCount"], 1);

    let written = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": { "name": "b.1" },
        "regarding": { "kind": "Revision", "name": "hello-00001", "namespace": "default" },
        "note": "pulled", "reason": "Pulled", "type": "Normal", "action": "Pull",
        "eventTime": "2026-12-08T00:00:00.000000Z", "reportingController": "nimbus.dev/image",
        "reportingInstance": "host"
    });
    let (code, created) = call(&app, Method::POST, EVENTS_V1, Some(&written)).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["regarding"]["name"], "hello-00001");
    let (_, core) = call(&app, Method::GET, &format!("{CORE}/b.1"), None).await;
    assert_eq!(core["involvedObject"]["kind"], "Revision");
    assert_eq!(core["message"], "pulled");
    assert_eq!(core["reportingComponent"], "nimbus.dev/image");

    let (_, list) = call(&app, Method::GET, EVENTS_V1, None).await;
    assert_eq!(list["apiVersion"], "events.k8s.io/v1");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (code, _) = call(
        &app,
        Method::PUT,
        &format!("{EVENTS_V1}/b.1"),
        Some(&written),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn field_selectors_as_kubectl_describe_sends_them() {
    let (app, _) = test_app();
    for (name, about, type_) in [("a.1", "hello", "Normal"), ("b.1", "other", "Warning")] {
        call(&app, Method::POST, CORE, Some(&event(name, about, type_))).await;
    }
    let names = |list: &Value| -> Vec<String> {
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let describe = "involvedObject.name%3Dhello%2CinvolvedObject.namespace%3Ddefault%2C\
                    involvedObject.kind%3DService%2CinvolvedObject.uid%3Du-1";
    let (code, list) = call(
        &app,
        Method::GET,
        &format!("{CORE}?fieldSelector={describe}"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(names(&list), ["a.1"]);
    let (_, list) = call(
        &app,
        Method::GET,
        &format!("{CORE}?fieldSelector=type%3DWarning"),
        None,
    )
    .await;
    assert_eq!(names(&list), ["b.1"]);
    let uri = format!("{EVENTS_V1}?fieldSelector=regarding.name%3Dother");
    let (_, list) = call(&app, Method::GET, &uri, None).await;
    assert_eq!(names(&list), ["b.1"]);
    let (code, _) = call(
        &app,
        Method::GET,
        &format!("{CORE}?fieldSelector=spec.x%3D1"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn kubectl_get_events_table_and_validation() {
    let (app, _) = test_app();
    call(
        &app,
        Method::POST,
        CORE,
        Some(&event("a.1", "hello", "Normal")),
    )
    .await;
    let (code, t) = send(&app, get_accepting(CORE, TABLE)).await;
    assert_eq!(code, StatusCode::OK, "{t}");
    let shown: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["Last Seen", "Type", "Reason", "Object", "Message"]);
    assert_eq!(t["rows"][0]["cells"][3], "service/hello");
    let mut bad = event("c.1", "hello", "Loud");
    bad["involvedObject"]["name"] = json!("");
    let (code, body) = call(&app, Method::POST, CORE, Some(&bad)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let message = assert_status(&body, 422, "Invalid");
    assert!(
        message.contains("involvedObject.name") && message.contains("type"),
        "{message}"
    );
}
