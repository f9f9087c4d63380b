//! The activator and `containerConcurrency`: scale from zero, the bounded wait queue, wait
//! limits, failed starts, one request at a time per instance, retries on dead instances and
//! the per-instance in-flight counters. Tested through `Router::handle` (like axum's
//! `oneshot`) against tiny loopback backends, and through a served router where client
//! connections matter.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Channel};
use hyper::body::Incoming;
use nimbus_router::{Body, COLD_START_HEADER, Router, RouterConfig, StatsSnapshot};
use nimbus_runtime::{EndpointRegistry, LoadProbe, Protocol, RevisionEndpoints, RevisionKey};
use support::*;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

const HOST: &str = "fn.default.localhost";
const REV: &str = "fn-00001";
/// The revision's `timeoutSeconds` in these tests (also its wait limit, being under 60 s).
const TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> SocketAddr {
    ([192, 0, 2, 10], 40000).into()
}

fn key() -> RevisionKey {
    RevisionKey::new(NS, REV)
}

/// The revisions the router asked to activate, in order.
#[derive(Clone, Default)]
struct Activations(Arc<Mutex<Vec<RevisionKey>>>);

impl Activations {
    fn all(&self) -> Vec<RevisionKey> {
        self.0.lock().unwrap().clone()
    }
}

/// A router serving `HOST` → `REV` with `timeout` and `cc` requests per instance, recording
/// the activations it asks for.
fn router_with(config: RouterConfig, timeout: Duration, cc: u32) -> (Router, Activations) {
    let router = Router::new(EndpointRegistry::new(), config);
    let ingress = ingress("fn", HOST, &[(REV, 100)], timeout);
    router.apply(with_concurrency(ingress, cc));
    let activations = Activations::default();
    let seen = activations.clone();
    router.set_activator(Arc::new(move |revision: &RevisionKey| {
        seen.0.lock().unwrap().push(revision.clone());
    }));
    (router, activations)
}

fn router(cc: u32) -> (Router, Activations) {
    router_with(test_config(), TIMEOUT, cc)
}

fn get() -> Request<Body> {
    Request::get("/")
        .header("host", HOST)
        .body(Body::empty())
        .unwrap()
}

fn stats(router: &Router) -> StatsSnapshot {
    router.stats(&key()).unwrap().snapshot()
}

type Answer = (StatusCode, HeaderMap, String);

/// Sends `req` in its own task, as a client connection would, and reads the whole answer.
fn spawn_call(router: &Router, req: Request<Body>) -> JoinHandle<Answer> {
    let router = router.clone();
    tokio::spawn(async move {
        let (head, body) = router.handle(req, client()).await.into_parts();
        (head.status, head.headers, body_text(body).await)
    })
}

fn spawn_get(router: &Router) -> JoinHandle<Answer> {
    spawn_call(router, get())
}

async fn answer(call: JoinHandle<Answer>) -> Answer {
    within(call).await.expect("the request task panicked")
}

async fn ok(_req: Request<Incoming>) -> Response<TestBody> {
    Response::new(text("ok"))
}

/// A backend that holds every request until the test adds a permit to the gate, and records
/// the most requests it ever held at once.
struct Gated {
    addr: SocketAddr,
    gate: Arc<Semaphore>,
    most_at_once: Arc<AtomicUsize>,
}

