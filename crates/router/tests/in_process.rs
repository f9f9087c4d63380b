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
use nimbus_router::{Body, Router};
use nimbus_runtime::{
    Endpoint, EndpointRegistry, LocalBody, LocalHandle, LocalResponse, LocalService,
    RevisionEndpoints, RevisionKey,
};
use support::*;

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
    let endpoints = EndpointRegistry::new();
    let router = Router::new(endpoints.clone(), test_config());
    let split = [(REV, 100)];
    router.apply(with_concurrency(
        ingress("fn", HOST, &split, timeout),
        concurrency,
    ));
    let handle = LocalHandle::new(Arc::new(Instance(Arc::clone(echo))));
    endpoints.set(
        &RevisionKey::new(NS, REV),
        RevisionEndpoints {
            ready: vec![Endpoint::in_process(format!("{REV}-1"), handle)],
            failure: None,
        },
    );
    router
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
