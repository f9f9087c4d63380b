//! Configuration → one immutable Revision per template generation; status names the latest
//! created and latest ready revisions.

use nimbus_api::conditions::{ConditionStatus, is_ready};
use nimbus_api::constants::{
    ANNOTATION_CREATOR, ANNOTATION_LAST_MODIFIER, LABEL_CONFIGURATION,
    LABEL_CONFIGURATION_GENERATION, LABEL_SERVICE,
};
use nimbus_api::names::revision_name;
use nimbus_api::{Configuration, Kind, Object, ObjectMeta, Revision};

use crate::context::Context;
use crate::error::ControllerError;
use crate::status::{child_annotations, child_labels, cond, label, owner_ref, ready_of, set_all};

pub(crate) async fn reconcile(ctx: &Context, cfg: Configuration) -> Result<(), ControllerError> {
    let revisions = revisions_of(ctx, cfg.namespace(), cfg.name()).await?;
    let mut status = cfg.status.clone().unwrap_or_default();
    let name_clash = match current_revision(&cfg, &revisions) {
        Some(_) => None,
        None => create_revision(ctx, &cfg).await?,
    };
    let revisions = revisions_of(ctx, cfg.namespace(), cfg.name()).await?;
    status.latest_created_revision_name = revisions.last().map(|r| r.name().to_string());
    status.latest_ready_revision_name = revisions
        .iter()
        .rev()
        .find(|r| is_ready(&conditions(r)))
        .map(|r| r.name().to_string());
    let ready = match (&name_clash, revisions.last()) {
        (Some(msg), _) => cond("Ready", ConditionStatus::False, "RevisionNameTaken", msg),
        (None, None) => cond(
            "Ready",
            ConditionStatus::Unknown,
            "RevisionMissing",
            "No revision created yet.",
        ),
        (None, Some(latest)) => latest_ready_condition(latest),
    };
    status.observed_generation = Some(cfg.generation());
    set_all(&mut status.conditions, vec![ready], &ctx.now());
    if cfg.status.as_ref() != Some(&status) {
        let mut cfg = cfg;
        cfg.status = Some(status);
        cfg.metadata.resource_version = None;
        ctx.resources
            .update_status(Object::Configuration(cfg))
            .await?;
    }
    Ok(())
}

/// Delete the Configuration's revisions (their cleanup stops the instances).
pub(crate) async fn cleanup(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(), ControllerError> {
    for rev in revisions_of(ctx, namespace, name).await? {
        ctx.resources
            .delete(Kind::Revision, namespace, rev.name())
            .await?;
    }
    Ok(())
}

fn conditions(r: &Revision) -> Vec<nimbus_api::Condition> {
    r.status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn latest_ready_condition(latest: &Revision) -> nimbus_api::Condition {
    let (status, reason, message) = ready_of(&conditions(latest));
    match status {
        ConditionStatus::True => cond("Ready", status, "", ""),
        ConditionStatus::False => cond(
            "Ready",
            status,
            "RevisionFailed",
            &format!(
                "Revision \"{}\" failed with message: {message}",
                latest.name()
            ),
        ),
        ConditionStatus::Unknown => cond(
            "Ready",
            status,
            if reason.is_empty() {
                "Deploying"
            } else {
                &reason
            },
            &message,
        ),
    }
}

/// The generation label of a revision.
pub(crate) fn generation_of(r: &Revision) -> i64 {
    label(&r.metadata, LABEL_CONFIGURATION_GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// Revisions of a configuration, oldest generation first.
pub(crate) async fn revisions_of(
    ctx: &Context,
    ns: &str,
    cfg: &str,
) -> Result<Vec<Revision>, ControllerError> {
    let mut out: Vec<Revision> = ctx
        .resources
        .list(Kind::Revision, Some(ns))
        .await?
        .into_iter()
        .filter_map(|o| match o {
            Object::Revision(r) if label(&r.metadata, LABEL_CONFIGURATION) == Some(cfg) => Some(r),
            _ => None,
        })
        .collect();
    out.sort_by_key(|r| {
        (
            generation_of(r),
            r.metadata.creation_timestamp.clone().map(|t| t.0),
        )
    });
    Ok(out)
}

fn current_revision<'a>(cfg: &Configuration, revisions: &'a [Revision]) -> Option<&'a Revision> {
    revisions
        .iter()
        .find(|r| generation_of(r) == cfg.generation())
}

/// Create the revision for the configuration's current generation. Returns a message instead
/// when the user-chosen name is taken by a revision with a different template.
async fn create_revision(
    ctx: &Context,
    cfg: &Configuration,
) -> Result<Option<String>, ControllerError> {
    let rev = desired_revision(cfg);
    if let Some(Object::Revision(existing)) = ctx
        .resources
        .get(Kind::Revision, cfg.namespace(), rev.name())
        .await?
    {
        if existing.spec == rev.spec
            && label(&existing.metadata, LABEL_CONFIGURATION) == Some(cfg.name())
        {
            return Ok(None); // same template re-applied under its old name: nothing new to run
        }
        return Ok(Some(format!(
            "Revision \"{}\" already exists with a different template; revisions are immutable, \
             so choose a new spec.template.metadata.name (or remove it to get a generated one)",
            rev.name()
        )));
    }
    ctx.resources.create(Object::Revision(rev)).await?;
    Ok(None)
}

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
            owner_references: Some(vec![owner_ref(Configuration::KIND, &cfg.metadata)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        ..Default::default()
    }
}
