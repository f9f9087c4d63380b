//! What every handler shares: the store, the optional bearer token and the write hook; and who
//! the caller is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use nimbus_api::Object;
use nimbus_store::Store;

use crate::status::ApiError;

/// Called after every successful write (create, replace, status update, delete) with the object
/// as stored (for deletions, its last state). Runs on the request path: keep it short and
/// non-blocking (e.g. poke a `tokio::sync::Notify` or send on an unbounded channel).
pub type WriteHook = Arc<dyn Fn(&Object) + Send + Sync>;

/// Shared state of the API server.
#[derive(Clone)]
pub struct ApiState {
    /// Where objects live.
    pub store: Arc<Store>,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    /// Called after every successful write.
    pub on_write: Option<WriteHook>,
    /// How often watches with `allowWatchBookmarks=true` get a `BOOKMARK` event.
    pub bookmark_interval: Duration,
    /// Where instance logs live (`<data dir>/logs`), for the `log` subresource; `None`: none kept.
    pub logs_root: Option<PathBuf>,
}

/// Kubernetes sends bookmarks about once a minute; Nimbus a little more often, as it is cheap.
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// Paths answered without a token: liveness only.
pub const PUBLIC_PATHS: [&str; 1] = ["/healthz"];

/// The authenticated caller, recorded in `creator`/`lastModifier` annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub String);

// === impl ApiState ===

impl ApiState {
    /// No token, no hook.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            token: None,
            on_write: None,
            bookmark_interval: DEFAULT_BOOKMARK_INTERVAL,
            logs_root: None,
        }
    }

    /// Require `Authorization: Bearer <token>` on every request.
    pub fn with_token(mut self, token: impl Into<Arc<str>>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Serve instance logs kept under `root` (`nimbus_logs::logs_root` of the data directory).
    pub fn with_logs_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.logs_root = Some(root.into());
        self
    }

    /// Send watch bookmarks this often.
    pub fn with_bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Call `hook` after every successful write.
    pub fn with_write_hook(mut self, hook: impl Fn(&Object) + Send + Sync + 'static) -> Self {
        self.on_write = Some(Arc::new(hook));
        self
    }

    pub(crate) fn written(&self, obj: &Object) {
        if let Some(hook) = &self.on_write {
            hook(obj);
        }
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("on_write", &self.on_write.is_some())
            .finish_non_exhaustive()
    }
}

// === impl Caller ===

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let user = parts.extensions.get::<Caller>().cloned();
        Ok(user.unwrap_or_else(|| Caller(nimbus_api::constants::DEFAULT_USER.to_string())))
    }
}

/// Middleware: checks the bearer token (when one is configured) and records the caller.
pub(crate) async fn authenticate(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    let public = PUBLIC_PATHS.contains(&req.uri().path());
    if let Some(expected) = state.token.as_ref().filter(|_| !public) {
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = given.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        if !token.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes())) {
            return ApiError::Unauthorized.into_response();
        }
    }
    // One user until identities exist; the token check above is the only authentication.
    req.extensions_mut()
        .insert(Caller(nimbus_api::constants::DEFAULT_USER.to_string()));
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
