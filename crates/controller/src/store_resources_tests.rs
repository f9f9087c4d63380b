//! The embedded `Resources`: server-side apply ownership, and watches that resume.

use super::*;
use futures::StreamExt;
use nimbus_api::parse::parse_manifests;

fn svc(labels: &str, env: &str) -> Object {
    let text = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: a, labels: {{{labels}}}}}\nspec:\n  template:\n    spec:\n      runtimeClassName: process\n      containers:\n        - command: [/bin/true]\n          env: [{{name: A, value: \"{env}\"}}]\n"
    );
    parse_manifests("t", &text).unwrap().remove(0)
}

fn labels(o: &Object) -> Vec<(String, String)> {
    o.metadata()
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn apply_removes_what_the_manager_dropped_and_keeps_what_others_set() {
    let r = StoreResources(Arc::new(Store::open_in_memory().unwrap()));
    r.apply(svc("x: '1', y: '2'", "v1"), "ctl").await.unwrap();
    let mut live = r.get(Kind::Service, "default", "a").await.unwrap().unwrap();
    live.metadata_mut()
        .labels
        .get_or_insert_default()
        .insert("other".into(), "kept".into());
    r.replace_meta(live).await.unwrap();
    let applied = r.apply(svc("x: '1'", "v2"), "ctl").await.unwrap();
    assert_eq!(
        labels(&applied),
        [("other".into(), "kept".into()), ("x".into(), "1".into())]
    );
    assert_eq!(applied.generation(), 2, "the spec changed");
    let again = r.apply(svc("x: '1'", "v2"), "ctl").await.unwrap();
    assert_eq!(
        again.metadata().resource_version,
        applied.metadata().resource_version,
        "an unchanged apply writes nothing"
    );
}

#[tokio::test]
async fn a_stale_metadata_write_conflicts() {
    let r = StoreResources(Arc::new(Store::open_in_memory().unwrap()));
    let first = r.apply(svc("x: '1'", "v1"), "ctl").await.unwrap();
    r.apply(svc("x: '2'", "v1"), "ctl").await.unwrap();
    let err = r.replace_meta(first).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(err.retry(), crate::Retry::Immediately);
}

#[tokio::test]
async fn a_metadata_write_leaves_the_spec_as_stored() {
    let r = StoreResources(Arc::new(Store::open_in_memory().unwrap()));
    let stored = r.apply(svc("x: '1'", "v1"), "ctl").await.unwrap();
    let mut edited = svc("x: '1', z: '2'", "v2");
    edited.metadata_mut().resource_version = stored.metadata().resource_version.clone();
    edited.metadata_mut().finalizers = Some(vec!["nimbus.dev/test".into()]);
    let written = r.replace_meta(edited).await.unwrap();
    assert_eq!(
        labels(&written),
        [("x".into(), "1".into()), ("z".into(), "2".into())]
    );
    assert_eq!(
        written.metadata().finalizers,
        Some(vec!["nimbus.dev/test".into()])
    );
    assert_eq!(
        written.to_json()["spec"],
        stored.to_json()["spec"],
        "spec untouched"
    );
    assert_eq!(written.generation(), stored.generation());
}

/// Issue #11, 5: a watcher that falls behind the live channel misses nothing.
#[tokio::test]
async fn a_watch_that_falls_behind_resumes_from_the_history() {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let r = StoreResources(store.clone());
    let mut watch = r.watch(&Kind::ALL, store.resource_version().unwrap());
    store.create(svc("", "v0")).unwrap();
    assert!(!watch.next().await.unwrap().unwrap().deleted);
    // more changes than the live channel holds, while nobody reads
    for i in 0..5000 {
        let mut s = svc("", &format!("v{i}"));
        s.metadata_mut().resource_version = None;
        store.update(s).unwrap();
    }
    store.delete(Kind::Service, "default", "a").unwrap();
    let mut seen = 0;
    let mut last = 0;
    loop {
        let change = watch.next().await.unwrap().unwrap();
        assert!(change.resource_version > last, "in order, no repeats");
        last = change.resource_version;
        seen += 1;
        if change.deleted {
            break;
        }
    }
    assert_eq!(seen, 5001, "every update and the deletion");
}

#[tokio::test]
async fn a_watch_from_a_forgotten_version_says_gone() {
    let store = Arc::new(Store::open_in_memory().unwrap().with_event_history(100));
    store.create(svc("", "v0")).unwrap();
    for i in 0..200 {
        let mut s = svc("", &format!("v{i}"));
        s.metadata_mut().resource_version = None;
        store.update(s).unwrap();
    }
    let mut watch = StoreResources(store).watch(&Kind::ALL, 1);
    let err = watch.next().await.unwrap().unwrap_err();
    assert!(matches!(err, ResourceError::Gone(1)), "{err}");
}
