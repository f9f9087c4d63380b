//! The API port's connections (issue #13): a client that trickles its request headers (a
//! slowloris) or holds an idle keep-alive connection is cut off after
//! [`ConnLimits::header_read_timeout`], and at most [`ConnLimits::max_connections`] connections
//! are served at once (the next waits in the listen backlog until one closes). A response in
//! progress — a watch streams for as long as it lasts — is never cut by these limits.
//!
//! HTTP/1.1 and HTTP/2 (h2c and over TLS) are served by hyper-util's auto builder with
//! upgrades, as `axum::serve` does, but with a timer so hyper's header read timeout applies.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

/// Limits on the API port's connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    /// How long a client may take to send a request's headers, counted from when the
    /// connection opened or its previous response ended (so it is also the keep-alive idle
    /// timeout). Default 30 s.
    pub(crate) header_read_timeout: Duration,
    /// Connections served at once. Default 1024.
    pub(crate) max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` completes, then stop accepting and give open
/// connections [`crate::SHUTDOWN_GRACE`] to finish.
pub(crate) async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (io, _addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "API connection ended");
            }
            drop(slot);
        });
    }
    // New clients are refused at once rather than left in the backlog during the grace.
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(crate::SHUTDOWN_GRACE) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    async fn server(
        max_connections: usize,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = ConnLimits {
            header_read_timeout: TIMEOUT,
            max_connections,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Read until the server closes the connection (or 10 s pass: then `None`).
    async fn until_closed(conn: &mut TcpStream) -> Option<String> {
        let mut seen = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut seen));
        read.await.ok()?.ok()?;
        Some(String::from_utf8_lossy(&seen).into_owned())
    }

    /// Issue #13, 9: a client trickling its headers (slowloris held 100 of 100 connections for
    /// 45 s) is cut off at the header read timeout; one sending them at once is served.
    #[tokio::test]
    async fn a_slow_header_is_cut_off_and_a_whole_one_served() {
        let (addr, _stop) = server(16).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let closed = until_closed(&mut slow).await;
        assert!(closed.is_some(), "the slow client was never cut off");

        let mut whole = TcpStream::connect(addr).await.unwrap();
        whole
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let reply = until_closed(&mut whole).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }

    /// At most `max_connections` are served at once: with the one slot held by a keep-alive
    /// client gone idle after its first response, the next request is answered only once the
    /// idle one was cut off (the header read timeout also bounds keep-alive idleness).
    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_slot() {
        let (addr, _stop) = server(1).await;
        // The idle timer starts after the first response, so later than this.
        let started = Instant::now();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = Vec::new();
        while !first.ends_with(b"ok") {
            let mut buf = [0u8; 256];
            let n = idle.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the first response");
            first.extend_from_slice(&buf[..n]);
        }
        // Served: this connection holds the only slot, and is now idle.
        let mut next = TcpStream::connect(addr).await.unwrap();
        next.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let reply = until_closed(&mut next).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            started.elapsed() >= TIMEOUT,
            "answered while the only slot was held ({:?})",
            started.elapsed()
        );
        assert!(until_closed(&mut idle).await.is_some());
    }
}
