//! Requests that ask to be answered later: `Prefer: respond-async` (RFC 7240). When a
//! [`Deferrer`] is set (the binary's asynchronous invocation queue), such a request to a routed
//! host is read whole (at most [`MAX_DEFERRED_BODY`] bytes), handed over, and answered `202
//! Accepted` with the invocation's id once the deferrer has stored it — never with anything of
//! the function's (its response is for the token holder, through the API). Without a deferrer
//! the preference is ignored, as RFC 7240 allows, and the request is proxied as usual.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};

use crate::body::Body;
use crate::error::ProxyError;
use crate::headers::strip_hop_by_hop;
use crate::router::Inner;

/// The most bytes of a deferred request's body (Lambda's asynchronous payload limit, 1 MiB).
pub const MAX_DEFERRED_BODY: usize = 1 << 20;

/// The header the invocation's id is sent in (also in the JSON body).
pub const INVOCATION_ID: &str = "x-nimbus-invocation-id";

/// Headers Nimbus sets on deliveries (`x-nimbus-invocation-id`, `-attempt`): dropped from
/// what a client sends.
const RESERVED_PREFIX: &str = "x-nimbus-invocation-";

/// How long a deferred request's body may take to arrive (a client trickling bytes must not
/// hold a connection and a buffer for ever).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A request to be delivered later, read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferred {
    /// The Route (and Service) it was addressed to.
    pub namespace: String,
    pub route: String,
    /// The host it was addressed by (normalized).
    pub host: String,
    pub method: String,
    /// Path and query.
    pub target: String,
    /// End-to-end headers (hop-by-hop ones, `Prefer` and `Content-Length` removed).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why a deferred request was not accepted: the status to answer, and what to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// Shown to the (anonymous) client: what was wrong with the request, nothing internal.
    pub message: String,
}

/// Stores deferred requests (the binary's invocation queue).
#[async_trait]
pub trait Deferrer: Send + Sync + 'static {
    /// Store `request` durably; returns its id once stored.
    async fn defer(&self, request: Deferred) -> Result<String, Refusal>;
}

/// Whether the request prefers an asynchronous answer.
pub(crate) fn prefers_async(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|pref| {
                let token = pref.split([';', '=']).next().unwrap_or("").trim();
                token.eq_ignore_ascii_case("respond-async")
            })
        })
    })
}

impl Inner {
    /// Read `req` whole and hand it to `deferrer`; `202` with the id when stored.
    pub(crate) async fn defer(
        &self,
        req: Request<Body>,
        deferrer: &Arc<dyn Deferrer>,
    ) -> Result<Response<Body>, ProxyError> {
        let owner = self.resolve_owner(&req)?;
        let (mut parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_DEFERRED_BODY) {
            return Ok(too_large());
        }
        let read = Limited::new(body, MAX_DEFERRED_BODY).collect();
        let body = match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Err(_elapsed) => {
                return Ok(plain(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body did not arrive within {BODY_TIMEOUT:?}\n"),
                ));
            }
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Ok(too_large()),
            Ok(Err(e)) => {
                return Ok(plain(
                    StatusCode::BAD_REQUEST,
                    format!("the request body could not be read: {e}\n"),
                ));
            }
        };
        strip_hop_by_hop(&mut parts.headers, false);
        parts.headers.remove("prefer");
        parts.headers.remove(header::CONTENT_LENGTH);
        // Headers only Nimbus sets on deliveries (the invocation's id) are not the client's.
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| !name.as_str().starts_with(RESERVED_PREFIX))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let deferred = Deferred {
            namespace: owner.0,
            route: owner.1,
            host: owner.2,
            method: parts.method.as_str().to_owned(),
            target,
            headers,
            body,
        };
        match deferrer.defer(deferred).await {
            Ok(id) => {
                let body = format!("{{\"id\":\"{id}\"}}\n");
                let mut resp = Response::new(Body::from(Bytes::from(body)));
                *resp.status_mut() = StatusCode::ACCEPTED;
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                h.insert(
                    "preference-applied",
                    HeaderValue::from_static("respond-async"),
                );
                if let Ok(value) = HeaderValue::from_str(&id) {
                    h.insert(INVOCATION_ID, value);
                }
                Ok(resp)
            }
            Err(refusal) => Ok(plain(refusal.status, format!("{}\n", refusal.message))),
        }
    }
}

fn too_large() -> Response<Body> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("an asynchronous request's body may have at most {MAX_DEFERRED_BODY} bytes\n"),
    )
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_respond_async_preference_among_others() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("prefer", HeaderValue::from_str(v).unwrap());
            }
            prefers_async(&h)
        };
        assert!(with(&["respond-async"]));
        assert!(with(&["wait=10, Respond-Async"]));
        assert!(with(&["return=minimal", "respond-async; x=1"]));
        assert!(!with(&["return=representation"]));
        assert!(!with(&["respond-asynchronously"]));
        assert!(!with(&[]));
    }
}
