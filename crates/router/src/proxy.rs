//! The data path's phases, in order, for one request (see the crate docs for the drawing):
//! resolve route → pick revision → wait for capacity → pick instance → proxy → record metrics.
//!
//! Each phase is one method; `proxy` only strings them together. When an instance has room
//! nothing here locks or waits: the table and the endpoints are `ArcSwap` loads and the
//! counters are atomics. Waiting for capacity lives in `activator.rs`, the instance pick in
//! `capacity.rs`, the revision's request timeouts in `timeouts.rs`: a request's deadline is
//! fixed when it arrives, the wait for capacity and the exchange are bounded by it, and the
//! response body carries its clock to the end.

use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::upgrade::OnUpgrade;
use nimbus_runtime::{Endpoint, Protocol, Transport};

use crate::activator::{COLD_START_HEADER, Waited};
use crate::body::Body;
use crate::capacity::{Lease, Permit};
use crate::error::{ProxyError, TimeoutKind};
use crate::headers::{self, Forwarding};
use crate::host::{normalize_host, request_host};
use crate::pool::Pooled;
use crate::router::Inner;
use crate::table::{Route, Target};
use crate::timeouts::{Deadline, ResponseClock};
use crate::trace::RequestTrace;
use crate::upgrade::splice_response;
use crate::upstream::SendError;

static COLD_START: HeaderName = HeaderName::from_static(COLD_START_HEADER);

// === impl Inner (the phases) ===

impl Inner {
    /// Runs every phase for one request, traced when the router has a tracer and its sampler
    /// keeps the request.
    pub(crate) async fn proxy(
        &self,
        req: Request<Body>,
        client: &Forwarding,
    ) -> Result<Response<Body>, ProxyError> {
        let trace = match &self.tracing {
            None => None,
            Some(tracing) => RequestTrace::start(tracing, &req),
        };
        let result = self.phases(req, client, trace.as_ref()).await;
        if let Some(trace) = trace {
            trace.end(&result);
        }
        result
    }

    /// The phases, in order (`trace`: the request's spans, when it is traced).
    async fn phases(
        &self,
        req: Request<Body>,
        client: &Forwarding,
        trace: Option<&RequestTrace>,
    ) -> Result<Response<Body>, ProxyError> {
        let route = self.resolve_route(&req)?;
        let target = route.pick_target();
        let deadline = Deadline::start(target.timeouts);
        let answered = self.proxy_to(target, req, client, &deadline, trace).await;
        let status = match &answered {
            Ok(resp) => resp.status(),
            Err(err) => err.status(),
        };
        let stats = &target.capacity.stats;
        stats.record_answer(status.as_u16(), deadline.elapsed()); // record metrics
        answered
    }

    /// Phases 3 to 5 for the picked target.
    async fn proxy_to(
        &self,
        target: &Target,
        mut req: Request<Body>,
        client: &Forwarding,
        deadline: &Deadline,
        trace: Option<&RequestTrace>,
    ) -> Result<Response<Body>, ProxyError> {
        let in_flight = target.capacity.stats.start(); // until the response ends
        let client_upgrade =
            headers::is_upgrade_request(req.headers()).then(|| hyper::upgrade::on(&mut req));
        let mut waited = Waited::default();
        let leased = self
            .wait_for_capacity(target, None, deadline.end(), &mut waited)
            .await;
        if let Some(trace) = trace {
            self.trace_wait(trace, target, &waited);
        }
        let lease = leased?;
        let call = trace.map(|trace| trace.instance_call(&mut req, lease.endpoint()));
        let sent = self
            .send(req, client, target, lease, deadline, &mut waited)
            .await;
        if let Some(call) = call {
            call.end(sent.as_ref().ok().map(|(answer, _)| answer.resp.status()));
        }
        if waited.cold {
            target.capacity.stats.record_cold_start(waited.total);
        }
        let (answer, lease) = sent?;
        let permit = lease.into_permit(in_flight);
        let mut resp = respond(answer, client_upgrade, permit, target)?;
        if let Some(value) = waited.cold_start_header() {
            resp.headers_mut().insert(&COLD_START, value);
        }
        Ok(resp)
    }

