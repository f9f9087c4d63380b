//! `GET /metrics` on the API port: per-revision data-path and scaling figures in the Prometheus
//! text format, read from the router's counters and the scaler at scrape time (nothing is
//! recorded twice).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `nimbus_revision_requests_total` | counter | requests routed to the revision |
//! | `nimbus_revision_in_flight` | gauge | requests in flight (including queued) |
//! | `nimbus_revision_queued` | gauge | requests waiting for an instance with free capacity |
//! | `nimbus_revision_cold_starts_total` | counter | requests that waited for a first ready instance |
//! | `nimbus_revision_cold_start_wait_seconds_total` | counter | total time those requests waited |
//! | `nimbus_revision_desired_instances` | gauge | the autoscaler's decision |

use std::sync::Arc;

use axum::Router as Api;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use nimbus_controller::Scaler;
use nimbus_router::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    namespace: String,
    revision: String,
}

/// The `/metrics` route.
pub fn routes(router: Router, scaler: Arc<Scaler>) -> Api {
    Api::new().route(
        "/metrics",
        get(move || {
            let body = render(&router, &scaler);
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    )
}

fn render(router: &Router, scaler: &Scaler) -> String {
    let requests = Family::<RevisionLabels, Counter>::default();
    let in_flight = Family::<RevisionLabels, Gauge>::default();
    let queued = Family::<RevisionLabels, Gauge>::default();
    let cold_starts = Family::<RevisionLabels, Counter>::default();
    let cold_wait = Family::<RevisionLabels, Counter<f64>>::default();
    let desired = Family::<RevisionLabels, Gauge>::default();
    for (key, s) in router.all_stats() {
        let l = RevisionLabels {
            namespace: key.namespace.clone(),
            revision: key.name.clone(),
        };
        requests.get_or_create(&l).inc_by(s.requests);
        in_flight.get_or_create(&l).set(s.in_flight as i64);
        queued.get_or_create(&l).set(s.queued as i64);
        cold_starts.get_or_create(&l).inc_by(s.cold_starts);
        cold_wait
            .get_or_create(&l)
            .inc_by(s.cold_start_wait_micros as f64 / 1e6);
        if let Some(d) = scaler.desired(&key) {
            desired.get_or_create(&l).set(i64::from(d));
        }
    }
    let mut registry = Registry::with_prefix("nimbus_revision");
    registry.register("requests", "Requests routed to the revision", requests);
    registry.register(
        "in_flight",
        "Requests in flight, including queued ones",
        in_flight,
    );
    registry.register(
        "queued",
        "Requests waiting for an instance with free capacity",
        queued,
    );
    registry.register(
        "cold_starts",
        "Requests that waited for a first ready instance",
        cold_starts,
    );
    registry.register(
        "cold_start_wait_seconds",
        "Total time cold-start requests waited",
        cold_wait,
    );
    registry.register(
        "desired_instances",
        "Instances the autoscaler wants",
        desired,
    );
    let mut out = String::new();
    if encode(&mut out, &registry).is_err() {
        out = "# metrics could not be encoded\n".into();
    }
    out
}
