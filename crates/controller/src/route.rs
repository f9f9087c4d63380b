//! Route → resolved traffic (revision names, percents, tag URLs) in status, and the router's
//! programming. While a target is not ready the previous programming keeps serving, as in
//! Knative; a route never programmed before is programmed at once so requests get a 503 that
//! explains what is not ready rather than a 404.

use std::collections::BTreeMap;
use std::time::Duration;

use nimbus_api::conditions::{ConditionStatus, is_ready};
use nimbus_api::names::{route_host, tag_host};
use nimbus_api::networking::{Ingress, IngressRule, IngressSplit};
use nimbus_api::serving::Addressable;
use nimbus_api::{Configuration, Kind, Object, Revision, Route, TrafficTarget};

use crate::context::Context;
use crate::error::ControllerError;
use crate::status::{cond, set_all};

/// One traffic entry after resolution.
struct Resolved {
    target: TrafficTarget,
    revision: Option<Revision>,
    /// Why this entry is not (yet) servable.
    problem: Option<(ConditionStatus, String, String)>,
}

pub(crate) async fn reconcile(ctx: &Context, route: Route) -> Result<(), ControllerError> {
    let ns = route.namespace().to_string();
    let mut resolved = Vec::new();
    for t in &route.spec.traffic {
        resolved.push(resolve(ctx, &ns, t).await?);
    }
    let problem = resolved.iter().find_map(|r| r.problem.clone());
    if (problem.is_none() || !ctx.is_programmed(&ns, route.name()))
        && let Some(ingress) = ingress_for(ctx, &route, &resolved)
    {
        ctx.program(ingress);
    }
    let host = route_host(route.name(), &ns, &ctx.config.domain);
    let mut status = route.status.clone().unwrap_or_default();
    status.url = Some(ctx.url_for(&host));
    status.address = Some(Addressable {
        url: status.url.clone(),
    });
    if problem.is_none() || status.traffic.is_empty() {
        status.traffic = resolved
            .iter()
            .map(|r| status_target(ctx, &route, r))
            .collect();
    }
    status.observed_generation = Some(route.generation());
    let conditions = match problem {
        None => vec![
            cond("AllTrafficAssigned", ConditionStatus::True, "", ""),
            cond("IngressReady", ConditionStatus::True, "", ""),
            cond("Ready", ConditionStatus::True, "", ""),
        ],
        Some((s, reason, message)) => {
            vec![
                cond("AllTrafficAssigned", s, &reason, &message),
                cond("Ready", s, &reason, &message),
            ]
        }
    };
    set_all(&mut status.conditions, conditions, &ctx.now());
    if route.status.as_ref() != Some(&status) {
        let mut route = route;
        route.status = Some(status);
        route.metadata.resource_version = None;
        ctx.resources.update_status(Object::Route(route)).await?;
    }
    Ok(())
}

pub(crate) async fn cleanup(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(), ControllerError> {
    ctx.unprogram(namespace, name);
    Ok(())
}

async fn resolve(ctx: &Context, ns: &str, t: &TrafficTarget) -> Result<Resolved, ControllerError> {
    use ConditionStatus::{False, Unknown};
    let mut out = Resolved {
        target: t.clone(),
        revision: None,
        problem: None,
    };
    let rev_name = match (&t.revision_name, &t.configuration_name) {
        (Some(r), _) => Some(r.clone()),
        (None, Some(c)) => match ctx.resources.get(Kind::Configuration, ns, c).await? {
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
        },
        (None, None) => None,
    };
    let Some(rev_name) = rev_name else {
        return Ok(out);
    };
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
    if ready.is_none() {
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

fn ingress_for(ctx: &Context, route: &Route, resolved: &[Resolved]) -> Option<Ingress> {
    let (ns, name, domain) = (route.namespace(), route.name(), &ctx.config.domain);
    let split = |rev: &Revision, percent: u32| IngressSplit {
        revision: rev.name().to_string(),
        percent,
        timeout: Duration::from_secs(rev.spec.timeout_seconds_or_default().max(1) as u64),
        container_concurrency: rev.spec.container_concurrency.unwrap_or(0).clamp(0, 1000) as u32,
    };
    let mut main: BTreeMap<String, IngressSplit> = BTreeMap::new();
    let mut rules = Vec::new();
    for r in resolved {
        let Some(rev) = &r.revision else { continue };
        let percent = r.target.percent.unwrap_or(0).clamp(0, 100) as u32;
        if percent > 0 {
            main.entry(rev.name().to_string())
                .or_insert_with(|| split(rev, 0))
                .percent += percent;
        }
        if let Some(tag) = &r.target.tag {
            rules.push(IngressRule {
                hosts: vec![tag_host(tag, name, ns, domain)],
                splits: vec![split(rev, 100)],
            });
        }
    }
    if !main.is_empty() {
        rules.insert(
            0,
            IngressRule {
                hosts: vec![route_host(name, ns, domain)],
                splits: main.into_values().collect(),
            },
        );
    }
    (!rules.is_empty()).then(|| Ingress {
        namespace: ns.to_string(),
        name: name.to_string(),
        rules,
    })
}
