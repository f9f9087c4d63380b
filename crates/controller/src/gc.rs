//! Garbage collection, of two kinds.
//!
//! **Owner references** (what kube-controller-manager's garbage collector does on a cluster):
//! when an object is deleted, the objects it controls are deleted (background propagation), and
//! a sweep after every full list deletes objects whose controlling owner is gone, so deletions
//! missed while the server was down are still carried out. An owner is always looked up again
//! before its dependent is deleted, and deletes carry the dependent's uid.
//!
//! **Revisions** (Knative's `config-gc`): per Configuration, non-active revisions (not the
//! latest ready, not routed, not annotated `serving.knative.dev/no-gc: "true"`) are deleted once
//! they are older than `retain-since-create-time` and were last active longer ago than
//! `retain-since-last-active-time`, keeping at least `min-non-active-revisions`; beyond
//! `max-non-active-revisions` the oldest go regardless of age.

use std::time::Duration;

use nimbus_api::constants::{
    ANNOTATION_NO_GC, ANNOTATION_ROUTING_STATE_MODIFIED, LABEL_CONFIGURATION, LABEL_REVISION,
    LABEL_ROUTE, LABEL_ROUTING_STATE, LABEL_SERVICE, ROUTING_STATE_RESERVE,
};
use nimbus_api::k8s_openapi::jiff::Timestamp;
use nimbus_api::serving::ConfigurationStatus;
use nimbus_api::{Configuration, Kind, Object, Revision};

use crate::context::Context;
use crate::error::ControllerError;
use crate::status::label;

/// Knative's `config-gc` settings. `None` disables a setting, as Knative's `disabled`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionGcConfig {
    /// `retain-since-create-time` (Knative: 48h).
    pub retain_since_create_time: Option<Duration>,
    /// `retain-since-last-active-time` (Knative: 15h).
    pub retain_since_last_active_time: Option<Duration>,
    /// `min-non-active-revisions` (Knative: 20).
    pub min_non_active: usize,
    /// `max-non-active-revisions` (Knative: 1000).
    pub max_non_active: Option<usize>,
}

impl Default for RevisionGcConfig {
    fn default() -> Self {
        Self {
            retain_since_create_time: Some(Duration::from_secs(48 * 3600)),
            retain_since_last_active_time: Some(Duration::from_secs(15 * 3600)),
            min_non_active: 20,
            max_non_active: Some(1000),
        }
    }
}

// === owner references ===

/// The kinds an object of `owner` kind controls, and the label that names the owner on them.
fn dependents(owner: Kind) -> &'static [(Kind, &'static str)] {
    match owner {
        Kind::Service => &[
            (Kind::Configuration, LABEL_SERVICE),
            (Kind::Route, LABEL_SERVICE),
        ],
        Kind::Configuration => &[(Kind::Revision, LABEL_CONFIGURATION)],
        Kind::Revision => &[(Kind::PodAutoscaler, LABEL_REVISION)],
        Kind::Route => &[(Kind::Ingress, LABEL_ROUTE)],
        Kind::Job => &[(Kind::Execution, nimbus_api::jobs::LABEL_JOB)],
        Kind::PodAutoscaler
        | Kind::Ingress
        | Kind::Secret
        | Kind::ConfigMap
        | Kind::Execution
        | Kind::Schedule
        | Kind::ScaledObject
        | Kind::TriggerAuthentication
        | Kind::RedisStreamSource
        | Kind::RabbitmqSource
        | Kind::RedisListSource
        | Kind::NatsJetStreamSource
        | Kind::Event => &[],
    }
}

/// `deleted` is gone: delete what it controlled.
pub(crate) async fn collect_dependents(
    ctx: &Context,
    deleted: &Object,
) -> Result<(), ControllerError> {
    let Some(uid) = deleted.metadata().uid.as_deref() else {
        return Ok(());
    };
    for (kind, owner_label) in dependents(deleted.kind()) {
        let listed = ctx
            .resources
            .list(
                *kind,
                Some(deleted.namespace()),
                &[(owner_label, deleted.name())],
            )
            .await?;
        for child in listed.items {
            if crate::status::controller_uid(child.metadata()) == Some(uid) {
                delete(ctx, &child).await?;
            }
        }
    }
    Ok(())
}

