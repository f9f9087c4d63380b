//! The data path tested at the service level: `Router::handle` called directly, like axum's
//! `oneshot`, against tiny backends on loopback.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use nimbus_router::{Body, Router, RouterConfig};
use nimbus_runtime::{EndpointRegistry, Protocol, RevisionKey};
use support::*;

const HOST: &str = "hello.default.localhost";

fn client() -> SocketAddr {
    ([192, 0, 2, 10], 40000).into()
}

fn router() -> (Router, EndpointRegistry) {
    let endpoints = EndpointRegistry::new();
    let config = RouterConfig {
        connect_timeout: Duration::from_secs(2),
        ..RouterConfig::default()
    };
    (Router::new(endpoints.clone(), config), endpoints)
}

fn get(host: &str) -> Request<Body> {
    Request::get("/")
        .header("host", host)
        .body(Body::empty())
        .unwrap()
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = within(router.handle(req, client())).await;
    let status = resp.status();
    (status, body_text(resp.into_body()).await)
}

#[tokio::test]
async fn unknown_host_is_404_naming_the_host() {
    let (router, _) = router();
    let (status, body) = call(&router, get("Nope.Example:8080")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body.contains(r#"no service for host "nope.example""#),
        "{body}"
    );
}

/// Issue #13, 10: two Host fields could name two hosts (one routed, another seen by the
/// instance): refused.
#[tokio::test]
async fn duplicate_host_headers_are_400() {
    let (router, _) = router();
    let req = Request::get("/")
        .header("host", HOST)
        .header("host", "other.example")
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(&router, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("more than one Host header"), "{body}");
}

#[tokio::test]
async fn missing_host_is_400() {
    let (router, _) = router();
    let (status, _) = call(&router, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn revision_that_never_gets_an_instance_is_503_naming_it() {
    let endpoints = EndpointRegistry::new();
    let config = RouterConfig {
        max_activation_wait: Duration::from_millis(100),
        ..RouterConfig::default()
    };
    let router = Router::new(endpoints, config);
    router.apply(ingress(
        "hello",
        HOST,
        &[("hello-00001", 100)],
        Duration::from_secs(5),
    ));
    let resp = within(router.handle(get(HOST), client())).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body = body_text(resp.into_body()).await;
    assert!(
        body.contains(r#"revision "default/hello-00001" did not become ready within 100ms"#),
        "{body}"
    );
}

#[tokio::test]
async fn dead_instance_is_502_for_a_request_with_a_body() {
    let (router, endpoints) = router();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }; // closed again: connections are refused
    router.apply(ingress(
        "hello",
        HOST,
        &[("hello-00001", 100)],
        Duration::from_secs(5),
    ));
    publish(&endpoints, "hello-00001", dead, Protocol::Http1);
    let post = Request::post("/")
        .header("host", HOST)
        .header("content-length", "5")
        .body(Body::from("hello"))
        .unwrap();
    let (status, body) = call(&router, post).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("no instance could be reached"), "{body}");
    assert!(
        !body.contains("127.0.0.1"),
        "the instance's address stays private: {body}"
    );
}

#[tokio::test]
async fn slow_instance_is_504_after_the_revision_timeout() {
    let (router, endpoints) = router();
    let never = backend(Protocol::Http1, |_req| std::future::pending()).await;
    let timeout = Duration::from_millis(200);
    router.apply(ingress("hello", HOST, &[("hello-00001", 100)], timeout));
    publish(&endpoints, "hello-00001", never, Protocol::Http1);
    let started = Instant::now();
    let (status, body) = call(&router, get(HOST)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("200ms"), "{body}");
    assert!(started.elapsed() >= timeout);
}

#[tokio::test]
async fn traffic_splits_80_20() {
    let (router, endpoints) = router();
    let a = backend(Protocol::Http1, |_req| async {
        http::Response::new(text("a"))
    })
    .await;
    let b = backend(Protocol::Http1, |_req| async {
        http::Response::new(text("b"))
    })
    .await;
    let splits = [("hello-00001", 80), ("hello-00002", 20)];
    router.apply(ingress("hello", HOST, &splits, Duration::from_secs(5)));
    publish(&endpoints, "hello-00001", a, Protocol::Http1);
    publish(&endpoints, "hello-00002", b, Protocol::Http1);
    let mut to_a = 0;
    for _ in 0..1000 {
        let (status, body) = call(&router, get(HOST)).await;
        assert_eq!(status, StatusCode::OK);
        to_a += usize::from(body == "a");
    }
    assert!(
        (750..=850).contains(&to_a),
        "{to_a} of 1000 went to the 80% revision"
    );
    let stats = |rev| router.stats(&RevisionKey::new(NS, rev)).unwrap().snapshot();
    assert_eq!(stats("hello-00001").requests, to_a as u64);
    assert_eq!(
        stats("hello-00001").requests + stats("hello-00002").requests,
        1000
    );
    assert_eq!(stats("hello-00001").in_flight, 0);
}

#[tokio::test]
async fn removed_ingress_is_no_longer_served() {
    let (router, endpoints) = router();
    let a = backend(Protocol::Http1, |_req| async {
        http::Response::new(text("a"))
    })
    .await;
    router.apply(ingress(
        "hello",
        HOST,
        &[("hello-00001", 100)],
        Duration::from_secs(5),
    ));
    publish(&endpoints, "hello-00001", a, Protocol::Http1);
    assert_eq!(call(&router, get(HOST)).await.0, StatusCode::OK);
    router.remove(NS, "hello");
    assert_eq!(call(&router, get(HOST)).await.0, StatusCode::NOT_FOUND);
    assert!(router.all_stats().is_empty());
}
