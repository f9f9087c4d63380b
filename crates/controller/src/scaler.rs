//! The scaling driver: the I/O shell around `nimbus-autoscaler`'s pure decision.
//!
//! Every `sample_interval` it reads each revision's in-flight requests from a [`MetricsSource`]
//! (the router); every `tick` it turns those readings into a `Sample`, asks the autoscaler for a
//! decision and tells the revision's runtime how many instances to run. An activation (a request
//! waiting for a revision with no capacity) is handled at once, not at the next tick, because it
//! is on the cold-start path.
//!
//! The PodAutoscaler reconciler registers revisions ([`Scaler::register`]), resuming from the
//! scale recorded in the PodAutoscaler's status after a restart, and writes each new decision
//! back there (the scaler announces revisions whose decision changed on [`Scaler::subscribe`],
//! from its own loop, never from a request's thread). Nothing else sets instance counts.
//!
//! Event load (KEDA's ScaledObjects, evaluated by `nimbus-keda`) comes in as a per-revision
//! floor ([`Scaler::set_floor`]): one decision for HTTP and events together, the revision runs
//! `max(HTTP autoscaler's decision, floor)`, so the HTTP autoscaler's scale to zero never
//! removes instances the event triggers still want.
//!
//! A budget (`nimbus-usage`) may cap a revision ([`Scaler::set_ceiling`]): the revision then
//! runs `min(max(decision, floor), ceiling)`, whatever its `max-scale` annotation says, without
//! its spec being edited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_api::autoscaling::ScalingSpec;
use nimbus_autoscaler::{Autoscaler, Decision, Sample};
use nimbus_metrics::{COLD_START_BUCKETS, Histogram, HistogramSnapshot};
use nimbus_runtime::{InstanceSpec, RevisionKey, Runtime};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::recorder::{Note, Recorder};
use crate::scaler_events;

/// How long a cold start is waited for before it is no longer reported.
const COLD_START_GIVE_UP: Duration = Duration::from_secs(600);

/// A revision's load as the data path sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RevisionLoad {
    /// Requests in flight right now.
    pub in_flight: u64,
    /// Requests started since the process began (monotonic).
    pub requests_total: u64,
}

/// Where load readings come from (the router).
pub trait MetricsSource: Send + Sync + 'static {
    fn load(&self, revision: &RevisionKey) -> Option<RevisionLoad>;
}

/// No load anywhere: for a controller whose scaler never runs (the cluster's routers
/// reconcile Ingresses only) and for tests.
pub struct NoLoad;

impl MetricsSource for NoLoad {
    fn load(&self, _: &RevisionKey) -> Option<RevisionLoad> {
        None
    }
}

/// How long an activation of a revision not registered yet is kept for it: longer than a
/// reconcile takes to come after a restart, shorter than a request waits.
const PENDING_ACTIVATION: Duration = Duration::from_secs(30);

/// Timing of the driver.
#[derive(Clone, Copy, Debug)]
pub struct ScalerConfig {
    /// How often in-flight requests are read (default 100 ms).
    pub sample_interval: Duration,
    /// How often scaling is decided (Knative: 2 s).
    pub tick: Duration,
}

impl Default for ScalerConfig {
    fn default() -> Self {
        Self {
            sample_interval: Duration::from_millis(100),
            tick: Duration::from_secs(2),
        }
    }
}

struct Target {
    spec: InstanceSpec,
    runtime: Arc<dyn Runtime>,
    autoscaler: Autoscaler,
    reachable: bool,
    desired: Option<u32>,
    /// The decision last announced on [`Scaler::subscribe`].
    announced: Option<u32>,
    in_flight_sum: f64,
    readings: u32,
    last_requests: Option<u64>,
    last_record: Duration,
    /// The latest decision, for `/metrics`.
    last: Option<Decision>,
    /// When a request first waited for the revision at zero, until a scale above zero is
    /// handed to the runtime (the cold start's "decide" phase).
    activated_at: Option<Duration>,
    decide: Histogram,
    /// When the revision was activated at zero, until its first instance is ready (the
    /// cold start an Event reports).
    cold_since: Option<Duration>,
}

