//! The OpenTelemetry SDK pipeline: the sampler from [`Sampling`], a batch span processor (on
//! a thread of its own, so a request never waits for an export) and the OTLP/HTTP protobuf
//! exporter posting to the configured endpoint.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use crate::config::{Sampling, TracesConfig};

/// The tracer spans are made with: the SDK's own, so no span object is boxed.
pub type Tracer = SdkTracer;

/// The exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}: {source}")]
pub struct ExportError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// A running export pipeline. [`Traces::shutdown`] exports what is still batched.
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: Tracer,
}

// === impl Traces ===

impl Traces {
    /// Builds the pipeline `config` describes (batch delay and sizes from the standard
    /// `OTEL_BSP_*` variables).
    pub fn start(config: &TracesConfig) -> Result<Self, ExportError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .build()
            .map_err(|source| ExportError {
                endpoint: config.endpoint.clone(),
                source,
            })?;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler(config.sampling))
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("nimbus-router");
        Ok(Self { provider, tracer })
    }

    /// The tracer the router makes its spans with.
    pub fn tracer(&self) -> Tracer {
        self.tracer.clone()
    }

    /// Exports the spans still batched and stops the exporter (blocks: call it off the async
    /// executor).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("exporting the last spans failed: {e}");
        }
    }
}

/// The SDK sampler of a [`Sampling`].
fn sampler(sampling: Sampling) -> Sampler {
    let own = match sampling.ratio {
        r if r >= 1.0 => Sampler::AlwaysOn,
        r if r <= 0.0 => Sampler::AlwaysOff,
        r => Sampler::TraceIdRatioBased(r),
    };
    match sampling.parent_based {
        true => Sampler::ParentBased(Box::new(own)),
        false => own,
    }
}
