//! `GET /metrics`: the whole platform in the Prometheus text format, read at scrape time from
//! what each part already records (nothing is recorded twice, nothing here runs per request):
//! the router's per-revision counters and histograms, the scaler's decisions, the runtimes'
//! instance figures and cgroups, the controller's reconciles, the API's requests and the store.
//!
//! Every per-revision series carries `namespace`, `service`, `configuration` and `revision`
//! (the Revision's `serving.knative.dev/*` labels; empty for a revision created by hand).
//!
//! | metric | type | labels beyond the revision's | meaning |
//! |---|---|---|---|
//! | `nimbus_revision_requests_total` | counter | `code` (`1xx`…`5xx`) | requests answered, the router's own errors (503, 504, …) included |
//! | `nimbus_revision_request_duration_seconds` | histogram | | arrival at the router to the response head, queue wait and cold start included |
//! | `nimbus_revision_in_flight` | gauge | | requests in flight (including queued) |
//! | `nimbus_revision_queued` | gauge | | activator queue depth: requests waiting for an instance with room |
//! | `nimbus_revision_queue_wait_seconds` | histogram | | each wait in that queue |
//! | `nimbus_revision_cold_starts_total` | counter | | requests that waited for a first ready instance |
//! | `nimbus_revision_cold_start_seconds` | histogram | | those requests' whole wait |
//! | `nimbus_revision_cold_start_phase_seconds` | histogram | `phase` | `decide`: a request waiting at zero → the runtime told to scale up; `start`: the runtime starting the instance → its process running (image, cgroup); `ready`: process running → readiness passed |
//! | `nimbus_revision_desired_instances` | gauge | | the autoscaler's decision (event floors included) |
//! | `nimbus_revision_actual_instances` | gauge | | instances that exist (starting or ready) |
//! | `nimbus_revision_ready_instances` | gauge | | instances ready for traffic |
//! | `nimbus_revision_autoscaler_stable_value` | gauge | | the metric (concurrency or rps) averaged over the stable window |
//! | `nimbus_revision_autoscaler_panic_value` | gauge | | the same over the panic window |
//! | `nimbus_revision_autoscaler_panic_mode` | gauge | | 1 while the autoscaler panics |
//! | `nimbus_revision_instance_restarts_total` | counter | `reason` | instance failures followed by a restart (`OOMKilled`, `ExitCode1`, `StartupTimeout`, …) |
//! | `nimbus_revision_oom_kills_total` | counter | | instances killed for exceeding their memory limit |
//! | `nimbus_instance_cpu_seconds_total` | counter | `instance` | CPU time from the instance's cgroup (process and container runtimes; none without cgroups) |
//! | `nimbus_instance_memory_bytes` | gauge | `instance` | memory charged to the instance's cgroup |
//! | `nimbus_controller_reconcile_duration_seconds` | histogram | `kind` only | one reconcile, successful or not |
//! | `nimbus_controller_queue_depth` | gauge | none | objects waiting in the work queue |
//! | `nimbus_apiserver_requests_total` | counter | `verb`, `code` only | API requests by Kubernetes verb and HTTP status |
//! | `nimbus_store_size_bytes` | gauge | none | the SQLite database's size |
//! | `nimbus_store_write_duration_seconds` | histogram | none | one write transaction (create, update, delete) |

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router as Api;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use nimbus_api::{Kind, Object};
use nimbus_apiserver::ApiMetrics;
use nimbus_controller::{Controller, ScaleView, Scaler};
use nimbus_metrics::{CodeCounters, HistogramSnapshot, Rows};
use nimbus_router::{DataPathSnapshot, Router, StatsSnapshot};
use nimbus_runtime::{RevisionKey, RevisionMetrics, RevisionRuntimeStatus};
use nimbus_store::Store;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// A series' labels, in order.
type Labels = Vec<(&'static str, String)>;

/// Everything `/metrics` reads from.
#[derive(Clone)]
pub struct Sources {
    pub router: Router,
    pub scaler: Arc<Scaler>,
    pub controller: Controller,
    pub api: Arc<ApiMetrics>,
    pub store: Arc<Store>,
}

/// The `/metrics` route.
pub fn routes(sources: Sources) -> Api {
    Api::new().route(
        "/metrics",
        get(move || {
            let sources = sources.clone();
            async move {
                let body = tokio::task::spawn_blocking(move || render(&sources)).await;
                let Ok(body) = body else {
                    let msg = "the metrics could not be gathered; see the server log";
                    return (StatusCode::INTERNAL_SERVER_ERROR, msg).into_response();
                };
                let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                ([(CONTENT_TYPE, kind)], body).into_response()
            }
        }),
    )
}

/// One revision's figures from every source.
#[derive(Default)]
struct Revision {
    data: Option<(StatsSnapshot, DataPathSnapshot)>,
    scale: Option<ScaleView>,
    status: Option<RevisionRuntimeStatus>,
    instances: Option<RevisionMetrics>,
}

fn render(sources: &Sources) -> String {
    let mut registry = Registry::with_prefix("nimbus");
    revisions(sources).register(&mut registry);
    platform(sources, &mut registry);
    let mut out = String::new();
    if encode(&mut out, &registry).is_err() {
        out = "# metrics could not be encoded\n".into();
    }
    out
}

/// Every revision the router routes or the scaler scales, with its figures.
fn revisions(sources: &Sources) -> RevisionFamilies {
    let mut all: BTreeMap<RevisionKey, Revision> = BTreeMap::new();
    for (key, stats, data) in sources.router.data_paths() {
        all.entry(key).or_default().data = Some((stats, data));
    }
    for (key, view) in sources.scaler.views() {
        let entry = all.entry(key.clone()).or_default();
        entry.status = view.runtime.status(&key);
        entry.instances = view.runtime.metrics(&key);
        entry.scale = Some(view);
    }
    let owners = owners(&sources.store);
    let mut families = RevisionFamilies::default();
    for (key, revision) in &all {
        let labels = revision_labels(key, owners.get(key));
        families.add(&labels, revision);
    }
    families
}

/// Each Revision's Service and Configuration, from its labels.
fn owners(store: &Store) -> HashMap<RevisionKey, (String, String)> {
    let Ok(list) = store.list(Kind::Revision, None) else {
        return HashMap::new();
    };
    let owner = |obj: &Object| {
        let meta = obj.metadata();
        let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
        let key = RevisionKey::new(obj.namespace(), obj.name());
        let service = label(nimbus_api::constants::LABEL_SERVICE).unwrap_or_default();
        let config = label(nimbus_api::constants::LABEL_CONFIGURATION).unwrap_or_default();
        (key, (service, config))
    };
    list.items.iter().map(owner).collect()
}

fn revision_labels(key: &RevisionKey, owner: Option<&(String, String)>) -> Labels {
    let (service, configuration) = owner.cloned().unwrap_or_default();
    vec![
        ("namespace", key.namespace.clone()),
        ("service", service),
        ("configuration", configuration),
        ("revision", key.name.clone()),
    ]
}

fn with(labels: &Labels, key: &'static str, value: impl Into<String>) -> Labels {
    let mut labels = labels.clone();
    labels.push((key, value.into()));
    labels
}

type Counters = Rows<Labels, ConstCounter<u64>>;
type FloatCounters = Rows<Labels, ConstCounter<f64>>;
type Gauges = Rows<Labels, ConstGauge<f64>>;
type Histograms = Rows<Labels, HistogramSnapshot>;

/// The per-revision and per-instance families, filled revision by revision.
#[derive(Default)]
struct RevisionFamilies {
    requests: Counters,
    duration: Histograms,
    in_flight: Gauges,
    queued: Gauges,
    queue_wait: Histograms,
    cold_starts: Counters,
    cold_start: Histograms,
    phases: Histograms,
    desired: Gauges,
    actual: Gauges,
    ready: Gauges,
    stable: Gauges,
    panic: Gauges,
    panic_mode: Gauges,
    restarts: Counters,
    oom_kills: Counters,
    cpu: FloatCounters,
    memory: Gauges,
}

// === impl RevisionFamilies ===

impl RevisionFamilies {
    fn add(&mut self, labels: &Labels, revision: &Revision) {
        if let Some((stats, data)) = &revision.data {
            self.add_data_path(labels, stats, data);
        }
        if let Some(scale) = &revision.scale {
            self.add_scale(labels, scale);
        }
        if let Some(status) = &revision.status {
            self.actual.push(labels.clone(), gauge(status.actual));
            self.ready.push(labels.clone(), gauge(status.ready));
        }
        if let Some(instances) = &revision.instances {
            self.add_instances(labels, instances);
        }
    }

    fn add_data_path(&mut self, labels: &Labels, stats: &StatsSnapshot, data: &DataPathSnapshot) {
        for (class, n) in CodeCounters::CLASSES.iter().zip(data.codes) {
            let counter = ConstCounter::new(n);
            self.requests.push(with(labels, "code", *class), counter);
        }
        self.duration.push(labels.clone(), data.latency.clone());
        self.in_flight
            .push(labels.clone(), gauge(stats.in_flight as f64));
        self.queued.push(labels.clone(), gauge(stats.queued as f64));
        self.queue_wait
            .push(labels.clone(), data.queue_wait.clone());
        let cold_starts = ConstCounter::new(stats.cold_starts);
        self.cold_starts.push(labels.clone(), cold_starts);
        self.cold_start
            .push(labels.clone(), data.cold_start.clone());
    }

    fn add_scale(&mut self, labels: &Labels, scale: &ScaleView) {
        let decide = scale.decide.clone();
        self.phases.push(with(labels, "phase", "decide"), decide);
        if let Some(desired) = scale.desired {
            self.desired.push(labels.clone(), gauge(desired));
        }
        if let Some(d) = &scale.decision {
            self.stable.push(labels.clone(), gauge(d.stable_value));
            self.panic.push(labels.clone(), gauge(d.panic_value));
            self.panic_mode
                .push(labels.clone(), gauge(u8::from(d.panicking)));
        }
    }

    fn add_instances(&mut self, labels: &Labels, m: &RevisionMetrics) {
        self.phases
            .push(with(labels, "phase", "start"), m.start.clone());
        self.phases
            .push(with(labels, "phase", "ready"), m.ready.clone());
        for (reason, n) in &m.restarts {
            let counter = ConstCounter::new(*n);
            self.restarts.push(with(labels, "reason", reason), counter);
        }
        self.oom_kills
            .push(labels.clone(), ConstCounter::new(m.oom_kills));
        for usage in &m.instances {
            let labels = with(labels, "instance", &usage.instance);
            if let Some(cpu) = usage.cpu_seconds {
                self.cpu.push(labels.clone(), ConstCounter::new(cpu));
            }
            if let Some(bytes) = usage.memory_bytes {
                self.memory.push(labels, gauge(bytes as f64));
            }
        }
    }

    fn register(self, r: &mut Registry) {
        let s = Unit::Seconds;
        let rev = r.sub_registry_with_prefix("revision");
        rev.register(
            "requests",
            "Requests answered, by status class",
            self.requests,
        );
        let duration = self.duration;
        let help = "Arrival at the router to the response head, queue wait included";
        rev.register_with_unit("request_duration", help, s.clone(), duration);
        rev.register(
            "in_flight",
            "Requests in flight, including queued ones",
            self.in_flight,
        );
        rev.register(
            "queued",
            "Requests waiting for an instance with room",
            self.queued,
        );
        let help = "Each wait in the revision's queue";
        rev.register_with_unit("queue_wait", help, s.clone(), self.queue_wait);
        let help = "Requests that waited for a first ready instance";
        rev.register("cold_starts", help, self.cold_starts);
        let help = "Whole wait of requests that came while no instance was ready";
        rev.register_with_unit("cold_start", help, s.clone(), self.cold_start);
        let help = "Cold-start phases: decide, start, ready";
        rev.register_with_unit("cold_start_phase", help, s.clone(), self.phases);
        rev.register(
            "desired_instances",
            "Instances the autoscaler wants",
            self.desired,
        );
        rev.register("actual_instances", "Instances that exist", self.actual);
        rev.register("ready_instances", "Instances ready for traffic", self.ready);
        let help = "The scaling metric over the stable window";
        rev.register("autoscaler_stable_value", help, self.stable);
        let help = "The scaling metric over the panic window";
        rev.register("autoscaler_panic_value", help, self.panic);
        let help = "1 while the autoscaler is in panic mode";
        rev.register("autoscaler_panic_mode", help, self.panic_mode);
        let help = "Instance failures followed by a restart, by reason";
        rev.register("instance_restarts", help, self.restarts);
        let help = "Instances killed for exceeding their memory limit";
        rev.register("oom_kills", help, self.oom_kills);
        let inst = r.sub_registry_with_prefix("instance");
        let help = "CPU time used by the instance (cgroup accounting)";
        inst.register_with_unit("cpu", help, s, self.cpu);
        let help = "Memory charged to the instance's cgroup";
        inst.register_with_unit("memory", help, Unit::Bytes, self.memory);
    }
}

fn gauge(value: impl Into<f64>) -> ConstGauge<f64> {
    ConstGauge::new(value.into())
}

/// The controller's, the API server's and the store's own figures.
fn platform(sources: &Sources, r: &mut Registry) {
    let controller = sources.controller.metrics();
    let mut reconcile: Histograms = Rows::default();
    for (kind, times) in controller.reconcile {
        reconcile.push(vec![("kind", kind.as_str().to_owned())], times);
    }
    let c = r.sub_registry_with_prefix("controller");
    let help = "One reconcile, successful or not";
    c.register_with_unit("reconcile_duration", help, Unit::Seconds, reconcile);
    let depth = ConstGauge::new(controller.queue_depth as f64);
    c.register("queue_depth", "Objects waiting in the work queue", depth);

    let mut api: Counters = Rows::default();
    for ((verb, code), n) in sources.api.snapshot() {
        let labels = vec![("verb", verb.to_owned()), ("code", code.to_string())];
        api.push(labels, ConstCounter::new(n));
    }
    let a = r.sub_registry_with_prefix("apiserver");
    a.register("requests", "API requests by verb and status code", api);

    let store = r.sub_registry_with_prefix("store");
    if let Ok(size) = sources.store.size_bytes() {
        let size = ConstGauge::new(size as f64);
        store.register_with_unit("size", "The database's size", Unit::Bytes, size);
    }
    let writes = sources.store.write_latency();
    let help = "One write transaction";
    store.register_with_unit("write_duration", help, Unit::Seconds, writes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_labels_come_in_order_and_default_to_empty() {
        let key = RevisionKey::new("default", "hello-00001");
        let owner = ("hello".to_owned(), "hello".to_owned());
        let labels = revision_labels(&key, Some(&owner));
        let names: Vec<_> = labels.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["namespace", "service", "configuration", "revision"]);
        assert_eq!(revision_labels(&key, None)[1].1, "");
    }

    #[test]
    fn families_render_with_conventional_names() {
        let key = RevisionKey::new("default", "hello-00001");
        let labels = revision_labels(&key, None);
        let mut families = RevisionFamilies::default();
        let data = DataPathSnapshot {
            codes: [0, 3, 0, 1, 0],
            ..DataPathSnapshot::default()
        };
        let revision = Revision {
            data: Some((StatsSnapshot::default(), data)),
            ..Revision::default()
        };
        families.add(&labels, &revision);
        let mut registry = Registry::with_prefix("nimbus");
        families.register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        let want = "nimbus_revision_requests_total{namespace=\"default\",service=\"\",configuration=\"\",revision=\"hello-00001\",code=\"2xx\"} 3";
        assert!(out.contains(want), "{out}");
        assert!(out.contains("# TYPE nimbus_revision_request_duration_seconds histogram"));
        assert!(
            out.contains("# TYPE nimbus_instance_cpu_seconds counter"),
            "{out}"
        );
    }
}