/// What `/metrics` shows of one revision's scaling, read at scrape time.
#[derive(Clone)]
pub struct ScaleView {
    /// The instance count last decided (the floor included).
    pub desired: Option<u32>,
    /// The autoscaler's latest decision: stable and panic values, panic mode.
    pub decision: Option<Decision>,
    /// Cold-start phase "decide": from a request waiting at zero to the runtime being told to
    /// scale up.
    pub decide: HistogramSnapshot,
    /// The revision's runtime (for its status and instance figures, read outside the lock).
    pub runtime: Arc<dyn Runtime>,
}

/// Owns one autoscaler per revision and applies its decisions.
pub struct Scaler {
    targets: Mutex<HashMap<RevisionKey, Target>>,
    metrics: Arc<dyn MetricsSource>,
    config: ScalerConfig,
    epoch: Instant,
    activations: mpsc::UnboundedSender<RevisionKey>,
    activation_rx: Mutex<Option<mpsc::UnboundedReceiver<RevisionKey>>>,
    decisions: broadcast::Sender<RevisionKey>,
    /// Activations of revisions not registered yet (a request came in before the revision's
    /// first reconcile in this process, as right after a restart), with when: applied when
    /// the revision registers, so the waiting request is not left to the next tick or lost.
    pending: Mutex<HashMap<RevisionKey, Duration>>,
    /// Event-driven floors per revision ([`Scaler::set_floor`]); kept for revisions not
    /// registered yet too.
    floors: Mutex<HashMap<RevisionKey, u32>>,
    /// Budget caps per revision ([`Scaler::set_ceiling`]).
    ceilings: Mutex<HashMap<RevisionKey, u32>>,
    /// Where scale changes and cold starts are reported ([`Scaler::set_recorder`]).
    recorder: std::sync::OnceLock<Recorder>,
}

