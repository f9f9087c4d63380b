//! Instances inside the server process (the Wasm runtime's): the router calls their
//! [`LocalService`] directly, with the same request rewriting, limits and accounting as for an
//! instance behind a socket.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use nimbus_api::networking::RequestTimeouts;
use nimbus_router::{Body, Router};
use nimbus_runtime::{
    Endpoint, EndpointRegistry, LocalBody, LocalHandle, LocalResponse, LocalService,
    RevisionEndpoints, RevisionKey,
};
use support::*;
use tokio::time::Instant;

const HOST: &str = "fn.default.localhost";
const REV: &str = "fn-00001";

/// Answers with the request line and headers (like `echo_headers`), after `delay`, counting
/// how many requests it holds at once.
#[derive(Default)]
struct Echo {
    delay: Duration,
    running: AtomicUsize,
    most: AtomicUsize,
}

/// The in-process instance serving with an [`Echo`].
struct Instance(Arc<Echo>);

impl LocalService for Instance {
    fn call(&self, req: Request<LocalBody>) -> LocalResponse {
        let echo = Arc::clone(&self.0);
        Box::pin(async move {
            let now = echo.running.fetch_add(1, Ordering::SeqCst) + 1;
            echo.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(echo.delay).await;
            let mut out = format!("{} {}\n", req.method(), req.uri());
            for (name, value) in req.headers() {
                out.push_str(&format!("{name}: {}\n", value.to_str().unwrap()));
            }
            let body = req.into_body().collect().await.unwrap().to_bytes();
            out.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
            echo.running.fetch_sub(1, Ordering::SeqCst);
            Response::builder()
                .header("connection", "x-hop")
                .header("x-hop", "1")
                .body(text(out))
                .unwrap()
        })
    }
}

fn client() -> SocketAddr {
    ([192, 0, 2, 10], 40000).into()
}

fn router_with(echo: &Arc<Echo>, timeout: Duration, concurrency: u32) -> Router {
    let ingress = with_concurrency(ingress("fn", HOST, &[(REV, 100)], timeout), concurrency);
    let router = Router::new(EndpointRegistry::new(), test_config());
    router.apply(ingress);
    publish_local(router.endpoints(), Arc::new(Instance(Arc::clone(echo))));
    router
}

/// Publishes `instance` as the revision's only ready instance.
fn publish_local(endpoints: &EndpointRegistry, instance: Arc<dyn LocalService>) {
    let handle = LocalHandle::new(instance);
    endpoints.set(
        &RevisionKey::new(NS, REV),
        RevisionEndpoints {
            ready: vec![Endpoint::in_process(format!("{REV}-1"), handle)],
            failure: None,
        },
    );
}

fn post(body: &'static str) -> Request<Body> {
    Request::post("/p?q=1")
        .header("host", HOST)
        .header("connection", "x-req-hop")
        .header("x-req-hop", "1")
        .body(Body::from(body))
        .unwrap()
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let resp = within(router.handle(req, client())).await;
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body_text(body).await)
}

#[tokio::test]
async fn the_request_is_rewritten_as_for_any_instance_and_the_response_streams_back() {
    let echo = Arc::new(Echo::default());
    let router = router_with(&echo, Duration::from_secs(5), 0);
    let (status, headers, body) = call(&router, post("hello")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("POST /p?q=1\n"), "{body}");
    assert_eq!(echoed(&body, "host"), [HOST]);
    assert_eq!(echoed(&body, "x-forwarded-for"), ["192.0.2.10"]);
    assert!(
        echoed(&body, "x-req-hop").is_empty(),
        "hop-by-hop out: {body}"
    );
    assert!(body.ends_with("body: hello\n"), "{body}");
    assert!(
        !headers.contains_key("x-hop"),
        "hop-by-hop out: {headers:?}"
    );
    let stats = router.stats(&RevisionKey::new(NS, REV)).unwrap();
    assert_eq!((stats.requests(), stats.in_flight()), (1, 0));
}

#[tokio::test]
async fn container_concurrency_holds_for_in_process_instances() {
    let echo = Arc::new(Echo {
        delay: Duration::from_millis(50),
        ..Echo::default()
    });
    let router = router_with(&echo, Duration::from_secs(5), 1);
    let (a, b, c) = tokio::join!(
        call(&router, post("")),
        call(&router, post("")),
        call(&router, post(""))
    );
    assert_eq!([a.0, b.0, c.0], [StatusCode::OK; 3]);
    assert_eq!(echo.most.load(Ordering::SeqCst), 1, "one at a time");
}

#[tokio::test]
async fn an_instance_that_does_not_answer_in_time_is_a_504() {
    let echo = Arc::new(Echo {
        delay: Duration::from_secs(3600),
        ..Echo::default()
    });
    let router = router_with(&echo, Duration::from_millis(100), 0);
    let (status, _, body) = call(&router, post("")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("fn-00001"), "{body}");
}

#[tokio::test]
async fn an_upgrade_request_reaches_an_in_process_instance_as_a_plain_request() {
    let echo = Arc::new(Echo::default());
    let router = router_with(&echo, Duration::from_secs(5), 0);
    let req = Request::get("/ws")
        .header("host", HOST)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&router, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(echoed(&body, "upgrade").is_empty(), "{body}");
    assert!(echoed(&body, "connection").is_empty(), "{body}");
}

// === the revision's request timeouts ===
//
// On paused time: the instance and the router share the test's clock, so every limit fires at
// its exact virtual instant.

/// The in-process instance answering every request as its script says.
struct Scripted(Script, Arc<Fed>);

