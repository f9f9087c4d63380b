//! Connections to instances: a keep-alive pool of HTTP/1.1 connections per instance (see
//! `pool.rs`) and one multiplexed h2c connection per HTTP/2 instance.
//!
//! This module only moves a prepared request to a given address and hands back the response
//! head with its streaming body; it never rewrites headers or decides where a request goes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::body::Body;
use crate::config::RouterConfig;
use crate::pool::{Http1Pool, PoolSettings, Pooled};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an upstream exchange failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened; the request was not sent (here it is).
    Connect(BoxError, Box<Request<Body>>),
    /// The connection failed while sending the request or awaiting the response.
    Exchange(BoxError),
}

/// The connections to instances: how HTTP/1.1 ones are pooled (the pools themselves live with
/// each instance's capacity slot) and the shared h2c connections.
pub(crate) struct Upstream {
    pub http1: PoolSettings,
    h2c: H2cPool,
}

// === impl Upstream ===

impl Upstream {
    pub fn new(config: &RouterConfig) -> Self {
        Self {
            http1: PoolSettings::new(config),
            h2c: H2cPool::new(config),
        }
    }

    /// Sends an HTTP/1.1 request (origin-form URI, `Host` set) over a pooled connection of
    /// `pool`'s instance. Returns the connection with the response: release it once the
    /// response body has ended. A request that an idle connection could not take because the
    /// instance had just closed it is sent again on a new connection, as it was never written.
    pub async fn send_http1(
        &self,
        pool: &Arc<Http1Pool>,
        req: Request<Body>,
    ) -> Result<(Response<Incoming>, Pooled), SendError> {
        let mut conn = match pool.checkout().await {
            Ok(conn) => conn,
            Err(e) => return Err(SendError::connect(e.into(), req)),
        };
        let mut unsent = match conn.sender().try_send_request(req).await {
            Ok(resp) => return Ok((resp, conn)),
            Err(err) => err,
        };
        let req = match unsent.take_message() {
            Some(req) if conn.reused => req,
            _ => return Err(SendError::Exchange(unsent.into_error().into())),
        };
        drop(conn);
        let mut conn = match pool.connect().await {
            Ok(conn) => conn,
            Err(e) => return Err(SendError::connect(e.into(), req)),
        };
        match conn.sender().send_request(req).await {
            Ok(resp) => Ok((resp, conn)),
            Err(err) => Err(SendError::Exchange(err.into())),
        }
    }

    /// Sends an HTTP/2 request (URI authority = the client's host) to the instance at `addr`.
    pub async fn send_h2c(
        &self,
        addr: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut sender = match self.h2c.sender(addr).await {
            Ok(sender) => sender,
            Err(e) => return Err(SendError::connect(e, req)),
        };
        sender
            .send_request(req)
            .await
            .map_err(|e| SendError::Exchange(e.into()))
    }
}

// === impl SendError ===

impl SendError {
    fn connect(err: BoxError, unsent: Request<Body>) -> Self {
        Self::Connect(err, Box::new(unsent))
    }
}

/// One shared h2c connection per instance address; a closed one is replaced on next use.
struct H2cPool {
    connections: ArcSwap<HashMap<SocketAddr, http2::SendRequest<Body>>>,
    connect_timeout: std::time::Duration,
}

// === impl H2cPool ===

impl H2cPool {
    fn new(config: &RouterConfig) -> Self {
        Self {
            connections: ArcSwap::default(),
            connect_timeout: config.connect_timeout,
        }
    }

    async fn sender(&self, addr: SocketAddr) -> Result<http2::SendRequest<Body>, BoxError> {
        if let Some(sender) = self.connections.load().get(&addr)
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        let sender = self.connect(addr).await?;
        self.connections.rcu(|old| {
            let mut next: HashMap<_, _> = old
                .iter()
                .filter(|(_, s)| !s.is_closed())
                .map(|(a, s)| (*a, s.clone()))
                .collect();
            next.insert(addr, sender.clone());
            next
        });
        Ok(sender)
    }

    async fn connect(&self, addr: SocketAddr) -> Result<http2::SendRequest<Body>, BoxError> {
        let connect = TcpStream::connect(addr);
        let stream = tokio::time::timeout(self.connect_timeout, connect).await??;
        stream.set_nodelay(true)?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .adaptive_window(true)
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%addr, error = %e, "h2c connection to instance ended");
            }
        });
        Ok(sender)
    }
}
