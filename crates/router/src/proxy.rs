//! The data path's phases, in order, for one request (see the crate docs for the drawing):
//! resolve route → pick revision → wait for capacity → pick instance → proxy → record metrics.
//!
//! Each phase is one method; `proxy` only strings them together. When an instance has room
//! nothing here locks or waits: the table and the endpoints are `ArcSwap` loads and the
//! counters are atomics. Waiting for capacity lives in `activator.rs`, the instance pick in
//! `capacity.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use nimbus_runtime::{Endpoint, Protocol};

use crate::activator::{COLD_START_HEADER, Waited};
use crate::body::Body;
use crate::capacity::{Lease, Permit};
use crate::error::ProxyError;
use crate::headers;
use crate::host::{normalize_host, request_host};
use crate::router::Inner;
use crate::table::{Route, Target};
use crate::upgrade::splice_response;
use crate::upstream::SendError;

static COLD_START: HeaderName = HeaderName::from_static(COLD_START_HEADER);

// === impl Inner (the phases) ===

impl Inner {
    /// Runs every phase for one request.
    pub(crate) async fn proxy(
        &self,
        mut req: Request<Body>,
        client: SocketAddr,
    ) -> Result<Response<Body>, ProxyError> {
        let route = self.resolve_route(&req)?;
        let target = route.pick_target();
        let in_flight = target.capacity.stats.start(); // record metrics: until the response ends
        let client_upgrade =
            headers::is_upgrade_request(req.headers()).then(|| hyper::upgrade::on(&mut req));
        let mut waited = Waited::default();
        let lease = self.wait_for_capacity(target, None, &mut waited).await?;
        let sent = self.send(req, client, target, lease, &mut waited).await;
        if waited.cold {
            target.capacity.stats.record_cold_start(waited.total);
        }
        let (resp, lease) = sent?;
        let permit = lease.into_permit(in_flight);
        let mut resp = respond(resp, client_upgrade, permit, target)?;
        if let Some(value) = waited.cold_start_header() {
            resp.headers_mut().insert(&COLD_START, value);
        }
        Ok(resp)
    }

    /// Phase 1 — resolve route: the Route serving the request's host.
    fn resolve_route<B>(&self, req: &Request<B>) -> Result<Arc<Route>, ProxyError> {
        let raw = request_host(req).ok_or(ProxyError::MissingHost)?;
        let table = self.table.load();
        match table.route(raw) {
            Some(route) => Ok(Arc::clone(route)),
            None => Err(ProxyError::UnknownHost {
                host: normalize_host(raw).into_owned(),
            }),
        }
    }

    /// Phase 5 — proxy: sends the rewritten request to the leased instance and waits (bounded)
    /// for the response head. A request without a body whose instance refuses the connection
    /// (it died before the registry caught up) is sent once more, to another instance.
    async fn send(
        &self,
        req: Request<Body>,
        client: SocketAddr,
        target: &Target,
        lease: Lease,
        waited: &mut Waited,
    ) -> Result<(Response<Incoming>, Lease), ProxyError> {
        let again = has_no_body(&req).then(|| copy_head(&req));
        match self.exchange(req, client, target, lease.endpoint()).await {
            Ok(resp) => Ok((resp, lease)),
            Err(err @ ProxyError::Connect { .. }) if again.is_some() => {
                tracing::debug!(error = %err, "retrying on another instance");
                let dead = lease.endpoint().clone();
                drop(lease);
                let lease = self.wait_for_capacity(target, Some(&dead), waited).await?;
                let req = again.expect("checked by the guard");
                let resp = self.exchange(req, client, target, lease.endpoint()).await?;
                Ok((resp, lease))
            }
            Err(err) => Err(err),
        }
    }

    /// Sends the request and waits for the response head, at most the revision's timeout.
    async fn exchange(
        &self,
        req: Request<Body>,
        client: SocketAddr,
        target: &Target,
        endpoint: &Endpoint,
    ) -> Result<Response<Incoming>, ProxyError> {
        let req = upstream_request(req, client, endpoint)?;
        let send = async {
            match endpoint.protocol {
                Protocol::Http1 => self.upstream.send_http1(req).await,
                Protocol::H2c => self.upstream.send_h2c(endpoint.addr, req).await,
            }
        };
        match tokio::time::timeout(target.timeout, send).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(SendError::Connect(source))) => Err(ProxyError::Connect {
                revision: target.revision.clone(),
                addr: endpoint.addr,
                source,
            }),
            Ok(Err(SendError::Exchange(source))) => Err(instance_error(target, endpoint, source)),
            Err(_) => Err(ProxyError::Timeout {
                revision: target.revision.clone(),
                timeout: target.timeout,
            }),
        }
    }
}

/// Phase 5, the way back: streams the response body to the client holding the permit (or
/// splices the connections after a protocol switch).
fn respond(
    mut resp: Response<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    permit: Permit,
    target: &Target,
) -> Result<Response<Body>, ProxyError> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return match client_upgrade {
            Some(on_client) => Ok(splice_response(resp, on_client, permit)),
            None => Err(ProxyError::Instance {
                revision: target.revision.clone(),
                addr: permit.endpoint().addr,
                source: "unrequested protocol switch".into(),
            }),
        };
    }
    headers::strip_hop_by_hop(resp.headers_mut(), false);
    Ok(resp.map(|body| Body::from(body).with_permit(permit)))
}

