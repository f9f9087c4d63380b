//! In-process instances: a backend whose instances live inside the server process (the Wasm
//! runtime) hands the router a [`LocalHandle`] instead of a socket address, and the router
//! calls it directly. No connection, no second HTTP parse, no cross-thread hop: the request
//! runs on the router thread that accepted it.
//!
//! The contract is the HTTP one, by value: a request with a streaming body in, a response with
//! a streaming body out. Faults are responses (5xx), never errors, exactly as an instance
//! behind a socket would answer them.

use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;

/// The error a body stream may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type crossing the in-process boundary, both ways.
pub type LocalBody = UnsyncBoxBody<Bytes, BoxError>;

/// The response an in-process instance is computing.
pub type LocalResponse = Pin<Box<dyn Future<Output = Response<LocalBody>> + Send>>;

/// An instance that answers requests inside the server process.
pub trait LocalService: Send + Sync + 'static {
    /// Answers one request. The future is polled on the caller's runtime (a router worker
    /// thread) and must not block it. Never fails: faults become 4xx/5xx responses.
    fn call(&self, request: Request<LocalBody>) -> LocalResponse;
}

/// A shared handle to an in-process instance. Two handles are equal when they are the same
/// instance (pointer identity), so endpoint lists compare and hash as they do for sockets.
#[derive(Clone)]
pub struct LocalHandle(Arc<dyn LocalService>);

// === impl LocalHandle ===

impl LocalHandle {
    pub fn new(service: Arc<dyn LocalService>) -> Self {
        Self(service)
    }

    /// Sends one request to the instance.
    pub fn call(&self, request: Request<LocalBody>) -> LocalResponse {
        self.0.call(request)
    }

    fn address(&self) -> *const () {
        Arc::as_ptr(&self.0).cast()
    }
}

impl PartialEq for LocalHandle {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.address(), other.address())
    }
}

impl Eq for LocalHandle {}

impl Hash for LocalHandle {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.address().hash(state);
    }
}

impl fmt::Debug for LocalHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalHandle({:p})", self.address())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, Empty};

    struct Ok200;

    impl LocalService for Ok200 {
        fn call(&self, _request: Request<LocalBody>) -> LocalResponse {
            Box::pin(async { Response::new(Empty::new().map_err(|e| match e {}).boxed_unsync()) })
        }
    }

    #[tokio::test]
    async fn handles_are_equal_only_to_the_same_instance() {
        let one = LocalHandle::new(Arc::new(Ok200));
        let other = LocalHandle::new(Arc::new(Ok200));
        assert_eq!(one, one.clone());
        assert_ne!(one, other);
        let request = Request::new(Empty::new().map_err(|e| match e {}).boxed_unsync());
        assert_eq!(one.call(request).await.status(), 200);
    }
}
