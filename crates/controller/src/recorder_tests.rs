//! The recorder over an in-memory store, with paused tokio time driving the wall clock.

use std::sync::Arc;
use std::time::Duration;

use nimbus_api::k8s_openapi::jiff::Timestamp;
use nimbus_api::{Kind, Object};
use nimbus_store::Store;

use super::*;
use crate::StoreResources;

/// Wall time that moves with tokio's (paused) clock.
struct TokioClock {
    start: tokio::time::Instant,
    base: Timestamp,
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.start.elapsed();
        let nanos = self.base.as_nanosecond() + elapsed.as_nanos() as i128;
        Timestamp::from_nanosecond(nanos).unwrap_or(self.base)
    }
}

fn service() -> Object {
    let value = serde_json::json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "hello", "namespace": "default", "uid": "u-1"},
        "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}
    });
    Object::from_json(Kind::Service, value).unwrap()
}

fn start(config: EventConfig) -> (Recorder, Arc<Store>) {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let clock = Arc::new(TokioClock {
        start: tokio::time::Instant::now(),
        base: Timestamp::from_second(1_800_000_000).unwrap(),
    });
    let resources = Arc::new(StoreResources(store.clone()));
    let (recorder, _task) = Recorder::start(resources, clock, config);
    (recorder, store)
}

fn events(store: &Store) -> Vec<Event> {
    let listed = store.list(Kind::Event, None).unwrap().items;
    let events = listed.into_iter().filter_map(|o| match o {
        Object::Event(e) => Some(e),
        _ => None,
    });
    let mut events: Vec<Event> = events.collect();
    events.sort_by_key(|e| e.metadata.name.clone());
    events
}

/// Let the writer drain its queue.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(start_paused = true)]
async fn repeats_within_the_window_bump_count_and_series() {
    let (recorder, store) = start(EventConfig::default());
    let svc = service();
    recorder.normal(&svc, "ScaledUp", "Scale", "from 1 to 2".into());
    settle().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    recorder.normal(&svc, "ScaledUp", "Scale", "from 1 to 2".into());
    recorder.normal(&svc, "ScaledUp", "Scale", "from 1 to 2".into());
    settle().await;
    let all = events(&store);
    assert_eq!(all.len(), 1, "{all:?}");
    let e = &all[0];
    assert_eq!(e.count, Some(3));
    let series = e.series.as_ref().unwrap();
    assert_eq!(series.count, Some(3));
    let first = e.first_timestamp.as_ref().unwrap().0;
    let last = e.last_timestamp.as_ref().unwrap().0;
    assert_eq!(last.as_second() - first.as_second(), 30);
    assert_eq!(e.involved_object.uid.as_deref(), Some("u-1"));
    assert_eq!(e.reporting_component.as_deref(), Some("nimbus"));

    // Another message is another event; the same one after the window is a new event too.
    recorder.warning(&svc, "RevisionFailed", "Reconcile", "image missing".into());
    tokio::time::sleep(Duration::from_secs(601)).await;
    recorder.normal(&svc, "ScaledUp", "Scale", "from 1 to 2".into());
    settle().await;
    let all = events(&store);
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all.iter().filter(|e| e.count == Some(1)).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn events_age_out_after_the_ttl() {
    let config = EventConfig {
        ttl: Duration::from_secs(3600),
        sweep_every: Some(Duration::from_secs(60)),
        ..EventConfig::default()
    };
    let (recorder, store) = start(config);
    let svc = service();
    recorder.normal(&svc, "ScaledUp", "Scale", "old".into());
    settle().await;
    tokio::time::sleep(Duration::from_secs(1800)).await;
    recorder.normal(&svc, "ScaledDown", "Scale", "newer".into());
    settle().await;
    assert_eq!(events(&store).len(), 2);
    tokio::time::sleep(Duration::from_secs(1800 + 61)).await;
    let left = events(&store);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].message.as_deref(), Some("newer"));
    tokio::time::sleep(Duration::from_secs(1800)).await;
    assert!(events(&store).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_burst_is_rate_limited_per_object() {
    let (recorder, store) = start(EventConfig::default());
    let svc = service();
    for i in 0..40 {
        recorder.normal(&svc, "ScaledUp", "Scale", format!("to {i}"));
    }
    settle().await;
    assert_eq!(events(&store).len(), 25);
    assert_eq!(recorder.counts().rate_limited.load(Ordering::Relaxed), 15);
    // One token back every 5 minutes.
    tokio::time::sleep(Duration::from_secs(301)).await;
    recorder.normal(&svc, "ScaledUp", "Scale", "to 41".into());
    recorder.normal(&svc, "ScaledUp", "Scale", "to 42".into());
    settle().await;
    assert_eq!(events(&store).len(), 26);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let config = EventConfig {
        queue: 2,
        ..EventConfig::default()
    };
    let (recorder, _store) = start(config);
    let svc = service();
    // The writer has not run yet (nothing awaited): the third note finds the queue full.
    for _ in 0..3 {
        recorder.normal(&svc, "ScaledUp", "Scale", "x".into());
    }
    assert_eq!(recorder.counts().dropped.load(Ordering::Relaxed), 1);
    Recorder::disabled().normal(&svc, "ScaledUp", "Scale", "nowhere".into());
}

#[tokio::test(start_paused = true)]
async fn a_revisions_event_is_also_on_its_service_with_uids() {
    let (recorder, store) = start(EventConfig::default());
    let svc = store.create(service()).unwrap();
    let rev = serde_json::json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
        "metadata": {"name": "hello-00001", "namespace": "default",
                     "labels": {"serving.knative.dev/service": "hello"}},
        "spec": {"containers": [{"image": "x"}]}
    });
    let rev = store
        .create(Object::from_json(Kind::Revision, rev).unwrap())
        .unwrap();
    let note = Note::named(
        Kind::Revision,
        "default",
        "hello-00001",
        TYPE_NORMAL,
        "ColdStart",
        "cold start took 5 ms".into(),
    );
    recorder.record(note);
    settle().await;
    let all = events(&store);
    assert_eq!(all.len(), 2, "{all:?}");
    let on = |kind: &str| {
        all.iter()
            .find(|e| e.involved_object.kind.as_deref() == Some(kind))
            .unwrap()
    };
    assert_eq!(on("Revision").involved_object.uid, rev.metadata().uid);
    assert_eq!(on("Service").involved_object.uid, svc.metadata().uid);
    assert_eq!(
        on("Service").message.as_deref(),
        Some("revision hello-00001: cold start took 5 ms")
    );
    assert_eq!(on("Service").action.as_deref(), Some("ColdStart"));
}
