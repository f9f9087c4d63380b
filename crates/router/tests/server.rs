//! The router served on loopback and driven by real HTTP/1.1, HTTP/2 and raw TCP clients:
//! what only a real connection can show (headers on the wire, streaming, upgrades, h2c, limits).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Channel};
use hyper::body::Incoming;
use nimbus_router::{Router, RouterConfig};
use nimbus_runtime::{EndpointRegistry, Protocol, RevisionKey};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn forwards_path_and_rewrites_headers_per_the_runtime_contract() {
    let t = start_router().await;
    let echo = backend(Protocol::Http1, echo_headers).await;
    t.router.apply(ingress(
        "hello",
        "hello.default.localhost",
        &[("hello-00001", 100)],
        TIMEOUT,
    ));
    publish(&t.endpoints, "hello-00001", echo, Protocol::Http1);

    let req = Request::get("/a/b?x=1&y=2")
        .header("host", "Hello.Default.localhost:8080")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("forwarded", "for=203.0.113.9;proto=https")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "do not forward")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers, deflate")
        .body(text(""))
        .unwrap();
    let resp = within(h1_client(t.addr).await.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-backend"], "echo");
    for hop in ["x-resp-hop", "keep-alive"] {
        assert!(
            !resp.headers().contains_key(hop),
            "response kept hop-by-hop {hop}"
        );
    }
    let body = body_text(resp.into_body()).await;

    assert!(body.starts_with("GET /a/b?x=1&y=2\n"), "{body}");
    assert_eq!(echoed(&body, "host"), ["Hello.Default.localhost:8080"]);
    assert_eq!(
        echoed(&body, "forwarded"),
        ["for=203.0.113.9;proto=https, for=127.0.0.1;proto=http"]
    );
    assert_eq!(echoed(&body, "x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(echoed(&body, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        echoed(&body, "traceparent"),
        ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
    );
    assert_eq!(echoed(&body, "te"), ["trailers"]);
    for hop in ["x-secret", "keep-alive", "proxy-connection"] {
        assert!(
            echoed(&body, hop).is_empty(),
            "forwarded hop-by-hop {hop}: {body}"
        );
    }
}

#[tokio::test]
async fn response_chunks_arrive_before_the_instance_finishes() {
    let t = start_router().await;
    let (senders_tx, mut senders) = mpsc::unbounded_channel();
    let streaming = backend(Protocol::Http1, move |_req| {
        let senders_tx = senders_tx.clone();
        async move {
            let (tx, body) = Channel::<Bytes, BoxError>::new(1);
            senders_tx.send(tx).unwrap();
            Response::new(body.boxed_unsync())
        }
    })
    .await;
    t.router.apply(ingress(
        "stream",
        "stream.default.localhost",
        &[("stream-00001", 100)],
        TIMEOUT,
    ));
    publish(&t.endpoints, "stream-00001", streaming, Protocol::Http1);

    let req = Request::get("/")
        .header("host", "stream.default.localhost")
        .body(text(""))
        .unwrap();
    let mut resp = within(h1_client(t.addr).await.send_request(req))
        .await
        .unwrap();
    let mut chunks = within(senders.recv()).await.unwrap();
    let stats = t
        .router
        .stats(&RevisionKey::new(NS, "stream-00001"))
        .unwrap();
    assert_eq!(stats.in_flight(), 1);

    chunks
        .send_data(Bytes::from_static(b"first"))
        .await
        .unwrap();
    let frame = within(resp.body_mut().frame()).await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "first");

    chunks
        .send_data(Bytes::from_static(b"second"))
        .await
        .unwrap();
    drop(chunks);
    assert_eq!(body_text(resp.into_body()).await, "second");
    eventually("the finished request leaves in-flight", || {
        stats.in_flight() == 0
    })
    .await;
}

async fn upgrade_echo(mut req: Request<Incoming>) -> Response<TestBody> {
    tokio::spawn(async move {
        let upgraded = hyper::upgrade::on(&mut req).await.unwrap();
        let (mut r, mut w) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(text(""))
        .unwrap()
}

#[tokio::test]
async fn upgraded_connections_are_spliced_both_ways() {
    let t = start_router().await;
    let echo = backend(Protocol::Http1, upgrade_echo).await;
    t.router.apply(ingress(
        "ws",
        "ws.default.localhost",
        &[("ws-00001", 100)],
        TIMEOUT,
    ));
    publish(&t.endpoints, "ws-00001", echo, Protocol::Http1);

    let mut conn = TcpStream::connect(t.addr).await.unwrap();
    let head = "GET /chat HTTP/1.1\r\nHost: ws.default.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    let head = within(read_head(&mut conn)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );

    for msg in [&b"ping"[..], b"pong-pong"] {
        conn.write_all(msg).await.unwrap();
        let mut back = vec![0; msg.len()];
        within(conn.read_exact(&mut back)).await.unwrap();
        assert_eq!(back, msg);
    }
}

/// Reads an HTTP/1 response head byte by byte (so no upgraded bytes are consumed).
async fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(conn.read_u8().await.unwrap());
    }
    String::from_utf8(head).unwrap()
}