/// Delete every object whose controlling owner no longer exists.
pub(crate) async fn sweep(ctx: &Context) -> Result<(), ControllerError> {
    // Secrets and ConfigMaps are the user's: never collected, whatever they name as owner.
    for kind in Kind::knative() {
        for obj in ctx.resources.list(kind, None, &[]).await?.items {
            if orphaned(ctx, &obj).await? {
                delete(ctx, &obj).await?;
            }
        }
    }
    Ok(())
}

/// Whether the object's controlling owner is gone (looked up now, not from a list).
async fn orphaned(ctx: &Context, obj: &Object) -> Result<bool, ControllerError> {
    let Some(owner) = obj
        .metadata()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
    else {
        return Ok(false);
    };
    let Some(kind) = Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == owner.kind && k.api_version() == owner.api_version)
    else {
        return Ok(false); // owned by something Nimbus does not serve
    };
    let live = ctx
        .resources
        .get(kind, obj.namespace(), &owner.name)
        .await?;
    Ok(live.is_none_or(|o| o.metadata().uid.as_deref() != Some(owner.uid.as_str())))
}

async fn delete(ctx: &Context, obj: &Object) -> Result<(), ControllerError> {
    tracing::debug!(kind = %obj.kind(), namespace = obj.namespace(), name = obj.name(), "collecting an object whose owner is gone");
    ctx.resources
        .delete(
            obj.kind(),
            obj.namespace(),
            obj.name(),
            obj.metadata().uid.as_deref(),
        )
        .await
        .or_else(|e| if e.is_conflict() { Ok(()) } else { Err(e) })?;
    Ok(())
}

// === revisions ===

/// Longest a Configuration goes without a revision GC pass while nothing about it changes
/// (revisions become stale with time and when routes move away from them).
pub const GC_INTERVAL: Duration = Duration::from_secs(60);

/// When each Configuration's revision GC runs next. A pass lists the Configuration's whole
/// history, so it runs when the Configuration's generation or latest ready revision changed,
/// when a kept revision becomes stale, and at least every [`GC_INTERVAL`] — not on every
/// change of every revision (which would make a history of N revisions cost N² on a mass
/// change). Derived state: after a restart every Configuration gets a pass.
#[derive(Default)]
pub struct GcSchedule {
    marks: std::sync::Mutex<std::collections::HashMap<(String, String), Mark>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Mark {
    generation: i64,
    latest_ready: Option<String>,
    /// By the controller's wall clock, which also ages revisions.
    next: Timestamp,
}

impl GcSchedule {
    /// Whether the Configuration's GC pass is due at `now`; if not, how long until it is.
    fn due(
        &self,
        cfg: &Configuration,
        latest_ready: Option<&str>,
        now: Timestamp,
    ) -> Result<(), Duration> {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mark) = marks.get(&(cfg.namespace().to_string(), cfg.name().to_string())) else {
            return Ok(());
        };
        let wait: Duration = mark.next.duration_since(now).try_into().unwrap_or_default();
        if mark.generation != cfg.generation()
            || mark.latest_ready.as_deref() != latest_ready
            || wait.is_zero()
        {
            return Ok(());
        }
        Err(wait)
    }

    fn done(
        &self,
        cfg: &Configuration,
        latest_ready: Option<&str>,
        now: Timestamp,
        next: Duration,
    ) {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let next = now
            .checked_add(
                nimbus_api::k8s_openapi::jiff::SignedDuration::try_from(next).unwrap_or_default(),
            )
            .unwrap_or(now);
        marks.insert(
            (cfg.namespace().to_string(), cfg.name().to_string()),
            Mark {
                generation: cfg.generation(),
                latest_ready: latest_ready.map(str::to_string),
                next,
            },
        );
    }
}

/// Knative's revision GC for one Configuration, when its pass is due (see [`GcSchedule`]).
/// Returns when to look again.
pub(crate) async fn collect_revisions(
    ctx: &Context,
    cfg: &Configuration,
    status: &ConfigurationStatus,
) -> Result<Duration, ControllerError> {
    let latest_ready = status.latest_ready_revision_name.as_deref();
    let now = ctx.clock.now();
    if let Err(wait) = ctx.gc_schedule.due(cfg, latest_ready, now) {
        return Ok(wait);
    }
    let stale_in = collect_now(ctx, cfg, status).await?;
    let next = stale_in.map_or(GC_INTERVAL, |d| d.min(GC_INTERVAL));
    ctx.gc_schedule.done(cfg, latest_ready, now, next);
    Ok(next)
}

