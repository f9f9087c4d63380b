//! The revision's request timeouts against instances behind sockets (pooled HTTP/1.1 and h2c),
//! through the served router: `timeoutSeconds` bounds the whole request and cuts a response
//! still streaming, `responseStartTimeoutSeconds` answers 504 when headers are late, and
//! `idleTimeoutSeconds` cuts a response that goes quiet for longer. A cut must look like one
//! to the client: no clean end of the body.
//!
//! These run on real sockets, so on real time; the limits are short and the margins wide
//! (gaps a tenth of the limit that must not fire). The same logic under paused time is tested in
//! `timeouts.rs` of the crate and with an in-process instance in `in_process.rs`.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use nimbus_api::networking::RequestTimeouts;
use nimbus_runtime::{Protocol, RevisionKey};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "t.default.localhost";
const REV: &str = "t-00001";

fn timeouts(total_ms: u64, start_ms: u64, idle_ms: Option<u64>) -> RequestTimeouts {
    RequestTimeouts {
        total: Duration::from_millis(total_ms),
        response_start: Duration::from_millis(start_ms),
        idle: idle_ms.map(Duration::from_millis),
    }
}

/// A served router sending `HOST` to one `protocol` instance answering as `script` says.
async fn serve(
    protocol: Protocol,
    timeouts: RequestTimeouts,
    script: Script,
) -> (TestRouter, Arc<Fed>) {
    let fed = Arc::new(Fed::default());
    let fed_by_backend = Arc::clone(&fed);
    let addr = backend(protocol, move |_req| {
        scripted(script.clone(), Arc::clone(&fed_by_backend))
    })
    .await;
    let t = start_router().await;
    let ingress = ingress("t", HOST, &[(REV, 100)], Duration::from_secs(60));
    t.router.apply(with_timeouts(ingress, timeouts));
    publish(&t.endpoints, REV, addr, protocol);
    (t, fed)
}

fn get() -> Request<TestBody> {
    Request::get("/")
        .header("host", HOST)
        .body(text(""))
        .unwrap()
}

/// `get` as an HTTP/2 client sends it (the host as `:authority`).
fn get_h2() -> Request<TestBody> {
    Request::get("http://t.default.localhost/")
        .body(text(""))
        .unwrap()
}

