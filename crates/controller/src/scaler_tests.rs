//! The driver under paused tokio time: windows and grace periods without sleeping for real.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use nimbus_runtime::*;

use super::*;

#[derive(Default)]
struct Load(AtomicU64, AtomicU64);

impl MetricsSource for Load {
    fn load(&self, _: &RevisionKey) -> Option<RevisionLoad> {
        Some(RevisionLoad {
            in_flight: self.0.load(Ordering::SeqCst),
            requests_total: self.1.load(Ordering::SeqCst),
        })
    }
}

#[derive(Default)]
struct Recorder {
    desired: Mutex<Vec<u32>>,
    /// Applies scales at once (as the Wasm runtime does); counts those applies.
    at_once: Option<AtomicU64>,
}

#[async_trait]
impl Runtime for Recorder {
    async fn set_desired(&self, _: &InstanceSpec, replicas: u32) -> Result<(), RuntimeError> {
        self.desired.lock().unwrap().push(replicas);
        Ok(())
    }
    fn set_desired_now(&self, _: &InstanceSpec, replicas: u32) -> bool {
        let Some(applied) = &self.at_once else {
            return false;
        };
        applied.fetch_add(1, Ordering::SeqCst);
        self.desired.lock().unwrap().push(replicas);
        true
    }
    async fn remove(&self, _: &RevisionKey) {}
    fn status(&self, _: &RevisionKey) -> Option<RevisionRuntimeStatus> {
        let d = self.desired.lock().unwrap().last().copied().unwrap_or(0);
        Some(RevisionRuntimeStatus {
            phase: RevisionPhase::Ready,
            desired: d,
            actual: d,
            ready: d,
            ever_ready: true,
        })
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent> {
        tokio::sync::broadcast::channel(1).1
    }
    fn endpoints(&self) -> EndpointRegistry {
        EndpointRegistry::new()
    }
    async fn shutdown(&self) {}
}

impl Recorder {
    fn last(&self) -> u32 {
        self.desired
            .lock()
            .unwrap()
            .last()
            .copied()
            .unwrap_or(u32::MAX)
    }
}

fn spec() -> InstanceSpec {
    InstanceSpec {
        revision: RevisionKey::new("default", "r-00001"),
        runtime_class: "process".into(),
        image: None,
        command: vec!["x".into()],
        args: vec![],
        env: vec![],
        working_dir: None,
        protocol: Protocol::Http1,
        startup_timeout: Duration::from_secs(1),
        socket_activation: false,
        labels: BTreeMap::new(),
        ..Default::default()
    }
}

fn scaling(target: f64) -> ScalingSpec {
    ScalingSpec {
        target,
        window: Duration::from_secs(6),
        scale_to_zero_grace: Duration::from_secs(2),
        ..Default::default()
    }
}

async fn setup(target: f64) -> (Arc<Scaler>, Arc<Load>, Arc<Recorder>) {
    setup_with(target, Recorder::default()).await
}

async fn setup_with(target: f64, runtime: Recorder) -> (Arc<Scaler>, Arc<Load>, Arc<Recorder>) {
    let load = Arc::new(Load::default());
    let runtime = Arc::new(runtime);
    let scaler = Scaler::new(load.clone(), ScalerConfig::default());
    scaler
        .register(spec(), scaling(target), runtime.clone(), true, None)
        .await;
    tokio::spawn(scaler.clone().run(std::future::pending()));
    (scaler, load, runtime)
}

#[tokio::test(start_paused = true)]
async fn idle_revision_scales_to_zero_after_window_plus_grace() {
    let (scaler, _load, runtime) = setup(10.0).await;
    assert_eq!(runtime.last(), 1, "initial scale");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runtime.last(), 1, "still inside the window");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(runtime.last(), 0, "window (6s) + grace (2s) passed");
    assert_eq!(scaler.desired(&spec().revision), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_runtime_that_applies_at_once_scales_from_zero_on_the_activating_thread() {
    let at_once = Recorder {
        at_once: Some(AtomicU64::new(0)),
        ..Recorder::default()
    };
    let (scaler, _load, runtime) = setup_with(10.0, at_once).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(runtime.last(), 0, "scaled to zero, at once as well");
    let applied = || runtime.at_once.as_ref().unwrap().load(Ordering::SeqCst);
    assert_eq!(applied(), 2, "the first scale and the scale to zero");
    scaler.activate(&spec().revision);
    assert_eq!(runtime.last(), 1, "applied before activate returned");
    assert_eq!(scaler.desired(&spec().revision), Some(1));
    scaler.activate(&spec().revision);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(applied(), 3, "a second activation changes nothing");
}

#[tokio::test(start_paused = true)]
async fn activation_scales_from_zero_without_waiting_for_a_tick() {
    let (scaler, _load, runtime) = setup(10.0).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(runtime.last(), 0);
    scaler.activate(&spec().revision);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(runtime.last(), 1, "activation applied at once");
}

/// A request that asks for a revision before this process registered it (right after a
/// restart the router serves before the first reconcile) is not lost: the revision starts
/// scaled up when it registers, even when it resumes at zero.
#[tokio::test(start_paused = true)]
async fn an_activation_before_registration_applies_when_the_revision_registers() {
    let load = Arc::new(Load::default());
    let runtime = Arc::new(Recorder::default());
    let scaler = Scaler::new(load.clone(), ScalerConfig::default());
    tokio::spawn(scaler.clone().run(std::future::pending()));
    scaler.activate(&spec().revision);
    tokio::time::sleep(Duration::from_millis(1)).await;
    scaler
        .register(spec(), scaling(10.0), runtime.clone(), true, Some(0))
        .await;
    assert_eq!(
        runtime.last(),
        1,
        "scaled up on registration, not resumed at zero"
    );
}

#[tokio::test(start_paused = true)]
async fn load_scales_up_then_back_down() {
    let (_scaler, load, runtime) = setup(10.0).await;
    load.0.store(50, Ordering::SeqCst); // 50 in flight, target 10 × 70% = 7 per instance
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runtime.last(), 8, "ceil(50 / 7)");
    load.0.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(runtime.last(), 0, "{:?}", runtime.desired.lock().unwrap());
}

#[tokio::test(start_paused = true)]
async fn unregistered_revisions_are_forgotten() {
    let (scaler, _load, runtime) = setup(10.0).await;
    scaler.unregister(&spec().revision);
    let before = runtime.desired.lock().unwrap().len();
    scaler.activate(&spec().revision);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(runtime.desired.lock().unwrap().len(), before);
    assert_eq!(scaler.desired(&spec().revision), None);
}

/// One decision for HTTP and events: the revision runs max(HTTP's decision, the event floor),
/// so the HTTP autoscaler's scale to zero keeps what the event triggers still want.
#[tokio::test(start_paused = true)]
async fn an_event_floor_holds_instances_the_http_autoscaler_would_remove() {
    let (scaler, load, runtime) = setup(10.0).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(runtime.last(), 0, "idle: HTTP scaled to zero");
    scaler.set_floor(&spec().revision, 3).await;
    assert_eq!(runtime.last(), 3, "the floor applies at once, from zero");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(runtime.last(), 3, "no HTTP load: the floor holds");
    load.0.store(50, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runtime.last(), 8, "HTTP asks for more than the floor");
    load.0.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(runtime.last(), 3, "back to the floor, not to zero");
    scaler.set_floor(&spec().revision, 0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runtime.last(), 0, "no floor: HTTP's zero");
}

#[tokio::test(start_paused = true)]
async fn a_floor_set_before_registration_applies_when_the_revision_registers() {
    let load = Arc::new(Load::default());
    let runtime = Arc::new(Recorder::default());
    let scaler = Scaler::new(load.clone(), ScalerConfig::default());
    scaler.set_floor(&spec().revision, 2).await;
    scaler
        .register(spec(), scaling(10.0), runtime.clone(), true, Some(0))
        .await;
    assert_eq!(runtime.last(), 2);
}

/// A budget cap bounds the decision and the floor, and lifting it restores them.
#[tokio::test(start_paused = true)]
async fn a_ceiling_caps_load_and_floor_until_lifted() {
    let (scaler, load, runtime) = setup(10.0).await;
    load.0.store(50, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runtime.last(), 8, "HTTP load wants 8");
    scaler.set_ceiling(&spec().revision, Some(1)).await;
    assert_eq!(runtime.last(), 1, "the cap applies at once");
    scaler.set_floor(&spec().revision, 3).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runtime.last(), 1, "the cap wins over the floor");
    scaler.set_ceiling(&spec().revision, None).await;
    assert_eq!(runtime.last(), 8, "lifted: back to HTTP's decision");
}
