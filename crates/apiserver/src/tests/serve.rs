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

/// One HTTP/1.1 GET over `io`; returns the response head and body as text.
async fn get_over<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    path: &str,
) -> String {
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer t\r\nconnection: close\r\n\r\n"
    );
    io.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut out))
        .await
        .expect("answer")
        .expect("read");
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn one_port_speaks_https_and_plain_http() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let identity = crate::TlsIdentity::load_or_create(dir.path(), addr).unwrap();
    let app = app(ApiState::new(store()).with_token("t"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_identity = identity.clone();
    let server = tokio::spawn(async move {
        crate::serve_with_tls(listener, app, &server_identity, async {
            let _ = stopped.await;
        })
        .await
    });

    let plain = get_over(TcpStream::connect(addr).await.unwrap(), "/version").await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(identity.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the local CA");
    let secure = get_over(tls, "/apis").await;
    assert!(secure.starts_with("HTTP/1.1 200"), "{secure}");
    assert!(secure.contains("APIGroupList"), "{secure}");

    stop.send(()).unwrap();
    let result = tokio::time::timeout(crate::SHUTDOWN_GRACE * 2, server)
        .await
        .expect("serve returns");
    result.expect("no panic").expect("no I/O error");
}
