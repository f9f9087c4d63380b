//! Route → resolved traffic (revision names, percents, tag URLs) in status, routing-state labels
//! on what it references, and an Ingress object for the data path. While a target is not
//! ready the Ingress keeps serving the previous split, as in Knative; a Route whose Ingress
//! does not exist yet gets one at once, so requests get a 503 that explains what is not ready
//! rather than a 404.
//!
//! A Route carries the finalizer `routes.serving.knative.dev` (as Knative's does) so that
//! deleting it first takes its name off the revisions it marked active.

use std::collections::{BTreeMap, HashSet};

use nimbus_api::conditions::{ConditionStatus, get_condition, is_ready};
use nimbus_api::constants::{CONTROLLER_MANAGER, LABEL_ROUTE, LABEL_SERVICE, LABEL_VISIBILITY};
use nimbus_api::kingress::{
    HttpIngressPath, HttpIngressRuleValue, IngressBackendSplit, IngressRuleSpec, IngressSpec,
    VISIBILITY_CLUSTER_LOCAL, VISIBILITY_EXTERNAL,
};
use nimbus_api::names::{route_host, tag_host};
use nimbus_api::serving::{Addressable, RouteStatus};
use nimbus_api::{
    Configuration, KIngress, Kind, Object, ObjectMeta, Revision, Route, TrafficTarget,
};

use crate::context::Context;
use crate::error::ControllerError;
use crate::labeler;
use crate::manager::ObjectKey;
use crate::reconcile_events;
use crate::resources::{Action, update_meta, update_status};
use crate::status::{cond, label, owner_ref, set_all};

/// Knative's finalizer on Routes.
pub const FINALIZER_ROUTE: &str = "routes.serving.knative.dev";

/// One traffic entry after resolution.
struct Resolved {
    target: TrafficTarget,
    revision: Option<Revision>,
    /// Why this entry is not (yet) servable.
    problem: Option<(ConditionStatus, String, String)>,
}

pub(crate) async fn reconcile(ctx: &Context, route: Route) -> Result<Action, ControllerError> {
    let key = ObjectKey::new(Kind::Route, route.namespace(), route.name());
    let before = ctx.tracker.reads(&key);
    if route.metadata.deletion_timestamp.is_some() {
        labeler::clear(ctx, &route, before.as_deref()).await?;
        ctx.tracker.forget(&key);
        set_finalizer(ctx, &route, false).await?;
        return Ok(Action::await_change());
    }
    if !has_finalizer(&route) {
        set_finalizer(ctx, &route, true).await?;
    }
    let ns = route.namespace().to_string();
    let mut resolved = Vec::new();
    let mut reads = Vec::new();
    for t in &route.spec.traffic {
        resolved.push(resolve(ctx, &ns, t, &mut reads).await?);
    }
    ctx.tracker.set(&key, reads);
    sync_labels(ctx, &route, &resolved, before.as_deref()).await?;
    let problem = resolved.iter().find_map(|r| r.problem.clone());
    let existing = match ctx.resources.get(Kind::Ingress, &ns, route.name()).await? {
        Some(Object::Ingress(i)) => Some(i),
        _ => None,
    };
    let ingress = match (&problem, existing) {
        (Some(_), Some(existing)) => Some(existing),
        (_, existing) => match desired_ingress(ctx, &route, &resolved) {
            Some(desired) => Some(apply_ingress(ctx, desired).await?),
            None => existing,
        },
    };
    write_status(ctx, &route, &resolved, problem, ingress.as_ref()).await?;
    Ok(Action::await_change())
}

fn has_finalizer(route: &Route) -> bool {
    route
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER_ROUTE)
}

async fn set_finalizer(ctx: &Context, route: &Route, on: bool) -> Result<(), ControllerError> {
    update_meta(
        &*ctx.resources,
        Kind::Route,
        route.namespace(),
        route.name(),
        |o| {
            let meta = o.metadata_mut();
            let list = meta.finalizers.get_or_insert_default();
            list.retain(|f| f != FINALIZER_ROUTE);
            if on && meta.deletion_timestamp.is_none() {
                list.push(FINALIZER_ROUTE.to_string());
            }
            if list.is_empty() {
                meta.finalizers = None;
            }
        },
    )
    .await?;
    Ok(())
}

/// Mark what the traffic references (revisions and the configurations named) as routed.
async fn sync_labels(
    ctx: &Context,
    route: &Route,
    resolved: &[Resolved],
    before: Option<&[ObjectKey]>,
) -> Result<(), ControllerError> {
    let revisions: HashSet<String> = resolved
        .iter()
        .filter_map(|r| r.revision.as_ref().map(|rev| rev.name().to_string()))
        .collect();
    let configurations: HashSet<String> = route
        .spec
        .traffic
        .iter()
        .filter_map(|t| t.configuration_name.clone())
        .collect();
    labeler::sync(ctx, route, &revisions, &configurations, before).await
}

