//! KEDA's rules for ScaledObjects and TriggerAuthentications (its admission webhook's checks:
//! `min <= max`, `idleReplicaCount < minReplicaCount`, known triggers with valid metadata),
//! plus what embedded Nimbus cannot honour, refused with the field path instead of ignored.

use super::Errors;
use crate::keda::triggers::{self, Sources};
use crate::keda::{ScaledObject, TriggerAuthentication};

/// What a ScaledObject's `scaleTargetRef` must name in Nimbus.
pub const TARGET_API_VERSION: &str = crate::API_VERSION;

pub(super) fn validate_scaled_object(v: &mut Errors, so: &ScaledObject) {
    let spec = &so.spec;
    validate_target(v, so);
    for (path, value, least) in [
        ("spec.pollingInterval", spec.polling_interval, 1),
        ("spec.cooldownPeriod", spec.cooldown_period, 0),
        (
            "spec.initialCooldownPeriod",
            spec.initial_cooldown_period,
            0,
        ),
        ("spec.minReplicaCount", spec.min_replica_count, 0),
        ("spec.maxReplicaCount", spec.max_replica_count, 1),
        ("spec.idleReplicaCount", spec.idle_replica_count, 0),
    ] {
        if let Some(n) = value.filter(|n| *n < least) {
            v.add(path, format!("{n} is below the least allowed, {least}"));
        }
    }
    let (min, max) = (spec.min_replica_count(), spec.max_replica_count());
    if min > max {
        v.add(
            "spec.minReplicaCount",
            format!("{min} is above spec.maxReplicaCount ({max})"),
        );
    }
    if let Some(idle) = spec.idle_replica_count.filter(|idle| *idle >= min) {
        v.add(
            "spec.idleReplicaCount",
            format!("{idle} must be below spec.minReplicaCount ({min}), as KEDA requires"),
        );
    }
    validate_unsupported(v, so);
    validate_triggers(v, so);
}

fn validate_target(v: &mut Errors, so: &ScaledObject) {
    let target = &so.spec.scale_target_ref;
    if target.name.is_empty() {
        v.add(
            "spec.scaleTargetRef.name",
            "is required: the Knative Service to scale",
        );
    }
    let api_version = target.api_version.as_deref().unwrap_or("apps/v1");
    let kind = target.kind.as_deref().unwrap_or("Deployment");
    if api_version != TARGET_API_VERSION || kind != "Service" {
        v.add(
            "spec.scaleTargetRef",
            format!(
                "{api_version} {kind} cannot be scaled in embedded Nimbus, which runs Knative \
                 Services only: set apiVersion: {TARGET_API_VERSION} and kind: Service"
            ),
        );
    }
}

fn validate_unsupported(v: &mut Errors, so: &ScaledObject) {
    let spec = &so.spec;
    if spec.fallback.is_some() {
        v.add(
            "spec.fallback",
            "is not supported by Nimbus yet; remove it (a failing trigger keeps the current scale)",
        );
    }
    if let Some(advanced) = &spec.advanced {
        if advanced.horizontal_pod_autoscaler_config.is_some() {
            v.add(
                "spec.advanced.horizontalPodAutoscalerConfig",
                "is not supported: no HPA runs in embedded Nimbus; remove it",
            );
        }
        if advanced.scaling_modifiers.is_some() {
            v.add(
                "spec.advanced.scalingModifiers",
                "is not supported by Nimbus yet; remove it",
            );
        }
    }
}

fn validate_triggers(v: &mut Errors, so: &ScaledObject) {
    if so.spec.triggers.is_empty() {
        v.add("spec.triggers", "needs at least one trigger");
    }
    for (i, trigger) in so.spec.triggers.iter().enumerate() {
        let path = format!("spec.triggers[{i}]");
        if let Some(kind) = trigger
            .authentication_ref
            .as_ref()
            .and_then(|a| a.kind.as_deref())
            .filter(|k| *k != "TriggerAuthentication")
        {
            v.add(
                format!("{path}.authenticationRef.kind"),
                format!(
                    "{kind} is not supported; use a TriggerAuthentication in the same namespace"
                ),
            );
        }
        if let Err(errors) = triggers::parse(&path, i, trigger, Sources::pending(&trigger.metadata))
        {
            v.0.extend(errors);
        }
    }
}

pub(super) fn validate_trigger_authentication(v: &mut Errors, ta: &TriggerAuthentication) {
    let spec = &ta.spec;
    let refs = [
        ("spec.secretTargetRef", &spec.secret_target_ref),
        ("spec.configMapTargetRef", &spec.config_map_target_ref),
    ];
    for (path, refs) in refs {
        for (i, r) in refs.iter().enumerate() {
            for (field, value) in [
                ("parameter", &r.parameter),
                ("name", &r.name),
                ("key", &r.key),
            ] {
                if value.is_empty() {
                    v.add(format!("{path}[{i}].{field}"), "is required");
                }
            }
        }
    }
    let unsupported = [
        (
            "spec.env",
            !spec.env.is_empty(),
            "reads the target's container environment, which KEDA resolves from a Deployment; in Nimbus use secretTargetRef, or <parameter>FromEnv in the trigger's metadata",
        ),
        (
            "spec.podIdentity",
            spec.pod_identity.is_some(),
            "needs a cloud identity provider",
        ),
        (
            "spec.filePath",
            spec.file_path.is_some(),
            "is not supported",
        ),
        (
            "spec.hashiCorpVault",
            spec.hashi_corp_vault.is_some(),
            "is not supported",
        ),
        (
            "spec.azureKeyVault",
            spec.azure_key_vault.is_some(),
            "is not supported",
        ),
        (
            "spec.gcpSecretManager",
            spec.gcp_secret_manager.is_some(),
            "is not supported",
        ),
        (
            "spec.awsSecretManager",
            spec.aws_secret_manager.is_some(),
            "is not supported",
        ),
        (
            "spec.boundServiceAccountToken",
            !spec.bound_service_account_token.is_empty(),
            "is not supported",
        ),
        ("spec.oauth2", spec.oauth2.is_some(), "is not supported"),
    ];
    for (path, set, why) in unsupported {
        if set {
            v.add(
                path,
                format!("{why} in embedded Nimbus; use secretTargetRef or configMapTargetRef"),
            );
        }
    }
}
