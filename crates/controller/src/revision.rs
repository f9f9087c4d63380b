//! Revision → its PodAutoscaler (what to scale and whether a route reaches it) and its
//! instances' lifecycle in a runtime; status from what the runtime and the autoscaler report.
//!
//! A Revision carries the finalizer [`FINALIZER_INSTANCES`] while instances may run. Deleting it
//! starts stopping them in the background (draining can take the instances' grace periods,
//! which must not hold a reconcile worker); the finalizer is removed when the runtime is done,
//! so a Revision never disappears while its processes still run, even across a restart.

use nimbus_api::conditions::{ConditionStatus, get_condition};
use nimbus_api::constants::*;
use nimbus_api::podautoscaler::{PodAutoscalerSpec, REACHABLE, ScaleTargetRef, UNREACHABLE};
use nimbus_api::runtime::runtime_choice;
use nimbus_api::serving::RevisionStatus;
use nimbus_api::{Kind, Object, ObjectMeta, PodAutoscaler, Revision};
use nimbus_runtime::{RevisionKey, RevisionPhase, RevisionRuntimeStatus, Runtime};
use std::sync::Arc;

use crate::context::Context;
use crate::error::ControllerError;
use crate::reconcile_events;
use crate::removals::Removal;
use crate::resources::{Action, update_meta, update_status};
use crate::status::{cond, label, owner_ref, set_all};

pub(crate) async fn reconcile(ctx: &Context, rev: Revision) -> Result<Action, ControllerError> {
    if rev.metadata.deletion_timestamp.is_some() {
        return finalize(ctx, &rev).await;
    }
    if !Object::Revision(rev.clone()).has_finalizer(FINALIZER_INSTANCES) {
        add_finalizer(ctx, &rev).await?;
    }
    let key = RevisionKey::new(rev.namespace(), rev.name());
    let runtime = match runtime_for(ctx, &rev) {
        Ok(runtime) => runtime,
        Err((reason, message)) => {
            let c = vec![
                cond(
                    "ResourcesAvailable",
                    ConditionStatus::False,
                    reason,
                    &message,
                ),
                cond("Ready", ConditionStatus::False, reason, &message),
            ];
            write_status(ctx, &rev, c, None, 0).await?;
            return Ok(Action::await_change());
        }
    };
    let pa = apply_autoscaler(ctx, &rev).await?;
    let observed = runtime.status(&key);
    let desired = ctx
        .scaler
        .desired(&key)
        .or_else(|| pa.desired_scale())
        .unwrap_or(0);
    let conditions = conditions_from(observed.as_ref(), desired, &rev);
    write_status(ctx, &rev, conditions, observed, desired).await?;
    Ok(Action::await_change())
}

