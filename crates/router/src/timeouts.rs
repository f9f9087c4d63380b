//! The revision's request timeouts on the data path: when each limit on one request falls due,
//! and which one passed.
//!
//! Knative enforces `timeoutSeconds`, `responseStartTimeoutSeconds` and `idleTimeoutSeconds` in
//! its activator and its queue-proxy with one timeout handler (`pkg/http/handler/timeout.go`);
//! Nimbus's router is both, so it keeps one [`Deadline`] per request and one timer:
//!
//! ```text
//!  arrives ── wait for capacity ── delivered to an instance ── headers ── body … ── end
//!  ├───────────────────────── timeoutSeconds (total) ─────────────────────────────┤
//!                                  ├─ responseStart ─┤
//!                                  ├─ idle ─┤ ├─ idle ─┤ (restarts with every frame)
//! ```
//!
//! - The whole-request deadline starts when the request arrives, so the wait for capacity counts
//!   against it, as in Knative's activator (its timeout handler wraps the throttler:
//!   `cmd/activator/main.go`, `handler.NewTimeoutHandler(ah, …)`). A request never takes longer
//!   than `timeoutSeconds` in all, whether it waited for a cold start or not.
//! - The response-start and idle limits start when the request is delivered to an instance:
//!   they are about the instance ("for a request delivered to a container to begin sending any
//!   network traffic", `ResponseStartTimeoutSeconds` in `pkg/apis/serving/v1/revision_types.go`),
//!   so a cold start does not eat into them.
//!
//! This module only keeps time; the proxy phase turns an expiry into a 504 (before headers), the
//! response body into a cut (after them, see `body.rs`). The cut differs from Knative on
//! purpose: its handler, when a limit passes after the headers, writes its message into the
//! body and returns (`timeoutAndWriteError`), which Go's server then ends like any complete
//! response; here the client sees an aborted body, so a truncated response is never taken for
//! a whole one.

use std::future::{Future as _, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use nimbus_api::networking::RequestTimeouts;
use tokio::time::{Instant, Sleep};

use crate::error::TimeoutKind;

/// One request's whole-request deadline, fixed when it arrives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    timeouts: RequestTimeouts,
    arrived: Instant,
    end: Instant,
}

/// The limits on an instance's answer to one delivered request, on one timer that is re-armed
/// for whichever limit falls due next.
#[derive(Debug)]
pub(crate) struct ResponseClock {
    timeouts: RequestTimeouts,
    /// When the whole request must be over.
    end: Instant,
    /// When the response must have started; `None` once it has.
    start_by: Option<Instant>,
    /// When the instance last sent something (or was sent the request); kept up to date only
    /// when there is an idle limit (saving a clock read per frame otherwise).
    heard: Instant,
    timer: Pin<Box<Sleep>>,
}

// === impl Deadline ===

impl Deadline {
    /// The deadline of a request arriving now.
    pub fn start(timeouts: RequestTimeouts) -> Self {
        let arrived = Instant::now();
        Self {
            timeouts,
            arrived,
            end: arrived + timeouts.total,
        }
    }

    /// How long ago the request arrived.
    pub fn elapsed(&self) -> Duration {
        self.arrived.elapsed()
    }

    /// When the whole request must be over.
    pub fn end(&self) -> Instant {
        self.end
    }

    /// The clock of an answer to the request, delivered to an instance now.
    pub fn delivered(&self) -> ResponseClock {
        let now = Instant::now();
        let mut clock = ResponseClock {
            timeouts: self.timeouts,
            end: self.end,
            start_by: Some(now + self.timeouts.response_start),
            heard: now,
            timer: Box::pin(tokio::time::sleep_until(self.end)),
        };
        clock.rearm();
        clock
    }
}

// === impl ResponseClock ===

impl ResponseClock {
    /// Resolves when a limit passes (no frame heard meanwhile), with the one that passed.
    pub async fn expired(&mut self) -> TimeoutKind {
        poll_fn(|cx| self.poll_expired(cx, false)).await
    }

    /// The response has started (its headers arrived): from now on only the whole-request and
    /// idle limits apply.
    pub fn started(&mut self) {
        self.start_by = None;
        if self.timeouts.idle.is_some() {
            self.heard = Instant::now();
        }
        self.rearm();
    }

