//! Serving clients: accepting TCP connections and speaking HTTP/1.1 and HTTP/2 cleartext (prior
//! knowledge) on the same port, with protocol upgrades and graceful shutdown.
//!
//! Owns connection-level limits (header sizes, read timeouts); every request goes to
//! [`Router::handle`]. Where the accept loop runs (dedicated event-loop threads or the caller's
//! runtime) is `workers.rs`'s business.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};

use crate::body::Body;
use crate::config::{HYPER_MAX_HEADERS, RouterConfig};
use crate::headers::Forwarding;
use crate::router::Router;

// === impl Router (serving) ===

impl Router {
    /// Serves clients on `listener` until `shutdown` completes, then stops accepting and waits
    /// (at most `drain_timeout`) for open connections to finish their requests.
    ///
    /// With [`RouterConfig::workers`] > 0 (the default) the connections are served on that many
    /// dedicated threads, each with its own single-threaded runtime; the caller's runtime only
    /// waits for `shutdown`. With 0 they are served on the caller's runtime.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        match self.inner.config.workers {
            0 => self.serve_here(listener, shutdown).await,
            threads => self.serve_on_threads(listener, threads, shutdown).await,
        }
    }

    /// The accept loop and the drain, on the current runtime.
    pub(crate) async fn serve_here(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let builder = Arc::new(connection_builder(&self.inner.config));
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let builder = Arc::clone(&builder);
                    tokio::spawn(self.clone().serve_connection(
                        builder,
                        stream,
                        peer,
                        graceful.watcher(),
                    ));
                }
                Err(e) => accept_failed(e).await,
            }
        }
        drop(listener);
        if tokio::time::timeout(self.inner.config.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
        Ok(())
    }

    async fn serve_connection(
        self,
        builder: Arc<auto::Builder<TokioExecutor>>,
        stream: TcpStream,
        peer: SocketAddr,
        watcher: Watcher,
    ) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let client = Arc::new((self, Forwarding::new(peer.ip())));
        let service = service_fn(move |req: hyper::Request<Incoming>| {
            let client = Arc::clone(&client);
            async move {
                let (router, forwarding) = &*client;
                Ok::<_, Infallible>(router.answer(req.map(Body::from), forwarding).await)
            }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
    }
}

/// The per-connection protocol settings: HTTP/1.1 and h2c on one port, with bounded headers.
fn connection_builder(config: &RouterConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192));
    // Setting any limit, even hyper's own, moves header parsing off its stack buffer.
    if config.max_headers != HYPER_MAX_HEADERS {
        http1.max_headers(config.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(config.max_h2_header_list_bytes);
    builder
}

/// Accept errors are usually transient (out of file descriptors): log and back off briefly so
/// the loop does not spin.
async fn accept_failed(error: io::Error) {
    tracing::warn!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(20)).await;
}