async fn grpc_like_echo(req: Request<Incoming>) -> Response<TestBody> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let xff = req.headers().get("x-forwarded-for").cloned();
    let (tx, body) = Channel::<Bytes, BoxError>::new(4);
    tokio::spawn(async move {
        let mut tx = tx;
        let data = req.into_body().collect().await.unwrap().to_bytes();
        tx.send_data(data).await.unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        tx.send_trailers(trailers).await.unwrap();
    });
    let mut resp = Response::new(body.boxed_unsync());
    resp.headers_mut()
        .insert("x-seen-authority", authority.parse().unwrap());
    if let Some(xff) = xff {
        resp.headers_mut().insert("x-seen-xff", xff);
    }
    resp
}

#[tokio::test]
async fn h2_client_to_h2c_instance_keeps_trailers_and_authority() {
    let t = start_router().await;
    let grpc = backend(Protocol::H2c, grpc_like_echo).await;
    t.router.apply(ingress(
        "grpc",
        "grpc.default.localhost",
        &[("grpc-00001", 100)],
        TIMEOUT,
    ));
    publish(&t.endpoints, "grpc-00001", grpc, Protocol::H2c);

    let mut client = h2_client(t.addr).await;
    for i in 0..3 {
        let req = Request::post("http://grpc.default.localhost/echo.Echo/Say")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(text(format!("hello {i}")))
            .unwrap();
        let resp = within(client.send_request(req)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-seen-authority"], "grpc.default.localhost");
        assert_eq!(resp.headers()["x-seen-xff"], "127.0.0.1");
        let collected = within(resp.into_body().collect()).await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), format!("hello {i}"));
    }
}

#[tokio::test]
async fn h2_client_to_http1_instance_gets_a_host_header() {
    let t = start_router().await;
    let echo = backend(Protocol::Http1, echo_headers).await;
    t.router.apply(ingress(
        "hello",
        "hello.default.localhost",
        &[("hello-00001", 100)],
        TIMEOUT,
    ));
    publish(&t.endpoints, "hello-00001", echo, Protocol::Http1);

    let req = Request::get("http://hello.default.localhost/x")
        .body(text(""))
        .unwrap();
    let resp = within(h2_client(t.addr).await.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = body_text(resp.into_body()).await;
    assert_eq!(echoed(&body, "host"), ["hello.default.localhost"]);
}

#[tokio::test]
async fn oversized_request_headers_get_431_or_a_clean_close() {
    let t = start_router().await;
    let mut conn = TcpStream::connect(t.addr).await.unwrap();
    let mut head = String::from("GET / HTTP/1.1\r\nHost: x.localhost\r\n");
    for i in 0..100 {
        head.push_str(&format!("x-big-{i}: {}\r\n", "a".repeat(1000)));
    }
    head.push_str("\r\n");
    // The router may close before it has read everything; a failed write is a clean refusal too.
    let _ = conn.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = within(conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // The router is still serving.
    let req = Request::get("/")
        .header("host", "x.localhost")
        .body(text(""))
        .unwrap();
    let resp = within(h1_client(t.addr).await.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let t = start_router().await;
    let idle = h1_client(t.addr).await; // an idle keep-alive connection must not block shutdown
    let addr = t.addr;
    t.stop().await.unwrap();
    drop(idle);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// Serves one proxied request and shuts down, with clients served on `workers` threads.
async fn serve_one_request_with(workers: usize) {
    let config = RouterConfig {
        workers,
        ..test_config()
    };
    let t = start_router_with(Router::new(EndpointRegistry::new(), config)).await;
    let echo = backend(Protocol::Http1, echo_headers).await;
    t.router
        .apply(ingress("w", "w.localhost", &[("w-1", 100)], TIMEOUT));
    publish(&t.endpoints, "w-1", echo, Protocol::Http1);
    let req = Request::get("/x")
        .header("host", "w.localhost")
        .body(text(""))
        .unwrap();
    let resp = within(h1_client(t.addr).await.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(body_text(resp.into_body()).await.starts_with("GET /x\n"));
    let addr = t.addr;
    t.stop().await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test]
async fn clients_can_be_served_on_the_callers_runtime() {
    serve_one_request_with(0).await;
}

#[tokio::test]
async fn clients_can_be_served_on_several_worker_threads() {
    serve_one_request_with(3).await;
}

#[tokio::test]
async fn instance_connections_are_kept_alive_and_reused() {
    let (addr, accepted) = counting_backend().await;
    let t = start_router().await;
    t.router
        .apply(ingress("k", "k.localhost", &[("k-1", 100)], TIMEOUT));
    publish(&t.endpoints, "k-1", addr, Protocol::Http1);
    let mut client = h1_client(t.addr).await;
    for _ in 0..5 {
        let req = Request::get("/")
            .header("host", "k.localhost")
            .body(text(""))
            .unwrap();
        let resp = within(client.send_request(req)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        body_text(resp.into_body()).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for five requests"
    );
}

/// An HTTP/1.1 echo backend that counts the connections it accepted.
async fn counting_backend() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let service = hyper::service::service_fn(|req| async {
                Ok::<_, std::convert::Infallible>(echo_headers(req).await)
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    (addr, accepted)
}
