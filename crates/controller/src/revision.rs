//! Revision → desired instances in its runtime; status from what the runtime reports.
//!
//! Until the autoscaler exists, a revision runs one instance when it can receive traffic (it is
//! its configuration's latest, or a route sends it traffic or tags it) and none otherwise.

use nimbus_api::autoscaling::ScalingSpec;
use nimbus_api::conditions::{ConditionStatus, get_condition};
use nimbus_api::constants::*;
use nimbus_api::serving::RevisionStatus;
use nimbus_api::{Kind, Object, Revision};
use nimbus_runtime::{RevisionKey, RevisionPhase, RevisionRuntimeStatus};

use crate::instance::instance_spec;

use crate::configuration::{generation_of, revisions_of};
use crate::context::Context;
use crate::error::ControllerError;
use crate::status::{cond, label, set_all};

pub(crate) async fn reconcile(ctx: &Context, rev: Revision) -> Result<(), ControllerError> {
    let key = RevisionKey::new(rev.namespace(), rev.name());
    let class = runtime_class(&rev);
    let reachable = is_reachable(ctx, &rev).await?;
    let Some(runtime) = ctx.runtimes.get(&class) else {
        let msg = format!(
            "runtimeClassName \"{class}\" is not available in this Nimbus; available: {}",
            available(ctx)
        );
        let c = vec![
            cond(
                "ResourcesAvailable",
                ConditionStatus::False,
                "RuntimeUnavailable",
                &msg,
            ),
            cond("Ready", ConditionStatus::False, "RuntimeUnavailable", &msg),
        ];
        return write_status(ctx, rev, c, None, 0).await;
    };
    let cc = rev.spec.container_concurrency.unwrap_or(0);
    let scaling = ScalingSpec::from_annotations(
        rev.metadata.annotations.as_ref(),
        cc,
        "metadata.annotations",
    )
    .unwrap_or_default();
    ctx.scaler
        .register(
            instance_spec(&rev, &class),
            scaling,
            runtime.clone(),
            reachable,
        )
        .await;
    let desired = ctx.scaler.desired(&key).unwrap_or(0);
    let observed = runtime.status(&key);
    let conditions = conditions_from(observed.as_ref(), desired, &rev);
    write_status(ctx, rev, conditions, observed, desired).await
}

/// The revision is gone: stop its instances everywhere.
pub(crate) async fn cleanup(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(), ControllerError> {
    let key = RevisionKey::new(namespace, name);
    ctx.scaler.unregister(&key);
    for runtime in ctx.runtimes.values() {
        runtime.remove(&key).await;
    }
    Ok(())
}

fn available(ctx: &Context) -> String {
    let mut names: Vec<&str> = ctx.runtimes.keys().map(String::as_str).collect();
    names.sort();
    names.join(", ")
}

/// `runtimeClassName`, defaulting to OCI (an image) as Knative would.
pub(crate) fn runtime_class(rev: &Revision) -> String {
    rev.spec
        .runtime_class_name
        .clone()
        .unwrap_or_else(|| RUNTIME_OCI.to_string())
}

/// Whether the revision can receive traffic: a route sends it some (or tags it), or it is its
/// configuration's latest (which a `latestRevision` route will pick once it is ready).
async fn is_reachable(ctx: &Context, rev: &Revision) -> Result<bool, ControllerError> {
    if let Some(cfg) = label(&rev.metadata, LABEL_CONFIGURATION) {
        let revisions = revisions_of(ctx, rev.namespace(), cfg).await?;
        let latest = revisions.iter().map(generation_of).max();
        if latest == Some(generation_of(rev)) {
            return Ok(true);
        }
    }
    for route in ctx
        .resources
        .list(Kind::Route, Some(rev.namespace()))
        .await?
    {
        let Object::Route(route) = route else {
            continue;
        };
        let routed = route.status.iter().flat_map(|s| &s.traffic).any(|t| {
            t.revision_name.as_deref() == Some(rev.name())
                && (t.percent.unwrap_or(0) > 0 || t.tag.is_some())
        });
        if routed {
            return Ok(true);
        }
    }
    Ok(false)
}

fn conditions_from(
    observed: Option<&RevisionRuntimeStatus>,
    desired: u32,
    rev: &Revision,
) -> Vec<nimbus_api::Condition> {
    use ConditionStatus::{False, True, Unknown};
    let active = if desired == 0 {
        cond(
            "Active",
            False,
            "NoTraffic",
            "The target is not receiving traffic.",
        )
    } else {
        match observed {
            Some(s) if s.ready > 0 => cond("Active", True, "", ""),
            _ => cond("Active", Unknown, "Activating", "Instances are starting."),
        }
    };
    let health = match observed.map(|s| &s.phase) {
        Some(RevisionPhase::Ready) => {
            vec![
                cond("ResourcesAvailable", True, "", ""),
                cond("ContainerHealthy", True, "", ""),
                cond("Ready", True, "", ""),
            ]
        }
        Some(RevisionPhase::Failed { reason, message }) => vec![
            cond("ContainerHealthy", False, reason, message),
            cond("Ready", False, reason, message),
        ],
        Some(RevisionPhase::Starting) if !previously_ready(rev) => vec![
            cond("ResourcesAvailable", Unknown, "Deploying", ""),
            cond("ContainerHealthy", Unknown, "Deploying", ""),
            cond("Ready", Unknown, "Deploying", ""),
        ],
        // Not running here (scaled to zero, or not started since a restart): keep what we knew.
        _ if previously_ready(rev) || has_ready(rev) => vec![],
        _ => vec![cond("Ready", Unknown, "Deploying", "")],
    };
    let mut out = health;
    out.push(active);
    out
}

fn has_ready(rev: &Revision) -> bool {
    rev.status
        .as_ref()
        .is_some_and(|s| get_condition(&s.conditions, "Ready").is_some())
}

fn previously_ready(rev: &Revision) -> bool {
    rev.status
        .as_ref()
        .and_then(|s| get_condition(&s.conditions, "Ready"))
        .is_some_and(|c| c.status == ConditionStatus::True)
}

async fn write_status(
    ctx: &Context,
    mut rev: Revision,
    conditions: Vec<nimbus_api::Condition>,
    observed: Option<RevisionRuntimeStatus>,
    desired: u32,
) -> Result<(), ControllerError> {
    let mut status: RevisionStatus = rev.status.clone().unwrap_or_default();
    status.observed_generation = Some(rev.generation());
    status.desired_replicas = Some(desired as i32);
    status.actual_replicas = Some(observed.map_or(0, |o| o.ready) as i32);
    set_all(&mut status.conditions, conditions, &ctx.now());
    if rev.status.as_ref() == Some(&status) {
        return Ok(());
    }
    rev.status = Some(status);
    rev.metadata.resource_version = None;
    ctx.resources.update_status(Object::Revision(rev)).await?;
    Ok(())
}
