//! Reconciler tests against the in-memory store, a fake runtime and a recording ingress: the
//! Knative rules each reconciler owns, one behaviour per test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nimbus_api::conditions::{ConditionStatus, get_condition};
use nimbus_api::constants::*;
use nimbus_api::networking::Ingress;
use nimbus_api::parse::parse_manifests;
use nimbus_api::runtime::Backend;
use nimbus_api::{Kind, Object};
use nimbus_runtime::*;
use nimbus_store::Store;

use crate::*;

#[derive(Default)]
struct FakeRuntime {
    desired: Mutex<HashMap<RevisionKey, u32>>,
    /// Revisions whose instances fail (reason, message).
    failing: Mutex<HashMap<String, (String, String)>>,
    removed: Mutex<Vec<RevisionKey>>,
    /// When set, a removal waits for it (an instance draining for a long time).
    remove_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    endpoints: EndpointRegistry,
    events: std::sync::OnceLock<tokio::sync::broadcast::Sender<RuntimeEvent>>,
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn set_desired(&self, spec: &InstanceSpec, replicas: u32) -> Result<(), RuntimeError> {
        self.desired
            .lock()
            .unwrap()
            .insert(spec.revision.clone(), replicas);
        Ok(())
    }
    async fn remove(&self, revision: &RevisionKey) {
        let gate = self.remove_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let _ = gate.acquire().await;
        }
        self.desired.lock().unwrap().remove(revision);
        self.removed.lock().unwrap().push(revision.clone());
    }
    fn status(&self, revision: &RevisionKey) -> Option<RevisionRuntimeStatus> {
        let desired = *self.desired.lock().unwrap().get(revision)?;
        let phase = match self.failing.lock().unwrap().get(&revision.name) {
            Some((r, m)) => RevisionPhase::Failed {
                reason: r.clone(),
                message: m.clone(),
            },
            None => RevisionPhase::Ready,
        };
        let ready = if matches!(phase, RevisionPhase::Ready) {
            desired
        } else {
            0
        };
        Some(RevisionRuntimeStatus {
            phase,
            desired,
            actual: desired,
            ready,
            ever_ready: ready > 0,
        })
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent> {
        self.events
            .get_or_init(|| tokio::sync::broadcast::channel(16).0)
            .subscribe()
    }
    fn endpoints(&self) -> EndpointRegistry {
        self.endpoints.clone()
    }
    async fn shutdown(&self) {}
}

#[derive(Default)]
struct RecordingIngress(Mutex<HashMap<(String, String), Ingress>>);

impl IngressSink for RecordingIngress {
    fn apply(&self, ingress: Ingress) {
        self.0
            .lock()
            .unwrap()
            .insert((ingress.namespace.clone(), ingress.name.clone()), ingress);
    }
    fn remove(&self, namespace: &str, name: &str) {
        self.0
            .lock()
            .unwrap()
            .remove(&(namespace.to_string(), name.to_string()));
    }
    fn programmed(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().keys().cloned().collect()
    }
}

/// A wall clock the test sets.
struct FixedClock(Mutex<nimbus_api::k8s_openapi::jiff::Timestamp>);

impl Clock for FixedClock {
    fn now(&self) -> nimbus_api::k8s_openapi::jiff::Timestamp {
        *self.0.lock().unwrap()
    }
}

struct Harness {
    store: Arc<Store>,
    runtime: Arc<FakeRuntime>,
    ingress: Arc<RecordingIngress>,
    controller: Controller,
}

impl Harness {
    /// A new controller process on the same store, runtime and router (nothing in memory).
    fn restart(&mut self) {
        let runtimes: HashMap<Backend, Arc<dyn Runtime>> =
            [(Backend::Process, self.runtime.clone() as Arc<dyn Runtime>)].into();
        let ctx = Context::new(
            Arc::new(StoreResources(self.store.clone())),
            runtimes,
            Some(self.ingress.clone()),
            self.controller.context().config.clone(),
            Scaler::new(Arc::new(NoLoad), ScalerConfig::default()),
        );
        self.controller = Controller::new(ctx);
    }
}