/// The revision is gone from the store: make sure nothing of it is left running (its
/// finalizer normally saw to that; this covers a store edited behind Nimbus's back).
pub(crate) async fn forget(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Action, ControllerError> {
    let key = RevisionKey::new(namespace, name);
    ctx.scaler.unregister(&key);
    if ctx.runtimes.values().any(|r| r.status(&key).is_some()) {
        ctx.removals.start(key.clone(), runtimes(ctx));
    } else {
        ctx.removals.finish(&key);
    }
    Ok(Action::await_change())
}

/// Deletion requested: stop the instances in the background; drop the finalizer once done.
async fn finalize(ctx: &Context, rev: &Revision) -> Result<Action, ControllerError> {
    let key = RevisionKey::new(rev.namespace(), rev.name());
    ctx.scaler.unregister(&key);
    match ctx.removals.status(&key) {
        Removal::NotStarted => ctx.removals.start(key, runtimes(ctx)),
        Removal::Running => {}
        Removal::Done => {
            update_meta(
                &*ctx.resources,
                Kind::Revision,
                rev.namespace(),
                rev.name(),
                |o| {
                    let f = &mut o.metadata_mut().finalizers;
                    if let Some(list) = f {
                        list.retain(|x| x != FINALIZER_INSTANCES);
                    }
                    if f.as_ref().is_some_and(Vec::is_empty) {
                        *f = None;
                    }
                },
            )
            .await?;
            ctx.removals.finish(&key);
        }
    }
    Ok(Action::await_change())
}

fn runtimes(ctx: &Context) -> Vec<Arc<dyn Runtime>> {
    ctx.runtimes.values().cloned().collect()
}

async fn add_finalizer(ctx: &Context, rev: &Revision) -> Result<(), ControllerError> {
    update_meta(
        &*ctx.resources,
        Kind::Revision,
        rev.namespace(),
        rev.name(),
        |o| {
            if o.is_deleting() || o.has_finalizer(FINALIZER_INSTANCES) {
                return;
            }
            o.metadata_mut()
                .finalizers
                .get_or_insert_default()
                .push(FINALIZER_INSTANCES.to_string());
        },
    )
    .await?;
    Ok(())
}

/// The runtime of the revision's backend; `Err((reason, message))` when it cannot run here.
pub(crate) fn runtime_for(
    ctx: &Context,
    rev: &Revision,
) -> Result<Arc<dyn Runtime>, (&'static str, String)> {
    let choice = runtime_choice(rev.metadata.annotations.as_ref(), &rev.spec);
    if let Some(class) = choice.runtime_class {
        return Err((
            "RuntimeClassUnavailable",
            format!(
                "RuntimeClass \"{class}\" is not available: Nimbus runs revisions itself here \
                 (embedded mode), and RuntimeClasses are the kubelet's; choose a Nimbus backend \
                 with the annotation {ANNOTATION_RUNTIME} (process, oci or wasm), or run in \
                 Kubernetes mode"
            ),
        ));
    }
    ctx.runtimes.get(&choice.backend).cloned().ok_or_else(|| {
        let mut names: Vec<&str> = ctx.runtimes.keys().map(|b| b.as_str()).collect();
        names.sort();
        (
            "RuntimeUnavailable",
            format!(
                "the {} backend is not available in this Nimbus; available: {}",
                choice.backend,
                names.join(", ")
            ),
        )
    })
}

/// Knative's PodAutoscaler for a revision: same name, the revision's labels and annotations
/// (the autoscaling settings), reachability from the revision's routing state.
async fn apply_autoscaler(ctx: &Context, rev: &Revision) -> Result<PodAutoscaler, ControllerError> {
    let mut labels = rev.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_ROUTING_STATE);
    labels.insert(LABEL_REVISION.into(), rev.name().into());
    if let Some(uid) = &rev.metadata.uid {
        labels.insert(LABEL_REVISION_UID.into(), uid.clone());
    }
    let mut annotations = rev.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(ANNOTATION_ROUTES);
    annotations.remove(ANNOTATION_ROUTING_STATE_MODIFIED);
    let reachability = match label(&rev.metadata, LABEL_ROUTING_STATE) {
        Some(ROUTING_STATE_ACTIVE) => Some(REACHABLE.to_string()),
        Some(ROUTING_STATE_RESERVE) => Some(UNREACHABLE.to_string()),
        _ => None,
    };
    let protocol = rev
        .spec
        .containers
        .first()
        .and_then(|c| c.ports.as_ref()?.first()?.name.clone());
    let mut pa = Object::PodAutoscaler(PodAutoscaler {
        metadata: ObjectMeta {
            name: rev.metadata.name.clone(),
            namespace: Some(rev.namespace().to_string()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner_ref(Kind::Revision, &rev.metadata)]),
            ..Default::default()
        },
        spec: PodAutoscalerSpec {
            scale_target_ref: ScaleTargetRef {
                api_version: Kind::Revision.api_version().into(),
                kind: Kind::Revision.as_str().into(),
                name: rev.name().into(),
            },
            container_concurrency: rev.spec.container_concurrency,
            reachability,
            protocol_type: Some(
                protocol
                    .filter(|p| p == "h2c")
                    .unwrap_or_else(|| "http1".into()),
            ),
        },
        ..Default::default()
    });
    pa.set_type_meta();
    match ctx.resources.apply(pa, CONTROLLER_MANAGER).await? {
        Object::PodAutoscaler(pa) => Ok(pa),
        _ => unreachable!("applied a PodAutoscaler"),
    }
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
    rev: &Revision,
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
    update_status(
        &*ctx.resources,
        Kind::Revision,
        rev.namespace(),
        rev.name(),
        |o| {
            if let Object::Revision(r) = o {
                r.status = Some(status.clone());
            }
        },
    )
    .await?;
    let note = reconcile_events::revision_ready(rev, rev.status.as_ref(), &status);
    ctx.record(note);
    Ok(())
}
