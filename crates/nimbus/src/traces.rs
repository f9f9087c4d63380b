//! The tracing flags of `nimbus serve` and `nimbus router` and the export pipeline they start
//! (nimbus-traces): off unless an OTLP endpoint is given by flag or by the standard
//! OpenTelemetry variables.

use anyhow::Context as _;
use nimbus_traces::{Traces, TracesConfig};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct TraceArgs {
    /// Export OpenTelemetry traces of routed requests by OTLP/HTTP protobuf to this collector
    /// base URL (`/v1/traces` is appended), e.g. http://127.0.0.1:4318. Also taken from
    /// OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; off when none is set.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded, 0 to 1 (a request carrying a sampled `traceparent` is
    /// recorded whatever the ratio). Default: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG,
    /// else every request.
    #[arg(long, value_name = "RATIO")]
    pub trace_sampling_ratio: Option<f64>,
}

/// Starts the export pipeline the flags and the environment describe (`None`: tracing off).
pub fn start(args: &TraceArgs) -> anyhow::Result<Option<Traces>> {
    let config = TracesConfig::resolve(
        args.otlp_endpoint.as_deref(),
        args.trace_sampling_ratio,
        |name| std::env::var(name).ok(),
    )?;
    let Some(config) = config else {
        return Ok(None);
    };
    let traces = Traces::start(&config).context("starting the trace exporter")?;
    println!(
        "nimbus: exporting traces to {} (service.name {}, sampling ratio {}{})",
        config.endpoint,
        config.service_name,
        config.sampling.ratio,
        if config.sampling.parent_based {
            ", following sampled callers"
        } else {
            ""
        }
    );
    Ok(Some(traces))
}

/// Exports the spans still batched (off the async executor: the SDK blocks).
pub async fn shutdown(traces: Option<Traces>) {
    if let Some(traces) = traces {
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
}