fn harness() -> Harness {
    harness_with(ControllerConfig::default(), Arc::new(SystemClock))
}

fn harness_with(config: ControllerConfig, clock: Arc<dyn Clock>) -> Harness {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let runtime = Arc::new(FakeRuntime::default());
    let ingress = Arc::new(RecordingIngress::default());
    let runtimes: HashMap<Backend, Arc<dyn Runtime>> =
        [(Backend::Process, runtime.clone() as Arc<dyn Runtime>)].into();
    let ctx = Context::new(
        Arc::new(StoreResources(store.clone())),
        runtimes,
        Some(ingress.clone()),
        ControllerConfig {
            domain: "localhost".into(),
            url_port: Some(8080),
            ..config
        },
        Scaler::new(Arc::new(NoLoad), ScalerConfig::default()),
    )
    .with_clock(clock);
    Harness {
        store,
        runtime,
        ingress,
        controller: Controller::new(ctx),
    }
}

fn svc_yaml(name: &str, env: &str, extra: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\n  labels: {{team: a}}\nspec:\n  template:\n    spec:\n      runtimeClassName: process\n      containers:\n        - command: [/bin/hello]\n          env: [{{name: TARGET, value: \"{env}\"}}]\n{extra}"
    )
}

/// A service whose template carries a user-chosen revision name.
fn named_yaml(name: &str, revision: &str, env: &str, extra: &str) -> String {
    svc_yaml(name, env, extra).replace(
        "  template:\n",
        &format!("  template:\n    metadata: {{name: {revision}}}\n"),
    )
}

impl Harness {
    async fn apply(&self, yaml: &str) {
        let obj = parse_manifests("t", yaml).unwrap().remove(0);
        match self
            .store
            .get(obj.kind(), obj.namespace(), obj.name())
            .unwrap()
        {
            Some(_) => self.store.update(obj).unwrap(),
            None => self.store.create(obj).unwrap(),
        };
        self.settle().await;
    }

    async fn settle(&self) {
        self.controller.settle(2000).await.unwrap();
    }

    fn get(&self, kind: Kind, name: &str) -> Object {
        self.store.must_get(kind, "default", name).unwrap()
    }

    fn service(&self, name: &str) -> nimbus_api::Service {
        match self.get(Kind::Service, name) {
            Object::Service(s) => s,
            _ => unreachable!(),
        }
    }

    fn configuration(&self, name: &str) -> nimbus_api::Configuration {
        match self.get(Kind::Configuration, name) {
            Object::Configuration(c) => c,
            _ => unreachable!(),
        }
    }

    fn revision(&self, name: &str) -> nimbus_api::Revision {
        match self.get(Kind::Revision, name) {
            Object::Revision(r) => r,
            _ => unreachable!(),
        }
    }

    fn names(&self, kind: Kind) -> Vec<String> {
        self.store
            .list(kind, None)
            .unwrap()
            .items
            .iter()
            .map(|o| o.name().to_string())
            .collect()
    }

    fn revisions(&self) -> Vec<String> {
        self.names(Kind::Revision)
    }

    fn program(&self, name: &str) -> Ingress {
        self.ingress.0.lock().unwrap()[&("default".into(), name.into())].clone()
    }

    /// (revision, percent) of the main host's splits, sorted.
    fn splits(&self, name: &str) -> Vec<(String, u32)> {
        let mut s: Vec<_> = self.program(name).rules[0]
            .splits
            .iter()
            .map(|s| (s.revision.clone(), s.percent))
            .collect();
        s.sort();
        s
    }

    async fn delete(&self, kind: Kind, name: &str) {
        self.store.delete(kind, "default", name).unwrap();
        self.settle().await;
    }
}

fn ready(conditions: &[nimbus_api::Condition]) -> ConditionStatus {
    get_condition(conditions, "Ready")
        .map(|c| c.status)
        .unwrap_or_default()
}

fn label_of(obj: &Object, key: &str) -> Option<String> {
    obj.metadata().labels.as_ref()?.get(key).cloned()
}

#[tokio::test]
async fn service_creates_configuration_route_revision_autoscaler_ingress_and_becomes_ready() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    let status = h.service("hello").status.unwrap();
    assert_eq!(
        ready(&status.conditions),
        ConditionStatus::True,
        "{:#?}",
        status.conditions
    );
    assert_eq!(
        status.url.as_deref(),
        Some("http://hello.default.localhost:8080")
    );
    assert_eq!(
        status.latest_created_revision_name.as_deref(),
        Some("hello-00001")
    );
    assert_eq!(
        status.latest_ready_revision_name.as_deref(),
        Some("hello-00001")
    );
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.traffic[0].revision_name.as_deref(),
        Some("hello-00001")
    );
    assert_eq!(status.traffic[0].latest_revision, Some(true));
    let rev = h.get(Kind::Revision, "hello-00001");
    let labels = rev.metadata().labels.clone().unwrap();
    assert_eq!(labels[LABEL_SERVICE], "hello");
    assert_eq!(labels[LABEL_CONFIGURATION], "hello");
    assert_eq!(labels[LABEL_CONFIGURATION_GENERATION], "1");
    assert_eq!(labels[LABEL_ROUTING_STATE], ROUTING_STATE_ACTIVE);
    assert!(rev.has_finalizer(FINALIZER_INSTANCES));
    assert_eq!(
        label_of(&h.get(Kind::Configuration, "hello"), "team").as_deref(),
        Some("a")
    );
    let Object::PodAutoscaler(pa) = h.get(Kind::PodAutoscaler, "hello-00001") else {
        unreachable!()
    };
    assert_eq!(pa.spec.reachability.as_deref(), Some("Reachable"));
    assert_eq!(pa.status.as_ref().unwrap().desired_scale, Some(1));
    let Object::Ingress(ing) = h.get(Kind::Ingress, "hello") else {
        unreachable!()
    };
    assert_eq!(
        ready(&ing.status.unwrap().conditions),
        ConditionStatus::True
    );
    let program = h.program("hello");
    assert_eq!(program.rules[0].hosts, ["hello.default.localhost"]);
    assert_eq!(h.splits("hello"), [("hello-00001".to_string(), 100)]);
}

