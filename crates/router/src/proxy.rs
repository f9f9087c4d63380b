//! The data path's phases, in order, for one request (see the crate docs for the drawing):
//! resolve route → pick revision → wait for capacity → pick instance → proxy → record metrics.
//!
//! Each phase is one method; `proxy` only strings them together. Nothing here locks: the table
//! and the endpoints are `ArcSwap` loads and the counters are atomics.

use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use nimbus_runtime::{Endpoint, Protocol, RevisionEndpoints};

use crate::body::Body;
use crate::error::ProxyError;
use crate::headers;
use crate::host::{normalize_host, request_host};
use crate::router::Inner;
use crate::stats::InFlight;
use crate::table::{Route, Target};
use crate::upgrade::splice_response;
use crate::upstream::SendError;

// === impl Inner (the phases) ===

impl Inner {
    /// Runs every phase for one request.
    pub(crate) async fn proxy(
        &self,
        req: Request<Body>,
        client: SocketAddr,
    ) -> Result<Response<Body>, ProxyError> {
        let route = self.resolve_route(&req)?;
        let target = route.pick_target();
        let in_flight = target.stats.start(); // record metrics: counted until the response ends
        let ready = self.wait_for_capacity(target)?;
        let endpoint = self.pick_instance(target, &ready)?;
        self.forward(req, client, target, endpoint, in_flight).await
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

    /// Phase 3 — wait for capacity. For now this only checks for a ready instance; the
    /// activator will wait here (bounded by the revision's timeout) for one to appear.
    fn wait_for_capacity(&self, target: &Target) -> Result<Arc<RevisionEndpoints>, ProxyError> {
        match self.endpoints.get(&target.revision) {
            Some(ready) if !ready.ready.is_empty() => Ok(ready),
            _ => Err(ProxyError::NoReadyInstance {
                revision: target.revision.clone(),
            }),
        }
    }

    /// Phase 4 — pick instance: round-robin over the ready instances.
    fn pick_instance<'e>(
        &self,
        target: &Target,
        ready: &'e RevisionEndpoints,
    ) -> Result<&'e Endpoint, ProxyError> {
        target
            .pick_instance(&ready.ready)
            .ok_or_else(|| ProxyError::NoReadyInstance {
                revision: target.revision.clone(),
            })
    }

    /// Phase 5 — proxy: send the rewritten request, wait (bounded) for the response head, and
    /// stream the response body back (or splice the connections after a protocol switch).
    async fn forward(
        &self,
        mut req: Request<Body>,
        client: SocketAddr,
        target: &Target,
        endpoint: &Endpoint,
        in_flight: InFlight,
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade =
            endpoint.protocol == Protocol::Http1 && headers::is_upgrade_request(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let req = upstream_request(req, client, endpoint, upgrade)?;
        let mut resp = self.exchange(req, target, endpoint).await?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return match client_upgrade {
                Some(on_client) => Ok(splice_response(resp, on_client, in_flight)),
                None => Err(instance_error(
                    target,
                    endpoint,
                    "unrequested protocol switch".into(),
                )),
            };
        }
        headers::strip_hop_by_hop(resp.headers_mut(), false);
        Ok(resp.map(|body| Body::from(body).with_in_flight(in_flight)))
    }

    /// Sends the request and waits for the response head, at most the revision's timeout.
    async fn exchange(
        &self,
        req: Request<Body>,
        target: &Target,
        endpoint: &Endpoint,
    ) -> Result<Response<Incoming>, ProxyError> {
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
    upgrade: bool,
) -> Result<Request<Body>, ProxyError> {
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
        let out = upstream_request(req, client(), &endpoint(Protocol::Http1), false).unwrap();
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
        let out = upstream_request(req, client(), &endpoint(Protocol::Http1), false).unwrap();
        assert_eq!(out.headers()["host"], "hello.example");
    }

    #[test]
    fn h2c_request_carries_the_clients_host_as_authority() {
        let req = Request::get("/svc/Method")
            .header("host", "grpc.example")
            .body(Body::empty());
        let out =
            upstream_request(req.unwrap(), client(), &endpoint(Protocol::H2c), false).unwrap();
        assert_eq!(out.uri(), "http://grpc.example/svc/Method");
        assert_eq!(out.version(), Version::HTTP_2);
        assert!(!out.headers().contains_key("host"));
    }
}
