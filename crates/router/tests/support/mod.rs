//! Test support for the router's integration tests: tiny hyper backends on 127.0.0.1:0, a
//! router served on 127.0.0.1:0, raw HTTP/1 and h2 clients, and deadline helpers.

#![allow(dead_code)] // each test binary uses a different subset

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nimbus_api::networking::{Ingress, IngressRule, IngressSplit, RequestTimeouts};
use nimbus_router::{Router, RouterConfig};
use nimbus_runtime::{Endpoint, EndpointRegistry, Protocol, RevisionEndpoints, RevisionKey};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = UnsyncBoxBody<Bytes, BoxError>;

/// How long any single step of a test may take before it is declared hung.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub const NS: &str = "default";

/// Awaits `fut`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("step did not finish before the deadline")
}

/// Polls `cond` until it holds, failing the test at the deadline.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "never became true: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub fn text(body: impl Into<String>) -> TestBody {
    Full::new(Bytes::from(body.into()))
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

/// Starts a backend speaking `protocol` that answers every request with `handler`.
pub async fn backend<F, Fut>(protocol: Protocol, handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_backend_connection(stream, protocol, handler.clone()));
        }
    });
    addr
}

async fn serve_backend_connection<F, Fut>(stream: TcpStream, protocol: Protocol, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let svc = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let io = TokioIo::new(stream);
    let _ = match protocol {
        Protocol::Http1 => {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades()
                .await
        }
        Protocol::H2c => {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, svc)
                .await
        }
    };
}

/// A backend handler that answers with the request line and headers as text, one per line,
/// and adds hop-by-hop response headers the router must remove.
pub async fn echo_headers(req: Request<Incoming>) -> Response<TestBody> {
    let mut out = format!("{} {}\n", req.method(), req.uri());
    for (name, value) in req.headers() {
        out.push_str(&format!(
            "{}: {}\n",
            name,
            value.to_str().unwrap_or("<binary>")
        ));
    }
    Response::builder()
        .header("x-backend", "echo")
        .header("x-resp-hop", "1")
        .header("connection", "x-resp-hop")
        .header("keep-alive", "timeout=5")
        .body(text(out))
        .unwrap()
}

/// The values of header `name` in an [`echo_headers`] body.
pub fn echoed<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    body.lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// An ingress named `name` serving `host` with the given (revision, percent) splits, whose
/// requests may take `timeout` in all (`timeoutSeconds`; no other limit).
pub fn ingress(name: &str, host: &str, splits: &[(&str, u32)], timeout: Duration) -> Ingress {
    let timeouts = RequestTimeouts {
        total: timeout,
        response_start: timeout,
        idle: None,
    };
    let splits = splits
        .iter()
        .map(|(revision, percent)| IngressSplit {
            revision: revision.to_string(),
            percent: *percent,
            timeouts,
            container_concurrency: 0,
        })
        .collect();
    Ingress {
        namespace: NS.into(),
        name: name.into(),
        rules: vec![IngressRule {
            hosts: vec![host.into()],
            splits,
        }],
    }
}

/// `ingress` with every split limited to `container_concurrency` requests per instance.
pub fn with_concurrency(mut ingress: Ingress, container_concurrency: u32) -> Ingress {
    for split in ingress.rules.iter_mut().flat_map(|r| &mut r.splits) {
        split.container_concurrency = container_concurrency;
    }
    ingress
}

/// `ingress` with every split's request timeouts set to `timeouts`.
pub fn with_timeouts(mut ingress: Ingress, timeouts: RequestTimeouts) -> Ingress {
    for split in ingress.rules.iter_mut().flat_map(|r| &mut r.splits) {
        split.timeouts = timeouts;
    }
    ingress
}

/// Publishes `addrs` as the ready instances of `revision` (ids `<revision>-1`, `-2`, ...).
pub fn publish_all(endpoints: &EndpointRegistry, revision: &str, addrs: &[SocketAddr]) {
    let ready = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| endpoint(revision, i + 1, *addr))
        .collect();
    endpoints.set(
        &RevisionKey::new(NS, revision),
        RevisionEndpoints {
            ready,
            failure: None,
        },
    );
}

/// The HTTP/1.1 endpoint `publish_all` gives the `n`-th (1-based) address of `revision`.
pub fn endpoint(revision: &str, n: usize, addr: SocketAddr) -> Endpoint {
    Endpoint::tcp(format!("{revision}-{n}"), addr, Protocol::Http1)
}

