//! Service → one Configuration and one Route of the same name, written by server-side apply
//! (so labels and annotations the Service stops carrying leave its children, and metadata
//! others put on them stays); status aggregated from both, as Knative's service reconciler
//! does. A child of that name that this Service does not control is reported, never taken over.

use nimbus_api::conditions::ConditionStatus;
use nimbus_api::constants::{CONTROLLER_MANAGER, LABEL_SERVICE};
use nimbus_api::serving::{ConfigurationSpec, RouteSpec, ServiceStatus};
use nimbus_api::{Configuration, Kind, Object, ObjectMeta, Route, Service, TrafficTarget};

use crate::context::Context;
use crate::error::ControllerError;
use crate::resources::{Action, update_status};
use crate::status::{
    child_annotations, child_labels, cond, is_controlled_by, owner_ref, ready_of, set_all,
};

pub(crate) async fn reconcile(ctx: &Context, svc: Service) -> Result<Action, ControllerError> {
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut status = svc.status.clone().unwrap_or_default();
    let conditions = observe(ctx, &svc, &mut status).await?;
    status.observed_generation = Some(svc.generation());
    let now = ctx.now();
    set_all(&mut status.conditions, conditions, &now);
    let ready = ready_condition(&status);
    set_all(&mut status.conditions, vec![ready], &now);
    write_status(ctx, &svc, status).await?;
    Ok(Action::await_change())
}

/// Make the children match and return the conditions they imply.
async fn observe(
    ctx: &Context,
    svc: &Service,
    status: &mut ServiceStatus,
) -> Result<Vec<nimbus_api::Condition>, ControllerError> {
    let cfg =
        match ensure_child(ctx, svc, Object::Configuration(desired_configuration(svc))).await? {
            Ok(Object::Configuration(cfg)) => cfg,
            Ok(_) => return Ok(vec![]),
            Err(msg) => {
                return Ok(vec![cond(
                    "ConfigurationsReady",
                    ConditionStatus::False,
                    "NotOwned",
                    &msg,
                )]);
            }
        };
    let mut conditions = vec![configuration_condition(&cfg, status)];
    // With a user-chosen revision name, the Route must not move before the Configuration has
    // settled which revision that name is (Knative serializes the two the same way).
    if cfg.spec.template.metadata.name.is_some() && !is_current(&cfg) {
        return Ok(conditions);
    }
    let route = match ensure_child(ctx, svc, Object::Route(desired_route(svc))).await? {
        Ok(Object::Route(route)) => route,
        Ok(_) => return Ok(conditions),
        Err(msg) => {
            conditions.push(cond(
                "RoutesReady",
                ConditionStatus::False,
                "NotOwned",
                &msg,
            ));
            return Ok(conditions);
        }
    };
    conditions.push(route_condition(&route, &cfg, status));
    Ok(conditions)
}

fn is_current(cfg: &Configuration) -> bool {
    cfg.status.as_ref().and_then(|s| s.observed_generation) == Some(cfg.generation())
}

/// ConfigurationsReady, and the revision names, from the Configuration.
fn configuration_condition(
    cfg: &Configuration,
    status: &mut ServiceStatus,
) -> nimbus_api::Condition {
    if !is_current(cfg) {
        return out_of_date("ConfigurationsReady", "Configuration");
    }
    let cs = cfg.status.clone().unwrap_or_default();
    status.latest_created_revision_name = cs.latest_created_revision_name.clone();
    status.latest_ready_revision_name = cs.latest_ready_revision_name.clone();
    let (s, reason, message) = ready_of(&cs.conditions);
    cond("ConfigurationsReady", s, &reason, &message)
}