#[tokio::test]
async fn template_change_makes_a_new_revision_metadata_change_does_not() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    h.apply(&svc_yaml("hello", "a", "").replace("team: a", "team: b"))
        .await;
    assert_eq!(h.revisions(), ["hello-00001"]);
    assert_eq!(
        label_of(&h.get(Kind::Configuration, "hello"), "team").as_deref(),
        Some("b")
    );
    h.apply(&svc_yaml("hello", "b", "")).await;
    assert_eq!(h.revisions(), ["hello-00001", "hello-00002"]);
    let status = h.service("hello").status.unwrap();
    assert_eq!(
        status.latest_ready_revision_name.as_deref(),
        Some("hello-00002")
    );
    let old = h.get(Kind::Revision, "hello-00001");
    assert_eq!(
        label_of(&old, LABEL_ROUTING_STATE).as_deref(),
        Some(ROUTING_STATE_RESERVE),
        "no route references it any more"
    );
    let Object::PodAutoscaler(pa) = h.get(Kind::PodAutoscaler, "hello-00001") else {
        unreachable!()
    };
    assert_eq!(pa.spec.reachability.as_deref(), Some("Unreachable"));
}

#[tokio::test]
async fn labels_and_annotations_propagate_and_are_removed_but_foreign_ones_stay() {
    let h = harness();
    let with_meta = |labels: &str| {
        svc_yaml("hello", "a", "").replace(
            "labels: {team: a}",
            &format!("labels: {{{labels}}}\n  annotations: {{note: x}}"),
        )
    };
    h.apply(&with_meta("team: a, tier: web")).await;
    // someone else labels the Configuration
    let mut cfg = h.get(Kind::Configuration, "hello");
    cfg.metadata_mut()
        .labels
        .get_or_insert_default()
        .insert("owner".into(), "ops".into());
    cfg.metadata_mut().finalizers = Some(vec!["ops.example.com/hold".into()]);
    h.store.update(cfg).unwrap();
    h.apply(&with_meta("team: a").replace("annotations: {note: x}", "annotations: {}"))
        .await;
    let cfg = h.get(Kind::Configuration, "hello");
    let labels = cfg.metadata().labels.clone().unwrap();
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    assert!(
        !labels.contains_key("tier"),
        "removed from the Service: removed here"
    );
    assert_eq!(
        labels.get("owner").map(String::as_str),
        Some("ops"),
        "foreign label kept"
    );
    assert!(
        cfg.metadata()
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("note")),
        "{:?}",
        cfg.metadata().annotations
    );
    assert!(
        cfg.has_finalizer("ops.example.com/hold"),
        "foreign finalizer kept"
    );
    assert!(label_of(&h.get(Kind::Route, "hello"), "tier").is_none());
}

