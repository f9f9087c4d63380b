//! KEDA's `keda.sh/v1alpha1` kinds: `ScaledObject` (scale a workload on event-source metrics)
//! and `TriggerAuthentication` (where a trigger's credentials come from), with KEDA's field
//! names and defaults (kedacore/keda `apis/keda/v1alpha1/scaledobject_types.go`,
//! `triggerauthentication_types.go`; <https://keda.sh/docs/latest/reference/scaledobject-spec/>).
//!
//! In Nimbus a ScaledObject targets a Knative Service (`scaleTargetRef: {apiVersion:
//! serving.knative.dev/v1, kind: Service, name}`); `nimbus-keda` evaluates its triggers and the
//! scaler runs the Service's routed revisions at no fewer instances than the triggers ask for.
//! Trigger metadata is parsed here ([`triggers`]), so a bad manifest is refused when applied.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conditions::Condition;

pub mod triggers;

/// `keda.sh`
pub const GROUP: &str = "keda.sh";
/// `keda.sh/v1alpha1`
pub const API_VERSION: &str = "keda.sh/v1alpha1";

/// KEDA's `pollingInterval` default: seconds between two polls of the triggers.
pub const DEFAULT_POLLING_INTERVAL: i32 = 30;
/// KEDA's `cooldownPeriod` default: seconds after the last active trigger before scaling to
/// zero (or to `idleReplicaCount`).
pub const DEFAULT_COOLDOWN_PERIOD: i32 = 300;
/// KEDA's `minReplicaCount` default.
pub const DEFAULT_MIN_REPLICA_COUNT: i32 = 0;
/// KEDA's `maxReplicaCount` default.
pub const DEFAULT_MAX_REPLICA_COUNT: i32 = 100;

/// The condition types KEDA sets on a ScaledObject.
pub const CONDITION_READY: &str = "Ready";
/// `Active`: a trigger is above its activation threshold.
pub const CONDITION_ACTIVE: &str = "Active";

// === ScaledObject ===

/// A KEDA ScaledObject.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.ScaledObject")
)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObject {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ScaledObjectSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ScaledObjectStatus>,
}

impl ScaledObject {
    pub const KIND: &'static str = "ScaledObject";
    pub const PLURAL: &'static str = "scaledobjects";
}

/// What to scale, between which bounds, on which triggers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.ScaledObjectSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    /// The scaled workload: a Knative Service (`apiVersion: serving.knative.dev/v1`, `kind:
    /// Service`, `name`).
    #[serde(default)]
    pub scale_target_ref: ScaleTarget,
    /// Seconds between polls of the triggers (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<i32>,
    /// Seconds after creation before the first scale to zero (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cooldown_period: Option<i32>,
    /// Seconds after the last active trigger before scaling to zero (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<i32>,
    /// Instances while no trigger is active (below `minReplicaCount`; KEDA allows only 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_replica_count: Option<i32>,
    /// The fewest instances (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replica_count: Option<i32>,
    /// The most instances the triggers may ask for (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<i32>,
    /// KEDA's `advanced` block: `restoreToOriginalReplicaCount` is accepted; the HPA
    /// configuration and scaling modifiers are refused (no HPA runs in embedded mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<AdvancedConfig>,
    /// The event sources and their targets.
    #[serde(default)]
    pub triggers: Vec<ScaleTriggers>,
    /// KEDA's fallback replicas on failing triggers: refused (not implemented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Value>,
}

/// KEDA's `advanced` settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.AdvancedConfig")
)]
#[serde(rename_all = "camelCase")]
pub struct AdvancedConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_pod_autoscaler_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to_original_replica_count: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_modifiers: Option<Value>,
}

/// The scaled workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.ScaleTarget")
)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTarget {
    #[serde(default)]
    pub name: String,
    /// KEDA's default is `apps/v1`; Nimbus accepts `serving.knative.dev/v1` only, and reads a
    /// target given by `name` alone (KEDA's documented shape) as the Service of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// KEDA's default is `Deployment`; Nimbus accepts `Service` only (see `api_version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_source_container_name: Option<String>,
}

/// One trigger.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.ScaleTriggers")
)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTriggers {
    /// `redis`, `redis-streams`, `nats-jetstream`, `rabbitmq` or `cron`.
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cached_metrics: Option<bool>,
    /// The trigger's settings, as KEDA's documentation of each scaler names them.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<AuthenticationRef>,
    /// `AverageValue` (default) or `Value` (`Utilization` is for CPU/memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<String>,
}

