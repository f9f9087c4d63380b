//! Configuration → one immutable Revision per template generation; status names the latest
//! created and latest ready revisions. The rules are Knative's configuration reconciler's:
//!
//! - The latest created revision is the one the current template names: a user-chosen name
//!   (`spec.template.metadata.name`) is looked up by name, and re-applying an older template
//!   under its old name makes that revision the latest again (a rollback); a name taken by
//!   another Configuration's revision, or by a revision with a different template, is refused.
//!   Without a chosen name it is the revision labelled with the current generation.
//! - `latestReadyRevisionName` never moves to an older generation than the current latest
//!   ready: it is the newest ready revision among those between the latest ready's generation
//!   and the configuration's (plus a rolled-back-to one, which comes first), so an instance
//!   crash of the newest revision does not send `latestRevision` traffic to older code.
//! - Then revision garbage collection (Knative's `config-gc`) runs over this Configuration's
//!   revisions.

use nimbus_api::conditions::{ConditionStatus, get_condition};
use nimbus_api::constants::{
    ANNOTATION_CREATOR, ANNOTATION_LAST_MODIFIER, LABEL_CONFIGURATION,
    LABEL_CONFIGURATION_GENERATION, LABEL_ROUTING_STATE, LABEL_SERVICE, ROUTING_STATE_PENDING,
};
use nimbus_api::names::revision_name;
use nimbus_api::serving::ConfigurationStatus;
use nimbus_api::{Configuration, Kind, Object, ObjectMeta, Revision};

use crate::context::Context;
use crate::error::ControllerError;
use crate::gc;
use crate::resources::{Action, update_status};
use crate::status::{
    child_annotations, child_labels, cond, is_controlled_by, label, owner_ref, set_all,
};

pub(crate) async fn reconcile(
    ctx: &Context,
    cfg: Configuration,
) -> Result<Action, ControllerError> {
    if cfg.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut status = cfg.status.clone().unwrap_or_default();
    let conditions = match latest_created(ctx, &cfg).await? {
        Err(message) => vec![cond(
            "Ready",
            ConditionStatus::False,
            "RevisionFailed",
            &format!("Revision creation failed with message: {message}."),
        )],
        Ok((latest, byo)) => {
            let mut c = set_latest_created(&mut status, &latest);
            c.extend(find_latest_ready(ctx, &cfg, &mut status, &latest, byo).await?);
            c
        }
    };
    status.observed_generation = Some(cfg.generation());
    set_all(&mut status.conditions, conditions, &ctx.now());
    write_status(ctx, &cfg, status.clone()).await?;
    let next_gc = gc::collect_revisions(ctx, &cfg, &status).await?;
    Ok(Action::requeue(next_gc))
}

/// The revision for the current template (created if needed) and whether its name was chosen
/// by the user; `Err(message)` when the chosen name is taken.
async fn latest_created(
    ctx: &Context,
    cfg: &Configuration,
) -> Result<Result<(Revision, bool), String>, ControllerError> {
    if let Some(name) = &cfg.spec.template.metadata.name {
        return match ctx
            .resources
            .get(Kind::Revision, cfg.namespace(), name)
            .await?
        {
            Some(Object::Revision(rev)) => Ok(name_available(cfg, rev).map(|r| (r, true))),
            _ => Ok(Ok((create_revision(ctx, cfg).await?, true))),
        };
    }
    let generation = cfg.generation().to_string();
    let selector = [
        (LABEL_CONFIGURATION, cfg.name()),
        (LABEL_CONFIGURATION_GENERATION, generation.as_str()),
    ];
    let listed = ctx
        .resources
        .list(Kind::Revision, Some(cfg.namespace()), &selector)
        .await?;
    match listed.items.into_iter().next() {
        Some(Object::Revision(rev)) => Ok(Ok((rev, false))),
        _ => Ok(Ok((create_revision(ctx, cfg).await?, false))),
    }
}

/// Knative's `CheckNameAvailability`: a chosen name may name an existing revision of this
/// Configuration made from the same template (or at this generation).
fn name_available(cfg: &Configuration, rev: Revision) -> Result<Revision, String> {
    let taken = || {
        format!(
            "revisions.serving.knative.dev \"{}\" already exists",
            rev.name()
        )
    };
    if !is_controlled_by(&rev.metadata, &cfg.metadata) {
        return Err(taken());
    }
    let generation = cfg.generation().to_string();
    if label(&rev.metadata, LABEL_CONFIGURATION_GENERATION) == Some(generation.as_str())
        || rev.spec == cfg.spec.template.spec
    {
        return Ok(rev);
    }
    Err(taken())
}

/// Knative's `SetLatestCreatedRevisionName` plus the latest created revision's readiness.
fn set_latest_created(
    status: &mut ConfigurationStatus,
    latest: &Revision,
) -> Vec<nimbus_api::Condition> {
    status.latest_created_revision_name = Some(latest.name().to_string());
    let ready = latest
        .status
        .as_ref()
        .and_then(|s| get_condition(&s.conditions, "Ready"));
    match ready.map(|c| c.status) {
        Some(ConditionStatus::False) => {
            let message = ready.and_then(|c| c.message.clone()).unwrap_or_default();
            vec![cond(
                "Ready",
                ConditionStatus::False,
                "RevisionFailed",
                &format!(
                    "Revision \"{}\" failed with message: {message}.",
                    latest.name()
                ),
            )]
        }
        _ if status.latest_ready_revision_name.as_deref() != Some(latest.name()) => {
            vec![cond("Ready", ConditionStatus::Unknown, "", "")]
        }
        _ => vec![],
    }
}

