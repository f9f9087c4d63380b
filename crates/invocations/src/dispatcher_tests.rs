//! The dispatcher against a scripted function, on paused Tokio time.

use std::sync::Mutex;

use super::*;
use crate::model::StoredRequest;

/// One scripted answer: a status with headers, or a connection error.
type Step = Result<(u16, Vec<(&'static str, &'static str)>), &'static str>;

/// Answers the n-th call for an invocation with `script[n - 1]` (the last one again past the end): a status with
/// headers, or a connection error.
struct Scripted {
    script: Vec<Step>,
    /// Every call: the target, the invocation id header, the attempt header, the clock.
    calls: Mutex<Vec<(String, String, String, i64)>>,
    clock: Clock,
}

#[async_trait]
impl Deliver for Scripted {
    async fn deliver(
        &self,
        _namespace: &str,
        target: &Target,
        request: http::Request<Bytes>,
    ) -> Result<StoredResponse, NoResponse> {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let attempt: usize = header(ATTEMPT_HEADER).parse().unwrap_or(1);
        let mut calls = self.calls.lock().unwrap();
        let target = target.to_string();
        calls.push((
            target.clone(),
            header(INVOCATION_ID_HEADER),
            attempt.to_string(),
            (self.clock)(),
        ));
        if target != "service:fn" {
            return Ok(StoredResponse {
                status: 200,
                ..Default::default()
            });
        }
        // The n-th call for this invocation (throttles are calls too, not attempts).
        let id = header(INVOCATION_ID_HEADER);
        let call = calls.iter().filter(|c| c.0 == target && c.1 == id).count();
        let step = self.script.get(call - 1).or(self.script.last()).unwrap();
        match step {
            Ok((status, headers)) => Ok(StoredResponse {
                status: *status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: format!("answer {attempt}").into_bytes(),
                truncated: false,
            }),
            Err(e) => Err(NoResponse::failed(*e)),
        }
    }
}

/// The test's clock: it moves only when the test advances it (the queue's writer thread
/// does real I/O, during which paused Tokio time would leap ahead).
#[derive(Clone, Default)]
struct Manual(Arc<std::sync::atomic::AtomicI64>);

impl Manual {
    const START: i64 = 1_800_000_000_000;

