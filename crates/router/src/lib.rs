//! The HTTP data path of Nimbus: a reverse proxy that routes each request by host to a
//! revision, splits traffic by percent, and streams it to one of the revision's ready instances.
//!
//! The route controller programs it with [`Router::apply`] / [`Router::remove`]
//! (`nimbus_api::networking::Ingress`); runtimes publish ready instances into the shared
//! [`nimbus_runtime::EndpointRegistry`]. The router never starts instances, stores state or
//! reads API objects; it only serves what it was told, and counts what it served
//! ([`RevisionStats`]) for the autoscaler.
//!
//! Every request runs the same phases (see `proxy.rs`):
//!
//! ```text
//!  client ──► resolve route ──► pick revision ──► wait for capacity ──► pick instance ──► proxy ──► instance
//!             (Host → Route)    (weighted split)   (503 if none ready;   (round-robin)    (rewrite headers,
//!                 │ 404              │              activator later)                        stream both ways,
//!                 ▼                  ▼                                                      504 on timeout)
//!          unknown host      record metrics: requests += 1, in-flight until the response body ends
//! ```
//!
//! Clients may speak HTTP/1.1 (including `Upgrade`, e.g. WebSocket) or HTTP/2 cleartext with
//! prior knowledge, on the same port. Instances are reached over pooled keep-alive HTTP/1.1 or a
//! shared h2c connection, as their [`nimbus_runtime::Protocol`] says.

mod body;
mod config;
mod error;
mod headers;
mod host;
mod proxy;
mod router;
mod server;
mod split;
mod stats;
mod table;
mod upgrade;
mod upstream;

pub use body::Body;
pub use config::RouterConfig;
pub use error::{ProxyError, Side};
pub use host::normalize_host;
pub use router::Router;
pub use split::{pick_weighted, total_weight};
pub use stats::{RevisionStats, StatsSnapshot};
