//! One event's delivery: attempts under the invocation crate's rules (2xx delivered; 408, 429,
//! 5xx and failed connections retried with back-off and jitter, honouring `Retry-After`;
//! other 4xx not retried; the platform's throttles use no attempt), then, when they run out,
//! the dead letter: the `deadLetterSink` if there is one, else a failed invocation in the
//! invocation store (`nimbus invocations list --state Failed`). Only then may the broker's
//! message be acked.

use std::time::Duration;

use nimbus_invocations::dispatcher::{backoff_from, retry_after, retryable};
use nimbus_invocations::model::{Attempt, Policy, now_ms};
use nimbus_invocations::{Invocation, NoResponse, State, StoredRequest, StoredResponse};

use crate::cloudevent::Event;
use crate::{Env, Sink, SourceConfig};

/// Most throttles (no room on the platform) of one attempt before it counts as failed.
const MAX_THROTTLES: u32 = 600;
/// How long a throttled attempt waits without a `Retry-After`.
const THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// How an event's delivery ended; either way the broker's message may be acked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// The sink answered 2xx.
    Ok,
    /// It failed for good and is kept as a dead letter (`why`).
    DeadLettered(String),
}

/// Why the broker's message must not be acked: the dead letter could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("the dead letter of event {id} could not be stored: {why}")]
pub struct NotStored {
    pub id: String,
    pub why: String,
}

/// Deliver `event` to the config's sink; dead-letter it when that fails for good.
pub async fn deliver(
    env: &Env,
    config: &SourceConfig,
    event: &Event,
) -> Result<Delivered, NotStored> {
    let (result, made) = attempts(env, config, &config.sink, event).await;
    let why = match result {
        Ok(()) => return Ok(Delivered::Ok),
        Err(why) => why,
    };
    tracing::warn!(source = %config.key, event = event.id(), "dead-lettering an event: {why}");
    if let Some(dls) = &config.dead_letter_sink {
        let (result, _) = attempts(env, config, dls, event).await;
        match result {
            Ok(()) => return Ok(Delivered::DeadLettered(why)),
            Err(e) => tracing::warn!(
                source = %config.key,
                "the dead-letter sink failed too ({e}); keeping the event in the invocation store"
            ),
        }
    }
    store(env, config, event, made, &why).await?;
    Ok(Delivered::DeadLettered(why))
}

/// Attempts to `target` until a 2xx, a 4xx that is not retried, or the last attempt.
async fn attempts(
    env: &Env,
    config: &SourceConfig,
    sink: &Sink,
    event: &Event,
) -> (Result<(), String>, Vec<Attempt>) {
    let mut made = Vec::new();
    let mut throttles = 0;
    let mut number = 1;
    loop {
        let request = match event.request(&sink.path) {
            Ok(r) => r,
            Err(e) => return (Err(format!("the event cannot be sent: {e}")), made),
        };
        let started = now_ms();
        let sent = env
            .deliver
            .deliver(&config.key.namespace, &sink.target, request);
        let result = match config.retry.timeout {
            Some(t) => tokio::time::timeout(t, sent).await.unwrap_or_else(|_| {
                Err(NoResponse::failed(format!(
                    "no response within {}ms",
                    t.as_millis()
                )))
            }),
            None => sent.await,
        };
        let ended = now_ms();
        let (status, error, wait, throttled) = outcome(&result, ended);
        if throttled && throttles < MAX_THROTTLES {
            throttles += 1;
            tokio::time::sleep(wait.unwrap_or(THROTTLE_WAIT).max(THROTTLE_WAIT)).await;
            continue;
        }
        made.push(Attempt {
            at_ms: started,
            took_ms: (ended - started).max(0) as u64,
            status,
            error: error.clone(),
        });
        let last = error.unwrap_or_else(|| format!("the sink answered {}", status.unwrap_or(0)));
        match status {
            Some(200..=299) => return (Ok(()), made),
            Some(s) if !retryable(s) => {
                let why = format!(
                    "the sink answered {s}; only 408, 429, 5xx and failed connections are retried"
                );
                return (Err(why), made);
            }
            _ if number >= config.retry.attempts => {
                return (
                    Err(format!("gave up after {number} attempts; the last: {last}")),
                    made,
                );
            }
            _ => {}
        }
        let wait = wait.unwrap_or_else(|| {
            backoff_from(config.retry.delay, config.retry.linear, event.id(), number)
        });
        tokio::time::sleep(wait).await;
        number += 1;
    }
}

/// (status, error, Retry-After, throttled) of one attempt.
fn outcome(
    result: &Result<StoredResponse, NoResponse>,
    now: i64,
) -> (Option<u16>, Option<String>, Option<Duration>, bool) {
    match result {
        Ok(r) => (
            Some(r.status),
            None,
            retry_after(&r.headers, now),
            r.status == 429,
        ),
        Err(e) => (None, Some(e.message.clone()), e.retry_after, e.throttled),
    }
}

/// Keep `event` as a failed invocation of the sink (the invocation store's dead letters).
async fn store(
    env: &Env,
    config: &SourceConfig,
    event: &Event,
    attempts: Vec<Attempt>,
    why: &str,
) -> Result<(), NotStored> {
    let request = StoredRequest {
        method: "POST".into(),
        target: config.sink.path.clone(),
        headers: event.headers(),
        size: event.data.len(),
        body: event.data.clone(),
    };
    let now = now_ms();
    let policy = Policy {
        max_attempts: config.retry.attempts,
        ..Policy::default()
    };
    let mut inv = Invocation::new(
        &config.key.namespace,
        config.sink.target.clone(),
        request,
        policy,
        now,
    );
    inv.state = State::Failed;
    inv.attempts = attempts;
    inv.error = Some(format!(
        "event source {}: event {}: {why}",
        config.key,
        event.id()
    ));
    env.dead_letters
        .enqueue(vec![inv])
        .await
        .map_err(|e| NotStored {
            id: event.id().to_owned(),
            why: e.to_string(),
        })
}

/// Deliver `messages` at once (a batch of at most the source's parallelism); for each,
/// whether it may be acked now.
pub(crate) async fn deliver_all(
    env: &Env,
    config: &SourceConfig,
    messages: &[crate::cloudevent::Message],
) -> Vec<bool> {
    let sends = messages.iter().map(|m| async move {
        let event = Event::of(m, &config.ce_source, &config.ce_type, &config.ce_overrides);
        match deliver(env, config, &event).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(source = %config.key, "{e}; the message stays unacked");
                false
            }
        }
    });
    futures::future::join_all(sends).await
}
