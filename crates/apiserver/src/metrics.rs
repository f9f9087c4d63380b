//! API requests counted by Kubernetes verb and status code (`apiserver_request_total`'s
//! labels), for the binary's `/metrics`. A layer around the API ([`with_metrics`]) classifies
//! each request from its method, its matched route and its query, and counts it when the
//! response head is ready (a watch: when its stream starts).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, header};

/// Requests answered so far, by verb and status code. The control path only: a short lock per
/// request.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    counts: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

// === impl ApiMetrics ===

impl ApiMetrics {
    /// `((verb, code), requests)`, ordered.
    pub fn snapshot(&self) -> Vec<((&'static str, u16), u64)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.iter().map(|(k, n)| (*k, *n)).collect()
    }

    fn count(&self, verb: &'static str, code: u16) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((verb, code)).or_default() += 1;
    }
}

/// `app` with every request counted into `metrics`.
pub fn with_metrics(app: Router, metrics: Arc<ApiMetrics>) -> Router {
    app.layer(axum::middleware::from_fn_with_state(metrics, count))
}

async fn count(State(metrics): State<Arc<ApiMetrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let apply = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
    let watch = req.uri().query().is_some_and(is_watch);
    let verb = verb(req.method(), route.as_deref(), apply, watch);
    let resp = next.run(req).await;
    metrics.count(verb, resp.status().as_u16());
    resp
}

/// The Kubernetes verb of a request: `get`/`list`/`watch`, `create`, `update`, `patch`/`apply`,
/// `delete`/`deletecollection`; `get` for discovery and other reads, `other` for the rest.
fn verb(method: &Method, route: Option<&str>, apply: bool, watch: bool) -> &'static str {
    let collection = route.is_some_and(|r| r.ends_with("{plural}"));
    match *method {
        Method::GET if watch => "watch",
        Method::GET if collection => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH if apply => "apply",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "other",
    }
}

fn is_watch(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1" || pair == "watch")
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    const OBJ: &str = "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}";
    const LIST: &str = "/apis/{group}/{version}/namespaces/{ns}/{plural}";

    #[test]
    fn verbs_follow_kubernetes() {
        assert_eq!(verb(&Method::GET, Some(OBJ), false, false), "get");
        assert_eq!(verb(&Method::GET, Some(LIST), false, false), "list");
        assert_eq!(verb(&Method::GET, Some(LIST), false, true), "watch");
        assert_eq!(verb(&Method::POST, Some(LIST), false, false), "create");
        assert_eq!(verb(&Method::PUT, Some(OBJ), false, false), "update");
        assert_eq!(verb(&Method::PATCH, Some(OBJ), true, false), "apply");
        assert_eq!(verb(&Method::PATCH, Some(OBJ), false, false), "patch");
        assert_eq!(verb(&Method::DELETE, Some(OBJ), false, false), "delete");
        assert_eq!(verb(&Method::GET, None, false, false), "get");
        assert!(is_watch("resourceVersion=3&watch=true"));
        assert!(!is_watch("watchx=true"));
    }

    #[tokio::test]
    async fn counts_by_verb_and_code() {
        let metrics = Arc::new(ApiMetrics::default());
        let app = Router::new().route("/things/{plural}", get(|| async { "ok" }));
        let app = with_metrics(app, metrics.clone());
        for uri in ["/things/a", "/things/a?watch=true", "/nowhere"] {
            let req = Request::get(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let snap = metrics.snapshot();
        assert!(snap.contains(&(("list", 200), 1)), "{snap:?}");
        assert!(snap.contains(&(("watch", 200), 1)), "{snap:?}");
        assert!(snap.contains(&(("get", 404), 1)), "{snap:?}");
    }
}
