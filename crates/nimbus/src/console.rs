//! The web console wired into the server (see `nimbus-console`): its static files on the API
//! port without the token, and the per-revision history its charts read behind the token, fed
//! every few seconds from the router's counters, the scaler's decisions and the ready
//! endpoints.

use std::sync::Arc;

use axum::Router as Api;
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

/// The console's history, sampling the router and the scaler from now on (until `stop`).
pub fn start_history(
    router: Router,
    scaler: Arc<Scaler>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Arc<History> {
    let history = History::new(
        nimbus_console::history::DEFAULT_INTERVAL,
        nimbus_console::history::DEFAULT_WINDOW,
    );
    let source = Arc::new(ServerFigures { router, scaler });
    tokio::spawn(history.clone().run(source, stop));
    history
}

/// The console's routes: the static files (public) and the history (for `authenticated`).
pub fn routes(history: Arc<History>) -> (Api, Api) {
    (
        nimbus_console::routes(),
        nimbus_console::history_routes(history),
    )
}
