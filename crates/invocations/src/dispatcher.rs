//! The dispatcher: attempts due invocations, at most [`DispatcherConfig::concurrency`] at once,
//! and writes each attempt's outcome before the invocation may be attempted again.
//!
//! Lambda's asynchronous model, with HTTP's meaning of failure:
//! - a 2xx response succeeds;
//! - a throttle — the platform had no room for the request (the revision's queue was full or
//!   it had no ready instance in time: the function never saw it) or the function answered
//!   429 — is tried again after `Retry-After` (else 1 s) without using up an attempt, until
//!   the maximum event age, as Lambda retries throttles for up to six hours;
//! - 408, any 5xx and a failure to get a response (connection refused or reset, a timeout)
//!   are retried, after an exponential back-off with jitter (1 s, 2 s, 4 s … up to 5 min,
//!   each between half and all of that) or after the response's `Retry-After`, until the
//!   policy's attempts are spent or its maximum event age would pass;
//! - any other response (a 4xx) fails at once: sending it again would get the same answer.
//!
//! A finished invocation's record goes to its destination (`on-success` / `on-failure`) as a
//! new invocation written in the same transaction as the outcome, so destinations are
//! delivered at least once too, with the same retries.

use std::collections::HashSet;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use nimbus_api::invocation::Destination;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::model::{Attempt, Invocation, Policy, State, StoredResponse, Target};
use crate::queue::{Outcome, Queue};

/// Header naming the invocation to the function (also on every retry: use it to deduplicate).
pub const INVOCATION_ID_HEADER: &str = "x-nimbus-invocation-id";
/// Header with the attempt's number, from 1.
pub const ATTEMPT_HEADER: &str = "x-nimbus-invocation-attempt";
/// Headers that only Nimbus sets on attempts: a client's are dropped.
pub const RESERVED_PREFIX: &str = "x-nimbus-invocation-";

/// How long an invocation whose outcome could not be written waits before it is due again.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// The first retry's back-off; each later one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The longest the dispatcher sleeps without looking at the queue.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often finished invocations past their retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Why an attempt got no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoResponse {
    pub message: String,
    /// The platform had no room for it and the function never saw it (a throttle).
    pub throttled: bool,
    pub retry_after: Option<Duration>,
}

impl NoResponse {
    /// A failure that counts as an attempt (connection refused, reset, timed out).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            throttled: false,
            retry_after: None,
        }
    }
}

/// Sends one attempt: implemented by the binary over the router (services) and an HTTP
/// client (URLs).
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// Send `request` to `target` (in `namespace`) and return its response, its body read up
    /// to [`crate::model::MAX_STORED_RESPONSE`] bytes, or why there was none.
    async fn deliver(
        &self,
        namespace: &str,
        target: &Target,
        request: http::Request<Bytes>,
    ) -> Result<StoredResponse, NoResponse>;
}

/// How long a throttled invocation waits without a `Retry-After`.
const THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch (injected so tests can use paused time).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

#[derive(Clone)]
pub struct DispatcherConfig {
    /// Attempts in flight at once, across services.
    pub concurrency: usize,
    pub clock: Clock,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            concurrency: 256,
            clock: Arc::new(crate::model::now_ms),
        }
    }
}

/// The running dispatcher's handle.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Arc<Queue>,
    deliver: Arc<dyn Deliver>,
    config: DispatcherConfig,
    wake: Notify,
    busy: Mutex<HashSet<String>>,
    slots: Arc<Semaphore>,
}

impl Dispatcher {
    /// Start attempting `queue`'s due invocations through `deliver` (on the current Tokio
    /// runtime).
    pub fn start(queue: Arc<Queue>, deliver: Arc<dyn Deliver>, config: DispatcherConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let inner = Arc::new(Inner {
            queue,
            deliver,
            config,
            wake: Notify::new(),
            busy: Mutex::default(),
            slots,
        });
        tokio::spawn(Arc::clone(&inner).run());
        Self { inner }
    }