#[tokio::test]
async fn traffic_split_and_tags() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    let split = "  traffic:\n    - revisionName: hello-00001\n      percent: 20\n      tag: old\n    - latestRevision: true\n      percent: 80\n";
    h.apply(&svc_yaml("hello", "b", split)).await;
    let status = h.service("hello").status.unwrap();
    assert_eq!(
        ready(&status.conditions),
        ConditionStatus::True,
        "{:#?}",
        status.conditions
    );
    assert_eq!(
        status.traffic[0].url.as_deref(),
        Some("http://old-hello.default.localhost:8080")
    );
    assert_eq!(
        h.splits("hello"),
        [
            ("hello-00001".to_string(), 20),
            ("hello-00002".to_string(), 80)
        ]
    );
    assert_eq!(
        h.program("hello").rules[1].hosts,
        ["old-hello.default.localhost"]
    );
    for rev in ["hello-00001", "hello-00002"] {
        assert_eq!(
            label_of(&h.get(Kind::Revision, rev), LABEL_ROUTING_STATE).as_deref(),
            Some(ROUTING_STATE_ACTIVE),
            "{rev}"
        );
    }
}

/// After a restart the route has no memory of what it referenced: the labels in the store
/// say it, and a revision it stops referencing is still moved to `reserve`.
#[tokio::test]
async fn a_restarted_controller_still_unmarks_what_a_route_stopped_referencing() {
    let mut h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    let split = "  traffic:\n    - revisionName: hello-00001\n      percent: 50\n    - latestRevision: true\n      percent: 50\n";
    h.apply(&svc_yaml("hello", "b", split)).await;
    let state = |h: &Harness| label_of(&h.get(Kind::Revision, "hello-00001"), LABEL_ROUTING_STATE);
    assert_eq!(state(&h).as_deref(), Some(ROUTING_STATE_ACTIVE));
    // The change lands while no controller runs; the new one's first look at the Route is
    // the one that finds hello-00001 no longer referenced.
    let svc = parse_manifests("t", &svc_yaml("hello", "b", ""))
        .unwrap()
        .remove(0);
    h.store.update(svc).unwrap();
    h.restart();
    h.settle().await;
    assert_eq!(state(&h).as_deref(), Some(ROUTING_STATE_RESERVE));
}

