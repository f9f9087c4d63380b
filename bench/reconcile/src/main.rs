//! Reconcile throughput with 1, 100 and 1000 unrelated revisions in the namespace.
//!
//! For each background size N, a fresh store gets one service with N old revisions (created
//! directly, as a long history would leave them), the controller starts (the real manager,
//! workers and `StoreResources` over SQLite on disk, a runtime whose instances are ready at
//! once, the router replaced by a no-op sink) and reconciles that history once; then K new
//! services are created and the time until all are Ready is measured. The figure is objects
//! reconciled into place per second (each service is six objects: Service, Configuration,
//! Revision, PodAutoscaler, Route, Ingress), and its ratio to N = 1: the cost of a reconcile
//! must not grow with objects it has nothing to do with.
//!
//! ```sh
//! cargo run --release -p nimbus-bench-reconcile -- [--services K] [--rounds R]
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nimbus_api::conditions::is_ready;
use nimbus_api::networking::Ingress;
use nimbus_api::parse::parse_manifests;
use nimbus_api::runtime::Backend;
use nimbus_api::{Kind, Object};
use nimbus_controller::{
    Context, Controller, ControllerConfig, IngressSink, NoLoad, Scaler, ScalerConfig,
    StoreResources,
};
use nimbus_runtime::{
    EndpointRegistry, InstanceSpec, RevisionKey, RevisionPhase, RevisionRuntimeStatus, Runtime,
    RuntimeError, RuntimeEvent,
};
use nimbus_store::Store;