impl Scaler {
    pub fn new(metrics: Arc<dyn MetricsSource>, config: ScalerConfig) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            targets: Mutex::new(HashMap::new()),
            metrics,
            config,
            epoch: Instant::now(),
            activations: tx,
            activation_rx: Mutex::new(Some(rx)),
            decisions: broadcast::channel(1024).0,
            pending: Mutex::new(HashMap::new()),
            floors: Mutex::new(HashMap::new()),
            ceilings: Mutex::new(HashMap::new()),
            recorder: std::sync::OnceLock::new(),
        })
    }

    /// Report scale changes and cold starts as Events through `recorder` (once; later calls
    /// are ignored).
    pub fn set_recorder(&self, recorder: Recorder) {
        let _ = self.recorder.set(recorder);
    }

    fn note(&self, note: Option<Note>) {
        if let (Some(r), Some(note)) = (self.recorder.get(), note) {
            r.record(note);
        }
    }

    /// Revisions whose decided scale changed (sent from the scaler's loop, at most every
    /// `sample_interval` per revision). A lagging receiver misses keys; the resync covers it.
    pub fn subscribe(&self) -> broadcast::Receiver<RevisionKey> {
        self.decisions.subscribe()
    }

    fn now(&self) -> Duration {
        Instant::now().duration_since(self.epoch)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RevisionKey, Target>> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start or update scaling of a revision. Idempotent; applies the first decision at once.
    /// `resume`: the scale last decided for it, from the store, when this process has not
    /// decided for it yet (after a restart the revision continues from there, not from its
    /// initial scale).
    pub async fn register(
        &self,
        spec: InstanceSpec,
        scaling: ScalingSpec,
        runtime: Arc<dyn Runtime>,
        reachable: bool,
        resume: Option<u32>,
    ) {
        let key = spec.revision.clone();
        let now = self.now();
        {
            let mut targets = self.lock();
            let target = targets.entry(key.clone()).or_insert_with(|| Target {
                autoscaler: match resume {
                    Some(desired) => Autoscaler::resume(scaling.clone(), now, desired),
                    None => Autoscaler::new(scaling.clone(), now),
                },
                spec: spec.clone(),
                runtime: runtime.clone(),
                reachable,
                desired: None,
                announced: resume,
                in_flight_sum: 0.0,
                readings: 0,
                last_requests: None,
                last_record: now,
                last: None,
                activated_at: None,
                decide: Histogram::new(COLD_START_BUCKETS),
                cold_since: None,
            });
            if target.autoscaler.spec() != &scaling {
                let desired = target.desired.unwrap_or(0);
                target.autoscaler = target.autoscaler.respec(scaling, now, desired);
            }
            target.reachable = reachable;
            let pending = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            if pending.is_some_and(|at| now.saturating_sub(at) < PENDING_ACTIVATION) {
                target.autoscaler.activate(now);
            }
        }
        self.decide_one(&key, false).await;
        self.announce_one(&key);
    }

    /// Stop scaling a revision (it was deleted).
    pub fn unregister(&self, revision: &RevisionKey) {
        self.lock().remove(revision);
    }

    /// The event-driven floor of `revision`: it runs at least `floor` instances whatever the
    /// HTTP autoscaler decides (0: HTTP alone). Applied at once when it changes.
    pub async fn set_floor(&self, revision: &RevisionKey, floor: u32) {
        let changed = {
            let mut floors = self.floors.lock().unwrap_or_else(|p| p.into_inner());
            let before = match floor {
                0 => floors.remove(revision),
                n => floors.insert(revision.clone(), n),
            };
            before.unwrap_or(0) != floor
        };
        if changed {
            self.decide_one(revision, false).await;
        }
    }

    /// The event-driven floor of `revision` (0 when none).
    pub fn floor(&self, revision: &RevisionKey) -> u32 {
        let floors = self.floors.lock().unwrap_or_else(|p| p.into_inner());
        floors.get(revision).copied().unwrap_or(0)
    }

    /// Cap `revision` at `ceiling` instances (`None`: no cap), over the autoscaler's decision
    /// and the floor. Applied at once when it changes.
    pub async fn set_ceiling(&self, revision: &RevisionKey, ceiling: Option<u32>) {
        let changed = {
            let mut ceilings = self.ceilings.lock().unwrap_or_else(|p| p.into_inner());
            let before = match ceiling {
                None => ceilings.remove(revision),
                Some(n) => ceilings.insert(revision.clone(), n),
            };
            before != ceiling
        };
        if changed {
            self.decide_one(revision, false).await;
        }
    }

    /// The budget cap of `revision`, if any.
    pub fn ceiling(&self, revision: &RevisionKey) -> Option<u32> {
        let ceilings = self.ceilings.lock().unwrap_or_else(|p| p.into_inner());
        ceilings.get(revision).copied()
    }

    /// `desired` raised to the floor and lowered to the ceiling.
    fn bounded(&self, revision: &RevisionKey, desired: u32) -> u32 {
        let desired = desired.max(self.floor(revision));
        self.ceiling(revision).map_or(desired, |c| desired.min(c))
    }

    /// The last decided instance count of a revision.
    pub fn desired(&self, revision: &RevisionKey) -> Option<u32> {
        self.lock().get(revision).and_then(|t| t.desired)
    }

    /// Every registered revision's scaling, for `/metrics`.
    pub fn views(&self) -> Vec<(RevisionKey, ScaleView)> {
        let targets = self.lock();
        let view = |t: &Target| ScaleView {
            desired: t.desired,
            decision: t.last,
            decide: t.decide.snapshot(),
            runtime: Arc::clone(&t.runtime),
        };
        targets.iter().map(|(k, t)| (k.clone(), view(t))).collect()
    }

    /// A request is waiting for capacity on `revision` (called from the data path; cheap).
    ///
    /// When the revision's runtime applies a scale at once ([`Runtime::set_desired_now`]) the
    /// activation is decided and applied right here, on the waiting request's thread: scaling
    /// an in-process instance from zero then involves no other thread. Otherwise it is handed
    /// to the scaling loop, which decides at once too.
    pub fn activate(&self, revision: &RevisionKey) {
        if !self.activate_now(revision) {
            let _ = self.activations.send(revision.clone());
        }
    }

    /// The activation recorded, decided and, when the runtime can, applied on the caller's
    /// thread. `false` when the scale must be applied by the loop (which decides again).
    fn activate_now(&self, key: &RevisionKey) -> bool {
        let now = self.now();
        let mut targets = self.lock();
        let Some(t) = targets.get_mut(key) else {
            return false;
        };
        let ready = t.runtime.status(key).map_or(0, |s| s.ready);
        t.autoscaler.activate(now);
        note_activation(t, now, ready);
        if ready == 0 {
            t.cold_since.get_or_insert(now);
        }
        let decision = t.autoscaler.decide(now, ready, t.reachable);
        let desired = self.bounded(key, decision.desired);
        t.last = Some(decision);
        if t.desired == Some(desired) {
            return true;
        }
        if !t.runtime.set_desired_now(&t.spec, desired) {
            return false;
        }
        tracing::debug!(revision = %key, desired, "scale on activation");
        let from = t.desired.unwrap_or(0);
        let spec = t.autoscaler.spec();
        self.note(scaler_events::scaled(
            key,
            from,
            &decision,
            spec,
            "on a request",
        ));
        t.desired = Some(desired);
        note_decided(t, now, desired);
        true
    }

    /// Run the sampling/decision loop until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let Some(mut activations) = self
            .activation_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return; // already running
        };
        let mut sample = tokio::time::interval(self.config.sample_interval);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                Some(key) = activations.recv() => {
                    self.on_activation(&key).await;
                }
                _ = sample.tick() => {
                    self.sample_all();
                    self.announce();
                }
                _ = tick.tick() => self.tick_all().await,
            }
        }
    }

    async fn on_activation(&self, key: &RevisionKey) {
        let now = self.now();
        let known = match self.lock().get_mut(key) {
            Some(t) => {
                t.autoscaler.activate(now);
                let ready = t.runtime.status(key).map_or(0, |s| s.ready);
                note_activation(t, now, ready);
                if ready == 0 {
                    t.cold_since.get_or_insert(now);
                }
                true
            }
            None => false,
        };
        if known {
            self.decide_one(key, false).await;
        } else {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.retain(|_, at| now.saturating_sub(*at) < PENDING_ACTIVATION);
            pending.insert(key.clone(), now);
        }
    }

    /// Announce `key` if its decision changed since last announced (a registration: the
    /// other revisions wait for the next sample, so the lock is not held for all of them).
    fn announce_one(&self, key: &RevisionKey) {
        if let Some(t) = self.lock().get_mut(key) {
            self.announce_changed(key, t);
        }
    }

    /// Announce the revisions whose decision changed since last announced.
    fn announce(&self) {
        let mut targets = self.lock();
        for (key, t) in targets.iter_mut() {
            self.announce_changed(key, t);
        }
    }

    /// Announce `key` (whose target is `t`) if its decision changed since last announced.
    fn announce_changed(&self, key: &RevisionKey, t: &mut Target) {
        if t.desired.is_some() && t.desired != t.announced {
            t.announced = t.desired;
            let _ = self.decisions.send(key.clone());
        }
    }

    fn sample_all(&self) {
        let now = self.now();
        let mut targets = self.lock();
        for (key, t) in targets.iter_mut() {
            if let Some(load) = self.metrics.load(key) {
                t.in_flight_sum += load.in_flight as f64;
                t.readings += 1;
            }
            self.end_cold_start(key, t, now);
        }
    }

    /// Report a cold start once the revision activated at zero has a ready instance (one
    /// never ready within [`COLD_START_GIVE_UP`] is forgotten: its failure is reported).
    fn end_cold_start(&self, key: &RevisionKey, t: &mut Target, now: Duration) {
        let Some(since) = t.cold_since else { return };
        let took = now.saturating_sub(since);
        if t.runtime.status(key).is_some_and(|s| s.ready > 0) {
            t.cold_since = None;
            self.note(Some(scaler_events::cold_start(key, took)));
        } else if took > COLD_START_GIVE_UP {
            t.cold_since = None;
        }
    }

    async fn tick_all(&self) {
        let keys: Vec<RevisionKey> = self.lock().keys().cloned().collect();
        for key in keys {
            self.decide_one(&key, true).await;
        }
    }

    /// Decide for one revision (recording a sample first when `record`) and apply the result:
    /// at once, under the lock, when the runtime can ([`Runtime::set_desired_now`]), so these
    /// applies are ordered with the ones [`Scaler::activate`] makes on request threads;
    /// otherwise after the lock is released.
    async fn decide_one(&self, key: &RevisionKey, record: bool) -> Option<Decision> {
        let now = self.now();
        let (decision, apply) = {
            let mut targets = self.lock();
            let t = targets.get_mut(key)?;
            let ready = t.runtime.status(key).map_or(0, |s| s.ready);
            if record {
                self.record(key, t, now);
            }
            let mut decision = t.autoscaler.decide(now, ready, t.reachable);
            decision.desired = self.bounded(key, decision.desired);
            let changed = t.desired != Some(decision.desired);
            if let (true, Some(from)) = (changed, t.desired) {
                let spec = t.autoscaler.spec();
                self.note(scaler_events::scaled(
                    key,
                    from,
                    &decision,
                    spec,
                    "by the autoscaler",
                ));
            }
            t.desired = Some(decision.desired);
            t.last = Some(decision);
            note_decided(t, now, decision.desired);
            if changed {
                tracing::debug!(revision = %key, desired = decision.desired, panicking = decision.panicking, "scale");
            }
            let later = changed && !t.runtime.set_desired_now(&t.spec, decision.desired);
            (decision, later.then(|| (t.spec.clone(), t.runtime.clone())))
        };
        if let Some((spec, runtime)) = apply
            && let Err(e) = runtime.set_desired(&spec, decision.desired).await
        {
            tracing::warn!(revision = %key, error = %e, "cannot apply scale");
        }
        Some(decision)
    }

    fn record(&self, key: &RevisionKey, t: &mut Target, now: Duration) {
        let load = self.metrics.load(key).unwrap_or_default();
        let concurrency = if t.readings > 0 {
            t.in_flight_sum / f64::from(t.readings)
        } else {
            load.in_flight as f64
        };
        let requests = t
            .last_requests
            .map_or(0, |last| load.requests_total.saturating_sub(last));
        let period = now
            .saturating_sub(t.last_record)
            .max(Duration::from_millis(1));
        t.autoscaler.record(
            now,
            Sample {
                concurrency,
                requests: requests as f64,
                period,
            },
        );
        t.last_requests = Some(load.requests_total);
        t.last_record = now;
        t.in_flight_sum = 0.0;
        t.readings = 0;
    }
}

/// A request waits for `t`'s revision; at zero (no instance ready or asked for) that starts a
/// cold start's "decide" phase, unless one is already running.
fn note_activation(t: &mut Target, now: Duration, ready: u32) {
    let at_zero = ready == 0 && t.desired.unwrap_or(0) == 0;
    if at_zero && t.activated_at.is_none() {
        t.activated_at = Some(now);
    }
}

/// `desired` was handed to the runtime: ends the "decide" phase if it scales above zero.
fn note_decided(t: &mut Target, now: Duration, desired: u32) {
    if desired > 0
        && let Some(at) = t.activated_at.take()
    {
        t.decide.record(now.saturating_sub(at));
    }
}

#[cfg(test)]
#[path = "scaler_tests.rs"]
mod tests;
