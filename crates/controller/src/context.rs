//! What every reconciler gets: access to resources, runtimes, the ingress, config and the clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nimbus_api::Kind;
use nimbus_api::k8s_openapi::jiff::Timestamp;
use nimbus_api::runtime::Backend;
use nimbus_runtime::Runtime;

use crate::gc::{GcSchedule, RevisionGcConfig};
use crate::ingress::IngressSink;
use crate::removals::Removals;
use crate::resources::Resources;
use crate::scaler::Scaler;
use crate::tracker::Tracker;

/// Settings that shape what the controller produces.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Route hosts are `<name>.<namespace>.<domain>`.
    pub domain: String,
    /// Port appended to URLs in status (the router's HTTP port), if not 80.
    pub url_port: Option<u16>,
    /// Reconciles that may run at once (one object's reconciles never overlap).
    pub workers: usize,
    /// Knative's revision garbage collection (`config-gc`).
    pub revision_gc: RevisionGcConfig,
    /// Delete objects whose owner is gone (what kube-controller-manager's garbage collector
    /// does on a cluster; embedded mode needs its own).
    pub garbage_collector: bool,
    /// How often everything is listed and reconciled again even without changes.
    pub resync: Duration,
    /// The kinds this controller reconciles (all of them in embedded mode; on a cluster the
    /// router process reconciles only Ingresses and the operator everything else).
    pub kinds: Vec<Kind>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            domain: nimbus_api::constants::DEFAULT_DOMAIN.to_string(),
            url_port: None,
            workers: 4,
            revision_gc: RevisionGcConfig::default(),
            garbage_collector: true,
            resync: Duration::from_secs(300),
            // Not Secrets and ConfigMaps: instances read them when they start.
            kinds: Kind::knative().collect(),
        }
    }
}

/// Wall-clock time, replaceable in tests (conditions' transition times, revision GC ages).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // jiff's `std` clock is not enabled in this build; the system time is the same thing.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::new(since.as_secs() as i64, since.subsec_nanos() as i32).unwrap_or_default()
    }
}

/// `clock`'s time as RFC 3339, to the second (what conditions and status times carry).
pub(crate) fn rfc3339(clock: &dyn Clock) -> String {
    let secs = clock.now().as_second();
    Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Shared by all reconcilers.
pub struct Context {
    pub resources: Arc<dyn Resources>,
    /// Runtimes by backend.
    pub runtimes: HashMap<Backend, Arc<dyn Runtime>>,
    /// Where Ingresses are programmed (the router). `None`: this controller does not reconcile
    /// Ingresses (on a cluster the router process does).
    pub ingress: Option<Arc<dyn IngressSink>>,
    pub config: ControllerConfig,
    /// Decides and applies instance counts.
    pub scaler: Arc<Scaler>,
    /// Which objects each Route read.
    pub tracker: Tracker,
    pub clock: Arc<dyn Clock>,
    /// Revisions whose instances are being stopped in the background.
    pub(crate) removals: Removals,
    /// When each Configuration's revision GC runs next.
    pub(crate) gc_schedule: GcSchedule,
    /// The Executions running in this process.
    pub(crate) executor: Arc<crate::jobs::Executor>,
    /// Where Schedules send their events (`None`: schedules with an event fail to run).
    pub(crate) event_sink: Option<Arc<dyn crate::jobs::EventSink>>,
    /// Where Kubernetes Events go (disabled unless [`Context::with_recorder`]).
    pub recorder: crate::recorder::Recorder,
}

impl Context {
    pub fn new(
        resources: Arc<dyn Resources>,
        runtimes: HashMap<Backend, Arc<dyn Runtime>>,
        ingress: Option<Arc<dyn IngressSink>>,
        config: ControllerConfig,
        scaler: Arc<Scaler>,
    ) -> Self {
        Self {
            resources,
            runtimes,
            ingress,
            config,
            scaler,
            tracker: Tracker::default(),
            clock: Arc::new(SystemClock),
            removals: Removals::default(),
            gc_schedule: GcSchedule::default(),
            executor: Arc::default(),
            event_sink: None,
            recorder: crate::recorder::Recorder::disabled(),
        }
    }

    /// Record Kubernetes Events through `recorder` (the scaler's too).
    pub fn with_recorder(mut self, recorder: crate::recorder::Recorder) -> Self {
        self.scaler.set_recorder(recorder.clone());
        self.recorder = recorder;
        self
    }

    /// Record `note`, if any (never waits).
    pub(crate) fn record(&self, note: Option<crate::recorder::Note>) {
        if let Some(note) = note {
            self.recorder.record(note);
        }
    }

    /// Send Schedules' events to `sink`.
    pub fn with_event_sink(mut self, sink: Arc<dyn crate::jobs::EventSink>) -> Self {
        self.event_sink = Some(sink);
        self
    }

    /// Use `clock` for wall-clock time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// RFC 3339 timestamp (seconds) for condition transitions and annotations.
    pub fn now(&self) -> String {
        rfc3339(&*self.clock)
    }

    /// `http://<host>[:port]`
    pub fn url_for(&self, host: &str) -> String {
        match self.config.url_port {
            Some(p) if p != 80 => format!("http://{host}:{p}"),
            _ => format!("http://{host}"),
        }
    }
}