/// RoutesReady, and the URL and traffic, from the Route.
fn route_condition(
    route: &Route,
    cfg: &Configuration,
    status: &mut ServiceStatus,
) -> nimbus_api::Condition {
    let current =
        route.status.as_ref().and_then(|s| s.observed_generation) == Some(route.generation());
    if !current {
        return out_of_date("RoutesReady", "Route");
    }
    let rs = route.status.clone().unwrap_or_default();
    status.url = rs.url.clone();
    status.address = rs.address.clone();
    status.traffic = rs.traffic.clone();
    let (s, reason, message) = ready_of(&rs.conditions);
    if s == ConditionStatus::True && !traffic_migrated(route, cfg) {
        return cond(
            "RoutesReady",
            ConditionStatus::Unknown,
            "TrafficNotMigrated",
            "Traffic is not yet migrated to the latest revision.",
        );
    }
    cond("RoutesReady", s, &reason, &message)
}

/// Knative's `checkRoutesNotReady`: the Route serves what the Service asks, with
/// `latestRevision` targets at the Configuration's latest ready revision.
fn traffic_migrated(route: &Route, cfg: &Configuration) -> bool {
    let got = route
        .status
        .as_ref()
        .map(|s| &s.traffic[..])
        .unwrap_or_default();
    if got.len() != route.spec.traffic.len() {
        return false;
    }
    let latest_ready = cfg
        .status
        .as_ref()
        .and_then(|s| s.latest_ready_revision_name.clone());
    route.spec.traffic.iter().zip(got).all(|(want, got)| {
        let revision = match &want.configuration_name {
            Some(c) if c == cfg.name() => latest_ready.clone(),
            _ => want.revision_name.clone(),
        };
        revision == got.revision_name && want.percent == got.percent && want.tag == got.tag
    })
}

fn ready_condition(status: &ServiceStatus) -> nimbus_api::Condition {
    let get = |t: &str| crate::status::condition_of(&status.conditions, t);
    let (cs, cr, cm) = get("ConfigurationsReady");
    let (rs, rr, rm) = get("RoutesReady");
    match (cs, rs) {
        (ConditionStatus::False, _) => cond("Ready", cs, &cr, &cm),
        (_, ConditionStatus::False) => cond("Ready", rs, &rr, &rm),
        (ConditionStatus::True, ConditionStatus::True) => {
            cond("Ready", ConditionStatus::True, "", "")
        }
        (ConditionStatus::Unknown, _) => cond("Ready", cs, &cr, &cm),
        _ => cond("Ready", rs, &rr, &rm),
    }
}

fn out_of_date(type_: &str, kind: &str) -> nimbus_api::Condition {
    cond(
        type_,
        ConditionStatus::Unknown,
        "OutOfDate",
        &format!("The {kind} is still working to reflect the latest desired specification."),
    )
}

fn child_meta(svc: &Service) -> ObjectMeta {
    ObjectMeta {
        name: svc.metadata.name.clone(),
        namespace: Some(svc.namespace().to_string()),
        labels: child_labels(&svc.metadata, &[(LABEL_SERVICE, svc.name())]),
        annotations: child_annotations(&svc.metadata),
        owner_references: Some(vec![owner_ref(Kind::Service, &svc.metadata)]),
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

/// Apply a child; `Err(message)` when an object of that name exists that this Service does
/// not control.
async fn ensure_child(
    ctx: &Context,
    svc: &Service,
    mut desired: Object,
) -> Result<Result<Object, String>, ControllerError> {
    let (kind, ns, name) = (desired.kind(), svc.namespace(), svc.name());
    if let Some(existing) = ctx.resources.get(kind, ns, name).await?
        && !is_controlled_by(existing.metadata(), &svc.metadata)
    {
        return Ok(Err(format!(
            "There is an existing {kind} \"{name}\" that we do not own."
        )));
    }
    desired.set_type_meta();
    Ok(Ok(ctx.resources.apply(desired, CONTROLLER_MANAGER).await?))
}

async fn write_status(
    ctx: &Context,
    svc: &Service,
    status: ServiceStatus,
) -> Result<(), ControllerError> {
    if svc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    update_status(
        &*ctx.resources,
        Kind::Service,
        svc.namespace(),
        svc.name(),
        |o| {
            if let Object::Service(s) = o {
                s.status = Some(status.clone());
            }
        },
    )
    .await?;
    Ok(())
}
