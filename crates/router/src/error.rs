//! What can go wrong on the data path, who is to blame, and what the client is told.
//!
//! Every [`ProxyError`] answers three questions: which side failed ([`Side`]), whether the
//! request could be retried safely (it never reached an instance), and which plain-text response
//! the client gets (with `Retry-After` when waiting a moment may help). This module never logs
//! and never performs I/O.
//!
//! Clients are anonymous: the response says what kind of failure it was and carries a request
//! id (body and `X-Request-Id`), never what an instance printed, its address or an internal
//! error (issue #13: a revision's failure message is its last output lines, which can hold
//! secrets). The full error goes to the server's log under the same request id, and the
//! revision's status says why it cannot start.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use nimbus_runtime::RevisionKey;

use crate::body::Body;

/// Which party caused a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client sent something the router cannot serve.
    Client,
    /// The instance (the user's code) failed or was too slow.
    Instance,
    /// Nimbus itself cannot serve the request right now (no capacity, misconfiguration).
    Nimbus,
}

/// A request the router could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request carried neither a `Host` header nor an absolute URI.
    #[error("the request has no Host header")]
    MissingHost,
    /// The request's host or path cannot be turned into an upstream URI.
    #[error("invalid request target: {0}")]
    InvalidTarget(String),
    /// No Route serves this host.
    #[error(
        "no service for host {host:?}: check the Host header against the URLs in the services' status"
    )]
    UnknownHost { host: String },
    /// Too many requests are already waiting for the revision's instances.
    #[error(
        "revision \"{revision}\" has {limit} requests waiting for an instance already; retry later"
    )]
    QueueFull { revision: RevisionKey, limit: usize },
    /// The revision had no ready instance for as long as the request could wait.
    #[error("revision \"{revision}\" did not become ready within {waited:?}")]
    NotReady {
        revision: RevisionKey,
        waited: Duration,
    },
    /// Every ready instance stayed at its `containerConcurrency` limit for as long as the
    /// request could wait.
    #[error("revision \"{revision}\" had no instance with free capacity within {waited:?}")]
    AtCapacity {
        revision: RevisionKey,
        waited: Duration,
    },
    /// The revision stopped receiving traffic (its route changed or went away) while the
    /// request waited for an instance of it.
    #[error("revision \"{revision}\" stopped receiving traffic while the request waited; retry")]
    Unrouted { revision: RevisionKey },
    /// The revision has no ready instance because its latest start failed.
    #[error("revision \"{revision}\" cannot start: {message}")]
    RevisionFailed {
        revision: RevisionKey,
        message: String,
    },
    /// Opening a connection to the instance failed; the request was not sent.
    #[error("revision {revision}: cannot connect to instance {instance}: {source}")]
    Connect {
        revision: RevisionKey,
        /// The endpoint as displayed: its id and its address.
        instance: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The instance closed the connection or sent an invalid response.
    #[error("revision {revision}: instance {instance} failed: {source}")]
    Instance {
        revision: RevisionKey,
        /// The endpoint as displayed: its id and where it is.
        instance: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The instance did not start its response (send its headers) within one of the revision's
    /// timeouts; the client gets a 504.
    #[error(
        "revision {revision}: instance {instance} did not start its response within {limit:?} ({timeout})"
    )]
    Timeout {
        revision: RevisionKey,
        /// The endpoint as displayed: its id and where it is.
        instance: String,
        /// Which of the revision's timeouts passed.
        timeout: TimeoutKind,
        /// Its value.
        limit: Duration,
    },
    /// A response whose headers were already sent was still streaming when one of the revision's
    /// timeouts passed: its body is cut (the connection closed or the HTTP/2 stream reset), so
    /// the client sees it end abnormally, never as complete.
    #[error(
        "revision {revision}: response from instance {instance} cut after {limit:?} ({timeout})"
    )]
    Cut {
        revision: RevisionKey,
        /// The endpoint as displayed: its id and where it is.
        instance: String,
        /// Which of the revision's timeouts passed.
        timeout: TimeoutKind,
        /// Its value.
        limit: Duration,
    },
}

/// Which of a revision's request timeouts passed, named by its manifest field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// `timeoutSeconds`: the whole request, until the response body ends.
    Request,
    /// `responseStartTimeoutSeconds`: until the response headers.
    ResponseStart,
    /// `idleTimeoutSeconds`: the longest gap without bytes from the instance.
    Idle,
}

