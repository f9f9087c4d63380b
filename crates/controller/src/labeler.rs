//! Knative's labeler: a Route marks the Revisions and Configurations its traffic references
//! with `serving.knative.dev/routingState: active` and its name in the
//! `serving.knative.dev/routes` annotation, and moves what it no longer references to
//! `reserve` once no Route references it (recording when in
//! `serving.knative.dev/routingStateModified`). A Revision's PodAutoscaler takes its
//! reachability from that label, and revision garbage collection its last-active time.
//!
//! What a Route referenced before is what it read on its previous reconcile (the tracker), so
//! a reconcile costs in proportion to the Route's own targets; only the first reconcile of a
//! Route in this process lists the namespace's `active` objects (the label index) and looks at
//! their annotations, as Knative's labeler does.

use std::collections::{BTreeSet, HashSet};

use nimbus_api::constants::{
    ANNOTATION_ROUTES, ANNOTATION_ROUTING_STATE_MODIFIED, LABEL_ROUTING_STATE,
    ROUTING_STATE_ACTIVE, ROUTING_STATE_RESERVE,
};
use nimbus_api::{Kind, Object, Route};

use crate::context::Context;
use crate::error::ControllerError;
use crate::manager::ObjectKey;
use crate::resources::update_meta;

/// Make exactly `revisions` and `configurations` carry this Route. `before`: what the Route
/// referenced on its last reconcile, if known.
pub(crate) async fn sync(
    ctx: &Context,
    route: &Route,
    revisions: &HashSet<String>,
    configurations: &HashSet<String>,
    before: Option<&[ObjectKey]>,
) -> Result<(), ControllerError> {
    for (kind, wanted) in [
        (Kind::Revision, revisions),
        (Kind::Configuration, configurations),
    ] {
        for name in wanted {
            mark(ctx, kind, route, name, true).await?;
        }
        let previous = match before {
            Some(keys) => keys
                .iter()
                .filter(|k| k.kind == kind)
                .map(|k| k.name.clone())
                .collect(),
            None => referencing(ctx, kind, route).await?,
        };
        for name in previous {
            if !wanted.contains(&name) {
                mark(ctx, kind, route, &name, false).await?;
            }
        }
    }
    Ok(())
}

/// The Route is going away: it references nothing any more.
pub(crate) async fn clear(
    ctx: &Context,
    route: &Route,
    before: Option<&[ObjectKey]>,
) -> Result<(), ControllerError> {
    sync(ctx, route, &HashSet::new(), &HashSet::new(), before).await
}

/// Names of the `kind` objects whose routes annotation names this Route.
async fn referencing(
    ctx: &Context,
    kind: Kind,
    route: &Route,
) -> Result<Vec<String>, ControllerError> {
    let listed = ctx
        .resources
        .list(
            kind,
            Some(route.namespace()),
            &[(LABEL_ROUTING_STATE, ROUTING_STATE_ACTIVE)],
        )
        .await?;
    Ok(listed
        .items
        .iter()
        .filter(|o| routes_of(o).contains(route.name()))
        .map(|o| o.name().to_string())
        .collect())
}

fn routes_of(obj: &Object) -> BTreeSet<String> {
    obj.metadata()
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ROUTES))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Add (`referenced`) or remove this Route on one object, and set its routing state.
async fn mark(
    ctx: &Context,
    kind: Kind,
    route: &Route,
    name: &str,
    referenced: bool,
) -> Result<(), ControllerError> {
    let now = ctx.now();
    update_meta(&*ctx.resources, kind, route.namespace(), name, |o| {
        if o.is_deleting() {
            return;
        }
        let mut routes = routes_of(o);
        match referenced {
            true => routes.insert(route.name().to_string()),
            false => routes.remove(route.name()),
        };
        let meta = o.metadata_mut();
        let annotations = meta.annotations.get_or_insert_default();
        match routes.is_empty() {
            true => annotations.remove(ANNOTATION_ROUTES),
            false => annotations.insert(
                ANNOTATION_ROUTES.into(),
                routes.iter().cloned().collect::<Vec<_>>().join(","),
            ),
        };
        let state = match routes.is_empty() {
            true => ROUTING_STATE_RESERVE,
            false => ROUTING_STATE_ACTIVE,
        };
        let labels = meta.labels.get_or_insert_default();
        if labels.get(LABEL_ROUTING_STATE).map(String::as_str) != Some(state) {
            labels.insert(LABEL_ROUTING_STATE.into(), state.into());
            annotations.insert(ANNOTATION_ROUTING_STATE_MODIFIED.into(), now.clone());
        }
        if annotations.is_empty() {
            meta.annotations = None;
        }
    })
    .await?;
    Ok(())
}