/// Objects each new service becomes.
const OBJECTS_PER_SERVICE: usize = 6;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let services = flag("--services", 50);
    let rounds = flag("--rounds", 3);
    let sizes: Vec<usize> = match std::env::var("BENCH_SIZES") {
        Ok(v) => v.split(',').filter_map(|n| n.parse().ok()).collect(),
        Err(_) => vec![1, 100, 1000],
    };
    let mut rates: HashMap<usize, Vec<f64>> = HashMap::new();
    let mut costs: HashMap<usize, Vec<f64>> = HashMap::new();
    for round in 0..rounds {
        for &n in &sizes {
            let s = run_once(n, services).await;
            eprintln!(
                "round {}: {n:>4} revisions in the namespace: {:.0} objects/s, {:.2} CPU ms per object",
                round + 1,
                s.rate,
                s.cpu_per_object
            );
            rates.entry(n).or_default().push(s.rate);
            costs.entry(n).or_default().push(s.cpu_per_object);
        }
    }
    let (base_rate, base_cost) = (median(&rates[&sizes[0]]), median(&costs[&sizes[0]]));
    println!(
        "\n| unrelated revisions in the namespace | objects/s (median of {rounds}) | vs {} | CPU ms per object | vs {} |",
        sizes[0], sizes[0]
    );
    println!("|---|---|---|---|---|");
    for n in sizes {
        let (rate, cost) = (median(&rates[&n]), median(&costs[&n]));
        println!(
            "| {n} | {rate:.0} | {:.2}× | {cost:.2} | {:.2}× |",
            rate / base_rate,
            cost / base_cost
        );
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run_once(history: usize, services: usize) -> Sample {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(&dir.path().join("nimbus.db")).expect("store"));
    seed(&store, history);
    let controller = controller(store.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(controller.run(async move {
        let _ = stopped.await;
    }));
    wait(&store, |s| count(s, Kind::PodAutoscaler) >= history).await;
    quiet(&store).await;
    if let Some(marker) = std::env::var_os("BENCH_MEASURE_MARKER") {
        // For a profiler to attach to the measured part only.
        let _ = std::fs::write(&marker, std::process::id().to_string());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let rv0 = store.resource_version().unwrap_or(0);
    let cpu0 = cpu_time();
    let start = Instant::now();
    for i in 0..services {
        store
            .create(service(&format!("new-{i}"), "v1"))
            .expect("create");
    }
    wait(&store, |s| ready_services(s) >= services).await;
    let elapsed = start.elapsed();
    let cpu = cpu_time() - cpu0;
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let writes = store.resource_version().unwrap_or(0) - rv0;
        eprintln!("history {history}: {writes} writes in {elapsed:?}, {cpu:?} CPU");
    }
    let _ = stop.send(());
    let _ = run.await;
    let objects = (services * OBJECTS_PER_SERVICE) as f64;
    Sample {
        rate: objects / elapsed.as_secs_f64(),
        cpu_per_object: cpu.as_secs_f64() * 1000.0 / objects,
    }
}

/// One measurement.
struct Sample {
    /// Objects reconciled into place per second of wall time.
    rate: f64,
    /// CPU milliseconds the whole process spent per object (less sensitive to other load).
    cpu_per_object: f64,
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` writes a `rusage` into the pointer it is given, which points at
    // enough zeroed memory for one; RUSAGE_SELF is always valid. On failure (it cannot fail
    // with these arguments) the zeroed value is read, which is a valid `rusage`.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One service `old` with `n` revisions, the way a long history leaves them: unrouted and at
/// zero (initial scale 0, so no scale-down falls into the measurement; their
/// generation labels run past the seeded Configuration's own generation, which leaves `old`
/// not Ready; only the new services are waited for).
fn seed(store: &Store, n: usize) {
    store.create(service("old", "v0")).expect("seed service");
    let yaml = |i: usize| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata:\n  name: old-{i:05}\n  annotations: {{nimbus.dev/runtime: process, autoscaling.knative.dev/initial-scale: \"0\"}}\n  labels:\n    serving.knative.dev/configuration: old\n    serving.knative.dev/configurationGeneration: \"{i}\"\n    serving.knative.dev/service: old\n    serving.knative.dev/routingState: reserve\nspec:\n  containers: [{{command: [/bin/true]}}]\n"
        )
    };
    for i in 1..=n {
        let rev = parse_manifests("seed", &yaml(i))
            .expect("seed yaml")
            .remove(0);
        store.create(rev).expect("seed revision");
    }
}

fn service(name: &str, env: &str) -> Object {
    let yaml = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  template:\n    metadata:\n      annotations: {{nimbus.dev/runtime: process}}\n    spec:\n      containers:\n        - command: [/bin/true]\n          env: [{{name: V, value: {env}}}]\n"
    );
    parse_manifests("bench", &yaml)
        .expect("service yaml")
        .remove(0)
}

fn count(store: &Store, kind: Kind) -> usize {
    store.list(kind, None).map_or(0, |l| l.items.len())
}

fn ready_services(store: &Store) -> usize {
    let Ok(list) = store.list(Kind::Service, None) else {
        return 0;
    };
    list.items
        .iter()
        .filter(|o| match o {
            Object::Service(s) if s.name().starts_with("new-") => {
                s.status.as_ref().is_some_and(|st| {
                    st.observed_generation == s.metadata.generation && is_ready(&st.conditions)
                })
            }
            _ => false,
        })
        .count()
}

async fn wait(store: &Store, done: impl Fn(&Store) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !done(store) {
        if std::env::var_os("BENCH_DEBUG").is_some() {
            let counts: Vec<(Kind, usize)> =
                Kind::ALL.iter().map(|k| (*k, count(store, *k))).collect();
            eprintln!("{counts:?}");
        }
        assert!(
            Instant::now() < deadline,
            "the controller did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until, for half a second, the store has not changed and this process has used almost
/// no CPU: the history's own reconciles (its statuses, its PodAutoscalers, and the no-op
/// reconciles of its Configuration, which write nothing) are done, and only the measured work
/// is left.
async fn quiet(store: &Store) {
    let mut last = (store.resource_version().unwrap_or(0), cpu_time());
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (store.resource_version().unwrap_or(0), cpu_time());
        let busy = now.1.saturating_sub(last.1) > Duration::from_millis(10);
        if now.0 != last.0 || busy {
            since = Instant::now();
        }
        last = now;
    }
}

fn controller(store: Arc<Store>) -> Controller {
    let runtime: Arc<dyn Runtime> = Arc::new(InstantRuntime::default());
    let ctx = Context::new(
        Arc::new(StoreResources(store)),
        [(Backend::Process, runtime)].into(),
        Some(Arc::new(NoRouter)),
        ControllerConfig::default(),
        Scaler::new(Arc::new(NoLoad), ScalerConfig::default()),
    );
    Controller::new(ctx)
}

/// Instances are ready the moment they are asked for.
#[derive(Default)]
struct InstantRuntime {
    desired: Mutex<HashMap<RevisionKey, u32>>,
    events: std::sync::OnceLock<tokio::sync::broadcast::Sender<RuntimeEvent>>,
}

#[async_trait]
impl Runtime for InstantRuntime {
    async fn set_desired(&self, spec: &InstanceSpec, replicas: u32) -> Result<(), RuntimeError> {
        self.desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.revision.clone(), replicas);
        Ok(())
    }
    async fn remove(&self, revision: &RevisionKey) {
        self.desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(revision);
    }
    fn status(&self, revision: &RevisionKey) -> Option<RevisionRuntimeStatus> {
        let desired = *self
            .desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(revision)?;
        Some(RevisionRuntimeStatus {
            phase: RevisionPhase::Ready,
            desired,
            actual: desired,
            ready: desired,
            ever_ready: true,
        })
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent> {
        self.events
            .get_or_init(|| tokio::sync::broadcast::channel(16).0)
            .subscribe()
    }
    fn endpoints(&self) -> EndpointRegistry {
        EndpointRegistry::new()
    }
    async fn shutdown(&self) {}
}

struct NoRouter;

impl IngressSink for NoRouter {
    fn apply(&self, _: Ingress) {}
    fn remove(&self, _: &str, _: &str) {}
    fn programmed(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
