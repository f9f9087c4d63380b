//! Where clients are served: on dedicated threads, each running a single-threaded Tokio runtime
//! with its own accept loop (as nginx workers or Envoy's do), so a client connection, the
//! requests on it and the instance connections they use are all polled by one thread — no
//! work-stealing and no cross-thread wake-ups on the data path.
//!
//! The caller's runtime (where the control plane runs) only waits for the shutdown signal and
//! then for the workers to drain. The workers share the router (the table, the capacity
//! counters, the pools) through atomics and locks, never through their runtimes. When `serve`
//! returns, each worker's runtime is gone, and with it every task it still had: idle instance
//! connections and spliced (upgraded) connections are closed.

use std::future::Future;
use std::io;
use std::net::TcpListener as StdListener;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::router::Router;

// === impl Router (worker threads) ===

impl Router {
    /// Serves `listener` on `threads` worker threads until `shutdown` completes or a worker
    /// fails, then stops every worker and waits for their drains.
    pub(crate) async fn serve_on_threads(
        &self,
        listener: TcpListener,
        threads: usize,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let listener = listener.into_std()?;
        let (stop, stopped) = watch::channel(false);
        let (done, mut finished) = mpsc::unbounded_channel();
        for index in 0..threads {
            let worker = Worker {
                router: self.clone(),
                listener: listener.try_clone()?,
                stopped: stopped.clone(),
                done: done.clone(),
            };
            std::thread::Builder::new()
                .name(format!("nimbus-router-{index}"))
                .spawn(move || worker.run())?;
        }
        drop((listener, done));
        let early = tokio::select! {
            () = shutdown => None,
            failed = finished.recv() => failed,
        };
        let _ = stop.send(true);
        let mut result = early.unwrap_or(Ok(()));
        // Each worker reports once; the channel closes when the last one has.
        while let Some(outcome) = finished.recv().await {
            result = result.and(outcome);
        }
        result
    }
}

/// One worker thread's share: its copy of the listening socket and the stop signal.
struct Worker {
    router: Router,
    listener: StdListener,
    stopped: watch::Receiver<bool>,
    done: mpsc::UnboundedSender<io::Result<()>>,
}

// === impl Worker ===

impl Worker {
    fn run(self) {
        let Self {
            router,
            listener,
            mut stopped,
            done,
        } = self;
        let served = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .and_then(|runtime| {
                runtime.block_on(async {
                    let listener = TcpListener::from_std(listener)?;
                    // A dropped sender (the `serve` future was dropped) also means stop.
                    let stop = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    router.serve_here(listener, stop).await
                })
            });
        if let Err(e) = &served {
            tracing::error!(error = %e, "router worker failed");
        }
        let _ = done.send(served);
    }
}
