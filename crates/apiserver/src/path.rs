//! What a resource URL names: `/apis/{group}/{version}/[namespaces/{ns}/]{plural}[/{name}]`,
//! or `/api/{version}/...` for the core group's kinds (Secret, ConfigMap).
//!
//! Every resource handler is shared by all kinds; these extractors are the one place where the
//! path's group, version and plural become a [`Kind`]. A plural served under another
//! group-version (`/apis/serving.knative.dev/v1/namespaces/default/ingresses`) names nothing,
//! and is a 404 as in Kubernetes.

use axum::extract::{FromRequestParts, Path};
use http::request::Parts;
use nimbus_api::Kind;
use serde::Deserialize;

use crate::status::ApiError;
use crate::view::View;

/// `/apis/{group}/{version}`: the prefix of every resource path of a named group.
pub const RESOURCES: &str = "/apis/{group}/{version}";
/// `/api/{version}`: the prefix of the core group's resource paths (Secrets, ConfigMaps).
pub const CORE_RESOURCES: &str = "/api/{version}";

/// A collection: `.../{plural}` (all namespaces) or `.../namespaces/{ns}/{plural}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionPath {
    pub kind: Kind,
    /// The version the path names (Events: core `v1` or `events.k8s.io/v1`).
    pub view: View,
    /// `None`: across all namespaces.
    pub namespace: Option<String>,
}

/// One object: `.../namespaces/{ns}/{plural}/{name}` (and its subresources).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemPath {
    pub kind: Kind,
    pub view: View,
    pub namespace: String,
    pub name: String,
}

/// The path parameters as matched.
#[derive(Debug, Deserialize)]
struct Params {
    /// Absent on core paths (`/api/{version}`): the core group is empty.
    #[serde(default)]
    group: String,
    version: String,
    plural: String,
    ns: Option<String>,
    name: Option<String>,
}

// === impl Params ===

impl Params {
    async fn extract<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<Params>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::Internal(format!("route parameters: {e}")))?;
        Ok(params)
    }

    fn kind(&self) -> Result<(Kind, View), ApiError> {
        View::resolve(&self.group, &self.version, &self.plural).ok_or_else(ApiError::no_such_path)
    }
}

// === impl CollectionPath ===

impl<S: Send + Sync> FromRequestParts<S> for CollectionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = Params::extract(parts, state).await?;
        let (kind, view) = params.kind()?;
        Ok(Self {
            kind,
            view,
            namespace: params.ns,
        })
    }
}

// === impl ItemPath ===

impl<S: Send + Sync> FromRequestParts<S> for ItemPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = Params::extract(parts, state).await?;
        let (kind, view) = params.kind()?;
        match (params.ns, params.name) {
            (Some(namespace), Some(name)) => Ok(Self {
                kind,
                view,
                namespace,
                name,
            }),
            _ => Err(ApiError::Internal(
                "an object route without a namespace or name".into(),
            )),
        }
    }
}
