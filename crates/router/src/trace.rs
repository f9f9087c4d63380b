//! A request's OpenTelemetry spans, made only when tracing is on and the sampler keeps the
//! request (tracing off costs one branch; a request sampled out by ratio 0, a `traceparent`
//! lookup; one sampled out by another ratio, the SDK sampler's call and no attribute):
//!
//! ```text
//!  routing (server: method, url.path, server.address/port, status, nimbus.revision,
//!   │       nimbus.cold_start; continues the client's traceparent)
//!   ├─ activator.wait            the request waited in the revision's queue
//!   │   └─ cold_start            … and the revision had no ready instance
//!   │       ├─ cold_start.decide    until the runtime began an instance
//!   │       ├─ cold_start.start     until its process (or component) started
//!   │       └─ cold_start.ready     until it was ready and the request had it
//!   └─ instance.call (client)    until the instance's response head; the instance gets a
//!                                traceparent naming this span as its parent
//! ```
//!
//! Spans carry the request's method, path (never its query), host and status, nothing of
//! its headers or body. They end with the response head (the body streams afterwards).

use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use nimbus_runtime::{Endpoint, RevisionKey, StartMilestones};
use nimbus_traces::opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use nimbus_traces::opentelemetry::{Context, KeyValue};
use nimbus_traces::{TRACEPARENT, TraceParent, Tracer, Tracing, names, traceparent_value};
use tokio::time::Instant;

use crate::body::Body;
use crate::error::ProxyError;
use crate::host::{normalize_host, request_host};

type SdkSpan = <Tracer as nimbus_traces::opentelemetry::trace::Tracer>::Span;

/// The spans of one sampled request: the `routing` span, in a context its children hang from.
pub(crate) struct RequestTrace {
    tracer: Tracer,
    cx: Context,
}

/// The `instance.call` span of a request on its way to an instance.
pub(crate) struct InstanceCall(SdkSpan);

// === impl RequestTrace ===

impl RequestTrace {
    /// Starts the request's `routing` span, continuing the client's `traceparent` when it has
    /// a valid one. `None` when the sampler drops the request (asked only when it might keep
    /// it: with ratio 0 a request without a sampled caller costs a header lookup).
    pub fn start<B>(tracing: &Tracing, req: &Request<B>) -> Option<Self> {
        let remote = TraceParent::remote_context(req.headers());
        if !tracing.may_sample(remote.as_ref()) {
            return None;
        }
        let parent = match remote {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let tracer = &tracing.tracer;
        let mut span = tracer
            .span_builder(names::ROUTING)
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, &parent);
        if !span.is_recording() {
            return None;
        }
        span.set_attributes(request_attributes(req));
        Some(Self {
            tracer: tracer.clone(),
            cx: parent.with_span(span),
        })
    }

    /// The revision the request was sent to.
    pub fn revision(&self, revision: &RevisionKey) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(names::NIMBUS_REVISION, revision.name.clone()));
        span.set_attribute(KeyValue::new(
            names::K8S_NAMESPACE_NAME,
            revision.namespace.clone(),
        ));
    }

    /// The request waited `waited` (ending now) for an instance; `cold`: the revision had
    /// none ready, and `milestones` are when its runtime began and launched the instance.
    pub fn waited(&self, waited: Duration, cold: bool, milestones: StartMilestones) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(names::NIMBUS_COLD_START, cold));
        if waited.is_zero() {
            return;
        }
        let clock = Clock::now();
        let end = clock.instant;
        let start = end.checked_sub(waited).unwrap_or(end);
        let wait = self.child(names::ACTIVATOR_WAIT, clock.at(start), &self.cx);
        if cold {
            let wait_cx = self.cx.with_span(wait);
            let cold_start = self.child(names::COLD_START, clock.at(start), &wait_cx);
            let cold_cx = wait_cx.with_span(cold_start);
            self.phases(&cold_cx, &clock, start, milestones);
            cold_cx.span().end_with_timestamp(clock.wall);
            wait_cx.span().end_with_timestamp(clock.wall);
        } else {
            let mut wait = wait;
            wait.end_with_timestamp(clock.wall);
        }
    }

    /// Starts the `instance.call` span and names it as the parent in the request's
    /// `traceparent` (the client's `tracestate` goes on as it came).
    pub fn instance_call(&self, req: &mut Request<Body>, endpoint: &Endpoint) -> InstanceCall {
        let mut attributes = vec![
            KeyValue::new(names::HTTP_REQUEST_METHOD, req.method().as_str().to_owned()),
            KeyValue::new(names::NIMBUS_INSTANCE, endpoint.id.clone()),
        ];
        if let Some(addr) = endpoint.addr() {
            attributes.push(KeyValue::new(names::SERVER_ADDRESS, addr.ip().to_string()));
            attributes.push(KeyValue::new(names::SERVER_PORT, i64::from(addr.port())));
        }
        let span = self
            .tracer
            .span_builder(names::INSTANCE_CALL)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.cx);
        let value = traceparent_value(span.span_context());
        req.headers_mut().insert(TRACEPARENT, value);
        InstanceCall(span)
    }

    /// Ends the `routing` span with the status the client gets.
    pub fn end(self, result: &Result<Response<Body>, ProxyError>) {
        let status = match result {
            Ok(resp) => resp.status(),
            Err(err) => err.status(),
        };
        let span = self.cx.span();
        let (code, error) = status_of(status, true);
        span.set_attribute(code);
        if let Some(error) = error {
            span.set_status(error);
        }
        span.end();
    }

    /// The three cold-start phases between `start` and now, split at the milestones (a
    /// milestone from before the wait, or none, counts as the wait's start).
    fn phases(&self, cold_cx: &Context, clock: &Clock, start: Instant, m: StartMilestones) {
        let end = clock.instant;
        let clamp = |at: Option<std::time::Instant>, floor: Instant| {
            at.map(Instant::from_std).unwrap_or(floor).clamp(floor, end)
        };
        let scheduled = clamp(m.scheduled, start);
        let launched = clamp(m.launched, scheduled);
        for (name, from, to) in [
            (names::COLD_START_DECIDE, start, scheduled),
            (names::COLD_START_START, scheduled, launched),
            (names::COLD_START_READY, launched, end),
        ] {
            let mut phase = self.child(name, clock.at(from), cold_cx);
            phase.end_with_timestamp(clock.at(to));
        }
    }

    fn child(&self, name: &'static str, start: SystemTime, parent: &Context) -> SdkSpan {
        self.tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(start)
            .start_with_context(&self.tracer, parent)
    }
}