async fn gated_backend() -> Gated {
    let gate = Arc::new(Semaphore::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let active = Arc::new(AtomicUsize::new(0));
    let (g, m) = (Arc::clone(&gate), Arc::clone(&most_at_once));
    let addr = backend(Protocol::Http1, move |_req| {
        let (gate, most, active) = (Arc::clone(&g), Arc::clone(&m), Arc::clone(&active));
        async move {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            active.fetch_sub(1, Ordering::SeqCst);
            Response::new(text("ok"))
        }
    })
    .await;
    Gated {
        addr,
        gate,
        most_at_once,
    }
}

// === scale from zero ===

#[tokio::test]
async fn scale_from_zero_waits_for_the_first_instance_and_reports_the_cold_start() {
    let (router, activations) = router(0);
    let waiting = spawn_get(&router);
    eventually("the router asks for an instance", || {
        !activations.all().is_empty()
    })
    .await;
    assert_eq!(activations.all(), vec![key()]);
    assert_eq!(stats(&router).queued, 1);

    let addr = backend(Protocol::Http1, ok).await;
    publish(router.endpoints(), REV, addr, Protocol::Http1);
    let (status, headers, body) = answer(waiting).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let header = headers[COLD_START_HEADER].to_str().unwrap().to_owned();
    let (_, decimals) = header.split_once('.').expect("milliseconds with decimals");
    assert_eq!(decimals.len(), 3, "{header}");
    let millis: f64 = header.parse().unwrap();
    assert!(millis > 0.0, "{header}");

    let s = stats(&router);
    assert_eq!(
        (s.cold_starts, s.queued, s.in_flight, s.requests),
        (1, 0, 0, 1)
    );
    let recorded_millis = s.cold_start_wait_micros as f64 / 1000.0;
    assert!(
        (recorded_millis - millis).abs() < 0.002,
        "{s:?} vs {header}"
    );

    let (status, headers, _) = answer(spawn_get(&router)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key(COLD_START_HEADER), "a warm request");
    assert_eq!(stats(&router).cold_starts, 1);
    assert_eq!(
        activations.all().len(),
        1,
        "a warm request activates nothing"
    );
}

#[tokio::test]
async fn a_full_queue_is_503_at_once_with_retry_after() {
    let config = RouterConfig {
        max_queued_per_revision: 2,
        ..test_config()
    };
    let (router, _) = router_with(config, TIMEOUT, 0);
    let waiting = [spawn_get(&router), spawn_get(&router)];
    eventually("two requests queue", || stats(&router).queued == 2).await;

    let started = Instant::now();
    let (status, headers, body) = answer(spawn_get(&router)).await;
    assert!(started.elapsed() < TIMEOUT / 2, "refused without waiting");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains(r#"revision "default/fn-00001""#), "{body}");
    assert!(body.contains("2 requests waiting"), "{body}");

    for call in waiting {
        call.abort();
    }
    eventually("cancelled requests leave the queue", || {
        let s = stats(&router);
        (s.queued, s.in_flight) == (0, 0)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn waiting_ends_at_the_revision_timeout_with_503_naming_it() {
    let (router, _) = router(0);
    let started = tokio::time::Instant::now();
    let resp = router.handle(get(), client()).await;
    assert!(started.elapsed() >= TIMEOUT);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        body_text(resp.into_body()).await,
        format!(
            "revision \"default/fn-00001\" did not become ready within 10s (request id {id})\n"
        )
    );
    let s = stats(&router);
    assert_eq!((s.queued, s.in_flight, s.cold_starts), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn waiting_is_capped_by_max_activation_wait() {
    let config = RouterConfig {
        max_activation_wait: Duration::from_secs(3),
        ..test_config()
    };
    let (router, _) = router_with(config, Duration::from_secs(300), 0);
    let started = tokio::time::Instant::now();
    let resp = router.handle(get(), client()).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(4));
    let body = body_text(resp.into_body()).await;
    assert!(body.contains("did not become ready within 3s"), "{body}");
}

#[tokio::test]
async fn a_failed_start_fails_waiting_requests_at_once_without_its_message() {
    let (router, _) = router(0);
    let waiting: Vec<_> = (0..3).map(|_| spawn_get(&router)).collect();
    eventually("three requests queue", || stats(&router).queued == 3).await;

    let started = Instant::now();
    let failed = RevisionEndpoints {
        ready: vec![],
        failure: Some("exited with status 3: boom".into()),
    };
    router.endpoints().set(&key(), failed);
    for call in waiting.into_iter().chain([spawn_get(&router)]) {
        let (status, headers, body) = answer(call).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(headers.contains_key("retry-after"));
        assert!(body.contains(r#"revision "default/fn-00001""#), "{body}");
        assert!(body.contains("cannot start"), "{body}");
        // What the instance printed is for the revision's status and the log (issue #13).
        assert!(!body.contains("boom"), "{body}");
    }
    assert!(
        started.elapsed() < TIMEOUT / 2,
        "failed fast, not at the wait limit"
    );
    assert_eq!(stats(&router).in_flight, 0);
}

/// A request waiting for a revision whose route goes away (its service was deleted) fails at
/// once with a 503 to retry, instead of waiting for instances that will never start; a route
/// change that keeps the revision routed lets it wait on.
#[tokio::test]
async fn waiting_requests_fail_at_once_when_their_revision_is_no_longer_routed() {
    let (router, _) = router(0);
    let waiting: Vec<_> = (0..2).map(|_| spawn_get(&router)).collect();
    eventually("two requests queue", || stats(&router).queued == 2).await;
    router.apply(ingress("fn", HOST, &[(REV, 100)], TIMEOUT));
    tokio::task::yield_now().await;
    assert_eq!(stats(&router).queued, 2, "still routed: still waiting");

    router.remove(NS, "fn");
    for call in waiting {
        let (status, headers, body) = answer(call).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(headers.contains_key("retry-after"));
        assert!(body.contains("stopped receiving traffic"), "{body}");
    }
}

// === containerConcurrency ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn container_concurrency_1_never_lets_two_requests_into_one_instance() {
    let active = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicBool::new(false));
    let (a, o) = (Arc::clone(&active), Arc::clone(&overlapped));
    let addr = backend(Protocol::Http1, move |_req| {
        let (active, overlapped) = (Arc::clone(&a), Arc::clone(&o));
        async move {
            if active.fetch_add(1, Ordering::SeqCst) > 0 {
                overlapped.store(true, Ordering::SeqCst);
            }
            tokio::task::yield_now().await; // give an overlapping request a chance to arrive
            tokio::time::sleep(Duration::from_micros(200)).await;
            active.fetch_sub(1, Ordering::SeqCst);
            Response::new(text("ok"))
        }
    })
    .await;
    let (router, activations) = router(1);
    let t = start_router_with(router).await;
    publish(&t.endpoints, REV, addr, Protocol::Http1);

    let loops: Vec<_> = (0..5)
        .map(|_| tokio::spawn(client_loop(t.addr, 20)))
        .collect();
    for l in loops {
        within(l).await.unwrap();
    }
    assert!(
        !overlapped.load(Ordering::SeqCst),
        "two requests overlapped"
    );
    assert!(!activations.all().is_empty(), "queueing asks for instances");
    assert_eq!(t.router.in_flight(&endpoint(REV, 1, addr)), 0);
    assert_eq!(stats(&t.router).requests, 100);
    t.stop().await.unwrap();
}

/// One client connection sending `n` GETs one after the other; every one must be 200.
async fn client_loop(router: SocketAddr, n: usize) {
    let mut conn = h1_client(router).await;
    for _ in 0..n {
        within(conn.ready()).await.unwrap();
        let req = Request::get("/").header("host", HOST).body(text(""));
        let resp = within(conn.send_request(req.unwrap())).await.unwrap();
        let status = resp.status();
        let body = body_text(resp.into_body()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn queued_requests_are_all_served_as_the_instance_frees_up() {
    let backend = gated_backend().await;
    let (router, _) = router(1);
    publish(router.endpoints(), REV, backend.addr, Protocol::Http1);
    let calls: Vec<_> = (0..4).map(|_| spawn_get(&router)).collect();
    let instance = endpoint(REV, 1, backend.addr);
    eventually("one request at the instance, three queued", || {
        stats(&router).queued == 3 && router.in_flight(&instance) == 1
    })
    .await;

    backend.gate.add_permits(4);
    for call in calls {
        let (status, _, body) = answer(call).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }
    assert_eq!(backend.most_at_once.load(Ordering::SeqCst), 1);
    assert_eq!(router.in_flight(&instance), 0);
    assert_eq!(stats(&router).queued, 0);
}

#[tokio::test]
async fn a_burst_far_above_capacity_queues_only_up_to_the_bound() {
    let config = RouterConfig {
        max_queued_per_revision: 10,
        ..test_config()
    };
    let (router, _) = router_with(config, TIMEOUT, 1);
    let backend = gated_backend().await;
    publish(router.endpoints(), REV, backend.addr, Protocol::Http1);
    let calls: Vec<_> = (0..200).map(|_| spawn_get(&router)).collect();
    eventually("one at the instance, ten queued, the rest refused", || {
        let s = stats(&router);
        (s.queued, s.in_flight) == (10, 11)
    })
    .await;

    backend.gate.add_permits(200);
    let mut served = 0;
    for call in calls {
        let (status, headers, body) = answer(call).await;
        match status {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => assert_eq!(headers["retry-after"], "1", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(served, 11, "every admitted request is served");
    assert_eq!(backend.most_at_once.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_busy_instance_past_the_wait_limit_is_503_naming_the_revision() {
    let config = RouterConfig {
        max_activation_wait: Duration::from_millis(200),
        ..test_config()
    };
    let (router, _) = router_with(config, TIMEOUT, 1);
    let backend = gated_backend().await;
    publish(router.endpoints(), REV, backend.addr, Protocol::Http1);
    let holding = spawn_get(&router);
    let instance = endpoint(REV, 1, backend.addr);
    eventually("the first request holds the instance", || {
        router.in_flight(&instance) == 1
    })
    .await;

    let (status, headers, body) = answer(spawn_get(&router)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(
        body.contains(
            r#"revision "default/fn-00001" had no instance with free capacity within 200ms"#
        ),
        "{body}"
    );
    backend.gate.add_permits(1);
    assert_eq!(answer(holding).await.0, StatusCode::OK);
}

// === retries on dead instances ===

#[tokio::test]
async fn a_get_to_a_dead_instance_is_retried_on_a_live_one() {
    let live = backend(Protocol::Http1, ok).await;
    let dead = dead_addr();
    let (router, _) = router(0);
    publish_all(router.endpoints(), REV, &[dead, live]);
    for _ in 0..6 {
        let (status, _, body) = answer(spawn_get(&router)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }
    assert_eq!(router.in_flight(&endpoint(REV, 1, dead)), 0);
    assert_eq!(router.in_flight(&endpoint(REV, 2, live)), 0);
}

#[tokio::test]
async fn a_get_whose_only_instance_is_dead_waits_for_another() {
    let (router, _) = router(0);
    publish_all(router.endpoints(), REV, &[dead_addr()]);
    let waiting = spawn_get(&router);
    eventually("the retry waits for another instance", || {
        stats(&router).queued == 1
    })
    .await;
    let live = backend(Protocol::Http1, ok).await;
    publish_all(router.endpoints(), REV, &[live]);
    let (status, headers, body) = answer(waiting).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    assert!(
        !headers.contains_key(COLD_START_HEADER),
        "it was never at zero"
    );
}

#[tokio::test]
async fn a_post_with_a_body_to_a_dead_instance_is_not_retried() {
    let live = backend(Protocol::Http1, ok).await;
    let dead = dead_addr();
    let (router, _) = router(0);
    publish_all(router.endpoints(), REV, &[dead, live]);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let post = Request::post("/")
            .header("host", HOST)
            .header("content-length", "5")
            .body(Body::from("hello"))
            .unwrap();
        statuses.push(answer(spawn_call(&router, post)).await.0);
    }
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::OK, StatusCode::BAD_GATEWAY]);
}

// === in-flight counters ===

#[tokio::test]
async fn instance_in_flight_lasts_until_the_response_body_ends_or_is_dropped() {
    let (senders_tx, mut senders) = mpsc::unbounded_channel();
    let addr = backend(Protocol::Http1, move |_req| {
        let senders_tx = senders_tx.clone();
        async move {
            let (tx, body) = Channel::<Bytes, BoxError>::new(1);
            senders_tx.send(tx).unwrap();
            Response::new(body.boxed_unsync())
        }
    })
    .await;
    let (router, _) = router(1);
    publish(router.endpoints(), REV, addr, Protocol::Http1);
    let instance = endpoint(REV, 1, addr);

    let resp = within(router.handle(get(), client())).await;
    let mut chunks = within(senders.recv()).await.unwrap();
    assert_eq!(router.in_flight(&instance), 1, "streaming");
    chunks.send_data(Bytes::from_static(b"all")).await.unwrap();
    drop(chunks);
    assert_eq!(body_text(resp.into_body()).await, "all");
    assert_eq!(router.in_flight(&instance), 0, "after the body ended");

    let resp = within(router.handle(get(), client())).await;
    let _chunks = within(senders.recv()).await.unwrap();
    assert_eq!(router.in_flight(&instance), 1);
    drop(resp);
    assert_eq!(router.in_flight(&instance), 0, "after the client went away");
    assert_eq!(stats(&router).in_flight, 0);
}

#[tokio::test]
async fn instance_in_flight_is_released_on_errors() {
    let never = backend(Protocol::Http1, |_req| std::future::pending()).await;
    let (router, _) = router_with(test_config(), Duration::from_millis(200), 1);
    publish(router.endpoints(), REV, never, Protocol::Http1);
    let (status, _, _) = answer(spawn_get(&router)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(router.in_flight(&endpoint(REV, 1, never)), 0, "after a 504");

    let dead = dead_addr();
    publish_all(router.endpoints(), REV, &[dead]);
    let post = Request::post("/")
        .header("host", HOST)
        .header("content-length", "1")
        .body(Body::from("x"))
        .unwrap();
    let (status, _, _) = answer(spawn_call(&router, post)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(router.in_flight(&endpoint(REV, 1, dead)), 0, "after a 502");
    assert_eq!(stats(&router).in_flight, 0);
}