/// Knative's `findAndSetLatestReadyRevision`: the newest ready revision not older than the
/// current latest ready (a rolled-back-to revision first).
async fn find_latest_ready(
    ctx: &Context,
    cfg: &Configuration,
    status: &mut ConfigurationStatus,
    latest: &Revision,
    byo: bool,
) -> Result<Vec<nimbus_api::Condition>, ControllerError> {
    let mut lowest = None;
    if let Some(current) = &status.latest_ready_revision_name
        && let Some(Object::Revision(r)) = ctx
            .resources
            .get(Kind::Revision, cfg.namespace(), current)
            .await?
    {
        lowest = Some(generation_of(&r));
    }
    let chosen = cfg.spec.template.metadata.name.as_deref();
    let ready = match (
        byo && Some(latest.name()) == chosen && is_ready(latest),
        lowest,
    ) {
        (true, _) => Some(latest.clone()),
        (false, Some(low)) => newest_ready(ctx, cfg, low).await?,
        (false, None) => newest_ready(ctx, cfg, 0).await?,
    };
    let Some(ready) = ready else {
        return Ok(vec![]);
    };
    status.latest_ready_revision_name = Some(ready.name().to_string());
    Ok(
        if status.latest_created_revision_name == status.latest_ready_revision_name {
            vec![cond("Ready", ConditionStatus::True, "", "")]
        } else {
            vec![]
        },
    )
}

fn is_ready(r: &Revision) -> bool {
    r.status
        .as_ref()
        .is_some_and(|s| nimbus_api::conditions::is_ready(&s.conditions))
}

/// The newest ready revision of the configuration whose generation is at least `lowest`,
/// looked up generation by generation from the newest (each one lookup in the label index),
/// so the cost is the number of generations since the latest ready revision, not the
/// configuration's whole history. With no latest ready revision yet (`lowest` 0) it may walk
/// the history once.
async fn newest_ready(
    ctx: &Context,
    cfg: &Configuration,
    lowest: i64,
) -> Result<Option<Revision>, ControllerError> {
    for generation in (lowest.max(1)..=cfg.generation()).rev() {
        let g = generation.to_string();
        let selector = [
            (LABEL_CONFIGURATION, cfg.name()),
            (LABEL_CONFIGURATION_GENERATION, g.as_str()),
        ];
        let listed = ctx
            .resources
            .list(Kind::Revision, Some(cfg.namespace()), &selector)
            .await?;
        let found = listed.items.into_iter().find_map(|o| match o {
            Object::Revision(r) if is_ready(&r) => Some(r),
            _ => None,
        });
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The generation label of a revision.
pub(crate) fn generation_of(r: &Revision) -> i64 {
    label(&r.metadata, LABEL_CONFIGURATION_GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

async fn create_revision(ctx: &Context, cfg: &Configuration) -> Result<Revision, ControllerError> {
    let mut rev = Object::Revision(desired_revision(cfg));
    rev.set_type_meta();
    match ctx.resources.create(rev).await? {
        Object::Revision(r) => Ok(r),
        _ => unreachable!("created a Revision"),
    }
}

/// Knative's `MakeRevision`: the template with the configuration's labels, a creator
/// annotation and `routingState: pending` until a Route looks at it.
fn desired_revision(cfg: &Configuration) -> Revision {
    let template = &cfg.spec.template;
    let name = template
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| revision_name(cfg.name(), cfg.generation()));
    let generation = cfg.generation().to_string();
    let mut extra = vec![
        (LABEL_CONFIGURATION, cfg.name()),
        (LABEL_CONFIGURATION_GENERATION, generation.as_str()),
        (LABEL_ROUTING_STATE, ROUTING_STATE_PENDING),
    ];
    if let Some(svc) = label(&cfg.metadata, LABEL_SERVICE) {
        extra.push((LABEL_SERVICE, svc));
    }
    let mut annotations = child_annotations(&template.metadata).unwrap_or_default();
    let creator = cfg.metadata.annotations.as_ref().and_then(|a| {
        a.get(ANNOTATION_LAST_MODIFIER)
            .or_else(|| a.get(ANNOTATION_CREATOR))
            .cloned()
    });
    if let Some(creator) = creator {
        annotations.insert(ANNOTATION_CREATOR.to_string(), creator);
    }
    Revision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(cfg.namespace().to_string()),
            labels: child_labels(&template.metadata, &extra),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner_ref(Kind::Configuration, &cfg.metadata)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        ..Default::default()
    }
}

async fn write_status(
    ctx: &Context,
    cfg: &Configuration,
    status: ConfigurationStatus,
) -> Result<(), ControllerError> {
    if cfg.status.as_ref() == Some(&status) {
        return Ok(());
    }
    update_status(
        &*ctx.resources,
        Kind::Configuration,
        cfg.namespace(),
        cfg.name(),
        |o| {
            if let Object::Configuration(c) = o {
                c.status = Some(status.clone());
            }
        },
    )
    .await?;
    Ok(())
}
