//! `autoscaling.internal.knative.dev/v1alpha1` PodAutoscaler: one per Revision, the scaling
//! state that must outlive any process — desired and actual scale, reachability and the
//! metric settings (the revision's `autoscaling.knative.dev/*` annotations, copied onto it).
//!
//! As in Knative, the revision reconciler owns the spec (what to scale and whether any route
//! can reach it) and the autoscaler owns the status (how many instances it decided and how
//! many are ready). After a restart scaling resumes from `status.desiredScale`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// `autoscaling.internal.knative.dev`
pub const GROUP: &str = "autoscaling.internal.knative.dev";
/// `autoscaling.internal.knative.dev/v1alpha1`
pub const API_VERSION: &str = "autoscaling.internal.knative.dev/v1alpha1";

/// Scaling state of one revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.autoscaling.v1alpha1.PodAutoscaler")
)]
#[serde(rename_all = "camelCase")]
pub struct PodAutoscaler {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodAutoscalerSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodAutoscalerStatus>,
}

/// What to scale, as the revision reconciler sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.autoscaling.v1alpha1.PodAutoscalerSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct PodAutoscalerSpec {
    /// The workload scaled: the Revision itself in embedded mode, its Deployment on a cluster.
    #[serde(default)]
    pub scale_target_ref: ScaleTargetRef,
    /// The revision's `containerConcurrency` (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i64>,
    /// Whether a route sends the revision traffic: `Reachable`, `Unreachable`, or empty while
    /// not yet known (a new revision). Only unreachable revisions ignore `min-scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachability: Option<String>,
    /// `http1` or `h2c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_type: Option<String>,
}

/// A reference to the scaled object (Kubernetes' `ObjectReference` subset Knative uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.autoscaling.v1alpha1.ScaleTargetRef")
)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// What the autoscaler decided and observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.internal.autoscaling.v1alpha1.PodAutoscalerStatus")
)]
#[serde(rename_all = "camelCase")]
pub struct PodAutoscalerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Active` (an instance is ready, or it is activating, or `NoTraffic`),
    /// `ScaleTargetInitialized` (initial scale was reached once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Instances the autoscaler wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_scale: Option<i32>,
    /// Instances ready to take traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_scale: Option<i32>,
}

/// `Reachable`: a route sends the revision traffic.
pub const REACHABLE: &str = "Reachable";
/// `Unreachable`: no route sends it traffic; it may scale to zero ignoring `min-scale`.
pub const UNREACHABLE: &str = "Unreachable";

impl PodAutoscaler {
    /// Whether no route can reach the revision (an empty reachability counts as reachable,
    /// as Knative treats a new revision).
    pub fn is_unreachable(&self) -> bool {
        self.spec.reachability.as_deref() == Some(UNREACHABLE)
    }

    /// The decided scale recorded in status, if any.
    pub fn desired_scale(&self) -> Option<u32> {
        let d = self.status.as_ref()?.desired_scale?;
        u32::try_from(d).ok()
    }
}
