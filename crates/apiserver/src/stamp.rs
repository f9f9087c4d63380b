//! Server-side changes to submitted objects: Knative's `creator`/`lastModifier` annotations and
//! dropping a status sent on create (status belongs to the controller, via `/status`).

use std::collections::BTreeMap;

use nimbus_api::constants::{ANNOTATION_CREATOR, ANNOTATION_LAST_MODIFIER};
use nimbus_api::{Kind, Object};
use serde_json::Value;

/// On create: `creator` and `lastModifier` are the caller; any status is dropped.
pub fn on_create(obj: &mut Object, user: &str) {
    clear_status(obj);
    if tracks_users(obj.kind()) {
        let annotations = annotations_mut(obj);
        annotations.insert(ANNOTATION_CREATOR.to_string(), user.to_string());
        annotations.insert(ANNOTATION_LAST_MODIFIER.to_string(), user.to_string());
    }
}

/// On replace: `creator` cannot change; `lastModifier` becomes the caller when the spec changed
/// and is kept otherwise.
pub fn on_update(obj: &mut Object, stored: &Object, user: &str) {
    if !tracks_users(obj.kind()) {
        return;
    }
    let modifier = if spec(obj) != spec(stored) {
        Some(user.to_string())
    } else {
        stored_annotation(stored, ANNOTATION_LAST_MODIFIER)
    };
    let creator = stored_annotation(stored, ANNOTATION_CREATOR);
    let annotations = annotations_mut(obj);
    for (key, value) in [
        (ANNOTATION_CREATOR, creator),
        (ANNOTATION_LAST_MODIFIER, modifier),
    ] {
        match value {
            Some(v) => annotations.insert(key.to_string(), v),
            None => annotations.remove(key),
        };
    }
}

/// Knative records users on the objects people write: Services and Configurations.
fn tracks_users(kind: Kind) -> bool {
    matches!(kind, Kind::Service | Kind::Configuration)
}

fn spec(obj: &Object) -> Value {
    obj.to_json().get("spec").cloned().unwrap_or_default()
}

fn stored_annotation(obj: &Object, key: &str) -> Option<String> {
    obj.metadata().annotations.as_ref()?.get(key).cloned()
}

fn annotations_mut(obj: &mut Object) -> &mut BTreeMap<String, String> {
    obj.metadata_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
}

fn clear_status(obj: &mut Object) {
    match obj {
        Object::Service(o) => o.status = None,
        Object::Configuration(o) => o.status = None,
        Object::Revision(o) => o.status = None,
        Object::Route(o) => o.status = None,
        Object::PodAutoscaler(o) => o.status = None,
        Object::Ingress(o) => o.status = None,
        Object::Secret(_) | Object::ConfigMap(_) => {}
        Object::RedisStreamSource(o) => o.status = None,
        Object::RabbitmqSource(o) => o.status = None,
        Object::RedisListSource(o) => o.status = None,
        Object::NatsJetStreamSource(o) => o.status = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::{Route, Service};

    fn service(image: &str) -> Object {
        let mut s = Service::default();
        s.spec.template.spec.containers = vec![Default::default()];
        s.spec.template.spec.containers[0].image = Some(image.to_string());
        Object::Service(s)
    }

    fn annotation(obj: &Object, key: &str) -> Option<String> {
        stored_annotation(obj, key)
    }

    #[test]
    fn create_stamps_services_not_routes() {
        let mut s = service("a");
        on_create(&mut s, "alice");
        assert_eq!(annotation(&s, ANNOTATION_CREATOR).as_deref(), Some("alice"));
        assert_eq!(
            annotation(&s, ANNOTATION_LAST_MODIFIER).as_deref(),
            Some("alice")
        );
        let mut r = Object::Route(Route::default());
        on_create(&mut r, "alice");
        assert_eq!(r.metadata().annotations, None);
    }

    #[test]
    fn update_keeps_creator_and_tracks_spec_changes() {
        let mut stored = service("a");
        on_create(&mut stored, "alice");
        let mut same = service("a");
        annotations_mut(&mut same).insert(ANNOTATION_CREATOR.into(), "mallory".into());
        on_update(&mut same, &stored, "bob");
        assert_eq!(
            annotation(&same, ANNOTATION_CREATOR).as_deref(),
            Some("alice")
        );
        assert_eq!(
            annotation(&same, ANNOTATION_LAST_MODIFIER).as_deref(),
            Some("alice")
        );
        let mut changed = service("b");
        on_update(&mut changed, &stored, "bob");
        assert_eq!(
            annotation(&changed, ANNOTATION_LAST_MODIFIER).as_deref(),
            Some("bob")
        );
    }
}
