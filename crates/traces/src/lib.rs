//! OpenTelemetry traces for Nimbus: the W3C Trace Context a request arrives with and the one
//! an instance gets (`context.rs`), the configuration users give as OpenTelemetry defines it
//! (`config.rs`: `--otlp-endpoint`, `OTEL_EXPORTER_OTLP_*`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_SERVICE_NAME`), the SDK pipeline exporting spans by OTLP/HTTP protobuf (`export.rs`),
//! and the names of the spans and attributes the router records ([`names`]).
//!
//! It never decides what a span covers: the router makes its spans with the [`Tracing`] it is
//! given (none when tracing is off, so an untraced request makes no span object, and a
//! request the sampler is sure to drop makes no call into the SDK). It records no request body
//! and no header value.

mod config;
mod context;
mod export;

pub use config::{
    ConfigError, DEFAULT_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, Sampling, TRACES_PATH, TracesConfig,
};
pub use context::{TRACEPARENT, TRACESTATE, TraceParent, TraceParentError, traceparent_value};
pub use export::{ExportError, Tracer, Traces, Tracing};
/// The OpenTelemetry API the router makes spans with (the same release as the SDK here).
pub use opentelemetry;

/// Span names and attribute keys: the OpenTelemetry HTTP semantic conventions' and Nimbus's.
pub mod names {
    /// The router's server span: the whole request as the router saw it, until the response
    /// head left.
    pub const ROUTING: &str = "routing";
    /// Waiting in the revision's queue for an instance with room.
    pub const ACTIVATOR_WAIT: &str = "activator.wait";
    /// A wait that began with no ready instance; its children are the phases below.
    pub const COLD_START: &str = "cold_start";
    /// Cold-start phase: until the runtime was asked for (and began) an instance.
    pub const COLD_START_DECIDE: &str = "cold_start.decide";
    /// Cold-start phase: until the instance's process (or component) was started.
    pub const COLD_START_START: &str = "cold_start.start";
    /// Cold-start phase: until the instance was ready and the request had it.
    pub const COLD_START_READY: &str = "cold_start.ready";
    /// The client span of the call to the instance, the parent the instance sees.
    pub const INSTANCE_CALL: &str = "instance.call";

    pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    pub const URL_PATH: &str = "url.path";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const SERVER_PORT: &str = "server.port";
    pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
    pub const NIMBUS_REVISION: &str = "nimbus.revision";
    pub const NIMBUS_COLD_START: &str = "nimbus.cold_start";
    pub const NIMBUS_INSTANCE: &str = "nimbus.instance";
}