impl LocalService for Scripted {
    fn call(&self, _req: Request<LocalBody>) -> LocalResponse {
        Box::pin(scripted(self.0.clone(), Arc::clone(&self.1)))
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A router whose revision has `timeouts` and one instance answering as `script` says.
fn scripted_router(timeouts: RequestTimeouts, script: Script) -> (Router, Arc<Fed>) {
    let ingress = with_timeouts(ingress("fn", HOST, &[(REV, 100)], secs(60.0)), timeouts);
    let router = Router::new(EndpointRegistry::new(), test_config());
    router.apply(ingress);
    let fed = Arc::new(Fed::default());
    publish_local(
        router.endpoints(),
        Arc::new(Scripted(script, Arc::clone(&fed))),
    );
    (router, fed)
}

fn limits(total: f64, start: f64, idle: Option<f64>) -> RequestTimeouts {
    RequestTimeouts {
        total: secs(total),
        response_start: secs(start),
        idle: idle.map(secs),
    }
}

async fn get_read(router: &Router) -> (StatusCode, Read) {
    let req = Request::get("/").header("host", HOST).body(Body::empty());
    let resp = within(router.handle(req.unwrap(), client())).await;
    (resp.status(), read_to_end(resp.into_body()).await)
}

#[tokio::test(start_paused = true)]
async fn a_streaming_response_is_cut_at_timeout_seconds() {
    let endless = Script::steady(1000, secs(1.0));
    let (router, fed) = scripted_router(limits(5.5, 5.5, None), endless);
    let started = Instant::now();
    let (status, read) = get_read(&router).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(started.elapsed(), secs(5.5));
    assert_eq!(read.data.lines().count(), 5, "{read:?}");
    let error = read.end.expect_err("the body ended cleanly");
    assert!(
        error.ends_with("cut after 5.5s (timeoutSeconds)"),
        "{error}"
    );
    eventually("the instance's body is dropped", || {
        fed.dropped.load(Ordering::SeqCst)
    })
    .await;
    let stats = router.stats(&RevisionKey::new(NS, REV)).unwrap();
    assert_eq!(stats.in_flight(), 0);
}

/// An in-process instance answering `done` after `delay`, its whole body at once.
struct Late(Duration);

impl LocalService for Late {
    fn call(&self, _req: Request<LocalBody>) -> LocalResponse {
        let delay = self.0;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Response::new(text("done"))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_whole_response_arriving_as_timeout_seconds_passes_is_not_cut() {
    // Like a Wasm instance's own 504 at the same timeoutSeconds: head and whole body at once,
    // at the instant the request's time is up.
    let ingress = with_timeouts(
        ingress("fn", HOST, &[(REV, 100)], secs(60.0)),
        limits(2.0, 2.0, None),
    );
    let router = Router::new(EndpointRegistry::new(), test_config());
    router.apply(ingress);
    publish_local(router.endpoints(), Arc::new(Late(secs(2.0))));
    let (status, read) = get_read(&router).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((read.data.as_str(), read.end), ("done", Ok(())));
}

#[tokio::test(start_paused = true)]
async fn late_headers_are_a_504_at_response_start_timeout_seconds() {
    let (router, _) = scripted_router(limits(9.0, 2.0, None), Script::late_head(secs(8.0)));
    let started = Instant::now();
    let (status, read) = get_read(&router).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(started.elapsed(), secs(2.0));
    assert!(
        read.data
            .contains("within 2s (responseStartTimeoutSeconds) (request id "),
        "{read:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn gaps_shorter_than_idle_timeout_seconds_stream_to_the_end() {
    let steady = Script::steady(5, secs(1.5));
    let (router, _) = scripted_router(limits(60.0, 60.0, Some(2.0)), steady);
    let (status, read) = get_read(&router).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read.end, Ok(()));
    assert_eq!(read.data.lines().count(), 5, "{read:?}");
}

#[tokio::test(start_paused = true)]
async fn a_gap_longer_than_idle_timeout_seconds_cuts_the_body() {
    let stalls = Script {
        head_after: Duration::ZERO,
        gaps: vec![secs(1.0), secs(8.0), Duration::ZERO],
    };
    let (router, _) = scripted_router(limits(60.0, 60.0, Some(2.0)), stalls);
    let started = Instant::now();
    let (status, read) = get_read(&router).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read.data, "chunk 0\n");
    let error = read.end.expect_err("the body ended cleanly");
    assert!(
        error.ends_with("cut after 2s (idleTimeoutSeconds)"),
        "{error}"
    );
    assert_eq!(started.elapsed(), secs(3.0));
}

#[tokio::test(start_paused = true)]
async fn silence_before_the_headers_counts_as_idle() {
    let (router, _) = scripted_router(limits(60.0, 30.0, Some(2.0)), Script::late_head(secs(8.0)));
    let (status, read) = get_read(&router).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(read.data.contains("(idleTimeoutSeconds)"), "{read:?}");
}

#[tokio::test(start_paused = true)]
async fn waiting_for_an_instance_counts_against_timeout_seconds_only() {
    // The instance comes up 4 s after the request arrived and takes 3 s to answer: within its
    // own 5 s to start a response, but past the request's 6 s in all.
    let ingress = with_timeouts(
        ingress("fn", HOST, &[(REV, 100)], secs(60.0)),
        limits(6.0, 5.0, None),
    );
    let router = Router::new(EndpointRegistry::new(), test_config());
    router.apply(ingress);
    let endpoints = router.endpoints().clone();
    tokio::spawn(async move {
        tokio::time::sleep(secs(4.0)).await;
        let instance = Scripted(Script::late_head(secs(3.0)), Arc::default());
        publish_local(&endpoints, Arc::new(instance));
    });
    let started = Instant::now();
    let (status, read) = get_read(&router).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(started.elapsed(), secs(6.0));
    assert!(read.data.contains("(timeoutSeconds)"), "{read:?}");
}
