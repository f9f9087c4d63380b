//! The web console wired into the server (see `nimbus-console`): its static files on the API
//! port without the token, and the per-revision history its charts read behind the token, fed
//! every few seconds from the router's counters, the scaler's decisions and the ready
//! endpoints.

use std::sync::Arc;

use axum::Router as Api;
use nimbus_apiserver::ApiState;
use nimbus_console::{History, Reading, Source};
use nimbus_controller::Scaler;
use nimbus_router::Router;

/// The router and the scaler as the history's source.
struct ServerFigures {
    router: Router,
    scaler: Arc<Scaler>,
}

impl Source for ServerFigures {
    fn read(&self) -> Vec<Reading> {
        let endpoints = self.router.endpoints();
        self.router
            .all_stats()
            .into_iter()
            .map(|(key, s)| Reading {
                ready: endpoints
                    .get(&key)
                    .map_or(0, |e| u32::try_from(e.ready.len()).unwrap_or(u32::MAX)),
                desired: self.scaler.desired(&key),
                requests: s.requests,
                in_flight: s.in_flight,
                cold_starts: s.cold_starts,
                // TODO(lead): feed latency percentiles once the metrics work measures them.
                latency: None,
                namespace: key.namespace,
                revision: key.name,
            })
            .collect()
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
    let source = Arc::new(ServerFigures { router, scaler });
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