async fn in_flight_drops_to_zero(t: &TestRouter) {
    let stats = t.router.stats(&RevisionKey::new(NS, REV)).unwrap();
    eventually("the cut request leaves in-flight", || {
        stats.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn a_streaming_response_is_cut_at_timeout_seconds() {
    let endless = Script::steady(100_000, Duration::from_millis(50));
    let (t, fed) = serve(Protocol::Http1, timeouts(800, 800, None), endless).await;
    let started = Instant::now();
    let resp = within(h1_client(t.addr).await.send_request(get()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let read = read_to_end(resp.into_body()).await;
    assert!(read.end.is_err(), "the body ended cleanly: {read:?}");
    assert!(started.elapsed() >= Duration::from_millis(800), "cut early");
    assert!(read.data.starts_with("chunk 0\nchunk 1\n"), "{read:?}");
    eventually("the instance's side is dropped", || {
        fed.dropped.load(Ordering::SeqCst)
    })
    .await;
    in_flight_drops_to_zero(&t).await;
}

#[tokio::test]
async fn a_cut_http1_response_has_no_last_chunk_and_closes_the_connection() {
    let endless = Script::steady(100_000, Duration::from_millis(50));
    let (t, _fed) = serve(Protocol::Http1, timeouts(500, 500, None), endless).await;
    let mut conn = TcpStream::connect(t.addr).await.unwrap();
    let head = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut wire = Vec::new();
    // Returns only once the router closes the connection.
    within(conn.read_to_end(&mut wire)).await.unwrap();
    let wire = String::from_utf8_lossy(&wire).to_ascii_lowercase();
    assert!(wire.starts_with("http/1.1 200"), "{wire}");
    assert!(wire.contains("transfer-encoding: chunked"), "{wire}");
    assert!(wire.contains("chunk 0\n"), "{wire}");
    assert!(
        !wire.ends_with("0\r\n\r\n"),
        "the chunked body was ended cleanly: {wire}"
    );
}

#[tokio::test]
async fn late_headers_are_a_504_at_response_start_timeout_seconds() {
    let late = Script::late_head(Duration::from_secs(5));
    let (t, _fed) = serve(Protocol::Http1, timeouts(10_000, 300, None), late).await;
    let started = Instant::now();
    let resp = within(h1_client(t.addr).await.send_request(get()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered early"
    );
    let body = body_text(resp.into_body()).await;
    assert!(body.contains("responseStartTimeoutSeconds"), "{body}");
    assert!(body.contains(REV), "{body}");
}

#[tokio::test]
async fn headers_within_response_start_timeout_seconds_are_served() {
    let prompt = Script::late_head(Duration::from_millis(50));
    let (t, _fed) = serve(Protocol::Http1, timeouts(10_000, 1_000, None), prompt).await;
    let resp = within(h1_client(t.addr).await.send_request(get()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_text(resp.into_body()).await, "chunk 0\n");
}

#[tokio::test]
async fn gaps_shorter_than_idle_timeout_seconds_stream_to_the_end() {
    // 1.2 s of streaming in all, twice the idle limit, in gaps of a sixth of it.
    let steady = Script::steady(12, Duration::from_millis(100));
    let (t, _fed) = serve(Protocol::Http1, timeouts(10_000, 10_000, Some(600)), steady).await;
    let resp = within(h1_client(t.addr).await.send_request(get()))
        .await
        .unwrap();
    let read = read_to_end(resp.into_body()).await;
    assert_eq!(read.end, Ok(()));
    assert_eq!(read.data.lines().count(), 12, "{read:?}");
}

#[tokio::test]
async fn a_gap_longer_than_idle_timeout_seconds_cuts_the_body() {
    let stalls = Script {
        head_after: Duration::ZERO,
        gaps: vec![
            Duration::from_millis(50),
            Duration::from_secs(5),
            Duration::ZERO,
        ],
    };
    let (t, _fed) = serve(Protocol::Http1, timeouts(10_000, 10_000, Some(500)), stalls).await;
    let resp = within(h1_client(t.addr).await.send_request(get()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let read = read_to_end(resp.into_body()).await;
    assert!(read.end.is_err(), "the body ended cleanly: {read:?}");
    assert_eq!(read.data, "chunk 0\n");
    in_flight_drops_to_zero(&t).await;
}

#[tokio::test]
async fn an_h2c_response_is_reset_at_timeout_seconds_for_an_h2_client() {
    let endless = Script::steady(100_000, Duration::from_millis(50));
    let (t, fed) = serve(Protocol::H2c, timeouts(800, 800, None), endless).await;
    let mut client = h2_client(t.addr).await;
    let resp = within(client.send_request(get_h2())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let read = read_to_end(resp.into_body()).await;
    assert!(read.end.is_err(), "the stream ended cleanly: {read:?}");
    assert!(read.data.starts_with("chunk 0\n"), "{read:?}");
    eventually("the instance's stream is reset", || {
        fed.dropped.load(Ordering::SeqCst)
    })
    .await;
    // Only the stream was reset: the client's connection still serves requests.
    let resp = within(client.send_request(get_h2())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn late_h2c_headers_are_a_504_at_response_start_timeout_seconds() {
    let late = Script::late_head(Duration::from_secs(5));
    let (t, _fed) = serve(Protocol::H2c, timeouts(10_000, 300, None), late).await;
    let resp = within(h2_client(t.addr).await.send_request(get_h2()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = body_text(resp.into_body()).await;
    assert!(body.contains("responseStartTimeoutSeconds"), "{body}");
}
