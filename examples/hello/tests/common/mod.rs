//! Test helpers: a minimal HTTP/1.1 and h2c client over one connection.

#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// A collected response.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Send one HTTP/1.1 request on a fresh connection and return the unread response.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn.with_upgrades());
    sender.send_request(request).await.expect("send")
}

/// Collect a response.
pub async fn collect(response: Response<Incoming>) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `GET path` over HTTP/1.1.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    collect(send(addr, request("GET", path, "")).await).await
}

/// `GET path` over h2c (prior knowledge).
pub async fn get_h2(addr: SocketAddr, path: &str) -> Answer {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let uri = format!("http://{addr}{path}");
    let request = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    collect(sender.send_request(request).await.expect("send")).await
}

/// A request with a `Host` header and a body.
pub fn request(method: &str, path: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "hello.default.example.com")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}
