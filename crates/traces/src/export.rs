//! The OpenTelemetry SDK pipeline: the sampler from [`Sampling`], a batch span processor (on
//! a thread of its own, so a request never waits for an export) and the OTLP/HTTP protobuf
//! exporter posting to the configured endpoint.

use opentelemetry::trace::{SpanContext, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use crate::config::{Sampling, TracesConfig};

/// The tracer spans are made with: the SDK's own, so no span object is boxed.
pub type Tracer = SdkTracer;

/// What the router traces with: the tracer, and the sampling it was built with, so that a
/// request the sampler is sure to drop (ratio 0 and no sampled caller) costs no call into the
/// SDK at all.
#[derive(Clone, Debug)]
pub struct Tracing {
    pub tracer: Tracer,
    pub sampling: Sampling,
}

// === impl Tracing ===

impl Tracing {
    /// Whether the sampler may keep a request whose remote parent is `parent`: `false` only
    /// when it certainly drops it (the SDK decides the rest).
    pub fn may_sample(&self, parent: Option<&SpanContext>) -> bool {
        match parent {
            Some(parent) if self.sampling.parent_based => parent.is_sampled(),
            _ => self.sampling.ratio > 0.0,
        }
    }
}

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
    tracing: Tracing,
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
        let tracing = Tracing {
            tracer,
            sampling: config.sampling,
        };
        Ok(Self { provider, tracing })
    }

    /// The tracer (and sampling) the router makes its spans with.
    pub fn tracing(&self) -> Tracing {
        self.tracing.clone()
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

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    fn tracing(ratio: f64, parent_based: bool) -> Tracing {
        let tracer = SdkTracerProvider::builder().build().tracer("test");
        let sampling = Sampling {
            ratio,
            parent_based,
        };
        Tracing { tracer, sampling }
    }

    fn parent(sampled: bool) -> SpanContext {
        let flags = match sampled {
            true => TraceFlags::SAMPLED,
            false => TraceFlags::default(),
        };
        SpanContext::new(
            TraceId::from(1u128),
            SpanId::from(1u64),
            flags,
            true,
            TraceState::NONE,
        )
    }

    #[test]
    fn only_certain_drops_skip_the_sdk() {
        let (sampled, unsampled) = (parent(true), parent(false));
        let zero = tracing(0.0, true);
        assert!(!zero.may_sample(None));
        assert!(!zero.may_sample(Some(&unsampled)));
        assert!(zero.may_sample(Some(&sampled)));
        let some = tracing(0.1, true);
        assert!(some.may_sample(None));
        assert!(!some.may_sample(Some(&unsampled)));
        let ignore_parents = tracing(0.0, false);
        assert!(!ignore_parents.may_sample(Some(&sampled)));
        assert!(tracing(0.5, false).may_sample(Some(&unsampled)));
    }
}
