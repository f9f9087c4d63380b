//! Keep-alive HTTP/1.1 connections to one instance: opening them (bounded by the connect
//! timeout, `TCP_NODELAY`), keeping the idle ones, and handing them out again.
//!
//! Each instance's [`Http1Pool`] lives in its capacity slot (`capacity.rs`), so a request that
//! leased an instance finds its idle connections without any lookup: checking one out is an
//! uncontended lock and a `Vec::pop`. A connection goes back when the exchange that used it is
//! over — its response body ended — and only if hyper says it can take the next request;
//! one whose response was cut short is closed instead. Idle connections are kept most recently
//! used first, at most `pool_max_idle_per_instance`, and closed once idle for
//! `pool_idle_timeout` (checked on use, and by a sweep every `pool_idle_timeout` while any are
//! idle). This module never rewrites requests or picks instances.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::Body;
use crate::config::RouterConfig;

/// The keep-alive HTTP/1.1 connections to one instance.
#[derive(Debug)]
pub(crate) struct Http1Pool {
    addr: SocketAddr,
    settings: PoolSettings,
    /// Oldest first: connections are put back at the end and taken from the end.
    idle: Mutex<Vec<Idle>>,
    /// Whether the sweep task runs (it stops by itself once the pool is gone).
    sweeping: AtomicBool,
}

/// How connections are opened and kept (from [`RouterConfig`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// A connection in use by one exchange. [`Pooled::release`] puts it back once the exchange is
/// over; dropping it instead closes the connection.
#[derive(Debug)]
pub(crate) struct Pooled {
    sender: http1::SendRequest<Body>,
    pool: Arc<Http1Pool>,
    /// Whether it came from the idle list (a request it fails to send may be sent again).
    pub reused: bool,
}

// === impl PoolSettings ===

impl PoolSettings {
    pub fn new(config: &RouterConfig) -> Self {
        Self {
            connect_timeout: config.connect_timeout,
            idle_timeout: config.pool_idle_timeout,
            max_idle: config.pool_max_idle_per_instance,
        }
    }
}

// === impl Http1Pool ===

impl Http1Pool {
    pub fn new(addr: SocketAddr, settings: PoolSettings) -> Self {
        Self {
            addr,
            settings,
            idle: Mutex::default(),
            sweeping: AtomicBool::new(false),
        }
    }

    /// The most recently used idle connection that can take a request, else a new one.
    pub async fn checkout(self: &Arc<Self>) -> Result<Pooled, std::io::Error> {
        match self.take_idle() {
            Some(sender) => Ok(self.pooled(sender, true)),
            None => self.connect().await,
        }
    }

    /// A new connection, bypassing the idle list.
    pub async fn connect(self: &Arc<Self>) -> Result<Pooled, std::io::Error> {
        let sender = open(self.addr, self.settings.connect_timeout).await?;
        Ok(self.pooled(sender, false))
    }

    fn pooled(self: &Arc<Self>, sender: http1::SendRequest<Body>, reused: bool) -> Pooled {
        Pooled {
            sender,
            pool: Arc::clone(self),
            reused,
        }
    }

    fn take_idle(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.lock();
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() >= self.settings.idle_timeout {
                // The newest one expired, so all older ones did too.
                idle.clear();
                return None;
            }
            if entry.sender.is_ready() {
                return Some(entry.sender);
            }
            // Closed while idle (the instance hung up): dropped.
        }
        None
    }

    fn put(self: &Arc<Self>, sender: http1::SendRequest<Body>) {
        let now = Instant::now();
        let timeout = self.settings.idle_timeout;
        {
            let mut idle = self.lock();
            if idle
                .first()
                .is_some_and(|oldest| now.duration_since(oldest.since) >= timeout)
            {
                idle.retain(|e| now.duration_since(e.since) < timeout);
            }
            if idle.len() >= self.settings.max_idle {
                return;
            }
            idle.push(Idle { sender, since: now });
        }
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            spawn(sweep(Arc::downgrade(self), timeout));
        }
    }

    /// Closes connections idle for `timeout` or closed by the instance.
    fn evict(&self, timeout: Duration) {
        let now = Instant::now();
        self.lock()
            .retain(|e| now.duration_since(e.since) < timeout && !e.sender.is_closed());
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sweeps `pool` every `every` until the pool is gone.
async fn sweep(pool: Weak<Http1Pool>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    let _restart = SweepGuard(pool.clone());
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.evict(every);
    }
}

/// Lets the next `put` start another sweep when this one ends with its runtime.
struct SweepGuard(Weak<Http1Pool>);

impl Drop for SweepGuard {
    fn drop(&mut self) {
        if let Some(pool) = self.0.upgrade() {
            pool.sweeping.store(false, Ordering::Relaxed);
        }
    }
}

/// Opens a connection to `addr` and spawns the task driving it (for its whole life, including
/// a protocol switch).
async fn open(
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<http1::SendRequest<Body>, std::io::Error> {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(connected) => connected?,
        Err(_) => {
            let message = format!("connect timed out after {connect_timeout:?}");
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, message));
        }
    };
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "connection to instance ended");
        }
    });
    Ok(sender)
}

/// Spawns on the current runtime, if there is one (a body may be dropped outside any).
fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

// === impl Pooled ===

impl Pooled {
    /// The handle to send the request with.
    pub fn sender(&mut self) -> &mut http1::SendRequest<Body> {
        &mut self.sender
    }

    /// The exchange is over: back to the pool once hyper can send the next request on it
    /// (at once, unless the request body is still being sent).
    pub fn release(self) {
        let Self {
            mut sender, pool, ..
        } = self;
        if sender.is_ready() {
            pool.put(sender);
        } else if !sender.is_closed() {
            spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put(sender);
                }
            });
        }
    }
}