async fn resolve(
    ctx: &Context,
    ns: &str,
    t: &TrafficTarget,
    reads: &mut Vec<ObjectKey>,
) -> Result<Resolved, ControllerError> {
    use ConditionStatus::{False, Unknown};
    let mut out = Resolved {
        target: t.clone(),
        revision: None,
        problem: None,
    };
    let rev_name = match (&t.revision_name, &t.configuration_name) {
        (Some(r), _) => Some(r.clone()),
        (None, Some(c)) => {
            reads.push(ObjectKey::new(Kind::Configuration, ns, c));
            match ctx.resources.get(Kind::Configuration, ns, c).await? {
                Some(Object::Configuration(cfg)) => {
                    latest_for(&cfg, &mut out);
                    cfg.status.as_ref().and_then(|s| {
                        s.latest_ready_revision_name
                            .clone()
                            .or(s.latest_created_revision_name.clone())
                    })
                }
                _ => {
                    out.problem = Some((
                        False,
                        "ConfigurationMissing".into(),
                        format!("Configuration \"{c}\" referenced in traffic not found."),
                    ));
                    None
                }
            }
        }
        (None, None) => None,
    };
    let Some(rev_name) = rev_name else {
        return Ok(out);
    };
    reads.push(ObjectKey::new(Kind::Revision, ns, &rev_name));
    match ctx.resources.get(Kind::Revision, ns, &rev_name).await? {
        Some(Object::Revision(rev)) => {
            let conds = rev
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            if out.problem.is_none() && !is_ready(&conds) {
                let (s, _, msg) = crate::status::ready_of(&conds);
                let s = if s == False { False } else { Unknown };
                let detail = if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                };
                out.problem = Some((
                    s,
                    "RevisionMissing".into(),
                    format!("Revision \"{rev_name}\" is not ready{detail}"),
                ));
            }
            out.revision = Some(rev);
        }
        _ => {
            out.problem = Some((
                False,
                "RevisionMissing".into(),
                format!("Revision \"{rev_name}\" referenced in traffic not found."),
            ));
        }
    }
    Ok(out)
}

/// For `latestRevision` targets: a configuration with no ready revision yet is a problem.
fn latest_for(cfg: &Configuration, out: &mut Resolved) {
    let ready = cfg
        .status
        .as_ref()
        .and_then(|s| s.latest_ready_revision_name.as_ref());
    if ready.is_some() {
        return;
    }
    out.problem = Some((
        ConditionStatus::Unknown,
        "RevisionMissing".into(),
        format!(
            "Configuration \"{}\" does not have any ready Revision.",
            cfg.name()
        ),
    ));
    if let Some(status) = &cfg.status
        && let Some(c) = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == ConditionStatus::False)
    {
        out.problem = Some((
            ConditionStatus::False,
            c.reason.clone().unwrap_or_else(|| "RevisionFailed".into()),
            c.message.clone().unwrap_or_default(),
        ));
    }
}

fn status_target(ctx: &Context, route: &Route, r: &Resolved) -> TrafficTarget {
    let t = &r.target;
    TrafficTarget {
        tag: t.tag.clone(),
        revision_name: r
            .revision
            .as_ref()
            .map(|rev| rev.name().to_string())
            .or(t.revision_name.clone()),
        configuration_name: None,
        latest_revision: Some(t.revision_name.is_none()),
        percent: t.percent,
        url: t.tag.as_ref().map(|tag| {
            ctx.url_for(&tag_host(
                tag,
                route.name(),
                route.namespace(),
                &ctx.config.domain,
            ))
        }),
    }
}

/// The Ingress for the resolved traffic: the route's host splits by percent, each tag's host
/// goes to its revision; `None` when nothing is resolved yet.
fn desired_ingress(ctx: &Context, route: &Route, resolved: &[Resolved]) -> Option<KIngress> {
    let (ns, name, domain) = (route.namespace(), route.name(), &ctx.config.domain);
    let visibility = match label(&route.metadata, LABEL_VISIBILITY) {
        Some("cluster-local") => VISIBILITY_CLUSTER_LOCAL,
        _ => VISIBILITY_EXTERNAL,
    };
    let rule = |hosts: Vec<String>, splits: Vec<IngressBackendSplit>| IngressRuleSpec {
        hosts,
        visibility: Some(visibility.to_string()),
        http: HttpIngressRuleValue {
            paths: vec![HttpIngressPath { splits }],
        },
    };
    let mut main: BTreeMap<String, IngressBackendSplit> = BTreeMap::new();
    let mut rules = Vec::new();
    for r in resolved {
        let Some(rev) = &r.revision else { continue };
        let percent = r.target.percent.unwrap_or(0).clamp(0, 100);
        if percent > 0 {
            main.entry(rev.name().to_string())
                .or_insert_with(|| split(rev, 0))
                .percent += percent;
        }
        if let Some(tag) = &r.target.tag {
            rules.push(rule(
                vec![tag_host(tag, name, ns, domain)],
                vec![split(rev, 100)],
            ));
        }
    }
    if !main.is_empty() {
        rules.insert(
            0,
            rule(
                vec![route_host(name, ns, domain)],
                main.into_values().collect(),
            ),
        );
    }
    if rules.is_empty() {
        return None;
    }
    let mut labels = BTreeMap::from([(LABEL_ROUTE.to_string(), name.to_string())]);
    if let Some(svc) = label(&route.metadata, LABEL_SERVICE) {
        labels.insert(LABEL_SERVICE.to_string(), svc.to_string());
    }
    Some(KIngress {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![owner_ref(Kind::Route, &route.metadata)]),
            ..Default::default()
        },
        spec: IngressSpec { rules },
        ..Default::default()
    })
}

