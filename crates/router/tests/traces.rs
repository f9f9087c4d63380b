//! OpenTelemetry spans of the data path, recorded with the SDK's in-memory exporter: a
//! request continues the client's trace, the instance gets a `traceparent` naming the
//! `instance.call` span, a cold start has its phases, sampled-out requests make no span and
//! pass the client's `traceparent` on untouched, and no query or header value is recorded.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use nimbus_router::{Body, Router};
use nimbus_runtime::{
    Endpoint, EndpointRegistry, LocalBody, LocalHandle, LocalResponse, LocalService, Milestone,
    RevisionEndpoints, RevisionKey,
};
use nimbus_traces::opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use nimbus_traces::{Sampling, Tracing, names};
use opentelemetry_sdk::trace::InMemorySpanExporter;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData};
use support::*;

const HOST: &str = "fn.default.localhost";
const REV: &str = "fn-00001";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Answers with the `traceparent` and `tracestate` it got.
struct EchoTrace;

impl LocalService for EchoTrace {
    fn call(&self, req: Request<LocalBody>) -> LocalResponse {
        let get = |name| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let out = format!("{}\n{}\n", get("traceparent"), get("tracestate"));
        Box::pin(async move { Response::new(text(out)) })
    }
}

struct Traced {
    router: Router,
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

/// A router tracing with the SDK sampler of this ratio into an in-memory exporter.
fn traced(ratio: f64, parent_based: bool) -> Traced {
    let exporter = InMemorySpanExporter::default();
    let own = if ratio > 0.0 {
        Sampler::TraceIdRatioBased(ratio)
    } else {
        Sampler::AlwaysOff
    };
    let sampler = match parent_based {
        true => Sampler::ParentBased(Box::new(own)),
        false => own,
    };
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(exporter.clone())
        .build();
    let tracing = Tracing {
        tracer: provider.tracer("test"),
        sampling: Sampling {
            ratio,
            parent_based,
        },
    };
    let router = Router::with_tracing(EndpointRegistry::new(), test_config(), Some(tracing));
    router.apply(ingress("fn", HOST, &[(REV, 100)], Duration::from_secs(5)));
    Traced {
        router,
        exporter,
        _provider: provider,
    }
}

fn publish(endpoints: &EndpointRegistry) {
    let handle = LocalHandle::new(Arc::new(EchoTrace));
    endpoints.set(
        &RevisionKey::new(NS, REV),
        RevisionEndpoints {
            ready: vec![Endpoint::in_process(format!("{REV}-1"), handle)],
            failure: None,
        },
    );
}

fn client() -> SocketAddr {
    ([192, 0, 2, 10], 40000).into()
}

fn get(traceparent: Option<&str>) -> Request<Body> {
    let mut req = Request::get("/orders/7?token=s3cret")
        .header("host", format!("{HOST}:8080"))
        .header("authorization", "Bearer hush")
        .header("tracestate", "congo=t61rcWkgMzE");
    if let Some(value) = traceparent {
        req = req.header("traceparent", value);
    }
    req.body(Body::empty()).unwrap()
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = within(router.handle(req, client())).await;
    let status = resp.status();
    (status, body_text(resp.into_body()).await)
}

fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {:?}", names_of(spans)))
}

