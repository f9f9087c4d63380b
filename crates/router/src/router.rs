//! The [`Router`] handle: programming the routing table and answering one request.
//!
//! Programming (`apply` / `remove`, `set_activator`) is the control path: it takes a mutex and
//! rebuilds the table. Answering (`handle`) is the data path: when an instance has room it only
//! loads the published table and endpoints and touches atomics; otherwise it waits (see
//! `activator.rs`). The router also answers the runtime's drain question ([`LoadProbe`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use http::{Request, Response};
use nimbus_api::networking::Ingress;
use nimbus_runtime::{Endpoint, EndpointRegistry, LoadProbe, RevisionKey};

use crate::activator::Activator;
use crate::body::Body;
use crate::config::RouterConfig;
use crate::deferred::Deferrer;
use crate::headers::Forwarding;
use crate::stats::{DataPathSnapshot, RevisionStats, StatsSnapshot};
use crate::table::Table;
use crate::upstream::Upstream;

/// The HTTP data path. Cheap to clone: clones share the table, pools and statistics.
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub table: ArcSwap<Table>,
    /// Bumped every time the table is replaced (waiters check their revision is still routed).
    pub routes: tokio::sync::watch::Sender<u64>,
    ingresses: Mutex<BTreeMap<(String, String), Ingress>>,
    pub endpoints: EndpointRegistry,
    pub upstream: Upstream,
    pub config: RouterConfig,
    pub activator: ArcSwapOption<Arc<dyn Activator>>,
    /// Where `Prefer: respond-async` requests go (none: they are proxied as usual).
    pub deferrer: ArcSwapOption<Arc<dyn Deferrer>>,
    /// Makes the spans of sampled requests; `None`: tracing is off (no span is made).
    pub tracing: Option<nimbus_traces::Tracing>,
}

// === impl Router ===

impl Router {
    /// A router serving nothing yet, sending traffic to the instances published in `endpoints`.
    pub fn new(endpoints: EndpointRegistry, config: RouterConfig) -> Self {
        Self::with_tracing(endpoints, config, None)
    }