/// A revision's share, with the settings the router enforces for it.
fn split(rev: &Revision, percent: i64) -> IngressBackendSplit {
    IngressBackendSplit {
        service_namespace: rev.namespace().to_string(),
        service_name: rev.name().to_string(),
        percent,
        append_headers: None,
        container_concurrency: rev.spec.container_concurrency,
        timeout_seconds: rev.spec.timeout_seconds,
        response_start_timeout_seconds: rev.spec.response_start_timeout_seconds,
        idle_timeout_seconds: rev.spec.idle_timeout_seconds,
    }
}

async fn apply_ingress(ctx: &Context, ingress: KIngress) -> Result<KIngress, ControllerError> {
    let mut obj = Object::Ingress(ingress);
    obj.set_type_meta();
    match ctx.resources.apply(obj, CONTROLLER_MANAGER).await? {
        Object::Ingress(i) => Ok(i),
        _ => unreachable!("applied an Ingress"),
    }
}

/// `IngressReady` from the Ingress's own status (for its current generation).
fn ingress_condition(ingress: Option<&KIngress>) -> nimbus_api::Condition {
    let Some(ingress) = ingress else {
        return cond(
            "IngressReady",
            ConditionStatus::Unknown,
            "IngressNotConfigured",
            "Ingress has not yet been reconciled.",
        );
    };
    let status = ingress.status.clone().unwrap_or_default();
    let current = status.observed_generation == ingress.metadata.generation;
    match get_condition(&status.conditions, "Ready") {
        Some(c) if current => cond(
            "IngressReady",
            c.status,
            c.reason.as_deref().unwrap_or_default(),
            c.message.as_deref().unwrap_or_default(),
        ),
        _ => cond(
            "IngressReady",
            ConditionStatus::Unknown,
            "IngressNotConfigured",
            "Ingress has not yet been reconciled.",
        ),
    }
}

async fn write_status(
    ctx: &Context,
    route: &Route,
    resolved: &[Resolved],
    problem: Option<(ConditionStatus, String, String)>,
    ingress: Option<&KIngress>,
) -> Result<(), ControllerError> {
    let host = route_host(route.name(), route.namespace(), &ctx.config.domain);
    let mut status: RouteStatus = route.status.clone().unwrap_or_default();
    status.url = Some(ctx.url_for(&host));
    status.address = Some(Addressable {
        url: status.url.clone(),
    });
    if problem.is_none() || status.traffic.is_empty() {
        status.traffic = resolved
            .iter()
            .map(|r| status_target(ctx, route, r))
            .collect();
    }
    status.observed_generation = Some(route.generation());
    let ingress_ready = ingress_condition(ingress);
    let conditions = match problem {
        None => {
            let (s, reason, message) = (
                ingress_ready.status,
                ingress_ready.reason.clone().unwrap_or_default(),
                ingress_ready.message.clone().unwrap_or_default(),
            );
            vec![
                cond("AllTrafficAssigned", ConditionStatus::True, "", ""),
                ingress_ready,
                cond("Ready", s, &reason, &message),
            ]
        }
        Some((s, reason, message)) => vec![
            cond("AllTrafficAssigned", s, &reason, &message),
            ingress_ready,
            cond("Ready", s, &reason, &message),
        ],
    };
    set_all(&mut status.conditions, conditions, &ctx.now());
    if route.status.as_ref() == Some(&status) {
        return Ok(());
    }
    update_status(
        &*ctx.resources,
        Kind::Route,
        route.namespace(),
        route.name(),
        |o| {
            if let Object::Route(r) = o {
                r.status = Some(status.clone());
            }
        },
    )
    .await?;
    let note = reconcile_events::traffic_shifted(route, route.status.as_ref(), &status);
    ctx.record(note);
    Ok(())
}
