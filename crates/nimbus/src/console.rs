//! The web console wired into the server (see `nimbus-console`): its static files on the API
//! port without the token, and the per-revision history its charts read behind the token, fed
//! every few seconds from the router's counters, the scaler's decisions and the ready
//! endpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router as Api;
use nimbus_apiserver::ApiState;
use nimbus_console::history::Latency;
use nimbus_console::{History, Reading, Source};
use nimbus_controller::Scaler;
use nimbus_metrics::HistogramSnapshot;
use nimbus_router::Router;
use nimbus_runtime::RevisionKey;

/// The router and the scaler as the history's source.
struct ServerFigures {
    router: Router,
    scaler: Arc<Scaler>,
    /// Each revision's latency histogram at the last reading: percentiles are of what came
    /// since (one sampling interval).
    last_latency: Mutex<HashMap<RevisionKey, HistogramSnapshot>>,
}

impl Source for ServerFigures {
    fn read(&self) -> Vec<Reading> {
        let endpoints = self.router.endpoints();
        let mut last = self.last_latency.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashMap::new();
        let readings = self
            .router
            .data_paths()
            .into_iter()
            .map(|(key, s, paths)| {
                let recent = last
                    .get(&key)
                    .map_or_else(|| paths.latency.clone(), |l| paths.latency.since(l));
                let ms = |q: f64| recent.quantile(q).map(|s| s * 1e3);
                let latency = match (ms(0.5), ms(0.95), ms(0.99)) {
                    (Some(p50), Some(p95), Some(p99)) => Some(Latency { p50, p95, p99 }),
                    _ => None,
                };
                seen.insert(key.clone(), paths.latency);
                Reading {
                    ready: endpoints
                        .get(&key)
                        .map_or(0, |e| u32::try_from(e.ready.len()).unwrap_or(u32::MAX)),
                    desired: self.scaler.desired(&key),
                    requests: s.requests,
                    in_flight: s.in_flight,
                    cold_starts: s.cold_starts,
                    latency,
                    namespace: key.namespace,
                    revision: key.name,
                }
            })
            .collect();
        *last = seen;
        readings
    }
}

/// The console's history (empty until [`sample`] feeds it).
pub fn history() -> Arc<History> {
    History::new(
        nimbus_console::history::DEFAULT_INTERVAL,
        nimbus_console::history::DEFAULT_WINDOW,
    )
}

/// Feed `history` from the router and the scaler until `stop`.
pub fn sample(
    history: Arc<History>,
    router: Router,
    scaler: Arc<Scaler>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let source = Arc::new(ServerFigures {
        router,
        scaler,
        last_latency: Mutex::default(),
    });
    tokio::spawn(history.run(source, stop));
}

/// The console's routes for the API port: its files without the token (they hold no data),
/// the history behind it.
pub fn routes(history: Arc<History>, api: ApiState) -> Api {
    nimbus_console::routes().merge(nimbus_apiserver::authenticated(
        nimbus_console::history_routes(history),
        api,
    ))
}
