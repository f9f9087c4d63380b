//! Asynchronous invocation, Lambda's model: a request is accepted with `202` and an id once it
//! is stored durably, then delivered at least once, with retries, back-off and destinations.
//!
//! ```text
//!  router: Prefer: respond-async ─┐            ┌─ API: POST .../invocations (nimbus invoke)
//!                                 ▼            ▼
//!                    Invocations::accept (Service's policy from its annotations)
//!                                 │
//!                                 ▼  group commit, fsync, then 202 / 201
//!                    Queue (<data-dir>/invocations.db)
//!                                 │  due, oldest first
//!                                 ▼
//!                    Dispatcher ── Deliver (the binary: Router::handle in-process, so a
//!                                 │          revision at zero scales up for queued work)
//!                                 ▼
//!                    outcome written: Succeeded │ Pending (retry at t) │ Failed (kept: the
//!                    dead-letter queue) │ + the destination's invocation, same transaction
//! ```
//!
//! - [`queue`]: the SQLite queue and its writer thread;
//! - [`dispatcher`]: attempts, retry rules, back-off, destinations;
//! - [`api`]: the API port's routes (list, get, create, cancel);
//! - [`model`]: what is stored.
//!
//! Nothing here knows the router or the object store: the binary gives a [`Services`] (a
//! Service's URL host and policy) and a [`dispatcher::Deliver`].

pub mod api;
pub mod dispatcher;
pub mod model;
pub mod queue;

use std::sync::Arc;

use nimbus_api::invocation::AsyncPolicy;

pub use dispatcher::{Deliver, Dispatcher, DispatcherConfig, NoResponse};
pub use model::{Invocation, State, StoredRequest, StoredResponse, Target};
pub use queue::{Queue, QueueError};

/// Most bytes of a request body an asynchronous invocation may carry (Lambda: 1 MiB).
pub const MAX_REQUEST_BODY: usize = 1 << 20;

/// Most invocations of one Service waiting at once: beyond it new ones are refused (429), so
/// a flood of anonymous requests cannot fill the disk.
pub const MAX_PENDING_PER_SERVICE: u64 = 100_000;

/// Why a Service could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// It does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It could not be read now (the store failed); retrying may help.
    #[error("{0}")]
    Unavailable(String),
}

/// What accepting an invocation needs to know about its Service.
pub trait Services: Send + Sync + 'static {
    /// The Service's URL host and asynchronous invocation policy (from its annotations), or
    /// why it cannot be invoked.
    fn resolve(&self, namespace: &str, name: &str) -> Result<(String, AsyncPolicy), ResolveError>;
}

/// Why an invocation was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "the request body is {size} bytes; an asynchronous invocation carries at most {max} \
         (send a smaller one, or a reference to the data)"
    )]
    TooLarge { size: usize, max: usize },
    #[error(
        "service {service:?} has {MAX_PENDING_PER_SERVICE} invocations waiting already; retry later"
    )]
    Full { service: String },
    #[error("the invocation could not be stored: {0}")]
    Store(#[from] QueueError),
}

/// The queue, its dispatcher and the Services they serve.
pub struct Invocations {
    dispatcher: Dispatcher,
    services: Arc<dyn Services>,
}

impl Invocations {
    pub fn new(dispatcher: Dispatcher, services: Arc<dyn Services>) -> Self {
        Self {
            dispatcher,
            services,
        }
    }

    pub fn queue(&self) -> &Arc<Queue> {
        self.dispatcher.queue()
    }

    /// Store `request` for Service `service` of `namespace` (addressed as `host`, else its
    /// URL's host), under the Service's policy; returns the stored invocation once it is on
    /// disk.
    pub async fn accept(
        &self,
        namespace: &str,
        service: &str,
        host: Option<&str>,
        request: StoredRequest,
    ) -> Result<Invocation, AcceptError> {
        if request.body.len() > MAX_REQUEST_BODY {
            return Err(AcceptError::TooLarge {
                size: request.body.len(),
                max: MAX_REQUEST_BODY,
            });
        }
        let (url_host, policy) =
            self.services
                .resolve(namespace, service)
                .map_err(|e| match e {
                    ResolveError::NotFound(m) => AcceptError::Unknown(m),
                    ResolveError::Unavailable(m) => AcceptError::Unavailable(m),
                })?;
        let cap = MAX_PENDING_PER_SERVICE;
        if self.queue().pending(namespace, service, cap)? >= cap {
            return Err(AcceptError::Full {
                service: service.to_owned(),
            });
        }
        let target = Target::Service {
            name: service.to_owned(),
            host: host.map_or(url_host, str::to_owned),
        };
        self.store(namespace, target, request, &policy).await
    }

    /// Store `request` for an `http://` URL, under Lambda's default policy (scheduled events
    /// sent to a URI).
    pub async fn accept_url(
        &self,
        namespace: &str,
        url: &str,
        request: StoredRequest,
    ) -> Result<Invocation, AcceptError> {
        if request.body.len() > MAX_REQUEST_BODY {
            return Err(AcceptError::TooLarge {
                size: request.body.len(),
                max: MAX_REQUEST_BODY,
            });
        }
        let target = Target::Url {
            url: url.to_owned(),
        };
        self.store(namespace, target, request, &AsyncPolicy::default())
            .await
    }

    async fn store(
        &self,
        namespace: &str,
        target: Target,
        request: StoredRequest,
        policy: &AsyncPolicy,
    ) -> Result<Invocation, AcceptError> {
        let now = self.dispatcher.now_ms();
        let invocation = Invocation::new(namespace, target, request, policy.into(), now);
        self.queue().enqueue(vec![invocation.clone()]).await?;
        self.dispatcher.wake();
        Ok(invocation)
    }
}