    /// Ready with the limit that passed, if one did. `heard`: the instance just sent something
    /// (a body frame), which restarts the idle limit.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>, heard: bool) -> Poll<TimeoutKind> {
        if heard && self.timeouts.idle.is_some() {
            self.heard = Instant::now();
        }
        loop {
            ready!(self.timer.as_mut().poll(cx));
            if let Some(passed) = self.passed(Instant::now(), heard) {
                return Poll::Ready(passed);
            }
            // Fired for an idle limit that bytes since pushed back: wait for the next one.
            self.rearm();
        }
    }

    /// The value of the limit `kind`.
    pub fn limit(&self, kind: TimeoutKind) -> Duration {
        match kind {
            TimeoutKind::Request => self.timeouts.total,
            TimeoutKind::ResponseStart => self.timeouts.response_start,
            TimeoutKind::Idle => self.timeouts.idle.unwrap_or(Duration::MAX),
        }
    }

    /// The first limit (whole request, response start, idle) that has passed at `now`.
    fn passed(&self, now: Instant, heard: bool) -> Option<TimeoutKind> {
        if now >= self.end {
            return Some(TimeoutKind::Request);
        }
        if self.start_by.is_some_and(|at| now >= at) {
            return Some(TimeoutKind::ResponseStart);
        }
        let idle_until = self.idle_until()?;
        (!heard && now >= idle_until).then_some(TimeoutKind::Idle)
    }

    fn idle_until(&self) -> Option<Instant> {
        self.timeouts.idle.map(|idle| self.heard + idle)
    }

    /// Points the timer at the next limit to fall due.
    fn rearm(&mut self) {
        let next = [self.start_by, self.idle_until()]
            .into_iter()
            .flatten()
            .fold(self.end, Instant::min);
        self.timer.as_mut().reset(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(total: u64, start: u64, idle: Option<u64>) -> RequestTimeouts {
        RequestTimeouts {
            total: Duration::from_secs(total),
            response_start: Duration::from_secs(start),
            idle: idle.map(Duration::from_secs),
        }
    }

    async fn sleep(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    /// Polls the clock once, as a body does after polling its frame.
    async fn poll_once(clock: &mut ResponseClock, heard: bool) -> Poll<TimeoutKind> {
        poll_fn(|cx| Poll::Ready(clock.poll_expired(cx, heard))).await
    }

    #[tokio::test(start_paused = true)]
    async fn response_start_passes_first_when_shorter() {
        let deadline = Deadline::start(timeouts(60, 10, None));
        let mut clock = deadline.delivered();
        let started = Instant::now();
        assert_eq!(clock.expired().await, TimeoutKind::ResponseStart);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_capacity_counts_against_the_whole_request_only() {
        let deadline = Deadline::start(timeouts(60, 30, Some(30)));
        sleep(45).await; // a cold start
        let mut clock = deadline.delivered();
        assert_eq!(clock.expired().await, TimeoutKind::Request);
        assert_eq!(deadline.end(), Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_applies_before_the_response_starts() {
        let mut clock = Deadline::start(timeouts(60, 30, Some(5))).delivered();
        assert_eq!(clock.expired().await, TimeoutKind::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_push_the_idle_limit_back_until_the_whole_request_ends() {
        let mut clock = Deadline::start(timeouts(20, 20, Some(3))).delivered();
        sleep(1).await;
        clock.started();
        for _ in 0..9 {
            sleep(2).await;
            assert!(poll_once(&mut clock, true).await.is_pending());
        }
        // 19 s in: the next gap of 3 s outlasts the whole request's 20 s.
        assert_eq!(clock.expired().await, TimeoutKind::Request);
        assert_eq!(clock.limit(TimeoutKind::Request), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_longer_than_idle_passes_it() {
        let mut clock = Deadline::start(timeouts(60, 60, Some(3))).delivered();
        clock.started();
        sleep(2).await;
        assert!(poll_once(&mut clock, true).await.is_pending());
        let heard = Instant::now();
        assert_eq!(clock.expired().await, TimeoutKind::Idle);
        assert_eq!(heard.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_arriving_late_is_not_idle() {
        // The client stopped reading for a while; what the instance sent meanwhile is a frame.
        let mut clock = Deadline::start(timeouts(60, 60, Some(3))).delivered();
        clock.started();
        sleep(10).await;
        assert!(poll_once(&mut clock, true).await.is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn without_idle_limit_only_the_whole_request_ends_a_started_response() {
        let mut clock = Deadline::start(timeouts(30, 5, None)).delivered();
        clock.started();
        let started = Instant::now();
        assert_eq!(clock.expired().await, TimeoutKind::Request);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