// === impl TimeoutKind ===

impl TimeoutKind {
    /// The manifest field that sets this timeout.
    pub fn field(self) -> &'static str {
        match self {
            Self::Request => "timeoutSeconds",
            Self::ResponseStart => "responseStartTimeoutSeconds",
            Self::Idle => "idleTimeoutSeconds",
        }
    }
}

impl std::fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.field())
    }
}

// === impl ProxyError ===

impl ProxyError {
    /// Who caused this failure.
    pub fn side(&self) -> Side {
        match self {
            Self::MissingHost | Self::InvalidTarget(_) | Self::UnknownHost { .. } => Side::Client,
            Self::QueueFull { .. }
            | Self::NotReady { .. }
            | Self::AtCapacity { .. }
            | Self::Unrouted { .. } => Side::Nimbus,
            Self::RevisionFailed { .. }
            | Self::Connect { .. }
            | Self::Instance { .. }
            | Self::Timeout { .. }
            | Self::Cut { .. } => Side::Instance,
        }
    }

    /// Whether the request never reached an instance, so sending it again cannot repeat a
    /// side effect.
    pub fn is_retry_safe(&self) -> bool {
        match self {
            Self::QueueFull { .. }
            | Self::NotReady { .. }
            | Self::AtCapacity { .. }
            | Self::Unrouted { .. }
            | Self::RevisionFailed { .. }
            | Self::Connect { .. } => true,
            Self::MissingHost | Self::InvalidTarget(_) | Self::UnknownHost { .. } => false,
            Self::Instance { .. } | Self::Timeout { .. } | Self::Cut { .. } => false,
        }
    }

    /// The status code the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingHost | Self::InvalidTarget(_) => StatusCode::BAD_REQUEST,
            Self::UnknownHost { .. } => StatusCode::NOT_FOUND,
            Self::QueueFull { .. }
            | Self::NotReady { .. }
            | Self::AtCapacity { .. }
            | Self::Unrouted { .. }
            | Self::RevisionFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. } | Self::Instance { .. } => StatusCode::BAD_GATEWAY,
            // A cut response has its status already; this is what it would have been.
            Self::Timeout { .. } | Self::Cut { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// How long the client should wait before retrying (sent as `Retry-After`), when waiting
    /// may help: the revision is starting, busy, or restarting after a failure.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::QueueFull { .. }
            | Self::NotReady { .. }
            | Self::AtCapacity { .. }
            | Self::Unrouted { .. } => Some(Duration::from_secs(1)),
            Self::RevisionFailed { .. } => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    /// What an anonymous client may read about this failure: its own input, or the kind of
    /// failure and the revision, never an instance's output, address or internal error.
    pub fn client_message(&self) -> String {
        match self {
            Self::MissingHost
            | Self::InvalidTarget(_)
            | Self::UnknownHost { .. }
            | Self::QueueFull { .. }
            | Self::NotReady { .. }
            | Self::AtCapacity { .. }
            | Self::Unrouted { .. } => self.to_string(),
            Self::RevisionFailed { revision, .. } => {
                format!("revision \"{revision}\" cannot start; its status and logs say why")
            }
            Self::Connect { revision, .. } => {
                format!("revision \"{revision}\": no instance could be reached")
            }
            Self::Instance { revision, .. } => {
                format!("revision \"{revision}\": the instance failed to answer")
            }
            Self::Timeout {
                revision,
                timeout,
                limit,
                ..
            } => format!(
                "revision \"{revision}\" did not start its response within {limit:?} ({timeout})"
            ),
            Self::Cut {
                revision,
                timeout,
                limit,
                ..
            } => format!("revision \"{revision}\": response cut after {limit:?} ({timeout})"),
        }
    }

    /// The plain-text response for the client, tagged with `request_id` (also in the
    /// `X-Request-Id` header) so an operator can find the full error in the log.
    pub fn to_response(&self, request_id: &str) -> Response<Body> {
        let body = format!("{} (request id {request_id})\n", self.client_message());
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status();
        let plain = HeaderValue::from_static("text/plain; charset=utf-8");
        resp.headers_mut().insert(header::CONTENT_TYPE, plain);
        if let Ok(id) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert(REQUEST_ID, id);
        }
        if let Some(after) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
        }
        resp
    }
}