/// One GC pass; when a kept non-active revision becomes stale next.
async fn collect_now(
    ctx: &Context,
    cfg: &Configuration,
    status: &ConfigurationStatus,
) -> Result<Option<Duration>, ControllerError> {
    let policy = &ctx.config.revision_gc;
    let listed = ctx
        .resources
        .list(
            Kind::Revision,
            Some(cfg.namespace()),
            &[(LABEL_CONFIGURATION, cfg.name())],
        )
        .await?;
    let revisions: Vec<Revision> = listed
        .items
        .into_iter()
        .filter_map(|o| match o {
            Object::Revision(r) if r.metadata.deletion_timestamp.is_none() => Some(r),
            _ => None,
        })
        .collect();
    let now = ctx.clock.now();
    let plan = plan(
        policy,
        &revisions,
        status.latest_ready_revision_name.as_deref(),
        now,
    );
    for name in &plan.delete {
        tracing::info!(namespace = cfg.namespace(), revision = %name, "garbage-collecting a revision");
        ctx.resources
            .delete(Kind::Revision, cfg.namespace(), name, None)
            .await?;
    }
    Ok(plan.recheck_after)
}

/// What the revision GC does for one Configuration's revisions at `now`.
#[derive(Debug, PartialEq, Eq)]
pub struct GcPlan {
    /// Revision names to delete.
    pub delete: Vec<String>,
    /// When a kept non-active revision next becomes stale.
    pub recheck_after: Option<Duration>,
}

/// Knative's `collect` as a pure function of the policy, the revisions and the time.
pub fn plan(
    policy: &RevisionGcConfig,
    revisions: &[Revision],
    latest_ready: Option<&str>,
    now: Timestamp,
) -> GcPlan {
    let mut out = GcPlan {
        delete: Vec::new(),
        recheck_after: None,
    };
    let all_disabled = policy.max_non_active.is_none()
        && policy.retain_since_create_time.is_none()
        && policy.retain_since_last_active_time.is_none();
    if all_disabled || revisions.len() <= policy.min_non_active {
        return out;
    }
    let mut candidates: Vec<&Revision> = revisions
        .iter()
        .filter(|r| !is_active(r, latest_ready))
        .collect();
    if candidates.len() <= policy.min_non_active {
        return out;
    }
    candidates.sort_by_key(|r| (last_active(r), r.metadata.name.clone()));
    let deletable = candidates.len() - policy.min_non_active;
    let mut kept = Vec::new();
    for r in candidates {
        match stale_in(policy, r, now) {
            Some(Duration::ZERO) if out.delete.len() < deletable => {
                out.delete.push(r.name().to_string());
            }
            wait => {
                if let Some(w) = wait.filter(|w| !w.is_zero()) {
                    out.recheck_after = Some(out.recheck_after.map_or(w, |d| d.min(w)));
                }
                kept.push(r);
            }
        }
    }
    if let Some(max) = policy.max_non_active
        && kept.len() > max
    {
        let extra = kept.len() - max;
        out.delete
            .extend(kept.iter().take(extra).map(|r| r.name().to_string()));
    }
    out
}

/// Knative's `isRevisionActive`: the latest ready, preserved, or not (yet) marked `reserve`.
fn is_active(r: &Revision, latest_ready: Option<&str>) -> bool {
    let preserved = r
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_NO_GC))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    latest_ready == Some(r.name())
        || preserved
        || label(&r.metadata, LABEL_ROUTING_STATE) != Some(ROUTING_STATE_RESERVE)
}

/// `routingStateModified`, else the creation time.
fn last_active(r: &Revision) -> Timestamp {
    r.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ROUTING_STATE_MODIFIED))
        .and_then(|t| t.parse().ok())
        .or_else(|| r.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or_default()
}

/// How long until the revision is stale by the time rules (zero: stale now; `None`: never,
/// both time rules being disabled).
fn stale_in(policy: &RevisionGcConfig, r: &Revision, now: Timestamp) -> Option<Duration> {
    let since =
        |t: Timestamp| -> Duration { now.duration_since(t).try_into().unwrap_or(Duration::ZERO) };
    let created = r
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_default();
    let remaining =
        |retain: Option<Duration>, age: Duration| retain.map(|retain| retain.saturating_sub(age));
    let by_create = remaining(policy.retain_since_create_time, since(created));
    let by_active = remaining(policy.retain_since_last_active_time, since(last_active(r)));
    match (by_create, by_active) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or_default().max(b.unwrap_or_default())),
    }
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