/// Whether the request carries no body, so it can be sent again from a copy of its head:
/// `Content-Length: 0`, or a GET/HEAD/OPTIONS/DELETE without framing headers whose body is
/// already at its end.
fn has_no_body(req: &Request<Body>) -> bool {
    use http_body::Body as _;
    let headers = req.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return false;
    }
    match headers.get(header::CONTENT_LENGTH) {
        Some(length) => length.as_bytes() == b"0",
        None => {
            let bodiless = [Method::GET, Method::HEAD, Method::OPTIONS, Method::DELETE];
            bodiless.contains(req.method()) && req.body().is_end_stream()
        }
    }
}

/// A copy of a body-less request (its head; the body is empty).
fn copy_head(req: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

fn instance_error(
    target: &Target,
    endpoint: &Endpoint,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> ProxyError {
    ProxyError::Instance {
        revision: target.revision.clone(),
        addr: endpoint.addr,
        source,
    }
}

/// Rewrites a client request for the instance: hop-by-hop headers out, forwarding headers in,
/// the original `Host` kept, and the URI pointed at the instance (HTTP/1.1) or carrying the
/// client's host as `:authority` (h2c).
fn upstream_request(
    req: Request<Body>,
    client: SocketAddr,
    endpoint: &Endpoint,
) -> Result<Request<Body>, ProxyError> {
    let upgrade =
        endpoint.protocol == Protocol::Http1 && headers::is_upgrade_request(req.headers());
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    headers::add_forwarding(&mut parts.headers, client.ip());
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let authority = match endpoint.protocol {
        Protocol::Http1 => {
            keep_host_header(&mut parts.headers, parts.uri.authority());
            parts.version = Version::HTTP_11;
            addr_authority(endpoint.addr)?
        }
        Protocol::H2c => {
            let host = client_authority(&parts.uri, &parts.headers);
            parts.headers.remove(header::HOST);
            parts.version = Version::HTTP_2;
            match host {
                Some(host) => host,
                None => addr_authority(endpoint.addr)?,
            }
        }
    };
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    uri.path_and_query = Some(path);
    parts.uri = Uri::from_parts(uri).map_err(|e| ProxyError::InvalidTarget(e.to_string()))?;
    Ok(Request::from_parts(parts, body))
}

/// HTTP/2 clients send `:authority` instead of `Host`; HTTP/1.1 instances need `Host`.
fn keep_host_header(headers: &mut http::HeaderMap, authority: Option<&Authority>) {
    if headers.contains_key(header::HOST) {
        return;
    }
    if let Some(value) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
        headers.insert(header::HOST, value);
    }
}

fn client_authority(uri: &Uri, headers: &http::HeaderMap) -> Option<Authority> {
    if let Some(authority) = uri.authority() {
        return Some(authority.clone());
    }
    let host = headers.get(header::HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}

fn addr_authority(addr: SocketAddr) -> Result<Authority, ProxyError> {
    Authority::try_from(addr.to_string()).map_err(|e| ProxyError::InvalidTarget(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(protocol: Protocol) -> Endpoint {
        Endpoint {
            id: "i1".into(),
            addr: ([127, 0, 0, 1], 9000).into(),
            protocol,
        }
    }

    fn client() -> SocketAddr {
        ([10, 0, 0, 7], 55555).into()
    }

    #[test]
    fn http1_request_goes_to_the_instance_with_the_clients_host() {
        let req = Request::get("/p?q=1")
            .header("host", "Hello.Example:8080")
            .header("traceparent", "00-1-2-01")
            .body(Body::empty())
            .unwrap();
        let out = upstream_request(req, client(), &endpoint(Protocol::Http1)).unwrap();
        assert_eq!(out.uri(), "http://127.0.0.1:9000/p?q=1");
        assert_eq!(out.version(), Version::HTTP_11);
        assert_eq!(out.headers()["host"], "Hello.Example:8080");
        assert_eq!(out.headers()["traceparent"], "00-1-2-01");
        assert_eq!(out.headers()["x-forwarded-for"], "10.0.0.7");
    }

    #[test]
    fn h2_client_authority_becomes_the_host_header_for_http1() {
        let req = Request::get("http://hello.example/p")
            .body(Body::empty())
            .unwrap();
        let out = upstream_request(req, client(), &endpoint(Protocol::Http1)).unwrap();
        assert_eq!(out.headers()["host"], "hello.example");
    }

    #[test]
    fn h2c_request_carries_the_clients_host_as_authority() {
        let req = Request::get("/svc/Method")
            .header("host", "grpc.example")
            .body(Body::empty());
        let out = upstream_request(req.unwrap(), client(), &endpoint(Protocol::H2c)).unwrap();
        assert_eq!(out.uri(), "http://grpc.example/svc/Method");
        assert_eq!(out.version(), Version::HTTP_2);
        assert!(!out.headers().contains_key("host"));
    }
}