/// The header carrying a failed request's id.
pub const REQUEST_ID: &str = "x-request-id";

/// A new request id, unique within this process and unlikely to repeat across restarts: the
/// process's start time and a counter, in hex.
pub fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    format!(
        "{:08x}{:08x}",
        start as u32,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev() -> RevisionKey {
        RevisionKey::new("default", "hello-00001")
    }

    #[test]
    fn unknown_host_names_the_host_and_is_the_clients_fault() {
        let err = ProxyError::UnknownHost {
            host: "nope.example".into(),
        };
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert_eq!(err.side(), Side::Client);
        assert!(
            err.to_string()
                .contains(r#"no service for host "nope.example""#)
        );
    }

    #[test]
    fn not_ready_is_retry_safe_names_the_revision_and_asks_to_retry() {
        let err = ProxyError::NotReady {
            revision: rev(),
            waited: Duration::from_secs(60),
        };
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.is_retry_safe());
        assert_eq!(
            err.to_string(),
            r#"revision "default/hello-00001" did not become ready within 60s"#
        );
        assert_eq!(err.to_response("r1").headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_failed_revision_is_the_instances_fault_with_its_message() {
        let err = ProxyError::RevisionFailed {
            revision: rev(),
            message: "exited with status 3".into(),
        };
        assert_eq!(err.side(), Side::Instance);
        assert!(
            err.to_string()
                .ends_with("cannot start: exited with status 3")
        );
        assert!(
            err.to_response("r1")
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
    }

    #[test]
    fn timeout_is_the_instances_fault_not_retry_safe_and_names_the_field() {
        let err = ProxyError::Timeout {
            revision: rev(),
            instance: "hello-00001-1 at 127.0.0.1:9000".into(),
            timeout: TimeoutKind::ResponseStart,
            limit: Duration::from_secs(1),
        };
        assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(err.side(), Side::Instance);
        assert!(!err.is_retry_safe());
        assert!(
            err.to_response("r1")
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
        assert!(
            err.to_string()
                .ends_with("did not start its response within 1s (responseStartTimeoutSeconds)"),
            "{err}"
        );
    }

    #[test]
    fn a_cut_body_is_the_instances_fault_and_not_retry_safe() {
        let err = ProxyError::Cut {
            revision: rev(),
            instance: "hello-00001-1 at 127.0.0.1:9000".into(),
            timeout: TimeoutKind::Idle,
            limit: Duration::from_secs(2),
        };
        assert_eq!(err.side(), Side::Instance);
        assert!(!err.is_retry_safe());
        assert_eq!(
            err.to_string(),
            "revision default/hello-00001: response from instance hello-00001-1 at 127.0.0.1:9000 \
             cut after 2s (idleTimeoutSeconds)"
        );
    }

    #[test]
    fn responses_are_plain_text() {
        let resp = ProxyError::MissingHost.to_response("r1");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }

    /// Issue #13, 4: what an instance printed (its failure message), its address and the
    /// internal error stay out of what an anonymous client reads.
    #[tokio::test]
    async fn clients_never_read_an_instances_output_or_address() {
        let secret = "process exited with code 1; last output: DB_PASSWORD=hunter2";
        let errors = [
            ProxyError::RevisionFailed {
                revision: rev(),
                message: secret.into(),
            },
            ProxyError::Connect {
                revision: rev(),
                instance: "hello-00001-1 at 127.0.0.1:9000".into(),
                source: secret.into(),
            },
            ProxyError::Instance {
                revision: rev(),
                instance: "hello-00001-1 at 127.0.0.1:9000".into(),
                source: secret.into(),
            },
        ];
        for err in errors {
            assert!(
                err.to_string().contains("hunter2"),
                "the log keeps the detail"
            );
            let resp = err.to_response("abc123");
            assert_eq!(resp.headers()[REQUEST_ID], "abc123");
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(!body.contains("hunter2"), "{body}");
            assert!(!body.contains("127.0.0.1"), "{body}");
            assert!(body.contains("default/hello-00001"), "{body}");
            assert!(body.ends_with("(request id abc123)\n"), "{body}");
        }
    }
}
