//! PodAutoscaler → the scaler's registration of its revision, and the scaler's decisions back
//! into the PodAutoscaler's status (Knative's KPA reconciler). The status is what lets scaling
//! resume after a restart: a revision registers again at its recorded `desiredScale`.

use nimbus_api::autoscaling::ScalingSpec;
use nimbus_api::conditions::{ConditionStatus, get_condition};
use nimbus_api::podautoscaler::PodAutoscalerStatus;
use nimbus_api::runtime::runtime_choice;
use nimbus_api::{Kind, Object, PodAutoscaler};
use nimbus_runtime::RevisionKey;

use crate::context::Context;
use crate::error::ControllerError;
use crate::instance::instance_spec;
use crate::manager::ObjectKey;
use crate::resources::{Action, update_status};
use crate::revision::runtime_for;
use crate::status::{cond, set_all};

pub(crate) async fn reconcile(
    ctx: &Context,
    key: &ObjectKey,
    obj: Option<Object>,
) -> Result<Action, ControllerError> {
    let revision = RevisionKey::new(&key.namespace, &key.name);
    let Some(Object::PodAutoscaler(pa)) = obj.filter(|o| !o.is_deleting()) else {
        ctx.scaler.unregister(&revision);
        return Ok(Action::await_change());
    };
    let target = &pa.spec.scale_target_ref.name;
    let rev = match ctx
        .resources
        .get(Kind::Revision, pa.namespace(), target)
        .await?
    {
        Some(Object::Revision(rev)) if rev.metadata.deletion_timestamp.is_none() => rev,
        _ => {
            ctx.scaler.unregister(&revision);
            return Ok(Action::await_change());
        }
    };
    let Ok(runtime) = runtime_for(ctx, &rev) else {
        ctx.scaler.unregister(&revision); // the Revision reports why it cannot run
        return Ok(Action::await_change());
    };
    let scaling = ScalingSpec::from_annotations(
        pa.metadata.annotations.as_ref(),
        pa.spec.container_concurrency.unwrap_or(0),
        "metadata.annotations",
    )
    .unwrap_or_default();
    let backend = runtime_choice(rev.metadata.annotations.as_ref(), &rev.spec).backend;
    ctx.scaler
        .register(
            instance_spec(&rev, backend.as_str()),
            scaling,
            runtime.clone(),
            !pa.is_unreachable(),
            pa.desired_scale(),
        )
        .await;
    let desired = ctx.scaler.desired(&revision).unwrap_or(0);
    let ready = runtime.status(&revision).map_or(0, |s| s.ready);
    write_status(ctx, &pa, desired, ready).await?;
    Ok(Action::await_change())
}

/// Knative's PodAutoscaler conditions: `Active` (an instance is ready; `Queued` while the
/// first ones start; `NoTraffic` at zero), `ScaleTargetInitialized` (once an instance was
/// ready), `Ready` (= `Active`).
fn conditions(pa: &PodAutoscaler, desired: u32, ready: u32) -> Vec<nimbus_api::Condition> {
    use ConditionStatus::{False, True, Unknown};
    let active = match (desired, ready) {
        (_, r) if r > 0 => cond("Active", True, "", ""),
        (0, _) => cond(
            "Active",
            False,
            "NoTraffic",
            "The target is not receiving traffic.",
        ),
        _ => cond(
            "Active",
            Unknown,
            "Queued",
            "Requests to the target are being buffered as resources are provisioned.",
        ),
    };
    let was_initialized = pa
        .status
        .as_ref()
        .and_then(|s| get_condition(&s.conditions, "ScaleTargetInitialized"))
        .is_some_and(|c| c.status == True);
    let initialized = match was_initialized || ready > 0 {
        true => cond("ScaleTargetInitialized", True, "", ""),
        false => cond(
            "ScaleTargetInitialized",
            Unknown,
            "Queued",
            "The target has not been ready yet.",
        ),
    };
    let ready_cond = nimbus_api::Condition {
        type_: "Ready".into(),
        ..active.clone()
    };
    vec![active, initialized, ready_cond]
}

async fn write_status(
    ctx: &Context,
    pa: &PodAutoscaler,
    desired: u32,
    ready: u32,
) -> Result<(), ControllerError> {
    let mut status: PodAutoscalerStatus = pa.status.clone().unwrap_or_default();
    status.observed_generation = Some(pa.metadata.generation.unwrap_or(0));
    status.desired_scale = Some(i32::try_from(desired).unwrap_or(i32::MAX));
    status.actual_scale = Some(i32::try_from(ready).unwrap_or(i32::MAX));
    set_all(
        &mut status.conditions,
        conditions(pa, desired, ready),
        &ctx.now(),
    );
    if pa.status.as_ref() == Some(&status) {
        return Ok(());
    }
    update_status(
        &*ctx.resources,
        Kind::PodAutoscaler,
        pa.namespace(),
        pa.name(),
        |o| {
            if let Object::PodAutoscaler(p) = o {
                p.status = Some(status.clone());
            }
        },
    )
    .await?;
    Ok(())
}
