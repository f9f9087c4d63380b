//! The reconcilers' Events: a revision that failed (or became ready), and traffic that moved.
//! Pure: each compares the status before and after a write and returns the note to record,
//! so a reconcile that changes nothing records nothing.
//!
//! Reasons: `RevisionFailed` (Knative's reason on a Configuration whose revision failed),
//! `RevisionReady`, `TrafficShifted`.

use nimbus_api::conditions::{ConditionStatus, get_condition};
use nimbus_api::events::{TYPE_NORMAL, TYPE_WARNING};
use nimbus_api::serving::{RevisionStatus, RouteStatus, TrafficTarget};
use nimbus_api::{Object, Revision, Route};

use crate::recorder::Note;

/// A revision's Ready condition turned False (or changed reason), or turned True.
pub fn revision_ready(
    rev: &Revision,
    before: Option<&RevisionStatus>,
    after: &RevisionStatus,
) -> Option<Note> {
    let ready = |s: Option<&RevisionStatus>| {
        s.and_then(|s| get_condition(&s.conditions, "Ready"))
            .map(|c| {
                (
                    c.status,
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone(),
                )
            })
    };
    let (old, new) = (ready(before), ready(Some(after))?);
    if old.as_ref() == Some(&new) {
        return None;
    }
    let obj = Object::Revision(rev.clone());
    match new {
        (ConditionStatus::False, reason, message) => {
            let was = old.as_ref().map(|(s, r, _)| (*s, r.as_str()));
            if was == Some((ConditionStatus::False, reason.as_str())) {
                return None;
            }
            let message = format!("{reason}: {}", message.unwrap_or_default());
            Some(Note::about(
                &obj,
                TYPE_WARNING,
                "RevisionFailed",
                "Reconcile",
                message,
            ))
        }
        (ConditionStatus::True, _, _) => {
            let message = "the revision's instances are ready".to_string();
            Some(Note::about(
                &obj,
                TYPE_NORMAL,
                "RevisionReady",
                "Reconcile",
                message,
            ))
        }
        _ => None,
    }
}

/// The route's resolved traffic changed: `old split → new split`.
pub fn traffic_shifted(
    route: &Route,
    before: Option<&RouteStatus>,
    after: &RouteStatus,
) -> Option<Note> {
    let old = before.map(|s| split(&s.traffic)).unwrap_or_default();
    let new = split(&after.traffic);
    if old == new || new.is_empty() {
        return None;
    }
    let from = if old.is_empty() {
        "nothing".to_string()
    } else {
        old
    };
    let message = format!("traffic shifted: {from} → {new}");
    let obj = Object::Route(route.clone());
    Some(Note::about(
        &obj,
        TYPE_NORMAL,
        "TrafficShifted",
        "Route",
        message,
    ))
}

/// `hello-00001 50%, hello-00002 50% (tag canary)`; entries not resolved to a revision yet
/// are left out.
fn split(traffic: &[TrafficTarget]) -> String {
    let entry = |t: &TrafficTarget| {
        let name = t.revision_name.as_deref()?;
        let tag = t
            .tag
            .as_deref()
            .map(|t| format!(" (tag {t})"))
            .unwrap_or_default();
        Some(format!("{name} {}%{tag}", t.percent.unwrap_or(0)))
    };
    traffic
        .iter()
        .filter_map(entry)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::Condition;

    fn status(s: ConditionStatus, reason: &str) -> RevisionStatus {
        RevisionStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: s,
                reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
                message: Some("exit code 3".into()),
                ..Condition::default()
            }],
            ..RevisionStatus::default()
        }
    }

    #[test]
    fn a_failed_revision_is_reported_once_per_reason() {
        let rev = Revision::default();
        let failed = status(ConditionStatus::False, "ExitCode3");
        let deploying = status(ConditionStatus::Unknown, "Deploying");
        let note = revision_ready(&rev, Some(&deploying), &failed).unwrap();
        assert_eq!(
            (note.type_, note.reason.as_str()),
            ("Warning", "RevisionFailed")
        );
        assert_eq!(note.message, "ExitCode3: exit code 3");
        assert!(revision_ready(&rev, Some(&failed), &failed).is_none());
        let mut again = failed.clone();
        again.conditions[0].message = Some("exit code 3 again".into());
        assert!(revision_ready(&rev, Some(&failed), &again).is_none());
        let ready = status(ConditionStatus::True, "");
        assert_eq!(
            revision_ready(&rev, Some(&failed), &ready).unwrap().reason,
            "RevisionReady"
        );
        assert!(revision_ready(&rev, None, &deploying).is_none());
    }

    #[test]
    fn traffic_shifts_name_old_and_new_splits() {
        let t = |name: &str, percent| TrafficTarget {
            revision_name: Some(name.into()),
            percent: Some(percent),
            ..TrafficTarget::default()
        };
        let before = RouteStatus {
            traffic: vec![t("a-1", 100)],
            ..RouteStatus::default()
        };
        let after = RouteStatus {
            traffic: vec![t("a-1", 50), t("a-2", 50)],
            ..RouteStatus::default()
        };
        let note = traffic_shifted(&Route::default(), Some(&before), &after).unwrap();
        assert_eq!(note.message, "traffic shifted: a-1 100% → a-1 50%, a-2 50%");
        assert!(traffic_shifted(&Route::default(), Some(&after), &after).is_none());
        let first = traffic_shifted(&Route::default(), None, &before).unwrap();
        assert_eq!(first.message, "traffic shifted: nothing → a-1 100%");
    }
}