    /// Records the request's revision and its wait for capacity (with a cold start's phases,
    /// as the runtime noted them) in its trace.
    fn trace_wait(&self, trace: &RequestTrace, target: &Target, waited: &Waited) {
        trace.revision(&target.revision);
        let milestones = match waited.cold {
            true => self.endpoints.start_milestones(&target.revision),
            false => Default::default(),
        };
        trace.waited(waited.total, waited.cold, milestones);
    }

    /// The namespace and name of the Route serving the request's host, and the host.
    pub(crate) fn resolve_owner<B>(
        &self,
        req: &Request<B>,
    ) -> Result<(String, String, String), ProxyError> {
        let route = self.resolve_route(req)?;
        let host = request_host(req).map(normalize_host).unwrap_or_default();
        Ok((
            route.namespace.clone(),
            route.name.clone(),
            host.into_owned(),
        ))
    }

    /// Phase 1 — resolve route: the Route serving the request's host.
    fn resolve_route<B>(&self, req: &Request<B>) -> Result<Arc<Route>, ProxyError> {
        // Two Host fields name two hosts: which one the router and the instance each read
        // could differ (RFC 9112 §3.2: a 400).
        if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
            return Err(ProxyError::InvalidTarget(
                "the request has more than one Host header".into(),
            ));
        }
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
    /// (it died before the registry caught up) is sent once more, to another instance: the
    /// request comes back unsent from the failed connect, so nothing is copied up front.
    async fn send(
        &self,
        mut req: Request<Body>,
        client: &Forwarding,
        target: &Target,
        lease: Lease,
        deadline: &Deadline,
        waited: &mut Waited,
    ) -> Result<(Answer, Lease), ProxyError> {
        let retry_safe = has_no_body(&req);
        upstream_request(&mut req, client, lease.endpoint())?;
        match self.exchange(req, target, &lease, deadline).await {
            Ok(answer) => Ok((answer, lease)),
            Err(Failed {
                error: err @ ProxyError::Connect { .. },
                unsent: Some(mut req),
            }) if retry_safe => {
                tracing::debug!(error = %err, "retrying on another instance");
                let dead = lease.endpoint().clone();
                drop(lease);
                let lease = self
                    .wait_for_capacity(target, Some(&dead), deadline.end(), waited)
                    .await?;
                retarget(&mut req, lease.endpoint())?;
                let answer = self.exchange(*req, target, &lease, deadline).await?;
                Ok((answer, lease))
            }
            Err(failed) => Err(failed.error),
        }
    }

    /// Sends the request and waits for the response head, within the revision's timeouts
    /// (the whole request's, the response start's and the idle one, from `deadline`).
    async fn exchange(
        &self,
        req: Request<Body>,
        target: &Target,
        lease: &Lease,
        deadline: &Deadline,
    ) -> Result<Answer, Failed> {
        let endpoint = lease.endpoint();
        let mut clock = deadline.delivered();
        let sent = tokio::select! {
            biased;
            sent = self.deliver(req, lease) => sent,
            passed = clock.expired() => return Err(timed_out(target, endpoint, &clock, passed).into()),
        };
        match sent {
            Ok((resp, connection)) => {
                clock.started();
                Ok(Answer {
                    resp,
                    connection,
                    clock,
                })
            }
            Err(SendError::Connect(source, unsent)) => Err(Failed {
                error: ProxyError::Connect {
                    revision: target.revision.clone(),
                    instance: endpoint.to_string(),
                    source,
                },
                unsent: Some(unsent),
            }),
            Err(SendError::Exchange(source)) => {
                Err(instance_error(target, endpoint, source).into())
            }
        }
    }

    /// Hands the request to the leased instance as its transport says; resolves with the
    /// response head (and the pooled HTTP/1.1 connection it came over).
    async fn deliver(
        &self,
        req: Request<Body>,
        lease: &Lease,
    ) -> Result<(Response<Body>, Option<Pooled>), SendError> {
        match &lease.endpoint().transport {
            Transport::Tcp {
                addr,
                protocol: Protocol::Http1,
            } => {
                let pool = lease.pool(*addr, self.upstream.http1);
                let (resp, connection) = self.upstream.send_http1(pool, req).await?;
                Ok((resp.map(Body::from), Some(connection)))
            }
            Transport::Tcp {
                addr,
                protocol: Protocol::H2c,
            } => {
                let resp = self.upstream.send_h2c(*addr, req).await?;
                Ok((resp.map(Body::from), None))
            }
            Transport::InProcess(instance) => {
                let resp = instance.call(req.map(Body::into_local)).await;
                Ok((resp.map(Body::from), None))
            }
        }
    }
}