/// A reference to a TriggerAuthentication (or ClusterTriggerAuthentication, refused).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.AuthenticationRef")
)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationRef {
    #[serde(default)]
    pub name: String,
    /// `TriggerAuthentication` (default) or `ClusterTriggerAuthentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// What KEDA reports about a ScaledObject.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.ScaledObjectStatus")
)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target_kind: Option<String>,
    /// The scale the target had before the ScaledObject took over (the revision's HTTP decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_replica_count: Option<i32>,
    /// When a trigger was last active (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_time: Option<String>,
    /// One metric name per trigger, as KEDA names them (`s0-redis-mylist`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_metric_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per metric name: whether that trigger is active.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub triggers_activity: BTreeMap<String, TriggerActivity>,
    /// The trigger types, comma-separated (the `TRIGGERS` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers_types: Option<String>,
    /// The TriggerAuthentications used, comma-separated (the `AUTHENTICATIONS` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentications_types: Option<String>,
    /// The generation the status describes (Nimbus's addition, as Knative's statuses have).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One trigger's activity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.TriggerActivityStatus")
)]
#[serde(rename_all = "camelCase")]
pub struct TriggerActivity {
    pub is_active: bool,
}

// === TriggerAuthentication ===

/// A KEDA TriggerAuthentication: trigger parameters (`password`, `host`, ...) read from
/// Secrets of the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.TriggerAuthentication")
)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthentication {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: TriggerAuthenticationSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

impl TriggerAuthentication {
    pub const KIND: &'static str = "TriggerAuthentication";
    pub const PLURAL: &'static str = "triggerauthentications";
}

/// Where parameters come from. Only `secretTargetRef` and `configMapTargetRef` are resolved
/// in embedded mode; the other sources are refused with their field path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.TriggerAuthenticationSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthenticationSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_target_ref: Vec<AuthTargetRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_map_target_ref: Vec<AuthTargetRef>,
    /// KEDA reads these from the target's containers' environment: refused in embedded mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashi_corp_vault: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_secret_manager: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_manager: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_service_account_token: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<Value>,
}

/// One parameter from one key of a Secret (or ConfigMap) of the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "sh.keda.v1alpha1.AuthTargetRef")
)]
#[serde(rename_all = "camelCase")]
pub struct AuthTargetRef {
    /// The trigger parameter it sets (`password`, `host`, ...).
    #[serde(default)]
    pub parameter: String,
    /// The Secret's (ConfigMap's) name.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
}

// === defaults ===

impl ScaledObjectSpec {
    /// `pollingInterval` with KEDA's default.
    pub fn polling_interval(&self) -> i32 {
        self.polling_interval.unwrap_or(DEFAULT_POLLING_INTERVAL)
    }

    /// `cooldownPeriod` with KEDA's default.
    pub fn cooldown_period(&self) -> i32 {
        self.cooldown_period.unwrap_or(DEFAULT_COOLDOWN_PERIOD)
    }

    /// `minReplicaCount` with KEDA's default.
    pub fn min_replica_count(&self) -> i32 {
        self.min_replica_count.unwrap_or(DEFAULT_MIN_REPLICA_COUNT)
    }

    /// `maxReplicaCount` with KEDA's default.
    pub fn max_replica_count(&self) -> i32 {
        self.max_replica_count.unwrap_or(DEFAULT_MAX_REPLICA_COUNT)
    }
}

/// KEDA's defaulting: the values a reader sees are the ones used (as KEDA's CRD defaults
/// `pollingInterval`, `cooldownPeriod` and the bounds).
pub fn default_scaled_object(so: &mut ScaledObject) {
    let spec = &mut so.spec;
    spec.polling_interval
        .get_or_insert(DEFAULT_POLLING_INTERVAL);
    spec.cooldown_period.get_or_insert(DEFAULT_COOLDOWN_PERIOD);
    spec.min_replica_count
        .get_or_insert(DEFAULT_MIN_REPLICA_COUNT);
    spec.max_replica_count
        .get_or_insert(DEFAULT_MAX_REPLICA_COUNT);
    // KEDA's documentation names only the target (`scaleTargetRef: {name: my-app}`), which
    // KEDA reads as an `apps/v1` Deployment. Nimbus has no Deployments to scale (embedded
    // mode runs Knative Services), so a target given by name alone is the Service of that
    // name, written out so what is read back is what scales. An explicit Deployment is still
    // refused by validation.
    let target = &mut spec.scale_target_ref;
    if target.api_version.is_none() && target.kind.is_none() {
        target.api_version = Some(crate::API_VERSION.to_string());
        target.kind = Some("Service".to_string());
    }
}