#[tokio::test]
async fn failing_revision_reports_reason_and_keeps_old_traffic() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    h.runtime.failing.lock().unwrap().insert(
        "hello-00002".into(),
        (
            "ExitCode1".into(),
            "process exited with code 1: boom".into(),
        ),
    );
    h.apply(&svc_yaml("hello", "b", "")).await;
    let rev = h.revision("hello-00002");
    let c = get_condition(&rev.status.as_ref().unwrap().conditions, "Ready")
        .unwrap()
        .clone();
    assert_eq!(
        (c.status, c.reason.as_deref()),
        (ConditionStatus::False, Some("ExitCode1"))
    );
    let status = h.service("hello").status.unwrap();
    let sc = get_condition(&status.conditions, "Ready").unwrap();
    assert_eq!(sc.status, ConditionStatus::False);
    assert!(sc.message.as_deref().unwrap().contains("boom"), "{sc:?}");
    assert_eq!(
        status.latest_ready_revision_name.as_deref(),
        Some("hello-00001")
    );
    assert_eq!(
        h.splits("hello"),
        [("hello-00001".to_string(), 100)],
        "old revision keeps serving"
    );
}

/// Issue #11, 1: an instance crash of the newest revision never moves latestReady back.
#[tokio::test]
async fn latest_ready_never_goes_back_to_an_older_revision() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    h.apply(&svc_yaml("hello", "b", "")).await;
    assert_eq!(h.splits("hello"), [("hello-00002".to_string(), 100)]);
    h.runtime.failing.lock().unwrap().insert(
        "hello-00002".into(),
        ("ExitCode1".into(), "process exited with code 1".into()),
    );
    h.settle().await;
    let rev = h.revision("hello-00002");
    assert_eq!(
        ready(&rev.status.unwrap().conditions),
        ConditionStatus::False
    );
    let cfg = h.configuration("hello").status.unwrap();
    assert_eq!(
        cfg.latest_ready_revision_name.as_deref(),
        Some("hello-00002")
    );
    assert_eq!(
        h.splits("hello"),
        [("hello-00002".to_string(), 100)],
        "latestRevision traffic stays on the new code while it restarts"
    );
    h.runtime.failing.lock().unwrap().clear();
    h.settle().await;
    assert_eq!(
        ready(&h.service("hello").status.unwrap().conditions),
        ConditionStatus::True
    );
}

/// Issue #11, 2: re-applying an older template under its old name rolls back to it.
#[tokio::test]
async fn rollback_by_revision_name_makes_it_latest_again() {
    let h = harness();
    h.apply(&named_yaml("hello", "hello-a", "a", "")).await;
    h.apply(&named_yaml("hello", "hello-b", "b", "")).await;
    assert_eq!(h.splits("hello"), [("hello-b".to_string(), 100)]);
    h.apply(&named_yaml("hello", "hello-a", "a", "")).await;
    assert_eq!(h.revisions(), ["hello-a", "hello-b"], "no new revision");
    let cfg = h.configuration("hello").status.unwrap();
    assert_eq!(cfg.latest_created_revision_name.as_deref(), Some("hello-a"));
    assert_eq!(cfg.latest_ready_revision_name.as_deref(), Some("hello-a"));
    assert_eq!(h.splits("hello"), [("hello-a".to_string(), 100)]);
    let status = h.service("hello").status.unwrap();
    assert_eq!(
        ready(&status.conditions),
        ConditionStatus::True,
        "{:#?}",
        status.conditions
    );
}

#[tokio::test]
async fn a_taken_revision_name_is_refused() {
    let h = harness();
    h.apply(&named_yaml("hello", "hello-v1", "a", "")).await;
    // the API server refuses this update (same name, new template); a store edit gets it here
    h.apply(&named_yaml("hello", "hello-v1", "b", "")).await;
    assert_eq!(h.revisions(), ["hello-v1"]);
    let c = h.configuration("hello");
    let cond = get_condition(&c.status.unwrap().conditions, "Ready")
        .unwrap()
        .clone();
    assert_eq!(cond.status, ConditionStatus::False);
    assert!(
        cond.message.as_deref().unwrap().contains("already exists"),
        "{cond:?}"
    );
}

