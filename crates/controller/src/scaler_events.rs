//! The scaler's Events: why a revision's scale changed (the autoscaler's observed values and
//! target) and how long a cold start took. Pure: notes are built here and handed to the
//! [`Recorder`](crate::Recorder) by the scaler.
//!
//! Reasons: `ScaledUp`, `ScaledDown`, `ScaledToZero` and `ColdStart` (Nimbus's own; the HPA
//! reports `SuccessfulRescale` with a `New size: N; reason: ...` message in the same spirit).

use std::time::Duration;

use nimbus_api::Kind;
use nimbus_api::autoscaling::{Metric, ScalingSpec};
use nimbus_api::events::TYPE_NORMAL;
use nimbus_autoscaler::Decision;
use nimbus_runtime::RevisionKey;

use crate::recorder::Note;

/// A scale change from `from` to `decision.desired` (`None` when it did not change).
pub fn scaled(
    key: &RevisionKey,
    from: u32,
    decision: &Decision,
    spec: &ScalingSpec,
    why: &str,
) -> Option<Note> {
    let to = decision.desired;
    let reason = match (from, to) {
        (f, t) if f == t => return None,
        (_, 0) => "ScaledToZero",
        (f, t) if t > f => "ScaledUp",
        _ => "ScaledDown",
    };
    let metric = match spec.metric {
        Metric::Concurrency => "concurrency",
        Metric::Rps => "rps",
    };
    let panic = if decision.panicking {
        " (panic mode)"
    } else {
        ""
    };
    let target = spec.target * spec.target_utilization;
    let message = format!(
        "scaled from {from} to {to} {why}: observed stable {metric} {:.2}, panic {metric} {:.2}{panic}; \
         target {target:.2} per instance, desired {to}",
        decision.stable_value, decision.panic_value
    );
    let mut note = Note::named(
        Kind::Revision,
        &key.namespace,
        &key.name,
        TYPE_NORMAL,
        reason,
        message,
    );
    note.action = "Scale".into();
    Some(note)
}

/// A cold start: from the activation of a revision at zero to its first ready instance.
pub fn cold_start(key: &RevisionKey, took: Duration) -> Note {
    let message = format!(
        "cold start took {} ms (activation at zero to the first ready instance)",
        took.as_millis()
    );
    let mut note = Note::named(
        Kind::Revision,
        &key.namespace,
        &key.name,
        TYPE_NORMAL,
        "ColdStart",
        message,
    );
    note.action = "Activate".into();
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(desired: u32, panicking: bool) -> Decision {
        Decision {
            desired,
            panicking,
            stable_value: 5.25,
            panic_value: 7.5,
            excess_burst_capacity: 0.0,
        }
    }

    #[test]
    fn reasons_and_the_values_that_caused_them() {
        let key = RevisionKey::new("default", "hello-00001");
        let spec = ScalingSpec::default();
        let up = scaled(&key, 1, &decision(3, true), &spec, "on load").unwrap();
        assert_eq!(up.reason, "ScaledUp");
        assert!(
            up.message.starts_with("scaled from 1 to 3 on load"),
            "{}",
            up.message
        );
        assert!(
            up.message.contains("stable concurrency 5.25"),
            "{}",
            up.message
        );
        assert!(
            up.message.contains("panic concurrency 7.50 (panic mode)"),
            "{}",
            up.message
        );
        assert!(
            up.message.contains("target 70.00 per instance"),
            "{}",
            up.message
        );
        assert_eq!(up.regarding.name.as_deref(), Some("hello-00001"));
        let down = scaled(&key, 3, &decision(1, false), &spec, "").unwrap();
        assert_eq!(down.reason, "ScaledDown");
        let zero = scaled(&key, 1, &decision(0, false), &spec, "").unwrap();
        assert_eq!(zero.reason, "ScaledToZero");
        assert!(scaled(&key, 2, &decision(2, false), &spec, "").is_none());
        let cold = cold_start(&key, Duration::from_millis(1234));
        assert!(cold.message.contains("1234 ms"));
    }
}
