//! The one body type that flows through the router, in both directions.
//!
//! A [`Body`] is either nothing, one in-memory chunk (error pages, tests), a hyper
//! [`Incoming`] stream passed through frame by frame, or the streaming body of an in-process
//! instance's response ([`LocalBody`]) — the router never buffers a whole body.
//! A response body also carries the request's [`Permit`] (the revision's and the instance's
//! in-flight counts), so a request counts as in flight — and keeps its place under the
//! instance's `containerConcurrency` — until its response body is finished or dropped — and
//! the pooled HTTP/1.1 connection it came over, which goes back to its pool when the body has
//! ended (and is closed when the body is dropped before its end).
//!
//! A response body also carries the clock of the revision's timeouts (`timeouts.rs`). When the
//! whole request's or the idle limit passes while it streams, the body is cut: it yields a
//! [`ProxyError::Cut`] instead of its next frame, so the server aborts the response (an HTTP/1.1
//! connection is closed without the body's end, an HTTP/2 stream is reset) and the client never
//! mistakes it for a complete one; the instance's side is dropped (its connection closed, its
//! stream reset), and the request stops counting as in flight.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use nimbus_runtime::{BoxError, LocalBody};

use crate::capacity::Permit;
use crate::error::{ProxyError, TimeoutKind};
use crate::pool::Pooled;
use crate::timeouts::ResponseClock;

/// A streaming HTTP body: empty, one in-memory chunk, or a pass-through of a hyper body or of
/// an in-process instance's body.
pub struct Body {
    kind: Kind,
    permit: Option<Permit>,
    connection: Option<Pooled>,
    clock: Option<ResponseClock>,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Incoming(Incoming),
    Local(LocalBody),
}

// === impl Body ===

impl Body {
    /// A body with no data.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Empty,
            permit: None,
            connection: None,
            clock: None,
        }
    }

    /// The body as an in-process instance takes it.
    pub(crate) fn into_local(self) -> LocalBody {
        self.boxed_unsync()
    }

    /// Keeps the request counted as in flight until this body ends or is dropped.
    pub(crate) fn with_permit(mut self, permit: Permit) -> Self {
        self.permit = Some(permit);
        self
    }

    /// Cuts this (response) body when one of the revision's timeouts on `clock` passes.
    pub(crate) fn with_clock(mut self, clock: ResponseClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Hands `connection` back to its pool once this (response) body has ended.
    pub(crate) fn with_connection(mut self, connection: Pooled) -> Self {
        self.connection = Some(connection);
        self
    }

    /// The exchange is over: the connection goes back first, so a request woken by the freed
    /// permit finds it idle.
    fn ended(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.release();
        }
        self.permit = None;
        self.clock = None;
    }

    /// A limit passed while the response streamed: drops the instance's side at once (its
    /// connection is closed, not pooled; its stream reset) and tells the server to abort.
    fn cut(&mut self, passed: TimeoutKind) -> BoxError {
        let limit = self
            .clock
            .take()
            .map_or(Duration::ZERO, |c| c.limit(passed));
        self.kind = Kind::Empty;
        self.connection = None;
        let (revision, instance) = match self.permit.take() {
            Some(permit) => (permit.revision().clone(), permit.endpoint().to_string()),
            None => Default::default(),
        };
        tracing::warn!(
            %revision,
            %instance,
            timeout = passed.field(),
            ?limit,
            "response cut: a timeout passed while its body was streaming"
        );
        Box::new(ProxyError::Cut {
            revision,
            instance,
            timeout: passed,
            limit,
        })
    }

    /// Whether the clock's limits let `polled` through (`Ready` with the error ending the body
    /// when one passed). A frame that arrived is news from the instance (the idle limit restarts).
    fn check_clock(
        &mut self,
        cx: &mut Context<'_>,
        polled: &Poll<Option<Result<Frame<Bytes>, BoxError>>>,
    ) -> Poll<BoxError> {
        use http_body::Body as _;
        let heard = match polled {
            Poll::Pending => false,
            // The frame that completes the body: the instance has answered in full (e.g. its
            // own 504 when the limits coincide), so it is passed on whatever the clock says.
            Poll::Ready(Some(Ok(_))) if self.is_end_stream() => {
                self.clock = None;
                return Poll::Pending;
            }
            Poll::Ready(Some(Ok(_))) => true,
            // The end, or the instance's own failure: nothing to time any more.
            Poll::Ready(_) => return Poll::Pending,
        };
        match self.clock.as_mut().map(|c| c.poll_expired(cx, heard)) {
            Some(Poll::Ready(passed)) => Poll::Ready(self.cut(passed)),
            _ => Poll::Pending,
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Empty => "empty",
            Kind::Full(_) => "full",
            Kind::Incoming(_) | Kind::Local(_) => "streaming",
        };
        f.debug_struct("Body").field("kind", &kind).finish()
    }
}

impl From<Incoming> for Body {
    fn from(body: Incoming) -> Self {
        Self {
            kind: Kind::Incoming(body),
            permit: None,
            connection: None,
            clock: None,
        }
    }
}

impl From<LocalBody> for Body {
    fn from(body: LocalBody) -> Self {
        Self {
            kind: Kind::Local(body),
            permit: None,
            connection: None,
            clock: None,
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        let kind = if bytes.is_empty() {
            Kind::Empty
        } else {
            Kind::Full(Some(bytes))
        };
        Self {
            kind,
            permit: None,
            connection: None,
            clock: None,
        }
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(chunk) => Poll::Ready(chunk.take().map(|b| Ok(Frame::data(b)))),
            Kind::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Local(body) => Pin::new(body).poll_frame(cx),
        };
        if let Poll::Ready(None) = polled {
            // The exchange is over: stop counting it even if the connection keeps the body.
            this.ended();
        }
        if let Poll::Ready(cut) = this.check_clock(cx, &polled) {
            return Poll::Ready(Some(Err(cut)));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(chunk) => chunk.is_none(),
            Kind::Incoming(body) => body.is_end_stream(),
            Kind::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(chunk) => SizeHint::with_exact(chunk.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Incoming(body) => body.size_hint(),
            Kind::Local(body) => body.size_hint(),
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // A server drops a body without polling its end once `is_end_stream` says so.
        if self.connection.is_some() && http_body::Body::is_end_stream(self) {
            self.ended();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn full_body_yields_its_bytes_once() {
        let body = Body::from("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "hello");
    }

    #[test]
    fn empty_body_is_at_its_end() {
        assert!(Body::empty().is_end_stream());
        assert!(Body::from(Bytes::new()).is_end_stream());
    }
}