    /// Look at the queue now (something was enqueued).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub fn queue(&self) -> &Arc<Queue> {
        &self.inner.queue
    }

    /// Attempts under way.
    pub fn busy(&self) -> usize {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// When the clock says it is.
    pub fn now_ms(&self) -> i64 {
        (self.inner.config.clock)()
    }
}

impl Inner {
    fn release(&self, id: &str) {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn is_busy(&self, id: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    async fn run(self: Arc<Self>) {
        let mut last_prune = i64::MIN;
        loop {
            let now = (self.config.clock)();
            if now.saturating_sub(last_prune) >= PRUNE_EVERY.as_millis() as i64 {
                self.queue.prune(now);
                last_prune = now;
            }
            let free = self.slots.available_permits();
            let mut started = 0;
            if free > 0 {
                match self.queue.due_ids(now, free, &|id| self.is_busy(id)) {
                    Ok(ids) => {
                        for id in ids {
                            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                                break;
                            };
                            // Busy first, then read: an attempt of it that finished since
                            // the ids were listed is seen, and it is not attempted again.
                            self.busy
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(id.clone());
                            let inv = match self.queue.take_due(&id, now) {
                                Ok(Some(inv)) => inv,
                                other => {
                                    if let Err(e) = other {
                                        tracing::error!(invocation = %id, "cannot read an invocation: {e}");
                                    }
                                    self.release(&id);
                                    continue;
                                }
                            };
                            started += 1;
                            let me = Arc::clone(&self);
                            tokio::spawn(async move {
                                if !me.attempt(inv).await {
                                    // Not written: wait before it is due again, so a full disk
                                    // does not turn into a loop of deliveries.
                                    tokio::time::sleep(WRITE_RETRY).await;
                                }
                                me.release(&id);
                                drop(slot);
                                me.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::error!("cannot read due invocations: {e}"),
                }
            }
            if started > 0 && started == free {
                continue; // maybe more are due: look again once a slot frees (or now)
            }
            let next = self.queue.next_due_ms().ok().flatten();
            let wait = match next {
                Some(at) if at > now => Duration::from_millis((at - now) as u64).min(IDLE_POLL),
                _ => IDLE_POLL,
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One attempt of `inv`, and its outcome written; `false` when the outcome could not be
    /// written (the invocation stays due: it is attempted again, at least once).
    async fn attempt(&self, inv: Invocation) -> bool {
        let clock = &self.config.clock;
        let started = clock();
        let number = inv.attempts.len() as u32 + 1;
        let age = started - inv.created_ms;
        let outcome = if age > inv.policy.max_event_age_ms as i64 {
            let error = format!(
                "expired: {}s old, past the maximum event age of {}s, before attempt {number}",
                age / 1000,
                inv.policy.max_event_age_ms / 1000
            );
            self.finished(&inv, None, None, error, "EventAgeExceeded", started)
        } else {
            let request = match request_of(&inv, number) {
                Ok(request) => request,
                Err(e) => {
                    let why = format!("the stored request cannot be sent: {e}");
                    return self
                        .written(self.finished(&inv, None, None, why, "NotRetried", started))
                        .await;
                }
            };
            let result = self
                .deliver
                .deliver(&inv.namespace, &inv.target, request)
                .await;
            let ended = clock();
            let took_ms = (ended - started).max(0) as u64;
            self.judge(&inv, number, started, ended, took_ms, result)
        };
        self.written(outcome).await
    }

    /// Write `outcome`; `false` when it could not be.
    async fn written(&self, outcome: Outcome) -> bool {
        let id = outcome.id.clone();
        match self.queue.finish(outcome).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(invocation = %id, "cannot write an attempt's outcome: {e}");
                false
            }
        }
    }

    fn judge(
        &self,
        inv: &Invocation,
        number: u32,
        started: i64,
        ended: i64,
        took_ms: u64,
        result: Result<StoredResponse, NoResponse>,
    ) -> Outcome {
        let (status, error, wait, throttled) = match &result {
            Ok(r) => (
                Some(r.status),
                None,
                retry_after(&r.headers, ended),
                r.status == 429,
            ),
            Err(e) => (None, Some(e.message.clone()), e.retry_after, e.throttled),
        };
        let response = result.ok();
        if throttled {
            return self.throttled(inv, wait, error, response, ended);
        }
        let attempt = Attempt {
            at_ms: started,
            took_ms,
            status,
            error: error.clone(),
        };
        match status {
            Some(200..=299) => Outcome {
                id: inv.id.clone(),
                state: State::Succeeded,
                next_ms: ended,
                then: destination(
                    inv,
                    &inv.policy.on_success(),
                    "Success",
                    number,
                    response.as_ref(),
                    ended,
                ),
                attempt: Some(attempt),
                throttled: false,
                at_ms: ended,
                response,
                error: None,
            },
            Some(s) if !retryable(s) => {
                let why = format!(
                    "the function answered {s}; only 408, 429, 5xx and failed connections are retried"
                );
                self.finished(inv, Some(attempt), response, why, "NotRetried", ended)
            }
            _ => {
                let last = error
                    .unwrap_or_else(|| format!("the function answered {}", status.unwrap_or(0)));
                if number >= inv.policy.max_attempts {
                    let why = format!("gave up after {number} attempts; the last: {last}");
                    return self.finished(
                        inv,
                        Some(attempt),
                        response,
                        why,
                        "RetriesExhausted",
                        ended,
                    );
                }
                let wait = wait.unwrap_or_else(|| backoff(&inv.id, number));
                self.again(inv, Some(attempt), wait, last, response, ended)
            }
        }
    }

    /// A throttle: tried again after `wait` (else [`THROTTLE_WAIT`]), no attempt used.
    fn throttled(
        &self,
        inv: &Invocation,
        wait: Option<Duration>,
        error: Option<String>,
        response: Option<StoredResponse>,
        now: i64,
    ) -> Outcome {
        let why = error.unwrap_or_else(|| "the function answered 429".into());
        // At least a second: a throttle uses no attempt, so `Retry-After: 0` must not spin.
        let wait = wait.unwrap_or(THROTTLE_WAIT).max(THROTTLE_WAIT);
        let mut outcome = self.again(inv, None, wait, why, response, now);
        outcome.throttled = true;
        outcome
    }

    /// Pending again after `wait`, unless that is past the maximum event age.
    fn again(
        &self,
        inv: &Invocation,
        attempt: Option<Attempt>,
        wait: Duration,
        last: String,
        response: Option<StoredResponse>,
        now: i64,
    ) -> Outcome {
        let next = now + wait.as_millis() as i64;
        if next - inv.created_ms > inv.policy.max_event_age_ms as i64 {
            let why = format!(
                "expired: the next attempt would be past the maximum event age of {}s; the last: {last}",
                inv.policy.max_event_age_ms / 1000
            );
            return self.finished(inv, attempt, response, why, "EventAgeExceeded", now);
        }
        Outcome {
            id: inv.id.clone(),
            state: State::Pending,
            next_ms: next,
            attempt,
            throttled: false,
            at_ms: now,
            response,
            error: Some(last),
            then: Vec::new(),
        }
    }

    /// A failed invocation's outcome, its record sent to the on-failure destination.
    fn finished(
        &self,
        inv: &Invocation,
        attempt: Option<Attempt>,
        response: Option<StoredResponse>,
        error: String,
        condition: &str,
        now: i64,
    ) -> Outcome {
        let made = inv.attempts.len() as u32 + u32::from(attempt.is_some());
        let then = destination(
            inv,
            &inv.policy.on_failure(),
            condition,
            made,
            response.as_ref(),
            now,
        );
        Outcome {
            id: inv.id.clone(),
            state: State::Failed,
            next_ms: now,
            attempt,
            throttled: false,
            at_ms: now,
            response,
            error: Some(error),
            then,
        }
    }
}

/// HTTP's transient failures (408, 429, 5xx): the statuses retried; other 4xx are not.
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429) || status >= 500
}

/// The back-off before attempt `number + 1`: 1 s doubled per attempt up to 5 min, then
/// between half and all of it (jitter, from the id and attempt so that retries of many
/// invocations spread out, and a test can predict it).
pub fn backoff(id: &str, number: u32) -> Duration {
    backoff_from(FIRST_BACKOFF, false, id, number)
}

/// [`backoff`] from `first` (Knative's `backoffDelay`): doubled per attempt, or with `linear`
/// `first` times the attempt number (Knative's `backoffPolicy: linear`); capped at 5 min and
/// jittered the same way.
pub fn backoff_from(first: Duration, linear: bool, id: &str, number: u32) -> Duration {
    let factor = match linear {
        true => number.max(1),
        false => 1u32
            .checked_shl(number.saturating_sub(1))
            .unwrap_or(u32::MAX),
    };
    let full = first.saturating_mul(factor).min(MAX_BACKOFF);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (id, number).hash(&mut h);
    let fraction = (h.finish() % 1000) as u32; // 0..1000
    full / 2 + full / 2 * fraction / 1000
}

/// `Retry-After`, as seconds or an HTTP date, as a wait from `now_ms` (capped at
/// [`MAX_BACKOFF`]).
pub fn retry_after(headers: &[(String, String)], now_ms: i64) -> Option<Duration> {
    let value = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))?
        .1
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = jiff::fmt::rfc2822::parse(value)
                .ok()?
                .timestamp()
                .as_millisecond();
            Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64)
        }
    };
    Some(wait.min(MAX_BACKOFF))
}

