//! One event's delivery: attempts under the invocation crate's rules (2xx delivered; 408, 429,
//! 5xx and failed connections retried with back-off and jitter, honouring `Retry-After`;
//! other 4xx not retried; the platform's throttles use no attempt), then, when they run out,
//! the dead letter: the `deadLetterSink` if there is one, else a failed invocation in the
//! invocation store (`nimbus invocations list --state Failed`), or, where there is no store
//! (Kubernetes mode), an error line and the event dropped as Knative Eventing drops it. Only
//! then may the broker's message be acked.

use std::time::Duration;

use nimbus_api::sources::Retry;
use nimbus_invocations::dispatcher::{backoff_from, retry_after, retryable};
use nimbus_invocations::model::{Attempt, Policy, now_ms};
use nimbus_invocations::{
    Deliver, Invocation, NoResponse, State, StoredRequest, StoredResponse, Target,
};

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

/// Attempts to the sink until a 2xx, a 4xx that is not retried, or the last attempt.
async fn attempts(
    env: &Env,
    config: &SourceConfig,
    sink: &Sink,
    event: &Event,
) -> (Result<(), String>, Vec<Attempt>) {
    let to = To {
        deliver: env.deliver.as_ref(),
        namespace: &config.key.namespace,
        target: &sink.target,
        retry: &config.retry,
    };
    send(to, event.id(), || event.request(&sink.path)).await
}

/// Where [`send`] sends, and by which rules.
#[derive(Clone, Copy)]
pub struct To<'a> {
    pub deliver: &'a dyn Deliver,
    pub namespace: &'a str,
    pub target: &'a Target,
    pub retry: &'a Retry,
}

