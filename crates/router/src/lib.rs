//! The HTTP data path of Nimbus: a reverse proxy that routes each request by host to a
//! revision, splits traffic by percent, and streams it to one of the revision's ready instances.
//!
//! The route controller programs it with [`Router::apply`] / [`Router::remove`]
//! (`nimbus_api::networking::Ingress`); runtimes publish ready instances into the shared
//! [`nimbus_runtime::EndpointRegistry`]. The router never starts instances, stores state or
//! reads API objects; it only serves what it was told, asks the [`Activator`] (the autoscaler)
//! for instances when requests have to wait, counts what it served ([`RevisionStats`]) for the
//! autoscaler, and tells runtimes how busy an instance is ([`nimbus_runtime::LoadProbe`]).
//!
//! Every request runs the same phases (see `proxy.rs`; waiting in `activator.rs`, the pick in
//! `capacity.rs`, the revision's request timeouts in `timeouts.rs`):
//!
//! ```text
//!  client
//!    │
//!    ▼
//!  resolve route (Host → Route) ───────────────────────────────────► 404 unknown host
//!    ▼
//!  pick revision (weighted split)
//!    ▼
//!  wait for capacity ── an instance has room ──────────────────────┐  (atomics only)
//!    │ none: Activator::activate, wait in the revision's bounded   │
//!    │ queue for a finished request or new endpoints ──────────────┤
//!    ├──► 503 + Retry-After: queue full │ wait limit │ start failed │
//!    ▼                                                              ▼
//!  pick instance: least loaded below containerConcurrency (ties round-robin)
//!    ▼
//!  proxy: rewrite headers, stream both ways ───────────────────────► instance
//!    │    connection refused + no body: once more, on another instance
//!    │    timeouts (timeouts.rs): 504 if the response has not started; a response still
//!    │    streaming is cut (connection closed / stream reset)
//!    ▼
//!  record metrics: requests; in flight (revision and instance) until the response body
//!  ends; queued; cold starts (and the x-nimbus-cold-start response header)
//! ```
//!
//! With tracing on ([`Router::with_tracing`]) a sampled request also gets OpenTelemetry spans
//! for these phases (`trace.rs`) and the instance a `traceparent` naming its call's span.
//!
//! Clients may speak HTTP/1.1 (including `Upgrade`, e.g. WebSocket) or HTTP/2 cleartext with
//! prior knowledge, on the same port. Instances are reached over pooled keep-alive HTTP/1.1
//! (each instance's pool lives in its capacity slot, `pool.rs`) or a shared h2c connection, as
//! their [`nimbus_runtime::Protocol`] says. Clients are served on dedicated threads, each with
//! a single-threaded runtime (`workers.rs`, [`RouterConfig::workers`]), so a request and the
//! instance connection it uses are polled by the same thread.

mod activator;
mod body;
mod capacity;
mod config;
mod deferred;
mod error;
mod headers;
mod host;
mod pool;
mod proxy;
mod router;
mod server;
mod split;
mod stats;
mod table;
mod timeouts;
mod trace;
mod upgrade;
mod upstream;
mod workers;

pub use activator::{Activator, COLD_START_HEADER};
pub use body::Body;
pub use config::RouterConfig;
pub use deferred::{Deferred, Deferrer, INVOCATION_ID, MAX_DEFERRED_BODY, Refusal};
pub use error::{ProxyError, Side, TimeoutKind};
pub use host::normalize_host;
/// The raw host of a request (for the fuzz targets in `fuzz/`; not a stable API).
#[doc(hidden)]
pub use host::request_host;
pub use router::Router;
pub use split::{pick_weighted, total_weight};
pub use stats::{DataPathSnapshot, RevisionStats, StatsSnapshot};
