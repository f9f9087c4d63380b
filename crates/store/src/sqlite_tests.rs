use super::*;
use base64::Engine;
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

fn with_finalizer(mut obj: Object, finalizer: &str) -> Object {
    obj.metadata_mut().finalizers = Some(vec![finalizer.to_string()]);
    obj
}

#[test]
fn delete_waits_for_finalizers_then_removes() {
    let store = Store::open_in_memory().unwrap();
    store
        .create(with_finalizer(service("a", "1"), "x.dev/cleanup"))
        .unwrap();
    let mut watch = store.watch();
    let deleting = store.delete(Kind::Service, "default", "a").unwrap();
    assert!(deleting.is_deleting());
    assert_eq!(watch.try_recv().unwrap().type_, EventType::Modified);
    let again = store.delete(Kind::Service, "default", "a").unwrap();
    assert_eq!(again, deleting, "a second delete changes nothing");

    let mut added = deleting.clone();
    added.metadata_mut().finalizers = Some(vec!["x.dev/cleanup".into(), "y.dev/new".into()]);
    let err = store.update(added).unwrap_err();
    assert!(err.to_string().contains("no new finalizers"), "{err}");

    let mut cleared = deleting.clone();
    cleared.metadata_mut().deletion_timestamp = None;
    cleared.metadata_mut().labels = Some([("k".to_string(), "v".to_string())].into());
    let kept = store.update(cleared).unwrap();
    assert!(kept.is_deleting(), "an update cannot undo a deletion");

    let mut done = kept.clone();
    done.metadata_mut().finalizers = None;
    store.update(done).unwrap();
    assert!(store.get(Kind::Service, "default", "a").unwrap().is_none());
    let events: Vec<EventType> = std::iter::from_fn(|| watch.try_recv().ok())
        .map(|e| e.type_)
        .collect();
    assert_eq!(events.last(), Some(&EventType::Deleted));
}

#[test]
fn delete_with_a_uid_precondition_spares_a_newer_object() {
    let store = Store::open_in_memory().unwrap();
    let old = store.create(service("a", "1")).unwrap();
    store.delete(Kind::Service, "default", "a").unwrap();
    store.create(service("a", "2")).unwrap();
    let err = store
        .delete_if(Kind::Service, "default", "a", old.metadata().uid.as_deref())
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(store.get(Kind::Service, "default", "a").unwrap().is_some());
}

fn labelled(name: &str, labels: &[(&str, &str)]) -> Object {
    let mut obj = service(name, "1");
    obj.metadata_mut().labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    obj
}

#[test]
fn list_selected_uses_the_label_index() {
    let store = Store::open_in_memory().unwrap();
    store
        .create(labelled("a", &[("app", "x"), ("tier", "web")]))
        .unwrap();
    store.create(labelled("b", &[("app", "x")])).unwrap();
    store.create(labelled("c", &[("app", "y")])).unwrap();
    let names = |sel: &[(&str, &str)]| -> Vec<String> {
        store
            .list_selected(Kind::Service, Some("default"), sel)
            .unwrap()
            .items
            .iter()
            .map(|o| o.name().to_string())
            .collect()
    };
    assert_eq!(names(&[("app", "x")]), ["a", "b"]);
    assert_eq!(names(&[("app", "x"), ("tier", "web")]), ["a"]);
    assert_eq!(names(&[("app", "z")]), Vec::<String>::new());
    let mut relabelled = store.must_get(Kind::Service, "default", "b").unwrap();
    relabelled.metadata_mut().labels = Some([("app".to_string(), "y".to_string())].into());
    store.update(relabelled).unwrap();
    assert_eq!(names(&[("app", "y")]), ["b", "c"]);
    store.delete(Kind::Service, "default", "c").unwrap();
    assert_eq!(names(&[("app", "y")]), ["b"]);
}

#[test]
fn a_store_from_before_the_label_index_is_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nimbus.db");
    {
        let store = Store::open(&path).unwrap();
        store.create(labelled("a", &[("app", "x")])).unwrap();
    }
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute("DROP TABLE labels", []).unwrap();
        conn.pragma_update(None, "user_version", 0).unwrap();
    }
    let store = Store::open(&path).unwrap();
    let found = store
        .list_selected(Kind::Service, None, &[("app", "x")])
        .unwrap();
    assert_eq!(found.items.len(), 1);
}

#[test]
fn selector_lists_walk_the_label_index() {
    let store = Store::open_in_memory().unwrap();
    let conn = store.lock();
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {LIST_SELECTED}"))
        .unwrap()
        .query_map(params!["Revision", "k", "v", "default"], |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(plan[0].contains("labels_by_value"), "{plan:?}");
    assert!(
        plan.iter().all(|step| !step.starts_with("SCAN o")),
        "{plan:?}"
    );
}

fn secret(name: &str, password: &str) -> Object {
    let text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{password: \"{password}\"}}\n"
    );
    parse_manifests("t", &text).unwrap().remove(0)
}

/// Every byte of the database and its write-ahead log.
fn file_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["nimbus.db", "nimbus.db-wal"] {
        all.extend(std::fs::read(dir.join(name)).unwrap_or_default());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn secret_values_are_encrypted_in_the_file_and_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nimbus.db");
    let (first, second) = ("pl41n-v4lue-one", "pl41n-v4lue-two");
    {
        let store = Store::open(&path).unwrap();
        store.create(secret("db", first)).unwrap();
        let mut updated = store.must_get(Kind::Secret, "default", "db").unwrap();
        updated = match (updated, secret("db", second)) {
            (Object::Secret(mut s), Object::Secret(new)) => {
                s.data = new.data;
                Object::Secret(s)
            }
            _ => unreachable!(),
        };
        store.update(updated).unwrap();
        store.create(secret("gone", first)).unwrap();
        store.delete(Kind::Secret, "default", "gone").unwrap();
        let bytes = file_bytes(dir.path());
        assert!(
            contains(&bytes, "\"name\":\"db\""),
            "the test reads the right files"
        );
        for value in [first, second] {
            let base64 = base64::engine::general_purpose::STANDARD.encode(value);
            assert!(!contains(&bytes, value), "{value} in the database file");
            assert!(
                !contains(&bytes, &base64),
                "{value} (base64) in the database file"
            );
        }
        let events = store.events_since(0).unwrap();
        assert_eq!(events.len(), 4);
    }
    let key = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    let store = Store::open(&path).unwrap();
    let Object::Secret(s) = store.must_get(Kind::Secret, "default", "db").unwrap() else {
        panic!("not a secret");
    };
    assert_eq!(s.data["password"].0, second.as_bytes());
    std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap(); // a new key: the old values no longer open
    let error = store
        .get(Kind::Secret, "default", "db")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("default/db") && error.contains(KEY_FILE),
        "{error}"
    );
    assert!(!error.contains(second), "{error}");
}

#[test]
fn writes_are_timed_and_the_size_is_known() {
    let store = Store::open_in_memory().unwrap();
    assert_eq!(store.write_latency().count, 0);
    let before = store.size_bytes().unwrap();
    assert!(before > 0);
    store.create(service("metrics-a", "x")).unwrap();
    let _ = store.create(service("metrics-a", "x")); // a conflict is a write too
    assert_eq!(store.write_latency().count, 2);
}