    fn clock(&self) -> Clock {
        let now = Arc::clone(&self.0);
        Arc::new(move || Self::START + now.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    time: Manual,
    queue: Arc<Queue>,
    deliver: Arc<Scripted>,
    dispatcher: Dispatcher,
}

fn setup(script: Vec<Step>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(Queue::open(&dir.path().join("invocations.db")).unwrap());
    let time = Manual::default();
    let clock = time.clock();
    let deliver = Arc::new(Scripted {
        script,
        calls: Mutex::default(),
        clock: Arc::clone(&clock),
    });
    let config = DispatcherConfig {
        concurrency: 4,
        clock,
    };
    let dispatcher = Dispatcher::start(Arc::clone(&queue), deliver.clone(), config);
    Setup {
        _dir: dir,
        time,
        queue,
        deliver,
        dispatcher,
    }
}

async fn enqueue(s: &Setup, policy: Policy) -> String {
    let request = StoredRequest {
        method: "POST".into(),
        target: "/work?x=1".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            // A client's attempt to pass for another invocation: replaced.
            ("x-nimbus-invocation-id".into(), "spoofed".into()),
        ],
        body: Bytes::from_static(br#"{"n": 1}"#),
        size: 8,
    };
    let target = Target::Service {
        name: "fn".into(),
        host: "fn.default.localhost".into(),
    };
    let inv = Invocation::new("default", target, request, policy, s.dispatcher.now_ms());
    let id = inv.id.clone();
    s.queue.enqueue(vec![inv]).await.unwrap();
    s.dispatcher.wake();
    id
}

/// Let the invocation's attempts happen, moving the clock 100 ms at a time once the
/// dispatcher is idle, until it is in `state`.
async fn settled(s: &Setup, id: &str, state: State) -> Invocation {
    for _ in 0..100_000 {
        let inv = s.queue.get("default", id).unwrap().unwrap();
        if inv.state == state {
            return inv;
        }
        idle(s).await;
        s.time.advance(100);
        s.dispatcher.wake();
    }
    panic!("{id} never became {state:?}");
}

/// Wait until no attempt is under way and the dispatcher looked at the queue.
async fn idle(s: &Setup) {
    for _ in 0..1000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if s.dispatcher.busy() == 0 {
            return;
        }
    }
}

fn policy(attempts: u32, age_secs: u64, on_failure: Option<&str>) -> Policy {
    Policy {
        max_attempts: attempts,
        max_event_age_ms: age_secs * 1000,
        on_success: None,
        on_failure: on_failure.map(Into::into),
    }
}

#[tokio::test(start_paused = true)]
async fn a_success_is_stored_with_its_response() {
    let s = setup(vec![Ok((200, vec![]))]);
    let id = enqueue(&s, Policy::default()).await;
    let inv = settled(&s, &id, State::Succeeded).await;
    assert_eq!(inv.attempts.len(), 1);
    assert_eq!(inv.response.unwrap().body, b"answer 1");
    let calls = s.deliver.calls.lock().unwrap().clone();
    assert_eq!(calls[0].1, id, "the function is told the invocation id");
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_back_off() {
    let s = setup(vec![
        Ok((503, vec![])),
        Err("connection refused"),
        Ok((200, vec![])),
    ]);
    let id = enqueue(&s, Policy::default()).await;
    let inv = settled(&s, &id, State::Succeeded).await;
    assert_eq!(inv.attempts.len(), 3);
    assert_eq!(inv.attempts[0].status, Some(503));
    assert_eq!(inv.attempts[1].error.as_deref(), Some("connection refused"));
    let gaps: Vec<i64> = inv
        .attempts
        .windows(2)
        .map(|w| w[1].at_ms - w[0].at_ms)
        .collect();
    // Each attempt waits its back-off (the clock moves in 100 ms steps while the dispatcher
    // is idle, so an attempt may come a few steps later, never earlier).
    for (n, gap) in [1, 2].into_iter().zip(&gaps) {
        let wait = backoff(&id, n).as_millis() as i64;
        assert!(
            (wait..wait + 500).contains(gap),
            "attempt {n}: {gaps:?} vs {wait}"
        );
    }
    assert!(
        (500..1500).contains(&gaps[0]) && (1000..2500).contains(&gaps[1]),
        "{gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let s = setup(vec![
        Ok((503, vec![("Retry-After", "7")])),
        Ok((200, vec![])),
    ]);
    let id = enqueue(&s, Policy::default()).await;
    let inv = settled(&s, &id, State::Succeeded).await;
    let gap = inv.attempts[1].at_ms - inv.attempts[0].at_ms;
    assert!((7000..7500).contains(&gap), "{gap}");
}

#[tokio::test(start_paused = true)]
async fn a_client_error_fails_at_once_and_its_record_goes_to_the_destination() {
    let s = setup(vec![Ok((404, vec![]))]);
    let id = enqueue(&s, policy(3, 3600, Some("service:dlq"))).await;
    let inv = settled(&s, &id, State::Failed).await;
    assert_eq!(inv.attempts.len(), 1);
    assert!(inv.error.unwrap().contains("answered 404"));
    let records = s
        .queue
        .list(Some("default"), Some("dlq"), None, 10)
        .unwrap();
    assert_eq!(records.len(), 1);
    let full = s.queue.get("default", &records[0].id).unwrap().unwrap();
    let record: serde_json::Value = serde_json::from_slice(&full.request.body).unwrap();
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["requestContext"]["condition"], "NotRetried");
    assert_eq!(record["requestPayload"], serde_json::json!({"n": 1}));
    assert_eq!(record["responsePayload"], "answer 1");
    assert_eq!(records[0].cause.as_deref(), Some(id.as_str()));
    // The destination's invocation is delivered too.
    settled(&s, &records[0].id, State::Succeeded).await;
}

