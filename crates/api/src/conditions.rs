//! Knative-style status conditions (`Ready`, `ConfigurationsReady`, `RoutesReady`, ...).

use serde::{Deserialize, Serialize};

/// `True`, `False` or `Unknown`, as in Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.pkg.apis.ConditionStatus")
)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// One condition of a resource's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.pkg.apis.Condition")
)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Condition {
    pub fn new(type_: &str, status: ConditionStatus) -> Self {
        Self {
            type_: type_.to_string(),
            status,
            ..Default::default()
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>, message: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self.message = Some(message.into());
        self
    }
}

/// Set `cond` in `conditions`, keeping `lastTransitionTime` when the status did not change and
/// stamping `now` when it did. Returns whether anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut cond: Condition, now: &str) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            cond.last_transition_time = if existing.status == cond.status {
                existing.last_transition_time.clone()
            } else {
                Some(now.to_string())
            };
            let changed = *existing != cond;
            *existing = cond;
            changed
        }
        None => {
            cond.last_transition_time = Some(now.to_string());
            conditions.push(cond);
            conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
            true
        }
    }
}

/// Find a condition by type.
pub fn get_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the `Ready` condition is `True`.
pub fn is_ready(conditions: &[Condition]) -> bool {
    get_condition(conditions, "Ready").is_some_and(|c| c.status == ConditionStatus::True)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut cs = Vec::new();
        assert!(set_condition(
            &mut cs,
            Condition::new("Ready", ConditionStatus::Unknown),
            "t1"
        ));
        assert!(!set_condition(
            &mut cs,
            Condition::new("Ready", ConditionStatus::Unknown),
            "t2"
        ));
        assert_eq!(cs[0].last_transition_time.as_deref(), Some("t1"));
        assert!(set_condition(
            &mut cs,
            Condition::new("Ready", ConditionStatus::True),
            "t3"
        ));
        assert_eq!(cs[0].last_transition_time.as_deref(), Some("t3"));
        assert!(is_ready(&cs));
    }
}
