//! A bounded in-memory history per revision, for the console's charts over the last hour: every
//! few seconds the sampler reads each revision's figures from a [`Source`] (the binary feeds it
//! the router's counters, the scaler's decision and the ready endpoints) and appends them to the
//! revision's ring; the oldest fall off, and revisions the source no longer reports are dropped.
//!
//! Nothing here survives a restart: it is a view for people, not state the platform needs. The
//! metrics work may later feed the same [`Source`] (latency percentiles are in [`Reading`]
//! already, `None` until something measures them).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};

/// How often the sampler reads the source by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// How far back the history reaches by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// One revision's figures at one moment, as a [`Source`] reports them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    pub namespace: String,
    pub revision: String,
    /// Instances ready to serve.
    pub ready: u32,
    /// Instances the autoscaler wants (`None`: not registered with it).
    pub desired: Option<u32>,
    /// Requests routed to the revision since the server started.
    pub requests: u64,
    /// Requests in flight, queued ones included.
    pub in_flight: u64,
    /// Requests that waited for a first ready instance since the server started.
    pub cold_starts: u64,
    /// Request latency percentiles, when something measures them.
    pub latency: Option<Latency>,
}

/// Latency percentiles in milliseconds over the last sampling interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Where the sampler reads the revisions' figures.
pub trait Source: Send + Sync {
    /// Every revision's figures now.
    fn read(&self) -> Vec<Reading>;
}

/// One point of a revision's history, as served to the console.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub time: u64,
    pub ready: u32,
    pub desired: Option<u32>,
    pub requests: u64,
    pub in_flight: u64,
    pub cold_starts: u64,
    pub latency: Option<Latency>,
}

type Key = (String, String);

/// The rings of every revision the source reports.
#[derive(Debug)]
pub struct History {
    interval: Duration,
    capacity: usize,
    rings: Mutex<HashMap<Key, VecDeque<Sample>>>,
}

// === impl History ===

impl History {
    /// A history sampled every `interval`, keeping `window` of it.
    pub fn new(interval: Duration, window: Duration) -> Arc<Self> {
        let per = interval.as_millis().max(1);
        let capacity = usize::try_from(window.as_millis() / per).unwrap_or(usize::MAX);
        Arc::new(Self {
            interval,
            capacity: capacity.max(1),
            rings: Mutex::new(HashMap::new()),
        })
    }

    /// How often the sampler reads its source.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Append `readings` taken at `time` (ms since the epoch); forget revisions not among them.
    pub fn record(&self, time: u64, readings: Vec<Reading>) {
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = HashMap::with_capacity(readings.len());
        for r in readings {
            let key = (r.namespace.clone(), r.revision.clone());
            let mut ring = rings.remove(&key).unwrap_or_default();
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(Sample::at(time, r));
            next.insert(key, ring);
        }
        *rings = next;
    }

    /// A revision's samples, oldest first (empty when it has none).
    pub fn series(&self, namespace: &str, revision: &str) -> Vec<Sample> {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (namespace.to_string(), revision.to_string());
        rings
            .get(&key)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Sample `source` every interval until `stop` completes.
    pub async fn run(self: Arc<Self>, source: Arc<dyn Source>, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => self.record(now_millis(), source.read()),
            }
        }
    }
}

// === impl Sample ===

impl Sample {
    fn at(time: u64, r: Reading) -> Self {
        Self {
            time,
            ready: r.ready,
            desired: r.desired,
            requests: r.requests,
            in_flight: r.in_flight,
            cold_starts: r.cold_starts,
            latency: r.latency,
        }
    }
}

fn now_millis() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// `GET /apis/nimbus.dev/v1/namespaces/{ns}/revisions/{name}/history`, to be put behind the
/// API's authentication. A revision without samples answers an empty list, not a 404: one that
/// is not routed yet simply has no history.
pub fn routes(history: Arc<History>) -> Router {
    Router::new()
        .route(
            "/apis/nimbus.dev/v1/namespaces/{ns}/revisions/{name}/history",
            get(serve_series),
        )
        .with_state(history)
}

async fn serve_series(
    State(history): State<Arc<History>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Json<Value> {
    let samples = history.series(&namespace, &name);
    Json(json!({
        "apiVersion": "nimbus.dev/v1",
        "kind": "RevisionHistory",
        "metadata": {"namespace": namespace, "name": name},
        "intervalSeconds": history.interval.as_secs_f64(),
        "samples": samples,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tower::ServiceExt as _;

    fn reading(revision: &str, requests: u64) -> Reading {
        Reading {
            namespace: "default".into(),
            revision: revision.into(),
            ready: 1,
            desired: Some(1),
            requests,
            ..Reading::default()
        }
    }

    #[test]
    fn a_ring_keeps_the_window_and_drops_the_oldest() {
        let h = History::new(Duration::from_secs(5), Duration::from_secs(15));
        for i in 0..5 {
            h.record(i * 5000, vec![reading("a", i)]);
        }
        let s = h.series("default", "a");
        assert_eq!(s.iter().map(|s| s.requests).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(s[0].time, 10_000);
    }

    #[test]
    fn revisions_the_source_no_longer_reports_are_forgotten() {
        let h = History::new(DEFAULT_INTERVAL, DEFAULT_WINDOW);
        h.record(1, vec![reading("a", 1), reading("b", 1)]);
        h.record(2, vec![reading("b", 2)]);
        assert!(h.series("default", "a").is_empty());
        assert_eq!(h.series("default", "b").len(), 2);
        assert!(h.series("other", "b").is_empty());
    }

    struct Counting(AtomicU64);

    impl Source for Counting {
        fn read(&self) -> Vec<Reading> {
            vec![reading("a", self.0.fetch_add(1, Ordering::Relaxed))]
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_sampler_reads_once_per_interval_until_stopped() {
        let h = History::new(Duration::from_secs(5), DEFAULT_WINDOW);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(h.clone().run(Arc::new(Counting(AtomicU64::new(0))), async {
            let _ = stop_rx.await;
        }));
        // The first tick is at once, then one every 5 s: t = 0, 5, 10, 15, 20.
        tokio::time::sleep(Duration::from_millis(20_500)).await;
        assert_eq!(h.series("default", "a").len(), 5);
        stop_tx.send(()).unwrap();
        task.await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(h.series("default", "a").len(), 5);
    }

    #[tokio::test]
    async fn the_route_serves_a_revisions_samples_as_json() {
        let h = History::new(DEFAULT_INTERVAL, DEFAULT_WINDOW);
        h.record(42, vec![reading("hello-00001", 7)]);
        let uri = "/apis/nimbus.dev/v1/namespaces/default/revisions/hello-00001/history";
        let res = routes(h)
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kind"], "RevisionHistory");
        assert_eq!(v["intervalSeconds"], 5.0);
        assert_eq!(v["samples"][0]["requests"], 7);
        assert_eq!(v["samples"][0]["coldStarts"], 0);
        assert_eq!(v["samples"][0]["time"], 42);
        assert_eq!(v["samples"][0]["latency"], Value::Null);
    }
}
