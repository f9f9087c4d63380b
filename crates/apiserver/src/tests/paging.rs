//! Lists in pages (`limit`/`continue`), field selectors, Tables and watch bookmarks.

use std::time::Duration;

use super::watch::Events;
use super::*;

const SVC: &str = "/namespaces/default/services";

async fn create(app: &Router, name: &str) {
    let (code, body) = call(app, Method::POST, &url(SVC), Some(&service(name, "img"))).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn limit_and_continue_page_through_everything() {
    let (app, _) = test_app();
    for name in ["a", "b", "c"] {
        create(&app, name).await;
    }
    let (_, first) = call(&app, Method::GET, &url(&format!("{SVC}?limit=2")), None).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["metadata"]["remainingItemCount"], 1);
    let token = first["metadata"]["continue"].as_str().unwrap();
    let (_, second) = call(
        &app,
        Method::GET,
        &url(&format!("{SVC}?limit=2&continue={token}")),
        None,
    )
    .await;
    assert_eq!(second["items"][0]["metadata"]["name"], "c");
    assert!(second["metadata"].get("continue").is_none());
    assert_eq!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    let (code, body) = call(
        &app,
        Method::GET,
        &url(&format!("{SVC}?continue=garbage")),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&body, 400, "BadRequest");
}

#[tokio::test]
async fn field_selector_on_name() {
    let (app, _) = test_app();
    create(&app, "a").await;
    create(&app, "b").await;
    let (_, list) = call(
        &app,
        Method::GET,
        &url(&format!("{SVC}?fieldSelector=metadata.name%3Db")),
        None,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["metadata"]["name"], "b");
    let (code, _) = call(
        &app,
        Method::GET,
        &url(&format!("{SVC}?fieldSelector=spec.x%3D1")),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn get_and_list_as_tables() {
    let (app, _) = test_app();
    create(&app, "a").await;
    let (code, table) = send(&app, get_accepting(&url(SVC), TABLE)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (table["kind"].as_str(), table["apiVersion"].as_str()),
        (Some("Table"), Some("meta.k8s.io/v1"))
    );
    assert_eq!(table["columnDefinitions"][1]["name"], "URL");
    assert_eq!(table["rows"][0]["cells"][0], "a");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "a");
    let (_, one) = send(
        &app,
        get_accepting(&url(&format!("{SVC}/a?includeObject=Object")), TABLE),
    )
    .await;
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);
    assert_eq!(one["rows"][0]["object"]["kind"], "Service");
    let (code, body) = send(
        &app,
        get_accepting(&url(SVC), "application/vnd.kubernetes.protobuf"),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_ACCEPTABLE);
    assert_status(&body, 406, "NotAcceptable");
}

#[tokio::test]
async fn table_watch_sends_one_row_tables() {
    let (app, _) = test_app();
    create(&app, "a").await;
    let mut events = Events::open_request(
        &app,
        get_accepting(&url(&format!("{SVC}?watch=true")), TABLE),
    )
    .await;
    let e = events.next().await.unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["kind"], "Table");
    assert_eq!(e["object"]["rows"][0]["cells"][0], "a");
}

#[tokio::test]
async fn bookmarks_mark_initial_events_and_then_tick() {
    let store = store();
    let app = app(ApiState::new(store.clone()).with_bookmark_interval(Duration::from_millis(50)));
    create(&app, "a").await;
    let uri = url(&format!(
        "{SVC}?watch=true&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
    ));
    let mut events = Events::open(&app, &uri).await;
    assert_eq!(events.next().await.unwrap()["type"], "ADDED");
    let end = events.next().await.unwrap();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    let rv = store.resource_version().unwrap().to_string();
    assert_eq!(end["object"]["metadata"]["resourceVersion"], rv);
    let tick = events.next().await.unwrap();
    assert_eq!(tick["type"], "BOOKMARK");
    assert!(tick["object"]["metadata"].get("annotations").is_none());
}
