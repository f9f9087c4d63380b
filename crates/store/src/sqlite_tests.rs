use super::*;
use nimbus_api::parse::parse_manifests;

fn service(name: &str, env: &str) -> Object {
    let text = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  template:\n    spec:\n      runtimeClassName: process\n      containers:\n        - command: [/bin/true]\n          env: [{{name: A, value: \"{env}\"}}]\n"
    );
    parse_manifests("t", &text).unwrap().remove(0)
}

fn rv(obj: &Object) -> u64 {
    obj.metadata()
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn create_sets_metadata_and_rejects_duplicates() {
    let store = Store::open_in_memory().unwrap();
    let created = store.create(service("a", "1")).unwrap();
    let m = created.metadata();
    assert!(m.uid.is_some());
    assert_eq!(m.generation, Some(1));
    assert!(m.creation_timestamp.is_some());
    assert_eq!(m.namespace.as_deref(), Some("default"));
    let err = store.create(service("a", "1")).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
}

#[test]
fn update_bumps_generation_only_on_spec_change() {
    let store = Store::open_in_memory().unwrap();
    let created = store.create(service("a", "1")).unwrap();
    let mut relabelled = created.clone();
    relabelled.metadata_mut().labels = Some([("x".to_string(), "y".to_string())].into());
    let updated = store.update(relabelled).unwrap();
    assert_eq!(updated.metadata().generation, Some(1));
    assert!(rv(&updated) > rv(&created));
    let mut changed = service("a", "2");
    changed.metadata_mut().resource_version = updated.metadata().resource_version.clone();
    let updated2 = store.update(changed).unwrap();
    assert_eq!(updated2.metadata().generation, Some(2));
    assert_eq!(updated2.metadata().uid, created.metadata().uid);
}

#[test]
fn stale_resource_version_conflicts_and_changes_nothing() {
    let store = Store::open_in_memory().unwrap();
    let created = store.create(service("a", "1")).unwrap();
    store.update(service("a", "2")).unwrap();
    let mut stale = service("a", "3");
    stale.metadata_mut().resource_version = created.metadata().resource_version.clone();
    let err = store.update(stale).unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let now = store.must_get(Kind::Service, "default", "a").unwrap();
    assert_eq!(now.metadata().generation, Some(2));
}

#[test]
fn update_keeps_status_and_update_status_keeps_spec() {
    let store = Store::open_in_memory().unwrap();
    store.create(service("a", "1")).unwrap();
    let Object::Service(mut s) = store.must_get(Kind::Service, "default", "a").unwrap() else {
        panic!()
    };
    s.status = Some(Default::default());
    s.status.as_mut().unwrap().url = Some("http://a".into());
    s.spec.template.spec.timeout_seconds = Some(5); // ignored by update_status
    store.update_status(Object::Service(s)).unwrap();
    let Object::Service(after) = store.must_get(Kind::Service, "default", "a").unwrap() else {
        panic!()
    };
    assert_eq!(after.status.unwrap().url.as_deref(), Some("http://a"));
    assert_eq!(after.spec.template.spec.timeout_seconds, Some(300));
    store.update(service("a", "9")).unwrap();
    let Object::Service(after) = store.must_get(Kind::Service, "default", "a").unwrap() else {
        panic!()
    };
    assert!(after.status.is_some(), "a spec update keeps the status");
}

#[test]
fn noop_update_does_not_bump() {
    let store = Store::open_in_memory().unwrap();
    let created = store.create(service("a", "1")).unwrap();
    let same = store.update(created.clone()).unwrap();
    assert_eq!(rv(&same), rv(&created));
}

#[test]
fn generate_name_and_delete_and_watch() {
    let store = Store::open_in_memory().unwrap();
    let mut rx = store.watch();
    let mut obj = service("x", "1");
    obj.metadata_mut().name = None;
    obj.metadata_mut().generate_name = Some("gen-".into());
    let created = store.create(obj).unwrap();
    assert!(created.name().starts_with("gen-") && created.name().len() == 9);
    let deleted = store
        .delete(Kind::Service, "default", created.name())
        .unwrap();
    assert!(
        store
            .get(Kind::Service, "default", created.name())
            .unwrap()
            .is_none()
    );
    assert_eq!(rx.try_recv().unwrap().type_, EventType::Added);
    let ev = rx.try_recv().unwrap();
    assert_eq!(ev.type_, EventType::Deleted);
    assert_eq!(ev.resource_version, rv(&deleted));
    let history = store.events_since(0).unwrap();
    assert_eq!(history.len(), 2);
    assert!(
        store
            .delete(Kind::Service, "default", "nope")
            .unwrap_err()
            .is_not_found()
    );
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nimbus.db");
    {
        let store = Store::open(&path).unwrap();
        store.create(service("a", "1")).unwrap();
        store.create(service("b", "1")).unwrap();
    }
    let store = Store::open(&path).unwrap();
    let list = store.list(Kind::Service, Some("default")).unwrap();
    assert_eq!(
        list.items.iter().map(|o| o.name()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(list.resource_version, 2);
    assert!(
        store
            .list(Kind::Service, Some("other"))
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(store.list(Kind::Service, None).unwrap().items.len(), 2);
}
