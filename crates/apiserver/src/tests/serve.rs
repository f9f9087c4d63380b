//! `serve` on loopback: answers, and returns once shutdown is asked even with a watch open.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::serve;

async fn get(addr: std::net::SocketAddr, path: &str) -> (TcpStream, String) {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    (conn, String::from_utf8_lossy(&buf[..n]).to_string())
}

#[tokio::test]
async fn serves_until_shutdown_then_drains_watches() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, test_app().0, async {
        let _ = stopped.await;
    }));
    let (_watch, head) = get(addr, &url("/services?watch=true")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_, head) = get(addr, &url("/services")).await;
    assert!(head.contains("\"kind\":\"ServiceList\""), "{head}");
    stop.send(()).unwrap();
    let result = tokio::time::timeout(crate::SHUTDOWN_GRACE * 2, server)
        .await
        .expect("serve returns");
    result.expect("no panic").expect("no I/O error");
}
