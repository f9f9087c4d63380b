//! The accept loop and per-connection serving (HTTP/1.1 and h2c on one port, upgrades allowed).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

use crate::{Settings, handlers};

/// Shared state of one server: its settings and the `/overlap` detector.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

pub(crate) struct AppInner {
    pub settings: Settings,
    /// Requests currently inside `/overlap`.
    pub overlap_inside: AtomicUsize,
    /// Requests that ever entered `/overlap`.
    pub overlap_entries: AtomicU64,
}

impl App {
    /// An app answering with the given settings.
    pub fn new(settings: Settings) -> Self {
        let inner = AppInner {
            settings,
            overlap_inside: AtomicUsize::new(0),
            overlap_entries: AtomicU64::new(0),
        };
        Self {
            inner: Arc::new(inner),
        }
    }
}

/// Serve connections from `listener` forever. Returns only if `listener` cannot accept at all.
pub async fn serve(listener: TcpListener, app: App) -> std::io::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, app.clone()));
            }
            Err(error) if is_transient(&error) => {
                eprintln!("nimbus-hello: accept: {error}");
                // Out of descriptors or similar: back off briefly instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Accept errors worth retrying: all but "this is not a listening socket" (`EINVAL`), which
/// no retry can fix. Typical transient ones are `EMFILE` and `ECONNABORTED`.
fn is_transient(error: &std::io::Error) -> bool {
    error.kind() != std::io::ErrorKind::InvalidInput
}

async fn serve_connection(stream: TcpStream, app: App) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handlers::route(&app, request).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    // Errors here are client disconnects and protocol errors: nothing to do but drop the connection.
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}
