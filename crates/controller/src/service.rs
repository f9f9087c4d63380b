//! Service → one Configuration and one Route of the same name; status aggregated from both.

use nimbus_api::conditions::ConditionStatus;
use nimbus_api::constants::LABEL_SERVICE;
use nimbus_api::serving::{ConfigurationSpec, RouteSpec, ServiceStatus};
use nimbus_api::{Configuration, Kind, Object, ObjectMeta, Route, Service, TrafficTarget};

use crate::context::Context;
use crate::error::ControllerError;
use crate::status::{child_annotations, child_labels, cond, label, owner_ref, ready_of, set_all};

pub(crate) async fn reconcile(ctx: &Context, svc: Service) -> Result<(), ControllerError> {
    let cfg = ensure_child(
        ctx,
        &svc,
        Object::Configuration(desired_configuration(&svc)),
    )
    .await?;
    let route = ensure_child(ctx, &svc, Object::Route(desired_route(&svc))).await?;
    let mut status = svc.status.clone().unwrap_or_default();
    let conditions = match (cfg, route) {
        (Ok(Object::Configuration(cfg)), Ok(Object::Route(route))) => {
            aggregate(&mut status, &cfg, &route)
        }
        (Err(msg), _) | (_, Err(msg)) => {
            vec![cond("Ready", ConditionStatus::False, "NotOwned", &msg)]
        }
        _ => vec![],
    };
    status.observed_generation = Some(svc.generation());
    set_all(&mut status.conditions, conditions, &ctx.now());
    write_status(ctx, svc, status).await
}

/// Delete the Service's Configuration and Route (their own cleanup removes revisions/ingress).
pub(crate) async fn cleanup(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(), ControllerError> {
    for kind in [Kind::Configuration, Kind::Route] {
        if let Some(child) = ctx.resources.get(kind, namespace, name).await?
            && label(child.metadata(), LABEL_SERVICE) == Some(name)
        {
            ctx.resources.delete(kind, namespace, name).await?;
        }
    }
    Ok(())
}

fn child_meta(svc: &Service) -> ObjectMeta {
    ObjectMeta {
        name: svc.metadata.name.clone(),
        namespace: Some(svc.namespace().to_string()),
        labels: child_labels(&svc.metadata, &[(LABEL_SERVICE, svc.name())]),
        annotations: child_annotations(&svc.metadata),
        owner_references: Some(vec![owner_ref(Service::KIND, &svc.metadata)]),
        ..Default::default()
    }
}

fn desired_configuration(svc: &Service) -> Configuration {
    Configuration {
        metadata: child_meta(svc),
        spec: ConfigurationSpec {
            template: svc.spec.template.clone(),
        },
        ..Default::default()
    }
}

fn desired_route(svc: &Service) -> Route {
    let traffic = svc
        .spec
        .traffic
        .iter()
        .map(|t| match t.latest_revision {
            Some(true) => TrafficTarget {
                configuration_name: Some(svc.name().to_string()),
                ..t.clone()
            },
            _ => t.clone(),
        })
        .collect();
    Route {
        metadata: child_meta(svc),
        spec: RouteSpec { traffic },
        ..Default::default()
    }
}

/// Create or update a child so its labels, annotations and spec match. `Err(message)` when an
/// object of that name exists but belongs to someone else.
async fn ensure_child(
    ctx: &Context,
    svc: &Service,
    desired: Object,
) -> Result<Result<Object, String>, ControllerError> {
    let (kind, ns, name) = (desired.kind(), svc.namespace(), svc.name());
    let Some(mut existing) = ctx.resources.get(kind, ns, name).await? else {
        return Ok(Ok(ctx.resources.create(desired).await?));
    };
    if label(existing.metadata(), LABEL_SERVICE) != Some(name) {
        return Ok(Err(format!(
            "there is an existing {kind} \"{name}\" that this Service does not own"
        )));
    }
    let same_spec = existing.to_json().get("spec") == desired.to_json().get("spec");
    let (m, d) = (existing.metadata(), desired.metadata());
    if same_spec
        && m.labels == d.labels
        && m.annotations == d.annotations
        && m.owner_references == d.owner_references
    {
        return Ok(Ok(existing));
    }
    let mut updated = desired;
    let meta = updated.metadata_mut();
    meta.resource_version = None;
    meta.uid = existing.metadata_mut().uid.take();
    Ok(Ok(ctx.resources.update(updated).await?))
}

/// Fill the Service status from its children; returns the conditions to set.
fn aggregate(
    status: &mut ServiceStatus,
    cfg: &Configuration,
    route: &Route,
) -> Vec<nimbus_api::Condition> {
    let cfg_status = cfg.status.clone().unwrap_or_default();
    let route_status = route.status.clone().unwrap_or_default();
    status.latest_created_revision_name = cfg_status.latest_created_revision_name.clone();
    status.latest_ready_revision_name = cfg_status.latest_ready_revision_name.clone();
    status.url = route_status.url.clone();
    status.address = route_status.address.clone();
    status.traffic = route_status.traffic.clone();

    let cfg_current = cfg_status.observed_generation == Some(cfg.generation());
    let route_current = route_status.observed_generation == Some(route.generation());
    let (cs, cr, cm) = if cfg_current {
        ready_of(&cfg_status.conditions)
    } else {
        out_of_date("Configuration")
    };
    let (rs, rr, rm) = if route_current {
        ready_of(&route_status.conditions)
    } else {
        out_of_date("Route")
    };
    let ready = match (cs, rs) {
        (ConditionStatus::False, _) => cond("Ready", cs, &cr, &cm),
        (_, ConditionStatus::False) => cond("Ready", rs, &rr, &rm),
        (ConditionStatus::True, ConditionStatus::True) => {
            cond("Ready", ConditionStatus::True, "", "")
        }
        (ConditionStatus::Unknown, _) => cond("Ready", cs, &cr, &cm),
        _ => cond("Ready", rs, &rr, &rm),
    };
    vec![
        cond("ConfigurationsReady", cs, &cr, &cm),
        cond("RoutesReady", rs, &rr, &rm),
        ready,
    ]
}

fn out_of_date(kind: &str) -> (ConditionStatus, String, String) {
    (
        ConditionStatus::Unknown,
        "OutOfDate".into(),
        format!("The {kind} is still working to reflect the latest desired specification."),
    )
}

async fn write_status(
    ctx: &Context,
    mut svc: Service,
    status: ServiceStatus,
) -> Result<(), ControllerError> {
    if svc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    svc.status = Some(status);
    svc.metadata.resource_version = None;
    ctx.resources.update_status(Object::Service(svc)).await?;
    Ok(())
}
