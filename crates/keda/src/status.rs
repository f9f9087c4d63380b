//! A ScaledObject's status as KEDA writes it: `Ready` (every trigger could be read and the
//! target exists; otherwise the first failure's reason and every failure's message, prefixed
//! with its trigger), `Active`, `externalMetricNames`, `triggersActivity`, `lastActiveTime`,
//! `originalReplicaCount`, and the `TRIGGERS`/`AUTHENTICATIONS` columns' values.

use nimbus_api::conditions::set_condition;
use nimbus_api::keda::{
    CONDITION_ACTIVE, CONDITION_READY, ScaledObject, ScaledObjectStatus, TriggerActivity,
};
use nimbus_api::{Condition, ConditionStatus};

use crate::decide::Reading;
use crate::error::TriggerError;

/// One trigger's poll, as the status reports it.
#[derive(Debug)]
pub(crate) struct TriggerResult {
    pub type_: String,
    pub metric_name: String,
    pub reading: Reading,
    pub error: Option<TriggerError>,
}

/// What one poll of a ScaledObject saw.
#[derive(Debug)]
pub(crate) struct Observed {
    /// Why the target cannot be scaled, if it cannot: KEDA's reason and a message
    /// (`ScaledObjectCheckFailed` for a spec Nimbus refuses, `ScaleTargetNotFound`).
    pub target: Option<(&'static str, String)>,
    pub triggers: Vec<TriggerResult>,
    pub active: bool,
    pub original_replica_count: Option<u32>,
}

/// Fold `observed` into `so.status`.
pub(crate) fn update(
    so: &mut ScaledObject,
    observed: &Observed,
    now: &chrono::DateTime<chrono::Utc>,
) {
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let generation = so.metadata.generation;
    let auths: Vec<String> = so
        .spec
        .triggers
        .iter()
        .filter_map(|t| t.authentication_ref.as_ref().map(|a| a.name.clone()))
        .collect();
    let status = so.status.get_or_insert_with(ScaledObjectStatus::default);
    status.scale_target_kind = Some(format!("{}.Service", nimbus_api::API_VERSION));
    status.observed_generation = generation;
    status.original_replica_count = status
        .original_replica_count
        .or(observed.original_replica_count.map(|n| n as i32));
    status.external_metric_names = observed
        .triggers
        .iter()
        .map(|t| t.metric_name.clone())
        .collect();
    status.triggers_activity = observed
        .triggers
        .iter()
        .map(|t| {
            (
                t.metric_name.clone(),
                TriggerActivity {
                    is_active: t.reading.is_active(),
                },
            )
        })
        .collect();
    let types: Vec<&str> = observed.triggers.iter().map(|t| t.type_.as_str()).collect();
    status.triggers_types = Some(types.join(","));
    status.authentications_types = (!auths.is_empty()).then(|| auths.join(","));
    if observed.active {
        status.last_active_time = Some(stamp.clone());
    }
    set_condition(&mut status.conditions, ready(observed), &stamp);
    set_condition(&mut status.conditions, active(observed.active), &stamp);
}

fn ready(observed: &Observed) -> Condition {
    if let Some((reason, why)) = &observed.target {
        return Condition::new(CONDITION_READY, ConditionStatus::False).with_reason(*reason, why);
    }
    let failures: Vec<(usize, &TriggerResult, &TriggerError)> = observed
        .triggers
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i, t, t.error.as_ref()?)))
        .collect();
    match failures.first() {
        None => Condition::new(CONDITION_READY, ConditionStatus::True).with_reason(
            "ScaledObjectReady",
            "ScaledObject is defined correctly and is ready for scaling",
        ),
        Some((_, _, first)) => {
            let message: Vec<String> = failures
                .iter()
                .map(|(i, t, e)| format!("spec.triggers[{i}] ({}): {e}", t.type_))
                .collect();
            Condition::new(CONDITION_READY, ConditionStatus::False)
                .with_reason(first.reason(), message.join("; "))
        }
    }
}

fn active(active: bool) -> Condition {
    match active {
        true => Condition::new(CONDITION_ACTIVE, ConditionStatus::True).with_reason(
            "ScalerActive",
            "Scaling is performed because triggers are active",
        ),
        false => Condition::new(CONDITION_ACTIVE, ConditionStatus::False).with_reason(
            "ScalerNotActive",
            "Scaling is not performed because triggers are not active",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::keda::triggers::MetricType;

    fn result(type_: &str, value: f64, error: Option<TriggerError>) -> TriggerResult {
        TriggerResult {
            type_: type_.into(),
            metric_name: format!("s0-{type_}-x"),
            reading: match error {
                Some(_) => Reading::Failed,
                None => Reading::Metric {
                    value,
                    target: 5.0,
                    activation: 0.0,
                    metric_type: MetricType::AverageValue,
                },
            },
            error,
        }
    }

    #[test]
    fn a_failing_trigger_is_named_in_ready_and_the_others_still_count() {
        let mut so = ScaledObject::default();
        let observed = Observed {
            target: None,
            triggers: vec![
                result(
                    "redis",
                    0.0,
                    Some(TriggerError::Broker("redis at h:1: refused".into())),
                ),
                result("cron", 2.0, None),
            ],
            active: true,
            original_replica_count: Some(0),
        };
        update(&mut so, &observed, &chrono::Utc::now());
        let status = so.status.unwrap();
        let ready = nimbus_api::conditions::get_condition(&status.conditions, "Ready").unwrap();
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason.as_deref(), Some("TriggerError"));
        assert_eq!(
            ready.message.as_deref(),
            Some("spec.triggers[0] (redis): redis at h:1: refused")
        );
        let active = nimbus_api::conditions::get_condition(&status.conditions, "Active").unwrap();
        assert_eq!(active.status, ConditionStatus::True);
        assert_eq!(status.triggers_types.as_deref(), Some("redis,cron"));
        assert!(status.last_active_time.is_some());
        assert_eq!(status.original_replica_count, Some(0));
        assert!(status.triggers_activity["s0-cron-x"].is_active);
    }
}
