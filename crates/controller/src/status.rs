//! Small helpers shared by the reconcilers: conditions, owner references, child metadata.

use std::collections::BTreeMap;

use nimbus_api::conditions::{Condition, ConditionStatus, get_condition};
use nimbus_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use nimbus_api::{Kind, ObjectMeta};

/// A condition with reason and message (reason/message omitted when empty).
pub(crate) fn cond(type_: &str, status: ConditionStatus, reason: &str, message: &str) -> Condition {
    let mut c = Condition::new(type_, status);
    if !reason.is_empty() {
        c.reason = Some(reason.to_string());
    }
    if !message.is_empty() {
        c.message = Some(message.to_string());
    }
    c
}

/// The `Ready` condition of a child as (status, reason, message), `Unknown` when absent.
pub(crate) fn ready_of(conditions: &[Condition]) -> (ConditionStatus, String, String) {
    condition_of(conditions, "Ready")
}

/// The condition `type_` as (status, reason, message); `Unknown` when it is missing.
pub(crate) fn condition_of(
    conditions: &[Condition],
    type_: &str,
) -> (ConditionStatus, String, String) {
    match get_condition(conditions, type_) {
        Some(c) => (
            c.status,
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        ),
        None => (ConditionStatus::Unknown, String::new(), String::new()),
    }
}

/// Set every condition in `new` on `conditions` with transition-time bookkeeping.
pub(crate) fn set_all(conditions: &mut Vec<Condition>, new: Vec<Condition>, now: &str) {
    for c in new {
        nimbus_api::conditions::set_condition(conditions, c, now);
    }
}

/// An owner reference to `meta` of the given kind, marked as the controller.
pub(crate) fn owner_ref(kind: Kind, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: kind.api_version().to_string(),
        kind: kind.as_str().to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The uid of the object's controlling owner (`controller: true`), if any.
pub(crate) fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// Kubernetes' `IsControlledBy`: `child`'s controlling owner is the object `owner`.
pub(crate) fn is_controlled_by(child: &ObjectMeta, owner: &ObjectMeta) -> bool {
    owner
        .uid
        .as_deref()
        .is_some_and(|uid| controller_uid(child) == Some(uid))
}

/// Annotations never copied from a parent to its children.
const NOT_PROPAGATED: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// Parent labels plus `extra`, for a child object.
pub(crate) fn child_labels(
    parent: &ObjectMeta,
    extra: &[(&str, &str)],
) -> Option<BTreeMap<String, String>> {
    let mut labels = parent.labels.clone().unwrap_or_default();
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    (!labels.is_empty()).then_some(labels)
}

/// Parent annotations minus the ones that must not propagate.
pub(crate) fn child_annotations(parent: &ObjectMeta) -> Option<BTreeMap<String, String>> {
    let mut annotations = parent.annotations.clone().unwrap_or_default();
    for k in NOT_PROPAGATED {
        annotations.remove(k);
    }
    (!annotations.is_empty()).then_some(annotations)
}

/// The value of a label.
pub(crate) fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}