#[tokio::test]
async fn a_child_the_service_does_not_own_is_reported_not_taken() {
    let h = harness();
    let route = "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: {name: hello}\nspec:\n  traffic: [{revisionName: x, percent: 100}]\n";
    h.store
        .create(parse_manifests("t", route).unwrap().remove(0))
        .unwrap();
    h.apply(&svc_yaml("hello", "a", "")).await;
    let status = h.service("hello").status.unwrap();
    let c = get_condition(&status.conditions, "RoutesReady").unwrap();
    assert_eq!(
        (c.status, c.reason.as_deref()),
        (ConditionStatus::False, Some("NotOwned"))
    );
    let Object::Route(r) = h.get(Kind::Route, "hello") else {
        unreachable!()
    };
    assert_eq!(
        r.spec.traffic[0].revision_name.as_deref(),
        Some("x"),
        "untouched"
    );
}

#[tokio::test]
async fn deleting_a_service_deletes_everything_it_owns_and_stops_its_instances() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    h.delete(Kind::Service, "hello").await;
    for kind in Kind::ALL {
        assert!(h.names(kind).is_empty(), "{kind}: {:?}", h.names(kind));
    }
    assert!(h.ingress.0.lock().unwrap().is_empty());
    assert_eq!(
        *h.runtime.removed.lock().unwrap(),
        [RevisionKey::new("default", "hello-00001")]
    );
}

/// Issue #11, 5: what was deleted while nobody watched is still collected.
#[tokio::test]
async fn objects_whose_owner_is_gone_are_collected_by_the_sweep() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    // delete the Service behind the controller's back: no watch saw it
    let svc = h.get(Kind::Service, "hello");
    h.store.delete(Kind::Service, "default", "hello").unwrap();
    // a new controller (a restart) lists, sweeps and finds the orphans
    let ctx = h.controller.context();
    crate::gc::sweep(ctx).await.unwrap();
    h.settle().await;
    crate::gc::sweep(ctx).await.unwrap();
    h.settle().await;
    crate::gc::sweep(ctx).await.unwrap();
    h.settle().await;
    for kind in Kind::ALL {
        assert!(
            h.names(kind).is_empty(),
            "{kind}: {:?} (owner {:?})",
            h.names(kind),
            svc.metadata().uid
        );
    }
}

