//! One instance of a revision: an HTTP/1.1 server on a loopback port whose every request runs
//! in a fresh component instance. Binding is synchronous and takes microseconds, so an
//! instance is ready the moment it exists; stopping closes the listener, lets in-flight
//! requests finish (bounded by the revision's request timeout) and closes idle connections.
//!
//! An instance takes every request it is sent: `containerConcurrency` is the router's to
//! enforce (it sends an instance no more than that many at once), and the pooling allocator
//! bounds component instances across the runtime (503 beyond it).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::handler::App;

/// A running instance: its address and the handles to stop it.
pub(crate) struct Server {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    /// Bind `127.0.0.1:0` and start serving `app`. Must run inside a Tokio runtime.
    pub fn start(app: Arc<App>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, app, stopped));
        Ok(Self { addr, stop, task })
    }

    /// Stop accepting; in-flight requests finish in the background. Returns the task to await
    /// for the instance to be fully gone.
    pub fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(());
        self.task
    }

    /// Stop at once, dropping in-flight requests (runtime dropped without shutdown).
    pub fn abort(&self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, app: Arc<App>, mut stopped: oneshot::Receiver<()>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => connection(stream, &app, &graceful),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            _ = &mut stopped => break,
        }
    }
    drop(listener);
    let drain = app.limits.request_timeout;
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
}

fn connection(stream: TcpStream, app: &Arc<App>, graceful: &GracefulShutdown) {
    let _ = stream.set_nodelay(true);
    let app = Arc::clone(app);
    let service = service_fn(move |request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, std::convert::Infallible>(app.handle(request).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}
