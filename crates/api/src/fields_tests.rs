use super::*;

fn path(s: &str) -> Path {
    s.split('.').map(str::to_string).collect()
}

fn svc(image: &str, traffic: Value) -> Value {
    json!({
        "metadata": {"name": "s", "labels": {"app": "s"}},
        "spec": {"template": {"spec": {"containers": [{"image": image}]}}, "traffic": traffic},
        "status": {"url": "x"}
    })
}

#[test]
fn fields_are_leaves_of_spec_labels_and_annotations() {
    let f = fields_of(&svc("a", json!([])));
    let want: FieldSet = [
        "metadata.labels.app",
        "spec.template.spec.containers",
        "spec.traffic",
    ]
    .into_iter()
    .map(path)
    .collect();
    assert_eq!(f, want);
}

#[test]
fn fields_v1_round_trips_and_marks_parents() {
    let fields: FieldSet = ["spec.a", "spec.a.b", "metadata.labels.x"]
        .into_iter()
        .map(path)
        .collect();
    let v1 = fields_v1(&fields);
    assert_eq!(v1["f:spec"]["f:a"]["."], json!({}));
    let mut back = FieldSet::new();
    read_fields_v1(&v1, &mut Vec::new(), &mut back);
    assert_eq!(back, fields);
}

#[test]
fn keyed_lists_from_kubernetes_are_owned_whole() {
    let v1 = json!({"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}}}}});
    let mut f = FieldSet::new();
    read_fields_v1(&v1, &mut Vec::new(), &mut f);
    assert_eq!(f, [path("spec.containers")].into_iter().collect());
}

#[test]
fn update_takes_changed_fields_from_others() {
    let old = svc("a", json!([]));
    let created = track_update(&json!({}), &old, vec![], "alice", "t1");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].fields.len(), 3);
    let new = svc("b", json!([]));
    let entries = track_update(&old, &new, created, "bob", "t2");
    assert_eq!(entries.len(), 2);
    assert!(
        !entries[0]
            .fields
            .contains(&path("spec.template.spec.containers"))
    );
    assert_eq!(entries[1].manager, "bob");
    assert_eq!(
        entries[1].fields,
        [path("spec.template.spec.containers")]
            .into_iter()
            .collect()
    );
}

#[test]
fn apply_conflicts_only_on_changed_values_and_force_takes_them() {
    let live = svc("a", json!([]));
    let entries = track_update(&json!({}), &live, vec![], "csa", "t1");
    // Same values: shared, no conflict.
    let config = svc("a", json!([]));
    let merged = merge_applied(&live, &config, &entries, "ssa");
    let shared = settle_apply(
        &live,
        &merged,
        &config,
        entries.clone(),
        "ssa",
        false,
        &FieldSet::new(),
        "t2",
    )
    .unwrap();
    assert_eq!(shared.len(), 2);
    // A new image conflicts with csa.
    let config = svc("b", json!([]));
    let merged = merge_applied(&live, &config, &shared, "ssa");
    let err = settle_apply(
        &live,
        &merged,
        &config,
        shared.clone(),
        "ssa",
        false,
        &FieldSet::new(),
        "t3",
    )
    .unwrap_err();
    assert_eq!(err[0].manager, "csa");
    assert_eq!(err[0].field, ".spec.template.spec.containers");
    let forced = settle_apply(
        &live,
        &merged,
        &config,
        shared,
        "ssa",
        true,
        &FieldSet::new(),
        "t3",
    )
    .unwrap();
    let csa = forced.iter().find(|e| e.manager == "csa").unwrap();
    assert!(!csa.fields.contains(&path("spec.template.spec.containers")));
}

#[test]
fn apply_removes_fields_it_no_longer_mentions_unless_shared() {
    let config = json!({"spec": {"a": 1, "b": 2}, "metadata": {"labels": {"x": "1"}}});
    let merged = merge_applied(&json!({}), &config, &[], "m");
    let entries = settle_apply(
        &json!({}),
        &merged,
        &config,
        vec![],
        "m",
        false,
        &FieldSet::new(),
        "t",
    )
    .unwrap();
    let smaller = json!({"spec": {"a": 1}});
    let out = merge_applied(&merged, &smaller, &entries, "m");
    assert_eq!(out["spec"], json!({"a": 1}));
    assert_eq!(out["metadata"]["labels"], json!({}));
    // Shared with another manager: kept.
    let mut shared = entries.clone();
    shared.push(Entry {
        manager: "other".into(),
        operation: Operation::Update,
        time: String::new(),
        fields: [path("spec.b")].into_iter().collect(),
        subresource: String::new(),
    });
    let out = merge_applied(&merged, &smaller, &shared, "m");
    assert_eq!(out["spec"], json!({"a": 1, "b": 2}));
}

#[test]
fn entries_round_trip_through_managed_fields() {
    let mut obj = svc("a", json!([]));
    let entries = track_update(&json!({}), &obj, vec![], "kubectl", "2024-01-01T00:00:00Z");
    Entry::write_all(&mut obj, &entries);
    assert_eq!(
        obj["metadata"]["managedFields"][0]["fieldsType"],
        "FieldsV1"
    );
    assert_eq!(Entry::read_all(&obj), entries);
    Entry::write_all(&mut obj, &[]);
    assert!(obj["metadata"].get("managedFields").is_none());
}

#[test]
fn empty_map_never_replaces_a_map() {
    let mut v = json!({"spec": {"template": {"x": 1}}});
    set_at(&mut v, &path("spec.template"), json!({}));
    assert_eq!(v["spec"]["template"]["x"], 1);
    set_at(&mut v, &path("spec.new.deep"), json!(2));
    assert_eq!(v["spec"]["new"]["deep"], 2);
}

#[test]
fn kubectl_takes_over_what_its_client_side_apply_declared() {
    let mut live = svc("a", json!([]));
    let last = json!({"spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}});
    live["metadata"]["annotations"] = json!({ LAST_APPLIED: last.to_string() });
    let entries = track_update(&json!({}), &live, vec![], "kubectl-client-side-apply", "t1");
    let config = svc("b", json!([]));
    let merged = merge_applied(&live, &config, &entries, KUBECTL_APPLY_MANAGER);
    let forgiven = forgiven_conflicts(&live, KUBECTL_APPLY_MANAGER);
    assert!(forgiven.contains(&path("spec.template.spec.containers")));
    settle_apply(
        &live,
        &merged,
        &config,
        entries.clone(),
        KUBECTL_APPLY_MANAGER,
        false,
        &forgiven,
        "t2",
    )
    .unwrap();
    // Another manager gets no such pass.
    assert!(forgiven_conflicts(&live, "other").is_empty());
}