/// Issue #11, 8: a removal that drains for a long time holds no worker.
#[tokio::test]
async fn a_slow_removal_does_not_block_other_reconciles() {
    let h = harness();
    h.apply(&svc_yaml("slow", "a", "")).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *h.runtime.remove_gate.lock().unwrap() = Some(gate.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(h.controller.clone().run(async move {
        let _ = stopped.await;
    }));
    h.store.delete(Kind::Service, "default", "slow").unwrap();
    let svc = parse_manifests("t", &svc_yaml("fast", "a", ""))
        .unwrap()
        .remove(0);
    h.store.create(svc).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let fast_ready = h
            .store
            .get(Kind::Service, "default", "fast")
            .unwrap()
            .and_then(|o| match o {
                Object::Service(s) => s.status,
                _ => None,
            })
            .is_some_and(|s| ready(&s.conditions) == ConditionStatus::True);
        if fast_ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fast never got ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let slow = h
        .store
        .get(Kind::Revision, "default", "slow-00001")
        .unwrap();
    assert!(
        slow.is_some_and(|r| r.is_deleting()),
        "still draining, held by its finalizer"
    );
    gate.add_permits(1);
    loop {
        if h.store
            .get(Kind::Revision, "default", "slow-00001")
            .unwrap()
            .is_none()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revision never went"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    run.await.unwrap();
}

/// Issue #11, 7: a change to one service's revision wakes that service's objects only.
#[tokio::test]
async fn a_revision_change_concerns_only_the_objects_that_read_it() {
    let h = harness();
    h.apply(&svc_yaml("a", "1", "")).await;
    h.apply(&svc_yaml("b", "1", "")).await;
    let rev = h.get(Kind::Revision, "a-00001");
    let keys = crate::manager::keys_for(h.controller.context(), &rev);
    assert!(keys.iter().all(|k| k.name.starts_with('a')), "{keys:?}");
    assert!(
        keys.contains(&ObjectKey::new(Kind::Route, "default", "a")),
        "{keys:?}"
    );
    assert!(keys.contains(&ObjectKey::new(Kind::Configuration, "default", "a")));
    assert!(keys.contains(&ObjectKey::new(Kind::PodAutoscaler, "default", "a-00001")));
}

/// Issue #11, 6: Knative's revision GC with a clock the test moves.
#[tokio::test]
async fn old_revisions_are_garbage_collected_by_the_policy() {
    let start = SystemClock.now();
    let clock = Arc::new(FixedClock(Mutex::new(start)));
    let config = ControllerConfig {
        revision_gc: RevisionGcConfig {
            retain_since_create_time: Some(std::time::Duration::from_secs(3600)),
            retain_since_last_active_time: Some(std::time::Duration::from_secs(600)),
            min_non_active: 1,
            max_non_active: Some(1000),
        },
        ..ControllerConfig::default()
    };
    let h = harness_with(config, clock.clone());
    for env in ["a", "b", "c", "d"] {
        h.apply(&svc_yaml("hello", env, "")).await;
    }
    let mut pinned = h.get(Kind::Revision, "hello-00002");
    pinned
        .metadata_mut()
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_NO_GC.into(), "true".into());
    h.store.update(pinned).unwrap();
    h.settle().await;
    assert_eq!(h.revisions().len(), 4, "nothing is old enough yet");
    // two hours later: past both retention times
    let later = nimbus_api::k8s_openapi::jiff::Timestamp::from_second(start.as_second() + 7200);
    *clock.0.lock().unwrap() = later.unwrap();
    h.controller
        .reconcile(&ObjectKey::new(Kind::Configuration, "default", "hello"))
        .await
        .unwrap();
    h.settle().await;
    assert_eq!(
        h.revisions(),
        ["hello-00002", "hello-00003", "hello-00004"],
        "00001 goes; 00002 is pinned by no-gc, 00003 is the one non-active kept, 00004 serves"
    );
}

#[tokio::test]
async fn settle_fails_when_reconciles_do_not_converge() {
    let h = harness();
    let svc = parse_manifests("t", &svc_yaml("hello", "a", ""))
        .unwrap()
        .remove(0);
    h.store.create(svc).unwrap();
    let err = h.controller.settle(2).await.unwrap_err();
    assert!(matches!(err, ControllerError::NotSettled { .. }), "{err}");
}

#[tokio::test]
async fn unavailable_backends_and_runtime_classes_are_reported() {
    let h = harness();
    h.apply(
        &svc_yaml("hello", "a", "")
            .replace("runtimeClassName: process", "runtimeClassName: wasm")
            .replace("- command: [/bin/hello]", "- image: hello.wasm"),
    )
    .await;
    let status = h.service("hello").status.unwrap();
    let c = get_condition(&status.conditions, "Ready").unwrap();
    assert_eq!(c.status, ConditionStatus::False);
    assert!(c.message.as_deref().unwrap().contains("wasm"), "{c:?}");
    h.apply(
        &svc_yaml("gv", "a", "")
            .replace("runtimeClassName: process", "runtimeClassName: gvisor")
            .replace(
                "  template:\n",
                "  template:\n    metadata:\n      annotations: {nimbus.dev/runtime: process}\n",
            ),
    )
    .await;
    let rev = h.revision("gv-00001");
    let c = get_condition(&rev.status.unwrap().conditions, "Ready")
        .unwrap()
        .clone();
    assert_eq!(
        c.reason.as_deref(),
        Some("RuntimeClassUnavailable"),
        "{c:?}"
    );
}
