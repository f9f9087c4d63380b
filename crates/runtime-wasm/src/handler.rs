//! One request through one fresh component instance: check the body size, create a store
//! with the revision's limits, instantiate from the revision's [`ProxyPre`], call
//! `wasi:http/incoming-handler.handle`, and turn whatever happened into an HTTP response.
//!
//! Faults stay inside the request: a trap is a 500, an exhausted budget a 504, an oversized
//! body a 413, a full instance pool a 503; the store is dropped either way and nothing is
//! shared with other requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, Response, StatusCode, header};
use nimbus_runtime::LocalBody;
use tokio::sync::oneshot;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::body::{CappedBody, plain};
use crate::config::WasmRuntimeConfig;
use crate::host::Host;
use crate::instance::Started;
use crate::limits::{Limits, human_bytes};

/// A compiled, linked revision, ready to serve: everything a request needs.
pub(crate) struct App {
    pub pre: ProxyPre<Host>,
    /// The revision's memory, deadline and outbound limits.
    pub limits: Limits,
    pub config: Arc<WasmRuntimeConfig>,
}

/// What the guest's task ended with.
struct Outcome {
    result: wasmtime::Result<()>,
    memory_exceeded: bool,
}

type GuestResponse = Result<Response<HyperOutgoingBody>, ErrorCode>;

impl App {
    /// Serve one request of the instance that `started`, its output going to the instance's
    /// log. Never fails: faults become 4xx/5xx responses.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<LocalBody>,
        started: Arc<Started>,
    ) -> Response<HyperOutgoingBody> {
        if let Some(len) = declared_length(&request)
            && len > self.config.max_body_bytes
        {
            return self.too_large();
        }
        let body_exceeded = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            CappedBody::new(body, self.config.max_body_bytes, Arc::clone(&body_exceeded))
        });
        let timeout = self.limits.request_timeout;
        let (sender, receiver) = oneshot::channel();
        let guest = match self.start(request, sender, &started) {
            Ok(guest) => guest,
            Err(e) => return self.fault(&e, false),
        };
        let response = tokio::time::timeout(timeout, receiver).await;
        let exceeded = || body_exceeded.load(Ordering::Relaxed);
        match response {
            Ok(Ok(_)) if exceeded() => self.too_large(),
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(code))) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the component answered with an error: {code:?}"),
            ),
            Ok(Err(_)) => self.failed(guest, exceeded).await,
            Err(_elapsed) => {
                guest.abort();
                self.timed_out()
            }
        }
    }

    /// Create the store and spawn the guest: instantiate, then `handle`. The task owns the store
    /// until the guest returns, also after the response started.
    fn start(
        &self,
        request: Request<CappedBody<LocalBody>>,
        sender: oneshot::Sender<GuestResponse>,
        started: &Started,
    ) -> wasmtime::Result<tokio::task::JoinHandle<Outcome>> {
        let mut store = self.store(started)?;
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        Ok(tokio::spawn(async move {
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            }
            .await;
            Outcome {
                result,
                memory_exceeded: store.data().limits.exceeded,
            }
        }))
    }

    /// A store for one request of the instance that `started`, under the revision's limits.
    fn store(&self, started: &Started) -> wasmtime::Result<Store<Host>> {
        let host = Host::new(&self.config, &self.limits, started)?;
        let ticks = self.limits.deadline_ticks(self.config.epoch_tick);
        Ok(guest_store(self.pre.engine(), host, ticks))
    }

    /// The guest ended without setting a response: find out why.
    async fn failed(
        &self,
        guest: tokio::task::JoinHandle<Outcome>,
        body_exceeded: impl Fn() -> bool,
    ) -> Response<HyperOutgoingBody> {
        match guest.await {
            _ if body_exceeded() => self.too_large(),
            Ok(Outcome { result: Ok(()), .. }) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the component returned without setting a response".to_owned(),
            ),
            Ok(Outcome {
                result: Err(e),
                memory_exceeded,
            }) => self.fault(&e, memory_exceeded),
            Err(join) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the request's task failed: {join}"),
            ),
        }
    }

    /// A trap or host error while running the guest.
    fn fault(&self, error: &wasmtime::Error, memory_exceeded: bool) -> Response<HyperOutgoingBody> {
        let trap = error.downcast_ref::<Trap>();
        if trap == Some(&Trap::Interrupt) {
            return self.timed_out();
        }
        if error.is::<PoolConcurrencyLimitError>() {
            let message = format!("no instance slot free, retry later ({error})");
            return plain(StatusCode::SERVICE_UNAVAILABLE, message);
        }
        let what = trap.map_or_else(|| first_line(error), ToString::to_string);
        tracing::debug!(error = %format!("{error:?}"), "component request failed");
        if memory_exceeded {
            let limit = human_bytes(self.limits.memory_bytes as u64);
            let message = format!("the component exceeded its memory limit of {limit} ({what})");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
        let message = match trap {
            Some(_) => format!("the component trapped: {what}"),
            None => format!("the component failed: {what}"),
        };
        plain(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn timed_out(&self) -> Response<HyperOutgoingBody> {
        let timeout = self.limits.request_timeout;
        plain(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the component did not answer within the request timeout of {timeout:?}"),
        )
    }

    fn too_large(&self) -> Response<HyperOutgoingBody> {
        let limit = self.config.max_body_bytes;
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }
}

/// A store for one guest run (a request or a task): `host`'s memory limiter, and every epoch
/// tick the guest yields to the executor (a spinning guest must not hold a worker thread);
/// once `ticks` are spent it is interrupted (`Trap::Interrupt`). Tokio's `yield_now` lets the
/// I/O driver run before the guest resumes; a plain self-wake would not, and new connections
/// would wait behind a spinning guest.
pub(crate) fn guest_store(engine: &wasmtime::Engine, host: Host, ticks: u64) -> Store<Host> {
    let mut store = Store::new(engine, host);
    store.limiter(|host| &mut host.limits);
    let mut ticks_left = ticks;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        ticks_left = ticks_left.saturating_sub(1);
        Ok(match ticks_left {
            0 => UpdateDeadline::Interrupt,
            _ => UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())),
        })
    });
    store
}

/// The request's `Content-Length`, when it has a valid one.
fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn first_line(error: &wasmtime::Error) -> String {
    let text = error.to_string();
    text.lines().next().unwrap_or_default().to_owned()
}