    /// [`Router::new`], making OpenTelemetry spans of the requests `tracing`'s sampler keeps
    /// (`None`: no tracing, and no cost for it on the data path).
    pub fn with_tracing(
        endpoints: EndpointRegistry,
        config: RouterConfig,
        tracing: Option<nimbus_traces::Tracing>,
    ) -> Self {
        let inner = Inner {
            table: ArcSwap::default(),
            routes: tokio::sync::watch::Sender::new(0),
            ingresses: Mutex::default(),
            endpoints,
            upstream: Upstream::new(&config),
            config,
            activator: ArcSwapOption::empty(),
            deferrer: ArcSwapOption::empty(),
            tracing,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Serves `ingress`, replacing an earlier one with the same namespace and name. When two
    /// ingresses claim a host, the one first in (namespace, name) order keeps it.
    pub fn apply(&self, ingress: Ingress) {
        let key = (ingress.namespace.clone(), ingress.name.clone());
        self.reprogram(|all| {
            all.insert(key, ingress);
        });
    }

    /// Stops serving the ingress `namespace/name` (no-op when unknown).
    pub fn remove(&self, namespace: &str, name: &str) {
        self.reprogram(|all| {
            all.remove(&(namespace.to_owned(), name.to_owned()));
        });
    }

    /// The (namespace, name) of every ingress served now.
    pub fn programmed(&self) -> Vec<(String, String)> {
        let all = self
            .inner
            .ingresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.keys().cloned().collect()
    }

    /// Asks `activator` for instances whenever requests have to wait for a revision (replacing
    /// an earlier activator). Until one is set, waiting requests only wait.
    pub fn set_activator(&self, activator: Arc<dyn Activator>) {
        self.inner.activator.store(Some(Arc::new(activator)));
    }

    fn reprogram(&self, change: impl FnOnce(&mut BTreeMap<(String, String), Ingress>)) {
        let mut all = self
            .inner
            .ingresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        change(&mut all);
        let (table, conflicts) = Table::build(all.values(), &self.inner.table.load());
        for host in conflicts {
            tracing::warn!(%host, "host is claimed by more than one route; the first one keeps it");
        }
        self.inner.table.store(Arc::new(table));
        self.inner.routes.send_modify(|generation| *generation += 1);
    }

    /// The live counters of a revision that some route sends traffic to.
    pub fn stats(&self, revision: &RevisionKey) -> Option<Arc<RevisionStats>> {
        self.inner.table.load().stats(revision).cloned()
    }

    /// A snapshot of every routed revision's counters.
    pub fn all_stats(&self) -> Vec<(RevisionKey, StatsSnapshot)> {
        let table = self.inner.table.load();
        table
            .all_stats()
            .map(|(k, s)| (k.clone(), s.snapshot()))
            .collect()
    }

    /// Every routed revision's counters and data-path histograms, for `/metrics` (allocates:
    /// call it at scrape time, not per request).
    pub fn data_paths(&self) -> Vec<(RevisionKey, StatsSnapshot, DataPathSnapshot)> {
        let table = self.inner.table.load();
        table
            .all_stats()
            .map(|(k, s)| (k.clone(), s.snapshot(), s.data_path()))
            .collect()
    }

    /// The registry this router takes ready instances from.
    pub fn endpoints(&self) -> &EndpointRegistry {
        &self.inner.endpoints
    }

    /// The configuration this router was built with.
    pub fn config(&self) -> &RouterConfig {
        &self.inner.config
    }

    /// Answer requests that prefer it (`Prefer: respond-async`) by handing them to
    /// `deferrer` and saying `202 Accepted` (see `deferred.rs`).
    pub fn set_deferrer(&self, deferrer: Arc<dyn Deferrer>) {
        self.inner.deferrer.store(Some(Arc::new(deferrer)));
    }

    /// Answers one request from `client` (the peer address of the client connection): the whole
    /// data path, without a server around it. Failures become plain-text error responses.
    pub async fn handle(&self, req: Request<Body>, client: SocketAddr) -> Response<Body> {
        self.answer(req, &Forwarding::new(client.ip())).await
    }

    /// [`Router::handle`], with a failure of the router's own as the [`ProxyError`] rather
    /// than its error response (for callers inside the server, such as the invocation
    /// dispatcher, which retries what the platform had no room for).
    pub async fn try_handle(
        &self,
        req: Request<Body>,
        client: SocketAddr,
    ) -> Result<Response<Body>, crate::ProxyError> {
        self.inner.proxy(req, &Forwarding::new(client.ip())).await
    }

    /// [`Router::handle`] for a client whose forwarding header values are already formatted
    /// (once per connection).
    pub(crate) async fn answer(&self, req: Request<Body>, client: &Forwarding) -> Response<Body> {
        let deferrer = match crate::deferred::prefers_async(req.headers()) {
            true => self.inner.deferrer.load_full(),
            false => None,
        };
        let answered = match deferrer {
            Some(deferrer) => self.inner.defer(req, &deferrer).await,
            None => self.inner.proxy(req, client).await,
        };
        match answered {
            Ok(resp) => resp,
            Err(err) => {
                let request_id = crate::error::new_request_id();
                match err.side() {
                    // The instance's failure: the log is where its detail may be read.
                    crate::error::Side::Instance => {
                        tracing::info!(request_id, error = %err, "request failed")
                    }
                    side => tracing::debug!(request_id, error = %err, ?side, "request failed"),
                }
                err.to_response(&request_id)
            }
        }
    }
}

// === impl LoadProbe for Router ===

/// Requests in flight to one instance, for a runtime draining it before it stops. Counts
/// requests whose response is still being sent, also after the endpoint left the registry or
/// its revision left every route.
impl LoadProbe for Router {
    fn in_flight(&self, endpoint: &Endpoint) -> usize {
        let table = self.inner.table.load();
        table.all_capacity().map(|c| c.in_flight(endpoint)).sum()
    }
}
