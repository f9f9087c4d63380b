//! Collection GETs: a `<Kind>List` of the objects matching a label selector, or (with
//! `?watch=true`) a watch stream, in one namespace or across all.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use nimbus_api::{API_VERSION, Kind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::resources::kind_of;
use crate::selector::LabelSelector;
use crate::state::ApiState;
use crate::status::ApiError;
use crate::watch::{self, WatchFilter};

/// The query parameters lists and watches understand; others are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub watch: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<String>,
}

/// GET `/{plural}`: across namespaces.
pub async fn list_all(
    State(state): State<ApiState>,
    Path(plural): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    list_or_watch(state, &plural, None, params).await
}

/// GET `/namespaces/{ns}/{plural}`.
pub async fn list_namespaced(
    State(state): State<ApiState>,
    Path((namespace, plural)): Path<(String, String)>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    list_or_watch(state, &plural, Some(namespace), params).await
}

async fn list_or_watch(
    state: ApiState,
    plural: &str,
    namespace: Option<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let kind = kind_of(plural)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let selector = LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let filter = WatchFilter {
        kind,
        namespace,
        selector,
    };
    if params.watch.as_deref().is_some_and(is_true) {
        return watch::respond(state.store, filter, &params);
    }
    Ok(Json(list(&state, &filter)?).into_response())
}

fn list(state: &ApiState, filter: &WatchFilter) -> Result<Value, ApiError> {
    let listed = state.store.list(filter.kind, filter.namespace.as_deref())?;
    let items: Vec<Value> = listed
        .items
        .iter()
        .filter(|o| filter.matches(o))
        .map(|o| o.to_json())
        .collect();
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": list_kind(filter.kind),
        "metadata": { "resourceVersion": listed.resource_version.to_string() },
        "items": items,
    }))
}

/// `ServiceList`, `RevisionList`, ...
pub fn list_kind(kind: Kind) -> String {
    format!("{kind}List")
}

/// Kubernetes' boolean query values (`true`, `1`, `t`, in any case).
fn is_true(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "t")
}
