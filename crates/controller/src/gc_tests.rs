//! Knative's revision GC rules as `plan` applies them.

use super::*;
use nimbus_api::ObjectMeta;
use nimbus_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const HOUR: i64 = 3600;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_000_000_000 + secs).unwrap()
}

/// A revision created `created` seconds after the epoch of these tests, last active at
/// `active` (None: never routed), in routing state `state`.
fn rev(name: &str, created: i64, active: Option<i64>, state: &str) -> Revision {
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(a) = active {
        annotations.insert(
            ANNOTATION_ROUTING_STATE_MODIFIED.to_string(),
            at(a).to_string(),
        );
    }
    Revision {
        metadata: ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(Time(at(created))),
            labels: Some([(LABEL_ROUTING_STATE.to_string(), state.to_string())].into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn policy(min: usize, max: Option<usize>) -> RevisionGcConfig {
    RevisionGcConfig {
        min_non_active: min,
        max_non_active: max,
        ..RevisionGcConfig::default()
    }
}

#[test]
fn stale_reserve_revisions_go_keeping_the_minimum() {
    let revs: Vec<Revision> = (0..5)
        .map(|i| rev(&format!("r{i}"), i, Some(i), ROUTING_STATE_RESERVE))
        .collect();
    let p = plan(&policy(2, Some(1000)), &revs, None, at(100 * HOUR));
    assert_eq!(p.delete, ["r0", "r1", "r2"], "the oldest, keeping 2");
}

#[test]
fn active_latest_ready_and_preserved_revisions_are_never_collected() {
    let mut revs = vec![
        rev("routed", 0, Some(0), "active"),
        rev("pending", 0, None, "pending"),
        rev("latest", 0, Some(0), ROUTING_STATE_RESERVE),
        rev("kept", 0, Some(0), ROUTING_STATE_RESERVE),
        rev("old", 0, Some(0), ROUTING_STATE_RESERVE),
    ];
    revs[3]
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_NO_GC.into(), "true".into());
    let p = plan(&policy(0, None), &revs, Some("latest"), at(100 * HOUR));
    assert_eq!(p.delete, ["old"]);
}

#[test]
fn recent_revisions_wait_for_both_retention_times() {
    let revs = vec![
        rev("young", 40 * HOUR, Some(40 * HOUR), ROUTING_STATE_RESERVE),
        rev("recently-active", 0, Some(80 * HOUR), ROUTING_STATE_RESERVE),
        rev("stale", 0, Some(10 * HOUR), ROUTING_STATE_RESERVE),
    ];
    let p = plan(&policy(0, Some(1000)), &revs, None, at(85 * HOUR));
    assert_eq!(p.delete, ["stale"]);
    // young: created 45h ago (48h), active 45h ago; recently-active: active 5h ago (15h)
    assert_eq!(p.recheck_after, Some(Duration::from_secs(3 * HOUR as u64)));
}

#[test]
fn beyond_max_non_active_the_oldest_go_whatever_their_age() {
    let revs: Vec<Revision> = (0..6)
        .map(|i| rev(&format!("r{i}"), i, Some(i), ROUTING_STATE_RESERVE))
        .collect();
    let p = plan(&policy(1, Some(4)), &revs, None, at(10));
    assert_eq!(p.delete, ["r0", "r1"], "6 non-active, at most 4");
}

#[test]
fn everything_disabled_or_few_revisions_deletes_nothing() {
    let revs: Vec<Revision> = (0..3)
        .map(|i| rev(&format!("r{i}"), 0, Some(0), ROUTING_STATE_RESERVE))
        .collect();
    let disabled = RevisionGcConfig {
        retain_since_create_time: None,
        retain_since_last_active_time: None,
        min_non_active: 0,
        max_non_active: None,
    };
    assert!(
        plan(&disabled, &revs, None, at(1000 * HOUR))
            .delete
            .is_empty()
    );
    assert!(
        plan(&policy(3, Some(1000)), &revs, None, at(1000 * HOUR))
            .delete
            .is_empty()
    );
}
