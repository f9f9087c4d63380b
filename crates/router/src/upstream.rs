//! Connections to instances: a keep-alive pool of HTTP/1.1 connections (hyper-util's client)
//! and one multiplexed h2c connection per HTTP/2 instance.
//!
//! This module only moves a prepared request to a given address and hands back the response
//! head with its streaming body; it never rewrites headers or decides where a request goes.

use std::collections::HashMap;
use std::net::SocketAddr;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::{self, Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::body::Body;
use crate::config::RouterConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an upstream exchange failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened; the request was not sent.
    Connect(BoxError),
    /// The connection failed while sending the request or awaiting the response.
    Exchange(BoxError),
}

/// The connection pools to instances.
pub(crate) struct Upstream {
    http1: Client<HttpConnector, Body>,
    h2c: H2cPool,
}

// === impl Upstream ===

impl Upstream {
    pub fn new(config: &RouterConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_instance)
            .build(connector);
        Self {
            http1,
            h2c: H2cPool::new(config),
        }
    }

    /// Sends an HTTP/1.1 request whose URI is `http://<instance addr>/...`.
    pub async fn send_http1(&self, req: Request<Body>) -> Result<Response<Incoming>, SendError> {
        self.http1
            .request(req)
            .await
            .map_err(SendError::from_legacy)
    }

    /// Sends an HTTP/2 request (URI authority = the client's host) to the instance at `addr`.
    pub async fn send_h2c(
        &self,
        addr: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut sender = self.h2c.sender(addr).await?;
        sender
            .send_request(req)
            .await
            .map_err(|e| SendError::Exchange(e.into()))
    }
}

// === impl SendError ===

impl SendError {
    fn from_legacy(err: legacy::Error) -> Self {
        if err.is_connect() {
            Self::Connect(err.into())
        } else {
            Self::Exchange(err.into())
        }
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

    async fn sender(&self, addr: SocketAddr) -> Result<http2::SendRequest<Body>, SendError> {
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

    async fn connect(&self, addr: SocketAddr) -> Result<http2::SendRequest<Body>, SendError> {
        let connect = TcpStream::connect(addr);
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SendError::Connect(e.into())),
            Err(elapsed) => return Err(SendError::Connect(elapsed.into())),
        };
        stream
            .set_nodelay(true)
            .map_err(|e| SendError::Connect(e.into()))?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .adaptive_window(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%addr, error = %e, "h2c connection to instance ended");
            }
        });
        Ok(sender)
    }
}
