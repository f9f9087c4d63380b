//! One instance of a revision: a [`LocalService`] the router calls in-process, whose every
//! request runs in a fresh component instance. An instance holds nothing but its revision's
//! loaded [`App`] and its log (opened on the first line the guest prints, see `output.rs`), so
//! starting one is an allocation: scaling from zero costs microseconds, and
//! the request that woke the revision runs on the router thread that accepted it, with no
//! socket between them.
//!
//! Stopping an instance only unpublishes it: requests already routed to it hold the `App` and
//! finish (bounded by the revision's request timeout), which is the drain.
//!
//! An instance takes every request it is sent: `containerConcurrency` is the router's to
//! enforce (it sends an instance no more than that many at once), and the pooling allocator
//! bounds component instances across the runtime (503 beyond it).

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt as _;
use nimbus_runtime::{BoxError, LocalBody, LocalHandle, LocalResponse, LocalService};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::handler::App;
use crate::output::InstanceLog;

/// A running instance of a revision.
pub(crate) struct Instance {
    app: Arc<App>,
    /// Where its requests' stdout and stderr go; `None` without a data directory.
    log: Option<Arc<InstanceLog>>,
}

impl Instance {
    /// A new instance of `app`, as the handle the router calls.
    pub fn start(app: Arc<App>, log: Option<Arc<InstanceLog>>) -> LocalHandle {
        LocalHandle::new(Arc::new(Self { app, log }))
    }
}

impl LocalService for Instance {
    fn call(&self, request: Request<LocalBody>) -> LocalResponse {
        let app = Arc::clone(&self.app);
        let log = self.log.clone();
        Box::pin(async move { into_local(app.handle(request, log).await) })
    }
}

fn into_local(response: Response<HyperOutgoingBody>) -> Response<LocalBody> {
    response.map(|body| body.map_err(BoxError::from).boxed_unsync())
}