/// The HTTP request of attempt `number`: the stored one, with the invocation's own id and
/// attempt number (replacing any a client sent).
fn request_of(inv: &Invocation, number: u32) -> Result<http::Request<Bytes>, http::Error> {
    let mut req = inv
        .request
        .to_http(|name| !name.to_ascii_lowercase().starts_with(RESERVED_PREFIX))?;
    let headers = req.headers_mut();
    headers.insert(INVOCATION_ID_HEADER, http::HeaderValue::from_str(&inv.id)?);
    headers.insert(ATTEMPT_HEADER, http::HeaderValue::from(number));
    Ok(req)
}

/// The invocation that delivers `inv`'s record to `destination` (Lambda's invocation record,
/// JSON), if there is a destination.
fn destination(
    inv: &Invocation,
    destination: &Option<Destination>,
    condition: &str,
    attempts: u32,
    response: Option<&StoredResponse>,
    now: i64,
) -> Vec<Invocation> {
    let Some(destination) = destination else {
        return Vec::new();
    };
    let payload = |body: &[u8]| match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => v,
        Err(_) => serde_json::Value::String(String::from_utf8_lossy(body).into_owned()),
    };
    let timestamp = jiff::Timestamp::from_millisecond(now)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let record = json!({
        "version": "1.0",
        "timestamp": timestamp,
        "requestContext": {
            "requestId": inv.id,
            "functionArn": format!("{}/{}", inv.namespace, inv.target),
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": payload(&inv.request.body),
        "responseContext": {
            "statusCode": response.map(|r| r.status),
        },
        "responsePayload": response.map(|r| payload(&r.body)),
    });
    let target = match destination {
        Destination::Service(name) => Target::Service {
            name: name.clone(),
            host: String::new(),
        },
        Destination::Url(url) => Target::Url { url: url.clone() },
    };
    let request = crate::model::StoredRequest {
        method: "POST".into(),
        target: "/".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(record.to_string()),
        size: 0,
    };
    let mut next = Invocation::new(&inv.namespace, target, request, Policy::default(), now);
    next.cause = Some(inv.id.clone());
    vec![next]
}

#[cfg(test)]
#[path = "dispatcher_tests.rs"]
mod tests;
