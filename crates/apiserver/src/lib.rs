//! Nimbus's control-plane API: the resource kinds of `nimbus-api` served over HTTP with
//! Kubernetes API conventions, so that kubectl and kube-rs can talk to it as to a cluster. Each
//! kind is served under its own group-version, as a Kubernetes API server serves CRD groups:
//! `services`, `configurations`, `revisions`, `routes` in `serving.knative.dev/v1`,
//! `podautoscalers` in `autoscaling.internal.knative.dev/v1alpha1` and `ingresses` in
//! `networking.internal.knative.dev/v1alpha1`; and the core group's `secrets` and
//! `configmaps` under `/api/v1` (no `status` subresource).
//!
//! This crate owns the HTTP shape only: paths, verbs, query parameters, `Status` errors, list and
//! watch encodings. What is valid is decided by `nimbus-api`; what is stored, and every
//! `resourceVersion`, by `nimbus-store`. It never reconciles anything: after each successful write
//! it calls the [`WriteHook`] so the controller can be poked.
//!
//! One set of handlers serves every kind: the routes match `/apis/{group}/{version}/...`, and the
//! path extractors (`path.rs`) turn group, version and plural into the kind, or a 404 when that
//! group-version has no such resource.
//!
//! | Path | Verbs |
//! |---|---|
//! | `/healthz` | GET (the only path answered without the token) |
//! | `/version`, `/api`, `/apis`, `/apis/{group}[/{version}]` | GET: discovery |
//! | `/openapi/v3[/apis/{group}/{version}]`, `/openapi/v3/api/v1`, `/openapi/v2` | GET: schemas |
//! | `/apis/{group}/{version}/{plural}` | GET list / watch across namespaces |
//! | `/apis/{group}/{version}/namespaces/{ns}/{plural}` | GET list / watch, POST create |
//! | `/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}` | GET, PUT, PATCH (merge, JSON, apply), DELETE |
//! | `/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/status` | GET, PUT, PATCH (merge, JSON) |
//! | `/api/v1[/namespaces/{ns}]/{secrets,configmaps,events}[/{name}]` | as above, without `status` |
//! | `/apis/events.k8s.io/v1[/namespaces/{ns}]/events[/{name}]` | the same Events as `events.k8s.io/v1` (see `view.rs`): GET, POST, DELETE |
//! | `{API_PREFIX}/namespaces/{ns}/services/{name}/log`, `.../revisions/{name}/log` | GET: instance logs (see [`logs`]) |
//!
//! GETs answer a `meta.k8s.io` `Table` when asked (`kubectl get`); writes take `fieldManager`,
//! `fieldValidation`, `dryRun` and (apply) `force`; see [`fields`] for field ownership.

mod body;
mod conn;
mod discovery;
mod event_table;
pub use nimbus_api::fields;
mod list;
pub mod logs;
mod metrics;
mod openapi;
mod params;
// Public for the fuzz targets in `fuzz/` only; not a stable API.
#[doc(hidden)]
pub mod patch;
mod path;
mod proto;
mod resources;
mod selector;
mod stamp;
mod state;
mod status;
mod table;
pub mod tls;
mod view;
mod watch;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

pub use body::MAX_BODY_BYTES;
pub use discovery::KUBERNETES_MINOR;
pub use list::ListParams;
pub use metrics::{ApiMetrics, with_metrics};
pub use params::{FieldValidation, WriteParams};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use state::{ApiState, Caller, DEFAULT_BOOKMARK_INTERVAL, PUBLIC_PATHS, WriteHook};
pub use status::{ApiError, Cause, Details, FieldConflict};
pub use tls::{TlsError, TlsIdentity};

/// The path prefix of the `serving.knative.dev/v1` resources (and of their `log` subresources).
/// Each kind's resources are under `/apis/{}` of its [`Kind::api_version`](nimbus_api::Kind).
pub const API_PREFIX: &str = "/apis/serving.knative.dev/v1";

/// How long [`serve`] lets open requests (watches above all) finish after shutdown is asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The API as a service; test it with `tower::ServiceExt::oneshot`.
pub fn app(state: ApiState) -> Router {
    let r = path::RESOURCES;
    let core = path::CORE_RESOURCES;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::core_versions))
        .route("/apis", get(discovery::groups))
        .route("/apis/{group}", get(discovery::api_group))
        .route(r, get(discovery::api_resources))
        .route(core, get(discovery::core_resources))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::v3_root))
        .route(
            "/openapi/v3/apis/{group}/{version}",
            get(openapi::v3_group_version),
        )
        .route("/openapi/v3/api/{version}", get(openapi::v3_core))
        .route(&format!("{r}/{{plural}}"), get(list::list_or_watch))
        .route(
            &format!("{r}/namespaces/{{ns}}/{{plural}}"),
            get(list::list_or_watch).post(resources::create),
        )
        .route(
            &format!("{r}/namespaces/{{ns}}/{{plural}}/{{name}}"),
            get(resources::get)
                .put(resources::replace)
                .patch(resources::patch)
                .delete(resources::delete),
        )
        .route(&format!("{core}/{{plural}}"), get(list::list_or_watch))
        .route(
            &format!("{core}/namespaces/{{ns}}/{{plural}}"),
            get(list::list_or_watch).post(resources::create),
        )
        .route(
            &format!("{core}/namespaces/{{ns}}/{{plural}}/{{name}}"),
            get(resources::get)
                .put(resources::replace)
                .patch(resources::patch)
                .delete(resources::delete),
        )
        .route(
            &format!("{r}/namespaces/{{ns}}/{{plural}}/{{name}}/status"),
            get(resources::get)
                .put(resources::replace_status)
                .patch(resources::patch_status),
        )
        .route(
            &format!("{API_PREFIX}/namespaces/{{ns}}/services/{{name}}/log"),
            get(logs::service_log),
        )
        .route(
            &format!("{API_PREFIX}/namespaces/{{ns}}/revisions/{{name}}/log"),
            get(logs::revision_log),
        )
        .route(
            &format!(
                "/apis/{}/namespaces/{{ns}}/executions/{{name}}/log",
                nimbus_api::jobs::API_VERSION
            ),
            get(logs::execution_log),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            state::authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// `routes` behind the API's bearer-token check (the one [`app`] applies to every path but
/// `/healthz` and discovery), for routes the binary adds to the API port (`/metrics`).
pub fn authenticated(routes: Router, state: ApiState) -> Router {
    routes.layer(axum::middleware::from_fn_with_state(
        state,
        state::authenticate,
    ))
}

/// Serve `app` on `listener` until `shutdown` completes, then give open requests
/// [`SHUTDOWN_GRACE`] to finish (watch streams never finish on their own) and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, app, shutdown).await
}

/// Like [`serve`], but the port speaks HTTPS with `identity` as well as plain HTTP (see
/// [`tls`]): kubectl sends its token only over TLS.
pub async fn serve_with_tls(
    listener: TcpListener,
    app: Router,
    identity: &TlsIdentity,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(tls::DualListener::new(listener, identity)?, app, shutdown).await
}

async fn serve_on<L>(
    listener: L,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    conn::serve(listener, app, conn::ConnLimits::default(), shutdown).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> ApiError {
    ApiError::no_such_path()
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("the API server failed while handling this request".into()).into_response()
}

#[cfg(test)]
mod tests;