/// The 504 for a response that did not start in time (logged once, with the request id, by
/// `Router::answer`).
fn timed_out(
    target: &Target,
    endpoint: &Endpoint,
    clock: &ResponseClock,
    passed: TimeoutKind,
) -> ProxyError {
    ProxyError::Timeout {
        revision: target.revision.clone(),
        instance: endpoint.to_string(),
        timeout: passed,
        limit: clock.limit(passed),
    }
}

/// An exchange that failed, with its request if it was never sent.
struct Failed {
    error: ProxyError,
    unsent: Option<Box<Request<Body>>>,
}

impl From<ProxyError> for Failed {
    fn from(error: ProxyError) -> Self {
        Self {
            error,
            unsent: None,
        }
    }
}

impl From<Failed> for ProxyError {
    fn from(failed: Failed) -> Self {
        failed.error
    }
}

/// The instance's response head, the pooled HTTP/1.1 connection it came over, and the clock
/// of the limits on the rest of it.
struct Answer {
    resp: Response<Body>,
    connection: Option<Pooled>,
    clock: ResponseClock,
}

/// Phase 5, the way back: streams the response body to the client holding the permit and the
/// connection (back to its pool when the body ends), or splices the connections after a
/// protocol switch (the instance's connection then belongs to the splice).
fn respond(
    answer: Answer,
    client_upgrade: Option<OnUpgrade>,
    permit: Permit,
    target: &Target,
) -> Result<Response<Body>, ProxyError> {
    let Answer {
        mut resp,
        connection,
        clock,
    } = answer;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Only a connection can switch protocols: an in-process instance has none.
        let client_upgrade = client_upgrade.filter(|_| permit.endpoint().addr().is_some());
        return match client_upgrade {
            Some(on_client) => Ok(splice_response(resp, on_client, permit)),
            None => Err(ProxyError::Instance {
                revision: target.revision.clone(),
                instance: permit.endpoint().to_string(),
                source: "unrequested protocol switch".into(),
            }),
        };
    }
    headers::strip_hop_by_hop(resp.headers_mut(), false);
    Ok(resp.map(|body| {
        let body = body.with_permit(permit).with_clock(clock);
        match connection {
            Some(connection) => body.with_connection(connection),
            None => body,
        }
    }))
}

/// Whether the request carries no body, so it may be sent again after a failed connect:
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