#[tokio::test(start_paused = true)]
async fn attempts_and_event_age_run_out() {
    let s = setup(vec![Ok((500, vec![]))]);
    let spent = enqueue(&s, policy(2, 3600, Some("service:dlq"))).await;
    let inv = settled(&s, &spent, State::Failed).await;
    assert_eq!(inv.attempts.len(), 2);
    assert!(inv.error.unwrap().starts_with("gave up after 2 attempts"));
    let aged = enqueue(&s, policy(100, 5, None)).await;
    let inv = settled(&s, &aged, State::Failed).await;
    assert!(
        inv.error.as_deref().unwrap().starts_with("expired"),
        "{:?}",
        inv.error
    );
    assert!(!inv.attempts.is_empty());
    for a in &inv.attempts {
        assert!(
            a.at_ms - inv.created_ms <= 5000,
            "no attempt past the age: {a:?}"
        );
    }
    let conditions: Vec<String> = s
        .queue
        .list(Some("default"), Some("dlq"), None, 10)
        .unwrap()
        .iter()
        .map(|r| {
            let full = s.queue.get("default", &r.id).unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_slice(&full.request.body).unwrap();
            v["requestContext"]["condition"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(conditions, ["RetriesExhausted"]);
}

#[tokio::test(start_paused = true)]
async fn a_pending_invocation_can_be_cancelled() {
    let s = setup(vec![Ok((503, vec![("Retry-After", "60")]))]);
    let id = enqueue(&s, Policy::default()).await;
    // After the first attempt it waits a minute.
    for _ in 0..1000 {
        let inv = s.queue.get("default", &id).unwrap().unwrap();
        if !inv.attempts.is_empty() {
            break;
        }
        idle(&s).await;
    }
    assert_eq!(
        s.queue.cancel("default", &id).await.unwrap(),
        Some((State::Cancelled, true))
    );
    s.time.advance(120_000);
    s.dispatcher.wake();
    idle(&s).await;
    let inv = s.queue.get("default", &id).unwrap().unwrap();
    assert_eq!((inv.state, inv.attempts.len()), (State::Cancelled, 1));
    assert_eq!(
        s.queue.cancel("default", &id).await.unwrap(),
        Some((State::Cancelled, false)),
        "cancelled already"
    );
    assert_eq!(s.queue.cancel("default", "nope").await.unwrap(), None);
}

/// Throttles (the platform had no room, or a 429) wait and do not use up attempts.
#[tokio::test(start_paused = true)]
async fn throttles_do_not_use_up_attempts() {
    let s = setup(vec![
        Ok((429, vec![("Retry-After", "3")])),
        Ok((429, vec![])),
        Ok((200, vec![])),
    ]);
    let id = enqueue(&s, policy(1, 3600, None)).await;
    let inv = settled(&s, &id, State::Succeeded).await;
    assert_eq!((inv.attempts.len(), inv.throttles), (1, 2), "{inv:?}");
}

/// What was stored survives the queue's end (a crash) and is due again.
#[tokio::test]
async fn stored_invocations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invocations.db");
    let queue = Queue::open(&path).unwrap();
    let invs: Vec<Invocation> = (0..3)
        .map(|i| {
            let request = StoredRequest {
                method: "GET".into(),
                target: format!("/{i}"),
                headers: vec![],
                body: Bytes::from(vec![0, 1, 2, i]),
                size: 4,
            };
            let target = Target::Service {
                name: "fn".into(),
                host: String::new(),
            };
            Invocation::new("default", target, request, Policy::default(), 1000)
        })
        .collect();
    queue.enqueue(invs.clone()).await.unwrap();
    drop(queue);
    let again = Queue::open(&path).unwrap();
    let due = again.due(1000, 10, &|_| false).unwrap();
    assert_eq!(due, invs);
    assert_eq!(again.pending("default", "fn", 100).unwrap(), 3);
    assert_eq!(
        again.pending("default", "fn", 2).unwrap(),
        2,
        "counted up to the cap"
    );
    assert!(again.due(999, 10, &|_| false).unwrap().is_empty());
    let skip = &invs[0].id;
    assert_eq!(again.due(1000, 10, &|id| id == skip).unwrap().len(), 2);
}

#[test]
fn retry_after_dates_and_back_off_bounds() {
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let date = jiff::fmt::rfc2822::to_string(
        &now.checked_add(jiff::Span::new().seconds(30))
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC),
    )
    .unwrap();
    let headers = vec![("retry-after".to_string(), date)];
    assert_eq!(
        retry_after(&headers, now.as_millisecond()),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        retry_after(&[("Retry-After".into(), "9999".into())], 0),
        Some(MAX_BACKOFF)
    );
    assert_eq!(
        retry_after(&[("Retry-After".into(), "soon".into())], 0),
        None
    );
    for n in 1..40 {
        let b = backoff("x", n);
        assert!(
            b >= Duration::from_millis(500) && b <= MAX_BACKOFF,
            "{n}: {b:?}"
        );
    }
}

/// The dispatcher lists due ids, marks one busy, then takes it: an attempt that finished in
/// between (the id listed before its outcome was written) is not taken again.
#[tokio::test]
async fn an_invocation_finished_after_it_was_listed_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&dir.path().join("invocations.db")).unwrap();
    let target = Target::Service {
        name: "fn".into(),
        host: String::new(),
    };
    let inv = Invocation::new(
        "default",
        target,
        StoredRequest::default(),
        Policy::default(),
        10,
    );
    queue.enqueue(vec![inv.clone()]).await.unwrap();
    let listed = queue.due_ids(10, 10, &|_| false).unwrap();
    assert_eq!(listed, std::slice::from_ref(&inv.id));
    let outcome = Outcome {
        id: inv.id.clone(),
        state: State::Succeeded,
        next_ms: 11,
        attempt: None,
        throttled: false,
        at_ms: 11,
        response: None,
        error: None,
        then: Vec::new(),
    };
    assert!(queue.finish(outcome).await.unwrap());
    assert_eq!(queue.take_due(&inv.id, 20).unwrap(), None);
}
