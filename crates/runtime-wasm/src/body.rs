//! Request and response bodies at the runtime's edge: the request body capped at
//! `max_body_bytes`, and the plain-text bodies of the runtime's own error responses.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, Full};
use nimbus_runtime::BoxError;
use wasmtime_wasi_http::Error;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A request body that fails once more than `remaining` bytes arrive, flagging `exceeded`
/// so the handler can answer 413 whatever the guest made of the error.
pub(crate) struct CappedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> CappedBody<B> {
    pub fn new(inner: B, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            exceeded,
        }
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(stream_error(e.into())))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let len = frame.data_ref().map_or(0, |d| d.len() as u64);
        match self.remaining.checked_sub(len) {
            Some(rest) => {
                self.remaining = rest;
                Poll::Ready(Some(Ok(frame)))
            }
            None => {
                self.exceeded.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Error::HttpRequestBodySize(Some(self.limit)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why the request body stream failed, as `wasi:http` reports it to the guest: the client's
/// connection failing (hyper's error, passed through by the router) or something else.
fn stream_error(error: BoxError) -> Error {
    match error.downcast::<hyper::Error>() {
        Ok(hyper) => Error::Hyper(*hyper),
        Err(other) => Error::InternalError(Some(other.to_string())),
    }
}

/// A response the runtime writes itself (a limit or a fault), as `text/plain`.
pub(crate) fn plain(status: StatusCode, message: String) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(message + "\n"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(body: &'static [u8], flag: &Arc<AtomicBool>) -> CappedBody<HyperOutgoingBody> {
        let body = Full::new(Bytes::from_static(body))
            .map_err(|never| match never {})
            .boxed_unsync();
        CappedBody::new(body, 5, Arc::clone(flag))
    }

    #[tokio::test]
    async fn bodies_over_the_cap_fail_and_flag() {
        let flag = Arc::new(AtomicBool::new(false));
        let ok = capped(b"12345", &flag);
        assert_eq!(ok.collect().await.unwrap().to_bytes().len(), 5);
        assert!(!flag.load(Ordering::Relaxed));
        let big = capped(b"123456", &flag);
        assert!(matches!(
            big.collect().await,
            Err(Error::HttpRequestBodySize(Some(5)))
        ));
        assert!(flag.load(Ordering::Relaxed));
    }
}