// === impl InstanceCall ===

impl InstanceCall {
    /// Ends the span with the instance's status, or as failed when it gave no response.
    pub fn end(mut self, status: Option<StatusCode>) {
        let Some(status) = status else {
            self.0
                .set_status(Status::error("no response from the instance"));
            return self.0.end();
        };
        let (code, error) = status_of(status, false);
        self.0.set_attribute(code);
        if let Some(error) = error {
            self.0.set_status(error);
        }
        self.0.end();
    }
}

/// The HTTP semantic conventions' request attributes: method, path (no query), host and port.
fn request_attributes<B>(req: &Request<B>) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new(names::HTTP_REQUEST_METHOD, req.method().as_str().to_owned()),
        KeyValue::new(names::URL_PATH, req.uri().path().to_owned()),
    ];
    if let Some(raw) = request_host(req) {
        let host = normalize_host(raw).into_owned();
        let port = raw.rsplit_once(':').and_then(|(h, p)| {
            let bracketed_v6 = h.starts_with('[') && h.ends_with(']');
            (!h.contains(':') || bracketed_v6).then(|| p.parse::<u16>().ok())?
        });
        attributes.push(KeyValue::new(names::SERVER_ADDRESS, host));
        if let Some(port) = port {
            attributes.push(KeyValue::new(names::SERVER_PORT, i64::from(port)));
        }
    }
    attributes
}

/// `http.response.status_code`, and the error status the conventions give: 5xx for a server
/// span, 4xx and 5xx for a client span (description left empty: the code says it).
fn status_of(status: StatusCode, server: bool) -> (KeyValue, Option<Status>) {
    let code = KeyValue::new(names::HTTP_RESPONSE_STATUS_CODE, i64::from(status.as_u16()));
    let failed = status.is_server_error() || (!server && status.is_client_error());
    (code, failed.then(|| Status::error("")))
}

/// One reading of both clocks, so instants converted to wall-clock times keep their order
/// and distances exactly.
struct Clock {
    instant: Instant,
    wall: SystemTime,
}

impl Clock {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of `at` (at most now).
    fn at(&self, at: Instant) -> SystemTime {
        self.wall - self.instant.saturating_duration_since(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(uri: &str, host: Option<&str>) -> Vec<(String, String)> {
        let mut req = Request::get(uri);
        if let Some(host) = host {
            req = req.header("host", host);
        }
        let req = req.body(()).unwrap();
        let kvs = request_attributes(&req);
        kvs.iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    fn get<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        let found = attrs.iter().find(|(k, _)| k == key);
        found.map(|(_, v)| v.as_str())
    }

    #[test]
    fn host_and_port_are_split_and_the_query_is_left_out() {
        let a = attributes("/a/b?secret=1", Some("Fn.Example:8080"));
        assert_eq!(get(&a, names::URL_PATH), Some("/a/b"));
        assert_eq!(get(&a, names::SERVER_ADDRESS), Some("fn.example"));
        assert_eq!(get(&a, names::SERVER_PORT), Some("8080"));
        assert!(!format!("{a:?}").contains("secret"));
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets_and_a_missing_port_is_no_attribute() {
        let a = attributes("/", Some("[::1]:9000"));
        assert_eq!(get(&a, names::SERVER_ADDRESS), Some("[::1]"));
        assert_eq!(get(&a, names::SERVER_PORT), Some("9000"));
        let a = attributes("http://fn.example/x", None);
        assert_eq!(get(&a, names::SERVER_ADDRESS), Some("fn.example"));
        assert_eq!(get(&a, names::SERVER_PORT), None);
        let a = attributes("/", None);
        assert_eq!(get(&a, names::SERVER_ADDRESS), None);
    }

    #[test]
    fn only_server_errors_fail_a_server_span_and_client_errors_a_client_span() {
        assert!(status_of(StatusCode::NOT_FOUND, true).1.is_none());
        assert!(status_of(StatusCode::BAD_GATEWAY, true).1.is_some());
        assert!(status_of(StatusCode::NOT_FOUND, false).1.is_some());
        assert!(status_of(StatusCode::OK, false).1.is_none());
    }
}