fn names_of(spans: &[SpanData]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_ref()).collect()
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn a_request_continues_the_clients_trace_and_the_instance_gets_the_call_span() {
    let t = traced(0.0, true);
    publish(t.router.endpoints());
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    let (status, body) = call(&t.router, get(Some(&incoming))).await;
    assert_eq!(status, StatusCode::OK);
    let spans = t.exporter.get_finished_spans().unwrap();
    assert_eq!(names_of(&spans).len(), 2, "{:?}", names_of(&spans));
    let routing = span(&spans, names::ROUTING);
    let call_span = span(&spans, names::INSTANCE_CALL);
    let trace_id = TraceId::from_hex(TRACE).unwrap();
    assert_eq!(routing.span_context.trace_id(), trace_id);
    assert_eq!(routing.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert_eq!(routing.span_kind, SpanKind::Server);
    assert_eq!(call_span.span_context.trace_id(), trace_id);
    assert_eq!(call_span.parent_span_id, routing.span_context.span_id());
    assert_eq!(call_span.span_kind, SpanKind::Client);
    let sent = format!("00-{TRACE}-{:016x}-01", call_span.span_context.span_id());
    assert_eq!(body, format!("{sent}\ncongo=t61rcWkgMzE\n"));
    assert_eq!(
        attr(routing, names::HTTP_REQUEST_METHOD).as_deref(),
        Some("GET")
    );
    assert_eq!(attr(routing, names::URL_PATH).as_deref(), Some("/orders/7"));
    assert_eq!(attr(routing, names::SERVER_ADDRESS).as_deref(), Some(HOST));
    assert_eq!(attr(routing, names::SERVER_PORT).as_deref(), Some("8080"));
    assert_eq!(
        attr(routing, names::HTTP_RESPONSE_STATUS_CODE).as_deref(),
        Some("200")
    );
    assert_eq!(attr(routing, names::NIMBUS_REVISION).as_deref(), Some(REV));
    assert_eq!(
        attr(routing, names::NIMBUS_COLD_START).as_deref(),
        Some("false")
    );
    assert_eq!(
        attr(call_span, names::HTTP_RESPONSE_STATUS_CODE).as_deref(),
        Some("200")
    );
}

#[tokio::test]
async fn spans_hold_no_query_and_no_header_value() {
    let t = traced(1.0, false);
    publish(t.router.endpoints());
    call(&t.router, get(None)).await;
    let spans = t.exporter.get_finished_spans().unwrap();
    for span in &spans {
        let all = format!("{:?}", span.attributes);
        for secret in ["s3cret", "token", "hush", "Bearer", "congo"] {
            assert!(!all.contains(secret), "{} leaks {secret}: {all}", span.name);
        }
    }
}

#[tokio::test]
async fn a_sampled_out_request_makes_no_span_and_keeps_the_clients_traceparent() {
    let t = traced(0.0, true);
    publish(t.router.endpoints());
    let incoming = format!("00-{TRACE}-{PARENT}-00");
    let (_, body) = call(&t.router, get(Some(&incoming))).await;
    assert!(body.starts_with(&format!("{incoming}\n")), "{body}");
    let (_, body) = call(&t.router, get(None)).await;
    assert!(body.starts_with('\n'), "no traceparent invented: {body}");
    assert!(t.exporter.get_finished_spans().unwrap().is_empty());
}

#[tokio::test]
async fn a_cold_start_has_its_wait_and_phases_in_order() {
    let t = traced(1.0, false);
    let endpoints = t.router.endpoints().clone();
    // The activator plays the scaler and the runtime: it begins an instance at once, whose
    // process starts 30 ms later and is ready 30 ms after that.
    t.router.set_activator(Arc::new(move |rev: &RevisionKey| {
        let (endpoints, rev) = (endpoints.clone(), rev.clone());
        endpoints.note_start(&rev, Milestone::Scheduled);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            endpoints.note_start(&rev, Milestone::Launched);
            tokio::time::sleep(Duration::from_millis(30)).await;
            publish(&endpoints);
        });
    }));
    let (status, _) = call(&t.router, get(None)).await;
    assert_eq!(status, StatusCode::OK);
    let spans = t.exporter.get_finished_spans().unwrap();
    let routing = span(&spans, names::ROUTING);
    let wait = span(&spans, names::ACTIVATOR_WAIT);
    let cold = span(&spans, names::COLD_START);
    assert_eq!(wait.parent_span_id, routing.span_context.span_id());
    assert_eq!(cold.parent_span_id, wait.span_context.span_id());
    assert_eq!(
        attr(routing, names::NIMBUS_COLD_START).as_deref(),
        Some("true")
    );
    let phases = [
        names::COLD_START_DECIDE,
        names::COLD_START_START,
        names::COLD_START_READY,
    ]
    .map(|name| span(&spans, name));
    let mut at = cold.start_time;
    for phase in phases {
        assert_eq!(phase.parent_span_id, cold.span_context.span_id());
        assert_eq!(
            phase.start_time, at,
            "{} starts where the last ended",
            phase.name
        );
        assert!(phase.end_time >= phase.start_time);
        at = phase.end_time;
    }
    assert_eq!(at, cold.end_time);
    let took = |s: &SpanData| s.end_time.duration_since(s.start_time).unwrap();
    assert!(
        took(phases[1]) >= Duration::from_millis(25),
        "start: {:?}",
        took(phases[1])
    );
    assert!(
        took(phases[2]) >= Duration::from_millis(25),
        "ready: {:?}",
        took(phases[2])
    );
    let call_span = span(&spans, names::INSTANCE_CALL);
    assert_eq!(call_span.parent_span_id, routing.span_context.span_id());
}

#[tokio::test]
async fn an_unknown_host_is_a_404_server_span() {
    let t = traced(1.0, false);
    let req = Request::get("/")
        .header("host", "nobody.example")
        .body(Body::empty());
    let (status, _) = call(&t.router, req.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let spans = t.exporter.get_finished_spans().unwrap();
    assert_eq!(names_of(&spans), [names::ROUTING]);
    assert_eq!(
        attr(&spans[0], names::HTTP_RESPONSE_STATUS_CODE).as_deref(),
        Some("404")
    );
}
