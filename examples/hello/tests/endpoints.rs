//! The endpoints, served in-process on a loopback port.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{collect, get, get_h2, request, send};
use http::Request;
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use nimbus_hello::{App, Settings, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn start() -> SocketAddr {
    let settings = Settings {
        target: "Nimbus".into(),
        revision: "hello-00001".into(),
        service: "hello".into(),
        ..Settings::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, App::new(settings)));
    addr
}

#[tokio::test]
async fn root_echoes_request_facts() {
    let addr = start().await;
    let mut req = request("GET", "/?a=1", "");
    req.headers_mut().insert("x-test", "yes".parse().unwrap());
    let answer = collect(send(addr, req).await).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-revision"], "hello-00001");
    let body = answer.body;
    assert!(body.starts_with("Hello Nimbus!\n"), "{body}");
    for line in [
        "revision: hello-00001",
        "service: hello",
        "method: GET",
        "path: /?a=1",
        "version: HTTP/1.1",
        "host: hello.default.example.com",
        "x-test: yes",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in {body}"
        );
    }
}

#[tokio::test]
async fn json_has_the_same_facts() {
    let addr = start().await;
    let answer = get(addr, "/json?x=y").await;
    assert_eq!(answer.headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(v["greeting"], "Hello Nimbus!");
    assert_eq!(v["revision"], "hello-00001");
    assert_eq!(v["path"], "/json?x=y");
    assert_eq!(v["headers"]["host"], "hello.default.example.com");
}

#[tokio::test]
async fn speaks_h2c() {
    let addr = start().await;
    let answer = get_h2(addr, "/").await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("version: HTTP/2.0"), "{}", answer.body);
}

#[tokio::test]
async fn status_and_not_found() {
    let addr = start().await;
    assert_eq!(get(addr, "/status/503").await.status, 503);
    assert_eq!(get(addr, "/status/abc").await.status, 400);
    assert_eq!(get(addr, "/nope").await.status, 404);
}

#[tokio::test]
async fn sleep_waits() {
    let addr = start().await;
    let began = Instant::now();
    let answer = get(addr, "/sleep?ms=60").await;
    assert_eq!(answer.body, "slept 60 ms\n");
    assert!(began.elapsed() >= Duration::from_millis(60));
}

#[tokio::test]
async fn stream_sends_chunks_apart() {
    let addr = start().await;
    let response = send(addr, request("GET", "/stream?chunks=3&interval_ms=30", "")).await;
    let mut body = response.into_body();
    let began = Instant::now();
    let mut chunks = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            chunks.push((String::from_utf8_lossy(&data).into_owned(), began.elapsed()));
        }
    }
    let texts: Vec<_> = chunks.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(texts, ["chunk 0\n", "chunk 1\n", "chunk 2\n"]);
    assert!(chunks[2].1 >= Duration::from_millis(60), "{chunks:?}");
}

#[tokio::test]
async fn echo_streams_the_body_back_before_it_ends() {
    let addr = start().await;
    let (mut tx, request_body) = Channel::<Bytes, std::io::Error>::new(1);
    let req = Request::post("/echo")
        .header("host", "h")
        .body(request_body)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let response = tokio::spawn(async move { sender.send_request(req).await });
    tx.send_data(Bytes::from_static(b"first ")).await.unwrap();
    let mut body = response.await.unwrap().unwrap().into_body();
    // The first part comes back while the request body is still open.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first ");
    tx.send_data(Bytes::from_static(b"second")).await.unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
}

#[tokio::test]
async fn overlap_detects_concurrent_requests() {
    let addr = start().await;
    assert_eq!(get(addr, "/overlap?ms=20").await.body, "ok\n");
    let (a, b) = tokio::join!(get(addr, "/overlap?ms=100"), get(addr, "/overlap?ms=100"));
    assert_eq!(a.status, 500, "first request must notice the second");
    assert_eq!(b.status, 500);
    assert_eq!(b.body, "overlap\n");
    assert_eq!(get(addr, "/overlap?ms=10").await.status, 200);
}

#[tokio::test]
async fn upgrade_echoes_raw_bytes() {
    let addr = start().await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let hello = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";
    tcp.write_all(hello.as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    tcp.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn upgrade_without_header_is_refused() {
    let addr = start().await;
    assert_eq!(get(addr, "/ws").await.status, 426);
}

async fn read_head(tcp: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn introspection_endpoints() {
    let addr = start().await;
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(get(addr, "/cwd").await.body, format!("{}\n", cwd.display()));
    let argv0 = std::env::args().next().unwrap();
    assert!(get(addr, "/argv").await.body.starts_with(&argv0));
    let env = get(addr, "/env").await.body;
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
}