fn instance_error(
    target: &Target,
    endpoint: &Endpoint,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> ProxyError {
    ProxyError::Instance {
        revision: target.revision.clone(),
        instance: endpoint.to_string(),
        source,
    }
}

/// Rewrites a client request for the instance: hop-by-hop headers out, forwarding headers in,
/// then [`retarget`]ed at the instance.
fn upstream_request(
    req: &mut Request<Body>,
    client: &Forwarding,
    endpoint: &Endpoint,
) -> Result<(), ProxyError> {
    let upgrade = headers::is_upgrade_request(req.headers());
    let headers = req.headers_mut();
    headers::strip_hop_by_hop(headers, upgrade);
    headers::add_forwarding(headers, client);
    retarget(req, endpoint)
}

/// Fits a rewritten request to the instance's protocol: for HTTP/1.1 the original `Host`
/// kept (or made from an HTTP/2 client's `:authority`) and the URI in origin form; for h2c the
/// client's host as `:authority` and no protocol switch. Applying it again for another
/// instance gives the same request as rewriting the original for that one.
fn retarget(req: &mut Request<Body>, endpoint: &Endpoint) -> Result<(), ProxyError> {
    match &endpoint.transport {
        Transport::Tcp {
            protocol: Protocol::H2c,
            addr,
        } => {
            let headers = req.headers_mut();
            if headers.contains_key(header::UPGRADE) {
                headers.remove(header::UPGRADE);
                headers.remove(header::CONNECTION);
            }
            let host = client_authority(req.uri(), req.headers());
            req.headers_mut().remove(header::HOST);
            *req.version_mut() = Version::HTTP_2;
            let authority = match host {
                Some(host) => host,
                None => addr_authority(*addr)?,
            };
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(authority);
            uri.path_and_query = Some(path_of(req.uri()));
            *req.uri_mut() =
                Uri::from_parts(uri).map_err(|e| ProxyError::InvalidTarget(e.to_string()))?;
        }
        // An in-process instance takes the request as an HTTP/1.1 instance would, except that
        // it cannot switch protocols (there is no connection to hand over).
        Transport::Tcp {
            protocol: Protocol::Http1,
            ..
        }
        | Transport::InProcess(_) => {
            if matches!(endpoint.transport, Transport::InProcess(_)) {
                let headers = req.headers_mut();
                if headers.remove(header::UPGRADE).is_some() {
                    headers.remove(header::CONNECTION);
                }
            }
            let authority = req.uri().authority().cloned();
            keep_host_header(req.headers_mut(), authority.as_ref());
            *req.version_mut() = Version::HTTP_11;
            let uri = std::mem::take(req.uri_mut());
            *req.uri_mut() = http1_target(req.method(), uri, endpoint.addr())?;
        }
    }
    Ok(())
}

/// The HTTP/1.1 request target: origin form (`/path?query`, as most clients already send it),
/// or the instance's address for `CONNECT` (authority form) when it has one.
fn http1_target(method: &Method, uri: Uri, addr: Option<SocketAddr>) -> Result<Uri, ProxyError> {
    if let Some(addr) = addr
        && method == Method::CONNECT
    {
        return Ok(Uri::from(addr_authority(addr)?));
    }
    if uri.scheme().is_none() && uri.authority().is_none() && uri.path_and_query().is_some() {
        return Ok(uri);
    }
    Ok(Uri::from(path_of(&uri)))
}

fn path_of(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// The `Host` an HTTP/1.1 instance gets: the request's authority when it has one (an HTTP/2
/// client's `:authority`, or an absolute-form target, which RFC 9112 §3.2.2 says wins over
/// any `Host` the client also sent: the route was chosen by it, so the instance must see the
/// same host), else the client's `Host`.
fn keep_host_header(headers: &mut http::HeaderMap, authority: Option<&Authority>) {
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
        Endpoint::tcp("i1", ([127, 0, 0, 1], 9000).into(), protocol)
    }

    fn client() -> Forwarding {
        Forwarding::new([10, 0, 0, 7].into())
    }

    fn rewritten(mut req: Request<Body>, protocol: Protocol) -> Request<Body> {
        upstream_request(&mut req, &client(), &endpoint(protocol)).unwrap();
        req
    }

    #[test]
    fn http1_request_goes_to_the_instance_with_the_clients_host() {
        let req = Request::get("/p?q=1")
            .header("host", "Hello.Example:8080")
            .header("traceparent", "00-1-2-01")
            .body(Body::empty())
            .unwrap();
        let out = rewritten(req, Protocol::Http1);
        assert_eq!(out.uri(), "/p?q=1");
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
        let out = rewritten(req, Protocol::Http1);
        assert_eq!(out.uri(), "/p");
        assert_eq!(out.headers()["host"], "hello.example");
    }

    /// Issue #13, 10: an absolute-form target routes by its authority, so the instance gets
    /// that host, not the different `Host` the client also sent.
    #[test]
    fn an_absolute_form_target_replaces_the_clients_host_header() {
        let req = Request::get("http://routed.example/p")
            .header("host", "other.example")
            .body(Body::empty())
            .unwrap();
        let out = rewritten(req, Protocol::Http1);
        assert_eq!(out.uri(), "/p");
        assert_eq!(out.headers()["host"], "routed.example");
        assert_eq!(out.headers().get_all("host").iter().count(), 1);
    }

    #[test]
    fn h2c_request_carries_the_clients_host_as_authority() {
        let req = Request::get("/svc/Method")
            .header("host", "grpc.example")
            .body(Body::empty());
        let out = rewritten(req.unwrap(), Protocol::H2c);
        assert_eq!(out.uri(), "http://grpc.example/svc/Method");
        assert_eq!(out.version(), Version::HTTP_2);
        assert!(!out.headers().contains_key("host"));
    }
}
