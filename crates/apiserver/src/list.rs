//! Collection GETs: a `<Kind>List` (or a `Table`) of the objects matching label and field
//! selectors, a page at a time with `limit`/`continue`, or (with `?watch=true`) a watch stream,
//! in one namespace or across all.
//!
//! Pages are read from the current state: a `continue` token remembers the list's
//! resourceVersion and the last key (`namespace/name`) returned, and the next page starts after
//! that key. Unlike etcd-backed Kubernetes, later pages are not a snapshot at the first page's
//! resourceVersion; every page reports that first resourceVersion, so a watch started from it
//! replays (harmlessly) any change made while paging.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use nimbus_api::{Kind, Object};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::params::is_true;
use crate::path::CollectionPath;
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::ApiState;
use crate::status::ApiError;
use crate::table::{self, Format};
use crate::watch::{self, WatchFilter};

/// The query parameters lists and watches understand; others are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub watch: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<String>,
    pub limit: Option<String>,
    #[serde(rename = "continue")]
    pub continue_: Option<String>,
    pub allow_watch_bookmarks: Option<String>,
    pub send_initial_events: Option<String>,
    /// Tables only: `None`, `Metadata` (default) or `Object`.
    pub include_object: Option<String>,
}

/// Where a continued list resumes.
#[derive(Debug, PartialEq, Eq)]
struct ContinueToken {
    resource_version: u64,
    /// `namespace/name` of the last item returned.
    after: String,
}

/// GET `/{plural}` (across namespaces) and `/namespaces/{ns}/{plural}`.
pub async fn list_or_watch(
    State(state): State<ApiState>,
    CollectionPath {
        kind,
        view,
        namespace,
    }: CollectionPath,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let format = Format::negotiate(&headers, params.include_object.as_deref())?;
    let filter = WatchFilter {
        kind,
        namespace,
        selector: LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        fields: FieldSelector::parse(
            kind,
            &view.field_selector(params.field_selector.as_deref().unwrap_or("")),
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        view,
    };
    if params.watch.as_deref().is_some_and(is_true) {
        return watch::respond(&state, filter, &params, format);
    }
    Ok(Json(list(&state, &filter, &params, format)?).into_response())
}

fn list(
    state: &ApiState,
    filter: &WatchFilter,
    params: &ListParams,
    format: Format,
) -> Result<Value, ApiError> {
    let limit = parse_limit(params.limit.as_deref())?;
    let token = params
        .continue_
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(ContinueToken::decode)
        .transpose()?;
    let listed = state.store.list(filter.kind, filter.namespace.as_deref())?;
    let rv = token
        .as_ref()
        .map_or(listed.resource_version, |t| t.resource_version);
    let matching: Vec<&Object> = listed
        .items
        .iter()
        .filter(|o| filter.matches(o))
        .filter(|o| token.as_ref().is_none_or(|t| key(o) > t.after))
        .collect();
    let (page, rest) = match limit {
        Some(n) if n < matching.len() => matching.split_at(n),
        _ => (matching.as_slice(), &[][..]),
    };
    let next = match (rest.is_empty(), page.last()) {
        (false, Some(last)) => Some(
            ContinueToken {
                resource_version: rv,
                after: key(last),
            }
            .encode(),
        ),
        _ => None,
    };
    let rv = rv.to_string();
    if let Format::Table { version, include } = format {
        // Rows are rendered from the stored shape.
        let items: Vec<Value> = page.iter().map(|o| o.to_json()).collect();
        return Ok(table::table(
            filter.kind,
            version,
            include,
            &items,
            Some(&rv),
            next.as_deref(),
        ));
    }
    let items: Vec<Value> = page.iter().map(|o| filter.view.json(o)).collect();
    let mut metadata = json!({ "resourceVersion": rv });
    if let Some(next) = next {
        metadata["continue"] = json!(next);
        metadata["remainingItemCount"] = json!(rest.len());
    }
    Ok(json!({
        "apiVersion": filter.view.api_version(filter.kind),
        "kind": list_kind(filter.kind),
        "metadata": metadata,
        "items": items,
    }))
}

fn key(obj: &Object) -> String {
    format!("{}/{}", obj.namespace(), obj.name())
}

/// `limit`: absent or 0 means everything.
fn parse_limit(limit: Option<&str>) -> Result<Option<usize>, ApiError> {
    match limit {
        None | Some("") => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Some(n as usize)),
            Ok(_) => Ok(None),
            Err(_) => Err(ApiError::BadRequest(format!("invalid limit {s:?}"))),
        },
    }
}

/// `ServiceList`, `RevisionList`, ...
pub fn list_kind(kind: Kind) -> String {
    format!("{kind}List")
}

// === impl ContinueToken ===

impl ContinueToken {
    fn encode(&self) -> String {
        let text = json!({ "rv": self.resource_version, "after": self.after }).to_string();
        URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        let invalid =
            || ApiError::BadRequest("continue key is not valid: list again from the start".into());
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        Ok(Self {
            resource_version: v.get("rv").and_then(Value::as_u64).ok_or_else(invalid)?,
            after: v
                .get("after")
                .and_then(Value::as_str)
                .ok_or_else(invalid)?
                .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_garbage_is_400() {
        let t = ContinueToken {
            resource_version: 9,
            after: "default/b".into(),
        };
        assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        assert!(ContinueToken::decode("!!").is_err());
        assert!(ContinueToken::decode(&URL_SAFE_NO_PAD.encode("{}")).is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).unwrap(), None);
        assert_eq!(parse_limit(Some("0")).unwrap(), None);
        assert_eq!(parse_limit(Some("2")).unwrap(), Some(2));
        assert!(parse_limit(Some("x")).is_err());
    }
}