/// An address nothing listens on: connections to it are refused.
pub fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Publishes `addr` as the only ready instance of `revision`.
pub fn publish(endpoints: &EndpointRegistry, revision: &str, addr: SocketAddr, protocol: Protocol) {
    let ready = vec![Endpoint::tcp(format!("{revision}-1"), addr, protocol)];
    endpoints.set(
        &RevisionKey::new(NS, revision),
        RevisionEndpoints {
            ready,
            failure: None,
        },
    );
}

/// A router served on 127.0.0.1:0 until dropped.
pub struct TestRouter {
    pub router: Router,
    pub endpoints: EndpointRegistry,
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestRouter {
    /// Fires the shutdown future and waits (bounded) for `serve` to return.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        within(self.serving).await.expect("serve panicked")
    }
}

pub async fn start_router() -> TestRouter {
    start_router_with(Router::new(EndpointRegistry::new(), test_config())).await
}

/// The router configuration of the tests: short connect timeout, otherwise the defaults.
pub fn test_config() -> RouterConfig {
    RouterConfig {
        connect_timeout: Duration::from_secs(2),
        ..RouterConfig::default()
    }
}

/// Serves `router` (built on its own registry) on 127.0.0.1:0.
pub async fn start_router_with(router: Router) -> TestRouter {
    let endpoints = router.endpoints().clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = router.clone();
    let serving = tokio::spawn(async move {
        server
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
    });
    TestRouter {
        router,
        endpoints,
        addr,
        stop,
        serving,
    }
}

/// An HTTP/1.1 client connection to `addr`.
pub async fn h1_client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// An HTTP/2 prior-knowledge client connection to `addr`.
pub async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Collects a body into a string.
pub async fn body_text<B>(body: B) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = within(body.collect()).await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// How a scripted test instance answers: headers after `head_after`, then one chunk
/// (`chunk <i>\n`) after each of `gaps`, then the end of the body.
#[derive(Clone, Debug, Default)]
pub struct Script {
    pub head_after: Duration,
    pub gaps: Vec<Duration>,
}

impl Script {
    /// Headers at once, then `chunks` chunks, one every `every`.
    pub fn steady(chunks: usize, every: Duration) -> Self {
        Self {
            head_after: Duration::ZERO,
            gaps: vec![every; chunks],
        }
    }

    /// Headers after `delay`, then a one-chunk body.
    pub fn late_head(delay: Duration) -> Self {
        Self {
            head_after: delay,
            gaps: vec![Duration::ZERO],
        }
    }
}

/// What a scripted instance saw of its response: chunks the router took, and whether it stopped
/// taking them (the router dropped the instance's side before the end).
#[derive(Debug, Default)]
pub struct Fed {
    pub chunks: std::sync::atomic::AtomicUsize,
    pub dropped: std::sync::atomic::AtomicBool,
}

/// Answers as `script` says, recording in `fed` what happened to the body.
pub async fn scripted(script: Script, fed: std::sync::Arc<Fed>) -> Response<TestBody> {
    use std::sync::atomic::Ordering;
    tokio::time::sleep(script.head_after).await;
    let (mut tx, body) = http_body_util::Channel::<Bytes, BoxError>::new(1);
    tokio::spawn(async move {
        for (i, gap) in script.gaps.iter().enumerate() {
            tokio::time::sleep(*gap).await;
            if tx.send_data(format!("chunk {i}\n").into()).await.is_err() {
                fed.dropped.store(true, Ordering::SeqCst);
                return;
            }
            fed.chunks.fetch_add(1, Ordering::SeqCst);
        }
    });
    Response::builder()
        .header("content-type", "text/plain")
        .body(body.boxed_unsync())
        .unwrap()
}

/// A body read to its end: the data that arrived, and how it ended (`Err` with the error's
/// text when it did not end cleanly).
#[derive(Debug)]
pub struct Read {
    pub data: String,
    pub end: Result<(), String>,
}

/// Reads `body` frame by frame until its clean end or its error, failing the test if that
/// takes longer than [`DEADLINE`].
pub async fn read_to_end<B>(mut body: B) -> Read
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut data = Vec::new();
    let end = within(async {
        loop {
            match body.frame().await {
                None => return Ok(()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        data.extend_from_slice(&chunk);
                    }
                }
            }
        }
    })
    .await;
    Read {
        data: String::from_utf8_lossy(&data).into_owned(),
        end,
    }
}
