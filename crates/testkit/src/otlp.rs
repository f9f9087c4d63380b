//! An OTLP/HTTP receiver for tests, on the official protobuf definitions
//! (`opentelemetry-proto`): it takes `POST /v1/traces` with an `ExportTraceServiceRequest` in
//! protobuf, as a collector's `otlphttp` receiver does, keeps the spans, and answers with an
//! empty `ExportTraceServiceResponse`. Debian packages no OpenTelemetry Collector; this is the
//! real wire format, decoded by the generated types.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;

/// One received span, with ids as lowercase hex (empty for no parent).
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    pub service_name: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// OTLP's `SpanKind` number (1 internal, 2 server, 3 client).
    pub kind: i32,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// Attribute values rendered as text (`true`, `200`, `GET`).
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The value of attribute `key`, as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        let found = self.attributes.iter().find(|(k, _)| k == key);
        found.map(|(_, v)| v.as_str())
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// A receiver listening on a loopback port of its own until dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Spans,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Listens on 127.0.0.1 on a port the OS picks.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let spans = Spans::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(Arc::clone(&spans));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, spans, task })
    }

    /// The base URL to give an exporter (`--otlp-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The spans received, once `done` holds for them (polled until `timeout`).
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> anyhow::Result<Vec<ReceivedSpan>> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if Instant::now() > deadline {
                let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
                bail!("no {what} within {timeout:?}; spans received: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn export(State(spans): State<Spans>, body: Bytes) -> axum::response::Response {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not OTLP: {e}")).into_response(),
    };
    let received = flatten(request);
    spans
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(received);
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], answer).into_response()
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let service_name = attributes(&resource.attributes)
            .into_iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v)
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            out.push(ReceivedSpan {
                service_name: service_name.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                kind: span.kind,
                start_unix_nano: span.start_time_unix_nano,
                end_unix_nano: span.end_time_unix_nano,
                attributes: attributes(&span.attributes),
            });
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