/// Attempts of one request (made afresh by `request` for each) under Knative's delivery
/// rules, until a 2xx, a 4xx that is not retried, or the last attempt; `id` seeds the jitter.
/// Returns the outcome and the attempts made.
pub async fn send(
    to: To<'_>,
    id: &str,
    request: impl Fn() -> Result<http::Request<bytes::Bytes>, http::Error>,
) -> (Result<(), String>, Vec<Attempt>) {
    let mut made = Vec::new();
    let mut throttles = 0;
    let mut number = 1;
    loop {
        let request = match request() {
            Ok(r) => r,
            Err(e) => return (Err(format!("the event cannot be sent: {e}")), made),
        };
        let started = now_ms();
        let sent = to.deliver.deliver(to.namespace, to.target, request);
        let result = match to.retry.timeout {
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
            _ if number >= to.retry.attempts => {
                return (
                    Err(format!("gave up after {number} attempts; the last: {last}")),
                    made,
                );
            }
            _ => {}
        }
        let wait =
            wait.unwrap_or_else(|| backoff_from(to.retry.delay, to.retry.linear, id, number));
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
    let Some(dead_letters) = &env.dead_letters else {
        // No store (Kubernetes mode): as Knative Eventing without a dead-letter sink, the
        // event is dropped, and said so.
        tracing::error!(
            source = %config.key,
            event = event.id(),
            "dropping an event that could not be delivered (no dead-letter sink): {why}"
        );
        return Ok(());
    };
    dead_letters
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use bytes::Bytes;
    use nimbus_api::Kind;
    use nimbus_api::sources::Retry;
    use nimbus_invocations::{Deliver, Queue, Target};

    use super::*;
    use crate::cloudevent::Message;
    use crate::{Broker, Report, SourceKey};

    /// A sink answering the given results in turn (then 200), recording each request.
    struct Script {
        answers: Mutex<VecDeque<Result<StoredResponse, NoResponse>>>,
        seen: Mutex<Vec<(Target, http::Request<Bytes>)>>,
    }

    fn status(code: u16, headers: &[(&str, &str)]) -> Result<StoredResponse, NoResponse> {
        Ok(StoredResponse {
            status: code,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
    }

    #[async_trait]
    impl Deliver for Script {
        async fn deliver(
            &self,
            _: &str,
            target: &Target,
            request: http::Request<Bytes>,
        ) -> Result<StoredResponse, NoResponse> {
            self.seen.lock().unwrap().push((target.clone(), request));
            let next = self.answers.lock().unwrap().pop_front();
            next.unwrap_or_else(|| status(200, &[]))
        }
    }

    struct Nobody;
    impl Report for Nobody {
        fn report(&self, _: &SourceKey, _: crate::State) {}
    }

    fn target(name: &str) -> Sink {
        Sink {
            target: Target::Service {
                name: name.into(),
                host: format!("{name}.default.localhost"),
            },
            path: "/in".into(),
        }
    }

    fn setup(
        answers: Vec<Result<StoredResponse, NoResponse>>,
        dead_letter_sink: Option<Sink>,
    ) -> (Env, SourceConfig, Arc<Script>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(Queue::open(&dir.path().join("q.db")).unwrap());
        let script = Arc::new(Script {
            answers: Mutex::new(answers.into()),
            seen: Mutex::default(),
        });
        let env = Env {
            deliver: script.clone(),
            dead_letters: Some(queue),
            report: Arc::new(Nobody),
        };
        let config = SourceConfig {
            key: SourceKey {
                kind: Kind::RedisStreamSource,
                namespace: "default".into(),
                name: "src".into(),
            },
            broker: Broker::RedisStream {
                url: "redis://127.0.0.1:1".into(),
                stream: "s".into(),
                group: "g".into(),
            },
            sink: target("fn"),
            dead_letter_sink,
            retry: Retry {
                attempts: 3,
                linear: false,
                delay: Duration::from_secs(1),
                timeout: None,
            },
            parallelism: 1,
            ce_source: "/src".into(),
            ce_type: "t".into(),
            ce_overrides: BTreeMap::new(),
        };
        (env, config, script, dir)
    }

    fn event() -> Event {
        let m = Message {
            id: "1-0".into(),
            body: Bytes::from_static(b"x"),
            ..Default::default()
        };
        Event::of(&m, "/src", "t", &BTreeMap::new())
    }

    #[tokio::test(start_paused = true)]
    async fn retried_with_back_off_until_a_2xx() {
        let (env, config, script, _dir) = setup(
            vec![Err(NoResponse::failed("refused")), status(503, &[])],
            None,
        );
        let started = tokio::time::Instant::now();
        assert_eq!(
            deliver(&env, &config, &event()).await.unwrap(),
            Delivered::Ok
        );
        let seen = script.seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].1.uri(), "/in");
        assert_eq!(seen[0].1.headers()["ce-id"], "1-0");
        // Back-off 1 s then 2 s, each jittered to between half and all of it.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_and_throttles_are_honoured() {
        let throttled = NoResponse {
            message: "no room".into(),
            throttled: true,
            retry_after: None,
        };
        let (env, config, script, _dir) = setup(
            vec![
                Err(throttled.clone()),
                Err(throttled.clone()),
                Err(throttled),
                status(500, &[("retry-after", "7")]),
                status(500, &[]),
            ],
            None,
        );
        let started = tokio::time::Instant::now();
        // Three throttles use no attempt: 500, 500, then the third attempt succeeds.
        assert_eq!(
            deliver(&env, &config, &event()).await.unwrap(),
            Delivered::Ok
        );
        assert_eq!(script.seen.lock().unwrap().len(), 6);
        assert!(started.elapsed() >= Duration::from_secs(3 + 7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_4xx_is_not_retried_and_is_kept_as_a_dead_letter() {
        let (env, config, script, _dir) = setup(vec![status(400, &[])], None);
        let outcome = deliver(&env, &config, &event()).await.unwrap();
        assert!(matches!(outcome, Delivered::DeadLettered(ref why) if why.contains("400")));
        assert_eq!(script.seen.lock().unwrap().len(), 1);
        let failed = env
            .dead_letters
            .as_ref()
            .unwrap()
            .list(Some("default"), None, Some(State::Failed), 10)
            .unwrap();
        assert_eq!(failed.len(), 1);
        let dead = &failed[0];
        assert_eq!(dead.target.service_name(), "fn");
        assert_eq!(dead.request.target, "/in");
        assert_eq!(dead.attempts.len(), 1);
        assert!(
            dead.error.as_deref().unwrap().contains("event 1-0"),
            "{dead:?}"
        );
        assert!(
            dead.request
                .headers
                .iter()
                .any(|(n, v)| n == "ce-id" && v == "1-0")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_store_a_failed_event_is_dropped_and_may_be_acked() {
        let (mut env, config, script, _dir) = setup(vec![status(400, &[])], None);
        env.dead_letters = None;
        let outcome = deliver(&env, &config, &event()).await.unwrap();
        assert!(matches!(outcome, Delivered::DeadLettered(ref why) if why.contains("400")));
        assert_eq!(script.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_retries_go_to_the_dead_letter_sink() {
        let (env, config, script, _dir) = setup(
            vec![status(500, &[]), status(500, &[]), status(500, &[])],
            Some(target("dls")),
        );
        let outcome = deliver(&env, &config, &event()).await.unwrap();
        assert!(
            matches!(outcome, Delivered::DeadLettered(ref why) if why.contains("gave up after 3 attempts"))
        );
        let seen = script.seen.lock().unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[3].0.service_name(), "dls");
        let failed = env
            .dead_letters
            .as_ref()
            .unwrap()
            .list(None, None, Some(State::Failed), 10)
            .unwrap();
        assert!(failed.is_empty(), "the dead-letter sink took it");
    }
}
